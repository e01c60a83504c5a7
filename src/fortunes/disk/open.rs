//! Opening one file safely: only a regular file (following symlinks), with
//! `O_NONBLOCK` and checked with `fstat` on the descriptor opened (never
//! `stat` then `open`), so a FIFO, a device, a socket or a directory in its
//! place is refused at once, never waited on; never one of the kernel's
//! ([`KERNEL_TREES`], procfs and the like wherever mounted), and for a
//! directory member only inside its directory ([`Within`]).

use std::fs::{File, Metadata};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

use crate::fortunes::error::Problem;

/// Where [`open_regular`] may find a file: anywhere for a file the admin
/// named, inside the real path of its fortune directory for a member of one.
/// Never in the kernel's trees ([`KERNEL_TREES`], or a file system such as
/// procfs wherever it is mounted).
pub type Within<'a> = Option<&'a Path>;

/// Paths never read as fortunes, whatever leads there.
pub const KERNEL_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Opens `path` for reading if it is a regular file (following symlinks)
/// whose real path is allowed by `within`, without ever waiting:
/// `O_NONBLOCK`, then `fstat` and the real path of what was opened (not of
/// the name: a link swapped in between cannot lead elsewhere).
pub fn open_regular(path: &Path, within: Within<'_>) -> Result<(File, Metadata), Problem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(Problem::Unreadable)?;
    let meta = file.metadata().map_err(Problem::Unreadable)?;
    let kind = meta.file_type();
    let irregular = if kind.is_file() {
        check_place(&file, path, within)?;
        return Ok((file, meta));
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    };
    Err(Problem::NotRegular(irregular))
}

/// Refuses a file opened from `path` that is the kernel's or lies outside `within`.
fn check_place(file: &File, path: &Path, within: Within<'_>) -> Result<(), Problem> {
    use nix::sys::statfs::{self, fstatfs};
    // The descriptor's own path; /proc may be missing in a sandbox: then the name's.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .or_else(|_| std::fs::canonicalize(path))
        .map_err(Problem::Unreadable)?;
    let kernel_fs = fstatfs(file).is_ok_and(|fs| {
        [
            statfs::PROC_SUPER_MAGIC,
            statfs::SYSFS_MAGIC,
            statfs::DEBUGFS_MAGIC,
            statfs::TRACEFS_MAGIC,
            statfs::SECURITYFS_MAGIC,
            statfs::CGROUP_SUPER_MAGIC,
            statfs::CGROUP2_SUPER_MAGIC,
            statfs::BPF_FS_MAGIC,
        ]
        .contains(&fs.filesystem_type())
    });
    if kernel_fs || KERNEL_TREES.iter().any(|tree| real.starts_with(tree)) {
        return Err(Problem::Kernel(real));
    }
    match within {
        Some(root) if !real.starts_with(root) => Err(Problem::Outside {
            real,
            root: root.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fortunes::fixture::Scratch;

    fn kind(path: &Path) -> Option<&'static str> {
        match open_regular(path, None) {
            Err(Problem::NotRegular(what)) => Some(what),
            _ => None,
        }
    }

    #[test]
    fn only_regular_files_are_opened_never_waited_on() {
        let dir = Scratch::with(&[("file", b"a\n")]);
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would wait here forever.
        assert_eq!(kind(&fifo), Some("a FIFO"));
        assert_eq!(kind(Path::new("/dev/zero")), Some("a device"));
        assert_eq!(kind(&dir), Some("a directory"));
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("file"), &link).unwrap();
        assert!(
            open_regular(&link, None).is_ok(),
            "a symlink to a regular file is read"
        );
    }

    #[test]
    fn the_kernels_files_are_never_read() {
        let dir = Scratch::dir();
        for target in [
            "/proc/self/environ",
            "/proc/self/maps",
            "/sys/kernel/mm/transparent_hugepage/enabled",
        ] {
            if !Path::new(target).exists() {
                continue;
            }
            let link = dir.join("link");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).unwrap();
            for path in [Path::new(target), &link] {
                match open_regular(path, None) {
                    Err(Problem::Kernel(real)) => {
                        assert!(real.starts_with("/proc") || real.starts_with("/sys"))
                    }
                    other => panic!("{target}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_member_stays_inside_its_directory() {
        let dir = Scratch::with(&[("inside/f", b"a\n"), ("outside/secret", b"s\n")]);
        let root = dir.join("inside").canonicalize().unwrap();
        std::os::unix::fs::symlink("../outside/secret", dir.join("inside/away")).unwrap();
        std::os::unix::fs::symlink("f", dir.join("inside/same")).unwrap();
        assert!(open_regular(&dir.join("inside/f"), Some(&root)).is_ok());
        assert!(open_regular(&dir.join("inside/same"), Some(&root)).is_ok());
        match open_regular(&dir.join("inside/away"), Some(&root)) {
            Err(Problem::Outside { real, root: r }) => {
                assert_eq!(real, dir.join("outside/secret").canonicalize().unwrap());
                assert_eq!(r, root);
            }
            other => panic!("{other:?}"),
        }
        // Named on its own, the same file is read.
        assert!(open_regular(&dir.join("inside/away"), None).is_ok());
    }
}
