use std::process::ExitCode;

use fortune_server::{activation, cli, exit, logging, signals};

fn main() -> ExitCode {
    // First: a signal arriving while the service starts waits for it (see signals).
    let blocked = signals::block();
    // Parsing reads arguments and variables only; a usage error is logged below.
    let mut usage = None;
    let parsed = cli::parse_server(exit::USAGE, |line| usage = Some(line.to_string())).and_then(|cli| {
        cli.check().map_err(|line| {
            usage = Some(line);
            ExitCode::from(exit::USAGE)
        })
    });
    let inetd = parsed.as_ref().is_ok_and(|cli| cli.inetd);
    // SAFETY: no thread has started and nothing has opened a descriptor yet
    // (logging opens its socket next): the numbers LISTEN_FDS names are ours.
    #[allow(unsafe_code)]
    let inherited = unsafe { activation::take_inherited(inetd) };
    // After adopting: the logger's socket cannot take a number LISTEN_FDS claims.
    logging::init();
    let cli = match parsed {
        Ok(cli) => cli,
        Err(status) => {
            if let Some(line) = usage {
                logging::report_fatal(&line, None);
                let hold = activation::activate(inherited, &[], true).unwrap_or_else(|failed| failed.hold);
                fortune_server::refuse_pending(&hold);
            }
            return status;
        }
    };
    logging::set_level(cli.log_level);
    if let Some(unit) = &cli.hand_over {
        fortune_server::handover::run(unit);
        return ExitCode::from(exit::OK);
    }
    if let Err(e) = blocked {
        log::warn!("cannot block signals until the service is ready for them: {e}");
    }
    match fortune_server::run(cli, inherited) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            logging::report_fatal(&format!("error: {e}"), Some(e.location()));
            // After the line: `systemctl status` shows the cause during the hold.
            if let Some(hold) = e.pending() {
                fortune_server::refuse_pending(hold);
            }
            ExitCode::from(e.exit_code())
        }
    }
}
