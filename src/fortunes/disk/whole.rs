//! Reading a file without a usable index whole: at most [`whole_file_cap`]
//! bytes, the text and then the entries kept taken from the collection's
//! [`Budget`], entries longer than `--max-entry` left out (one warning per
//! file, `warn_long`, said for indexed files too).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::fortunes::error::{LoadError, Problem};
use crate::fortunes::limits::{Budget, whole_file_cap};
use crate::fortunes::text;

/// The entries of the file at `path` (`data`, `data_len` bytes by its
/// `fstat`), read whole; rot13 undone when `rotated`.
pub(super) fn read(
    data: &mut File,
    path: &Path,
    data_len: u64,
    max_entry: usize,
    rotated: bool,
    budget: &Budget,
) -> Result<Vec<String>, LoadError> {
    let fail = |problem| LoadError {
        path: path.to_path_buf(),
        problem,
    };
    let cap = whole_file_cap(max_entry);
    if data_len > cap {
        return Err(fail(Problem::TooLarge { len: data_len, cap }));
    }
    // The text read is taken from the budget first, then what the entries keep.
    if !budget.take(data_len) {
        return Err(fail(Problem::OverBudget));
    }
    let entries = read_text(data, cap).and_then(|entries| served(entries, path, max_entry, rotated, budget));
    budget.give(data_len);
    let entries = entries.map_err(fail)?;
    let kept = entries.iter().map(|e| e.capacity() as u64).sum::<u64>()
        + (entries.capacity() * std::mem::size_of::<String>()) as u64;
    if !budget.take(kept) {
        return Err(fail(Problem::OverBudget));
    }
    Ok(entries)
}

/// The text of a file without a usable index (at most `cap` bytes), cut
/// into entries.
fn read_text(data: &mut File, cap: u64) -> Result<Vec<String>, Problem> {
    let mut bytes = Vec::new();
    // The cap again: the file may have grown since fstat.
    data.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(Problem::Unreadable)?;
    if bytes.len() as u64 > cap {
        return Err(Problem::TooLarge {
            len: bytes.len() as u64,
            cap,
        });
    }
    text::parse(&bytes).map_err(Problem::Text)
}

/// The entries of `path` served: those longer than `max_entry` left out
/// (one warning), rot13 undone when `rotated`.
fn served(
    mut entries: Vec<String>,
    path: &Path,
    max_entry: usize,
    rotated: bool,
    budget: &Budget,
) -> Result<Vec<String>, Problem> {
    let before = entries.len();
    entries.retain(|e| e.len() <= max_entry);
    warn_long(budget, path, before - entries.len(), max_entry);
    if entries.is_empty() {
        return Err(Problem::OnlyLong(max_entry));
    }
    if rotated {
        entries = entries.iter().map(|e| text::rot13(e)).collect();
    }
    entries.shrink_to_fit();
    Ok(entries)
}

/// The one warning per file about entries left out for their length.
pub(super) fn warn_long(budget: &Budget, path: &Path, long: usize, max_entry: usize) {
    if long > 0 {
        budget.warn(format_args!(
            "{}: {long} entries longer than {max_entry} bytes left out (--max-entry)",
            path.display()
        ));
    }
}
