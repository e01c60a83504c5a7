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
//! of at most `--max-entry` + 4 bytes, where the table says it lies.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use super::error::{EntryError, LoadError, Problem};
use super::limits::{Budget, MAX_INDEX, whole_file_cap};
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
    /// `--max-entry`: an entry at the end of the file, which has no
    /// delimiter line to count, is measured again when read.
    max_entry: usize,
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

/// Where [`open_regular`] may find a file: anywhere for a file the admin
/// named, inside the real path of its fortune directory for a member of one.
/// Never in the kernel's trees ([`KERNEL_TREES`], or a file system such as
/// procfs wherever it is mounted).
pub type Within<'a> = Option<&'a Path>;

/// Paths never read as fortunes, whatever leads there.
pub const KERNEL_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Opens `path` for reading if it is a regular file (following symlinks)
/// whose real path is allowed by `within`, without ever waiting:
/// `O_NONBLOCK`, then `fstat` and the real path of what was opened (not of
/// the name: a link swapped in between cannot lead elsewhere).
pub fn open_regular(path: &Path, within: Within<'_>) -> Result<(File, Metadata), Problem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(Problem::Unreadable)?;
    let meta = file.metadata().map_err(Problem::Unreadable)?;
    let kind = meta.file_type();
    let irregular = if kind.is_file() {
        check_place(&file, path, within)?;
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

/// Refuses a file opened from `path` that is the kernel's or lies outside `within`.
fn check_place(file: &File, path: &Path, within: Within<'_>) -> Result<(), Problem> {
    use nix::sys::statfs::{self, fstatfs};
    // The descriptor's own path; /proc may be missing in a sandbox: then the name's.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .or_else(|_| std::fs::canonicalize(path))
        .map_err(Problem::Unreadable)?;
    let kernel_fs = fstatfs(file).is_ok_and(|fs| {
        [
            statfs::PROC_SUPER_MAGIC,
            statfs::SYSFS_MAGIC,
            statfs::DEBUGFS_MAGIC,
            statfs::TRACEFS_MAGIC,
            statfs::SECURITYFS_MAGIC,
            statfs::CGROUP_SUPER_MAGIC,
            statfs::CGROUP2_SUPER_MAGIC,
            statfs::BPF_FS_MAGIC,
        ]
        .contains(&fs.filesystem_type())
    });
    if kernel_fs || KERNEL_TREES.iter().any(|tree| real.starts_with(tree)) {
        return Err(Problem::Kernel(real));
    }
    match within {
        Some(root) if !real.starts_with(root) => Err(Problem::Outside {
            real,
            root: root.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Opens one file, with its index when there is a usable one, else reads
/// it whole (at most [`whole_file_cap`]); both where `within` allows. The
/// index table or the text kept is taken from `budget`, and so is the data
/// file's descriptor while any is left (else it is opened on each pick).
/// Entries longer than `max_entry` bytes are left out, with one warning. An
/// index that is not a regular file, or not where `within` allows, refuses
/// the file (it is reported, never read); one that is unusable is reported
/// and the file read without it.
pub fn open_file(
    path: &Path,
    within: Within<'_>,
    budget: &Budget,
    max_entry: usize,
) -> Result<Opened, LoadError> {
    let fail = |path: &Path, problem| LoadError {
        path: path.to_path_buf(),
        problem,
    };
    let (mut data, meta) = open_regular(path, within).map_err(|p| fail(path, p))?;
    let data_len = meta.len();
    let mut dat = path.as_os_str().to_owned();
    dat.push(".dat");
    let dat = PathBuf::from(dat);
    let mut rotated = false;
    let mut has_index = true;
    match open_regular(&dat, within) {
        Ok((index, index_meta)) => match read_index(&index, index_meta.len(), data_len, max_entry, budget) {
            Ok((header, spans)) => {
                warn_long(budget, path, spans.long, max_entry);
                if spans.kept.is_empty() {
                    budget.give(spans.held);
                    let problem = match spans.long {
                        0 => Problem::NoEntries,
                        _ => Problem::OnlyLong(max_entry),
                    };
                    return Err(fail(path, problem));
                }
                let data = match budget.take_descriptor() {
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
                    max_entry,
                };
                return Ok(Opened {
                    content: Content::Indexed(indexed),
                    rotated: header.rotated(),
                    has_index,
                });
            }
            Err(IndexProblem::Invalid(why, header)) => {
                rotated = header.is_some_and(|h| h.rotated());
                budget.warn(format_args!(
                    "{}: {why}; reading {} without it",
                    dat.display(),
                    path.display()
                ));
            }
            Err(IndexProblem::TooLarge(len)) => budget.warn(format_args!(
                "{}: {len} bytes, more than the {MAX_INDEX} an index may have; reading {} without it",
                dat.display(),
                path.display()
            )),
            Err(IndexProblem::Io(e)) => budget.warn(format_args!(
                "cannot read {}: {e}; reading {} without it",
                dat.display(),
                path.display()
            )),
            Err(IndexProblem::OverBudget) => return Err(fail(path, Problem::OverBudget)),
        },
        Err(problem @ (Problem::NotRegular(_) | Problem::Kernel(_) | Problem::Outside { .. })) => {
            return Err(fail(&dat, problem));
        }
        Err(Problem::Unreadable(e)) if e.kind() == ErrorKind::NotFound => has_index = false,
        Err(problem) => budget.warn(format_args!(
            "{}; reading {} without it",
            fail(&dat, problem),
            path.display()
        )),
    }
    let cap = whole_file_cap(max_entry);
    let too_large = |len| fail(path, Problem::TooLarge { len, cap });
    if data_len > cap {
        return Err(too_large(data_len));
    }
    // The text read is taken from the budget first, then what the entries keep.
    if !budget.take(data_len) {
        return Err(fail(path, Problem::OverBudget));
    }
    let entries = read_whole(&mut data, path, cap, max_entry, rotated, budget);
    budget.give(data_len);
    let entries = entries?;
    let kept = entries.iter().map(|e| e.capacity() as u64).sum::<u64>()
        + (entries.capacity() * std::mem::size_of::<String>()) as u64;
    if !budget.take(kept) {
        return Err(fail(path, Problem::OverBudget));
    }
    Ok(Opened {
        content: Content::Memory(entries),
        rotated,
        has_index,
    })
}

/// The entries of a file without a usable index, read whole (at most `cap`
/// bytes), those longer than `max_entry` left out.
fn read_whole(
    data: &mut File,
    path: &Path,
    cap: u64,
    max_entry: usize,
    rotated: bool,
    budget: &Budget,
) -> Result<Vec<String>, LoadError> {
    let fail = |problem| LoadError {
        path: path.to_path_buf(),
        problem,
    };
    let mut bytes = Vec::new();
    // The cap again: the file may have grown since fstat.
    data.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(Problem::Unreadable(e)))?;
    if bytes.len() as u64 > cap {
        return Err(fail(Problem::TooLarge {
            len: bytes.len() as u64,
            cap,
        }));
    }
    let mut entries = text::parse(&bytes).map_err(|e| fail(Problem::Text(e)))?;
    drop(bytes);
    let before = entries.len();
    entries.retain(|e| e.len() <= max_entry);
    warn_long(budget, path, before - entries.len(), max_entry);
    if entries.is_empty() {
        return Err(fail(Problem::OnlyLong(max_entry)));
    }
    if rotated {
        entries = entries.iter().map(|e| text::rot13(e)).collect();
    }
    entries.shrink_to_fit();
    Ok(entries)
}

/// The one warning per file about entries left out for their length.
fn warn_long(budget: &Budget, path: &Path, long: usize, max_entry: usize) {
    if long > 0 {
        budget.warn(format_args!(
            "{}: {long} entries longer than {max_entry} bytes left out (--max-entry)",
            path.display()
        ));
    }
}

enum IndexProblem {
    Io(std::io::Error),
    TooLarge(u64),
    /// With the header, when it parsed, for its rot13 flag.
    Invalid(IndexError, Option<Header>),
    /// Its table would take more than the collection has left.
    OverBudget,
}

/// An index's entries and the bytes of `budget` they hold.
struct Table {
    kept: Vec<Span>,
    long: usize,
    held: u64,
}

/// Reads a whole index of `index_len` bytes (at most [`MAX_INDEX`]),
/// checks it against the data file's length and cuts that into entries,
/// whose table is taken from `budget`.
fn read_index(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::fixture::{DAT, Scratch, TEXT};
    use crate::fortunes::limits::{MAX_ENTRY, MAX_WHOLE_FILE};

    fn kind(path: &Path) -> Option<&'static str> {
        match open_regular(path, None) {
            Err(Problem::NotRegular(what)) => Some(what),
            _ => None,
        }
    }

    fn open(path: &Path, max_entry: usize) -> Result<Opened, LoadError> {
        open_file(path, None, &Budget::default(), max_entry)
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
        assert!(
            open_regular(&link, None).is_ok(),
            "a symlink to a regular file is read"
        );
    }

    #[test]
    fn the_kernels_files_are_never_read() {
        let dir = Scratch::dir();
        for target in [
            "/proc/self/environ",
            "/proc/self/maps",
            "/sys/kernel/mm/transparent_hugepage/enabled",
        ] {
            if !Path::new(target).exists() {
                continue;
            }
            let link = dir.join("link");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).unwrap();
            for path in [Path::new(target), &link] {
                match open_regular(path, None) {
                    Err(Problem::Kernel(real)) => {
                        assert!(real.starts_with("/proc") || real.starts_with("/sys"))
                    }
                    other => panic!("{target}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_member_stays_inside_its_directory() {
        let dir = Scratch::with(&[("inside/f", b"a\n"), ("outside/secret", b"s\n")]);
        let root = dir.join("inside").canonicalize().unwrap();
        std::os::unix::fs::symlink("../outside/secret", dir.join("inside/away")).unwrap();
        std::os::unix::fs::symlink("f", dir.join("inside/same")).unwrap();
        assert!(open_regular(&dir.join("inside/f"), Some(&root)).is_ok());
        assert!(open_regular(&dir.join("inside/same"), Some(&root)).is_ok());
        match open_regular(&dir.join("inside/away"), Some(&root)) {
            Err(Problem::Outside { real, root: r }) => {
                assert_eq!(real, dir.join("outside/secret").canonicalize().unwrap());
                assert_eq!(r, root);
            }
            other => panic!("{other:?}"),
        }
        // Named on its own, the same file is read.
        assert!(open_regular(&dir.join("inside/away"), None).is_ok());
    }

    #[test]
    fn long_entries_and_large_files_without_an_index() {
        let file = Scratch::file(format!("short\n%\n{}\n%\n", "x".repeat(100)).as_bytes());
        let opened = open(&file, 64).unwrap();
        assert_eq!(opened.content.count(), 1);
        assert_eq!(opened.content.entry(&file, 0).unwrap(), "short");
        let e = open(&file, 4).unwrap_err();
        assert!(matches!(e.problem, Problem::OnlyLong(4)), "{e}");
        std::fs::write(&file, vec![b'y'; MAX_WHOLE_FILE as usize + 1]).unwrap();
        let e = open(&file, MAX_ENTRY).unwrap_err();
        assert!(matches!(e.problem, Problem::TooLarge { .. }), "{e}");
        assert_eq!(whole_file_cap(MAX_ENTRY), MAX_WHOLE_FILE);
        assert_eq!(whole_file_cap(16 << 20), 64 << 20);
    }

    #[test]
    fn max_entry_admits_exactly_its_length_indexed_or_not() {
        // "a" (1 byte) and "bc" (2): a limit of 2 serves both, 1 only "a".
        let dir = Scratch::with(&[("f", TEXT), ("f.dat", &DAT), ("plain", TEXT)]);
        for name in ["f", "plain"] {
            let path = dir.join(name);
            let served = |max| {
                let opened = open(&path, max).unwrap();
                (0..opened.content.count())
                    .map(|i| opened.content.entry(&path, i).unwrap().into_owned())
                    .collect::<Vec<_>>()
            };
            assert_eq!(served(2), ["a", "bc"], "{name}");
            assert_eq!(served(1), ["a"], "{name}");
        }
        // The last entry of an indexed file without a delimiter after it is measured when read.
        let dir = Scratch::with(&[("f", b"a\n%\nbcd"), ("f.dat", &DAT)]);
        let mut dat = DAT;
        dat[35] = 7;
        std::fs::write(dir.join("f.dat"), dat).unwrap();
        let path = dir.join("f");
        let opened = open(&path, 2).unwrap();
        assert!(matches!(
            opened.content.entry(&path, 1),
            Err(EntryError::TooLong { max: 2, .. })
        ));
        assert_eq!(open(&path, 3).unwrap().content.entry(&path, 1).unwrap(), "bcd");
    }

    #[test]
    fn a_collection_holds_no_more_than_its_budget() {
        let dir = Scratch::with(&[("f", TEXT), ("f.dat", &DAT), ("plain", TEXT)]);
        // An index of 36 bytes is estimated at 72 (8 per 4-byte offset) until
        // read; its table keeps 2 entries of 8 bytes.
        let budget = Budget::new(72, 0);
        let indexed = open_file(&dir.join("f"), None, &budget, MAX_ENTRY).unwrap();
        assert_eq!(budget.left(), 72 - 16);
        assert!(!budget.first_reached());
        // No descriptor left to hold: the data file is opened on each pick.
        assert!(matches!(
            &indexed.content,
            Content::Indexed(Indexed {
                data: Held::Reopen { .. },
                ..
            })
        ));
        let e = open_file(&dir.join("f"), None, &budget, MAX_ENTRY).unwrap_err();
        assert!(matches!(e.problem, Problem::OverBudget), "{e}");
        assert!(budget.first_reached());
        assert!(!budget.first_reached(), "said once");
        assert_eq!(budget.left(), 72 - 16, "a refused file gives its estimate back");
        // Read whole: the text, then what its entries keep.
        let budget = Budget::new(8, 1);
        let e = open_file(&dir.join("plain"), None, &budget, MAX_ENTRY).unwrap_err();
        assert!(matches!(e.problem, Problem::OverBudget), "{e}");
        assert_eq!(budget.left(), 8);
    }

    #[test]
    fn a_file_opened_on_each_pick_is_checked_to_be_the_same() {
        let dir = Scratch::with(&[("f", TEXT), ("f.dat", &DAT), ("other", b"x\n%\nyz\n%\n")]);
        let file = dir.join("f");
        let opened = open_file(&file, None, &Budget::new(1 << 20, 0), MAX_ENTRY).unwrap();
        assert_eq!(opened.content.entry(&file, 1).unwrap(), "bc");
        // Replaced (another inode) since it was loaded.
        std::fs::rename(dir.join("other"), &file).unwrap();
        assert!(matches!(
            opened.content.entry(&file, 1),
            Err(EntryError::Changed(_))
        ));
    }
}
