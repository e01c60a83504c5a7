//! Scratch files and directories that remove themselves when dropped: the
//! one helper for the integration tests (`tests/util`) and the unit tests of
//! `src/` (which include this file by path).

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A new directory under the system's temporary directory (or a file in
/// one): it derefs to its path and is removed with all it holds when dropped.
/// A command takes `.arg(&scratch)`, not `.arg(scratch)`: that would move
/// it and remove the file before the command reads it (it does not compile).
#[derive(Debug)]
pub struct Scratch {
    root: PathBuf,
    path: PathBuf,
}

impl Scratch {
    /// An empty directory.
    pub fn dir() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("fortune-scratch-{}-{n}", std::process::id()));
        // A leftover of an earlier process with the same id.
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create a scratch directory");
        Scratch {
            path: root.clone(),
            root,
        }
    }

    /// A directory holding `files` (names may contain `/`).
    pub fn with(files: &[(&str, &[u8])]) -> Scratch {
        let dir = Scratch::dir();
        for (name, contents) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("scratch subdir");
            std::fs::write(&path, contents).expect("write a scratch file");
        }
        dir
    }

    /// A file holding `contents`, alone in a scratch directory.
    pub fn file(contents: &[u8]) -> Scratch {
        let mut dir = Scratch::with(&[("file", contents)]);
        dir.path = dir.root.join("file");
        dir
    }

    #[allow(dead_code)] // the unit tests deref instead
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<OsStr> for &Scratch {
    fn as_ref(&self) -> &OsStr {
        self.path.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
