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
//! Descriptors: a store holds its data files open (indexes are read whole
//! at load), at most an eighth of the soft descriptor limit of them; the
//! others are opened on each pick. A reload holds the old and the new
//! collection at once: together a quarter of the limit, so a reload of a
//! collection that loaded at start never fails for lack of descriptors.

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

/// How many data files one store may hold open (see the module docs).
pub fn hold_budget() -> usize {
    getrlimit(Resource::RLIMIT_NOFILE)
        .map_or(128, |(soft, _)| usize::try_from(soft / 8).unwrap_or(usize::MAX))
}
