use std::process::ExitCode;

use clap::Parser;
use fortune_server::{cli::Cli, exit, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
        Err(e) => {
            logging::report_fatal(&fortune_server::cli::one_line(&e));
            return ExitCode::from(exit::USAGE);
        }
    };
    match fortune_server::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            logging::report_fatal(&format!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}
