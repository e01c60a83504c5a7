//! fortune-server: serves a random fortune per connection, framed as Qt's
//! `QDataStream << QString`, on sockets systemd passes or it binds itself.
//!
//! One module per concern: [`activation`] adopts sockets, [`wire`] encodes
//! frames, [`fortunes`] holds the collection, [`connection`] serves one
//! client, [`server`] is the accept loop, [`linger`] holds a worker's
//! connections until their peers leave, [`prefix`] says what a source is,
//! [`sources`] caps what one source holds, [`datagram`] answers UDP,
//! [`ratelimit`] bounds the UDP replies a source gets, [`proxy`] parses the
//! PROXY header a load balancer sends, [`proxied`] reads it from those
//! [`cidr`] (`--proxy-from`) trusts, [`fold`] folds
//! client-caused log lines, [`stats`] holds the counters, [`service`] runs
//! the process's life, [`notify`] talks to systemd, [`logging`] chooses
//! where logs go, [`limits`] raises resource limits; [`client`] is
//! `fortune-client` and its benchmark.
#![deny(unsafe_code)]

pub mod activation;
pub mod cidr;
pub mod cli;
pub mod client;
pub mod connection;
pub mod datagram;
pub mod fold;
pub mod fortunes;
pub mod limits;
pub mod linger;
pub mod logging;
pub mod notify;
pub mod prefix;
pub mod proxied;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod sockets;
pub mod sources;
pub mod stats;
pub mod wire;

use std::fmt;
use std::panic::Location;

use activation::{Activation, ActivationError};
use fortunes::{Live, LoadError, Opening, Selection, Store};

/// Stack size of every thread we start: they hold a few small buffers only.
pub const THREAD_STACK: usize = 128 * 1024;

/// Exit statuses, documented in docs/reference.md and fortune-server(8), and pinned by `tests/exit_codes.rs`.
pub mod exit {
    /// Served, then stopped (SIGTERM/SIGINT, or the one connection of
    /// `Accept=yes`/inetd is done, however the client behaved).
    pub const OK: u8 = 0;
    /// A fortune file or directory is unreadable, not a regular file (a
    /// FIFO, a device), holds no fortunes (or only ones longer than
    /// `--max-entry`), is too large to read without an index, is not UTF-8
    /// (without an index), or is offensive without `--offensive`.
    pub const FORTUNES: u8 = 1;
    /// Command line or `FORTUNE_*` variable not understood (clap's own status).
    pub const USAGE: u8 = 2;
    /// The inherited descriptors or `LISTEN_*` variables are not usable.
    pub const ACTIVATION: u8 = 3;
    /// A `--listen` address could not be bound.
    pub const LISTEN: u8 = 4;
    /// The system refused a resource (threads, epoll, signals).
    pub const RUNTIME: u8 = 5;

    /// Each status with what it means to an admin: the man page's EXIT
    /// STATUS section (tests/docs.rs) and docs/reference.md's table.
    pub const MEANINGS: [(u8, &str); 6] = [
        (
            OK,
            "Stopped by SIGTERM or SIGINT, or by --idle-exit, after serving what was in flight; \
             or, with Accept=yes or --inetd, the one connection is done, whatever the client did.",
        ),
        (
            FORTUNES,
            "A fortune file or directory is unreadable, is not a regular file (a FIFO, a device, a \
             socket; or its index is one), holds no fortunes (or only ones longer than --max-entry), \
             is larger than 4 MiB without an index, is not UTF-8 (a file without index), or is \
             offensive without --offensive. Nothing was served.",
        ),
        (
            USAGE,
            "The command line or a FORTUNE_* variable is not understood.",
        ),
        (
            ACTIVATION,
            "The inherited descriptors are unusable: LISTEN_FDS or LISTEN_FDNAMES malformed, a \
             descriptor not open, not a socket, of an unsupported type, or a connected socket \
             passed among others.",
        ),
        (LISTEN, "A --listen address cannot be bound."),
        (
            RUNTIME,
            "The system refused a resource (threads, epoll, signal handling).",
        ),
    ];
}

/// Everything that ends the process early, with where in the code it arose
/// (the journal's `CODE_FILE`/`CODE_LINE`).
#[derive(Debug)]
pub struct Error {
    pub cause: Cause,
    at: &'static Location<'static>,
}

#[derive(Debug)]
pub enum Cause {
    Fortunes(LoadError),
    Activation(ActivationError),
    Runtime {
        doing: &'static str,
        error: std::io::Error,
    },
}

impl Error {
    #[track_caller]
    fn new(cause: Cause) -> Error {
        Error {
            cause,
            at: Location::caller(),
        }
    }

    #[track_caller]
    pub fn runtime(doing: &'static str, error: std::io::Error) -> Error {
        Error::new(Cause::Runtime { doing, error })
    }

    /// The source line that returned the error (its `?` or constructor).
    pub fn location(&self) -> &'static Location<'static> {
        self.at
    }

    pub fn exit_code(&self) -> u8 {
        match self.cause {
            Cause::Fortunes(_) => exit::FORTUNES,
            Cause::Activation(ActivationError::Bind { .. }) => exit::LISTEN,
            Cause::Activation(_) => exit::ACTIVATION,
            Cause::Runtime { .. } => exit::RUNTIME,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Fortunes(e) => e.fmt(f),
            Cause::Activation(e) => e.fmt(f),
            Cause::Runtime { doing, error } => write!(f, "{doing}: {error}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<LoadError> for Error {
    #[track_caller]
    fn from(e: LoadError) -> Error {
        Error::new(Cause::Fortunes(e))
    }
}

impl From<ActivationError> for Error {
    #[track_caller]
    fn from(e: ActivationError) -> Error {
        Error::new(Cause::Activation(e))
    }
}

/// Everything `main` does after parsing the command line (and starting
/// logging, [`logging::init`]).
pub fn run(cli: cli::Cli) -> Result<(), Error> {
    // Adopt (and unset LISTEN_*) before any thread starts.
    let activation = activation::activate(cli.inetd, &cli.listen)?;
    let cache_dir = cli.cache_dir();
    let selection = Selection {
        paths: cli.fortunes,
        offensive: cli.offensive,
        max_entry: cli.max_entry as usize,
    };
    // One connection per process: open only the file picked (see Opening::Lazy).
    let opening = match activation {
        Activation::Connected(_) => Opening::Lazy,
        Activation::Listening { .. } => Opening::Eager,
    };
    // Before loading: a collection holds descriptors (see fortunes::load).
    limits::raise_fd_limit();
    let store = match Store::load_cached(&selection, opening, cache_dir.as_deref()) {
        Ok(store) => store,
        Err(e) => {
            activation.refuse_pending();
            return Err(e.into());
        }
    };
    match activation {
        Activation::Connected(mut stream) => {
            let trusted = cidr::Trusted::new(cli.proxy_from);
            let mut peer = stream.peer();
            if trusted.trusts(stream.peer_addr()) {
                match proxied::read_blocking(&mut stream, cli.timeout) {
                    Ok(source) => peer = source.map_or(peer, |s| s.to_string()),
                    Err(why) => {
                        proxied::refuse(peer, &why, &stats::Stats::default());
                        return Ok(());
                    }
                }
            }
            let live = Live::new(store, cli.daily);
            match live.frame(cli.protocol, None) {
                Some(frame) => connection::serve_once(stream, &peer, &frame, cli.timeout),
                None => log::warn!("{peer}: no fortune fits the {} protocol", cli.protocol),
            }
            Ok(())
        }
        Activation::Listening {
            listeners,
            datagrams,
            bound_here,
        } => {
            let config = service::Config {
                protocol: cli.protocol,
                fortunes: selection,
                daily: cli.daily,
                timeout: cli.timeout,
                idle_exit: cli.idle_exit,
                max_connections: cli.max_connections as usize,
                max_per_source: cli.max_per_source,
                udp: datagram::Limits {
                    rate: cli.udp_rate,
                    burst: cli.udp_burst,
                },
                bound_here,
                proxy_from: cidr::Trusted::new(cli.proxy_from),
            };
            service::run(config, store, listeners, datagrams)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_knows_the_line_that_returned_it() {
        let offensive = || LoadError {
            path: "x".into(),
            problem: fortunes::Problem::Offensive,
        };
        let load = || -> Result<(), Error> { Err(offensive())? };
        let line = line!() - 1;
        let e = load().unwrap_err();
        assert_eq!((e.location().file(), e.location().line()), (file!(), line));
    }
}
