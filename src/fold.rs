//! Folding of repeated log lines (client-caused ones, and a service manager
//! that does not read): the first of an interval is logged in full, the
//! rest as one count when the interval ends, so a reset storm, a UDP flood
//! or a stalled notify socket cannot flood the journal.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long repeated client-caused log lines are folded into one count.
pub const FOLD_INTERVAL: Duration = Duration::from_secs(10);

/// The client-caused events whose log lines are folded: the first of an
/// interval is logged in full, the rest as one count when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// A connection failed before its fortune was written (reset, gone).
    NotDelivered,
    /// No fortune fits one UDP datagram.
    NoFortuneFits,
    /// accept(2) failed for one client (it left during its handshake).
    AcceptFailed,
    /// A connection was closed at once: its source holds `--max-per-source`.
    OverSourceCap,
    /// A slow reader was closed: its source had its share of the writers.
    OverWriterShare,
    /// A datagram from a port below 1024 or from our own port: not answered.
    DatagramIgnored,
    /// A datagram over its source's `--udp-rate`: not answered.
    DatagramLimited,
    /// A datagram over the reply budget of all sources together: not answered.
    DatagramOverBudget,
    /// A UDP reply could not be sent.
    ReplyFailed,
    /// A message to the service manager (`NOTIFY_SOCKET`) was dropped.
    NotifyFailed,
    /// A connection from `--proxy-from` without a valid PROXY header in time.
    ProxyHeader,
}

const FOLDS: [Fold; 11] = [
    Fold::NotDelivered,
    Fold::NoFortuneFits,
    Fold::AcceptFailed,
    Fold::OverSourceCap,
    Fold::DatagramIgnored,
    Fold::DatagramLimited,
    Fold::ReplyFailed,
    Fold::NotifyFailed,
    Fold::OverWriterShare,
    Fold::DatagramOverBudget,
    Fold::ProxyHeader,
];

impl Fold {
    fn level(self) -> log::Level {
        match self {
            // A configuration to fix (the collection, the balancer) or a manager gone.
            Fold::NoFortuneFits | Fold::NotifyFailed | Fold::ProxyHeader => log::Level::Warn,
            Fold::AcceptFailed => log::Level::Debug,
            _ => log::Level::Info,
        }
    }

    /// What the count line counts.
    fn what(self) -> &'static str {
        match self {
            Fold::NotDelivered => "connections ended before their fortune was delivered",
            Fold::NoFortuneFits => "datagrams got no reply: no fortune fits one datagram",
            Fold::AcceptFailed => "accept failures",
            Fold::OverSourceCap => "connections closed over --max-per-source",
            Fold::DatagramIgnored => "datagrams ignored (source port below 1024, or our own port)",
            Fold::DatagramLimited => "datagrams not answered over --udp-rate",
            Fold::ReplyFailed => "UDP replies failed",
            Fold::NotifyFailed => "messages to the service manager dropped",
            Fold::OverWriterShare => "slow readers closed over their network's share of the writers",
            Fold::DatagramOverBudget => "datagrams not answered over the reply budget of all sources",
            Fold::ProxyHeader => "connections from --proxy-from closed without a valid PROXY header",
        }
    }

    /// Its place in [`FOLDS`] (a new kind fails to compile until it has one).
    fn index(self) -> usize {
        match self {
            Fold::NotDelivered => 0,
            Fold::NoFortuneFits => 1,
            Fold::AcceptFailed => 2,
            Fold::OverSourceCap => 3,
            Fold::DatagramIgnored => 4,
            Fold::DatagramLimited => 5,
            Fold::ReplyFailed => 6,
            Fold::NotifyFailed => 7,
            Fold::OverWriterShare => 8,
            Fold::DatagramOverBudget => 9,
            Fold::ProxyHeader => 10,
        }
    }

    fn counter(self) -> &'static Folded {
        static COUNTERS: [Folded; FOLDS.len()] = [const { Folded::new() }; FOLDS.len()];
        &COUNTERS[self.index()]
    }
}

/// Logs one client-caused event: in full if it is the first of its kind in
/// the interval, else only counted (see [`flush`]).
pub fn note(kind: Fold, detail: fmt::Arguments) {
    let now = now_ms();
    if kind.counter().count(now) {
        log::log!(
            kind.level(),
            "{detail} (more of these are counted: one line per {} s)",
            FOLD_INTERVAL.as_secs()
        );
    } else {
        report_due(kind, now, false);
    }
}

/// Logs the counts of intervals that have ended. The service calls it every
/// few seconds, so a count is logged even when the events stop.
pub fn flush() {
    report(now_ms(), false);
}

/// Logs every count not logged yet, interval over or not: before exiting.
pub fn flush_all() {
    report(now_ms(), true);
}

fn report(now: u64, all: bool) {
    for kind in FOLDS {
        report_due(kind, now, all);
    }
}

fn report_due(kind: Fold, now: u64, all: bool) {
    if let Some((more, ms)) = kind.counter().take_due(now, all) {
        log::log!(
            kind.level(),
            "{more} more {} in the last {} s",
            kind.what(),
            ms.div_ceil(1000)
        );
    }
}

/// Milliseconds since the first call: a clock that fits an atomic.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One kind's count in the current interval.
struct Folded {
    /// Events since the interval began, the one logged in full included.
    pending: AtomicU64,
    /// When the interval began (ms of [`now_ms`]).
    since: AtomicU64,
}

impl Folded {
    const fn new() -> Folded {
        Folded {
            pending: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    /// Counts one event; true if it begins an interval (log it in full).
    fn count(&self, now: u64) -> bool {
        if self.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            self.since.store(now, Ordering::Release);
            return true;
        }
        false
    }

    /// Once the interval is over (or at once if `all`): ends it, and returns
    /// how many events followed the one logged in full, if any, and in how
    /// many milliseconds.
    fn take_due(&self, now: u64, all: bool) -> Option<(u64, u64)> {
        let since = self.since.load(Ordering::Acquire);
        let elapsed = now.saturating_sub(since);
        if elapsed < FOLD_INTERVAL.as_millis() as u64 && !all {
            return None;
        }
        // One thread ends the interval; the others see the new start.
        self.since
            .compare_exchange(since, now, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        let events = self.pending.swap(0, Ordering::AcqRel);
        (events > 1).then(|| (events - 1, elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_counter() {
        for (i, kind) in FOLDS.into_iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn folding_logs_the_first_then_a_count_per_interval() {
        let f = Folded::new();
        let interval = FOLD_INTERVAL.as_millis() as u64;
        assert!(f.count(1000), "the first is logged in full");
        for t in 1001..1100 {
            assert!(!f.count(t));
        }
        assert_eq!(f.take_due(1000 + interval - 1, false), None, "interval not over");
        assert_eq!(f.take_due(1000 + interval, false), Some((99, interval)));
        assert_eq!(f.take_due(1000 + 2 * interval, false), None, "nothing since");
        // A lone event is logged in full, and no count follows it.
        assert!(f.count(5 * interval));
        assert_eq!(f.take_due(7 * interval, false), None);
        assert!(f.count(7 * interval), "a new interval begins");
        // Before exiting, what is pending is logged whatever the interval.
        assert!(!f.count(7 * interval + 1));
        assert_eq!(f.take_due(7 * interval + 5, true), Some((1, 5)));
    }
}
