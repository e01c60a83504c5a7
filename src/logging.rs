//! Logging through the `log` facade: to journald with structured fields when
//! stderr is connected to the journal (or is a socket we must not write
//! logs to), plain lines on stderr otherwise.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{LevelFilter, Log, Metadata, Record};
use nix::sys::stat::{SFlag, fstat};
use systemd_journal_logger::{JournalLog, connected_to_journal};

static TO_JOURNAL: AtomicBool = AtomicBool::new(false);

/// Reports the error that ends the process, as one line where the admin
/// will look: the journal if logs go there, else stderr unless stderr is a
/// socket (then it is the client's connection, and the line is dropped).
pub fn report_fatal(message: &str) {
    if TO_JOURNAL.load(Ordering::Relaxed) {
        log::error!("{message}");
    } else if !stderr_is_socket() {
        eprintln!("fortune-server: {message}");
    }
}

/// Installs the logger. Never fails: with nowhere safe to write, logs are dropped.
pub fn init(level: LevelFilter) {
    let installed = if connected_to_journal() || stderr_is_socket() {
        // Under inetd / StandardInput=socket stderr is the client's socket:
        // a log line there would corrupt the fortune. Use the journal or nothing.
        let installed = JournalLog::new()
            .map(|j| j.with_extra_fields(vec![("VERSION", env!("CARGO_PKG_VERSION"))]))
            .and_then(|j| j.install().map_err(std::io::Error::other))
            .is_ok();
        TO_JOURNAL.store(installed, Ordering::Relaxed);
        installed
    } else {
        log::set_boxed_logger(Box::new(Stderr)).is_ok()
    };
    log::set_max_level(if installed { level } else { LevelFilter::Off });
}

fn stderr_is_socket() -> bool {
    fstat(std::io::stderr().as_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
        .unwrap_or(false)
}

/// One line per record: `fortune-server: LEVEL: message`.
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
