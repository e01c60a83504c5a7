//! The fortune store: the built-in Qt fortunes or the collections an admin
//! names, parsed once at start (and again on reload), and the random pick.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rand::{Rng, RngExt};

use crate::wire::{self, Protocol};

/// The seven fortunes of Qt's Threaded Fortune Server example, verbatim.
pub const BUILTIN: [&str; 7] = [
    "You've been leading a dog's life. Stay off the furniture.",
    "You've got to think about tomorrow.",
    "You will be surprised by a loud noise.",
    "You will feel hungry again in another hour.",
    "You might have mail.",
    "You cannot kill time without injuring eternity.",
    "Computers are not intelligent. They only think they are.",
];

/// A loaded collection of fortunes; never empty.
#[derive(Debug, Clone)]
pub struct Store {
    entries: Vec<String>,
    origin: String,
}

/// Why a fortune file could not be used.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug)]
pub enum Problem {
    Unreadable(std::io::Error),
    NotUtf8 { line: usize },
    Empty,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Unreadable(e) => write!(f, "cannot read fortune file {path}: {e}"),
            Problem::NotUtf8 { line } => write!(
                f,
                "fortune file {path} is not UTF-8 text (line {line}); convert it with iconv -t UTF-8"
            ),
            Problem::Empty => write!(f, "fortune file {path} holds no fortunes"),
        }
    }
}

impl std::error::Error for LoadError {}

impl Store {
    pub fn builtin() -> Store {
        Store {
            entries: BUILTIN.iter().map(|s| s.to_string()).collect(),
            origin: "built-in".to_string(),
        }
    }

    /// The built-in fortunes when `paths` is empty, else every file's entries.
    pub fn load(paths: &[PathBuf]) -> Result<Store, LoadError> {
        if paths.is_empty() {
            return Ok(Store::builtin());
        }
        let mut entries = Vec::new();
        for path in paths {
            entries.extend(read_file(path)?);
        }
        let origin = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Store { entries, origin })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the fortunes come from, for logs and `STATUS=`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A uniformly random entry; never `previous` when there is another, since
    /// the Qt clients re-request at once when a fortune equals the last one.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R, previous: Option<usize>) -> (usize, &str) {
        let n = self.entries.len();
        let mut i = rng.random_range(0..n);
        if n > 1 && Some(i) == previous {
            // Uniform over the n-1 others.
            i = (i + rng.random_range(1..n)) % n;
        }
        (i, &self.entries[i])
    }
}

/// The collection being served, swapped whole on reload: a connection keeps
/// the `Arc<Store>` it started with.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Store>>,
    /// Index of the last fortune served, or `usize::MAX` for none yet.
    last: AtomicUsize,
}

impl Live {
    pub fn new(store: Store) -> Live {
        Live {
            current: RwLock::new(Arc::new(store)),
            last: AtomicUsize::new(usize::MAX),
        }
    }

    pub fn store(&self) -> Arc<Store> {
        // A poisoned lock still holds a whole Arc: keep serving it.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, store: Store) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
        self.last.store(usize::MAX, Ordering::Relaxed);
    }

    /// One frame of a random fortune, never the one served just before.
    /// `None` only if no fortune tried fits the protocol (qt4's 64 KiB) or
    /// `max_len` (one UDP datagram).
    pub fn frame(&self, protocol: Protocol, max_len: Option<usize>) -> Option<Vec<u8>> {
        let store = self.store();
        let mut rng = rand::rng();
        for _ in 0..8 {
            let previous = Some(self.last.load(Ordering::Relaxed)).filter(|&i| i != usize::MAX);
            let (i, text) = store.pick(&mut rng, previous);
            self.last.store(i, Ordering::Relaxed);
            match wire::encode(protocol, text) {
                Ok(frame) if max_len.is_none_or(|max| frame.len() <= max) => return Some(frame),
                Ok(frame) => log::debug!("fortune {i} ({} bytes) is too long for a datagram", frame.len()),
                Err(e) => log::warn!("skipping fortune {i} of {}: {e}", store.origin()),
            }
        }
        None
    }
}

fn read_file(path: &Path) -> Result<Vec<String>, LoadError> {
    let fail = |problem| LoadError {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(Problem::Unreadable(e)))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        fail(Problem::NotUtf8 { line })
    })?;
    let entries = parse(&text);
    if entries.is_empty() {
        return Err(fail(Problem::Empty));
    }
    Ok(entries)
}

/// Splits a fortune file: fortune-mod style when any line is exactly `%`
/// (entries may span lines), else one fortune per line. Blank entries are
/// dropped: an empty fortune makes the Qt client loop.
pub fn parse(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let is_delimiter = |line: &str| line.trim_end_matches('\r') == "%";
    let keep = |s: &str| {
        let s = s.trim_end();
        (!s.trim().is_empty()).then(|| s.to_string())
    };
    if text.lines().any(is_delimiter) {
        let mut entries = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if is_delimiter(line) {
                entries.extend(keep(&current));
                current.clear();
            } else {
                current.push_str(line.trim_end_matches('\r'));
                current.push('\n');
            }
        }
        entries.extend(keep(&current));
        entries
    } else {
        text.lines().filter_map(keep).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fortune_per_line() {
        assert_eq!(parse("a\n\nb \r\n  \nc"), ["a", "b", "c"]);
    }

    #[test]
    fn percent_separated_entries_span_lines() {
        assert_eq!(parse("one\ntwo\n%\n%\nthree\n%\n"), ["one\ntwo", "three"]);
        assert_eq!(parse("%\r\nx\r\ny\r\n%\r\n"), ["x\ny"]);
    }

    #[test]
    fn a_percent_inside_a_line_is_text() {
        assert_eq!(parse("100% sure\n50 %\n"), ["100% sure", "50 %"]);
    }

    #[test]
    fn pick_never_repeats_when_it_can() {
        let store = Store::builtin();
        let mut rng = rand::rng();
        let mut previous = None;
        for _ in 0..1000 {
            let (i, _) = store.pick(&mut rng, previous);
            assert_ne!(Some(i), previous);
            previous = Some(i);
        }
    }

    #[test]
    fn pick_covers_every_entry() {
        let store = Store::builtin();
        let mut rng = rand::rng();
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[store.pick(&mut rng, Some(0)).0] = true;
        }
        assert_eq!(seen, [false, true, true, true, true, true, true]);
    }
}
