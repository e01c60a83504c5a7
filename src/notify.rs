//! Telling the service manager how we are: `READY=1`, `RELOADING=1`,
//! `STOPPING=1`, watchdog pings and the `STATUS=` line, over `NOTIFY_SOCKET`.
//! Without it every call is a no-op. A send never waits: a manager that
//! does not read loses the message (with a folded warning) rather than
//! stall the main loop, which must go on answering signals.

use std::fmt::Write as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::fold::{self, Fold};

/// The main loop's shortest wait: a watchdog that asks for pings more often
/// is pinged this often (a tighter loop would only burn a CPU).
pub const MIN_TICK: Duration = Duration::from_millis(10);

/// Where messages go: `NOTIFY_SOCKET`, read once, and a non-blocking socket.
struct Target {
    shown: String,
    addr: SocketAddr,
    socket: UnixDatagram,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let shown = std::env::var_os("NOTIFY_SOCKET")?.to_string_lossy().into_owned();
            let made = address(&shown).and_then(|addr| {
                let socket = UnixDatagram::unbound()?;
                socket.set_nonblocking(true)?;
                Ok(Target {
                    shown: shown.clone(),
                    addr,
                    socket,
                })
            });
            made.inspect_err(|e| log::warn!("NOTIFY_SOCKET={shown:?}: not usable, nothing will be sent: {e}"))
                .ok()
        })
        .as_ref()
}

/// A path, or `@name` for Linux's abstract namespace (as systemd passes).
fn address(value: &str) -> std::io::Result<SocketAddr> {
    match value.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None if value.starts_with('/') => SocketAddr::from_pathname(value),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected an absolute path or @name",
        )),
    }
}

fn send(states: &[NotifyState]) {
    let Some(target) = target() else {
        return;
    };
    let mut message = String::new();
    for state in states {
        let _ = writeln!(message, "{state}");
    }
    if let Err(e) = target.socket.send_to_addr(message.as_bytes(), &target.addr) {
        fold::note(
            Fold::NotifyFailed,
            format_args!(
                "cannot notify the service manager at {}: {e}; message dropped",
                target.shown
            ),
        );
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn reloading() {
    // systemd >= 253 requires MONOTONIC_USEC with RELOADING=1; older ones ignore it.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("Stopping: serving connections in flight"),
    ]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog (`WATCHDOG_USEC` for this process), if
/// at all; logs a warning if the interval cannot be honoured.
pub fn watchdog_interval() -> Option<Duration> {
    let (every, warning) = ping_every(sd_notify::watchdog_enabled());
    if let Some(warning) = warning {
        log::warn!("{warning}");
    }
    every
}

/// Half the watchdog interval, as sd_watchdog_enabled(3) advises, but never
/// under [`MIN_TICK`]; 0 means no watchdog (as sd_watchdog_enabled(3)
/// reads it). With the warning to log, if any.
fn ping_every(watchdog: Option<Duration>) -> (Option<Duration>, Option<String>) {
    match watchdog {
        None => (None, None),
        Some(Duration::ZERO) => (None, Some("WATCHDOG_USEC=0: no watchdog to ping".into())),
        Some(w) if w / 2 < MIN_TICK => (
            Some(MIN_TICK),
            Some(format!(
                "WATCHDOG_USEC={} is shorter than this service can ping (every {} ms at most): \
                 pinging every {} ms; raise WatchdogSec=",
                w.as_micros(),
                MIN_TICK.as_millis(),
                MIN_TICK.as_millis()
            )),
        ),
        Some(w) => (Some(w / 2), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_interval_and_never_in_a_tight_loop() {
        let us = Duration::from_micros;
        assert_eq!(ping_every(None), (None, None));
        assert_eq!(
            ping_every(Some(Duration::from_secs(30))),
            (Some(Duration::from_secs(15)), None)
        );
        assert_eq!(ping_every(Some(us(20_000))).0, Some(MIN_TICK));
        assert!(ping_every(Some(us(20_000))).1.is_none());
        for short in [1, 1999, 10_000, 19_999] {
            let (every, warning) = ping_every(Some(us(short)));
            assert_eq!(every, Some(MIN_TICK), "{short}");
            assert!(warning.unwrap().contains(&format!("WATCHDOG_USEC={short} ")));
        }
        let (every, warning) = ping_every(Some(Duration::ZERO));
        assert_eq!(every, None);
        assert!(warning.is_some());
    }

    #[test]
    fn notify_addresses() {
        use std::os::linux::net::SocketAddrExt;
        assert_eq!(
            address("/run/systemd/notify").unwrap().as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert_eq!(address("@abc").unwrap().as_abstract_name(), Some(&b"abc"[..]));
        assert!(address("vsock:2:1").is_err());
    }
}
