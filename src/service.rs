//! The life of the long-running service (`Accept=no` or `--listen`): start
//! the threads, then answer signals (SIGHUP reloads, SIGTERM/SIGINT stop),
//! ping the watchdog and keep `STATUS=` current until it is time to stop
//! (a signal, or `--idle-exit` seconds without a client).

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::activation::Named;
use crate::cidr::Trusted;
use crate::error::Error;
use crate::fortunes::{Live, Opening, Selection, Store};
use crate::logging::id;
use crate::notify;
use crate::server::{self, Server};
use crate::sockets::Listener;
use crate::sources::Sources;
use crate::stats::Stats;
use crate::wire::Protocol;
use crate::{datagram, fold};

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);

pub struct Config {
    pub protocol: Protocol,
    pub fortunes: Selection,
    pub daily: bool,
    pub timeout: Duration,
    pub idle_exit: Option<Duration>,
    pub max_connections: usize,
    /// `--max-per-source` (see [`Sources::cap`]).
    pub max_per_source: Option<u32>,
    pub udp: datagram::Limits,
    /// The listeners are our own `--listen` sockets (see [`server::Config`]).
    pub bound_here: bool,
    /// `--proxy-from`.
    pub proxy_from: Trusted,
}

/// Serves until SIGTERM or SIGINT (or `idle_exit` without a client), then
/// stops within `timeout`.
pub fn run(
    config: Config,
    store: Store,
    listeners: Vec<Named<Listener>>,
    datagrams: Vec<Named<std::net::UdpSocket>>,
) -> Result<(), Error> {
    // Blocked here, before any thread starts, so every thread inherits the
    // mask and the signals arrive only through the signalfd below.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| Error::runtime("blocking signals", e.into()))?;
    let signalfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::runtime("creating a signalfd", e.into()))?;

    let mut described = Vec::new();
    let listeners: Vec<(Listener, Protocol)> = listeners
        .into_iter()
        .map(|Named { socket, name }| {
            let protocol = protocol_for(name.as_deref(), config.protocol);
            log::info!("listening on {socket} ({protocol})");
            described.push(format!("{socket} ({protocol})"));
            (socket, protocol)
        })
        .collect();
    let live = Arc::new(Live::new(store, config.daily));
    let stats = Arc::new(Stats::default());
    let per_source = Sources::cap(config.max_per_source);
    match per_source {
        Some(cap) => {
            log::info!("each source (a /24, or a /56 for IPv6) may hold {cap} connections (--max-per-source)")
        }
        None => log::info!("no cap on the connections one source may hold (--max-per-source 0)"),
    }
    if !config.proxy_from.is_empty() {
        log::info!(
            "TCP connections from {} begin with a PROXY header and are served as the client it names (--proxy-from)",
            config.proxy_from
        );
    }
    let server = Server::new(server::Config {
        listeners,
        live: Arc::clone(&live),
        stats: Arc::clone(&stats),
        sources: Sources::new(per_source, Arc::clone(&stats)),
        timeout: config.timeout,
        max_connections: config.max_connections,
        bound_here: config.bound_here,
        proxy_from: config.proxy_from.clone(),
    })
    .map_err(|e| Error::runtime("setting up the accept loop", e))?;
    server
        .start()
        .map_err(|e| Error::runtime("starting worker threads", e))?;

    let stop_datagrams = Arc::new(AtomicBool::new(false));
    for Named { socket, .. } in datagrams {
        let addr = socket
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let limits = config.udp;
        log::info!("answering datagrams on udp {addr} (text); {limits}");
        described.push(format!("udp {addr} (text)"));
        let (live, stats, stop) = (Arc::clone(&live), Arc::clone(&stats), Arc::clone(&stop_datagrams));
        std::thread::Builder::new()
            .name("qotd-udp".into())
            .stack_size(crate::limits::THREAD_STACK)
            .spawn(move || datagram::serve(socket, live, stats, stop, limits))
            .map_err(|e| Error::runtime("starting the datagram thread", e))?;
    }

    let mut serving = serving_text(&live.store(), &described);
    notify::ready(&serving);
    log::info!(message_id = id::SERVING; "{serving}");

    let watchdog = notify::watchdog_interval();
    let tick = watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
    let mut last_status = String::new();
    let mut next_status = Instant::now();
    let mut idle = config
        .idle_exit
        .map(|limit| Idle::new(limit, Instant::now(), stats.handled()));
    loop {
        let mut fds = [PollFd::new(signalfd.as_fd(), PollFlags::POLLIN)];
        let wait = idle
            .as_ref()
            .map_or(tick, |i| i.left(Instant::now()).clamp(IDLE_MIN_WAIT, tick));
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        // EINTR and other poll failures just mean another round.
        if poll(&mut fds, timeout).unwrap_or(0) > 0 {
            match signalfd.read_signal() {
                Ok(Some(info)) if info.ssi_signo == Signal::SIGHUP as u32 => {
                    serving = reload(&config.fortunes, &live, &described);
                }
                Ok(Some(info)) => {
                    let name = Signal::try_from(info.ssi_signo as i32).map_or("signal", |s| s.as_str());
                    log::info!(message_id = id::STOPPING; "{name} received: stopping");
                    break;
                }
                Ok(None) | Err(_) => {}
            }
        }
        if let Some(idle) = &mut idle {
            let busy = stats.active() > 0;
            if idle.expired(Instant::now(), busy, stats.handled()) {
                log::info!(
                    message_id = id::STOPPING;
                    "no client for {} s (--idle-exit): stopping; systemd starts the service again for the next one",
                    idle.limit.as_secs_f64()
                );
                break;
            }
        }
        if watchdog.is_some() {
            notify::watchdog();
        }
        fold::flush();
        if Instant::now() >= next_status {
            let status = format!("{serving}; {}", stats.summary());
            if status != last_status {
                notify::status(&status);
                last_status = status;
            }
            next_status = Instant::now() + STATUS_EVERY;
        }
    }

    notify::stopping();
    let deadline = Instant::now() + config.timeout;
    if !server.stop(deadline) {
        log::warn!("stop timeout reached with connections still being written; closing them");
    }
    stop_datagrams.store(true, Ordering::Relaxed);
    fold::flush_all();
    log::info!("stopped; {}", stats.summary());
    Ok(())
}

/// Shortest wait of the main loop while idle-exit is armed, so it never spins.
const IDLE_MIN_WAIT: Duration = Duration::from_millis(10);

/// How long the service has gone without a client, for `--idle-exit`.
struct Idle {
    limit: Duration,
    since: Instant,
    /// Clients handled (served or failed) when last looked at.
    handled: u64,
}

impl Idle {
    fn new(limit: Duration, now: Instant, handled: u64) -> Idle {
        Idle {
            limit,
            since: now,
            handled,
        }
    }

    /// True once nothing was `busy` (being served or lingering) and no
    /// client was handled for `limit`. A client seen restarts the count.
    fn expired(&mut self, now: Instant, busy: bool, handled: u64) -> bool {
        if busy || handled != self.handled {
            self.since = now;
            self.handled = handled;
            return false;
        }
        now.duration_since(self.since) >= self.limit
    }

    /// Time left before `expired` turns true if nothing happens.
    fn left(&self, now: Instant) -> Duration {
        (self.since + self.limit).saturating_duration_since(now)
    }
}

/// The protocol of a socket named by `FileDescriptorName=`, if the name is one.
fn protocol_for(name: Option<&str>, default: Protocol) -> Protocol {
    name.and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Re-reads the fortune files; on failure keeps the old collection.
/// Returns the new "Serving ..." status text.
fn reload(selection: &Selection, live: &Live, described: &[String]) -> String {
    notify::reloading();
    match Store::load(selection, Opening::Eager) {
        Ok(store) => {
            log::info!(message_id = id::RELOADED; "reloaded {} fortunes ({})", store.len(), store.origin());
            live.replace(store);
        }
        Err(e) => {
            log::warn!(message_id = id::RELOAD_FAILED; "reload failed, still serving the previous fortunes: {e}")
        }
    }
    let serving = serving_text(&live.store(), described);
    notify::ready(&serving);
    serving
}

fn serving_text(store: &Store, described: &[String]) -> String {
    format!(
        "Serving {} fortunes ({}) on {}",
        store.len(),
        store.origin(),
        described.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_names_choose_the_protocol() {
        assert_eq!(protocol_for(Some("text"), Protocol::Qt), Protocol::Text);
        assert_eq!(protocol_for(Some("qt4"), Protocol::Qt), Protocol::Qt4);
        assert_eq!(protocol_for(Some("fortune.socket"), Protocol::Qt4), Protocol::Qt4);
        assert_eq!(protocol_for(None, Protocol::Text), Protocol::Text);
    }

    #[test]
    fn idle_counts_from_the_last_client() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut idle = Idle::new(s(10), t0, 5);
        assert!(!idle.expired(t0 + s(9), false, 5));
        assert_eq!(idle.left(t0 + s(9)), s(1));
        // A client handled at 9 s: the ten seconds start again.
        assert!(!idle.expired(t0 + s(9), false, 6));
        assert!(!idle.expired(t0 + s(18), false, 6));
        // One still lingering at 18 s: not idle either.
        assert!(!idle.expired(t0 + s(18), true, 6));
        assert!(!idle.expired(t0 + s(27), false, 6));
        assert!(idle.expired(t0 + s(28), false, 6));
        assert_eq!(idle.left(t0 + s(30)), Duration::ZERO);
    }
}
