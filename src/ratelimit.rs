//! UDP replies a client can make the service send, bounded: a token bucket
//! per source prefix, BIND's response-rate limiting being the model.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

use crate::prefix::Prefix;

/// Token buckets in the reply limiter: a fixed table, whatever the number of
/// (spoofed) sources; 4,096 x 24 bytes per UDP socket.
const BUCKETS: usize = 4096;

/// Replies per source prefix: `rate` a second, up to `burst` at once.
///
/// Each prefix maps (through a hash keyed at random per process) to two
/// buckets, is charged on both, and may reply while either has a token: a
/// flooding prefix drains both of its buckets, and a bystander is held back
/// only if both of its buckets are shared with floods (about 1 in 8 million
/// for one flooding prefix). The table being fixed, floods from many prefixes
/// at once also bound the total: at most `BUCKETS x rate` replies a second.
pub struct ReplyLimiter {
    rate: f64,
    burst: f64,
    buckets: Box<[Bucket]>,
    keys: std::collections::hash_map::RandomState,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ReplyLimiter {
    /// `rate` replies a second (more than 0) and `burst` at once (at least 1).
    pub fn new(rate: u32, burst: u32, now: Instant) -> ReplyLimiter {
        let burst = f64::from(burst.max(1));
        ReplyLimiter {
            rate: f64::from(rate),
            burst,
            buckets: vec![
                Bucket {
                    tokens: burst,
                    at: now
                };
                BUCKETS
            ]
            .into_boxed_slice(),
            keys: Default::default(),
        }
    }

    /// True if a reply to `ip` is allowed now (and charges it).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let hash = self.keys.hash_one(Prefix::of(ip));
        let first = (hash % BUCKETS as u64) as usize;
        // A second bucket, never the first.
        let second = (first + 1 + ((hash >> 32) % (BUCKETS as u64 - 1)) as usize) % BUCKETS;
        let (rate, burst) = (self.rate, self.burst);
        let mut best: f64 = 0.0;
        for i in [first, second] {
            let b = &mut self.buckets[i];
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate).min(burst);
            b.at = now.max(b.at);
            best = best.max(b.tokens);
        }
        if best < 1.0 {
            return false;
        }
        for i in [first, second] {
            let b = &mut self.buckets[i];
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_prefix_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut limiter = ReplyLimiter::new(5, 10, t0);
        let flood: IpAddr = "192.0.2.1".parse().unwrap();
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        let allowed = (0..100).filter(|_| limiter.allow(flood, t0)).count();
        assert_eq!(allowed, 10, "the burst");
        // Same /24: the same buckets.
        assert!(!limiter.allow(neighbour, t0));
        // One second later: five more.
        let allowed = (0..100).filter(|_| limiter.allow(flood, t0 + SECOND)).count();
        assert_eq!(allowed, 5, "the rate");
        // Another prefix (IPv4 or IPv6) is not held back by the flood.
        for other in ["192.0.3.1", "2001:db8::1", "::ffff:198.51.100.7"] {
            assert!(limiter.allow(other.parse().unwrap(), t0 + SECOND), "{other}");
        }
        // IPv4-mapped IPv6 is the IPv4 source.
        assert!(!limiter.allow("::ffff:192.0.2.9".parse().unwrap(), t0 + SECOND));
        // Tokens never exceed the burst, however long the quiet.
        let later = t0 + 3600 * SECOND;
        assert_eq!((0..100).filter(|_| limiter.allow(flood, later)).count(), 10);
    }

    #[test]
    fn floods_from_many_prefixes_share_a_bounded_table() {
        let t0 = Instant::now();
        let mut limiter = ReplyLimiter::new(1, 1, t0);
        // 100,000 spoofed /24s: at most one reply per bucket.
        let allowed = (0..100_000u32)
            .filter(|i| limiter.allow(IpAddr::V4(((10u32 << 24) | (i << 8)).into()), t0))
            .count();
        assert!(allowed <= BUCKETS, "{allowed} replies from a table of {BUCKETS}");
    }
}
