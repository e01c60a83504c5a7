use std::process::ExitCode;

use fortune_server::client::{self, cli::ClientCli, exit};

fn main() -> ExitCode {
    let report = |line: &str| eprintln!("fortune-client: {line}");
    let cli = match fortune_server::cli::parse::<ClientCli>(exit::USAGE, report) {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    match client::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fortune-client: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
