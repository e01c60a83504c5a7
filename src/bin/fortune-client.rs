use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fortune_server::client::cli::ClientCli::parse();
    match fortune_server::client::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fortune-client: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
