//! The client side, for `fortune-client`: the one-shot command (print
//! fortunes) and [`bench`](mod@bench), both through [`exchange`] (one connection, the
//! way Qt's Fortune Client makes it, and every way it can fail).

pub mod bench;
pub mod cli;
pub mod exchange;
pub mod show;

use std::io::{self, IsTerminal};

pub use exchange::{
    DEFAULT_PORT, Error, Failure, MAX_ANSWER, connect, decode, exit, fetch, parse_target, read_to_close,
    resolve,
};

/// `fortune-client [HOST[:PORT]]`: prints `count` fortunes, separated by `%`
/// lines as in fortune files, their control characters escaped when `out`
/// is a terminal ([`show::for_terminal`]). Stops at the first failure.
pub fn run_fetch(args: &cli::FetchArgs, out: &mut impl io::Write, terminal: bool) -> Result<(), Error> {
    let addrs = exchange::resolve(&args.common.target)?;
    for i in 0..args.count {
        let fortune = exchange::fetch(&addrs, args.common.protocol, args.common.timeout)?;
        let sep = if i > 0 { "%\n" } else { "" };
        let fortune = match terminal {
            true => show::for_terminal(&fortune),
            false => fortune.into(),
        };
        // stdout closed (e.g. `| head`): nothing more to do.
        if writeln!(out, "{sep}{fortune}").is_err() {
            break;
        }
    }
    Ok(())
}

/// Everything `fortune-client`'s `main` does after parsing.
pub fn run(cli: cli::ClientCli) -> Result<u8, Error> {
    match cli.command {
        Some(cli::Command::Bench(args)) => bench::run_cli(&args),
        None => {
            let stdout = io::stdout();
            let terminal = stdout.is_terminal();
            run_fetch(&cli.fetch, &mut stdout.lock(), terminal).map(|()| exit::OK)
        }
    }
}
