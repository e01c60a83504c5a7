//! Loading a collection: what the admin named ([`Selection`]), listing
//! directories as `fortune` does (a file `NAME` with its index `NAME.dat`,
//! `off/` and rot13 files only with `--offensive`), the [`lists`] cache of
//! [`Opening::Lazy`], the descriptors a collection may hold, and why a load
//! fails ([`LoadError`]).
//!
//! Descriptors: a store holds its data files open (indexes are read whole
//! at load), at most an eighth of the soft descriptor limit of them; the
//! others are opened on each pick. A reload holds the old and the new
//! collection at once: together a quarter of the limit, so a reload of a
//! collection that loaded at start never fails for lack of descriptors.

use std::collections::HashSet;
use std::fmt;
use std::fs::Metadata;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, getrlimit};

use super::disk::{self, MAX_ENTRY};
use super::lists::{self, Lists, Stamp};
use super::store::{Source, Store};
use super::strfile::Header;
use super::text::TextError;

/// What to load: the `--fortunes` paths, whether offensive collections may
/// be served, and the longest entry served (`--max-entry`).
#[derive(Debug, Clone)]
pub struct Selection {
    pub paths: Vec<PathBuf>,
    pub offensive: bool,
    pub max_entry: usize,
}

impl Default for Selection {
    fn default() -> Selection {
        Selection {
            paths: Vec::new(),
            offensive: false,
            max_entry: MAX_ENTRY,
        }
    }
}

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
}

impl LoadError {
    /// Nothing to serve there (no such path, or a directory without a
    /// fortune file), as opposed to something there that is wrong.
    fn is_absence(&self) -> bool {
        match &self.problem {
            Problem::Unreadable(e) => e.kind() == ErrorKind::NotFound,
            Problem::NoFortuneFiles { offensive } => *offensive == 0,
            _ => false,
        }
    }
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
            Problem::Offensive => write!(
                f,
                "fortune file {path} is offensive (rot13 index, off/ directory or -o name); add --offensive to serve it"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// What systemd's `ProtectHome=yes` makes inaccessible.
const HOME_DIRECTORIES: [&str; 3] = ["/home", "/root", "/run/user"];

/// The unit directive that denies reading `path`, when systemd runs us
/// (`under_systemd`) and the error is "permission denied" under a
/// directory it hides.
fn hidden_by_sandbox(path: &Path, e: &std::io::Error, under_systemd: bool) -> Option<&'static str> {
    let hidden = HOME_DIRECTORIES.iter().any(|dir| path.starts_with(dir));
    (under_systemd && hidden && e.kind() == ErrorKind::PermissionDenied).then_some("ProtectHome=yes")
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
    /// number of entries, or, with a cache directory ([`Store::load_cached`]),
    /// reading the [`lists`] cache instead.
    /// Files named on their own are still opened now.
    Lazy,
}

impl Store {
    /// [`Store::load_cached`] without a cache.
    pub fn load(selection: &Selection, opening: Opening) -> Result<Store, LoadError> {
        Store::load_cached(selection, opening, None)
    }

    /// The built-in fortunes when no path is given, else every named file and
    /// every fortune file of every named directory. A path written with a
    /// leading `-` (as in systemd's `EnvironmentFile=-`) is optional: when it
    /// does not exist, or is a directory without a fortune file, it is left
    /// out; when every path is left out, the built-in fortunes are served. The
    /// packages rely on it to serve the fortune-mod collections only once one
    /// is installed. [`Opening::Lazy`] with a
    /// `cache` directory takes each unchanged directory's list from the
    /// [`lists`] cache there, and rewrites the cache when one has changed.
    pub fn load_cached(
        selection: &Selection,
        opening: Opening,
        cache: Option<&Path>,
    ) -> Result<Store, LoadError> {
        if selection.paths.is_empty() {
            return Ok(Store::builtin());
        }
        let offensive = selection.offensive;
        let cache = cache.filter(|_| opening == Opening::Lazy).map(|dir| Cache {
            dir,
            old: lists::read(dir).filter(|l| l.offensive == offensive),
            new: Lists {
                offensive,
                dirs: Vec::new(),
            },
            changed: false,
        });
        let mut loader = Loader {
            offensive,
            max_entry: selection.max_entry,
            opening,
            cache,
            sources: Vec::new(),
            may_hold: hold_budget(),
        };
        let mut origin = Vec::new();
        for named in &selection.paths {
            let (path, optional) = match named.to_str().and_then(|p| p.strip_prefix('-')) {
                Some(rest) => (Path::new(rest), true),
                None => (named.as_path(), false),
            };
            match loader.add_path(path) {
                Ok(()) => origin.push(path.display().to_string()),
                Err(e) if optional && e.is_absence() => log::info!("{e}; it is optional, left out"),
                Err(e) => return Err(e),
            }
        }
        if loader.sources.is_empty() {
            return Ok(Store::builtin());
        }
        let list_cache = loader.cache.map(|cache| {
            if cache.changed {
                lists::write(cache.dir, &cache.new);
            }
            cache.dir.to_path_buf()
        });
        Ok(Store::new(
            loader.sources,
            origin.join(", "),
            selection,
            list_cache,
        ))
    }
}

/// How many data files one store may hold open (see the module docs).
fn hold_budget() -> usize {
    getrlimit(Resource::RLIMIT_NOFILE)
        .map_or(128, |(soft, _)| usize::try_from(soft / 8).unwrap_or(usize::MAX))
}

/// The state of one [`Store::load_cached`].
struct Loader<'a> {
    offensive: bool,
    max_entry: usize,
    opening: Opening,
    cache: Option<Cache<'a>>,
    sources: Vec<Source>,
    /// Data files this store may still hold open.
    may_hold: usize,
}

/// The [`lists`] cache while loading: the one read, the one to write.
struct Cache<'a> {
    dir: &'a Path,
    old: Option<Lists>,
    new: Lists,
    /// Some directory was listed and recorded: write `new`.
    changed: bool,
}

impl Loader<'_> {
    /// A file or a directory of them.
    fn add_path(&mut self, path: &Path) -> Result<(), LoadError> {
        let fail = |problem| LoadError {
            path: path.to_path_buf(),
            problem,
        };
        // stat (not open) only to choose: a directory is opened by read_dir
        // (O_DIRECTORY), a file by open_file, which checks what it opened.
        let meta = std::fs::metadata(path).map_err(|e| fail(Problem::Unreadable(e)))?;
        if meta.is_dir() {
            let before = self.sources.len();
            let skipped = self.add_dir(path, &meta)?;
            if self.sources.len() == before {
                return Err(fail(Problem::NoFortuneFiles { offensive: skipped }));
            }
            return Ok(());
        }
        let opened = self.open(path)?;
        if !self.offensive && (opened.rotated || offensive_by_name(path)) {
            return Err(fail(Problem::Offensive));
        }
        self.sources
            .push(Source::opened(path.to_path_buf(), opened.content));
        Ok(())
    }

    /// [`disk::open_file`], holding the data file while the budget lasts.
    fn open(&mut self, path: &Path) -> Result<disk::Opened, LoadError> {
        let opened = disk::open_file(path, self.may_hold > 0, self.max_entry)?;
        if matches!(opened.content, disk::Content::Indexed(_)) {
            self.may_hold = self.may_hold.saturating_sub(1);
        }
        Ok(opened)
    }

    /// Every file NAME of `dir` with a NAME.dat beside it, as `fortune` chooses
    /// them, in name order; `off/` too with `offensive`. Returns how many
    /// offensive ones were left out. `meta`: the directory's, for the cache.
    fn add_dir(&mut self, dir: &Path, meta: &Metadata) -> Result<usize, LoadError> {
        let stamp = Stamp::of(meta);
        let key = dir.to_str();
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| Some(c.old.as_ref()?.files(key?, stamp)?.to_vec()));
        if let (Some(files), Some(cache), Some(key)) = (cached, self.cache.as_mut(), key) {
            // Only a hint: each file is checked as a listing would when a
            // pick opens it (see Source::open).
            let sources = files
                .iter()
                .map(|(name, count)| Source::lazy(dir.join(name), *count));
            self.sources.extend(sources);
            cache.new.dirs.push(lists::Dir {
                path: key.to_string(),
                stamp,
                files,
            });
            // Without --offensive, off/ only counts when the directory holds nothing else.
            let off = dir.join("off");
            if self.offensive
                && let Ok(meta) = std::fs::metadata(&off)
                && meta.is_dir()
            {
                self.add_dir(&off, &meta)?;
            }
            return Ok(0);
        }
        let unreadable = |e| LoadError {
            path: dir.to_path_buf(),
            problem: Problem::Unreadable(e),
        };
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            // Names that are not UTF-8 cannot be fortune files we would log sensibly; skip them.
            if let Some(name) = entry.map_err(unreadable)?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        let present: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut skipped = 0;
        // What the cache can record: only lazily counted files.
        let mut listed = Some(Vec::new());
        for name in &names {
            let dat = format!("{name}.dat");
            if name.starts_with('.') || name.ends_with(".dat") || !present.contains(dat.as_str()) {
                continue;
            }
            let path = dir.join(name);
            if !self.offensive && offensive_by_name(&path) {
                skipped += 1;
                continue;
            }
            // Lazy: the index's size gives the entry count, one stat per file.
            // Both regular (stat here, fstat when opened on a pick).
            let lazy_count = (self.opening == Opening::Lazy)
                .then(|| std::fs::metadata(dir.join(&dat)).ok())
                .flatten()
                .filter(|m| m.is_file() && std::fs::metadata(&path).is_ok_and(|m| m.is_file()))
                .and_then(|m| Header::count_from_len(m.len()));
            if let Some(count) = lazy_count {
                self.sources.push(Source::lazy(path, count));
                if let Some(files) = listed.as_mut() {
                    files.push((name.clone(), count));
                }
                continue;
            }
            listed = None;
            let opened = match self.open(&path) {
                Ok(opened) => opened,
                // Not a fortune file after all: reported, left out.
                Err(
                    e @ LoadError {
                        problem: Problem::NotRegular(_) | Problem::TooLarge { .. } | Problem::OnlyLong(_),
                        ..
                    },
                ) => {
                    log::warn!("{e}; left out");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !self.offensive && opened.rotated {
                skipped += 1;
                continue;
            }
            self.sources.push(Source::opened(path, opened.content));
        }
        let settled = stamp.settled(std::time::SystemTime::now());
        if let (Some(cache), Some(files), Some(key)) = (self.cache.as_mut(), listed, key)
            && settled
            && !files.is_empty()
        {
            cache.new.dirs.push(lists::Dir {
                path: key.to_string(),
                stamp,
                files,
            });
            cache.changed = true;
        }
        let off = dir.join("off");
        if present.contains("off") {
            match std::fs::metadata(&off) {
                Ok(meta) if meta.is_dir() && self.offensive => {
                    self.add_dir(&off, &meta)?;
                }
                Ok(meta) if meta.is_dir() => skipped += 1,
                _ => {}
            }
        }
        Ok(skipped)
    }
}

/// fortune-mod's marks of an offensive collection other than its index's
/// rot13 flag: an `off` directory, a name ending in `-o` (BSD).
pub fn offensive_by_name(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "off")
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("-o"))
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

    /// strfile's index of "a\n%\nbc\n%\n" (see strfile.rs), with `flags`.
    fn dat(flags: u8) -> Vec<u8> {
        let mut dat = vec![
            0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, flags, b'%', 0, 0, 0,
        ];
        dat.extend([0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 9]);
        dat
    }

    fn scratch_dir(files: &[(&str, &[u8])]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fortunes-store-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        dir
    }

    fn entries(store: &Store) -> Vec<String> {
        (0..store.len())
            .map(|n| store.entry(n).unwrap().into_owned())
            .collect()
    }

    #[test]
    fn eager_and_lazy_read_the_same_entries() {
        let dir = scratch_dir(&[
            ("f", b"a\n%\nbc\n%\n"),
            ("f.dat", &dat(0)),
            ("plain", b"no index\n"),
        ]);
        let selection = Selection {
            paths: vec![dir.clone()],
            ..Selection::default()
        };
        let eager = Store::load(&selection, Opening::Eager).unwrap();
        let lazy = Store::load(&selection, Opening::Lazy).unwrap();
        // An upper bound: "bc\n" and its delimiter line.
        assert_eq!(eager.longest(), Some(5));
        assert_eq!(lazy.longest(), None);
        assert_eq!(entries(&eager), ["a", "bc"]);
        assert_eq!(entries(&lazy), ["a", "bc"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn optional_paths_fall_back_to_the_builtin_fortunes() {
        let missing = std::env::temp_dir().join(format!("fortunes-missing-{}", std::process::id()));
        let empty = scratch_dir(&[("plain", b"no index\n")]);
        let collection = scratch_dir(&[("f", b"a\n%\nbc\n%\n"), ("f.dat", &dat(0))]);
        let optional = |p: &Path| PathBuf::from(format!("-{}", p.display()));
        let load = |paths: Vec<PathBuf>| {
            Store::load(
                &Selection {
                    paths,
                    ..Selection::default()
                },
                Opening::Eager,
            )
        };
        let builtin = entries(&Store::builtin());
        assert_eq!(entries(&load(vec![optional(&missing)]).unwrap()), builtin);
        assert_eq!(entries(&load(vec![optional(&empty)]).unwrap()), builtin);
        let store = load(vec![optional(&missing), optional(&collection)]).unwrap();
        assert_eq!(entries(&store), ["a", "bc"]);
        assert_eq!(store.origin(), collection.display().to_string());
        // Without the "-", the same absences are errors.
        assert!(matches!(
            load(vec![missing]).unwrap_err().problem,
            Problem::Unreadable(_)
        ));
        assert!(matches!(
            load(vec![empty.clone()]).unwrap_err().problem,
            Problem::NoFortuneFiles { offensive: 0 }
        ));
        // Optional does not hide a collection that is there but wrong.
        let offensive = scratch_dir(&[("f", b"n\n%\nop\n%\n"), ("f.dat", &dat(4))]);
        let e = load(vec![optional(&offensive)]).unwrap_err();
        assert!(e.to_string().contains("holds only offensive collections"), "{e}");
        for dir in [empty, collection, offensive] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn rot13_files_are_offensive() {
        let dir = scratch_dir(&[("f", b"n\n%\nop\n%\n"), ("f.dat", &dat(4))]);
        let mut selection = Selection {
            paths: vec![dir.join("f")],
            ..Selection::default()
        };
        let e = Store::load(&selection, Opening::Eager).unwrap_err();
        assert!(matches!(e.problem, Problem::Offensive), "{e}");
        selection.offensive = true;
        assert_eq!(
            entries(&Store::load(&selection, Opening::Eager).unwrap()),
            ["a", "bc"]
        );
        // In a directory: left out, or refused when a lazy pick opens it.
        selection = Selection {
            paths: vec![dir.clone()],
            ..Selection::default()
        };
        let e = Store::load(&selection, Opening::Eager).unwrap_err();
        assert!(
            e.to_string().contains("holds only offensive collections (1)"),
            "{e}"
        );
        let lazy = Store::load(&selection, Opening::Lazy).unwrap();
        assert!(matches!(
            lazy.entry(0),
            Err(crate::fortunes::EntryError::Refused { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
