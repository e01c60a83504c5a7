//! What one file holds as loaded ([`Content`]): its entries in memory, or
//! left on disk with the table of where each lies ([`Indexed`]), or why it
//! was refused; and reading entry `i` of it. With a usable index a pick
//! reads its own entry only: one positioned read of at most `--max-entry` +
//! 4 bytes, where the table says it lies, from the descriptor held or from
//! the same file opened again.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::open::open_regular;
use crate::fortunes::error::{EntryError, Problem};
use crate::fortunes::strfile::{self, Header, Span};
use crate::fortunes::text;

/// What one file holds, as loaded.
#[derive(Debug)]
pub enum Content {
    /// Read whole (no usable index, or the built-in fortunes).
    Memory(Vec<String>),
    Indexed(Indexed),
    /// Found unusable when opened on a pick (lazy): why, for the log.
    Refused(String),
}

/// A file with a usable index: its entries stay on disk.
#[derive(Debug)]
pub struct Indexed {
    pub(super) data: Held,
    pub(super) data_len: u64,
    pub header: Header,
    pub(super) spans: Vec<Span>,
    /// `--max-entry`: an entry at the end of the file, which has no
    /// delimiter line to count, is measured again when read.
    pub(super) max_entry: usize,
}

/// The data file's descriptor, or what identifies it when it is opened on
/// each pick (beyond the descriptors a store may hold, see `load`).
#[derive(Debug)]
pub(super) enum Held {
    Open(File),
    Reopen { dev: u64, ino: u64 },
}

impl Content {
    /// Entries counted for the pick.
    pub fn count(&self) -> usize {
        match self {
            Content::Memory(entries) => entries.len(),
            Content::Indexed(file) => file.spans.len(),
            Content::Refused(_) => 0,
        }
    }

    /// No entry is longer than this many bytes.
    pub fn longest(&self) -> usize {
        match self {
            Content::Memory(entries) => entries.iter().map(String::len).max().unwrap_or(0),
            Content::Indexed(file) => file
                .spans
                .iter()
                .map(|s| (s.end - s.start) as usize)
                .max()
                .unwrap_or(0),
            Content::Refused(_) => 0,
        }
    }

    /// The length of entry `i` as strfile(1) counts it (its lines with
    /// their newlines, not the `%` line), for `--short`/`--long`; `None`
    /// when the file was refused.
    pub fn entry_len(&self, i: usize) -> Option<usize> {
        match self {
            // As served, plus the newline that ended it in the file.
            Content::Memory(entries) => entries.get(i).map(|e| e.len() + 1),
            // The span holds the delimiter line too.
            Content::Indexed(file) => file
                .spans
                .get(i)
                .map(|s| (s.end - s.start).saturating_sub(2) as usize),
            Content::Refused(_) => None,
        }
    }

    /// Entry `i` of the file at `path`; a file may count otherwise than it
    /// was listed (read whole after its index failed, rewritten since): `i`
    /// is taken modulo its count.
    pub fn entry(&self, path: &Path, i: usize) -> Result<Cow<'_, str>, EntryError> {
        let refused = |why: &str| EntryError::Refused {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        match self {
            Content::Memory(entries) if entries.is_empty() => Err(refused("it holds no fortune")),
            Content::Memory(entries) => Ok(Cow::Borrowed(&entries[i % entries.len()])),
            Content::Indexed(file) => file.entry(path, i).map(Cow::Owned),
            Content::Refused(why) => Err(refused(why)),
        }
    }
}

impl Indexed {
    fn entry(&self, path: &Path, i: usize) -> Result<String, EntryError> {
        let Some(span) = self.spans.get(i % self.spans.len().max(1)) else {
            return Err(EntryError::Missing { n: i, len: 0 });
        };
        let io = |e| EntryError::Io(path.to_path_buf(), e);
        let reopened;
        let data = match &self.data {
            Held::Open(file) => file,
            Held::Reopen { dev, ino } => {
                // The same inode as the one checked at load, or refused.
                let (file, meta) = open_regular(path, None).map_err(|p| match p {
                    Problem::Unreadable(e) => io(e),
                    _ => EntryError::Changed(path.to_path_buf()),
                })?;
                if (meta.dev(), meta.ino(), meta.len()) != (*dev, *ino, self.data_len) {
                    return Err(EntryError::Changed(path.to_path_buf()));
                }
                reopened = file;
                &reopened
            }
        };
        let (from, to) = span.window();
        let mut window = vec![0u8; (to - from) as usize];
        data.read_exact_at(&mut window, from).map_err(io)?;
        let offset = u64::from(span.start);
        let path = || path.to_path_buf();
        let bytes = strfile::entry(
            &window,
            span.start == 0,
            to == self.data_len,
            self.header.delimiter,
        )
        .map_err(|why| EntryError::Mismatch {
            path: path(),
            offset,
            why,
        })?;
        let utf8 = std::str::from_utf8(bytes).map_err(|_| EntryError::NotUtf8 { path: path(), offset })?;
        let plain = if self.header.rotated() {
            Cow::Owned(text::rot13(utf8))
        } else {
            Cow::Borrowed(utf8)
        };
        let entry = text::tidy(&plain).ok_or(EntryError::Blank { path: path(), offset })?;
        if entry.len() > self.max_entry {
            return Err(EntryError::TooLong {
                path: path(),
                offset,
                max: self.max_entry,
            });
        }
        Ok(entry)
    }
}
