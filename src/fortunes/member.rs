//! One fortune file of a collection ([`Member`]) and the rule that decides
//! whether a directory member is servable ([`Rule::admit`]), written once
//! for the loader (which opens members at load) and the store (which opens
//! a lazily listed member on its first pick).
//!
//! A lazily listed member ([`Opening::Lazy`](super::Opening)) is only a
//! hint from a listing or the [`lists`](super::lists) cache: it is checked
//! by the same rule when a pick opens it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::disk::{self, Content};
use super::error::{EntryError, LoadError, Problem};
use super::limits::{Budget, MAX_ENTRY};

/// One fortune file, opened at load or on first pick.
#[derive(Debug)]
pub struct Member {
    path: PathBuf,
    /// The real path of the fortune directory it was listed in (`None`: a
    /// file the admin named): where it must stay.
    root: Option<Arc<Path>>,
    /// Entries counted for the pick: the index's, or the parsed file's.
    count: usize,
    content: OnceLock<Content>,
    /// A problem with one of its entries was logged at warning level.
    warned: AtomicBool,
}

/// What a directory member must be to be served: its name and its index
/// not offensive unless `offensive`, a file [`disk::open_file`] opens, with
/// an index beside it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub offensive: bool,
    /// `--max-entry`.
    pub max_entry: usize,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            offensive: false,
            max_entry: MAX_ENTRY,
        }
    }
}

/// What [`Rule::admit`] found a directory member to be.
#[derive(Debug)]
pub enum Verdict {
    Servable(Content),
    /// Left out without `--offensive`; `by_index`: its index says rot13 (a
    /// listing, which opens no file, cannot know), else its name says so.
    Offensive {
        by_index: bool,
    },
    /// Not a fortune file after all.
    Unservable(LoadError),
}

impl Rule {
    /// Whether a listing takes the directory entry `name` as a fortune file:
    /// `present` holds the names beside it (its index `NAME.dat` must be one).
    pub fn lists(name: &str, present: &HashSet<&str>) -> bool {
        !name.starts_with('.') && !name.ends_with(".dat") && present.contains(format!("{name}.dat").as_str())
    }

    /// Whether `path`'s name marks it offensive while that is not served.
    pub fn refuses_name(&self, path: &Path) -> bool {
        !self.offensive && offensive_by_name(path)
    }

    /// Checks and opens `path`, a member of the fortune directory whose real
    /// path is `root`: a regular file inside it, not the kernel's, with its
    /// index, within the collection's `budget` (see [`disk::open_file`]).
    pub fn admit(&self, path: &Path, root: &Path, budget: &Budget) -> Verdict {
        if self.refuses_name(path) {
            return Verdict::Offensive { by_index: false };
        }
        match disk::open_file(path, Some(root), budget, self.max_entry) {
            Err(e) => Verdict::Unservable(e),
            Ok(opened) if !opened.has_index => Verdict::Unservable(LoadError {
                path: path.to_path_buf(),
                problem: Problem::NoIndex,
            }),
            Ok(opened) if opened.rotated && !self.offensive => Verdict::Offensive { by_index: true },
            Ok(opened) => Verdict::Servable(opened.content),
        }
    }
}

/// fortune-mod's marks of an offensive collection other than its index's
/// rot13 flag: an `off` directory, a name ending in `-o` (BSD).
fn offensive_by_name(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "off")
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("-o"))
}

impl Member {
    pub fn opened(path: PathBuf, content: Content) -> Member {
        Member {
            path,
            root: None,
            count: content.count(),
            content: OnceLock::from(content),
            warned: AtomicBool::new(false),
        }
    }

    /// A directory member to open on its first pick ([`Opening::Lazy`](super::Opening)).
    pub fn lazy(path: PathBuf, root: Arc<Path>, count: usize) -> Member {
        Member {
            path,
            root: Some(root),
            count,
            content: OnceLock::new(),
            warned: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The real path of the directory it was listed in (see [`Rule::admit`]).
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Entries counted for the pick.
    pub fn count(&self) -> usize {
        self.count
    }

    /// What it holds, if opened (always, unless listed lazily).
    pub fn content(&self) -> Option<&Content> {
        self.content.get()
    }

    /// Entry `i` of it, opening it with `open` on the first call. A problem
    /// is logged at warning level once, then at debug (a file whose entries
    /// are all broken would otherwise log a line per draw, on every connection).
    pub fn entry(&self, i: usize, open: impl FnOnce(&Member) -> Content) -> Result<Cow<'_, str>, EntryError> {
        let content = self.content.get_or_init(|| open(self));
        let entry = content.entry(&self.path, i);
        if let Err(e) = &entry {
            if self.warned.swap(true, Ordering::Relaxed) {
                log::debug!("{e}");
            } else {
                log::warn!("{e} (further problems with this file are logged at debug level)");
            }
        }
        entry
    }
}
