//! One exchange with a server, the way Qt's Fortune Client does it:
//! resolve, connect, read until the server closes, decode exactly one frame;
//! and every way that can fail ([`Failure`], [`Error`], the exit statuses).
//! Both the one-shot command and [`bench`](super::bench) use it.

use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::wire::{self, DecodeError, Protocol};

/// Port used when `HOST[:PORT]` names none (the service's default).
pub const DEFAULT_PORT: u16 = 7017;

/// The most `fortune-client` reads of one answer: the largest frame the
/// service sends (an entry of 16 MiB, `--max-entry`'s maximum, is 32 MiB of
/// UTF-16 and a header; in text, 32 MiB of CRLF lines), and a little more. A
/// server that announces or sends more is refused (exit status 3) before
/// its bytes fill the client's memory.
pub const MAX_ANSWER: usize = (32 << 20) + 8;

/// What is read of an answer whose header announces more than
/// [`MAX_ANSWER`] before it is refused: enough for a fortune in another
/// framing (a qt4 frame is at most 64 KiB), so decode can name that.
const SNIFF: usize = 128 << 10;

/// Exit statuses of `fortune-client`, documented in docs/reference.md and pinned by
/// `tests/client.rs`.
pub mod exit {
    /// Every fortune asked for was printed; `bench`: every connection succeeded.
    pub const OK: u8 = 0;
    /// No answer: the host does not resolve, the connection was refused,
    /// reset or timed out; `bench`: some connections failed (counts printed).
    pub const NETWORK: u8 = 1;
    /// Command line not understood (clap's own status).
    pub const USAGE: u8 = 2;
    /// The server answered, but not with one well-formed frame.
    pub const FRAME: u8 = 3;
}

/// Every way one connection can fail, as `bench` counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// Nothing listens there (RST to our SYN).
    Refused,
    /// The server reset or aborted the connection.
    Reset,
    /// No connection or no end of frame within the timeout.
    Timeout,
    /// The server closed before a whole frame arrived (or sent nothing).
    Short,
    /// Bytes that are not one frame of the protocol.
    Malformed,
    /// Anything else the system reported (no route, out of ports...).
    Other,
}

impl Failure {
    pub const ALL: [Failure; 6] = [
        Failure::Refused,
        Failure::Reset,
        Failure::Timeout,
        Failure::Short,
        Failure::Malformed,
        Failure::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::Short => "short",
            Failure::Malformed => "malformed",
            Failure::Other => "other",
        }
    }

    fn of_io(e: &io::Error) -> Failure {
        match e.kind() {
            ErrorKind::ConnectionRefused => Failure::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Failure::Reset
            }
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::Timeout,
            _ => Failure::Other,
        }
    }
}

/// Why no fortune was printed; one line for the user.
#[derive(Debug)]
pub struct Error {
    pub failure: Failure,
    pub message: String,
}

impl Error {
    pub(super) fn io(doing: String, e: &io::Error) -> Error {
        let failure = Failure::of_io(e);
        let hint = match failure {
            Failure::Refused => " (is fortune-server running and listening there?)",
            Failure::Timeout => " (raise --timeout, or check the host and port)",
            _ => "",
        };
        // SO_RCVTIMEO reports EAGAIN ("Resource temporarily unavailable").
        let what = if failure == Failure::Timeout {
            "timed out".to_string()
        } else {
            e.to_string()
        };
        Error {
            failure,
            message: format!("{doing}: {what}{hint}"),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.failure {
            Failure::Short | Failure::Malformed => exit::FRAME,
            _ => exit::NETWORK,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Splits `HOST[:PORT]`: `example.org`, `example.org:7017`, `127.0.0.1`,
/// `::1`, `[::1]` and `[::1]:7017`. The port defaults to [`DEFAULT_PORT`].
pub fn parse_target(target: &str) -> Result<(String, u16), String> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = target.parse::<IpAddr>() {
        return Ok((ip.to_string(), DEFAULT_PORT));
    }
    if let Some(ip) = target.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match ip.parse::<IpAddr>() {
            Ok(ip) => Ok((ip.to_string(), DEFAULT_PORT)),
            Err(_) => Err(format!("{target:?}: {ip:?} is not an IPv6 address")),
        };
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse()
                .map_err(|_| format!("{target:?}: {port:?} is not a port number (1-65535)"))?;
            (host, port)
        }
        None => (target, DEFAULT_PORT),
    };
    if host.is_empty() || host.contains(['[', ']', ':', '/']) || port == 0 {
        return Err(format!(
            "{target:?} is not HOST[:PORT] (IPv6 addresses with a port go in brackets: [::1]:7017)"
        ));
    }
    Ok((host.to_string(), port))
}

/// Resolves `HOST[:PORT]` to the addresses to try, in the resolver's order.
pub fn resolve(target: &str) -> Result<Vec<SocketAddr>, Error> {
    let (host, port) = parse_target(target).map_err(|message| Error {
        failure: Failure::Other,
        message,
    })?;
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("cannot resolve {host}"), &e))?
        .collect();
    if addrs.is_empty() {
        return Err(Error {
            failure: Failure::Other,
            message: format!("{host} has no address"),
        });
    }
    Ok(addrs)
}

/// Connects to the first of `addrs` that answers, each within `timeout`.
pub fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(Error::io(format!("cannot connect to {addr}"), &e)),
        }
    }
    // `resolve` never returns an empty list; keep a message for callers that do.
    Err(last.unwrap_or_else(|| Error {
        failure: Failure::Other,
        message: "no address to connect to".to_string(),
    }))
}

/// Reads until the server closes, into `buf`, at most [`MAX_ANSWER`] bytes
/// (less when the frame's header announces more). Each read may wait
/// `timeout`, and no read starts after `timeout` in all (a server dripping
/// bytes ends within twice `timeout`): one timeout set per connection, not
/// per read.
pub fn read_to_close(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
    protocol: Protocol,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "the server".into(), |a| a.to_string());
    let fail = |e: &io::Error| Error::io(format!("reading from {peer}"), e);
    buf.clear();
    stream.set_read_timeout(Some(timeout)).map_err(|e| fail(&e))?;
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(_) if Instant::now() > deadline => return Err(fail(&ErrorKind::TimedOut.into())),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(&e)),
        };
        let had = buf.len();
        if had + n > MAX_ANSWER {
            return Err(too_large(&peer, "sends more than the".into()));
        }
        // Grown by doubling, but never past the cap.
        if had + n > buf.capacity() {
            buf.reserve_exact((buf.capacity().max(4096) * 2).min(MAX_ANSWER) - had);
        }
        buf.extend_from_slice(&chunk[..n]);
        // A short answer announcing too much may be another framing: read
        // on a little, for decode to name it; past that, refuse at once.
        if let Some(size) = announced(protocol, buf).filter(|&size| size > MAX_ANSWER && buf.len() > SNIFF) {
            return Err(too_large(
                &peer,
                format!("announces a frame of {size} bytes, more than the"),
            ));
        }
    }
}

/// An answer larger than [`MAX_ANSWER`]: `what` the server does, "more than the".
fn too_large(peer: &str, what: String) -> Error {
    Error {
        failure: Failure::Malformed,
        message: format!(
            "the server at {peer} {what} {MAX_ANSWER} bytes fortune-client reads; \
             it is not a fortune server, or not one that should be trusted"
        ),
    }
}

/// The whole frame's size its header announces, once the header is in `bytes`.
fn announced(protocol: Protocol, bytes: &[u8]) -> Option<usize> {
    match protocol {
        Protocol::Qt => {
            let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
            (len != u32::MAX).then(|| 4 + len as usize)
        }
        Protocol::Qt4 => Some(2 + usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?))),
        Protocol::Text => None,
    }
}

/// Checks that `bytes` are exactly one frame and returns the fortune. When
/// they are not, the message names the `--protocol` they read as, if any.
pub fn decode(protocol: Protocol, bytes: &[u8]) -> Result<String, Error> {
    wire::decode(protocol, bytes).map_err(|e| {
        let hint = if bytes.is_empty() {
            " (the server closed without a byte: is it a fortune server? fortune-server closes \
             waiting connections when it cannot start: see its journal)"
                .to_string()
        } else {
            match framing_of(bytes).filter(|&p| p != protocol) {
                Some(other) => format!(" (they read as --protocol {other}: try that)"),
                None => String::new(),
            }
        };
        Error {
            failure: match e {
                DecodeError::Incomplete { .. } => Failure::Short,
                DecodeError::Malformed(_) => Failure::Malformed,
            },
            message: format!("the server's answer is not a {protocol} fortune: {e}{hint}"),
        }
    })
}

/// The framing `bytes` are one whole frame of, if any: qt and qt4 by their
/// length headers, text by being UTF-8 lines ending in CRLF without control bytes.
fn framing_of(bytes: &[u8]) -> Option<Protocol> {
    let framed = [Protocol::Qt, Protocol::Qt4];
    if let Some(&p) = framed.iter().find(|&&p| wire::decode(p, bytes).is_ok()) {
        return Some(p);
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let plain = !text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'));
    (plain && text.ends_with("\r\n")).then_some(Protocol::Text)
}

/// One whole exchange: connect, read to the end, decode.
pub fn fetch(addrs: &[SocketAddr], protocol: Protocol, timeout: Duration) -> Result<String, Error> {
    let mut stream = connect(addrs, timeout)?;
    let mut buf = Vec::new();
    read_to_close(&mut stream, &mut buf, timeout, protocol)?;
    decode(protocol, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Result<(String, u16), String> {
        parse_target(s)
    }

    #[test]
    fn targets_parse() {
        assert_eq!(target("127.0.0.1"), Ok(("127.0.0.1".into(), DEFAULT_PORT)));
        assert_eq!(target("127.0.0.1:80"), Ok(("127.0.0.1".into(), 80)));
        assert_eq!(target("::1"), Ok(("::1".into(), DEFAULT_PORT)));
        assert_eq!(target("[::1]"), Ok(("::1".into(), DEFAULT_PORT)));
        assert_eq!(target("[::1]:9"), Ok(("::1".into(), 9)));
        assert_eq!(target("localhost"), Ok(("localhost".into(), DEFAULT_PORT)));
        assert_eq!(target("localhost:9"), Ok(("localhost".into(), 9)));
    }

    #[test]
    fn bad_targets_are_refused() {
        for bad in [
            "",
            ":7017",
            "host:",
            "host:x",
            "host:70000",
            "host:0",
            "[::1",
            "[nope]",
            "a:b:c",
        ] {
            assert!(target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn io_errors_are_classified() {
        let kinds = [
            (ErrorKind::ConnectionRefused, Failure::Refused),
            (ErrorKind::ConnectionReset, Failure::Reset),
            (ErrorKind::BrokenPipe, Failure::Reset),
            (ErrorKind::TimedOut, Failure::Timeout),
            (ErrorKind::WouldBlock, Failure::Timeout),
            (ErrorKind::AddrNotAvailable, Failure::Other),
        ];
        for (kind, failure) in kinds {
            assert_eq!(Failure::of_io(&kind.into()), failure, "{kind:?}");
        }
    }

    #[test]
    fn another_framing_is_named() {
        let qt = wire::encode(Protocol::Qt, "Hi").unwrap();
        let qt4 = wire::encode(Protocol::Qt4, "Hi").unwrap();
        let text = b"Hi.\r\n".to_vec();
        let hint = |p: Protocol, bytes: &[u8]| decode(p, bytes).unwrap_err().message;
        assert!(hint(Protocol::Qt, &qt4).ends_with("(they read as --protocol qt4: try that)"));
        assert!(hint(Protocol::Qt, &text).ends_with("(they read as --protocol text: try that)"));
        assert!(hint(Protocol::Qt4, &qt).ends_with("(they read as --protocol qt: try that)"));
        assert!(hint(Protocol::Text, &qt).ends_with("(they read as --protocol qt: try that)"));
        assert!(hint(Protocol::Qt, b"").contains("closed without a byte"));
        assert!(!hint(Protocol::Qt, b"\x00\x00garbage").contains("--protocol"));
    }

    #[test]
    fn announced_sizes() {
        assert_eq!(announced(Protocol::Qt, &[0, 0, 0]), None);
        assert_eq!(announced(Protocol::Qt, &[0, 0, 0, 4, 0]), Some(8));
        assert_eq!(
            announced(Protocol::Qt, &[0x7f, 0xff, 0xff, 0xfe]),
            Some(4 + 0x7fff_fffe)
        );
        // The null QString announces nothing (decode refuses it).
        assert_eq!(announced(Protocol::Qt, &[0xff; 4]), None);
        assert_eq!(announced(Protocol::Qt4, &[0xff, 0xff]), Some(2 + 0xffff));
        assert_eq!(announced(Protocol::Text, b"abc"), None);
    }

    #[test]
    fn frame_errors_exit_differently_from_network_errors() {
        let short = decode(Protocol::Qt, &[0, 0, 0, 4, 0]).unwrap_err();
        assert_eq!((short.failure, short.exit_code()), (Failure::Short, exit::FRAME));
        let odd = decode(Protocol::Qt, &[0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!((odd.failure, odd.exit_code()), (Failure::Malformed, exit::FRAME));
        let refused = Error::io("x".into(), &ErrorKind::ConnectionRefused.into());
        assert_eq!(refused.exit_code(), exit::NETWORK);
        assert!(refused.to_string().contains("is fortune-server running"));
    }
}
