use std::process::ExitCode;

use fortune_server::{activation, cli, exit, logging};

fn main() -> ExitCode {
    // Before parsing: a usage error under systemd goes to the journal too.
    logging::init();
    let usage_error = |line: &str| {
        logging::report_fatal(line, None);
        activation::refuse_inherited();
    };
    let cli = match cli::parse_server(exit::USAGE, usage_error) {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    logging::set_level(cli.log_level);
    match fortune_server::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            logging::report_fatal(&format!("error: {e}"), Some(e.location()));
            e.refuse_pending();
            ExitCode::from(e.exit_code())
        }
    }
}
