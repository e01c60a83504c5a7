//! The life of the long-running service (`Accept=no` or `--listen`), in
//! steps: start the workers, start the UDP threads, then the main loop
//! (answer signals: SIGHUP reloads, SIGTERM/SIGINT stop; keep the serving
//! threads going, ping the watchdog only while they are, keep `STATUS=`
//! current) until it is time to stop (a signal, or `--idle-exit` seconds
//! without a client), then shut down.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::activation::Named;
use crate::cidr::Trusted;
use crate::error::Error;
use crate::fortunes::{Live, Opening, Selection, Store};
use crate::logging::id;
use crate::notify::{self, MIN_TICK};
use crate::server::{self, Server};
use crate::signals::{Asked, Sender, Signals};
use crate::sockets::Listener;
use crate::sources::Sources;
use crate::stats::Stats;
use crate::wire::Protocol;
use crate::{datagram, fold, health};

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);

pub struct Config {
    pub protocol: Protocol,
    /// `--protocol` was set, not defaulted: a socket's name overriding it is warned about.
    pub protocol_given: bool,
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
/// stops within `timeout`. Err if a serving thread died and could not be
/// replaced: systemd is to restart the service.
pub fn run(
    config: Config,
    store: Store,
    listeners: Vec<Named<Listener>>,
    datagrams: Vec<Named<std::net::UdpSocket>>,
) -> Result<(), Error> {
    let signals = Signals::new().map_err(|e| Error::runtime("reading signals", e.into()))?;
    let live = Arc::new(Live::new(store, config.daily));
    let stats = Arc::new(Stats::default());
    let mut described = Vec::new();
    let server = start_server(&config, listeners, &live, &stats, &mut described)?;
    let udp = start_datagrams(&config, datagrams, &live, &stats, &mut described)?;
    let serving = serving_text(&live.store(), &described);
    log::info!(message_id = id::SERVING; "{serving}");
    let status = Status::default();
    notify::ready(&status.line(&serving, &stats));
    let mut main = MainLoop {
        config: &config,
        signals: &signals,
        server: &server,
        udp,
        live: &live,
        stats: &stats,
        described: &described,
        serving,
        status,
    };
    let ended = main.run();
    shutdown(&config, &server, &main.udp, &stats);
    ended
}

/// The accept loop's workers on the stream listeners.
fn start_server(
    config: &Config,
    listeners: Vec<Named<Listener>>,
    live: &Arc<Live>,
    stats: &Arc<Stats>,
    described: &mut Vec<String>,
) -> Result<Arc<Server>, Error> {
    let listeners: Vec<(Listener, Protocol)> = listeners
        .into_iter()
        .map(|Named { socket, name }| {
            let protocol = protocol_for(name.as_deref(), config.protocol);
            if config.protocol_given && protocol != config.protocol {
                log::warn!(
                    "FORTUNE_PROTOCOL (--protocol) {} does not apply to {socket}: its systemd name \
                     (FileDescriptorName={protocol}) chooses {protocol}, and a socket's name wins; to serve \
                     {} there, set FileDescriptorName={} in its .socket unit",
                    config.protocol,
                    config.protocol,
                    config.protocol
                );
            }
            log::info!("listening on {socket} ({protocol})");
            described.push(format!("{socket} ({protocol})"));
            (socket, protocol)
        })
        .collect();
    let sources = Sources::new(
        Sources::cap(config.max_per_source),
        config.max_connections,
        Arc::clone(stats),
    );
    match (sources.connection_cap(), sources.writer_share()) {
        (Some(cap), Some(share)) => log::info!(
            "each source (a /24, or a /48 for IPv6) may hold {cap} connections (--max-per-source), \
             {share} of them slow readers being written (1/{} of --max-connections)",
            crate::sources::WRITER_SHARE
        ),
        _ => log::info!("no cap on the connections one source may hold (--max-per-source 0)"),
    }
    if !config.proxy_from.is_empty() {
        log::info!(
            "TCP connections from {} begin with a PROXY header and are served as the client it names (--proxy-from)",
            config.proxy_from
        );
    }
    let server = Server::new(server::Config {
        listeners,
        live: Arc::clone(live),
        stats: Arc::clone(stats),
        sources,
        timeout: config.timeout,
        max_connections: config.max_connections,
        bound_here: config.bound_here,
        proxy_from: config.proxy_from.clone(),
    })
    .map_err(|e| Error::runtime("setting up the accept loop", e))?;
    server
        .start()
        .map_err(|e| Error::runtime("starting worker threads", e))?;
    Ok(server)
}

/// A thread answering each UDP socket (QOTD).
fn start_datagrams(
    config: &Config,
    datagrams: Vec<Named<std::net::UdpSocket>>,
    live: &Arc<Live>,
    stats: &Arc<Stats>,
    described: &mut Vec<String>,
) -> Result<datagram::Threads, Error> {
    let limits = config.udp;
    let sockets = datagrams
        .into_iter()
        .map(|Named { socket, .. }| {
            let addr = socket
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            log::info!("answering datagrams on udp {addr} (text); {limits}");
            described.push(format!("udp {addr} (text)"));
            (socket, addr)
        })
        .collect();
    let shared = datagram::Shared {
        live: Arc::clone(live),
        stats: Arc::clone(stats),
        limits,
        stop: Arc::new(AtomicBool::new(false)),
    };
    datagram::Threads::start(sockets, shared).map_err(|e| Error::runtime("starting the datagram thread", e))
}

/// Stops accepting, serves what is in flight (bounded by `--timeout`), and
/// says so.
fn shutdown(config: &Config, server: &Arc<Server>, udp: &datagram::Threads, stats: &Stats) {
    notify::stopping();
    let deadline = Instant::now() + config.timeout;
    if !server.stop(deadline) {
        log::warn!("stop timeout reached with connections still being written; closing them");
    }
    udp.stop();
    fold::flush_all();
    log::info!("stopped; {}", stats.summary());
}

/// The main thread while serving: signals, `--idle-exit`, the serving
/// threads' health and the watchdog, `STATUS=`.
struct MainLoop<'a> {
    config: &'a Config,
    signals: &'a Signals,
    server: &'a Arc<Server>,
    udp: datagram::Threads,
    live: &'a Live,
    stats: &'a Stats,
    described: &'a [String],
    /// The "Serving ..." text of `STATUS=`.
    serving: String,
    status: Status,
}

impl MainLoop<'_> {
    fn run(&mut self) -> Result<(), Error> {
        let watchdog = notify::watchdog_interval();
        let tick = watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
        let mut stalled = false;
        let mut idle = self
            .config
            .idle_exit
            .map(|limit| Idle::new(limit, Instant::now(), self.stats.handled()));
        loop {
            let wait = idle
                .as_ref()
                .map_or(tick, |i| i.left(Instant::now()).max(MIN_TICK).min(tick));
            if let Some(stop) = self.answer_signals(wait) {
                return stop;
            }
            let (active, handled) = (self.stats.active() > 0, self.stats.handled());
            let expired = idle
                .as_mut()
                .is_some_and(|i| i.expired(Instant::now(), active, handled));
            if let (true, Some(idle)) = (expired, &idle) {
                log::info!(
                    message_id = id::STOPPING;
                    "no client for {} s (--idle-exit): stopping; systemd starts the service again for the next one",
                    idle.limit.as_secs_f64()
                );
                return Ok(());
            }
            let healthy = self.keep_serving(&mut stalled)?;
            if watchdog.is_some() && healthy {
                notify::watchdog();
            }
            fold::flush();
            // At every tick (and signal): the counters as they are now.
            let line = self.status.line(&self.serving, self.stats);
            if line != self.status.sent {
                notify::status(&line);
            }
            self.status.sent = line;
        }
    }

    /// Waits up to `wait` for signals and answers those pending: Some once
    /// one asks to stop.
    fn answer_signals(&mut self, wait: Duration) -> Option<Result<(), Error>> {
        let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        // Rounded up: a wait rounded down to 0 ms would spin.
        let millis = wait.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        // EINTR and other poll failures just mean another round.
        let _ = poll(&mut fds, timeout);
        while let Some((asked, sender)) = self.signals.next() {
            match asked {
                Asked::Reload => {
                    notify::reloading();
                    let outcome = reload(&self.config.fortunes, self.live);
                    self.serving = serving_text(&self.live.store(), self.described);
                    self.status.reload_failed = outcome.as_ref().err().cloned();
                    notify::ready(&self.status.line(&self.serving, self.stats));
                    answer_reloader(sender, outcome.is_ok());
                }
                Asked::Stop(name) => {
                    log::info!(message_id = id::STOPPING; "{name} received: stopping");
                    return Some(Ok(()));
                }
                Asked::Nothing(name) => {
                    log::info!("{name} received: ignored (SIGHUP reloads, SIGTERM stops)")
                }
            }
        }
        None
    }

    /// Puts back serving threads that died; Ok(true) if every one is going
    /// round (the watchdog may be fed), Err if one cannot be put back.
    /// `stalled` remembers a stall already logged.
    fn keep_serving(&mut self, stalled: &mut bool) -> Result<bool, Error> {
        let lost =
            |why: String| Error::runtime("keeping the serving threads going", std::io::Error::other(why));
        self.server.keep_serving().map_err(lost)?;
        self.udp.keep_serving().map_err(lost)?;
        let now = Instant::now();
        let mut stuck: Vec<String> = self
            .udp
            .stalled(now)
            .into_iter()
            .map(|addr| format!("the thread answering udp {addr}"))
            .collect();
        if self.server.stalled(now) {
            stuck.push("the worker threads".to_string());
        }
        match (stuck.is_empty(), *stalled) {
            (true, true) => {
                log::warn!("every serving thread is going round again; pinging the watchdog again")
            }
            (false, false) => log::error!(
                "{} made no progress for {} s: not pinging the watchdog any more, so that systemd restarts the service",
                stuck.join(" and "),
                health::STALL.as_secs_f64()
            ),
            _ => {}
        }
        *stalled = !stuck.is_empty();
        Ok(stuck.is_empty())
    }
}

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

/// Re-reads the fortune files; on failure keeps the old collection and
/// returns why.
fn reload(selection: &Selection, live: &Live) -> Result<(), String> {
    match Store::load(selection, Opening::Eager) {
        Ok(store) => {
            log::info!(message_id = id::RELOADED; "reloaded {} fortunes ({})", store.table().len(), store.origin());
            live.replace(store);
            Ok(())
        }
        Err(e) => {
            log::warn!(message_id = id::RELOAD_FAILED; "reload failed, still serving the previous fortunes: {e}");
            Err(e.to_string())
        }
    }
}

/// What `STATUS=` shows: what is served, the counters, and a failed reload
/// until a good one.
#[derive(Default)]
struct Status {
    reload_failed: Option<String>,
    /// The line last sent, so that an unchanged one is not sent again.
    sent: String,
}

impl Status {
    fn line(&self, serving: &str, stats: &Stats) -> String {
        let mut line = format!("{serving}; {}", stats.summary());
        if let Some(why) = &self.reload_failed {
            line.push_str(&format!(
                "; RELOAD FAILED, still serving the previous fortunes: {why}"
            ));
        }
        line
    }
}

/// Tells the unit's `ExecReload=` command how the reload went, so that
/// `systemctl reload` fails when it did (systemd 252 has no
/// `Type=notify-reload`): SIGURG done, SIGWINCH failed, to the process that
/// sent the SIGHUP, but only under systemd (`INVOCATION_ID`) and only if it
/// is one of this service's own: the same user, and that user is not root
/// (`DynamicUser=`: no one else has it), or else the same cgroup (the command
/// systemd runs for `ExecReload=`; under `PrivateUsers=` its /proc entry is
/// hidden from us, hence the user first). The two signals are ignored by
/// default, so even a process these checks mistake for ours (a shell sharing
/// a terminal's cgroup) is not harmed; anyone else who sends SIGHUP (an
/// admin's `kill -HUP`, `systemctl kill`) gets nothing back.
fn answer_reloader(sender: Sender, ok: bool) {
    use std::os::unix::fs::MetadataExt;
    if std::env::var_os("INVOCATION_ID").is_none() {
        return;
    }
    // Our user: the owner of our /proc entry (nix's getuid needs a feature more).
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return;
    };
    let ours = |pid: u32| {
        let cgroup = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok();
        let own = cgroup("self");
        own.is_some() && cgroup(&pid.to_string()) == own
    };
    let Sender { pid, uid: sender_uid } = sender;
    if pid <= 1 || pid == std::process::id() || sender_uid != uid || (uid == 0 && !ours(pid)) {
        return;
    }
    let answer = if ok { Signal::SIGURG } else { Signal::SIGWINCH };
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), answer) {
        log::debug!("cannot tell process {pid} how the reload went: {e}");
    }
}

fn serving_text(store: &Store, described: &[String]) -> String {
    format!(
        "Serving {} fortunes ({}) on {}",
        store.table().len(),
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
