//! A loaded collection ([`Store`]): its [`Member`]s in order, entry `n` of
//! the whole collection, which entries fit a length limit and the entry this
//! store served last.
//!
//! A directory member listed lazily ([`Opening::Lazy`](super::Opening)) is
//! opened on its first pick and checked by the [`Rule`] a load applies: the
//! [`lists`] cache that named it is only a hint, dropped when it named a
//! file that fails the rule or counts otherwise.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::BUILTIN;
use super::disk::Content;
use super::error::{EntryError, Problem};
use super::limits::Budget;
use super::lists;
use super::member::{Member, Rule, Verdict};
use crate::wire::Protocol;

/// A loaded collection of fortunes; never empty.
#[derive(Debug)]
pub struct Store {
    members: Vec<Member>,
    /// `ends[k]`: entries in members `0..=k`, for picking across files by entry count.
    ends: Vec<usize>,
    origin: String,
    /// What a member opened on a pick must be ([`Opening::Lazy`](super::Opening)).
    rule: Rule,
    /// What members opened on a pick may still take.
    budget: Budget,
    /// The cache directory whose [`lists`] this store was loaded with: a
    /// file that counts otherwise, or fails a check, when opened makes it stale.
    list_cache: Option<PathBuf>,
    /// No entry is longer than this many bytes (`None`: some file not opened yet).
    longest: Option<usize>,
    /// Entries whose frame fits a length limit, built on first need per limit.
    fitting: Mutex<Vec<Fitting>>,
    /// The entry of this store served last, `usize::MAX` for none: kept
    /// with the store, so that a pick from a collection replaced meanwhile
    /// never carries its number into another one.
    last: AtomicUsize,
    /// "No servable fortune" was logged at warning level once.
    exhausted: AtomicBool,
}

/// The entries (by number) whose frame in a protocol fits a length limit.
type Fitting = (Protocol, usize, Arc<[usize]>);

impl Store {
    pub fn builtin() -> Store {
        let entries: Vec<String> = BUILTIN.iter().map(|s| s.to_string()).collect();
        let member = Member::opened(PathBuf::from("built-in"), Content::Memory(entries));
        Store::new(
            vec![member],
            "built-in".into(),
            Rule::default(),
            Budget::default(),
            None,
        )
    }

    pub fn new(
        members: Vec<Member>,
        origin: String,
        rule: Rule,
        budget: Budget,
        list_cache: Option<PathBuf>,
    ) -> Store {
        let mut total = 0;
        let ends = members
            .iter()
            .map(|m| {
                total += m.count();
                total
            })
            .collect();
        let longest: Option<Vec<usize>> = members
            .iter()
            .map(|m| m.content().map(Content::longest))
            .collect();
        Store {
            members,
            ends,
            origin,
            rule,
            budget,
            list_cache,
            longest: longest.map(|l| l.into_iter().max().unwrap_or(0)),
            fitting: Mutex::new(Vec::new()),
            last: AtomicUsize::new(usize::MAX),
            exhausted: AtomicBool::new(false),
        }
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
        let k = self.ends.partition_point(|&end| end <= n);
        let first = if k == 0 { 0 } else { self.ends[k - 1] };
        self.members[k].entry(n - first, |member| self.open_member(member))
    }

    /// Opens a member listed lazily on its first pick, by the load's [`Rule`].
    fn open_member(&self, member: &Member) -> Content {
        let Some(root) = member.root() else {
            return Content::Refused("it was never opened".into());
        };
        let (content, listing_wrong) = match self.rule.admit(member.path(), root, &self.budget) {
            Verdict::Servable(content) => {
                let recounted = match &content {
                    Content::Indexed(file) => file.header.count as usize != member.count(),
                    _ => false,
                };
                (content, recounted)
            }
            Verdict::Offensive { by_index: true } => (
                Content::Refused("its index says it is offensive (rot13)".into()),
                false,
            ),
            Verdict::Offensive { by_index: false } => {
                (Content::Refused("it is offensive (off/ or -o name)".into()), true)
            }
            // The cache was right: this process holds too much already.
            Verdict::Unservable(e) if matches!(e.problem, Problem::OverBudget) => {
                if self.budget.first_reached() {
                    log::warn!("{e}; left out, and so is any other file past the cap (said once)");
                }
                (Content::Refused(e.to_string()), false)
            }
            Verdict::Unservable(e) => (Content::Refused(e.to_string()), true),
        };
        if let (true, Some(dir)) = (listing_wrong, &self.list_cache) {
            lists::drop_stale(dir);
        }
        content
    }

    /// The entries whose frame in `protocol` is at most `limit` bytes, found
    /// once by reading them all (for UDP's 512 bytes: one pick, no retries).
    pub fn fitting(&self, protocol: Protocol, limit: usize) -> Arc<[usize]> {
        let mut cache = self.fitting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, list)) = cache.iter().find(|(p, l, _)| (*p, *l) == (protocol, limit)) {
            return Arc::clone(list);
        }
        let list: Arc<[usize]> = (0..self.len())
            .filter(|&n| {
                self.entry(n)
                    .ok()
                    .and_then(|text| crate::wire::encode(protocol, &text).ok())
                    .is_some_and(|frame| frame.len() <= limit)
            })
            .collect();
        log::debug!(
            "{} of {} fortunes fit {limit} bytes in {protocol}",
            list.len(),
            self.len()
        );
        cache.push((protocol, limit, Arc::clone(&list)));
        list
    }
}
