//! The caps, so that no file and no collection can make the service read
//! or hold much (docs/reliability.md lists them with their defaults).
//!
//! Per file:
//! - [`MAX_ENTRY`] (8 KiB of UTF-8, the default of `--max-entry`): longer
//!   entries are left out, with one warning per file at load. Debian's longest fortune is 2,435 bytes
//!   (`literature`); a fortune is a few hundred. 8 KiB of UTF-8 is at most
//!   16 KiB of UTF-16 in a Qt frame, well inside Qt 4's 64 KiB framing, and
//!   bounds what one connection in flight holds (the frame, and the entry
//!   while it is encoded).
//! - [`MAX_WHOLE_FILE`] (4 MiB): a file without a usable index is read whole
//!   and kept in memory; a larger one is refused (index it with `strfile`).
//!   Debian's largest fortune file is 245 KB. Four entries' worth when
//!   `--max-entry` is raised beyond a mebibyte.
//! - [`MAX_INDEX`] (1 MiB, some 262,000 entries): an index's offset table is
//!   read whole at load and kept, 8 bytes per entry; a larger index is not
//!   used. Debian's largest holds 1,203 entries (4.8 KB).
//!
//! Per collection ([`Budget`]), so that many files within their caps cannot
//! add up to much either:
//! - [`MAX_HELD`] (32 MiB): what one collection holds in memory, its index
//!   tables (8 bytes per entry) and the files it read whole. A member that
//!   would take more is left out, and the load says so in one warning.
//!   Debian's `fortunes` takes 120 KiB. A reload holds the old and the
//!   new collection at once: 64 MiB at most between them.
//! - Descriptors: a collection holds its data files open (indexes are read
//!   whole at load), at most an eighth of the soft descriptor limit of them;
//!   the others are opened on each pick. A reload holds both collections:
//!   together a quarter of the limit, so a reload of a collection that
//!   loaded at start never fails for lack of descriptors.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use nix::sys::resource::{Resource, getrlimit};

/// The longest entry served by default (`--max-entry`), in bytes of UTF-8
/// (see the module docs).
pub const MAX_ENTRY: usize = 8 * 1024;
/// The largest file read whole (one without a usable index).
pub const MAX_WHOLE_FILE: u64 = 4 << 20;
/// The largest index used.
pub const MAX_INDEX: u64 = 1 << 20;

/// The largest file read whole: [`MAX_WHOLE_FILE`], or room for four
/// entries of `--max-entry` when that is raised beyond it.
pub fn whole_file_cap(max_entry: usize) -> u64 {
    MAX_WHOLE_FILE.max(4 * max_entry as u64)
}

/// The memory one collection may hold in index tables and files read whole.
pub const MAX_HELD: u64 = 32 << 20;

/// What one collection may still take: memory ([`MAX_HELD`]) and data
/// files held open. Shared by the load and the picks that open a member
/// listed lazily.
#[derive(Debug)]
pub struct Budget {
    bytes: AtomicU64,
    descriptors: AtomicUsize,
    /// The memory cap refused a member.
    reached: AtomicBool,
    /// That was said.
    said: AtomicBool,
    /// Warnings logged about its files (see [`Budget::warn`]).
    warnings: AtomicUsize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(MAX_HELD, hold_budget())
    }
}

impl Budget {
    pub fn new(bytes: u64, descriptors: usize) -> Budget {
        Budget {
            bytes: AtomicU64::new(bytes),
            descriptors: AtomicUsize::new(descriptors),
            reached: AtomicBool::new(false),
            said: AtomicBool::new(false),
            warnings: AtomicUsize::new(0),
        }
    }

    /// Takes `n` bytes if that many are left; else takes none and records
    /// that the cap was reached.
    pub fn take(&self, n: u64) -> bool {
        let taken = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(n))
            .is_ok();
        if !taken {
            self.reached.store(true, Ordering::Relaxed);
        }
        taken
    }

    /// Gives back `n` bytes taken (an estimate larger than what was kept).
    pub fn give(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// The bytes left.
    #[cfg(test)]
    pub fn left(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Takes one data file descriptor to hold, if any is left.
    pub fn take_descriptor(&self) -> bool {
        self.descriptors
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
            .is_ok()
    }

    /// True the first time only after the memory cap refused a member.
    pub fn first_reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed) && !self.said.swap(true, Ordering::Relaxed)
    }
}

/// Warnings about a collection's files logged at warning level; the others
/// at debug, counted in one more warning ([`Budget::warnings_past`]), so a
/// directory of thousands of broken files logs a dozen lines.
pub const MAX_WARNINGS: usize = 10;

impl Budget {
    /// Logs a problem with one of the collection's files: at warning level
    /// for the first [`MAX_WARNINGS`], then at debug.
    pub fn warn(&self, message: std::fmt::Arguments<'_>) {
        if self.warnings.fetch_add(1, Ordering::Relaxed) < MAX_WARNINGS {
            log::warn!("{message}");
        } else {
            log::debug!("{message}");
        }
    }

    /// How many warnings went to debug level.
    pub fn warnings_past(&self) -> usize {
        self.warnings.load(Ordering::Relaxed).saturating_sub(MAX_WARNINGS)
    }
}

/// How many data files one collection may hold open (see the module docs).
fn hold_budget() -> usize {
    getrlimit(Resource::RLIMIT_NOFILE)
        .map_or(128, |(soft, _)| usize::try_from(soft / 8).unwrap_or(usize::MAX))
}
