use std::process::ExitCode;

use fortune_server::{cli, exit, logging};

fn main() -> ExitCode {
    let cli = match cli::parse::<cli::Cli>(exit::USAGE, logging::report_fatal) {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    match fortune_server::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            logging::report_fatal(&format!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}
