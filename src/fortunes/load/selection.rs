//! What to load ([`Selection`]: the `--fortunes` paths, `--offensive`,
//! `--max-entry`, the [`Choice`]) and when to open a directory's files
//! ([`Opening`]).

use std::path::PathBuf;

use crate::fortunes::limits::MAX_ENTRY;
use crate::fortunes::member::Rule;
use crate::fortunes::select::Choice;

/// What to load: the `--fortunes` paths, whether offensive collections may
/// be served, the longest entry served (`--max-entry`), and how the picks
/// are shared out ([`Choice`]: percentages, `--equal`, `--short`/`--long`).
#[derive(Debug, Clone)]
pub struct Selection {
    pub paths: Vec<PathBuf>,
    pub offensive: bool,
    pub max_entry: usize,
    pub choice: Choice,
}

impl Selection {
    /// What each directory member must be.
    pub fn rule(&self) -> Rule {
        Rule {
            offensive: self.offensive,
            max_entry: self.max_entry,
        }
    }
}

impl Default for Selection {
    fn default() -> Selection {
        Selection {
            paths: Vec::new(),
            offensive: false,
            max_entry: MAX_ENTRY,
            choice: Choice::default(),
        }
    }
}

/// When to open the files of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Open and check every file now: the long-running service reports every
    /// problem before it serves.
    Eager,
    /// Only list directories and size each index (its entry count) now, and
    /// open a file when one of its entries is picked: one connection per
    /// process (`Accept=yes`) then costs one `stat` per file, whatever the
    /// number of entries, or, with a cache directory ([`Store::load_cached`](crate::fortunes::Store::load_cached)),
    /// reading the [`lists`](crate::fortunes::lists) cache instead.
    /// Files named on their own are still opened now.
    Lazy,
}
