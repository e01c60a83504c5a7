//! The accept loop: a pool of worker threads, each serving the clients it
//! accepted itself, start to finish, the FortuneThread way. Each worker has
//! its own epoll set holding every listening socket (`EPOLLEXCLUSIVE`: a new
//! client wakes one waiting worker, not all) and its own connections waiting
//! for their peer to close ([`crate::linger`]), so one `epoll_wait` returns
//! both, and no lock is taken on the way of a connection. A connection
//! whose peer closes promptly is not registered at all: the worker looks
//! for its close when it comes around after accepting, or at the latest
//! [`linger::WATCH_AFTER`] later. While a worker waits for a slow reader its
//! parked connections wait too: a peer's close is then noticed late, at
//! worst by `--timeout`.
//!
//! One worker serves everyone while no client is slow to read. The pool
//! grows when a worker must wait for a slow reader and every other worker
//! is waiting for one too, up to `--max-connections`; idle extras retire.
//! At the cap nobody accepts, so new clients wait in the kernel's backlog.
//! One network's slow readers keep at most its share of the workers
//! waiting ([`crate::sources::WRITER_SHARE`]); the next is reset, not waited for.
//!
//! Stopping serves every client whose handshake completed, including those
//! still queued in the backlog, and waits (bounded by `--timeout`) for their
//! peers to close. Sockets systemd passed stay open in systemd, which keeps
//! later clients queued for the next start. Sockets bound here are closed
//! here: first new handshakes are refused entry by a socket filter, then the
//! backlog is drained, then the socket stops listening, so no client that
//! believes it is connected is reset.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use socket2::{SockFilter, SockRef};

use crate::cidr::Trusted;
use crate::connection;
use crate::fold::{self, Fold};
use crate::fortunes::Live;
use crate::health::{BEAT_EVERY, Heartbeat};
use crate::linger::{self, Linger};
use crate::proxied::Waiting;
use crate::sockets::{Listener, Stream};
use crate::sources::{SourceSlot, Sources};
use crate::stats::{Active, Stats};
use crate::wire::Protocol;

/// Workers kept even when idle: one, so that a new client does not wait for
/// a thread to start, and only one, because two taking turns at the same
/// listeners cost each connection half as much CPU again (wake-ups, and the
/// listener and its clients moving between CPUs; bench/server-syscalls.md).
/// Another starts as soon as this one must wait for a slow reader.
const SPARE_WORKERS: usize = 1;
/// An idle worker beyond the spares retires after this long without a client.
const RETIRE_AFTER: Duration = Duration::from_secs(5);
/// Pause after accept ran out of descriptors or kernel memory, before accepting again.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);
/// Clients a worker accepts in a row from one listener before it looks at
/// its other events (peers closing, the other listeners).
const ACCEPT_BATCH: usize = 64;
/// Events one `epoll_wait` returns at most.
const EVENTS: usize = 64;
/// epoll key of the stop eventfd; listeners use their index, connections
/// waiting for their PROXY header [`crate::proxied::FIRST_KEY`] and up,
/// parked connections [`linger::FIRST_KEY`] and up.
const WAKE: u64 = linger::FIRST_KEY - 1;
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

/// What the accept loop is given.
pub struct Config {
    pub listeners: Vec<(Listener, Protocol)>,
    pub live: Arc<Live>,
    pub stats: Arc<Stats>,
    /// `--max-per-source`: what each source holds.
    pub sources: Sources,
    /// `--timeout`: bounds the write of a frame and the wait for the peer's close.
    pub timeout: Duration,
    /// `--max-connections`: worker threads at most, hence clients being written to at once.
    pub max_connections: usize,
    /// The listeners are our own `--listen` sockets, closed by [`Server::stop`].
    pub bound_here: bool,
    /// `--proxy-from`: peers whose connections begin with a PROXY header.
    pub proxy_from: Trusted,
}

/// What a parked connection carries until it is closed: it is counted
/// open, and holds its source's slot.
type Riders<'a> = (Active<'a>, SourceSlot<'a>);

/// What the workers share.
pub struct Server {
    config: Config,
    /// Readable once stopping; in every worker's epoll set.
    wake: EventFd,
    pool: Pool,
    /// The stop deadline, once stopping began: it bounds the last writes and waits.
    stop_by: OnceLock<Instant>,
    /// Once stopping: when the backlogs are drained for the last time.
    last_accept: OnceLock<Instant>,
    /// Set while accept fails for lack of descriptors or memory, so it is logged once.
    out_of_resources: AtomicBool,
    /// Beaten by every worker as it goes round (see [`Server::stalled`]).
    heartbeat: Heartbeat,
    /// Test hook: this many of the next workers fail to make their epoll set.
    #[cfg(test)]
    failing_epolls: AtomicUsize,
}

/// The worker count, changed only through [`Worker`] and [`Blocked`].
struct Pool {
    max: usize,
    total: AtomicUsize,
    /// Workers waiting for a slow reader.
    blocked: AtomicUsize,
    /// For [`Server::stop`] to wait on `all_gone`.
    gone: Mutex<()>,
    all_gone: Condvar,
    /// Workers in a row that could not start (no thread, no epoll set),
    /// and why the last one could not.
    failed_starts: Mutex<(usize, String)>,
}

/// Workers in a row that may fail to start before the service gives up
/// (see [`Server::keep_serving`]).
const START_ATTEMPTS: usize = 3;

impl Server {
    pub fn new(config: Config) -> io::Result<Arc<Server>> {
        for (listener, _) in &config.listeners {
            // Non-blocking: a woken worker may find the client already taken.
            listener.set_nonblocking(true)?;
        }
        Ok(Arc::new(Server {
            wake: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            pool: Pool {
                max: config.max_connections.max(1),
                total: AtomicUsize::new(0),
                blocked: AtomicUsize::new(0),
                gone: Mutex::new(()),
                all_gone: Condvar::new(),
                failed_starts: Mutex::new((0, String::new())),
            },
            config,
            stop_by: OnceLock::new(),
            last_accept: OnceLock::new(),
            out_of_resources: AtomicBool::new(false),
            heartbeat: Heartbeat::default(),
            #[cfg(test)]
            failing_epolls: AtomicUsize::new(0),
        }))
    }

    /// Starts the first workers.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        for _ in 0..SPARE_WORKERS {
            self.spawn_worker()?;
        }
        Ok(())
    }

    /// Stops accepting new clients after serving those already queued in the
    /// backlog, and waits (until `deadline`) for every worker to finish,
    /// their peers' closes included. Returns false if some were still
    /// writing at the deadline.
    pub fn stop(self: &Arc<Self>, deadline: Instant) -> bool {
        let _ = self.stop_by.set(deadline);
        let grace = if self.config.bound_here {
            // A client whose handshake was under way when the doors closed
            // believes it is connected: wait for it, serve it, then close.
            self.close_doors();
            HANDSHAKE_GRACE
        } else {
            Duration::ZERO
        };
        let _ = self.last_accept.set(deadline.min(Instant::now() + grace));
        let _ = self.wake.write(1);
        let mut gone = self.pool.gone.lock().unwrap_or_else(|p| p.into_inner());
        while self.pool.total.load(Ordering::SeqCst) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.pool.blocked.load(Ordering::SeqCst) == 0;
            }
            gone = self
                .pool
                .all_gone
                .wait_timeout(gone, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(gone);
        if self.config.bound_here {
            self.stop_listening();
        }
        true
    }

    fn stopping(&self) -> bool {
        self.stop_by.get().is_some()
    }

    /// Called by the main loop every tick: puts back the spare worker if it
    /// died (a panic, or no epoll set), so clients never wait in the backlog
    /// with nobody accepting. Err (why) once [`START_ATTEMPTS`] workers in a
    /// row could not start: the service must exit so systemd restarts it.
    pub fn keep_serving(self: &Arc<Self>) -> Result<(), String> {
        if self.stopping() {
            return Ok(());
        }
        if self.pool.total.load(Ordering::SeqCst) >= SPARE_WORKERS {
            return Ok(());
        }
        let (failed, why) = self.failed_starts();
        if failed >= START_ATTEMPTS {
            return Err(format!("{failed} worker threads in a row could not start: {why}"));
        }
        // One attempt per tick: a failure to start a thread may pass.
        log::warn!("no worker thread is waiting for clients; starting another");
        if let Err(e) = self.spawn_worker() {
            self.start_failed(&e);
        }
        Ok(())
    }

    /// True if the workers stopped going round: no heartbeat for
    /// [`crate::health::STALL`], and none of them is in a (bounded) write to
    /// a slow reader.
    pub fn stalled(&self, now: Instant) -> bool {
        self.heartbeat.stalled(now) && self.pool.blocked.load(Ordering::SeqCst) == 0
    }

    fn failed_starts(&self) -> (usize, String) {
        self.pool
            .failed_starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn start_failed(&self, e: &io::Error) {
        let mut failed = self.pool.failed_starts.lock().unwrap_or_else(|p| p.into_inner());
        *failed = (failed.0 + 1, e.to_string());
    }

    fn started(&self) {
        *self.pool.failed_starts.lock().unwrap_or_else(|p| p.into_inner()) = (0, String::new());
    }

    /// Lets no new handshake start on TCP listeners; those completing go on.
    fn close_doors(&self) {
        for (listener, _) in &self.config.listeners {
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
        for (listener, _) in &self.config.listeners {
            if let Err(e) = SockRef::from(listener).shutdown(std::net::Shutdown::Read) {
                log::debug!("{listener}: stop listening: {e}");
            }
        }
    }

    /// Starts a worker; Ok(false) if the pool is at `--max-connections`.
    fn spawn_worker(self: &Arc<Self>) -> io::Result<bool> {
        let Some(worker) = Worker::enlist(self) else {
            return Ok(false);
        };
        // If the thread cannot start, the closure, hence the worker, is dropped: counted out.
        std::thread::Builder::new()
            .name("worker".into())
            .stack_size(crate::limits::THREAD_STACK)
            .spawn(move || worker.run())
            .map(|_| true)
            .inspect_err(|e| log::warn!("cannot start another worker thread: {e}"))
    }

    /// The epoll set of a new worker: the stop eventfd (level-triggered, so
    /// every worker sees it) and every listener.
    fn worker_epoll(&self) -> io::Result<Epoll> {
        #[cfg(test)]
        if self
            .failing_epolls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(io::Error::from_raw_os_error(nix::libc::EMFILE));
        }
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&self.wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        for (i, (listener, _)) in self.config.listeners.iter().enumerate() {
            let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
            epoll.add(listener, EpollEvent::new(interest, i as u64))?;
        }
        Ok(epoll)
    }

    /// Accepts and serves up to a batch of clients from one listener.
    fn accept_some<'a>(
        self: &'a Arc<Self>,
        index: usize,
        linger: &mut Linger<Riders<'a>>,
        waiting: &mut Waiting<Protocol>,
    ) -> Backlog {
        let (listener, protocol) = &self.config.listeners[index];
        self.heartbeat.beat();
        for _ in 0..ACCEPT_BATCH {
            let e = match listener.accept() {
                Ok((stream, peer)) => {
                    if self.out_of_resources.load(Ordering::Relaxed)
                        && self.out_of_resources.swap(false, Ordering::Relaxed)
                    {
                        log::warn!("descriptors available again; accepting clients");
                    }
                    match peer.filter(|_| self.config.proxy_from.trusts(peer)) {
                        // A balancer's: served as the client its header names.
                        Some(balancer) => {
                            if let Some(a) = waiting.admit(stream, balancer, *protocol) {
                                self.serve(a.stream, a.source, a.tag, linger);
                            }
                        }
                        None => self.serve(stream, peer, *protocol, linger),
                    }
                    continue;
                }
                Err(e) => e,
            };
            match AcceptError::of(&e) {
                AcceptError::Empty => return Backlog::Empty,
                // The client left between its handshake and our accept, or a
                // network error of its own: nothing to do for the others.
                AcceptError::ClientGone => {
                    fold::note(Fold::AcceptFailed, format_args!("accept on {listener}: {e}"))
                }
                AcceptError::OutOfResources => {
                    if !self.out_of_resources.swap(true, Ordering::Relaxed) {
                        log::warn!(message_id = crate::logging::id::OUT_OF_FDS; "cannot accept on {listener}: {e}; pausing until descriptors free up");
                    }
                    std::thread::sleep(RESOURCE_BACKOFF);
                    return Backlog::Paused;
                }
                AcceptError::Listener => {
                    log::debug!("accept on {listener}: {e}");
                    return Backlog::Empty;
                }
            }
        }
        Backlog::More
    }

    /// Serves what is queued on every listener, until the queues are empty
    /// (true) or the stop deadline, or descriptors or memory run out (false).
    fn drain<'a>(
        self: &'a Arc<Self>,
        linger: &mut Linger<Riders<'a>>,
        waiting: &mut Waiting<Protocol>,
    ) -> bool {
        for index in 0..self.config.listeners.len() {
            loop {
                match self.accept_some(index, linger, waiting) {
                    Backlog::Empty => break,
                    Backlog::More if self.stop_by.get().is_none_or(|&d| Instant::now() < d) => {}
                    Backlog::More | Backlog::Paused => return false,
                }
            }
        }
        true
    }

    /// This worker must wait for a slow reader: starts another if every
    /// worker now waits for one. Not at every accept: under load, busy
    /// workers are mostly just descheduled for a moment, and growing the pool
    /// for them only adds threads (and memory) competing for the same CPUs.
    fn block(self: &Arc<Self>) -> Blocked<'_> {
        let blocked = self.pool.blocked.fetch_add(1, Ordering::SeqCst) + 1;
        if blocked >= self.pool.total.load(Ordering::SeqCst)
            && !self.stopping()
            && matches!(self.spawn_worker(), Ok(false))
        {
            self.config.stats.reach_cap(self.pool.max);
        }
        Blocked(self)
    }

    /// `--timeout`, or less once stopping: the stop deadline bounds every write.
    fn write_timeout(&self) -> Duration {
        let timeout = self.config.timeout;
        self.stop_by.get().map_or(timeout, |&deadline| {
            deadline.saturating_duration_since(Instant::now()).min(timeout)
        })
    }

    /// Sends the frame and shuts down our side. A frame almost always fits
    /// the socket buffer: one write. Only for the rest does this worker wait
    /// (blocking, bounded by the timeout), and the pool may grow meanwhile;
    /// unless the client's network already keeps its share of the writers
    /// waiting: then the connection is reset (its fortune cut short; the
    /// reset frees what its socket buffer holds at once) and the worker
    /// goes on with the next client.
    fn send(self: &Arc<Self>, stream: &mut Stream, frame: &[u8], slot: &SourceSlot) -> io::Result<Delivery> {
        let sent = send_at_once(stream, frame)?;
        if sent == frame.len() {
            return stream.shutdown_write().map(|()| Delivery::Whole);
        }
        let Some(_writing) = slot.writer() else {
            SockRef::from(&*stream).set_linger(Some(Duration::ZERO))?;
            return Ok(Delivery::OverShare);
        };
        let _blocked = self.block();
        stream.set_nonblocking(false)?;
        connection::send(stream, &frame[sent..], self.write_timeout())?;
        stream.set_nonblocking(true).map(|()| Delivery::Whole)
    }

    /// Serves `peer`: the connection's own, or the client a balancer's
    /// header names (none: not counted in any source, e.g. a health check).
    fn serve<'a>(
        self: &'a Arc<Self>,
        stream: Stream,
        peer: Option<SocketAddr>,
        protocol: Protocol,
        linger: &mut Linger<Riders<'a>>,
    ) {
        // Over its source's share: admit counted and logged it; returning closes it.
        let Some(slot) = self.config.sources.admit(peer) else {
            return;
        };
        let active = self.config.stats.open();
        // Declared after the guards, so closed before they are given back.
        let mut stream = stream;
        let stats = &self.config.stats;
        match self.config.live.frame(protocol, None) {
            None => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                // Debug: the store warned once why (a line per connection would flood).
                log::debug!(
                    "{}: no fortune fits the {protocol} protocol; closing",
                    who(peer, &stream)
                );
            }
            Some(frame) => match self.send(&mut stream, &frame, &slot) {
                Ok(Delivery::Whole) => {
                    log::debug!(peer = who(peer, &stream); "{}: served", who(peer, &stream));
                    stats.served.fetch_add(1, Ordering::Relaxed);
                    linger.park(stream, (active, slot));
                }
                Ok(Delivery::OverShare) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    let share = self.config.sources.writer_share().unwrap_or_default();
                    fold::note(
                        Fold::OverWriterShare,
                        format_args!(
                            "{}: a slow reader, and its network already has {share} others being written \
                             (1/{} of --max-connections); closing",
                            who(peer, &stream),
                            crate::sources::WRITER_SHARE
                        ),
                    );
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    fold::note(
                        Fold::NotDelivered,
                        format_args!("{}: fortune not delivered: {e}", who(peer, &stream)),
                    );
                }
            },
        }
    }
}

/// One worker thread, counted in the pool from before its thread starts
/// until it ends (returning, retiring or unwinding); a waiting
/// [`Server::stop`] is told each time one goes.
struct Worker {
    server: Arc<Server>,
    /// Counted out already, by [`Worker::retire`].
    retired: bool,
}

impl Worker {
    /// None at `--max-connections`.
    fn enlist(server: &Arc<Server>) -> Option<Worker> {
        let pool = &server.pool;
        pool.total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < pool.max).then_some(n + 1)
            })
            .ok()?;
        Some(Worker {
            server: Arc::clone(server),
            retired: false,
        })
    }

    /// Counts this worker out if it is spare: more than the spares are free
    /// (not waiting for a slow reader) without it.
    fn retire(&mut self) -> bool {
        let pool = &self.server.pool;
        self.retired = pool
            .total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > SPARE_WORKERS + pool.blocked.load(Ordering::SeqCst)).then(|| n - 1)
            })
            .is_ok();
        self.retired
    }

    fn run(mut self) {
        let server = Arc::clone(&self.server);
        let epoll = match server.worker_epoll() {
            Ok(epoll) => epoll,
            Err(e) => {
                server.start_failed(&e);
                return log::error!("a worker cannot wait for clients: {e}");
            }
        };
        server.started();
        let mut linger = Linger::new(server.config.timeout);
        let mut waiting = Waiting::new(server.config.timeout, Arc::clone(&server.config.stats));
        let mut events = [EpollEvent::empty(); EVENTS];
        let mut phase = Phase::Serving {
            retire_at: Instant::now() + RETIRE_AFTER,
        };
        loop {
            server.heartbeat.beat();
            let now = Instant::now();
            // Headers completed meanwhile are served before the look at the lingering.
            let next_header = waiting.tend(&epoll, now, |a| {
                server.serve(a.stream, a.source, a.tag, &mut linger)
            });
            let next_close = linger.tend(&epoll, now).into_iter().chain(next_header).min();
            let Some(wake_at) = self.next_wake(
                &server,
                &mut phase,
                &epoll,
                (&mut linger, &mut waiting),
                next_close,
                now,
            ) else {
                return;
            };
            // Never longer than a heartbeat: the watchdog must see this worker alive.
            let wake_at = wake_at.min(now + BEAT_EVERY);
            let n = match epoll.wait(&mut events, timeout_until(Some(wake_at), now)) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("waiting for clients failed: {e}; retrying");
                    std::thread::sleep(RESOURCE_BACKOFF);
                    continue;
                }
            };
            // Peers leaving first: that frees descriptors for the clients after.
            for event in &events[..n] {
                if event.data() >= linger::FIRST_KEY {
                    linger.ready(event.data());
                }
            }
            for event in &events[..n] {
                match event.data() {
                    WAKE => {
                        phase = Phase::Draining;
                        let _ = epoll.delete(&server.wake);
                    }
                    key if Waiting::<Protocol>::owns(key) => {
                        if let Some(a) = waiting.ready(&epoll, key) {
                            server.serve(a.stream, a.source, a.tag, &mut linger);
                        }
                    }
                    key if key < WAKE => {
                        server.accept_some(key as usize, &mut linger, &mut waiting);
                        if let Phase::Serving { retire_at } = &mut phase {
                            *retire_at = Instant::now() + RETIRE_AFTER;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// What this worker does next in its `phase` (which it may move on):
    /// the time to wake up at the latest, or None when it is done (never
    /// None for "no deadline": that is a heartbeat away).
    fn next_wake<'a>(
        &mut self,
        server: &'a Arc<Server>,
        phase: &mut Phase,
        epoll: &Epoll,
        (linger, waiting): (&mut Linger<Riders<'a>>, &mut Waiting<Protocol>),
        next_close: Option<Instant>,
        now: Instant,
    ) -> Option<Instant> {
        let idle = |linger: &Linger<_>, waiting: &Waiting<_>| linger.is_empty() && waiting.is_empty();
        match *phase {
            Phase::Serving { retire_at } if idle(linger, waiting) => {
                if now < retire_at {
                    return Some(retire_at);
                }
                // A wake-up for a new client (EPOLLEXCLUSIVE wakes one
                // waiter only) may have come to this worker as its wait
                // timed out: take what is queued before going.
                if server.drain(linger, waiting) && idle(linger, waiting) && self.retire() {
                    return None;
                }
                let retire_at = now + RETIRE_AFTER;
                *phase = Phase::Serving { retire_at };
                Some(retire_at)
            }
            Phase::Serving { .. } => next_close.or(Some(now + BEAT_EVERY)),
            Phase::Draining | Phase::Closing if server.stop_by.get().is_some_and(|&d| now >= d) => {
                None // dropping what still lingers
            }
            Phase::Draining => {
                if server.last_accept.get().is_some_and(|&t| now >= t) && server.drain(linger, waiting) {
                    *phase = Phase::Closing;
                    for (listener, _) in &server.config.listeners {
                        let _ = epoll.delete(listener);
                    }
                    return self.next_wake(server, phase, epoll, (linger, waiting), next_close, now);
                }
                let until = server
                    .last_accept
                    .get()
                    .copied()
                    .into_iter()
                    .chain(next_close)
                    .min();
                until.or(Some(now + BEAT_EVERY))
            }
            Phase::Closing if idle(linger, waiting) => None,
            Phase::Closing => {
                let until = server.stop_by.get().copied().into_iter().chain(next_close).min();
                until.or(Some(now + BEAT_EVERY))
            }
        }
    }
}

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Accepting clients; a spare one retires once idle at `retire_at`.
    Serving { retire_at: Instant },
    /// Stopping: serves what is queued in the backlogs until the last
    /// accept, and waits for its lingering peers.
    Draining,
    /// Stopping, the listeners out of its epoll set: only its lingering
    /// peers are left to wait for, until the stop deadline.
    Closing,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let pool = &self.server.pool;
        if !self.retired {
            pool.total.fetch_sub(1, Ordering::SeqCst);
        }
        // A panic ends this thread, not the service: another takes its place.
        if std::thread::panicking() && !self.server.stopping() {
            log::error!("a worker thread failed; starting another");
            let _ = self.server.spawn_worker();
        }
        // Under the lock, so that a stop() between its check and its wait still hears it.
        let _gone = pool.gone.lock().unwrap_or_else(|p| p.into_inner());
        pool.all_gone.notify_all();
    }
}

/// A worker waiting for a slow reader, counted as such while this lives.
struct Blocked<'a>(&'a Server);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.pool.blocked.fetch_sub(1, Ordering::SeqCst);
        self.0.config.stats.at_cap.store(false, Ordering::Relaxed);
    }
}

/// How [`Server::send`] ended, short of an error.
enum Delivery {
    /// The whole frame was written, and our side shut down.
    Whole,
    /// A slow reader over its source's writer share: reset, not waited for.
    OverShare,
}

/// What is left in a listener's backlog after [`Server::accept_some`].
enum Backlog {
    Empty,
    More,
    /// Out of descriptors or kernel memory (after a pause): the rest waits.
    Paused,
}

/// Why accept failed, as far as the accept loop cares.
#[derive(Debug, PartialEq, Eq)]
enum AcceptError {
    /// Nothing (more) queued.
    Empty,
    /// This one client is gone, or failed on its own: take the next.
    ClientGone,
    /// Out of descriptors (`EMFILE`, `ENFILE`) or kernel memory (`ENOBUFS`,
    /// `ENOMEM`): back off, the client stays queued.
    OutOfResources,
    /// Something wrong with the listening socket itself.
    Listener,
}

impl AcceptError {
    fn of(e: &io::Error) -> AcceptError {
        let Some(errno) = e.raw_os_error().map(Errno::from_raw) else {
            return AcceptError::Listener;
        };
        match errno {
            Errno::EAGAIN => AcceptError::Empty,
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM => AcceptError::OutOfResources,
            // accept(2): Linux passes pending network errors of the new
            // socket on as accept errors; EPERM is a firewall rule's verdict.
            Errno::EINTR
            | Errno::ECONNABORTED
            | Errno::ECONNRESET
            | Errno::EPROTO
            | Errno::EPERM
            | Errno::ENETDOWN
            | Errno::ENOPROTOOPT
            | Errno::EHOSTDOWN
            | Errno::ENONET
            | Errno::EHOSTUNREACH
            | Errno::EOPNOTSUPP
            | Errno::ENETUNREACH
            | Errno::ETIMEDOUT => AcceptError::ClientGone,
            _ => AcceptError::Listener,
        }
    }
}

/// A client for log lines: the address served (for a balancer's connection,
/// the client its header names), else what the socket says.
fn who(peer: Option<SocketAddr>, stream: &Stream) -> String {
    peer.map_or_else(|| stream.peer(), |p| p.to_string())
}

/// The epoll timeout until `at` (none: forever), rounded up to the next
/// millisecond so that the deadline has passed when the wait ends.
fn timeout_until(at: Option<Instant>, now: Instant) -> EpollTimeout {
    at.map_or(EpollTimeout::NONE, |at| {
        let micros = at.saturating_duration_since(now).as_micros();
        EpollTimeout::try_from(micros.div_ceil(1000)).unwrap_or(EpollTimeout::MAX)
    })
}

/// Writes without waiting, as much as the socket takes at once. Corked
/// (`MSG_MORE`): the shutdown that follows adds its FIN to the last segment,
/// so the peer gets one segment (and one wake-up) instead of two.
fn send_at_once(stream: &Stream, frame: &[u8]) -> io::Result<usize> {
    use nix::libc::{MSG_DONTWAIT, MSG_MORE, MSG_NOSIGNAL};
    match SockRef::from(stream).send_with_flags(frame, MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE) {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(0),
        sent => sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(errno: Errno) -> AcceptError {
        AcceptError::of(&io::Error::from_raw_os_error(errno as i32))
    }

    /// Issue 13: a client that left before its accept (ECONNABORTED) must
    /// not end the drain of the backlog on stop; only an empty queue does.
    #[test]
    fn accept_errors_of_one_client_do_not_end_the_backlog() {
        for errno in [
            Errno::ECONNABORTED,
            Errno::EPROTO,
            Errno::EPERM,
            Errno::EINTR,
            Errno::ENETUNREACH,
        ] {
            assert_eq!(kind(errno), AcceptError::ClientGone, "{errno}");
        }
        assert_eq!(kind(Errno::EAGAIN), AcceptError::Empty);
        for errno in [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM] {
            assert_eq!(kind(errno), AcceptError::OutOfResources, "{errno}");
        }
        for errno in [Errno::EBADF, Errno::EINVAL, Errno::ENOTSOCK] {
            assert_eq!(kind(errno), AcceptError::Listener, "{errno}");
        }
    }

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
        *server.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Kill);
        let working = |s: &Arc<Server>| s.pool.total.load(Ordering::SeqCst) == 1;
        until(&server, |s| {
            s.heartbeat.sabotage.lock().unwrap().is_none() && working(s)
        });
        assert!(!fetch(addr).is_empty());
        // Every new worker fails to make its epoll set, twice: replaced.
        server.failing_epolls.store(2, Ordering::SeqCst);
        *server.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Kill);
        until(&server, |s| {
            s.failing_epolls.load(Ordering::SeqCst) == 0 && working(s)
        });
        assert!(!fetch(addr).is_empty());
        assert!(!server.stalled(Instant::now()));
        // Wedged: seen as such once STALL has passed; going again after.
        *server.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Wedge);
        until(&server, |s| s.stalled(Instant::now()));
        *server.heartbeat.sabotage.lock().unwrap() = None;
        until(&server, |s| !s.stalled(Instant::now()));
        assert!(server.stop(Instant::now() + Duration::from_secs(10)));
    }

    /// Workers that cannot start, three in a row: the service must give up
    /// (and exit, for systemd to restart it) rather than look alive.
    #[test]
    fn workers_that_cannot_start_end_the_service() {
        use crate::health::Sabotage;
        let (server, _) = started();
        server.failing_epolls.store(usize::MAX, Ordering::SeqCst);
        *server.heartbeat.sabotage.lock().unwrap() = Some(Sabotage::Kill);
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

    #[test]
    fn epoll_timeouts_round_up() {
        let now = Instant::now();
        assert_eq!(timeout_until(None, now), EpollTimeout::NONE);
        assert_eq!(timeout_until(Some(now), now), EpollTimeout::ZERO);
        let ms = |n: u16| EpollTimeout::from(n);
        assert_eq!(timeout_until(Some(now + Duration::from_micros(1)), now), ms(1));
        assert_eq!(timeout_until(Some(now + Duration::from_micros(2001)), now), ms(3));
        assert_eq!(
            timeout_until(now.checked_sub(Duration::from_secs(1)), now),
            EpollTimeout::ZERO
        );
    }
}
