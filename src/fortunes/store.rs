//! A loaded collection: the files an admin names (or the built-in seven),
//! opened at load or on first pick ([`Opening`]), and reading entry `n` of
//! the whole collection.
//!
//! A file with a usable `strfile` index stays on disk: reading one entry is
//! two positioned reads (its offset in the index, then the entry), whatever
//! the size of the collection. Any other file is read whole at load.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::BUILTIN;
use super::lists::{self, Lists, Stamp};
use super::strfile::{self, Header, IndexError};
use super::text::{self, TextError};
use crate::wire::Protocol;

/// What to load: the `--fortunes` paths and whether offensive collections may be served.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub paths: Vec<PathBuf>,
    pub offensive: bool,
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
    Text(TextError),
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
            Problem::Unreadable(e) => write!(f, "cannot read fortune file {path}: {e}"),
            Problem::Text(e) => write!(f, "fortune file {path} {e}"),
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

/// When to open the files of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Open and check every file now: the long-running service reports every
    /// problem before it serves, and holds the files open.
    Eager,
    /// Only list directories and size each index (its entry count) now, and
    /// open a file when one of its entries is picked: one connection per
    /// process (`Accept=yes`) then costs one `stat` per file, whatever the
    /// number of entries, or, with a cache directory ([`Store::load_cached`]),
    /// reading the [`lists`] cache instead.
    /// Files named on their own are still opened now.
    Lazy,
}

/// A loaded collection of fortunes; never empty.
#[derive(Debug)]
pub struct Store {
    sources: Vec<Source>,
    /// `ends[k]`: entries in sources `0..=k`, for picking across files by entry count.
    ends: Vec<usize>,
    origin: String,
    /// Serve offensive files found on a pick ([`Opening::Lazy`]).
    offensive: bool,
    /// The cache directory whose [`lists`] this store was loaded with: a
    /// file that counts otherwise when opened makes it stale.
    list_cache: Option<PathBuf>,
    /// No entry is longer than this many bytes (`None`: some file not opened yet).
    longest: Option<usize>,
    /// Entries whose frame fits a length limit, built on first need per limit.
    fitting: Mutex<Vec<Fitting>>,
}

/// The entries (by number) whose frame in a protocol fits a length limit.
type Fitting = (Protocol, usize, Arc<[usize]>);

/// One fortune file, opened at load or on first pick.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    /// Entries counted for the pick: the index's, or the parsed file's.
    count: usize,
    content: OnceLock<Content>,
}

#[derive(Debug)]
enum Content {
    Memory(Vec<String>),
    Indexed(Indexed),
    /// Found unusable when opened on a pick (lazy): why, for the log.
    Refused(String),
}

#[derive(Debug)]
struct Indexed {
    data: File,
    index: File,
    data_len: u64,
    header: Header,
}

/// Why one entry could not be served.
#[derive(Debug)]
pub enum EntryError {
    Io(PathBuf, std::io::Error),
    PastEnd {
        path: PathBuf,
        offset: u64,
    },
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
    Refused {
        path: PathBuf,
        why: String,
    },
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Io(path, e) => write!(f, "reading {}: {e}", path.display()),
            EntryError::PastEnd { path, offset } => write!(
                f,
                "index of {} points past its end (byte {offset}); run strfile again",
                path.display()
            ),
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
            EntryError::Refused { path, why } => write!(f, "not serving {}: {why}", path.display()),
        }
    }
}

impl Store {
    pub fn builtin() -> Store {
        let entries: Vec<String> = BUILTIN.iter().map(|s| s.to_string()).collect();
        let source = Source::opened(PathBuf::from("built-in"), Content::Memory(entries));
        Store::new(vec![source], "built-in".into(), false)
    }

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
            opening,
            cache,
            sources: Vec::new(),
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
        let mut store = Store::new(loader.sources, origin.join(", "), offensive);
        if let Some(cache) = loader.cache {
            if cache.changed {
                lists::write(cache.dir, &cache.new);
            }
            store.list_cache = Some(cache.dir.to_path_buf());
        }
        Ok(store)
    }

    fn new(sources: Vec<Source>, origin: String, offensive: bool) -> Store {
        let mut total = 0;
        let ends = sources
            .iter()
            .map(|s| {
                total += s.count;
                total
            })
            .collect();
        let longest: Option<Vec<usize>> = sources
            .iter()
            .map(|s| s.content.get().map(Content::longest))
            .collect();
        Store {
            sources,
            ends,
            origin,
            offensive,
            list_cache: None,
            longest: longest.map(|l| l.into_iter().max().unwrap_or(0)),
            fitting: Mutex::new(Vec::new()),
        }
    }

    /// The number of entries (some may turn out unservable when read).
    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the fortunes come from, for logs and `STATUS=`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// No entry is longer than this many bytes of UTF-8; `None` while some
    /// file is not opened yet ([`Opening::Lazy`]).
    pub fn longest(&self) -> Option<usize> {
        self.longest
    }

    /// Entry `n` (`0..len()`) of the whole collection, ready to serve.
    pub fn entry(&self, n: usize) -> Result<Cow<'_, str>, EntryError> {
        let k = self.ends.partition_point(|&end| end <= n);
        let first = if k == 0 { 0 } else { self.ends[k - 1] };
        let source = &self.sources[k];
        let i = n - first;
        let content = source.content.get_or_init(|| {
            let content = source.open(self.offensive);
            if let (Content::Indexed(file), Some(dir)) = (&content, &self.list_cache)
                && file.header.count as usize != source.count
            {
                lists::drop_stale(dir);
            }
            content
        });
        // A file may count otherwise than listed: read whole after its index
        // failed, or rewritten since (the lists cache, a race).
        match content {
            Content::Memory(entries) => Ok(Cow::Borrowed(&entries[i % entries.len()])),
            Content::Indexed(file) => {
                let i = i % file.header.count as usize;
                file.entry(&source.path, i as u32).map(Cow::Owned)
            }
            Content::Refused(why) => Err(EntryError::Refused {
                path: source.path.clone(),
                why: why.clone(),
            }),
        }
    }

    /// The entries whose frame in `protocol` is at most `limit` bytes, found
    /// once by reading them all (for UDP's 512 bytes: one pick, no retries).
    pub fn fitting(&self, protocol: Protocol, limit: usize) -> Arc<[usize]> {
        let mut cache = self.fitting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, list)) = cache.iter().find(|(p, l, _)| (*p, *l) == (protocol, limit)) {
            return Arc::clone(list);
        }
        let list: Arc<[usize]> = (0..self.len())
            .filter(|&n| {
                self.entry(n)
                    .ok()
                    .and_then(|text| crate::wire::encode(protocol, &text).ok())
                    .is_some_and(|frame| frame.len() <= limit)
            })
            .collect();
        log::debug!(
            "{} of {} fortunes fit {limit} bytes in {protocol}",
            list.len(),
            self.len()
        );
        cache.push((protocol, limit, Arc::clone(&list)));
        list
    }
}

impl Source {
    fn opened(path: PathBuf, content: Content) -> Source {
        let count = match &content {
            Content::Memory(entries) => entries.len(),
            Content::Indexed(file) => file.header.count as usize,
            Content::Refused(_) => 0,
        };
        Source {
            path,
            count,
            content: OnceLock::from(content),
        }
    }

    /// A directory member to open on its first pick ([`Opening::Lazy`]).
    fn lazy(path: PathBuf, count: usize) -> Source {
        Source {
            path,
            count,
            content: OnceLock::new(),
        }
    }

    /// A directory member opened on its first pick ([`Opening::Lazy`]).
    fn open(&self, offensive: bool) -> Content {
        match open_file(&self.path) {
            Ok((_, true)) if !offensive => Content::Refused("its index says it is offensive (rot13)".into()),
            Ok((content, _)) => content,
            Err(e) => Content::Refused(e.to_string()),
        }
    }
}

impl Content {
    fn longest(&self) -> usize {
        match self {
            Content::Memory(entries) => entries.iter().map(String::len).max().unwrap_or(0),
            Content::Indexed(file) => file.header.longest as usize,
            Content::Refused(_) => 0,
        }
    }
}

impl Indexed {
    fn entry(&self, path: &Path, i: u32) -> Result<String, EntryError> {
        let io = |e| EntryError::Io(path.to_path_buf(), e);
        let mut word = [0u8; 4];
        self.index
            .read_exact_at(&mut word, Header::offset_position(i))
            .map_err(io)?;
        let offset = u64::from(u32::from_be_bytes(word));
        let path = || path.to_path_buf();
        if offset >= self.data_len {
            // A permuted table (strfile -r) holds the end-of-file slot among its entries.
            return Err(if offset == self.data_len && !self.header.in_file_order() {
                EntryError::Blank { path: path(), offset }
            } else {
                EntryError::PastEnd { path: path(), offset }
            });
        }
        let start = offset.saturating_sub(1);
        let end = (start + self.header.window()).min(self.data_len);
        let mut window = vec![0u8; (end - start) as usize];
        self.data.read_exact_at(&mut window, start).map_err(io)?;
        let bytes = strfile::entry(&window, offset == 0, end == self.data_len, self.header.delimiter)
            .map_err(|why| EntryError::Mismatch {
                path: path(),
                offset,
                why,
            })?;
        let utf8 = std::str::from_utf8(bytes).map_err(|_| EntryError::NotUtf8 { path: path(), offset })?;
        let plain = if self.header.rotated() {
            Cow::Owned(text::rot13(utf8))
        } else {
            Cow::Borrowed(utf8)
        };
        text::tidy(&plain).ok_or(EntryError::Blank { path: path(), offset })
    }
}

/// The state of one [`Store::load_cached`].
struct Loader<'a> {
    offensive: bool,
    opening: Opening,
    cache: Option<Cache<'a>>,
    sources: Vec<Source>,
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
        let meta = std::fs::metadata(path).map_err(|e| fail(Problem::Unreadable(e)))?;
        if meta.is_dir() {
            let before = self.sources.len();
            let skipped = self.add_dir(path, &meta)?;
            if self.sources.len() == before {
                return Err(fail(Problem::NoFortuneFiles { offensive: skipped }));
            }
            return Ok(());
        }
        let (content, rotated) = open_file(path)?;
        if !self.offensive && (rotated || offensive_by_name(path)) {
            return Err(fail(Problem::Offensive));
        }
        self.sources.push(Source::opened(path.to_path_buf(), content));
        Ok(())
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
            let lazy_count = (self.opening == Opening::Lazy)
                .then(|| std::fs::metadata(dir.join(&dat)).ok())
                .flatten()
                .and_then(|m| Header::count_from_len(m.len()));
            if let Some(count) = lazy_count {
                self.sources.push(Source::lazy(path, count));
                if let Some(files) = listed.as_mut() {
                    files.push((name.clone(), count));
                }
                continue;
            }
            listed = None;
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let (content, rotated) = open_file(&path)?;
            if !self.offensive && rotated {
                skipped += 1;
                continue;
            }
            self.sources.push(Source::opened(path, content));
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
fn offensive_by_name(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "off")
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("-o"))
}

/// Opens one file, with its index when there is a usable one, else reads it
/// whole. Also returns whether it is rot13-encoded.
fn open_file(path: &Path) -> Result<(Content, bool), LoadError> {
    let fail = |problem| LoadError {
        path: path.to_path_buf(),
        problem,
    };
    let mut data = File::open(path).map_err(|e| fail(Problem::Unreadable(e)))?;
    let data_len = data.metadata().map_err(|e| fail(Problem::Unreadable(e)))?.len();
    let mut dat = path.as_os_str().to_owned();
    dat.push(".dat");
    let dat = PathBuf::from(dat);
    let mut rotated = false;
    match File::open(&dat) {
        Ok(index) => match check_index(&index, data_len) {
            Ok(header) => {
                let indexed = Indexed {
                    data,
                    index,
                    data_len,
                    header,
                };
                return Ok((Content::Indexed(indexed), header.rotated()));
            }
            Err(IndexProblem::Invalid(why, header)) => {
                rotated = header.is_some_and(|h| h.rotated());
                log::warn!("{}: {why}; reading {} without it", dat.display(), path.display());
            }
            Err(IndexProblem::Io(e)) => {
                log::warn!(
                    "cannot read {}: {e}; reading {} without it",
                    dat.display(),
                    path.display()
                )
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => log::warn!(
            "cannot open {}: {e}; reading {} without it",
            dat.display(),
            path.display()
        ),
    }
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes)
        .map_err(|e| fail(Problem::Unreadable(e)))?;
    let mut entries = text::parse(&bytes).map_err(|e| fail(Problem::Text(e)))?;
    if rotated {
        entries = entries.iter().map(|e| text::rot13(e)).collect();
    }
    Ok((Content::Memory(entries), rotated))
}

enum IndexProblem {
    Io(std::io::Error),
    /// With the header, when it parsed, for its rot13 flag.
    Invalid(IndexError, Option<Header>),
}

/// Reads the header and the last offset: a few bytes, whatever the size.
fn check_index(index: &File, data_len: u64) -> Result<Header, IndexProblem> {
    let mut head = [0u8; strfile::HEADER_LEN];
    let got = read_at_most(index, &mut head, 0).map_err(IndexProblem::Io)?;
    let header = Header::parse(&head[..got]).map_err(|e| IndexProblem::Invalid(e, None))?;
    let index_len = index.metadata().map_err(IndexProblem::Io)?.len();
    let mut last = [0u8; 4];
    // A short read leaves zeros; check() then reports the size first.
    read_at_most(index, &mut last, Header::offset_position(header.count)).map_err(IndexProblem::Io)?;
    header
        .check(index_len, data_len, u32::from_be_bytes(last))
        .map_err(|e| IndexProblem::Invalid(e, Some(header)))?;
    Ok(header)
}

/// Like `read_exact_at`, but a short file is not an error: returns the count.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            offensive: false,
        };
        let eager = Store::load(&selection, Opening::Eager).unwrap();
        let lazy = Store::load(&selection, Opening::Lazy).unwrap();
        assert_eq!(eager.longest(), Some(3));
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
                    offensive: false,
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
            offensive: false,
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
            offensive: false,
        };
        let e = Store::load(&selection, Opening::Eager).unwrap_err();
        assert!(
            e.to_string().contains("holds only offensive collections (1)"),
            "{e}"
        );
        let lazy = Store::load(&selection, Opening::Lazy).unwrap();
        assert!(matches!(lazy.entry(0), Err(EntryError::Refused { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
