//! Wire encoding: how one fortune becomes bytes on the socket, and back.
//!
//! Pure functions, no I/O. `qt` is exactly what `QDataStream << QString` writes
//! (Qt >= 4.0 stream versions, big-endian, the default); `qt4` adds the u16
//! block size that the Qt 4 / Qt <= 5.6 Fortune Client reads first; `text` is
//! RFC 865 Quote of the Day: UTF-8 lines ending in CRLF.

use std::fmt;
use std::str::FromStr;

/// The framing a socket speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Protocol {
    /// `QDataStream << QString`: u32 big-endian byte count, then UTF-16BE.
    Qt,
    /// Qt 4 era: u16 big-endian size of what follows, then the `qt` bytes.
    Qt4,
    /// RFC 865: UTF-8 text, lines ending in CRLF.
    Text,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Qt, Protocol::Qt4, Protocol::Text];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Qt => "qt",
            Protocol::Qt4 => "qt4",
            Protocol::Text => "text",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Protocol::ALL.into_iter().find(|p| p.name() == s).ok_or(())
    }
}

/// The largest `qt` frame a `qt4` block size (u16) can announce.
pub const QT4_MAX_PAYLOAD: usize = u16::MAX as usize;

/// RFC 865: "the quote should be limited to ASCII printing characters, space,
/// carriage return, and line feed" and "should be limited to 512 characters";
/// over UDP one datagram carries it, so this is a hard cap there.
pub const QOTD_MAX_DATAGRAM: usize = 512;

/// Why a fortune cannot be framed in a protocol.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong {
    pub protocol: Protocol,
    pub len: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {}-byte frame does not fit the {} protocol",
            self.len, self.protocol
        )
    }
}

/// Encodes one fortune as one complete frame.
pub fn encode(protocol: Protocol, text: &str) -> Result<Vec<u8>, TooLong> {
    match protocol {
        Protocol::Qt => Ok(qstring(text, 0)),
        Protocol::Qt4 => {
            let mut frame = qstring(text, 2);
            let payload = frame.len() - 2;
            let size = u16::try_from(payload).map_err(|_| TooLong {
                protocol,
                len: payload,
            })?;
            frame[..2].copy_from_slice(&size.to_be_bytes());
            Ok(frame)
        }
        Protocol::Text => Ok(text_lines(text)),
    }
}

/// `QDataStream << QString`, after `reserve` zero bytes for a caller's header.
fn qstring(text: &str, reserve: usize) -> Vec<u8> {
    let units = text.encode_utf16().count();
    let mut out = Vec::with_capacity(reserve + 4 + 2 * units);
    out.resize(reserve, 0);
    // A QString holds at most 2^30 code units, far below u32::MAX bytes.
    out.extend_from_slice(&((2 * units) as u32).to_be_bytes());
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// RFC 865 text: every line ends in CRLF, including the last.
fn text_lines(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2 + text.matches('\n').count());
    for line in text.split_terminator('\n') {
        out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if text.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Why bytes are not a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// More bytes are needed (the peer closed too early if none will come).
    Incomplete { have: usize, need: Option<usize> },
    /// A length that cannot be right: odd byte count, or the null QString.
    Malformed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete {
                have,
                need: Some(need),
            } => {
                write!(f, "short frame: {have} of {need} bytes")
            }
            DecodeError::Incomplete { have, need: None } => {
                write!(f, "short frame: {have} bytes, no complete header")
            }
            DecodeError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

/// Decodes one complete frame, as a client reads it after the server closed.
/// `text` takes all bytes; `qt` and `qt4` must be exactly one frame.
pub fn decode(protocol: Protocol, bytes: &[u8]) -> Result<String, DecodeError> {
    match protocol {
        Protocol::Qt => {
            let (text, used) = decode_qstring(bytes)?;
            trailing(bytes, used)?;
            Ok(text)
        }
        Protocol::Qt4 => {
            let size = header::<2>(bytes)?;
            let size = u16::from_be_bytes(size) as usize;
            let body = &bytes[2..];
            if body.len() < size {
                return Err(DecodeError::Incomplete {
                    have: bytes.len(),
                    need: Some(2 + size),
                });
            }
            let (text, used) = decode_qstring(&body[..size])?;
            if used != size {
                return Err(DecodeError::Malformed(format!(
                    "block size {size} but the QString takes {used} bytes"
                )));
            }
            trailing(bytes, 2 + size)?;
            Ok(text)
        }
        Protocol::Text => {
            let text =
                std::str::from_utf8(bytes).map_err(|e| DecodeError::Malformed(format!("not UTF-8: {e}")))?;
            let body = text
                .strip_suffix("\r\n")
                .ok_or_else(|| DecodeError::Malformed("text does not end in CRLF".to_string()))?;
            Ok(body.replace("\r\n", "\n"))
        }
    }
}

fn header<const N: usize>(bytes: &[u8]) -> Result<[u8; N], DecodeError> {
    bytes
        .get(..N)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Incomplete {
            have: bytes.len(),
            need: None,
        })
}

fn trailing(bytes: &[u8], used: usize) -> Result<(), DecodeError> {
    if bytes.len() > used {
        return Err(DecodeError::Malformed(format!(
            "{} bytes after the end of the frame",
            bytes.len() - used
        )));
    }
    Ok(())
}

fn decode_qstring(bytes: &[u8]) -> Result<(String, usize), DecodeError> {
    let len = u32::from_be_bytes(header::<4>(bytes)?);
    if len == u32::MAX {
        return Err(DecodeError::Malformed("null QString (0xffffffff)".to_string()));
    }
    let len = len as usize;
    if len % 2 != 0 {
        return Err(DecodeError::Malformed(format!("odd UTF-16 byte count {len}")));
    }
    let body = &bytes[4..];
    if body.len() < len {
        return Err(DecodeError::Incomplete {
            have: bytes.len(),
            need: Some(4 + len),
        });
    }
    let units = body[..len]
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    let text = char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|e| DecodeError::Malformed(format!("bad UTF-16: {e}")))?;
    Ok((text, 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qt_empty_string_is_a_zero_length() {
        assert_eq!(encode(Protocol::Qt, "").unwrap(), [0, 0, 0, 0]);
    }

    #[test]
    fn qt_ascii() {
        assert_eq!(
            encode(Protocol::Qt, "Hi!").unwrap(),
            [0, 0, 0, 6, 0, b'H', 0, b'i', 0, b'!']
        );
    }

    #[test]
    fn qt_accents_are_one_code_unit_each() {
        // "é" U+00E9, "ß" U+00DF
        assert_eq!(
            encode(Protocol::Qt, "éß").unwrap(),
            [0, 0, 0, 4, 0x00, 0xE9, 0x00, 0xDF]
        );
    }

    #[test]
    fn qt_emoji_is_a_surrogate_pair() {
        // U+1F600 GRINNING FACE = D83D DE00
        assert_eq!(
            encode(Protocol::Qt, "😀").unwrap(),
            [0, 0, 0, 4, 0xD8, 0x3D, 0xDE, 0x00]
        );
    }

    #[test]
    fn qt4_prefixes_the_block_size() {
        assert_eq!(encode(Protocol::Qt4, "").unwrap(), [0, 4, 0, 0, 0, 0]);
        assert_eq!(
            encode(Protocol::Qt4, "A€").unwrap(),
            [0, 8, 0, 0, 0, 4, 0x00, 0x41, 0x20, 0xAC]
        );
    }

    #[test]
    fn qt4_refuses_what_a_u16_cannot_count() {
        let fits = "x".repeat((QT4_MAX_PAYLOAD - 4) / 2);
        assert_eq!(
            encode(Protocol::Qt4, &fits).unwrap().len(),
            2 + QT4_MAX_PAYLOAD - 1
        );
        let long = "x".repeat(QT4_MAX_PAYLOAD / 2);
        assert_eq!(
            encode(Protocol::Qt4, &long),
            Err(TooLong {
                protocol: Protocol::Qt4,
                len: QT4_MAX_PAYLOAD + 3
            })
        );
    }

    #[test]
    fn text_ends_every_line_in_crlf() {
        assert_eq!(encode(Protocol::Text, "").unwrap(), b"\r\n");
        assert_eq!(encode(Protocol::Text, "a\nb").unwrap(), b"a\r\nb\r\n");
        assert_eq!(encode(Protocol::Text, "a\r\nb\n").unwrap(), b"a\r\nb\r\n");
        assert_eq!(encode(Protocol::Text, "é😀").unwrap(), "é😀\r\n".as_bytes());
    }

    #[test]
    fn decode_round_trips() {
        for p in Protocol::ALL {
            for s in ["", "Hi!", "éß", "😀 two\nlines"] {
                assert_eq!(decode(p, &encode(p, s).unwrap()).unwrap(), s, "{p} {s:?}");
            }
        }
    }

    #[test]
    fn decode_rejects_bad_frames() {
        assert_eq!(
            decode(Protocol::Qt, &[0, 0, 0, 6, 0, b'H']),
            Err(DecodeError::Incomplete {
                have: 6,
                need: Some(10)
            })
        );
        assert_eq!(
            decode(Protocol::Qt, &[0, 0]),
            Err(DecodeError::Incomplete { have: 2, need: None })
        );
        assert!(matches!(
            decode(Protocol::Qt, &[0, 0, 0, 1, 0]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(Protocol::Qt, &[0xff; 4]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(Protocol::Qt, &[0, 0, 0, 0, 1]),
            Err(DecodeError::Malformed(_))
        ));
        // A lone high surrogate.
        assert!(matches!(
            decode(Protocol::Qt, &[0, 0, 0, 2, 0xD8, 0x3D]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(Protocol::Qt4, &[0, 6, 0, 0, 0, 0]),
            Err(DecodeError::Incomplete { .. })
        ));
        assert!(matches!(
            decode(Protocol::Qt4, &[0, 5, 0, 0, 0, 0, 0]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(Protocol::Text, b"no crlf"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(Protocol::Text, b"\xff\r\n"),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn protocol_names_parse() {
        for p in Protocol::ALL {
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
        }
        assert!("connection".parse::<Protocol>().is_err());
    }
}
