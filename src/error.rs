//! How the process ends: the exit statuses (with what each means to an
//! admin) and [`Error`], everything that ends it early, with the source line
//! it arose at.

use std::fmt;
use std::panic::Location;

use crate::activation::{Activation, ActivationError};
use crate::fortunes::LoadError;

/// Exit statuses, documented in docs/reference.md and fortune-server(8), and pinned by `tests/exit_codes.rs`.
pub mod exit {
    /// Served, then stopped (SIGTERM/SIGINT, or the one connection of
    /// `Accept=yes`/inetd is done, however the client behaved).
    pub const OK: u8 = 0;
    /// A fortune file or directory is unreadable, not a regular file (a
    /// FIFO, a device), holds no fortunes (or only ones longer than
    /// `--max-entry`, or none of the length chosen), is too large to read
    /// without an index, is not UTF-8 (without an index), or is offensive
    /// without `--offensive`.
    pub const FORTUNES: u8 = 1;
    /// Command line or `FORTUNE_*` variable not understood (clap's own
    /// status), or `--fortunes` percentages against fortune-mod's rules.
    pub const USAGE: u8 = 2;
    /// The inherited descriptors or `LISTEN_*` variables are not usable, or
    /// systemd passed none (and `--listen` was not given).
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
             or, with Accept=yes or --inetd, the one connection is done, whatever the client did; \
             or --hand-over is done (it never fails a socket's stop: what goes wrong is a warning).",
        ),
        (
            FORTUNES,
            "A fortune file named on its own is unreadable, is not a regular file (a FIFO, a device, \
             a socket; or its index is one), is the kernel's (/proc, /sys, /dev), holds no fortunes \
             (or only ones longer than --max-entry), is larger than 4 MiB without an index, is not \
             UTF-8 (a file without index), or is offensive without --offensive; or the collection, \
             or a path given a percentage, holds no fortune of the length --short or --long chose; \
             or a directory is unreadable or holds no servable fortune file (broken members are only left out while \
             one is servable). Nothing was served.",
        ),
        (
            USAGE,
            "The command line or a FORTUNE_* variable is not understood, or the --fortunes \
             percentages break fortune-mod's rules (more than 100 together; below 100 with no path \
             to take the rest; 100 with paths left without one).",
        ),
        (
            ACTIVATION,
            "The inherited descriptors are unusable: LISTEN_FDS or LISTEN_FDNAMES malformed, a \
             descriptor not open, not a socket, of an unsupported type, or a connected socket \
             passed among others; or systemd started it with none (its socket stopped, or \
             Accept=yes) and no --listen was given.",
        ),
        (LISTEN, "A --listen address cannot be bound."),
        (
            RUNTIME,
            "The system refused a resource (threads, epoll, signal handling), or a serving \
             thread (a worker, a UDP thread) died and could not be replaced: systemd restarts \
             the service (Restart=on-failure).",
        ),
    ];
}

/// Everything that ends the process early, with where in the code it arose
/// (the journal's `CODE_FILE`/`CODE_LINE`).
#[derive(Debug)]
pub struct Error {
    pub cause: Cause,
    at: &'static Location<'static>,
    /// The inherited sockets, to refuse their clients for a while once the
    /// error is logged ([`Error::pending`]).
    pending: Option<Box<Activation>>,
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
            pending: None,
        }
    }

    /// Keeps the sockets, for [`Error::pending`].
    pub(crate) fn refusing(mut self, activation: Activation) -> Error {
        self.pending = Some(Box::new(activation));
        self
    }

    /// The sockets to refuse clients on once the error is logged (so that
    /// `systemctl status` shows the cause at once), if any.
    pub fn pending(&self) -> Option<&Activation> {
        self.pending.as_deref()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_knows_the_line_that_returned_it() {
        let offensive = || LoadError {
            path: "x".into(),
            problem: crate::fortunes::Problem::Offensive,
        };
        let load = || -> Result<(), Error> { Err(offensive())? };
        let line = line!() - 1;
        let e = load().unwrap_err();
        assert_eq!((e.location().file(), e.location().line()), (file!(), line));
    }
}
