//! Telling the service manager how we are: `READY=1`, `RELOADING=1`,
//! `STOPPING=1`, watchdog pings and the `STATUS=` line with the counters.
//! Without `NOTIFY_SOCKET` every call is a no-op.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Counters shared by every connection.
#[derive(Debug, Default)]
pub struct Stats {
    pub served: AtomicU64,
    pub failed: AtomicU64,
    /// Connections open, from accept to close (the wait for the peer's
    /// close included); counted by [`Active`] only.
    active: AtomicUsize,
    /// True while every allowed connection slot is busy.
    pub at_cap: AtomicBool,
}

/// One open connection, counted in [`Stats`] for as long as this lives.
#[must_use]
pub struct Active<'a>(&'a Stats);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    /// Counts a connection open until the guard is dropped.
    pub fn open(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self)
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Clients handled so far, served or not.
    pub fn handled(&self) -> u64 {
        self.served.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} served, {} active, {} failed",
            self.served.load(Ordering::Relaxed),
            self.active(),
            self.failed.load(Ordering::Relaxed)
        );
        if self.at_cap.load(Ordering::Relaxed) {
            s.push_str("; at --max-connections, new clients wait in the backlog");
        }
        s
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("cannot notify the service manager: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn reloading() {
    // systemd >= 253 requires MONOTONIC_USEC with RELOADING=1; older ones ignore it.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("Stopping: serving connections in flight"),
    ]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half its interval, as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
