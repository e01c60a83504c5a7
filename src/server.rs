//! The accept loop's pool of worker threads (`crate::worker`, each
//! serving the clients it accepted itself): starting, replacing and
//! stopping them.
//!
//! One worker serves everyone while no client is slow to read. The pool
//! grows when a worker must wait for a slow reader and every other worker
//! is waiting for one too, up to `--max-connections`; idle extras retire.
//! At the cap nobody accepts, so new clients wait in the kernel's backlog.
//! One network's slow readers keep at most its share of the workers
//! waiting ([`crate::sources::WRITER_SHARE`]); the next is reset, not waited for.
//! A worker that dies, or cannot start, is replaced ([`Server::keep_serving`]).
//!
//! Stopping serves every client whose handshake completed, including those
//! still queued in the backlog, and waits (bounded by `--timeout`) for their
//! peers to close. Sockets systemd passed stay open in systemd, which keeps
//! later clients queued for the next start. Sockets bound here are closed
//! here: first new handshakes are refused entry by a socket filter, then the
//! backlog is drained, then the socket stops listening, so no client that
//! believes it is connected is reset.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use socket2::{SockFilter, SockRef};

use crate::sockets::Listener;
use crate::worker::{self, SPARE_WORKERS, Shared};

pub use crate::worker::Config;

/// When stopping, how long handshakes already under way get to complete
/// (a round trip) before a listener bound here stops listening.
const HANDSHAKE_GRACE: Duration = Duration::from_millis(100);

/// Classic BPF run on each TCP segment reaching a listener (from its TCP
/// header on): keep segments with ACK set (handshakes completing), drop the
/// rest, i.e. new connection attempts (a bare SYN). The client retries its
/// SYN a second later and finds the port closed: refused, not reset.
const REFUSE_NEW_HANDSHAKES: [SockFilter; 4] = [
    SockFilter::new(0x30, 0, 0, 13),       // ldb [13]: the flags byte
    SockFilter::new(0x45, 0, 1, 0x10),     // jset #ACK: next, else skip one
    SockFilter::new(0x06, 0, 0, u32::MAX), // ret: keep the whole segment
    SockFilter::new(0x06, 0, 0, 0),        // ret 0: drop
];

/// Workers in a row that may fail to start before the service gives up
/// (see [`Server::keep_serving`]).
const START_ATTEMPTS: usize = 3;

/// The pool of workers, and what they share.
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    pub fn new(config: Config) -> io::Result<Arc<Server>> {
        Ok(Arc::new(Server {
            shared: Arc::new(worker::shared(config)?),
        }))
    }

    /// Starts the first workers.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        for _ in 0..SPARE_WORKERS {
            worker::spawn(&self.shared)?;
        }
        Ok(())
    }

    /// Stops accepting new clients after serving those already queued in the
    /// backlog, and waits (until `deadline`) for every worker to finish,
    /// their peers' closes included. Returns false if some were still
    /// writing at the deadline.
    pub fn stop(self: &Arc<Self>, deadline: Instant) -> bool {
        let _ = self.shared.stop_by.set(deadline);
        let grace = if self.shared.config.bound_here {
            // A client whose handshake was under way when the doors closed
            // believes it is connected: wait for it, serve it, then close.
            self.close_doors();
            HANDSHAKE_GRACE
        } else {
            Duration::ZERO
        };
        let _ = self.shared.last_accept.set(deadline.min(Instant::now() + grace));
        let _ = self.shared.wake.write(1);
        let mut gone = self.shared.pool.gone.lock().unwrap_or_else(|p| p.into_inner());
        while self.shared.pool.total.load(Ordering::SeqCst) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.shared.pool.blocked.load(Ordering::SeqCst) == 0;
            }
            gone = self
                .shared
                .pool
                .all_gone
                .wait_timeout(gone, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(gone);
        if self.shared.config.bound_here {
            self.stop_listening();
        }
        true
    }

    /// Called by the main loop every tick: puts back the spare worker if it
    /// died (a panic, or no epoll set), so clients never wait in the backlog
    /// with nobody accepting. Err (why) once `START_ATTEMPTS` workers in a
    /// row could not start: the service must exit so systemd restarts it.
    pub fn keep_serving(self: &Arc<Self>) -> Result<(), String> {
        if self.shared.stopping() {
            return Ok(());
        }
        if self.shared.pool.total.load(Ordering::SeqCst) >= SPARE_WORKERS {
            return Ok(());
        }
        let (failed, why) = self.failed_starts();
        if failed >= START_ATTEMPTS {
            return Err(format!("{failed} worker threads in a row could not start: {why}"));
        }
        // One attempt per tick: a failure to start a thread may pass.
        log::warn!("no worker thread is waiting for clients; starting another");
        if let Err(e) = worker::spawn(&self.shared) {
            self.shared.start_failed(&e);
        }
        Ok(())
    }

    /// True if the workers stopped going round: no heartbeat for
    /// [`crate::health::STALL`], and none of them is in a (bounded) write to
    /// a slow reader.
    pub fn stalled(&self, now: Instant) -> bool {
        self.shared.heartbeat.stalled(now) && self.shared.pool.blocked.load(Ordering::SeqCst) == 0
    }

    fn failed_starts(&self) -> (usize, String) {
        self.shared
            .pool
            .failed_starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Lets no new handshake start on TCP listeners; those completing go on.
    fn close_doors(&self) {
        for (listener, _) in &self.shared.config.listeners {
            let Listener::Tcp(tcp) = listener else {
                continue;
            };
            if let Err(e) = SockRef::from(tcp).attach_filter(&REFUSE_NEW_HANDSHAKES) {
                log::warn!("{listener}: cannot hold off new clients while stopping: {e}");
            }
        }
    }

    /// Closes the listening sockets (they are ours alone): from now on
    /// connection attempts are refused.
    fn stop_listening(&self) {
        for (listener, _) in &self.shared.config.listeners {
            if let Err(e) = SockRef::from(listener).shutdown(std::net::Shutdown::Read) {
                log::debug!("{listener}: stop listening: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    use crate::cidr::Trusted;
    use crate::fortunes::Live;
    use crate::sources::Sources;
    use crate::stats::Stats;
    use crate::wire::Protocol;

    /// A server on a loopback port with the built-in fortunes, started.
    fn started() -> (Arc<Server>, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let server = Server::new(Config {
            listeners: vec![(Listener::Tcp(listener), Protocol::Text)],
            live: Arc::new(Live::new(crate::fortunes::Store::builtin(), false)),
            sources: Sources::new(None, 4, Arc::clone(&stats)),
            stats,
            timeout: Duration::from_secs(10),
            max_connections: 4,
            bound_here: true,
            proxy_from: Trusted::default(),
        })
        .unwrap();
        server.start().unwrap();
        (server, addr)
    }

    fn fetch(addr: SocketAddr) -> Vec<u8> {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut text).unwrap();
        text
    }

    /// Waits (a hang fails) until `done`, calling the main loop's check.
    fn until(server: &Arc<Server>, done: impl Fn(&Arc<Server>) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while !done(server) {
            assert!(Instant::now() < end, "waited 20 s");
            server.keep_serving().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Issue 17: a worker that dies (a panic) or cannot make its epoll set
    /// is replaced, so the listeners never go without a worker; one that
    /// stops going round stops the watchdog.
    #[test]
    fn a_dead_worker_is_replaced_and_a_wedged_one_is_seen() {
        use crate::health::Sabotage;
        let (server, addr) = started();
        assert!(!fetch(addr).is_empty());
        // Killed: the next worker comes from its Drop, or from keep_serving.
        *server.shared.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Kill);
        let working = |s: &Arc<Server>| s.shared.pool.total.load(Ordering::SeqCst) == 1;
        until(&server, |s| {
            s.shared.heartbeat.sabotage.lock().unwrap().is_none() && working(s)
        });
        assert!(!fetch(addr).is_empty());
        // Every new worker fails to make its epoll set, twice: replaced.
        server.shared.failing_epolls.store(2, Ordering::SeqCst);
        *server.shared.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Kill);
        until(&server, |s| {
            s.shared.failing_epolls.load(Ordering::SeqCst) == 0 && working(s)
        });
        assert!(!fetch(addr).is_empty());
        assert!(!server.stalled(Instant::now()));
        // Wedged: seen as such once STALL has passed; going again after.
        *server.shared.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Wedge);
        until(&server, |s| s.stalled(Instant::now()));
        *server.shared.heartbeat.sabotage.lock().unwrap() = None;
        until(&server, |s| !s.stalled(Instant::now()));
        assert!(server.stop(Instant::now() + Duration::from_secs(10)));
    }

    /// Workers that cannot start, three in a row: the service must give up
    /// (and exit, for systemd to restart it) rather than look alive.
    #[test]
    fn workers_that_cannot_start_end_the_service() {
        use crate::health::Sabotage;
        let (server, _) = started();
        server.shared.failing_epolls.store(usize::MAX, Ordering::SeqCst);
        *server.shared.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Kill);
        let end = Instant::now() + Duration::from_secs(20);
        let why = loop {
            assert!(Instant::now() < end, "waited 20 s");
            if let Err(why) = server.keep_serving() {
                break why;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(why.contains("3 worker threads in a row could not start"), "{why}");
    }
}
