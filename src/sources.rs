//! Per-source fairness: what a "source" is (its network prefix, the unit a
//! client controls cheaply) and how many descriptors one may hold at once.
//!
//! A source is a [`Prefix`] (what a home connection or a small cloud tenant
//! gets).
//! Every accepted TCP connection takes a [`SourceSlot`] that lives exactly as
//! long as its descriptor: while it is served and while it waits in
//! [`crate::linger`] for the peer to close. Over the cap the connection is
//! closed at once, without a fortune.
//!
//! The counts are a fixed table of atomic counters indexed by a hash of the
//! prefix (keyed at random per process, so no client can choose whom it
//! collides with): no lock on the way of a connection, and no memory that
//! grows with the number of addresses a client can claim. Two sources
//! sharing a counter (about 1 in 65,536 for a given pair) share one cap: a
//! collision only makes the cap stricter, never looser.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::resource::{Resource, getrlimit};

use crate::fold::{self, Fold};
use crate::prefix::Prefix;
use crate::stats::Stats;

/// Counters in the table (256 KiB, allocated at start when there is a cap):
/// two sources share one with a chance of 1 in 65,536.
const COUNTERS: usize = 1 << 16;

/// Share of the descriptor limit one source may hold by default.
pub const DEFAULT_SHARE: u64 = 8;

/// The connections each source holds, and the cap.
pub struct Sources {
    /// `None`: no cap (`--max-per-source 0`), nothing counted.
    cap: Option<u32>,
    /// Connections held, per hashed prefix (empty without a cap).
    held: Box<[AtomicU32]>,
    keys: RandomState,
    stats: Arc<Stats>,
}

/// One connection's place in its source's count, given back when dropped.
/// Carry it beside the stream and drop it with (after) the stream.
#[must_use]
pub struct SourceSlot<'a> {
    taken: Option<&'a AtomicU32>,
}

impl Sources {
    pub fn new(cap: Option<u32>, stats: Arc<Stats>) -> Sources {
        let counters = if cap.is_some() { COUNTERS } else { 0 };
        Sources {
            cap,
            held: (0..counters).map(|_| AtomicU32::new(0)).collect(),
            keys: RandomState::new(),
            stats,
        }
    }

    /// The cap for `--max-per-source`: 0 is none; unset is [`DEFAULT_SHARE`]
    /// of the descriptor limit now in force (read once it has been raised).
    pub fn cap(option: Option<u32>) -> Option<u32> {
        match option {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                let nofile = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
                Some(default_cap(nofile))
            }
        }
    }

    /// A slot for a newly accepted connection from `peer`, or `None` if its
    /// source already holds the cap (counted, logged folded; the caller
    /// closes it). Peers without an address (Unix sockets) are not counted.
    pub fn admit(&self, peer: Option<SocketAddr>) -> Option<SourceSlot<'_>> {
        let (Some(cap), Some(peer)) = (self.cap, peer) else {
            return Some(SourceSlot { taken: None });
        };
        let prefix = Prefix::of(peer.ip());
        let counter = self.counter(prefix);
        if counter.fetch_add(1, Ordering::AcqRel) >= cap {
            counter.fetch_sub(1, Ordering::AcqRel);
            self.stats.over_source_cap.fetch_add(1, Ordering::Relaxed);
            fold::note(
                Fold::OverSourceCap,
                format_args!("{peer}: {prefix} already holds {cap} connections (--max-per-source); closing"),
            );
            return None;
        }
        Some(SourceSlot { taken: Some(counter) })
    }

    fn counter(&self, prefix: Prefix) -> &AtomicU32 {
        &self.held[(self.keys.hash_one(prefix) % self.held.len() as u64) as usize]
    }
}

/// [`DEFAULT_SHARE`] of the descriptor limit `nofile`.
fn default_cap(nofile: u64) -> u32 {
    (nofile / DEFAULT_SHARE).clamp(1, u64::from(u32::MAX)) as u32
}

impl Drop for SourceSlot<'_> {
    fn drop(&mut self) {
        if let Some(counter) = self.taken {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections `prefix` holds now.
    fn held(sources: &Sources, prefix: Prefix) -> u32 {
        sources.counter(prefix).load(Ordering::Relaxed)
    }

    #[test]
    fn default_cap_is_a_share_of_the_limit() {
        assert_eq!(default_cap(20_000), 2_500);
        assert_eq!(default_cap(3), 1);
        assert_eq!(Sources::cap(Some(0)), None);
        assert_eq!(Sources::cap(Some(7)), Some(7));
    }

    #[test]
    fn slots_are_capped_per_source_and_given_back() {
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let sources = Sources::new(Some(2), Arc::default());
        let local = Prefix::of("127.0.0.1".parse().unwrap());
        let first = sources.admit(peer("127.0.0.1:40001")).expect("first admitted");
        let second = sources.admit(peer("127.0.0.9:40002")).expect("second admitted");
        assert!(
            sources.admit(peer("127.0.0.1:40003")).is_none(),
            "third over the cap"
        );
        assert_eq!(held(&sources, local), 2);
        assert_eq!(sources.stats.over_source_cap.load(Ordering::Relaxed), 1);
        drop(first);
        assert_eq!(held(&sources, local), 1);
        let third = sources
            .admit(peer("[::ffff:127.0.0.1]:40004"))
            .expect("a slot was given back");
        drop((second, third));
        assert_eq!(held(&sources, local), 0);
        // Unix peers (no address) are not counted.
        let _unix: Vec<_> = (0..5).map(|_| sources.admit(None).unwrap()).collect();
        assert_eq!(held(&sources, local), 0);
        // No cap: nothing counted, no table.
        let open = Sources::new(None, Arc::default());
        let _slots: Vec<_> = (0..5).map(|_| open.admit(peer("127.0.0.1:1")).unwrap()).collect();
        assert!(open.held.is_empty());
    }
}
