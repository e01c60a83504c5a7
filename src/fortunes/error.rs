//! Why a path cannot be loaded ([`LoadError`], with its [`Problem`]) and
//! why one entry cannot be served ([`EntryError`]): the messages the admin
//! reads, each saying what to do.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::limits::MAX_HELD;
use super::select::Length;
use super::strfile;
use super::text::TextError;

/// Why the collection could not be loaded.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug)]
pub enum Problem {
    Unreadable(std::io::Error),
    /// A FIFO, a device, a socket or a directory where a file must be.
    NotRegular(&'static str),
    /// Too large to read whole (it has no usable index).
    TooLarge {
        len: u64,
        cap: u64,
    },
    Text(TextError),
    /// Every entry is longer than this (`--max-entry`).
    OnlyLong(usize),
    /// A directory with no fortune file in it (`offensive` of them skipped).
    NoFortuneFiles {
        offensive: usize,
    },
    /// Named on its own without `--offensive`.
    Offensive,
    /// No fortune of the length chosen (`--short`, `--long`) in the path
    /// given a percentage, or in the whole collection.
    NoneOfLength(Length),
    /// A directory member without its index `NAME.dat` (removed since it was listed).
    NoIndex,
    /// Its index lists no entry that can be served (all empty or the same).
    NoEntries,
    /// Its real path is in the kernel's trees (`/proc`, `/sys`, `/dev`).
    Kernel(PathBuf),
    /// A directory member whose real path leaves the directory.
    Outside {
        real: PathBuf,
        root: PathBuf,
    },
    /// An `off` directory leading back to one already listed (a symlink loop).
    Loop(PathBuf),
    /// Its index or text would take the collection past its memory cap.
    OverBudget,
    /// A directory with some fortune files but none servable (`broken` of them).
    NoneServable {
        broken: usize,
    },
}

impl LoadError {
    /// Nothing to serve there (no such path, or a directory without a
    /// fortune file), as opposed to something there that is wrong.
    pub fn is_absence(&self) -> bool {
        match &self.problem {
            Problem::Unreadable(e) => e.kind() == ErrorKind::NotFound,
            Problem::NoFortuneFiles { offensive } => *offensive == 0,
            _ => false,
        }
    }
}

/// What systemd's `ProtectHome=yes` makes inaccessible.
const HOME_DIRECTORIES: [&str; 3] = ["/home", "/root", "/run/user"];

/// The unit directive that denies reading `path`, when systemd runs us
/// (`under_systemd`) and the error is "permission denied" under a
/// directory it hides.
fn hidden_by_sandbox(path: &Path, e: &std::io::Error, under_systemd: bool) -> Option<&'static str> {
    let hidden = HOME_DIRECTORIES.iter().any(|dir| path.starts_with(dir));
    (under_systemd && hidden && e.kind() == ErrorKind::PermissionDenied).then_some("ProtectHome=yes")
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Unreadable(e) => {
                write!(f, "cannot read fortune file {path}: {e}")?;
                match hidden_by_sandbox(&self.path, e, std::env::var_os("INVOCATION_ID").is_some()) {
                    Some(directive) => write!(
                        f,
                        " (the service's sandbox hides {}: {directive} in its unit; put the files under \
                         /srv or /usr/local/share)",
                        HOME_DIRECTORIES.join(", ")
                    ),
                    None => Ok(()),
                }
            }
            Problem::NotRegular(what) => write!(
                f,
                "fortune file {path} is {what}, not a regular file; only regular files are read"
            ),
            Problem::TooLarge { len, cap } => write!(
                f,
                "fortune file {path} is {len} bytes, more than the {cap} read without an index; index it with strfile(1)"
            ),
            Problem::Text(e) => write!(f, "fortune file {path} {e}"),
            Problem::OnlyLong(max) => write!(
                f,
                "fortune file {path} holds no entry of at most {max} bytes, the longest served (--max-entry)"
            ),
            Problem::NoFortuneFiles { offensive: 0 } => write!(
                f,
                "fortune directory {path} holds no fortune file (a file NAME with its index NAME.dat, see strfile(1))"
            ),
            Problem::NoFortuneFiles { offensive } => write!(
                f,
                "fortune directory {path} holds only offensive collections ({offensive}); add --offensive to serve them"
            ),
            Problem::NoEntries => write!(
                f,
                "index of fortune file {path} lists no entry that can be served; run strfile again"
            ),
            Problem::Kernel(real) => write!(
                f,
                "fortune file {path} is {}, a file of the kernel (under /proc, /sys or /dev); these are never served",
                real.display()
            ),
            Problem::Outside { real, root } => write!(
                f,
                "fortune file {path} leads to {}, outside the fortune directory {}; only files inside it are served from a directory (name a file elsewhere on its own)",
                real.display(),
                root.display()
            ),
            Problem::Loop(real) => write!(
                f,
                "fortune directory {path} leads back to {}, already listed (a symlink loop)",
                real.display()
            ),
            Problem::OverBudget => write!(
                f,
                "fortune file {path} would take the collection past its {} MiB of indexes and files read whole",
                MAX_HELD >> 20
            ),
            Problem::NoneServable { broken } => write!(
                f,
                "fortune directory {path} holds no servable fortune file ({broken} left out, see the warnings before); fix or remove them"
            ),
            Problem::NoIndex => write!(
                f,
                "fortune file {path} has no index {path}.dat; index it with strfile(1)"
            ),
            Problem::NoneOfLength(length) => write!(
                f,
                "{path} holds no fortune of {length}; choose another length or path"
            ),
            Problem::Offensive => write!(
                f,
                "fortune file {path} is offensive (rot13 index, off/ directory or -o name); add --offensive to serve it"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Why one entry could not be served.
#[derive(Debug)]
pub enum EntryError {
    Io(PathBuf, std::io::Error),
    Mismatch {
        path: PathBuf,
        offset: u64,
        why: strfile::EntryError,
    },
    NotUtf8 {
        path: PathBuf,
        offset: u64,
    },
    Blank {
        path: PathBuf,
        offset: u64,
    },
    /// Longer than `--max-entry` (the last entry of a file, which the index
    /// cannot measure exactly).
    TooLong {
        path: PathBuf,
        offset: u64,
        max: usize,
    },
    Refused {
        path: PathBuf,
        why: String,
    },
    /// Replaced or changed since it was loaded (opened on each pick).
    Changed(PathBuf),
    /// No entry `n` in a collection of `len` (a pick from another collection).
    Missing {
        n: usize,
        len: usize,
    },
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryError::Io(path, e) => write!(f, "reading {}: {e}", path.display()),
            EntryError::Mismatch { path, offset, why } => write!(
                f,
                "index of {} does not match it at byte {offset}: {why}; run strfile again",
                path.display()
            ),
            EntryError::NotUtf8 { path, offset } => {
                write!(
                    f,
                    "entry at byte {offset} of {} is not UTF-8, skipped",
                    path.display()
                )
            }
            EntryError::Blank { path, offset } => {
                write!(
                    f,
                    "entry at byte {offset} of {} is blank, skipped",
                    path.display()
                )
            }
            EntryError::TooLong { path, offset, max } => write!(
                f,
                "entry at byte {offset} of {} is longer than {max} bytes (--max-entry), skipped",
                path.display()
            ),
            EntryError::Refused { path, why } => write!(f, "not serving {}: {why}", path.display()),
            EntryError::Changed(path) => write!(
                f,
                "{} changed since it was loaded; reload the service (SIGHUP)",
                path.display()
            ),
            EntryError::Missing { n, len } => write!(f, "no fortune {n} among {len}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_under_a_hidden_directory_names_the_directive() {
        let denied = std::io::Error::from(ErrorKind::PermissionDenied);
        let missing = std::io::Error::from(ErrorKind::NotFound);
        let root = Path::new("/root/fortunes");
        assert_eq!(hidden_by_sandbox(root, &denied, true), Some("ProtectHome=yes"));
        assert_eq!(
            hidden_by_sandbox(Path::new("/home/a/f"), &denied, true),
            Some("ProtectHome=yes")
        );
        assert_eq!(hidden_by_sandbox(Path::new("/homes/f"), &denied, true), None);
        assert_eq!(hidden_by_sandbox(Path::new("/srv/f"), &denied, true), None);
        assert_eq!(hidden_by_sandbox(root, &missing, true), None);
        assert_eq!(hidden_by_sandbox(root, &denied, false), None);
    }
}
