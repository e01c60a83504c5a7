//! Reading fortune files from disk: opening a file and its `NAME.dat`
//! index safely, cutting the file into entries, and reading one entry.
//!
//! Only regular files are read. Every file is opened with `O_NONBLOCK` and
//! checked with `fstat` on the descriptor opened (never `stat` then `open`),
//! so a FIFO, a device, a socket or a directory in place of a file or its
//! index is refused at once, never waited on (symlinks are followed: Debian's
//! collections use them).
//!
//! With a usable index a pick reads its own entry only: one positioned read
//! of at most `--max-entry` + 3 bytes, where the table says it lies.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use super::error::{EntryError, LoadError, Problem};
use super::limits::{MAX_INDEX, whole_file_cap};
use super::strfile::{self, Header, IndexError, Span};
use super::text;

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
    data: Held,
    data_len: u64,
    pub header: Header,
    spans: Vec<Span>,
}

/// The data file's descriptor, or what identifies it when it is opened on
/// each pick (beyond the descriptors a store may hold, see `load`).
#[derive(Debug)]
enum Held {
    Open(File),
    Reopen { dev: u64, ino: u64 },
}

/// A file opened by [`open_file`].
#[derive(Debug)]
pub struct Opened {
    pub content: Content,
    /// Its index says rot13 (fortune-mod's offensive files).
    pub rotated: bool,
    /// A `NAME.dat` exists beside it (used or not).
    pub has_index: bool,
}

/// Opens `path` for reading if it is a regular file (following symlinks),
/// without ever waiting: `O_NONBLOCK`, then `fstat` on what was opened.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), Problem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(Problem::Unreadable)?;
    let meta = file.metadata().map_err(Problem::Unreadable)?;
    let kind = meta.file_type();
    let irregular = if kind.is_file() {
        return Ok((file, meta));
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    };
    Err(Problem::NotRegular(irregular))
}

/// Opens one file, with its index when there is a usable one, else reads
/// it whole (at most [`whole_file_cap`]). `hold`: keep the data file open
/// (else it is opened on each pick). Entries longer than `max_entry` bytes
/// are left out, with one warning. An index that is not a regular file
/// refuses the file (it is reported, never read); one that is unusable is
/// reported and the file read without it.
pub fn open_file(path: &Path, hold: bool, max_entry: usize) -> Result<Opened, LoadError> {
    let fail = |path: &Path, problem| LoadError {
        path: path.to_path_buf(),
        problem,
    };
    let (mut data, meta) = open_regular(path).map_err(|p| fail(path, p))?;
    let data_len = meta.len();
    let mut dat = path.as_os_str().to_owned();
    dat.push(".dat");
    let dat = PathBuf::from(dat);
    let mut rotated = false;
    let mut has_index = true;
    match open_regular(&dat) {
        Ok((index, index_meta)) => match read_index(&index, index_meta.len(), data_len, max_entry) {
            Ok((header, spans)) => {
                warn_long(path, spans.long, max_entry);
                if spans.kept.is_empty() {
                    return Err(fail(path, Problem::OnlyLong(max_entry)));
                }
                let data = match hold {
                    true => Held::Open(data),
                    false => Held::Reopen {
                        dev: meta.dev(),
                        ino: meta.ino(),
                    },
                };
                let indexed = Indexed {
                    data,
                    data_len,
                    header,
                    spans: spans.kept,
                };
                return Ok(Opened {
                    content: Content::Indexed(indexed),
                    rotated: header.rotated(),
                    has_index,
                });
            }
            Err(IndexProblem::Invalid(why, header)) => {
                rotated = header.is_some_and(|h| h.rotated());
                log::warn!("{}: {why}; reading {} without it", dat.display(), path.display());
            }
            Err(IndexProblem::TooLarge(len)) => log::warn!(
                "{}: {len} bytes, more than the {MAX_INDEX} an index may have; reading {} without it",
                dat.display(),
                path.display()
            ),
            Err(IndexProblem::Io(e)) => log::warn!(
                "cannot read {}: {e}; reading {} without it",
                dat.display(),
                path.display()
            ),
        },
        Err(problem @ Problem::NotRegular(_)) => return Err(fail(&dat, problem)),
        Err(Problem::Unreadable(e)) if e.kind() == ErrorKind::NotFound => has_index = false,
        Err(problem) => log::warn!("{}; reading {} without it", fail(&dat, problem), path.display()),
    }
    let cap = whole_file_cap(max_entry);
    let too_large = |len| fail(path, Problem::TooLarge { len, cap });
    if data_len > cap {
        return Err(too_large(data_len));
    }
    let mut bytes = Vec::new();
    // The cap again: the file may have grown since fstat.
    (&mut data)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(path, Problem::Unreadable(e)))?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    let mut entries = text::parse(&bytes).map_err(|e| fail(path, Problem::Text(e)))?;
    let before = entries.len();
    entries.retain(|e| e.len() <= max_entry);
    warn_long(path, before - entries.len(), max_entry);
    if entries.is_empty() {
        return Err(fail(path, Problem::OnlyLong(max_entry)));
    }
    if rotated {
        entries = entries.iter().map(|e| text::rot13(e)).collect();
    }
    Ok(Opened {
        content: Content::Memory(entries),
        rotated,
        has_index,
    })
}

/// The one warning per file about entries left out for their length.
fn warn_long(path: &Path, long: usize, max_entry: usize) {
    if long > 0 {
        log::warn!(
            "{}: {long} entries longer than {max_entry} bytes left out (--max-entry)",
            path.display()
        );
    }
}

enum IndexProblem {
    Io(std::io::Error),
    TooLarge(u64),
    /// With the header, when it parsed, for its rot13 flag.
    Invalid(IndexError, Option<Header>),
}

/// Reads a whole index of `index_len` bytes (at most [`MAX_INDEX`]),
/// checks it against the data file's length and cuts that into entries.
fn read_index(
    index: &File,
    index_len: u64,
    data_len: u64,
    max_entry: usize,
) -> Result<(Header, strfile::Spans), IndexProblem> {
    if index_len > MAX_INDEX {
        return Err(IndexProblem::TooLarge(index_len));
    }
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
    let spans = strfile::spans(&header, &bytes[strfile::HEADER_LEN..], data_len, max_entry as u32)
        .map_err(invalid)?;
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
                let (file, meta) = open_regular(path).map_err(|p| match p {
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
        text::tidy(&plain).ok_or(EntryError::Blank { path: path(), offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::fixture::{DAT, Scratch, TEXT};
    use crate::fortunes::limits::{MAX_ENTRY, MAX_WHOLE_FILE};

    fn kind(path: &Path) -> Option<&'static str> {
        match open_regular(path) {
            Err(Problem::NotRegular(what)) => Some(what),
            _ => None,
        }
    }

    #[test]
    fn only_regular_files_are_opened_never_waited_on() {
        let dir = Scratch::with(&[("file", b"a\n")]);
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would wait here forever.
        assert_eq!(kind(&fifo), Some("a FIFO"));
        assert_eq!(kind(Path::new("/dev/zero")), Some("a device"));
        assert_eq!(kind(&dir), Some("a directory"));
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("file"), &link).unwrap();
        assert!(open_regular(&link).is_ok(), "a symlink to a regular file is read");
    }

    #[test]
    fn long_entries_and_large_files_without_an_index() {
        let file = Scratch::file(format!("short\n%\n{}\n%\n", "x".repeat(100)).as_bytes());
        let opened = open_file(&file, true, 64).unwrap();
        assert_eq!(opened.content.count(), 1);
        assert_eq!(opened.content.entry(&file, 0).unwrap(), "short");
        let e = open_file(&file, true, 4).unwrap_err();
        assert!(matches!(e.problem, Problem::OnlyLong(4)), "{e}");
        std::fs::write(&file, vec![b'y'; MAX_WHOLE_FILE as usize + 1]).unwrap();
        let e = open_file(&file, true, MAX_ENTRY).unwrap_err();
        assert!(matches!(e.problem, Problem::TooLarge { .. }), "{e}");
        assert_eq!(whole_file_cap(MAX_ENTRY), MAX_WHOLE_FILE);
        assert_eq!(whole_file_cap(16 << 20), 64 << 20);
    }

    #[test]
    fn a_file_opened_on_each_pick_is_checked_to_be_the_same() {
        let dir = Scratch::with(&[("f", TEXT), ("f.dat", &DAT), ("other", b"x\n%\nyz\n%\n")]);
        let file = dir.join("f");
        let opened = open_file(&file, false, MAX_ENTRY).unwrap();
        assert_eq!(opened.content.entry(&file, 1).unwrap(), "bc");
        // Replaced (another inode) since it was loaded.
        std::fs::rename(dir.join("other"), &file).unwrap();
        assert!(matches!(
            opened.content.entry(&file, 1),
            Err(EntryError::Changed(_))
        ));
    }
}
