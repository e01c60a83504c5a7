//! The members of a collection, path by path (`Loader`): a file named on
//! its own opened at once, a directory listed as `fortune` does (a file
//! `NAME` with its index `NAME.dat`, in name order; `off/` and rot13 files
//! only with `--offensive`), each member checked by the [`Rule`] or, with
//! [`Opening::Lazy`], only counted by its index's size; an unchanged
//! directory's list taken from the [`lists`] cache (`Cache`); members left
//! out reported, folded.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::selection::Opening;
use crate::fortunes::disk;
use crate::fortunes::error::{LoadError, Problem};
use crate::fortunes::limits::{Budget, MAX_HELD};
use crate::fortunes::lists::{self, Lists, Stamp};
use crate::fortunes::member::{Member, Rule, Verdict};
use crate::fortunes::strfile::Header;

/// The state of one [`Store::load_cached`](crate::fortunes::Store::load_cached).
pub(super) struct Loader<'a> {
    pub(super) rule: Rule,
    pub(super) opening: Opening,
    pub(super) cache: Option<Cache<'a>>,
    pub(super) members: Vec<Member>,
    pub(super) budget: Budget,
    /// Real paths of the directories listed for the path being added: an
    /// `off` leading back to one of them is a loop.
    pub(super) listed: HashSet<PathBuf>,
    /// The first member the memory cap left out, and how many it did.
    pub(super) capped: Option<(PathBuf, usize)>,
}

/// What a directory's listing left out: offensive files, unservable ones.
#[derive(Debug, Default, Clone, Copy)]
struct Left {
    offensive: usize,
    broken: usize,
}

/// The [`lists`] cache while loading: the one read, the one to write.
pub(super) struct Cache<'a> {
    pub(super) dir: &'a Path,
    pub(super) old: Option<Lists>,
    pub(super) new: Lists,
    /// Some directory was listed and recorded: write `new`.
    pub(super) changed: bool,
}

impl Loader<'_> {
    /// A file or a directory of them.
    pub(super) fn add_path(&mut self, path: &Path) -> Result<(), LoadError> {
        let fail = |problem| LoadError {
            path: path.to_path_buf(),
            problem,
        };
        // stat (not open) only to choose: a directory is opened by read_dir
        // (O_DIRECTORY), a file by open_file, which checks what it opened.
        let meta = std::fs::metadata(path).map_err(|e| fail(Problem::Unreadable(e)))?;
        if meta.is_dir() {
            let root: Arc<Path> = std::fs::canonicalize(path)
                .map_err(|e| fail(Problem::Unreadable(e)))?
                .into();
            self.listed = HashSet::from([root.to_path_buf()]);
            let before = self.members.len();
            let left = self.add_dir(path, &meta, &root)?;
            if self.members.len() == before {
                return Err(fail(match left.broken {
                    0 => Problem::NoFortuneFiles {
                        offensive: left.offensive,
                    },
                    broken => Problem::NoneServable { broken },
                }));
            }
            return Ok(());
        }
        // Named on its own: anywhere but the kernel's trees.
        let opened = disk::open_file(path, None, &self.budget, self.rule.max_entry)?;
        if opened.rotated && !self.rule.offensive || self.rule.refuses_name(path) {
            return Err(fail(Problem::Offensive));
        }
        self.members
            .push(Member::opened(path.to_path_buf(), opened.content));
        Ok(())
    }

    /// Every file NAME of `dir` with a NAME.dat beside it, as `fortune` chooses
    /// them, in name order, each by the [`Rule`]; `off/` too with
    /// `offensive`. `meta`: the directory's, for the cache; `root`: the real
    /// path of the directory named, which its members must stay in.
    fn add_dir(&mut self, dir: &Path, meta: &Metadata, root: &Arc<Path>) -> Result<Left, LoadError> {
        let stamp = Stamp::of(meta);
        let key = dir.to_str();
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| Some(c.old.as_ref()?.files(key?, stamp)?.to_vec()));
        if let (Some(files), Some(cache), Some(key)) = (cached, self.cache.as_mut(), key) {
            // Only a hint: a pick opens each file by the same rule.
            let members = files
                .iter()
                .map(|(name, count)| Member::lazy(dir.join(name), Arc::clone(root), *count));
            self.members.extend(members);
            cache.new.dirs.push(lists::Dir {
                path: key.to_string(),
                stamp,
                files,
            });
            // Without --offensive, off/ only counts when the directory holds nothing else.
            let mut left = Left::default();
            if self.rule.offensive {
                self.add_off(dir, root, &mut left)?;
            }
            return Ok(left);
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
        let mut left = Left::default();
        // What the cache can record: only lazily counted files.
        let mut listed = Some(Vec::new());
        for name in &names {
            if !Rule::lists(name, &present) {
                continue;
            }
            let dat = format!("{name}.dat");
            let path = dir.join(name);
            if self.rule.refuses_name(&path) {
                left.offensive += 1;
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
                self.members.push(Member::lazy(path, Arc::clone(root), count));
                if let Some(files) = listed.as_mut() {
                    files.push((name.clone(), count));
                }
                continue;
            }
            listed = None;
            match self.rule.admit(&path, root, &self.budget) {
                Verdict::Servable(content) => self.members.push(Member::opened(path, content)),
                Verdict::Offensive { .. } => left.offensive += 1,
                Verdict::Unservable(e) => {
                    left.broken += 1;
                    self.leave_out(e);
                }
            }
        }
        let settled = stamp.settled(std::time::SystemTime::now());
        let files = listed.filter(|files| settled && !files.is_empty());
        if let (Some(cache), Some(files), Some(key)) = (self.cache.as_mut(), files, key) {
            cache.new.dirs.push(lists::Dir {
                path: key.to_string(),
                stamp,
                files,
            });
            cache.changed = true;
        }
        if present.contains("off") {
            if self.rule.offensive {
                self.add_off(dir, root, &mut left)?;
            } else if std::fs::metadata(dir.join("off")).is_ok_and(|m| m.is_dir()) {
                left.offensive += 1;
            }
        }
        Ok(left)
    }

    /// `dir/off`, if it is a directory inside `root` not listed yet (a link
    /// such as `off -> .` would list the same files again and again).
    fn add_off(&mut self, dir: &Path, root: &Arc<Path>, left: &mut Left) -> Result<(), LoadError> {
        let off = dir.join("off");
        let fail = |problem| LoadError {
            path: off.clone(),
            problem,
        };
        let (meta, real) = match std::fs::metadata(&off).and_then(|m| Ok((m, std::fs::canonicalize(&off)?))) {
            Ok((meta, real)) if meta.is_dir() => (meta, real),
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                left.broken += 1;
                self.leave_out(fail(Problem::Unreadable(e)));
                return Ok(());
            }
        };
        if !real.starts_with(root) {
            left.broken += 1;
            self.leave_out(fail(Problem::Outside {
                real,
                root: root.to_path_buf(),
            }));
            return Ok(());
        }
        if !self.listed.insert(real.clone()) {
            left.broken += 1;
            self.leave_out(fail(Problem::Loop(real)));
            return Ok(());
        }
        let inner = self.add_dir(&off, &meta, root)?;
        left.offensive += inner.offensive;
        left.broken += inner.broken;
        Ok(())
    }

    /// Reports a directory member left out, as the budget folds warnings
    /// ([`Budget::warn`]); those the memory cap left out in one line at the
    /// end ([`Loader::finish`]).
    fn leave_out(&mut self, e: LoadError) {
        if matches!(e.problem, Problem::OverBudget) {
            let (_, n) = self.capped.get_or_insert((e.path, 0));
            *n += 1;
            return;
        }
        self.budget.warn(format_args!("{e}; left out"));
    }

    /// The folded warnings of this load.
    pub(super) fn finish(&self) {
        let past = self.budget.warnings_past();
        if past > 0 {
            log::warn!("{past} more warnings about fortune files (logged at debug level)");
        }
        if let Some((first, n)) = &self.capped {
            log::warn!(
                "{n} fortune files left out, {} first: the collection's indexes and files read whole reached their cap of {} MiB (see docs/reliability.md)",
                first.display(),
                MAX_HELD >> 20
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::Store;
    use crate::fortunes::fixture::{Scratch, TEXT, dat, entries};
    use crate::fortunes::load::Selection;

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

    fn load_dir(dir: &Path, offensive: bool, opening: Opening) -> Result<Store, LoadError> {
        let selection = Selection {
            paths: vec![dir.to_path_buf()],
            offensive,
            ..Selection::default()
        };
        Store::load(&selection, opening)
    }

    #[test]
    fn members_stay_inside_the_directory_and_off_loops_once() {
        let dir = Scratch::with(&[
            ("top/f", TEXT),
            ("top/f.dat", &dat(0)),
            ("secret/s", b"secret\n%\n"),
            ("secret/s.dat", &dat(0)),
        ]);
        let top = dir.join("top");
        let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, top.join(name)).unwrap();
        // A member leading to the kernel's files or out of the directory.
        link("/proc/self/environ", "env");
        link("f.dat", "env.dat");
        link("../secret/s", "away");
        link("../secret/s.dat", "away.dat");
        // off/ leading back to the directory (a loop), then out of it.
        link(".", "off");
        for opening in [Opening::Eager, Opening::Lazy] {
            let store = load_dir(&top, true, opening).unwrap();
            let served: Vec<String> = (0..store.len())
                .filter_map(|n| store.entry(n).ok())
                .map(|e| e.into_owned())
                .collect();
            assert_eq!(served, ["a", "bc"], "{opening:?}");
        }
        std::fs::remove_file(top.join("off")).unwrap();
        link("..", "off");
        let store = load_dir(&top, true, Opening::Eager).unwrap();
        assert_eq!(entries(&store), ["a", "bc"]);
        // A member inside, by a link, is served.
        link("f", "g");
        link("f.dat", "g.dat");
        assert_eq!(
            entries(&load_dir(&top, true, Opening::Eager).unwrap()),
            ["a", "bc", "a", "bc"]
        );
    }

    #[test]
    fn a_broken_member_is_left_out_not_fatal() {
        let dir = Scratch::with(&[
            ("good", TEXT),
            ("good.dat", &dat(0)),
            // Not UTF-8, with an index that does not fit it: read whole, refused.
            ("latin1", b"caf\xe9\n%\n"),
            ("latin1.dat", b"garbage"),
            ("loop.dat", &dat(0)),
        ]);
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        assert_eq!(
            entries(&load_dir(&dir, false, Opening::Eager).unwrap()),
            ["a", "bc"]
        );
        std::fs::remove_file(dir.join("good")).unwrap();
        let e = load_dir(&dir, false, Opening::Eager).unwrap_err();
        assert!(matches!(e.problem, Problem::NoneServable { broken: 2 }), "{e}");
        assert!(!e.is_absence());
    }

    #[test]
    fn the_collection_stops_at_its_memory_cap() {
        // Each member's index is estimated at 72 bytes of the budget until read.
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for i in 0..3 {
            files.push((format!("f{i}"), TEXT.to_vec()));
            files.push((format!("f{i}.dat"), dat(0)));
        }
        let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        let dir = Scratch::with(&named);
        let mut loader = Loader {
            rule: Rule::default(),
            opening: Opening::Eager,
            cache: None,
            members: Vec::new(),
            // Room to read one (72), keep its table (16) and not read another.
            budget: Budget::new(72 + 15, 8),
            listed: HashSet::new(),
            capped: None,
        };
        loader.add_path(&dir).unwrap();
        assert_eq!(loader.members.len(), 1);
        let (first, n) = loader.capped.clone().unwrap();
        assert_eq!((first, n), (dir.join("f1"), 2));
        assert_eq!(
            loader.budget.warnings_past(),
            0,
            "the cap's refusals are folded apart"
        );
    }
}
