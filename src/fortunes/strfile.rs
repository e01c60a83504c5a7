//! fortune-mod's `strfile` index (`NAME.dat` beside `NAME`), as pure
//! functions over bytes: the header, its consistency with the two files,
//! the offset table cut into entries ([`spans`]), and cutting one entry out
//! of the bytes read for it.
//!
//! Layout (version 2, all big-endian): u32 version, u32 number of entries,
//! u32 longest and u32 shortest entry in bytes, u32 flags, the delimiter byte
//! and 3 pad bytes; then number+1 u32 offsets into the data file. In file
//! order the last offset is the end of the file; `strfile -r`/`-o` permute
//! the table. An entry runs from its offset to the next line holding only the
//! delimiter (`%`), whose length the index does not count.

use std::fmt;

pub const HEADER_LEN: usize = 24;
pub const VERSION: u32 = 2;
const RANDOM: u32 = 1;
const ORDERED: u32 = 2;
const ROTATED: u32 = 4;

/// The header of a `.dat` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub count: u32,
    pub longest: u32,
    pub shortest: u32,
    pub flags: u32,
    pub delimiter: u8,
}

/// Why an index cannot be used with its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexError {
    Short {
        len: usize,
    },
    Version(u32),
    NoEntries,
    Delimiter(u8),
    Lengths {
        shortest: u32,
        longest: u32,
    },
    Size {
        expected: u64,
        actual: u64,
    },
    LongestPastEnd {
        longest: u32,
        data_len: u64,
    },
    EndOffset {
        offset: u32,
        data_len: u64,
    },
    /// In file order, an offset before the one of the entry before it.
    Unordered {
        entry: u32,
    },
    /// An offset past the end of the data file.
    OffsetPastEnd {
        entry: u32,
        offset: u32,
        data_len: u64,
    },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IndexError::Short { len } => write!(f, "only {len} bytes, shorter than a strfile header"),
            IndexError::Version(v) => write!(f, "strfile version {v}, expected {VERSION}"),
            IndexError::NoEntries => write!(f, "it counts no entries"),
            IndexError::Delimiter(d) => write!(f, "delimiter byte {d:#04x} is not a printable character"),
            IndexError::Lengths { shortest, longest } => {
                write!(
                    f,
                    "shortest entry ({shortest} bytes) is longer than the longest ({longest})"
                )
            }
            IndexError::Size { expected, actual } => {
                write!(
                    f,
                    "{actual} bytes where its header implies {expected} (truncated?)"
                )
            }
            IndexError::LongestPastEnd { longest, data_len } => {
                write!(
                    f,
                    "longest entry ({longest} bytes) exceeds the {data_len}-byte file"
                )
            }
            IndexError::EndOffset { offset, data_len } => write!(
                f,
                "it ends at byte {offset}, the file at {data_len} (file changed since strfile ran?)"
            ),
            IndexError::Unordered { entry } => {
                write!(f, "entry {entry} starts before the entry before it")
            }
            IndexError::OffsetPastEnd {
                entry,
                offset,
                data_len,
            } => write!(
                f,
                "entry {entry} starts at byte {offset}, past the {data_len}-byte file (file changed since strfile ran?)"
            ),
        }
    }
}

impl Header {
    pub fn parse(bytes: &[u8]) -> Result<Header, IndexError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(IndexError::Short { len: bytes.len() });
        };
        let word =
            |i: usize| u32::from_be_bytes([head[4 * i], head[4 * i + 1], head[4 * i + 2], head[4 * i + 3]]);
        let header = Header {
            count: word(1),
            longest: word(2),
            shortest: word(3),
            flags: word(4),
            delimiter: head[20],
        };
        if word(0) != VERSION {
            return Err(IndexError::Version(word(0)));
        }
        if header.count == 0 {
            return Err(IndexError::NoEntries);
        }
        if !header.delimiter.is_ascii_graphic() {
            return Err(IndexError::Delimiter(header.delimiter));
        }
        if header.shortest > header.longest {
            return Err(IndexError::Lengths {
                shortest: header.shortest,
                longest: header.longest,
            });
        }
        Ok(header)
    }

    /// `strfile -x`: the entries are rot13-encoded (fortune-mod's offensive ones).
    pub fn rotated(&self) -> bool {
        self.flags & ROTATED != 0
    }

    /// False after `strfile -r`/`-o`: the table is permuted, and its last
    /// slot is not the end of the file.
    pub fn in_file_order(&self) -> bool {
        self.flags & (RANDOM | ORDERED) == 0
    }

    /// Where offset `i` (0..=count) sits in the `.dat` file.
    pub fn offset_position(i: u32) -> u64 {
        HEADER_LEN as u64 + 4 * u64::from(i)
    }

    /// Checks the header against the sizes of both files and, in file order,
    /// the last offset (read at `offset_position(count)`) against the data's end.
    pub fn check(&self, index_len: u64, data_len: u64, last_offset: u32) -> Result<(), IndexError> {
        let expected = Header::offset_position(self.count) + 4;
        if index_len != expected {
            return Err(IndexError::Size {
                expected,
                actual: index_len,
            });
        }
        if u64::from(self.longest) > data_len {
            return Err(IndexError::LongestPastEnd {
                longest: self.longest,
                data_len,
            });
        }
        if self.in_file_order() && u64::from(last_offset) != data_len {
            return Err(IndexError::EndOffset {
                offset: last_offset,
                data_len,
            });
        }
        Ok(())
    }

    /// The entry count a well-formed index of `len` bytes holds.
    pub fn count_from_len(len: u64) -> Option<usize> {
        let table = len.checked_sub(HEADER_LEN as u64 + 4)?;
        (table % 4 == 0 && table > 0).then_some((table / 4) as usize)
    }
}

/// Where one entry lies in the data file: from `start` to `end`, its
/// delimiter line included (or the end of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// Bytes to read for it: the byte before (which must end a line) too.
    pub fn window(&self) -> (u64, u64) {
        (u64::from(self.start.saturating_sub(1)), u64::from(self.end))
    }
}

/// The entries of an offset table, found by [`spans`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spans {
    /// In table order, the entries not longer than the limit.
    pub kept: Vec<Span>,
    /// How many were longer, left out.
    pub long: usize,
}

/// Cuts the data file into entries from the offset `table` (the `count + 1`
/// u32 after the header): in file order entry `i` ends where `i + 1` starts;
/// in a permuted table (`strfile -r`/`-o`) where the next offset in the
/// file starts. Entries longer than `max` bytes (their last newline and
/// their delimiter line not counted) are left out and counted; a slot at
/// the end of the file (a permuted table holds the end among its entries),
/// an empty one (an offset repeated) and a repeated one are no entries, so
/// that the count is of entries that may be served. The data
/// file is `data_len` bytes. `table` shorter than the header says: the
/// missing slots count as absent (the caller checked the index's size).
pub fn spans(header: &Header, table: &[u8], data_len: u64, max: u32) -> Result<Spans, IndexError> {
    let offsets: Vec<u32> = table
        .chunks_exact(4)
        .take(header.count as usize + 1)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    for (entry, &offset) in (0u32..).zip(&offsets) {
        if u64::from(offset) > data_len {
            return Err(IndexError::OffsetPastEnd {
                entry,
                offset,
                data_len,
            });
        }
    }
    let ordered = header.in_file_order();
    let misplaced = ordered.then(|| offsets.windows(2).position(|w| w[1] < w[0]));
    if let Some(Some(entry)) = misplaced {
        return Err(IndexError::Unordered {
            entry: entry as u32 + 1,
        });
    }
    // Permuted: every start in file order, to find the next one.
    let sorted = (!ordered).then(|| {
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
    });
    // The end of the file, as a u32: checked above to be at least every offset.
    let file_end = u32::try_from(data_len).unwrap_or(u32::MAX);
    let mut out = Spans::default();
    // A permuted table's starts already taken: each entry counts once.
    let mut taken = vec![false; sorted.as_ref().map_or(0, Vec::len)];
    let entries = offsets.len().min(header.count as usize);
    for i in 0..entries {
        let start = offsets[i];
        let end = match &sorted {
            None => offsets.get(i + 1).copied().unwrap_or(file_end),
            Some(sorted) => {
                let at = sorted.partition_point(|&o| o < start);
                if std::mem::replace(&mut taken[at], true) {
                    continue;
                }
                sorted.get(at + 1).copied().unwrap_or(file_end)
            }
        };
        // No bytes (a repeated offset): no entry.
        if u64::from(start) >= data_len || end <= start {
            continue;
        }
        // The entry's last newline and the delimiter line (a byte and a
        // newline) are not the entry's: `max` bytes of text span `max + 3`.
        if end - start > max.saturating_add(3) {
            out.long += 1;
        } else {
            out.kept.push(Span { start, end });
        }
    }
    Ok(out)
}

/// Why the bytes at an entry's offset are not an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// The offset is not at the start of a line.
    NotLineStart,
    /// No delimiter line where the index says the entry ends.
    Unterminated,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryError::NotLineStart => "its offset is not at the start of a line",
            EntryError::Unterminated => "no delimiter line where the index says it ends",
        })
    }
}

/// The entry in `window`: the bytes read from one before its offset (none
/// when it is at the start of the file, `at_start`), up to the first line
/// holding only `delimiter`, or to the end when `window` reaches the end of
/// the file (`at_end`). Delimiter lines end in `\n`, as strfile requires.
pub fn entry(window: &[u8], at_start: bool, at_end: bool, delimiter: u8) -> Result<&[u8], EntryError> {
    let body = if at_start {
        window
    } else {
        match window.split_first() {
            Some((b'\n', rest)) => rest,
            _ => return Err(EntryError::NotLineStart),
        }
    };
    let mut line = 0;
    while line < body.len() {
        if body[line] == delimiter && body.get(line + 1) == Some(&b'\n') {
            return Ok(&body[..line]);
        }
        match body[line..].iter().position(|&b| b == b'\n') {
            Some(n) => line += n + 1,
            None => break,
        }
    }
    if at_end {
        Ok(body)
    } else {
        Err(EntryError::Unterminated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::fixture::DAT;

    #[test]
    fn header_fields() {
        let h = Header::parse(&DAT).unwrap();
        assert_eq!(
            h,
            Header {
                count: 2,
                longest: 3,
                shortest: 2,
                flags: 0,
                delimiter: b'%'
            }
        );
        assert!(h.in_file_order() && !h.rotated());
        assert_eq!(Header::offset_position(2), 32);
        assert_eq!(h.check(36, 9, 9), Ok(()));
        assert_eq!(Header::count_from_len(36), Some(2));
        assert_eq!(Header::count_from_len(28), None);
        assert_eq!(Header::count_from_len(35), None);
        assert_eq!(Header::count_from_len(3), None);
    }

    #[test]
    fn header_flags() {
        let mut dat = DAT;
        dat[19] = 4;
        assert!(Header::parse(&dat).unwrap().rotated());
        dat[19] = 1;
        let h = Header::parse(&dat).unwrap();
        assert!(!h.in_file_order());
        // A permuted table's last slot is any entry: not checked against the end.
        assert_eq!(h.check(36, 9, 4), Ok(()));
    }

    #[test]
    fn bad_headers() {
        assert_eq!(Header::parse(&DAT[..23]), Err(IndexError::Short { len: 23 }));
        let mut dat = DAT;
        dat[3] = 1;
        assert_eq!(Header::parse(&dat), Err(IndexError::Version(1)));
        let mut dat = DAT;
        dat[7] = 0;
        assert_eq!(Header::parse(&dat), Err(IndexError::NoEntries));
        let mut dat = DAT;
        dat[20] = b'\n';
        assert_eq!(Header::parse(&dat), Err(IndexError::Delimiter(b'\n')));
        let mut dat = DAT;
        dat[15] = 4;
        assert_eq!(
            Header::parse(&dat),
            Err(IndexError::Lengths {
                shortest: 4,
                longest: 3
            })
        );
    }

    #[test]
    fn index_against_files() {
        let h = Header::parse(&DAT).unwrap();
        assert_eq!(
            h.check(32, 9, 9),
            Err(IndexError::Size {
                expected: 36,
                actual: 32
            })
        );
        assert_eq!(
            h.check(36, 2, 2),
            Err(IndexError::LongestPastEnd {
                longest: 3,
                data_len: 2
            })
        );
        assert_eq!(
            h.check(36, 12, 9),
            Err(IndexError::EndOffset {
                offset: 9,
                data_len: 12
            })
        );
    }

    fn table(offsets: &[u32]) -> Vec<u8> {
        offsets.iter().flat_map(|o| o.to_be_bytes()).collect()
    }

    fn span(start: u32, end: u32) -> Span {
        Span { start, end }
    }

    #[test]
    fn spans_in_file_order() {
        let h = Header::parse(&DAT).unwrap();
        let got = spans(&h, &DAT[24..], 9, 100).unwrap();
        assert_eq!(got.kept, [span(0, 4), span(4, 9)]);
        assert_eq!(got.long, 0);
        assert_eq!(span(0, 4).window(), (0, 4));
        assert_eq!(span(4, 9).window(), (3, 9));
        // "bc" is 2 bytes: a limit of 2 keeps it, 1 leaves it out, "a" stays.
        let got = spans(&h, &DAT[24..], 9, 2).unwrap();
        assert_eq!((got.kept, got.long), (vec![span(0, 4), span(4, 9)], 0));
        let got = spans(&h, &DAT[24..], 9, 1).unwrap();
        assert_eq!((got.kept, got.long), (vec![span(0, 4)], 1));
    }

    #[test]
    fn spans_of_a_permuted_table() {
        let mut h = Header::parse(&DAT).unwrap();
        h.flags = RANDOM;
        h.count = 3;
        // Three entries at 0, 4 and 9 of a 12-byte file, shuffled, the end (12) among them.
        let got = spans(&h, &table(&[9, 12, 0, 4]), 12, 100).unwrap();
        assert_eq!(got.kept, [span(9, 12), span(0, 4)]);
        let got = spans(&h, &table(&[4, 9, 0, 12]), 12, 100).unwrap();
        assert_eq!(got.kept, [span(4, 9), span(9, 12), span(0, 4)]);
        // An entry listed twice counts once.
        let got = spans(&h, &table(&[4, 4, 0, 12]), 12, 100).unwrap();
        assert_eq!(got.kept, [span(4, 12), span(0, 4)]);
    }

    #[test]
    fn repeated_offsets_are_no_entries() {
        // 262,137 zero offsets of a 2-byte file (an attack on memory): nothing to serve.
        let mut h = Header::parse(&DAT).unwrap();
        h.count = 5;
        let got = spans(&h, &table(&[0, 0, 0, 0, 0, 0]), 2, 100).unwrap();
        assert_eq!((got.kept, got.long), (vec![], 0));
        let got = spans(&h, &table(&[0, 0, 0, 4, 4, 9]), 9, 100).unwrap();
        assert_eq!(got.kept, [span(0, 4), span(4, 9)]);
        h.flags = RANDOM;
        let got = spans(&h, &table(&[0, 0, 0, 0, 0, 0]), 2, 100).unwrap();
        assert_eq!(got.kept, [span(0, 2)]);
    }

    #[test]
    fn spans_of_a_bad_table() {
        let h = Header::parse(&DAT).unwrap();
        assert_eq!(
            spans(&h, &table(&[0, 10, 9]), 9, 100),
            Err(IndexError::OffsetPastEnd {
                entry: 1,
                offset: 10,
                data_len: 9
            })
        );
        assert_eq!(
            spans(&h, &table(&[4, 0, 9]), 9, 100),
            Err(IndexError::Unordered { entry: 1 })
        );
        // Short: what is there is used.
        assert_eq!(spans(&h, &table(&[0]), 9, 100).unwrap().kept, [span(0, 9)]);
    }

    #[test]
    fn entries_end_at_the_delimiter_line() {
        let file = b"a\n%\nbc\n%\n";
        assert_eq!(entry(&file[0..5], true, false, b'%'), Ok(&b"a\n"[..]));
        assert_eq!(entry(&file[3..9], false, true, b'%'), Ok(&b"bc\n"[..]));
        // The last entry may end at the end of the file, without a delimiter.
        assert_eq!(entry(b"\nlast\n", false, true, b'%'), Ok(&b"last\n"[..]));
        // A delimiter inside a line, or without its newline, is text.
        assert_eq!(entry(b"\n50%\n%x\n%", false, true, b'%'), Ok(&b"50%\n%x\n%"[..]));
        assert_eq!(entry(b"x\n#\ny", true, false, b'#'), Ok(&b"x\n"[..]));
    }

    #[test]
    fn entries_that_do_not_match_the_index() {
        assert_eq!(
            entry(b"bc\n%\n", false, false, b'%'),
            Err(EntryError::NotLineStart)
        );
        assert_eq!(entry(b"", false, false, b'%'), Err(EntryError::NotLineStart));
        assert_eq!(
            entry(b"\nlonger than said", false, false, b'%'),
            Err(EntryError::Unterminated)
        );
        assert_eq!(entry(b"%\n", true, false, b'%'), Ok(&b""[..]));
    }
}
