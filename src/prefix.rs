//! What a "source" is: the network prefix a client controls cheaply (the
//! /24 of an IPv4 address, the /48 of an IPv6 one, an IPv4-mapped IPv6
//! address counting as IPv4). Per-source caps ([`crate::sources`]) and the
//! UDP reply limiter ([`crate::ratelimit`]) count by it.
//!
//! Why /48 for IPv6: it is what one site gets (RIPE-690 recommends it for
//! business customers, and a free tunnel broker hands one out on request),
//! so counting by anything longer lets one customer be 256 sources (/56s)
//! or 65,536 (/64s). The price: customers of a provider that hands out
//! /56s or /64s from one shared /48 (some hosting and mobile networks)
//! share one source's share, as customers behind one IPv4 /24 do.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A client's network: the /24 of an IPv4 address, the /48 of an IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prefix {
    V4(u32),
    V6(u64),
}

impl Prefix {
    pub fn of(ip: IpAddr) -> Prefix {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => Prefix::V4(u32::from(v4) & 0xffff_ff00),
            // The top 48 bits, kept in the top of a u64.
            IpAddr::V6(v6) => Prefix::V6(((u128::from(v6) >> 64) as u64) & !0xffff),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Prefix::V4(bits) => write!(f, "{}/24", Ipv4Addr::from(bits)),
            Prefix::V6(bits) => write!(f, "{}/48", Ipv6Addr::from(u128::from(bits) << 64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(s: &str) -> String {
        Prefix::of(s.parse().unwrap()).to_string()
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(prefix("::ffff:192.0.2.77"), "192.0.2.0/24");
        assert_eq!(prefix("2001:db8:aa:bbcc:1::1"), "2001:db8:aa::/48");
        let same = |a: &str, b: &str| Prefix::of(a.parse().unwrap()) == Prefix::of(b.parse().unwrap());
        // Every /56 and /64 of one /48 is one source.
        assert!(same("2001:db8:aa:100::1", "2001:db8:aa:ff00::1"));
        assert!(!same("2001:db8:aa::1", "2001:db8:ab::1"));
        assert!(same("127.0.0.1", "127.0.0.200"));
        assert!(!same("127.0.0.1", "127.0.1.1"));
    }
}
