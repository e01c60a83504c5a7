//! Whether the serving threads are alive and making progress, which is what
//! the watchdog ping vouches for: each serving loop (the workers together,
//! each UDP thread) beats a [`Heartbeat`] at least every [`BEAT_EVERY`],
//! idle or not, and the main loop feeds the watchdog only while no heartbeat
//! is older than [`STALL`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest a serving loop waits without beating.
#[cfg(not(test))]
pub const BEAT_EVERY: Duration = Duration::from_secs(5);
#[cfg(test)]
pub const BEAT_EVERY: Duration = Duration::from_millis(250);

/// A heartbeat older than this means the loop is wedged: several beats
/// missed, yet well inside the shipped unit's `WatchdogSec=30`.
pub const STALL: Duration = BEAT_EVERY.saturating_mul(4);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX)
}

/// When a serving loop last went round.
#[derive(Debug)]
pub struct Heartbeat {
    /// Milliseconds after [`epoch`].
    last: AtomicU64,
    /// Test hook (compiled in unit tests only): see [`Sabotage`].
    #[cfg(test)]
    pub sabotage: std::sync::Mutex<Option<Sabotage>>,
}

/// What a unit test makes the next [`Heartbeat::beat`] do to its thread.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// Panic: the thread dies.
    Kill,
    /// Sleep until the sabotage is lifted: the thread is wedged.
    Wedge,
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat {
            last: AtomicU64::new(millis(Instant::now())),
            #[cfg(test)]
            sabotage: std::sync::Mutex::new(None),
        }
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        #[cfg(test)]
        self.sabotaged();
        self.last.store(millis(Instant::now()), Ordering::Relaxed);
    }

    /// How long since the last beat, at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        let last = self.last.load(Ordering::Relaxed);
        Duration::from_millis(millis(now).saturating_sub(last))
    }

    /// True once the last beat is older than [`STALL`].
    pub fn stalled(&self, now: Instant) -> bool {
        self.age(now) > STALL
    }

    #[cfg(test)]
    fn sabotaged(&self) {
        let take = || *self.sabotage.lock().unwrap();
        match take() {
            Some(Sabotage::Kill) => {
                *self.sabotage.lock().unwrap() = None;
                panic!("test hook: this thread is killed");
            }
            Some(Sabotage::Wedge) => {
                while take() == Some(Sabotage::Wedge) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_stalls_only_after_several_beats_missed() {
        let heart = Heartbeat::default();
        let now = Instant::now();
        heart.beat();
        assert!(!heart.stalled(now));
        assert!(!heart.stalled(now + BEAT_EVERY * 2));
        assert!(heart.stalled(now + STALL + BEAT_EVERY));
    }
}
