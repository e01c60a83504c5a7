//! UDP replies a client can make the service send, bounded twice: a token
//! bucket per source prefix (BIND's response-rate limiting being the
//! model), and one reply budget for all sources together, in which
//! prefixes seen asking a moment ago come first.
//!
//! Why both: a source address is anyone's to forge. The per-prefix buckets
//! bound what a victim network gets; but a flood forged from many prefixes
//! stays within every prefix's rate, and only the budget bounds what it
//! makes the service send. Without a preference, a bystander would get the
//! budget's share the flood leaves it: next to nothing. So the budget keeps
//! its lower half for the prefixes seen in the last [`SEEN_SPAN`] to twice
//! that (a client asking again, at any rate up to its own), and newcomers
//! only get what is above it: a flood forged from random prefixes is almost
//! all newcomers, while a client asking again is not.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::prefix::Prefix;

/// Token buckets per prefix: a fixed table, whatever the number of
/// (spoofed) sources; 32,768 x 16 bytes (512 KiB) per UDP socket.
const BUCKETS: usize = 1 << 15;

/// The budget for every source together is this fraction of what the
/// buckets could give (`BUCKETS x rate`): each prefix is charged on two
/// buckets, so replies spent on a flood charge a bucket at a quarter of the
/// rate on average, and a client sharing one still gets three quarters of
/// its rate. 4,096 x rate: 20,480 replies a second at the default rate.
const BUDGET_SHARE: usize = 8;

/// How long a generation of the seen filter lasts: a prefix is a "regular"
/// if seen in the current or the previous one, i.e. between one and two
/// spans ago at least. A client asking once a second or more often is
/// always a regular after its first datagram.
pub const SEEN_SPAN: Duration = Duration::from_secs(1);

/// Bits in each generation of the seen filter (512 KiB each, two of them)
/// and the bits set per prefix. At 300,000 datagrams a second from random
/// prefixes, about 1 in 100 newcomers is mistaken for a regular.
const SEEN_BITS: usize = 1 << 22;
const SEEN_HASHES: u64 = 3;

/// Replies a second for every source together at `rate` per prefix.
pub fn budget(rate: u32) -> u64 {
    u64::from(rate) * (BUCKETS / BUDGET_SHARE) as u64
}

/// What [`ReplyLimiter::allow`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Reply,
    /// The source's prefix is over `--udp-rate`.
    OverRate,
    /// Every source together is over the reply budget (a flood from many
    /// prefixes), and this one was not seen asking a moment ago.
    OverBudget,
}

/// Replies per source prefix: `rate` a second, up to `burst` at once; and
/// [`budget`] a second for all of them.
///
/// Each prefix maps (through a hash keyed at random per process) to two
/// buckets, is charged on both, and may reply while either has a token: a
/// flooding prefix drains both of its buckets, and a bystander is held back
/// only if both of its buckets are shared with floods (about 1 in 270 million
/// for one flooding prefix).
pub struct ReplyLimiter {
    rate: f64,
    burst: f64,
    buckets: Box<[Bucket]>,
    budget: Bucket,
    budget_rate: f64,
    budget_burst: f64,
    seen: Seen,
    keys: RandomState,
    epoch: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When it was last refilled, in ms since the limiter's epoch.
    at: u64,
}

impl Bucket {
    /// Refills at `rate` a second up to `burst`; returns the tokens.
    fn refill(&mut self, now: u64, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = self.at.max(now);
        self.tokens
    }
}

impl ReplyLimiter {
    /// `rate` replies a second (more than 0) and `burst` at once (at least 1).
    pub fn new(rate: u32, burst: u32, now: Instant) -> ReplyLimiter {
        let burst = f64::from(burst.max(1));
        let budget_rate = budget(rate) as f64;
        // A tenth of a second's worth: short enough that a flood is held to
        // the rate at once, and its lower half far above what regulars need.
        let budget_burst = (budget_rate / 10.0).max(4.0);
        ReplyLimiter {
            rate: f64::from(rate),
            burst,
            buckets: vec![Bucket { tokens: burst, at: 0 }; BUCKETS].into_boxed_slice(),
            budget: Bucket {
                tokens: budget_burst,
                at: 0,
            },
            budget_rate,
            budget_burst,
            seen: Seen::new(),
            keys: RandomState::new(),
            epoch: now,
        }
    }

    /// Whether a reply to `ip` is allowed now (and charges it if so).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let now = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let prefix = Prefix::of(ip);
        let regular = self
            .seen
            .check_and_mark(self.keys.hash_one(("seen", prefix)), now);
        let hash = self.keys.hash_one(prefix);
        let first = (hash % BUCKETS as u64) as usize;
        // A second bucket, never the first.
        let second = (first + 1 + ((hash >> 32) % (BUCKETS as u64 - 1)) as usize) % BUCKETS;
        let (rate, burst) = (self.rate, self.burst);
        let best = [first, second]
            .map(|i| self.buckets[i].refill(now, rate, burst))
            .into_iter()
            .fold(0.0, f64::max);
        if best < 1.0 {
            return Verdict::OverRate;
        }
        // Newcomers leave the lower half of the budget to the regulars.
        let floor = if regular {
            1.0
        } else {
            self.budget_burst / 2.0 + 1.0
        };
        if self.budget.refill(now, self.budget_rate, self.budget_burst) < floor {
            return Verdict::OverBudget;
        }
        self.budget.tokens -= 1.0;
        for i in [first, second] {
            let b = &mut self.buckets[i];
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
        Verdict::Reply
    }
}

/// The prefixes seen lately: two generations of a Bloom filter, the older
/// cleared and made current every [`SEEN_SPAN`]. A fixed size, whatever the
/// number of prefixes; a false "seen" only lets a newcomer in with the
/// regulars.
struct Seen {
    generations: [Box<[u64]>; 2],
    /// Prefixes marked in each generation, so an empty one is not cleared
    /// (its pages, never written, stay unallocated).
    marked: [usize; 2],
    current: usize,
    /// When the current generation began (ms since the limiter's epoch).
    since: u64,
}

impl Seen {
    fn new() -> Seen {
        let generation = || vec![0u64; SEEN_BITS / 64].into_boxed_slice();
        Seen {
            generations: [generation(), generation()],
            marked: [0, 0],
            current: 0,
            since: 0,
        }
    }

    /// True if the prefix hashed to `hash` was marked in either generation;
    /// marks it in the current one.
    fn check_and_mark(&mut self, hash: u64, now: u64) -> bool {
        self.rotate(now);
        let bits = bits(hash);
        let seen = self
            .generations
            .iter()
            .any(|g| bits.iter().all(|&b| g[b / 64] & (1 << (b % 64)) != 0));
        let current = &mut self.generations[self.current];
        for b in bits {
            current[b / 64] |= 1 << (b % 64);
        }
        self.marked[self.current] += 1;
        seen
    }

    fn rotate(&mut self, now: u64) {
        let span = SEEN_SPAN.as_millis() as u64;
        let elapsed = now.saturating_sub(self.since);
        if elapsed < span {
            return;
        }
        // Both are stale after two spans of silence.
        let stale = if elapsed >= 2 * span { 2 } else { 1 };
        for _ in 0..stale {
            self.current = 1 - self.current;
            if std::mem::take(&mut self.marked[self.current]) > 0 {
                self.generations[self.current].fill(0);
            }
        }
        self.since = now;
    }
}

/// The filter bits of a prefix hash (double hashing).
fn bits(hash: u64) -> [usize; SEEN_HASHES as usize] {
    let (a, b) = (hash & 0xffff_ffff, (hash >> 32) | 1);
    std::array::from_fn(|i| (a.wrapping_add(b.wrapping_mul(i as u64)) % SEEN_BITS as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn replies(limiter: &mut ReplyLimiter, ip: IpAddr, at: Instant, asks: usize) -> usize {
        (0..asks)
            .filter(|_| limiter.allow(ip, at) == Verdict::Reply)
            .count()
    }

    #[test]
    fn a_prefix_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut limiter = ReplyLimiter::new(5, 10, t0);
        let flood: IpAddr = "192.0.2.1".parse().unwrap();
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        assert_eq!(replies(&mut limiter, flood, t0, 100), 10, "the burst");
        // Same /24: the same buckets.
        assert_eq!(limiter.allow(neighbour, t0), Verdict::OverRate);
        // One second later: five more.
        assert_eq!(replies(&mut limiter, flood, t0 + SECOND, 100), 5, "the rate");
        // Another prefix (IPv4 or IPv6) is not held back by the flood.
        for other in ["192.0.3.1", "2001:db8::1", "::ffff:198.51.100.7"] {
            assert_eq!(
                limiter.allow(other.parse().unwrap(), t0 + SECOND),
                Verdict::Reply,
                "{other}"
            );
        }
        // IPv4-mapped IPv6 is the IPv4 source.
        assert_eq!(
            limiter.allow("::ffff:192.0.2.9".parse().unwrap(), t0 + SECOND),
            Verdict::OverRate
        );
        // Tokens never exceed the burst, however long the quiet.
        assert_eq!(replies(&mut limiter, flood, t0 + 3600 * SECOND, 100), 10);
    }

    /// A forged source per datagram, each a new /24, at 15 x the budget (the
    /// 308,000 a second of issue 19):
    /// the replies stay within the budget, and a client asking four times
    /// a second all along is answered every time but its first.
    #[test]
    fn a_regular_is_answered_through_a_flood_from_many_prefixes() {
        let t0 = Instant::now();
        let mut limiter = ReplyLimiter::new(5, 10, t0);
        let budget = limiter.budget_rate;
        assert_eq!(budget, 20_480.0);
        let per_ms = (budget as u32 * 15) / 1000;
        let regular: IpAddr = "198.51.100.7".parse().unwrap();
        let (mut flood_replies, mut answered, mut asked) = (0u32, 0, 0);
        let mut source = 0x0100_0000u32;
        for ms in 0..5_000u32 {
            let now = t0 + Duration::from_millis(u64::from(ms));
            for _ in 0..per_ms {
                source = source.wrapping_add(0x9e37_79b9 & !0xff);
                flood_replies += u32::from(limiter.allow(IpAddr::V4(source.into()), now) == Verdict::Reply);
            }
            if ms % 250 == 0 {
                asked += 1;
                answered += usize::from(limiter.allow(regular, now) == Verdict::Reply);
            }
        }
        assert!(
            f64::from(flood_replies) <= budget * 5.0 + limiter.budget_burst,
            "{flood_replies} replies to the flood in 5 s"
        );
        assert!(answered >= asked - 1, "the regular got {answered} of {asked}");
    }

    #[test]
    fn the_seen_filter_forgets_after_two_spans() {
        let mut seen = Seen::new();
        let span = SEEN_SPAN.as_millis() as u64;
        assert!(!seen.check_and_mark(42, 0));
        assert!(seen.check_and_mark(42, 1));
        assert!(seen.check_and_mark(42, span + 1), "the previous generation");
        assert!(!seen.check_and_mark(7, span + 2));
        // Two spans without it: gone, and the emptied generations were cleared.
        assert!(!seen.check_and_mark(42, 4 * span));
        assert_eq!(seen.marked.iter().sum::<usize>(), 1);
    }
}
