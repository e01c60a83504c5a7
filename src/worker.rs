//! One worker thread of the pool ([`crate::server`]): it serves the
//! clients it accepted itself, start to finish, the FortuneThread way. Each
//! worker has its own epoll set holding every listening socket
//! (`EPOLLEXCLUSIVE`: a new client wakes one waiting worker, not all) and its
//! own connections waiting for their peer to close ([`crate::linger`]), so
//! one `epoll_wait` returns both, and no lock is taken on the way of a
//! connection. A connection whose peer closes promptly is not registered at
//! all: the worker looks for its close when it comes around after
//! accepting, or at the latest [`linger::WATCH_AFTER`] later. While a worker
//! waits for a slow reader its parked connections wait too: a peer's close
//! is then noticed late, at worst by `--timeout`.
//!
//! Also what the workers share ([`Shared`]: the [`Config`], the pool's
//! counts, the stop deadlines), and starting one more ([`spawn`]): a worker
//! that must wait for a slow reader grows the pool, one that panics is
//! replaced. A worker's [`Phase`]: serving, then once stopping draining the
//! backlogs, then closing (waiting only for its lingering peers). These
//! live here, not in the pool's module, so that uses run one way (`server`
//! uses `worker`, which re-exports nothing back); `server` re-exports
//! [`Config`].

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use socket2::SockRef;

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
pub(crate) const SPARE_WORKERS: usize = 1;
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
    /// The listeners are our own `--listen` sockets, closed by [`crate::server::Server::stop`].
    pub bound_here: bool,
    /// `--proxy-from`: peers whose connections begin with a PROXY header.
    pub proxy_from: Trusted,
}

/// What a parked connection carries until it is closed: it is counted
/// open, and holds its source's slot.
type Riders<'a> = (Active<'a>, SourceSlot<'a>);

/// What the workers share, and the pool's handle ([`crate::server::Server`]) holds.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Readable once stopping; in every worker's epoll set.
    pub(crate) wake: EventFd,
    pub(crate) pool: Pool,
    /// The stop deadline, once stopping began: it bounds the last writes and waits.
    pub(crate) stop_by: OnceLock<Instant>,
    /// Once stopping: when the backlogs are drained for the last time.
    pub(crate) last_accept: OnceLock<Instant>,
    /// Set while accept fails for lack of descriptors or memory, so it is logged once.
    out_of_resources: AtomicBool,
    /// Beaten by every worker as it goes round (see [`crate::server::Server::stalled`]).
    pub(crate) heartbeat: Heartbeat,
    /// Test hook: this many of the next workers fail to make their epoll set.
    #[cfg(test)]
    pub(crate) failing_epolls: AtomicUsize,
}

/// The worker count, changed only through [`Worker`] and [`Blocked`].
pub(crate) struct Pool {
    max: usize,
    pub(crate) total: AtomicUsize,
    /// Workers waiting for a slow reader.
    pub(crate) blocked: AtomicUsize,
    /// For [`crate::server::Server::stop`] to wait on `all_gone`.
    pub(crate) gone: Mutex<()>,
    pub(crate) all_gone: Condvar,
    /// Workers in a row that could not start (no thread, no epoll set),
    /// and why the last one could not.
    pub(crate) failed_starts: Mutex<(usize, String)>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> io::Result<Shared> {
        for (listener, _) in &config.listeners {
            // Non-blocking: a woken worker may find the client already taken.
            listener.set_nonblocking(true)?;
        }
        Ok(Shared {
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
        })
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop_by.get().is_some()
    }

    pub(crate) fn start_failed(&self, e: &io::Error) {
        let mut failed = self.pool.failed_starts.lock().unwrap_or_else(|p| p.into_inner());
        *failed = (failed.0 + 1, e.to_string());
    }

    fn started(&self) {
        *self.pool.failed_starts.lock().unwrap_or_else(|p| p.into_inner()) = (0, String::new());
    }

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
            && matches!(spawn(self), Ok(false))
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

/// Starts a worker; Ok(false) if the pool is at `--max-connections`.
pub(crate) fn spawn(shared: &Arc<Shared>) -> io::Result<bool> {
    let Some(worker) = Worker::enlist(shared) else {
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

/// One worker thread, counted in the pool from before its thread starts
/// until it ends (returning, retiring or unwinding); a waiting
/// [`crate::server::Server::stop`] is told each time one goes.
struct Worker {
    shared: Arc<Shared>,
    /// Counted out already, by [`Worker::retire`].
    retired: bool,
}

impl Worker {
    /// None at `--max-connections`.
    fn enlist(shared: &Arc<Shared>) -> Option<Worker> {
        let pool = &shared.pool;
        pool.total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < pool.max).then_some(n + 1)
            })
            .ok()?;
        Some(Worker {
            shared: Arc::clone(shared),
            retired: false,
        })
    }

    /// Counts this worker out if it is spare: more than the spares are free
    /// (not waiting for a slow reader) without it.
    fn retire(&mut self) -> bool {
        let pool = &self.shared.pool;
        self.retired = pool
            .total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > SPARE_WORKERS + pool.blocked.load(Ordering::SeqCst)).then(|| n - 1)
            })
            .is_ok();
        self.retired
    }

    fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let epoll = match shared.worker_epoll() {
            Ok(epoll) => epoll,
            Err(e) => {
                shared.start_failed(&e);
                return log::error!("a worker cannot wait for clients: {e}");
            }
        };
        shared.started();
        let mut linger = Linger::new(shared.config.timeout);
        let mut waiting = Waiting::new(shared.config.timeout, Arc::clone(&shared.config.stats));
        let mut events = [EpollEvent::empty(); EVENTS];
        let mut phase = Phase::Serving {
            retire_at: Instant::now() + RETIRE_AFTER,
        };
        loop {
            shared.heartbeat.beat();
            let now = Instant::now();
            // Headers completed meanwhile are served before the look at the lingering.
            let next_header = waiting.tend(&epoll, now, |a| {
                shared.serve(a.stream, a.source, a.tag, &mut linger)
            });
            let next_close = linger.tend(&epoll, now).into_iter().chain(next_header).min();
            let Some(wake_at) = self.next_wake(
                &shared,
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
                        let _ = epoll.delete(&shared.wake);
                    }
                    key if Waiting::<Protocol>::owns(key) => {
                        if let Some(a) = waiting.ready(&epoll, key) {
                            shared.serve(a.stream, a.source, a.tag, &mut linger);
                        }
                    }
                    key if key < WAKE => {
                        shared.accept_some(key as usize, &mut linger, &mut waiting);
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
        shared: &'a Arc<Shared>,
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
                if shared.drain(linger, waiting) && idle(linger, waiting) && self.retire() {
                    return None;
                }
                let retire_at = now + RETIRE_AFTER;
                *phase = Phase::Serving { retire_at };
                Some(retire_at)
            }
            Phase::Serving { .. } => next_close.or(Some(now + BEAT_EVERY)),
            Phase::Draining | Phase::Closing if shared.stop_by.get().is_some_and(|&d| now >= d) => {
                None // dropping what still lingers
            }
            Phase::Draining => {
                if shared.last_accept.get().is_some_and(|&t| now >= t) && shared.drain(linger, waiting) {
                    *phase = Phase::Closing;
                    for (listener, _) in &shared.config.listeners {
                        let _ = epoll.delete(listener);
                    }
                    return self.next_wake(shared, phase, epoll, (linger, waiting), next_close, now);
                }
                let until = shared
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
                let until = shared.stop_by.get().copied().into_iter().chain(next_close).min();
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
        let pool = &self.shared.pool;
        if !self.retired {
            pool.total.fetch_sub(1, Ordering::SeqCst);
        }
        // A panic ends this thread, not the service: another takes its place.
        if std::thread::panicking() && !self.shared.stopping() {
            log::error!("a worker thread failed; starting another");
            let _ = spawn(&self.shared);
        }
        // Under the lock, so that a stop() between its check and its wait still hears it.
        let _gone = pool.gone.lock().unwrap_or_else(|p| p.into_inner());
        pool.all_gone.notify_all();
    }
}

/// A worker waiting for a slow reader, counted as such while this lives.
struct Blocked<'a>(&'a Shared);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.pool.blocked.fetch_sub(1, Ordering::SeqCst);
        self.0.config.stats.at_cap.store(false, Ordering::Relaxed);
    }
}

/// How [`Shared::send`] ended, short of an error.
enum Delivery {
    /// The whole frame was written, and our side shut down.
    Whole,
    /// A slow reader over its source's writer share: reset, not waited for.
    OverShare,
}

/// What is left in a listener's backlog after [`Shared::accept_some`].
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
