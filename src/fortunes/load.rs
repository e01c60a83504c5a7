//! Loading a collection: what the admin named ([`Selection`]), listing
//! directories as `fortune` does (a file `NAME` with its index `NAME.dat`,
//! `off/` and rot13 files only with `--offensive`, each member checked by
//! the [`Rule`]) and the [`lists`] cache of [`Opening::Lazy`].

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

use super::disk;
use super::error::{LoadError, Problem};
use super::limits::{MAX_ENTRY, hold_budget};
use super::lists::{self, Lists, Stamp};
use super::member::{Member, Rule, Verdict};
use super::store::Store;
use super::strfile::Header;

/// What to load: the `--fortunes` paths, whether offensive collections may
/// be served, and the longest entry served (`--max-entry`).
#[derive(Debug, Clone)]
pub struct Selection {
    pub paths: Vec<PathBuf>,
    pub offensive: bool,
    pub max_entry: usize,
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
            rule: selection.rule(),
            opening,
            cache,
            members: Vec::new(),
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
        if loader.members.is_empty() {
            return Ok(Store::builtin());
        }
        let list_cache = loader.cache.map(|cache| {
            if cache.changed {
                lists::write(cache.dir, &cache.new);
            }
            cache.dir.to_path_buf()
        });
        Ok(Store::new(
            loader.members,
            origin.join(", "),
            selection.rule(),
            list_cache,
        ))
    }
}

/// The state of one [`Store::load_cached`].
struct Loader<'a> {
    rule: Rule,
    opening: Opening,
    cache: Option<Cache<'a>>,
    members: Vec<Member>,
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
            let before = self.members.len();
            let skipped = self.add_dir(path, &meta)?;
            if self.members.len() == before {
                return Err(fail(Problem::NoFortuneFiles { offensive: skipped }));
            }
            return Ok(());
        }
        let opened = disk::open_file(path, self.may_hold > 0, self.rule.max_entry)?;
        self.held(&opened.content);
        if opened.rotated && !self.rule.offensive || self.rule.refuses_name(path) {
            return Err(fail(Problem::Offensive));
        }
        self.members
            .push(Member::opened(path.to_path_buf(), opened.content));
        Ok(())
    }

    /// Counts the data file `content` holds open against the budget.
    fn held(&mut self, content: &disk::Content) {
        if matches!(content, disk::Content::Indexed(_)) {
            self.may_hold = self.may_hold.saturating_sub(1);
        }
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
            // pick opens it (see Member::open).
            let sources = files
                .iter()
                .map(|(name, count)| Member::lazy(dir.join(name), *count));
            self.members.extend(sources);
            cache.new.dirs.push(lists::Dir {
                path: key.to_string(),
                stamp,
                files,
            });
            // Without --offensive, off/ only counts when the directory holds nothing else.
            let off = dir.join("off");
            if self.rule.offensive {
                if let Some(meta) = std::fs::metadata(&off).ok().filter(|meta| meta.is_dir()) {
                    self.add_dir(&off, &meta)?;
                }
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
            if !Rule::lists(name, &present) {
                continue;
            }
            let dat = format!("{name}.dat");
            let path = dir.join(name);
            if self.rule.refuses_name(&path) {
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
                self.members.push(Member::lazy(path, count));
                if let Some(files) = listed.as_mut() {
                    files.push((name.clone(), count));
                }
                continue;
            }
            listed = None;
            match self.rule.admit(&path, self.may_hold > 0) {
                Verdict::Servable(content) => {
                    self.held(&content);
                    self.members.push(Member::opened(path, content));
                }
                Verdict::Offensive { .. } => skipped += 1,
                Verdict::Unservable(e) => match e.problem {
                    // Not a fortune file after all: reported, left out.
                    Problem::NotRegular(_) | Problem::TooLarge { .. } | Problem::OnlyLong(_) => {
                        log::warn!("{e}; left out")
                    }
                    _ => return Err(e),
                },
            }
        }
        let settled = stamp.settled(std::time::SystemTime::now());
        let listed = listed.filter(|files| settled && !files.is_empty());
        if let (Some(cache), Some(files), Some(key)) = (self.cache.as_mut(), listed, key) {
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
                Ok(meta) if meta.is_dir() && self.rule.offensive => {
                    self.add_dir(&off, &meta)?;
                }
                Ok(meta) if meta.is_dir() => skipped += 1,
                _ => {}
            }
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::fixture::{Scratch, TEXT, dat};

    fn entries(store: &Store) -> Vec<String> {
        (0..store.len())
            .map(|n| store.entry(n).unwrap().into_owned())
            .collect()
    }

    #[test]
    fn eager_and_lazy_read_the_same_entries() {
        let dir = Scratch::with(&[("f", TEXT), ("f.dat", &dat(0)), ("plain", b"no index\n")]);
        let selection = Selection {
            paths: vec![dir.to_path_buf()],
            ..Selection::default()
        };
        let eager = Store::load(&selection, Opening::Eager).unwrap();
        let lazy = Store::load(&selection, Opening::Lazy).unwrap();
        // An upper bound: "bc\n" and its delimiter line.
        assert_eq!(eager.longest(), Some(5));
        assert_eq!(lazy.longest(), None);
        assert_eq!(entries(&eager), ["a", "bc"]);
        assert_eq!(entries(&lazy), ["a", "bc"]);
    }

    #[test]
    fn optional_paths_fall_back_to_the_builtin_fortunes() {
        let scratch = Scratch::dir();
        let missing = scratch.join("missing");
        let empty = Scratch::with(&[("plain", b"no index\n")]);
        let collection = Scratch::with(&[("f", TEXT), ("f.dat", &dat(0))]);
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
            load(vec![empty.to_path_buf()]).unwrap_err().problem,
            Problem::NoFortuneFiles { offensive: 0 }
        ));
        // Optional does not hide a collection that is there but wrong.
        let offensive = Scratch::with(&[("f", b"n\n%\nop\n%\n"), ("f.dat", &dat(4))]);
        let e = load(vec![optional(&offensive)]).unwrap_err();
        assert!(e.to_string().contains("holds only offensive collections"), "{e}");
    }

    #[test]
    fn rot13_files_are_offensive() {
        let dir = Scratch::with(&[("f", b"n\n%\nop\n%\n"), ("f.dat", &dat(4))]);
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
            paths: vec![dir.to_path_buf()],
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
    }
}
