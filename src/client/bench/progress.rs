//! The progress line of a bench run on stderr, refreshed while it runs.

use std::io::{IsTerminal, Write as _};
use std::time::Instant;

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per refresh otherwise.
pub(super) struct Progress {
    on: bool,
    tty: bool,
}

impl Progress {
    pub(super) fn new(on: bool) -> Progress {
        Progress {
            on,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub(super) fn show(&mut self, begin: Instant, started: u64, failed: u64) {
        if !self.on {
            return;
        }
        let secs = begin.elapsed().as_secs_f64();
        let line = format!(
            "bench: {secs:.0} s, {started} connections, {:.0}/s, {failed} failed",
            started as f64 / secs
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
    }

    pub(super) fn clear(&mut self) {
        if self.on && self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}
