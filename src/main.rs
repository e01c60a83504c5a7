use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fortune_server::cli::Cli::parse();
    match fortune_server::run(cli) {
        Ok(()) => ExitCode::from(fortune_server::exit::OK),
        Err(e) => {
            // One line, for the admin: logs may be off or in the journal.
            eprintln!("fortune-server: error: {e}");
            log::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
