//! Per-source fairness: how many descriptors one source may hold at once,
//! and how many of the writers (`--max-connections`) its slow readers may
//! keep waiting.
//!
//! A source is a [`Prefix`] (what a home connection or a small cloud tenant
//! gets).
//! Every accepted TCP connection takes a [`SourceSlot`] that lives exactly as
//! long as its descriptor: while it is served and while it waits in
//! [`crate::linger`] for the peer to close. Over the cap the connection is
//! closed at once, without a fortune. A connection whose fortune does not
//! fit its socket buffer keeps a worker waiting for its reader: it takes a
//! [`Writing`] from its slot for that wait, and a source holds at most
//! 1/[`WRITER_SHARE`] of `--max-connections` of them, so the clients of one
//! network that do not read cannot take every writer.
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
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use nix::sys::resource::{Resource, getrlimit};

use crate::fold::{self, Fold};
use crate::prefix::Prefix;
use crate::stats::Stats;

/// Counters in each table (256 KiB and 128 KiB, allocated at start when
/// there is a cap): two sources share one with a chance of 1 in 65,536.
const COUNTERS: usize = 1 << 16;

/// Share of the descriptor limit one source may hold by default.
pub const DEFAULT_SHARE: u64 = 8;

/// Share of `--max-connections` (the writers) one source's slow readers
/// may keep waiting at once: so at least seven eighths of the writers are
/// left to the other networks, whatever one of them does.
pub const WRITER_SHARE: usize = 8;

/// The connections and writers each source holds, and the caps.
pub struct Sources {
    /// `None`: no cap (`--max-per-source 0`), nothing counted.
    cap: Option<u32>,
    /// Writers one source may keep waiting (see [`Sources::writer_share`]).
    writer_share: u16,
    /// Connections held, per hashed prefix (empty without a cap).
    held: Box<[AtomicU32]>,
    /// Writers waiting for a slow reader, per hashed prefix (the same index).
    writing: Box<[AtomicU16]>,
    keys: RandomState,
    stats: Arc<Stats>,
}

/// One connection's place in its source's count, given back when dropped.
/// Carry it beside the stream and drop it with (after) the stream.
#[must_use]
pub struct SourceSlot<'a> {
    sources: &'a Sources,
    /// Its counters' index; `None` when not counted.
    index: Option<usize>,
}

/// A worker waiting for this source's slow reader, counted while this lives.
#[must_use]
pub struct Writing<'a>(Option<&'a AtomicU16>);

impl Sources {
    /// `cap` from [`Sources::cap`]; `writers` is `--max-connections`.
    pub fn new(cap: Option<u32>, writers: usize, stats: Arc<Stats>) -> Sources {
        let counters = if cap.is_some() { COUNTERS } else { 0 };
        Sources {
            cap,
            writer_share: writer_share(writers, cap.unwrap_or(u32::MAX)),
            held: (0..counters).map(|_| AtomicU32::new(0)).collect(),
            writing: (0..counters).map(|_| AtomicU16::new(0)).collect(),
            keys: RandomState::new(),
            stats,
        }
    }

    /// Connections one source may hold; `None` without a cap.
    pub fn connection_cap(&self) -> Option<u32> {
        self.cap
    }

    /// Writers one source may keep waiting for its slow readers: 1/[`WRITER_SHARE`]
    /// of `--max-connections` (at least one), and never more than its
    /// connection cap; `None` without a cap.
    pub fn writer_share(&self) -> Option<u16> {
        self.cap.map(|_| self.writer_share)
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
            return Some(SourceSlot {
                sources: self,
                index: None,
            });
        };
        let prefix = Prefix::of(peer.ip());
        let index = self.index(prefix);
        let counter = &self.held[index];
        if counter.fetch_add(1, Ordering::AcqRel) >= cap {
            counter.fetch_sub(1, Ordering::AcqRel);
            self.stats.over_source_cap.fetch_add(1, Ordering::Relaxed);
            fold::note(
                Fold::OverSourceCap,
                format_args!("{peer}: {prefix} already holds {cap} connections (--max-per-source); closing"),
            );
            return None;
        }
        Some(SourceSlot {
            sources: self,
            index: Some(index),
        })
    }

    fn index(&self, prefix: Prefix) -> usize {
        (self.keys.hash_one(prefix) % self.held.len() as u64) as usize
    }
}

impl<'a> SourceSlot<'a> {
    /// A writer to wait for this connection's slow reader, or `None` if its
    /// source already keeps its [`Sources::writer_share`] waiting (counted;
    /// the caller closes the connection and logs it).
    pub fn writer(&self) -> Option<Writing<'a>> {
        let Some(index) = self.index else {
            return Some(Writing(None));
        };
        let sources = self.sources;
        let counter = &sources.writing[index];
        if counter.fetch_add(1, Ordering::AcqRel) >= sources.writer_share {
            counter.fetch_sub(1, Ordering::AcqRel);
            sources.stats.over_writer_share.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Writing(Some(counter)))
    }
}

/// [`DEFAULT_SHARE`] of the descriptor limit `nofile`.
fn default_cap(nofile: u64) -> u32 {
    (nofile / DEFAULT_SHARE).clamp(1, u64::from(u32::MAX)) as u32
}

/// 1/[`WRITER_SHARE`] of `writers`, at least one, at most `cap`. Below
/// `u16::MAX`, so a counter never wraps: each writer adds one at most.
fn writer_share(writers: usize, cap: u32) -> u16 {
    (writers / WRITER_SHARE).clamp(1, 16_384).min(cap.max(1) as usize) as u16
}

impl Drop for SourceSlot<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.index {
            self.sources.held[index].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Some(counter) = self.0 {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections `prefix` holds now.
    fn held(sources: &Sources, prefix: Prefix) -> u32 {
        sources.held[sources.index(prefix)].load(Ordering::Relaxed)
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
        let sources = Sources::new(Some(2), 512, Arc::default());
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
        let open = Sources::new(None, 512, Arc::default());
        let _slots: Vec<_> = (0..5).map(|_| open.admit(peer("127.0.0.1:1")).unwrap()).collect();
        assert!(open.held.is_empty());
    }

    #[test]
    fn writer_shares() {
        assert_eq!(writer_share(512, 8192), 64);
        assert_eq!(writer_share(512, 10), 10, "never above the connection cap");
        assert_eq!(writer_share(7, 8192), 1, "at least one");
        assert_eq!(writer_share(65_536, u32::MAX), 8192);
        assert_eq!(writer_share(512, 0), 1);
    }

    #[test]
    fn writers_are_capped_per_source_and_given_back() {
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let sources = Sources::new(Some(100), 16, Arc::default());
        assert_eq!(sources.writer_share(), Some(2));
        let slots: Vec<_> = ["192.0.2.1:1", "192.0.2.2:2", "192.0.2.3:3"]
            .iter()
            .map(|p| sources.admit(peer(p)).expect("under the cap"))
            .collect();
        let first = slots[0].writer().expect("first writer");
        let second = slots[1].writer().expect("second writer");
        assert!(slots[2].writer().is_none(), "third over the share");
        assert_eq!(sources.stats.over_writer_share.load(Ordering::Relaxed), 1);
        // Another network has its own share; a /48 is one source.
        let v6: Vec<_> = ["[2001:db8:1:100::1]:1", "[2001:db8:1:ff00::1]:2"]
            .iter()
            .map(|p| sources.admit(peer(p)).expect("under the cap"))
            .collect();
        let _other = sources
            .admit(peer("192.0.3.1:1"))
            .unwrap()
            .writer()
            .expect("its own share");
        let _a = v6[0].writer().expect("first writer of the /48");
        let _b = v6[1].writer().expect("second writer of the /48");
        let third_v6 = sources.admit(peer("[2001:db8:1:4200::9]:3")).unwrap();
        assert!(third_v6.writer().is_none(), "a third /56 of the same /48");
        drop(first);
        let _again = slots[2].writer().expect("a writer was given back");
        drop(second);
        // Without a cap: no share, nothing counted.
        let open = Sources::new(None, 16, Arc::default());
        assert_eq!(open.writer_share(), None);
        let slot = open.admit(peer("192.0.2.1:1")).unwrap();
        let _writers: Vec<_> = (0..5).map(|_| slot.writer().unwrap()).collect();
    }
}
