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
use super::select::{Choice, Empty, Group, Length, Table};
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

    /// Every entry equally likely until `Store::share` and `Store::settle`.
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
        let members_len = members.len();
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
            table: Table::uniform(total),
            groups: vec![Group {
                files: 0..members_len,
                percent: None,
            }],
            choice: Choice::default(),
            fitting: Mutex::new(Vec::new()),
            last: AtomicUsize::new(usize::MAX),
            exhausted: AtomicBool::new(false),
        }
    }

    /// How the picks are shared: `groups`, the members each named path
    /// brought, with their percentages; `choice`, `--equal` and the length.
    /// Applied by [`Store::settle`].
    pub(super) fn share(&mut self, groups: Vec<Group>, choice: Choice) {
        self.groups = groups;
        self.choice = choice;
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
        let counts: Vec<usize> = self.members.iter().map(Member::count).collect();
        Table::build(groups, &counts, self.choice.equal, keep)
    }

    /// The length of entry `n` as strfile counts it, if its file is open.
    fn entry_len(&self, n: usize) -> Option<usize> {
        let (member, i) = self.locate(n)?;
        member.content()?.entry_len(i)
    }

    /// The file of entry `n` and its number there.
    fn locate(&self, n: usize) -> Option<(&Member, usize)> {
        let k = self.ends.partition_point(|&end| end <= n);
        let first = if k == 0 { 0 } else { self.ends[k - 1] };
        Some((self.members.get(k)?, n - first))
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
        let Some((member, i)) = self.locate(n) else {
            return Err(EntryError::Missing { n, len: self.len() });
        };
        member.entry(i, |member| self.open_member(member))
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
