//! RFC 865 Quote of the Day over UDP: one fortune as text back to the sender
//! of each datagram, at most 512 bytes, whatever the datagram held; but
//! never to a port below 1024 or to our own port (where "answer anything"
//! services live, ourselves included: answering one starts a loop), and at
//! most `--udp-rate` replies a second per source prefix (a reflection
//! amplifier otherwise, the source address being anyone's to forge), within
//! a budget for all sources together ([`crate::ratelimit`]). Also the
//! threads serving each socket, started again when one dies.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fold::{self, Fold};
use crate::fortunes::Live;
use crate::health::{Heartbeat, STALL};
use crate::ratelimit::{ReplyLimiter, Verdict};
use crate::stats::Stats;
use crate::wire::{Protocol, QOTD_MAX_DATAGRAM};

/// How often a waiting datagram thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Replies allowed per source prefix: `--udp-rate` and `--udp-burst`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Replies a second; 0: no limit.
    pub rate: u32,
    pub burst: u32,
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rate {
            0 => f.write_str("no rate limit (--udp-rate 0)"),
            rate => write!(
                f,
                "at most {rate} replies a second per source after a burst of {} (--udp-rate, --udp-burst), \
                 {} a second for all sources together",
                self.burst,
                crate::ratelimit::budget(rate)
            ),
        }
    }
}

/// What every datagram thread is given.
#[derive(Clone)]
pub struct Shared {
    pub live: Arc<Live>,
    pub stats: Arc<Stats>,
    pub limits: Limits,
    /// Set when the service stops.
    pub stop: Arc<AtomicBool>,
}

/// One UDP socket and the thread serving it.
struct Served {
    socket: Arc<UdpSocket>,
    addr: String,
    heartbeat: Arc<Heartbeat>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
    /// Threads in a row that died young (or could not start).
    failures: usize,
}

/// The threads answering datagrams, one per socket, kept going by the main
/// loop: one that dies is started again; one that stops going round is
/// reported (the watchdog then starves).
pub struct Threads {
    shared: Shared,
    served: Vec<Served>,
}

/// Threads in a row that may die within [`STALL`] of their start before the
/// service gives up.
const START_ATTEMPTS: usize = 3;

impl Threads {
    /// Starts a thread for each socket; `addr` is how each is logged.
    pub fn start(sockets: Vec<(UdpSocket, String)>, shared: Shared) -> std::io::Result<Threads> {
        let mut threads = Threads {
            shared,
            served: Vec::new(),
        };
        for (socket, addr) in sockets {
            let mut served = Served {
                socket: Arc::new(socket),
                addr,
                heartbeat: Arc::new(Heartbeat::default()),
                thread: None,
                started: Instant::now(),
                failures: 0,
            };
            served.thread = Some(threads.spawn(&served)?);
            threads.served.push(served);
        }
        Ok(threads)
    }

    fn spawn(&self, served: &Served) -> std::io::Result<JoinHandle<()>> {
        let (socket, heartbeat, shared) = (
            Arc::clone(&served.socket),
            Arc::clone(&served.heartbeat),
            self.shared.clone(),
        );
        std::thread::Builder::new()
            .name("qotd-udp".into())
            .stack_size(crate::limits::THREAD_STACK)
            .spawn(move || serve(&socket, &shared, &heartbeat))
    }

    /// Starts again each thread that ended (a panic, a socket error). Err
    /// (why) once one died young `START_ATTEMPTS` times in a row: the
    /// service must exit so that systemd restarts it.
    pub fn keep_serving(&mut self) -> Result<(), String> {
        if self.shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        for i in 0..self.served.len() {
            let served = &self.served[i];
            if served.thread.as_ref().is_some_and(|t| !t.is_finished()) {
                continue;
            }
            let now = Instant::now();
            let young = now.duration_since(served.started) < STALL;
            let failures = if young { served.failures + 1 } else { 1 };
            let addr = served.addr.clone();
            if failures >= START_ATTEMPTS {
                return Err(format!(
                    "the thread answering datagrams on udp {addr} ended {failures} times in a row"
                ));
            }
            log::error!("the thread answering datagrams on udp {addr} ended; starting another");
            let thread = self
                .spawn(served)
                .inspect_err(|e| log::error!("cannot start a thread for udp {addr}: {e}"))
                .ok();
            let served = &mut self.served[i];
            (served.thread, served.started, served.failures) = (thread, now, failures);
        }
        Ok(())
    }

    /// The sockets whose thread stopped going round (see [`Heartbeat`]).
    pub fn stalled(&self, now: Instant) -> Vec<&str> {
        self.served
            .iter()
            .filter(|served| served.heartbeat.stalled(now))
            .map(|served| served.addr.as_str())
            .collect()
    }

    /// Tells every thread to stop (within `POLL`).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves one UDP socket until `stop` is set, beating `heartbeat` as it goes.
pub fn serve(socket: &UdpSocket, shared: &Shared, heartbeat: &Heartbeat) {
    let own = match socket.local_addr() {
        Ok(own) => own,
        Err(e) => {
            log::error!("UDP socket unusable, not serving it: {e}");
            return;
        }
    };
    // Blocking, with a timeout to look at the stop flag: an inherited socket
    // may come non-blocking (NonBlocking=yes, or left so by another process),
    // and would make this loop spin.
    let mode = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(POLL)));
    if let Err(e) = mode {
        log::error!("UDP socket unusable, not serving it: {e}");
        return;
    }
    let Shared {
        live,
        stats,
        limits,
        stop,
    } = shared;
    let mut limiter = (limits.rate > 0).then(|| ReplyLimiter::new(limits.rate, limits.burst, Instant::now()));
    let mut request = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        let peer = match socket.recv_from(&mut request) {
            Ok((_, peer)) => peer,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // An ICMP error from an earlier reply, say: it concerns that peer only.
                log::debug!("UDP receive: {e}");
                continue;
            }
        };
        if !may_answer(peer, own) {
            stats.udp_ignored.fetch_add(1, Ordering::Relaxed);
            fold::note(
                Fold::DatagramIgnored,
                format_args!(
                    "{peer}: not answered: its port is below 1024 or ours (an \"answer anything\" service, or ourselves)"
                ),
            );
            continue;
        }
        let verdict = limiter
            .as_mut()
            .map_or(Verdict::Reply, |l| l.allow(peer.ip(), Instant::now()));
        match verdict {
            Verdict::Reply => {}
            Verdict::OverRate => {
                stats.udp_limited.fetch_add(1, Ordering::Relaxed);
                fold::note(
                    Fold::DatagramLimited,
                    format_args!("{peer}: not answered: its network is over --udp-rate"),
                );
                continue;
            }
            Verdict::OverBudget => {
                stats.udp_over_budget.fetch_add(1, Ordering::Relaxed);
                fold::note(
                    Fold::DatagramOverBudget,
                    format_args!(
                        "{peer}: not answered: all sources together are over the reply budget \
                         (a flood from many networks?); networks seen asking a moment ago come first"
                    ),
                );
                continue;
            }
        }
        let Some(frame) = live.frame(Protocol::Text, Some(QOTD_MAX_DATAGRAM)) else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            fold::note(
                Fold::NoFortuneFits,
                format_args!("{peer}: no fortune fits one {QOTD_MAX_DATAGRAM}-byte datagram"),
            );
            continue;
        };
        match socket.send_to(&frame, peer) {
            Ok(_) => stats.served.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                fold::note(Fold::ReplyFailed, format_args!("{peer}: UDP reply failed: {e}"));
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// False for a source we must not answer: a port below 1024 (echo, daytime,
/// chargen, QOTD and the like answer whatever arrives: a spoofed request
/// would start an endless exchange) or our own port (ourselves, or another
/// instance of this service, anywhere: the same loop). A genuine client
/// sends from an unprivileged ephemeral port; one that happens to use our
/// port number only goes unanswered.
fn may_answer(peer: SocketAddr, own: SocketAddr) -> bool {
    peer.port() >= 1024 && peer.port() != own.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: a UDP thread that dies is replaced; one that is wedged is
    /// reported (the watchdog then starves), until it goes round again.
    #[test]
    fn a_dead_udp_thread_is_replaced_and_a_wedged_one_is_seen() {
        use crate::health::Sabotage;
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let shared = Shared {
            live: Arc::new(Live::new(crate::fortunes::Store::builtin(), false)),
            stats: Arc::new(Stats::default()),
            limits: Limits { rate: 0, burst: 0 },
            stop: Arc::new(AtomicBool::new(false)),
        };
        let mut threads = Threads::start(vec![(socket, addr.to_string())], shared).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let ask = || {
            client.send_to(b"?", addr).unwrap();
            client.recv(&mut [0u8; 600]).unwrap()
        };
        assert!(ask() > 0);
        let sabotage = |what| *threads.served[0].heartbeat.sabotage.lock().unwrap() = what;
        sabotage(Some(Sabotage::Kill));
        let first = threads.served[0].thread.as_ref().unwrap().thread().id();
        let end = Instant::now() + Duration::from_secs(20);
        while threads.served[0].thread.as_ref().unwrap().thread().id() == first {
            assert!(Instant::now() < end, "not replaced within 20 s");
            threads.keep_serving().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(ask() > 0);
        let sabotage = |what| *threads.served[0].heartbeat.sabotage.lock().unwrap() = what;
        sabotage(Some(Sabotage::Wedge));
        while threads.stalled(Instant::now()).is_empty() {
            assert!(Instant::now() < end, "not seen wedged within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(threads.stalled(Instant::now()), [addr.to_string()]);
        sabotage(None);
        while !threads.stalled(Instant::now()).is_empty() {
            assert!(Instant::now() < end, "not going again within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        threads.stop();
    }

    #[test]
    fn sources_never_answered() {
        let own: SocketAddr = "0.0.0.0:7017".parse().unwrap();
        let ok = |peer: &str| may_answer(peer.parse().unwrap(), own);
        assert!(ok("192.0.2.1:40000"));
        assert!(ok("[2001:db8::1]:1024"));
        // Ourselves, on any of our addresses, or our twin elsewhere.
        assert!(!ok("127.0.0.1:7017"));
        assert!(!ok("198.51.100.7:7017"));
        assert!(!ok("[::ffff:127.0.0.1]:7017"));
        // echo, discard, daytime, QOTD, chargen, and port 0.
        for port in [0, 7, 9, 13, 17, 19, 1023] {
            assert!(!ok(&format!("192.0.2.1:{port}")), "port {port}");
        }
    }
}
