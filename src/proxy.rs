//! The PROXY protocol header a load balancer sends first on each connection
//! to say whom it is forwarding (haproxy's doc/proxy-protocol.txt): version 2
//! (binary) and version 1 (text). Pure: bytes in, the header out; reading
//! them from a socket is [`crate::proxied`]'s job, and whom to believe is
//! [`crate::cidr`]'s.
//!
//! Strict: anything the specification does not allow is refused (the
//! caller closes the connection), and no header longer than [`MAX_HEADER`]
//! is read, so a peer cannot make a connection hold more than that.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest header read: a version 2 header with its addresses and up to
/// about 800 bytes of TLVs (haproxy sends none unless told to). A version 1
/// header is 107 bytes at most.
pub const MAX_HEADER: usize = 1024;
/// Version 1: "PROXY " ... CRLF, at most 107 bytes (the specification's bound).
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: what follows is the client's own data.
    pub len: usize,
    /// The client the balancer forwards; `None` for a `LOCAL` command (the
    /// balancer's own health check), an `UNKNOWN` (v1) or `UNSPEC` (v2)
    /// family, or a Unix socket: served, but without a source.
    pub source: Option<SocketAddr>,
}

/// Why a header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The bytes begin with neither signature.
    NoHeader,
    /// Version 2 with another version than 2 in `ver_cmd`.
    Version(u8),
    /// Version 2 with a command other than LOCAL (0) or PROXY (1).
    Command(u8),
    /// Version 2 with an address family or transport the specification does not define.
    Family(u8),
    /// Version 2 whose length cannot hold the addresses of its family.
    ShortAddresses,
    /// Longer than [`MAX_HEADER`] (v2) or 107 bytes (v1).
    TooLong,
    /// Version 1 not of the form `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN...\r\n`.
    Text,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::NoHeader => f.write_str("no PROXY protocol header"),
            Invalid::Version(v) => write!(f, "PROXY v2 header of version {v}"),
            Invalid::Command(c) => write!(f, "PROXY v2 header with unknown command {c}"),
            Invalid::Family(b) => write!(f, "PROXY v2 header with unknown family/transport 0x{b:02x}"),
            Invalid::ShortAddresses => f.write_str("PROXY v2 header too short for its addresses"),
            Invalid::TooLong => write!(f, "PROXY header longer than {MAX_HEADER} bytes"),
            Invalid::Text => f.write_str("malformed PROXY v1 header"),
        }
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` if `buf` is a proper
/// beginning of one (read more), else the header or why it is refused.
/// Bytes after the header are not looked at.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    if starts(buf, &SIGNATURE) {
        return v2(buf);
    }
    if starts(buf, V1_PREFIX) {
        return v1(buf);
    }
    Err(Invalid::NoHeader)
}

/// `buf` and `prefix` agree on their common length, and `buf` is not empty.
fn starts(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    n > 0 && buf[..n] == prefix[..n]
}

fn v2(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(None);
    };
    let (ver_cmd, fam) = (fixed[12], fixed[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Invalid::Version(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        other => return Err(Invalid::Command(other)),
    };
    let len = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_HEADER {
        return Err(Invalid::TooLong);
    }
    // Family: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX; transport: 0 UNSPEC, 1 STREAM, 2 DGRAM.
    let addresses = match (fam >> 4, fam & 0x0f) {
        (_, 3..) | (4.., _) => return Err(Invalid::Family(fam)),
        (0, _) => 0,
        (1, _) => 12,
        (2, _) => 36,
        (_, _) => 216,
    };
    if len - 16 < addresses {
        return Err(Invalid::ShortAddresses);
    }
    let Some(body) = buf.get(16..len) else {
        return Ok(None);
    };
    // TLVs after the addresses are skipped: nothing here needs them.
    let source = match fam >> 4 {
        _ if local => None,
        1 => {
            let ip = Ipv4Addr::from(<[u8; 4]>::try_from(&body[0..4]).unwrap_or_default());
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        2 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&body[0..16]).unwrap_or_default());
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be_bytes([body[32], body[33]]),
            ))
        }
        _ => None,
    };
    Ok(Some(Header { len, source }))
}

fn v1(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(Invalid::TooLong)
        } else if window.contains(&b'\n') {
            Err(Invalid::Text)
        } else {
            Ok(None)
        };
    };
    let line = &buf[V1_PREFIX.len()..end];
    // No CR or LF but the one ending it, else a beginning of it would be refused.
    if line.contains(&b'\r') || line.contains(&b'\n') {
        return Err(Invalid::Text);
    }
    let line = std::str::from_utf8(line).map_err(|_| Invalid::Text)?;
    let len = end + 2;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        ["TCP4", src, dst, sport, dport] => {
            let (src, _) = (v4(src)?, v4(dst)?);
            port(dport)?;
            Some(SocketAddr::new(IpAddr::V4(src), port(sport)?))
        }
        ["TCP6", src, dst, sport, dport] => {
            let (src, _) = (v6(src)?, v6(dst)?);
            port(dport)?;
            Some(SocketAddr::new(IpAddr::V6(src), port(sport)?))
        }
        _ => return Err(Invalid::Text),
    };
    Ok(Some(Header { len, source }))
}

fn v4(s: &str) -> Result<Ipv4Addr, Invalid> {
    s.parse().map_err(|_| Invalid::Text)
}

fn v6(s: &str) -> Result<Ipv6Addr, Invalid> {
    s.parse().map_err(|_| Invalid::Text)
}

/// A port in decimal: digits only, no leading zero (the specification's form).
fn port(s: &str) -> Result<u16, Invalid> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten().ok_or(Invalid::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: signature, ver_cmd, fam, len, then `rest`.
    fn v2(ver_cmd: u8, fam: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend([ver_cmd, fam]);
        h.extend((rest.len() as u16).to_be_bytes());
        h.extend(rest);
        h
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    /// The bytes haproxy sends for a TCP/IPv4 client 192.0.2.10:40000 to 198.51.100.1:17.
    const TCP4: [u8; 28] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, // version 2, PROXY
        0x11, // AF_INET, STREAM
        0x00, 0x0C, // 12 bytes of addresses
        192, 0, 2, 10, // source
        198, 51, 100, 1, // destination
        0x9C, 0x40, // source port 40000
        0x00, 0x11, // destination port 17
    ];

    #[test]
    fn v2_inet() {
        assert_eq!(
            parse(&TCP4),
            Ok(Some(Header {
                len: 28,
                source: addr("192.0.2.10:40000")
            }))
        );
        // What follows is the client's: not part of the header.
        let mut more = TCP4.to_vec();
        more.extend(b"hello");
        assert_eq!(parse(&more).unwrap().unwrap().len, 28);
        // Every proper beginning asks for more.
        for n in 1..TCP4.len() {
            assert_eq!(parse(&TCP4[..n]), Ok(None), "{n} bytes");
        }
    }

    #[test]
    fn v2_inet6_with_tlvs_skipped() {
        let mut rest = Vec::new();
        rest.extend("2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        rest.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        rest.extend([0x01, 0xBB, 0x1B, 0x69]); // 443, 7017
        // PP2_TYPE_ALPN (0x01), length 2, "h2"; PP2_TYPE_NOOP (0x04), length 0.
        rest.extend([0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00]);
        let h = v2(0x21, 0x21, &rest);
        assert_eq!(h[13], 0x21);
        assert_eq!(
            parse(&h),
            Ok(Some(Header {
                len: 16 + 36 + 8,
                source: addr("[2001:db8::7]:443")
            }))
        );
        assert_eq!(parse(&h[..h.len() - 1]), Ok(None), "TLVs are within len");
    }

    #[test]
    fn v2_local_and_unspec_have_no_source() {
        // LOCAL (health check): addresses, if any, are ignored.
        assert_eq!(
            parse(&v2(0x20, 0x00, &[])),
            Ok(Some(Header {
                len: 16,
                source: None
            }))
        );
        assert_eq!(parse(&v2(0x20, 0x11, &TCP4[16..])).unwrap().unwrap().source, None);
        // PROXY over an unspecified family; a Unix socket's 216 bytes of paths.
        assert_eq!(parse(&v2(0x21, 0x00, &[])).unwrap().unwrap().source, None);
        let unix = parse(&v2(0x21, 0x31, &[0; 216])).unwrap().unwrap();
        assert_eq!((unix.len, unix.source), (232, None));
    }

    #[test]
    fn v2_refusals() {
        assert_eq!(parse(&v2(0x11, 0x11, &TCP4[16..])), Err(Invalid::Version(1)));
        assert_eq!(parse(&v2(0x22, 0x11, &TCP4[16..])), Err(Invalid::Command(2)));
        assert_eq!(parse(&v2(0x21, 0x41, &TCP4[16..])), Err(Invalid::Family(0x41)));
        assert_eq!(parse(&v2(0x21, 0x13, &TCP4[16..])), Err(Invalid::Family(0x13)));
        assert_eq!(
            parse(&v2(0x21, 0x11, &TCP4[16..27])),
            Err(Invalid::ShortAddresses)
        );
        assert_eq!(parse(&v2(0x21, 0x21, &TCP4[16..])), Err(Invalid::ShortAddresses));
        // The length alone refuses it: nothing more is read.
        let mut long = v2(0x21, 0x11, &TCP4[16..]);
        long[14..16].copy_from_slice(&((MAX_HEADER - 16 + 1) as u16).to_be_bytes());
        assert_eq!(parse(&long[..16]), Err(Invalid::TooLong));
        long[14..16].copy_from_slice(&((MAX_HEADER - 16) as u16).to_be_bytes());
        assert_eq!(parse(&long[..16]), Ok(None));
        // Not a header: a client's own bytes, or a signature gone wrong.
        assert_eq!(parse(b"GET / HTTP/1.0\r\n"), Err(Invalid::NoHeader));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIT\r"), Err(Invalid::NoHeader));
        assert_eq!(parse(b""), Err(Invalid::NoHeader));
    }

    #[test]
    fn v1() {
        let tcp4 = b"PROXY TCP4 192.0.2.10 198.51.100.1 40000 17\r\nhello";
        assert_eq!(
            parse(tcp4),
            Ok(Some(Header {
                len: 45,
                source: addr("192.0.2.10:40000")
            }))
        );
        for n in 1..45 {
            assert_eq!(parse(&tcp4[..n]), Ok(None), "{n} bytes");
        }
        let tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 7017\r\n";
        assert_eq!(parse(tcp6).unwrap().unwrap().source, addr("[2001:db8::7]:65535"));
        let unknown = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(
            parse(unknown),
            Ok(Some(Header {
                len: unknown.len(),
                source: None
            }))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().len, 15);
        // The worst case of the specification fits; one byte more does not.
        let longest = format!("PROXY UNKNOWN {}\r\n", "x".repeat(V1_MAX - 16));
        assert_eq!(longest.len(), V1_MAX);
        assert!(parse(longest.as_bytes()).unwrap().is_some());
        let over = format!("PROXY UNKNOWN {}\r\n", "x".repeat(V1_MAX - 15));
        assert_eq!(parse(over.as_bytes()), Err(Invalid::TooLong));
        assert_eq!(parse(&over.as_bytes()[..V1_MAX - 1]), Ok(None));
        assert_eq!(parse(&over.as_bytes()[..V1_MAX]), Err(Invalid::TooLong));
        for bad in [
            &b"PROXY TCP4 192.0.2.10 198.51.100.1 40000\r\n"[..],
            b"PROXY TCP4 2001:db8::7 198.51.100.1 40000 17\r\n",
            b"PROXY TCP6 192.0.2.10 198.51.100.1 40000 17\r\n",
            b"PROXY TCP4 192.0.2.10 198.51.100.1 040000 17\r\n",
            b"PROXY TCP4 192.0.2.10 198.51.100.1 +4000 17\r\n",
            b"PROXY TCP4 192.0.2.10 198.51.100.1 65536 17\r\n",
            b"PROXY TCP4  192.0.2.10 198.51.100.1 4000 17\r\n",
            b"PROXY TCP4 192.0.2.10 198.51.100.1 4000 17\n",
            b"PROXY UDP4 192.0.2.10 198.51.100.1 4000 17\r\n",
            // Found by fuzzing: a bare LF or CR inside, even after UNKNOWN.
            b"PROXY UNKNOWN ]d\nOX\r\r\n",
            b"PROXY UNKNOWN x\ry\r\n",
        ] {
            assert_eq!(parse(bad), Err(Invalid::Text), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"PROXY"), Ok(None));
        assert_eq!(parse(b"PROXX"), Err(Invalid::NoHeader));
    }
}
