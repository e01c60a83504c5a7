//! Loading a collection: what the admin named ([`Selection`], in
//! [`selection`]), the members each path brings ([`listing`]: directories
//! listed as `fortune` does, each member checked by the
//! [`Rule`](crate::fortunes::member::Rule), and the [`lists`] cache of
//! [`Opening::Lazy`]), then the [`Store`] they make, its picks shared out
//! as chosen, with the optional paths that hold nothing left out (here).
//! This file uses both; `listing` uses `selection`.

pub mod listing;
pub mod selection;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::{LoadError, Problem};
use super::limits::Budget;
use super::lists::{self, Lists};
use super::select::{Empty, Group, Length};
use super::store::Store;
use listing::{Cache, Loader};

pub use selection::{Opening, Selection};

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
            return builtin(selection);
        }
        let offensive = selection.offensive;
        // Choosing by length needs every entry's length: every file opened.
        let opening = match selection.choice.length {
            Length::Any => opening,
            _ => Opening::Eager,
        };
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
            budget: Budget::default(),
            listed: HashSet::new(),
            capped: None,
        };
        let mut origin = Vec::new();
        // Per path loaded: its files and share, and (path, optional).
        let mut groups = Vec::new();
        let mut loaded = Vec::new();
        for (i, named) in selection.paths.iter().enumerate() {
            let (path, optional) = match named.to_str().and_then(|p| p.strip_prefix('-')) {
                Some(rest) => (Path::new(rest), true),
                None => (named.as_path(), false),
            };
            let first = loader.members.len();
            match loader.add_path(path) {
                Ok(()) => {
                    origin.push(path.display().to_string());
                    groups.push(Group {
                        files: first..loader.members.len(),
                        percent: selection.choice.percent(i),
                    });
                    loaded.push((path, optional));
                }
                Err(e) if optional && e.is_absence() => log::info!("{e}; it is optional, left out"),
                Err(e) => return Err(e),
            }
        }
        loader.finish();
        if loader.members.is_empty() {
            return builtin(selection);
        }
        let list_cache = loader.cache.map(|cache| {
            if cache.changed {
                lists::write(cache.dir, &cache.new);
            }
            cache.dir.to_path_buf()
        });
        let origin = origin.join(", ");
        let mut store = Store::new(
            loader.members,
            origin.clone(),
            selection.rule(),
            loader.budget,
            list_cache,
        );
        store.share(groups, selection.choice.clone());
        loop {
            let (path, problem) = match store.settle() {
                Ok(()) => return Ok(store),
                Err(Empty::Group(g)) => match loaded.get(g) {
                    Some(&(path, true)) => {
                        log::info!(
                            "{} holds no fortune of {}; it is optional, left out",
                            path.display(),
                            selection.choice.length
                        );
                        loaded.remove(g);
                        store.leave_out(g);
                        continue;
                    }
                    Some(&(path, false)) => (path.to_path_buf(), selection.choice.length),
                    None => (PathBuf::from(&origin), selection.choice.length),
                },
                Err(Empty::All) => (PathBuf::from(&origin), selection.choice.length),
            };
            return Err(LoadError {
                path,
                problem: Problem::NoneOfLength(problem),
            });
        }
    }
}

/// The built-in fortunes, of the length chosen (`--long` leaves none).
fn builtin(selection: &Selection) -> Result<Store, LoadError> {
    let mut store = Store::builtin();
    let groups = vec![Group {
        files: 0..1,
        percent: None,
    }];
    store.share(groups, selection.choice.clone());
    store.settle().map_err(|_| LoadError {
        path: PathBuf::from(store.origin()),
        problem: Problem::NoneOfLength(selection.choice.length),
    })?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::Choice;
    use crate::fortunes::fixture::{Scratch, TEXT, dat, entries};

    #[test]
    fn the_builtin_fortunes_are_of_the_length_chosen() {
        let with = |length| Selection {
            choice: Choice {
                length,
                ..Choice::default()
            },
            ..Selection::default()
        };
        let short = Store::load(&with(Length::Short(160)), Opening::Eager).unwrap();
        assert_eq!(short.table().len(), 7);
        let e = Store::load(&with(Length::Long(160)), Opening::Eager).unwrap_err();
        assert_eq!(
            e.to_string(),
            "built-in holds no fortune of more than 160 bytes (--long, --short-max); choose another length or path"
        );
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
}
