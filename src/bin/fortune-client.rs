use std::process::ExitCode;

use clap::Parser;
use fortune_server::client::{self, cli::ClientCli, exit};

fn main() -> ExitCode {
    let cli = match ClientCli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
        Err(e) => {
            eprintln!("fortune-client: {}", fortune_server::cli::one_line(&e));
            return ExitCode::from(exit::USAGE);
        }
    };
    match client::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fortune-client: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
