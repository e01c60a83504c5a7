//! Logging through the `log` facade: to journald with structured fields when
//! stderr is connected to the journal (or is a socket we must not write
//! logs to), plain lines on stderr otherwise. Also owns the fatal-error line
//! and the `MESSAGE_ID`s of the events an admin filters on.

use std::io::Write;
use std::os::fd::AsFd;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::sys::stat::{SFlag, fstat};
use systemd_journal_logger::{JournalLog, connected_to_journal};

static TO_JOURNAL: AtomicBool = AtomicBool::new(false);

/// `MESSAGE_ID`s of the lifecycle events (`journalctl MESSAGE_ID=...`), fixed
/// 128-bit ids as systemd's catalog uses; listed in docs/reference.md.
/// Pass one as `log::info!(message_id = id::SERVING; "...")`.
pub mod id {
    /// Ready: the collection and every socket served (after start and reload).
    pub const SERVING: &str = "56c3bce1b7694a169aee1259b7cae24b";
    /// SIGHUP: the fortune files were read again and are now served.
    pub const RELOADED: &str = "236c23c2c6704bdca59bbabe41cf79fd";
    /// SIGHUP: reading the fortune files failed; the previous ones stay.
    pub const RELOAD_FAILED: &str = "3ce2d5f327c74612a319119e342571f2";
    /// Stopping: a signal, or `--idle-exit` without a client.
    pub const STOPPING: &str = "7e1c8d42c4354342a0114f6f41404348";
    /// Every one of `--max-connections` is busy: new clients wait in the backlog.
    pub const AT_CAP: &str = "667c2d764be04612ac0087438c90fbeb";
    /// Out of file descriptors: accepting paused until some free up.
    pub const OUT_OF_FDS: &str = "43e5a0b1a7054e59930be5d2822225f6";
    /// Every id, for the docs test.
    pub const ALL: [(&str, &str); 6] = [
        ("SERVING", SERVING),
        ("RELOADED", RELOADED),
        ("RELOAD_FAILED", RELOAD_FAILED),
        ("STOPPING", STOPPING),
        ("AT_CAP", AT_CAP),
        ("OUT_OF_FDS", OUT_OF_FDS),
    ];
}

/// Reports the error that ends the process, as one line (priority err) where
/// the admin will look: the journal if logs go there, else stderr unless
/// stderr is a socket (then it is the client's connection, and the line is
/// dropped). `at` is where the error arose: `CODE_FILE`/`CODE_LINE` in the
/// journal (none for a usage error). Not subject to `--log-level`.
pub fn report_fatal(message: &str, at: Option<&'static Location<'static>>) {
    if TO_JOURNAL.load(Ordering::Relaxed) {
        log::logger().log(
            &Record::builder()
                .level(Level::Error)
                .target(module_path!())
                .module_path_static(None)
                .file_static(at.map(Location::file))
                .line(at.map(Location::line))
                .args(format_args!("{message}"))
                .build(),
        );
    } else if !stderr_is_socket() {
        eprintln!("fortune-server: {message}");
    }
}

/// Chooses where logs go and installs the logger, first thing in `main` so
/// that even a usage error reaches the journal; nothing is logged until
/// [`set_level`]. Never fails: with nowhere safe to write, logs are dropped.
pub fn init() {
    if connected_to_journal() || stderr_is_socket() {
        // Under inetd / StandardInput=socket stderr is the client's socket:
        // a log line there would corrupt the fortune. Use the journal or nothing.
        let installed = JournalLog::new()
            .map(|j| j.with_extra_fields(vec![("VERSION", env!("CARGO_PKG_VERSION"))]))
            .and_then(|j| j.install().map_err(std::io::Error::other))
            .is_ok();
        TO_JOURNAL.store(installed, Ordering::Relaxed);
    } else {
        let _ = log::set_boxed_logger(Box::new(Stderr));
    }
    log::set_max_level(LevelFilter::Off);
}

/// `--log-level`, once the command line is parsed.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

fn stderr_is_socket() -> bool {
    fstat(std::io::stderr().as_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
        .unwrap_or(false)
}

/// One line per record: `fortune-server: LEVEL: message` (fields left out).
struct Stderr;

impl Log for Stderr {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let line = format!(
            "fortune-server: {}: {}\n",
            record.level().as_str().to_lowercase(),
            record.args()
        );
        // One write per line keeps lines from threads whole.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::id;

    #[test]
    fn message_ids_are_distinct_128_bit_hex() {
        for (i, (name, value)) in id::ALL.iter().enumerate() {
            assert_eq!(value.len(), 32, "{name}");
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{name}"
            );
            assert!(
                id::ALL[..i].iter().all(|(_, other)| other != value),
                "{name} repeats"
            );
        }
    }
}
