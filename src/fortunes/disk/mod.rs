//! Reading fortune files from disk: opening a file and its `NAME.dat`
//! index safely, cutting the file into entries, and reading one entry.
//!
//! [`open_file`] (here) decides how one file is loaded: with its index when
//! there is a usable one, else read whole. [`open`]: opening one regular
//! file where it may be read, never waiting; [`index`]: reading a `NAME.dat`
//! and cutting the data file into entries by it; [`whole`]: reading a file
//! without a usable index whole; [`content`]: what a file holds as loaded
//! ([`Content`]) and reading entry `i` of it. This file uses them all;
//! `content` uses `open`; the others use none of them.

pub mod content;
pub mod index;
pub mod open;
pub mod whole;

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::{LoadError, Problem};
use super::limits::{Budget, MAX_INDEX};
use content::Held;
use index::{IndexProblem, read_index};

pub use content::{Content, Indexed};
pub use open::{KERNEL_TREES, Within, open_regular};

/// A file opened by [`open_file`].
#[derive(Debug)]
pub struct Opened {
    pub content: Content,
    /// Its index says rot13 (fortune-mod's offensive files).
    pub rotated: bool,
    /// A `NAME.dat` exists beside it (used or not).
    pub has_index: bool,
}

/// Opens one file, with its index when there is a usable one, else reads
/// it whole (at most [`whole_file_cap`](crate::fortunes::limits::whole_file_cap)); both where `within` allows. The
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
                whole::warn_long(budget, path, spans.long, max_entry);
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
    let entries = whole::read(&mut data, path, data_len, max_entry, rotated, budget)?;
    Ok(Opened {
        content: Content::Memory(entries),
        rotated,
        has_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::error::EntryError;
    use crate::fortunes::fixture::{DAT, Scratch, TEXT};
    use crate::fortunes::limits::{MAX_ENTRY, MAX_WHOLE_FILE, whole_file_cap};

    fn open(path: &Path, max_entry: usize) -> Result<Opened, LoadError> {
        open_file(path, None, &Budget::default(), max_entry)
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
