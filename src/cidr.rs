//! `--proxy-from`: the networks whose connections are load balancers, trusted
//! to say in a PROXY header ([`crate::proxy`]) whom they forward. Pure:
//! parsing `ADDR/BITS` and matching addresses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// One network, `ADDR/BITS` (a bare address is the host alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// True if `ip` is in this network; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, unmapped(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (s, None),
        };
        let net = unmapped(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not a network: expected ADDRESS/BITS, e.g. 10.0.0.0/24"))?,
        );
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max && b.bytes().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { net, bits };
        let masked = Cidr {
            net: mask(net, bits),
            bits,
        };
        if masked != cidr {
            return Err(format!("{s:?} has bits set past /{bits}: did you mean {masked}?"));
        }
        Ok(cidr)
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

/// The `--proxy-from` networks (none: no connection is proxied).
#[derive(Clone, Debug, Default)]
pub struct Trusted(Vec<Cidr>);

impl Trusted {
    pub fn new(networks: Vec<Cidr>) -> Trusted {
        Trusted(networks)
    }

    /// True if a connection from `peer` must begin with a PROXY header. Unix
    /// peers (no address) never do.
    pub fn trusts(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|p| self.0.iter().any(|n| n.contains(p.ip())))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Trusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(Cidr::to_string).collect();
        f.write_str(&list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_hosts() {
        assert_eq!(cidr("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::ffff:10.0.0.0/8").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0/8",
            "2001:db8::/129",
            "x/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>(),
            Err("\"10.1.2.3/8\" has bits set past /8: did you mean 10.0.0.0/8?".to_string())
        );
    }

    #[test]
    fn matches_addresses() {
        let lan = cidr("10.1.0.0/16");
        assert!(lan.contains(ip("10.1.255.3")));
        assert!(lan.contains(ip("::ffff:10.1.0.1")));
        assert!(!lan.contains(ip("10.2.0.1")));
        assert!(!lan.contains(ip("2001:db8::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        let v6 = cidr("2001:db8:aa::/48");
        assert!(v6.contains(ip("2001:db8:aa:ffff::1")));
        assert!(!v6.contains(ip("2001:db8:ab::1")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));

        let trusted = Trusted::new(vec![lan, cidr("127.0.0.1")]);
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert!(trusted.trusts(peer("10.1.0.9:5000")));
        assert!(trusted.trusts(peer("127.0.0.1:5000")));
        assert!(!trusted.trusts(peer("127.0.1.1:5000")));
        assert!(!trusted.trusts(None), "a Unix peer");
        assert!(!Trusted::default().trusts(peer("10.1.0.9:5000")));
        assert_eq!(trusted.to_string(), "10.1.0.0/16, 127.0.0.1/32");
    }
}
