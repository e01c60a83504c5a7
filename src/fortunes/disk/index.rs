//! Reading a file's `NAME.dat` index from disk: at most [`MAX_INDEX`]
//! bytes, parsed by [`strfile`], checked against the data file's length and
//! cut into the entries' spans, whose table is taken from the collection's
//! [`Budget`]; why an index cannot be used (`IndexProblem`).

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;

use crate::fortunes::limits::{Budget, MAX_INDEX};
use crate::fortunes::strfile::{self, Header, IndexError, Span};

pub(super) enum IndexProblem {
    Io(std::io::Error),
    TooLarge(u64),
    /// With the header, when it parsed, for its rot13 flag.
    Invalid(IndexError, Option<Header>),
    /// Its table would take more than the collection has left.
    OverBudget,
}

/// An index's entries and the bytes of `budget` they hold.
pub(super) struct Table {
    pub(super) kept: Vec<Span>,
    pub(super) long: usize,
    pub(super) held: u64,
}

/// Reads a whole index of `index_len` bytes (at most [`MAX_INDEX`]),
/// checks it against the data file's length and cuts that into entries,
/// whose table is taken from `budget`.
pub(super) fn read_index(
    index: &File,
    index_len: u64,
    data_len: u64,
    max_entry: usize,
    budget: &Budget,
) -> Result<(Header, Table), IndexProblem> {
    if index_len > MAX_INDEX {
        return Err(IndexProblem::TooLarge(index_len));
    }
    // At most one span (8 bytes) per offset (4), whatever the header says.
    let estimate = 2 * index_len;
    if !budget.take(estimate) {
        return Err(IndexProblem::OverBudget);
    }
    let table = read_table(index, index_len, data_len, max_entry);
    let held = table.as_ref().map_or(0, |(_, spans)| {
        (spans.kept.capacity() * std::mem::size_of::<Span>()) as u64
    });
    budget.give(estimate - held.min(estimate));
    let (header, spans) = table?;
    Ok((
        header,
        Table {
            kept: spans.kept,
            long: spans.long,
            held: held.min(estimate),
        },
    ))
}

fn read_table(
    index: &File,
    index_len: u64,
    data_len: u64,
    max_entry: usize,
) -> Result<(Header, strfile::Spans), IndexProblem> {
    let mut bytes = vec![0u8; index_len as usize];
    let got = read_at_most(index, &mut bytes, 0).map_err(IndexProblem::Io)?;
    bytes.truncate(got);
    let header = Header::parse(&bytes).map_err(|e| IndexProblem::Invalid(e, None))?;
    let last_at = Header::offset_position(header.count) as usize;
    // Absent when the index is short; check() then reports its size first.
    let last = bytes
        .get(last_at..last_at + 4)
        .map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    let invalid = |e| IndexProblem::Invalid(e, Some(header));
    header
        .check(bytes.len() as u64, data_len, last)
        .map_err(invalid)?;
    let max = u32::try_from(max_entry).unwrap_or(u32::MAX);
    let mut spans = strfile::spans(&header, &bytes[strfile::HEADER_LEN..], data_len, max).map_err(invalid)?;
    spans.kept.shrink_to_fit();
    Ok((header, spans))
}

/// Like `read_exact_at`, but a short file is not an error: returns the count.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
