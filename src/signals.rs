//! The signals the process answers, blocked from `main`'s first line so that
//! none can kill it before it is ready for them: each waits, pending, until
//! the service reads it from a signalfd ([`Signals`]). A SIGHUP that arrives
//! while the fortunes are loading is thus served as a reload once they are;
//! SIGUSR1, SIGUSR2 and SIGALRM are logged and otherwise ignored (their
//! default action would kill the process without a line). SIGPIPE stays
//! ignored, as the Rust runtime sets it before `main`.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Signals that stop the service.
const STOP: [Signal; 2] = [Signal::SIGTERM, Signal::SIGINT];
/// Every signal this process reads: [`STOP`], SIGHUP (reload) and the ones
/// whose default action would kill it silently.
const READ: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
];

fn set(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    signals.iter().for_each(|&s| set.add(s));
    set
}

/// Blocks every signal the service reads, in the calling thread and so in
/// every thread it starts later. First thing in `main`, before any thread.
pub fn block() -> nix::Result<()> {
    set(&READ).thread_block()
}

/// For the one-connection modes (`Accept=yes`, inetd) and the refusal hold,
/// which read no signalfd: SIGTERM and SIGINT act as usual again (a pending
/// one ends the process now), the others stay blocked, hence ignored.
pub fn unblock_stop() {
    let _ = set(&STOP).thread_unblock();
}

/// A descriptor readable while SIGTERM or SIGINT is pending. Polled, never
/// read: the signal stays pending for [`unblock_stop`] to deliver.
pub fn stop_watch() -> nix::Result<SignalFd> {
    SignalFd::with_flags(&set(&STOP), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// What a signal asks of the service.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    Reload,
    Stop(&'static str),
    /// One the service has no use for: logged, nothing else.
    Nothing(&'static str),
}

/// The process that sent a signal, and its user.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub pid: u32,
    pub uid: u32,
}

/// The signalfd the main loop waits on, over the signals [`block`] blocked.
pub struct Signals(SignalFd);

impl Signals {
    pub fn new() -> nix::Result<Signals> {
        // Blocking again is harmless, and keeps this right for a caller
        // (a test) that did not go through main.
        block()?;
        SignalFd::with_flags(&set(&READ), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map(Signals)
    }

    /// The next pending signal, if any (never waits), with who sent it.
    pub fn next(&self) -> Option<(Asked, Sender)> {
        let info = self.0.read_signal().ok()??;
        let signal = Signal::try_from(info.ssi_signo as i32).ok()?;
        let sender = Sender {
            pid: info.ssi_pid,
            uid: info.ssi_uid,
        };
        Some((asked(signal), sender))
    }
}

fn asked(signal: Signal) -> Asked {
    match signal {
        Signal::SIGHUP => Asked::Reload,
        s if STOP.contains(&s) => Asked::Stop(s.as_str()),
        s => Asked::Nothing(s.as_str()),
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_signal_asks() {
        assert_eq!(asked(Signal::SIGHUP), Asked::Reload);
        assert_eq!(asked(Signal::SIGTERM), Asked::Stop("SIGTERM"));
        assert_eq!(asked(Signal::SIGINT), Asked::Stop("SIGINT"));
        for s in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM] {
            assert_eq!(asked(s), Asked::Nothing(s.as_str()));
        }
    }
}
