//! A loaded collection ([`Store`]): its files in order, entry `n` of the
//! whole collection, which entries fit a length limit, the entry this store
//! served last, and the warnings about its files, said once per file.
//!
//! A directory member listed lazily ([`Opening::Lazy`](super::Opening)) is
//! opened on its first pick and checked as a listing would (an index beside
//! it, a regular file, not offensive without `--offensive`): the [`lists`]
//! cache that named it is only a hint, dropped when it named a file that
//! fails these checks.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::BUILTIN;
use super::disk::{self, Content, EntryError};
use super::lists;
use super::load::{Selection, offensive_by_name};
use super::select::{Choice, Empty, Group, Length, Table};
use crate::wire::Protocol;

/// A loaded collection of fortunes; never empty.
#[derive(Debug)]
pub struct Store {
    sources: Vec<Source>,
    /// `ends[k]`: entries in sources `0..=k`, for picking across files by entry count.
    ends: Vec<usize>,
    origin: String,
    /// Serve offensive files found on a pick ([`Opening::Lazy`](super::Opening)).
    offensive: bool,
    /// `--max-entry`, for files opened on a pick.
    max_entry: usize,
    /// The cache directory whose [`lists`] this store was loaded with: a
    /// file that counts otherwise, or fails a check, when opened makes it stale.
    list_cache: Option<PathBuf>,
    /// No entry is longer than this many bytes (`None`: some file not opened yet).
    longest: Option<usize>,
    /// The named paths' files and shares, and how to choose ([`select`](super::select)).
    groups: Vec<Group>,
    choice: Choice,
    /// What a pick draws from (see [`Store::settle`]).
    table: Table,
    /// The table of the entries whose frame fits a length limit, built on
    /// first need per limit.
    fitting: Mutex<Vec<Fitting>>,
    /// The entry of this store served last, `usize::MAX` for none: kept
    /// with the store, so that a pick from a collection replaced meanwhile
    /// never carries its number into another one.
    last: AtomicUsize,
    /// "No servable fortune" was logged at warning level once.
    exhausted: AtomicBool,
}

/// The table of the entries whose frame in a protocol fits a length limit.
type Fitting = (Protocol, usize, Arc<Table>);

/// One fortune file, opened at load or on first pick.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    /// Entries counted for the pick: the index's, or the parsed file's.
    count: usize,
    content: OnceLock<Content>,
    /// A problem with one of its entries was logged at warning level.
    warned: AtomicBool,
}

impl Store {
    pub fn builtin() -> Store {
        let entries: Vec<String> = BUILTIN.iter().map(|s| s.to_string()).collect();
        let source = Source::opened(PathBuf::from("built-in"), Content::Memory(entries));
        let groups = vec![Group {
            files: 0..1,
            percent: None,
        }];
        Store::new(
            vec![source],
            "built-in".into(),
            &Selection::default(),
            None,
            groups,
        )
    }

    /// `groups`: the files each named path brought; every entry is equally
    /// likely until [`Store::settle`].
    pub(super) fn new(
        sources: Vec<Source>,
        origin: String,
        selection: &Selection,
        list_cache: Option<PathBuf>,
        groups: Vec<Group>,
    ) -> Store {
        let mut total = 0;
        let ends = sources
            .iter()
            .map(|s| {
                total += s.count;
                total
            })
            .collect();
        let longest: Option<Vec<usize>> = sources
            .iter()
            .map(|s| s.content.get().map(Content::longest))
            .collect();
        Store {
            sources,
            ends,
            origin,
            offensive: selection.offensive,
            max_entry: selection.max_entry,
            list_cache,
            longest: longest.map(|l| l.into_iter().max().unwrap_or(0)),
            table: Table::uniform(total),
            groups,
            choice: selection.choice.clone(),
            fitting: Mutex::new(Vec::new()),
            last: AtomicUsize::new(usize::MAX),
            exhausted: AtomicBool::new(false),
        }
    }

    /// Builds the table of the pick for the choice (`--short`/`--long`,
    /// percentages, `--equal`). An error names the group that has no entry
    /// to serve, for the caller to leave out ([`Store::leave_out`]) or report.
    pub(super) fn settle(&mut self) -> Result<(), Empty> {
        self.table = self.table_of(&self.groups, None)?;
        Ok(())
    }

    /// Group `g` (an optional path) no longer gets picks.
    pub(super) fn leave_out(&mut self, g: usize) {
        if g < self.groups.len() {
            self.groups.remove(g);
        }
    }

    /// What a pick draws from.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The table of the entries of the chosen length that `fits` too.
    fn table_of(&self, groups: &[Group], fits: Option<&dyn Fn(usize) -> bool>) -> Result<Table, Empty> {
        let length = self.choice.length;
        let keeps = |n: usize| {
            (length == Length::Any || self.entry_len(n).is_some_and(|l| length.keeps(l)))
                && fits.is_none_or(|fits| fits(n))
        };
        let keep: Option<&dyn Fn(usize) -> bool> =
            (length != Length::Any || fits.is_some()).then_some(&keeps);
        let counts: Vec<usize> = self.sources.iter().map(|s| s.count).collect();
        Table::build(groups, &counts, self.choice.equal, keep)
    }

    /// The length of entry `n` as strfile counts it, if its file is open.
    fn entry_len(&self, n: usize) -> Option<usize> {
        let (source, i) = self.locate(n)?;
        source.content.get()?.entry_len(i)
    }

    /// The file of entry `n` and its number there.
    fn locate(&self, n: usize) -> Option<(&Source, usize)> {
        let k = self.ends.partition_point(|&end| end <= n);
        let first = if k == 0 { 0 } else { self.ends[k - 1] };
        Some((self.sources.get(k)?, n - first))
    }

    /// The number of entries (some may turn out unservable when read).
    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the fortunes come from, for logs and `STATUS=`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// No entry is longer than this many bytes of UTF-8; `None` while some
    /// file is not opened yet ([`Opening::Lazy`](super::Opening)).
    pub fn longest(&self) -> Option<usize> {
        self.longest
    }

    /// The entry of this store served last, if any.
    pub fn last(&self) -> Option<usize> {
        Some(self.last.load(Ordering::Relaxed)).filter(|&n| n < self.len())
    }

    pub fn set_last(&self, n: usize) {
        self.last.store(n, Ordering::Relaxed);
    }

    /// True the first time only: whether to warn that no fortune could be
    /// served (then at debug level, so a broken collection cannot flood the log).
    pub fn first_exhausted(&self) -> bool {
        !self.exhausted.swap(true, Ordering::Relaxed)
    }

    /// Entry `n` (`0..len()`) of the whole collection, ready to serve. A
    /// problem is logged at warning level once per file, then at debug.
    pub fn entry(&self, n: usize) -> Result<Cow<'_, str>, EntryError> {
        if n >= self.len() {
            return Err(EntryError::Missing { n, len: self.len() });
        }
        let Some((source, i)) = self.locate(n) else {
            return Err(EntryError::Missing { n, len: self.len() });
        };
        let content = source.content.get_or_init(|| self.open_member(source));
        let entry = content.entry(&source.path, i);
        if let Err(e) = &entry {
            source.report(e);
        }
        entry
    }

    /// Opens a member listed lazily on its first pick, checked as a listing
    /// would check it.
    fn open_member(&self, source: &Source) -> Content {
        let path = &source.path;
        let (content, listing_wrong) = if !self.offensive && offensive_by_name(path) {
            (Content::Refused("it is offensive (off/ or -o name)".into()), true)
        } else {
            match disk::open_file(path, true, self.max_entry) {
                Ok(opened) if !opened.has_index => {
                    (Content::Refused("it has no index NAME.dat".into()), true)
                }
                // A listing does not open files: it cannot know this one.
                Ok(opened) if opened.rotated && !self.offensive => (
                    Content::Refused("its index says it is offensive (rot13)".into()),
                    false,
                ),
                Ok(opened) => {
                    let recounted = match &opened.content {
                        Content::Indexed(file) => file.header.count as usize != source.count,
                        _ => false,
                    };
                    (opened.content, recounted)
                }
                Err(e) => (Content::Refused(e.to_string()), true),
            }
        };
        if listing_wrong && let Some(dir) = &self.list_cache {
            lists::drop_stale(dir);
        }
        content
    }

    /// The table of the entries whose frame in `protocol` is at most `limit`
    /// bytes, found once by reading them all (for UDP's 512 bytes: one pick,
    /// no retries); empty when none fits.
    pub fn fitting(&self, protocol: Protocol, limit: usize) -> Arc<Table> {
        let mut cache = self.fitting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, list)) = cache.iter().find(|(p, l, _)| (*p, *l) == (protocol, limit)) {
            return Arc::clone(list);
        }
        let fits = |n: usize| {
            self.entry(n)
                .ok()
                .and_then(|text| crate::wire::encode(protocol, &text).ok())
                .is_some_and(|frame| frame.len() <= limit)
        };
        // A share none of whose entries fits goes to the others.
        let mut groups = self.groups.clone();
        let table = loop {
            match self.table_of(&groups, Some(&fits)) {
                Ok(table) => break table,
                Err(Empty::Group(g)) if g < groups.len() => {
                    groups.remove(g);
                }
                Err(_) => break Table::uniform(0),
            }
        };
        let list = Arc::new(table);
        log::debug!(
            "{} of {} fortunes fit {limit} bytes in {protocol}",
            list.len(),
            self.len()
        );
        cache.push((protocol, limit, Arc::clone(&list)));
        list
    }
}

impl Source {
    pub(super) fn opened(path: PathBuf, content: Content) -> Source {
        Source {
            path,
            count: content.count(),
            content: OnceLock::from(content),
            warned: AtomicBool::new(false),
        }
    }

    /// A directory member to open on its first pick ([`Opening::Lazy`](super::Opening)).
    pub(super) fn lazy(path: PathBuf, count: usize) -> Source {
        Source {
            path,
            count,
            content: OnceLock::new(),
            warned: AtomicBool::new(false),
        }
    }

    /// Logs a problem with one of its entries: the first at warning level,
    /// the others at debug (a file whose entries are all broken would
    /// otherwise log a line per draw, on every connection).
    fn report(&self, e: &EntryError) {
        if self.warned.swap(true, Ordering::Relaxed) {
            log::debug!("{e}");
        } else {
            log::warn!("{e} (further problems with this file are logged at debug level)");
        }
    }
}
