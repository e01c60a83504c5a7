//! The list cache of [`Opening::Lazy`](super::Opening::Lazy): for each
//! collection directory, the fortune files it held and their entry counts,
//! so a process that serves one connection reads one small file instead of
//! listing the directories and sizing every index.
//!
//! A directory's record holds its [`Stamp`] (device, inode, mtime, ctime):
//! adding, removing or renaming a file in it (a package upgrade renames each
//! file into place) changes its mtime and ctime, so a record whose stamp
//! differs is not used. A file rewritten in place (`strfile` run again) does
//! not change its directory: the store checks the count when it opens the
//! file picked, and drops the cache when they differ. This module is the
//! pure format ([`Lists::parse`], [`Lists::to_bytes`]) and reading and
//! writing the file, never failing the caller: a cache that cannot be read
//! or written only costs a listing.
//!
//! The cache is only a hint: the store checks each file it names when a
//! pick opens it, as a listing would. Whoever can write in the cache
//! directory cannot make it follow a link: the cache is read with
//! `O_NOFOLLOW` and only if regular, and written to a new file created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` under a random name, renamed into place.

use std::fs::Metadata;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::OFlag;

/// The cache file's name in the cache directory.
pub const FILE_NAME: &str = "lists-v1";
const MAGIC: &str = "fortune-server lists 1";
/// A cache larger than this is not ours (Debian's collection takes 1 KiB).
const MAX_LEN: u64 = 1 << 20;
/// A directory changed this recently is not recorded: its mtime has a coarse
/// granularity (a clock tick), so a change right after it was listed could
/// leave the same mtime.
const SETTLED: Duration = Duration::from_secs(1);

/// What tells whether a directory's list may have changed since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Not changed within `SETTLED` of `now`, so a record of it cannot
    /// miss a change that kept the same time.
    pub fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = now.saturating_sub(SETTLED);
        let before = |(secs, nanos): (i64, i64)| {
            u64::try_from(secs).is_ok_and(|s| Duration::new(s, nanos.clamp(0, 999_999_999) as u32) < limit)
        };
        before(self.mtime) && before(self.ctime)
    }
}

/// One directory's fortune files (names relative to it) and entry counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub path: String,
    pub stamp: Stamp,
    pub files: Vec<(String, usize)>,
}

/// The records of one selection's directories.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lists {
    /// Whether they were listed with `--offensive` (it changes what is kept).
    pub offensive: bool,
    pub dirs: Vec<Dir>,
}

impl Lists {
    /// The files of `path` if its record has this `stamp`.
    pub fn files(&self, path: &str, stamp: Stamp) -> Option<&[(String, usize)]> {
        self.dirs
            .iter()
            .find(|d| d.path == path && d.stamp == stamp)
            .map(|d| d.files.as_slice())
    }

    /// The file's text:
    ///
    /// ```text
    /// fortune-server lists 1
    /// offensive 0
    /// dir DEV INO MTIME_S MTIME_NS CTIME_S CTIME_NS PATH
    /// COUNT NAME
    /// end
    /// ```
    ///
    /// `None` if a path or name holds a newline (it would not read back).
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let mut out = format!("{MAGIC}\noffensive {}\n", u8::from(self.offensive));
        for dir in &self.dirs {
            let s = &dir.stamp;
            out += &format!(
                "dir {} {} {} {} {} {} {}\n",
                s.dev, s.ino, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1, dir.path
            );
            for (name, count) in &dir.files {
                out += &format!("{count} {name}\n");
            }
        }
        out += "end\n";
        let lines = 3 + self.dirs.iter().map(|d| 1 + d.files.len()).sum::<usize>();
        (out.lines().count() == lines).then(|| out.into_bytes())
    }

    /// Reads back what [`Lists::to_bytes`] wrote; `None` for anything else
    /// (truncated, damaged, another version). A name is one plain file name
    /// (no `/`, not hidden, not an index), so a damaged cache cannot make the
    /// store open a file outside its directory, and a count is one that a
    /// strfile index can hold.
    pub fn parse(bytes: &[u8]) -> Option<Lists> {
        let text = std::str::from_utf8(bytes).ok()?;
        // "\nend\n", not "end\n": a file cut after "legend\n" must not read as "leg".
        let body = text.strip_suffix("\nend\n")?;
        let mut lines = body.split('\n');
        if lines.next()? != MAGIC {
            return None;
        }
        let offensive = match lines.next()? {
            "offensive 0" => false,
            "offensive 1" => true,
            _ => return None,
        };
        let mut lists = Lists {
            offensive,
            dirs: Vec::new(),
        };
        for line in lines {
            if let Some(rest) = line.strip_prefix("dir ") {
                let mut fields = rest.splitn(7, ' ');
                let mut number = || fields.next()?.parse::<i64>().ok();
                let (dev, ino) = (number()?, number()?);
                let mtime = (number()?, number()?);
                let ctime = (number()?, number()?);
                let path = fields.next().filter(|p| !p.is_empty())?;
                let stamp = Stamp {
                    dev: u64::try_from(dev).ok()?,
                    ino: u64::try_from(ino).ok()?,
                    mtime,
                    ctime,
                };
                lists.dirs.push(Dir {
                    path: path.to_string(),
                    stamp,
                    files: Vec::new(),
                });
            } else {
                let (count, name) = line.split_once(' ')?;
                let count: u32 = count.parse().ok().filter(|&c| c > 0)?;
                let plain = !name.is_empty()
                    && !name.contains('/')
                    && !name.starts_with('.')
                    && !name.ends_with(".dat");
                if !plain {
                    return None;
                }
                lists
                    .dirs
                    .last_mut()?
                    .files
                    .push((name.to_string(), count as usize));
            }
        }
        lists.dirs.iter().all(|d| !d.files.is_empty()).then_some(lists)
    }
}

/// The cache file in `dir`.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The cache in `dir`, if there is a readable, well-formed one.
pub fn read(dir: &Path) -> Option<Lists> {
    let path = file_in(dir);
    // Room for the whole file at once: one read, then the one that finds its end.
    let mut bytes = Vec::with_capacity(16 * 1024);
    let read = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(&path)
        .and_then(|f| {
            if f.metadata()?.is_file() {
                f.take(MAX_LEN + 1).read_to_end(&mut bytes)
            } else {
                Err(std::io::Error::other("not a regular file"))
            }
        });
    match read {
        Ok(_) => {
            let lists = Lists::parse(&bytes);
            if lists.is_none() {
                log::debug!(
                    "{}: not a list cache of this version, listing again",
                    path.display()
                );
            }
            lists
        }
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            log::debug!("cannot read {}: {e}, listing again", path.display());
            None
        }
    }
}

/// Replaces the cache in `dir` whole (a new file renamed over it, so a
/// reader sees the old or the new one); a failure is logged and ignored.
pub fn write(dir: &Path, lists: &Lists) {
    let Some(bytes) = lists.to_bytes() else {
        log::debug!("a fortune path holds a newline: not caching the lists");
        return;
    };
    let path = file_in(dir);
    // A name nobody can plant a link at in advance; O_EXCL would refuse one anyway.
    let temp = dir.join(format!(".{FILE_NAME}.{:016x}", rand::random::<u64>()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .mode(0o644)
        .open(&temp);
    let written = created.and_then(|mut f| {
        let done = f.write_all(&bytes).and_then(|()| std::fs::rename(&temp, &path));
        if done.is_err() {
            // Ours: created above.
            let _ = std::fs::remove_file(&temp);
        }
        done
    });
    match written {
        Ok(()) => log::debug!("wrote the list cache {}", path.display()),
        Err(e) => log::debug!("cannot write the list cache {}: {e}", path.display()),
    }
}

/// Removes the cache in `dir` after a file turned out to count otherwise:
/// the next process lists again.
pub fn drop_stale(dir: &Path) {
    let path = file_in(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => log::info!("{} was stale (a file changed in place); removed", path.display()),
        Err(e) => log::debug!("cannot remove the stale list cache {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        dev: 2049,
        ino: 77,
        mtime: (1_700_000_000, 5),
        ctime: (1_700_000_001, 999_999_999),
    };

    fn sample() -> Lists {
        Lists {
            offensive: false,
            dirs: vec![Dir {
                path: "/usr/share/games/fortunes".into(),
                stamp: STAMP,
                files: vec![("art".into(), 470), ("men women".into(), 1)],
            }],
        }
    }

    const SAMPLE: &[u8] = b"fortune-server lists 1\noffensive 0\n\
        dir 2049 77 1700000000 5 1700000001 999999999 /usr/share/games/fortunes\n\
        470 art\n1 men women\nend\n";

    #[test]
    fn writes_and_reads_back() {
        assert_eq!(sample().to_bytes().unwrap(), SAMPLE);
        assert_eq!(Lists::parse(SAMPLE), Some(sample()));
        let empty = Lists {
            offensive: true,
            dirs: vec![],
        };
        assert_eq!(
            empty.to_bytes().unwrap(),
            b"fortune-server lists 1\noffensive 1\nend\n"
        );
        assert_eq!(Lists::parse(&empty.to_bytes().unwrap()), Some(empty));
    }

    #[test]
    fn finds_a_directory_by_path_and_stamp() {
        let lists = sample();
        let dir = "/usr/share/games/fortunes";
        assert_eq!(lists.files(dir, STAMP).unwrap().len(), 2);
        let touched = Stamp {
            mtime: (1_700_000_002, 0),
            ..STAMP
        };
        assert_eq!(lists.files(dir, touched), None);
        assert_eq!(lists.files("/elsewhere", STAMP), None);
    }

    #[test]
    fn a_newline_in_a_name_is_not_written() {
        let mut lists = sample();
        lists.dirs[0].files[0].0 = "two\nlines".into();
        assert_eq!(lists.to_bytes(), None);
        lists = sample();
        lists.dirs[0].path = "/a\nb".into();
        assert_eq!(lists.to_bytes(), None);
    }

    #[test]
    fn rejects_damage() {
        let text = std::str::from_utf8(SAMPLE).unwrap();
        let bad: Vec<String> = vec![
            // Truncated anywhere, even at a line's end.
            text[..text.len() - 1].into(),
            text.replace("end\n", ""),
            text.replace("1 men women\nend\n", "1 legend\n"),
            // Another version, flag or field.
            text.replace("lists 1", "lists 2"),
            text.replace("offensive 0", "offensive 2"),
            text.replace("2049 77", "2049 -77"),
            text.replace("2049 77", "2049x 77"),
            text.replace(" /usr/share/games/fortunes", ""),
            // Counts a strfile index cannot hold.
            text.replace("470 art", "0 art"),
            text.replace("470 art", "4294967296 art"),
            text.replace("470 art", "-1 art"),
            text.replace("470 art", "470"),
            // Names that are not plain fortune files of the directory.
            text.replace("470 art", "470 ../etc/passwd"),
            text.replace("470 art", "470 .hidden"),
            text.replace("470 art", "470 art.dat"),
            text.replace("470 art", "470 "),
            // A file before any directory; a directory without files.
            text.replace("dir 2049", "470 art\ndir 2049"),
            text.replace("1 men women\n", "1 men women\ndir 1 2 3 4 5 6 /x\n"),
        ];
        for text in bad {
            assert_eq!(Lists::parse(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(Lists::parse(b"\xff\xfe"), None);
        assert_eq!(Lists::parse(b""), None);
    }

    #[test]
    fn recent_changes_are_not_settled() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_010);
        assert!(STAMP.settled(now));
        let just_now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_002_500);
        assert!(!STAMP.settled(just_now));
        let future = Stamp {
            ctime: (1_800_000_000, 0),
            ..STAMP
        };
        assert!(!future.settled(now));
        let before_epoch = Stamp {
            mtime: (-1, 0),
            ..STAMP
        };
        assert!(!before_epoch.settled(now));
    }
}
