//! The service's counters (served, failed, open, refused), shared by every
//! connection and datagram, and the summary `STATUS=` and the stop line show.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    /// Milliseconds after [`epoch`] before which reaching the cap is not logged again.
    cap_quiet_until: AtomicU64,
    /// Connections closed at once: their source held `--max-per-source`.
    pub over_source_cap: AtomicU64,
    /// Connections from `--proxy-from` closed: no valid PROXY header in time.
    pub proxy_refused: AtomicU64,
    /// Slow readers closed: their source had its share of the writers.
    pub over_writer_share: AtomicU64,
    /// Datagrams from a port below 1024 or from our own port, not answered.
    pub udp_ignored: AtomicU64,
    /// Datagrams over their source's `--udp-rate`, not answered.
    pub udp_limited: AtomicU64,
    /// Datagrams over the reply budget of all sources together, not answered.
    pub udp_over_budget: AtomicU64,
}

/// How often reaching `--max-connections` is logged at most: under load the
/// cap is reached and left at every connection.
const CAP_LOG_EVERY: Duration = Duration::from_secs(60);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
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

    /// Every one of the `cap` connection slots is busy: flags it for
    /// `STATUS=` and logs it (`MESSAGE_ID` AT_CAP), at most once a minute.
    pub fn reach_cap(&self, cap: usize) {
        self.at_cap.store(true, Ordering::Relaxed);
        let now = epoch().elapsed().as_millis() as u64;
        let quiet_until = self.cap_quiet_until.load(Ordering::Relaxed);
        if now >= quiet_until
            && self
                .cap_quiet_until
                .compare_exchange(
                    quiet_until,
                    now + CAP_LOG_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            log::warn!(
                message_id = crate::logging::id::AT_CAP;
                "all {cap} connections (--max-connections) busy: new clients wait in the backlog"
            );
        }
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} served, {} active, {} failed",
            self.served.load(Ordering::Relaxed),
            self.active(),
            self.failed.load(Ordering::Relaxed)
        );
        let dropped = [
            (&self.over_source_cap, "closed over --max-per-source"),
            (&self.proxy_refused, "closed without a valid PROXY header"),
            (
                &self.over_writer_share,
                "slow readers closed over their network's writer share",
            ),
            (&self.udp_limited, "datagrams over --udp-rate"),
            (&self.udp_over_budget, "datagrams over the reply budget"),
            (&self.udp_ignored, "datagrams from ports below 1024 or ours"),
        ];
        for (counter, what) in dropped {
            match counter.load(Ordering::Relaxed) {
                0 => {}
                n => s.push_str(&format!(", {n} {what}")),
            }
        }
        if self.at_cap.load(Ordering::Relaxed) {
            s.push_str("; at --max-connections, new clients wait in the backlog");
        }
        s
    }
}
