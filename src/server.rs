//! The accept loop: a pool of worker threads, each accepting from every
//! listening socket (one epoll set) and serving the connection it accepted
//! itself, start to finish, the FortuneThread way. The pool grows when a
//! worker must wait for a slow reader and no other is left waiting for new
//! clients, up to `--max-connections`; idle extras retire. At the cap nobody
//! accepts, so new clients wait in the kernel's backlog.
//!
//! Stopping serves every client whose handshake completed, including those
//! still queued in the backlog. Sockets systemd passed stay open in systemd,
//! which keeps later clients queued for the next start. Sockets bound here
//! are closed here: first new handshakes are refused entry by a socket filter,
//! then the backlog is drained, then the socket stops listening, so no client
//! that believes it is connected is reset.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self, MsgFlags};
use socket2::{SockFilter, SockRef};

use crate::connection;
use crate::fortunes::Live;
use crate::linger::Linger;
use crate::notify::Stats;
use crate::ratelimit::{self, Fold};
use crate::sockets::{Listener, Stream};
use crate::sources::Sources;
use crate::wire::Protocol;

/// Workers kept waiting even when idle, so a new client never waits for a spawn.
const SPARE_WORKERS: usize = 2;
/// An idle worker beyond the spares retires after this long without a client.
const RETIRE_AFTER: Duration = Duration::from_secs(5);
/// Pause after the process ran out of descriptors before accepting again.
const FD_BACKOFF: Duration = Duration::from_millis(100);
/// Clients a worker accepts in a row, while more are queued, before it
/// waits on epoll again (which also lets the other listeners have a turn).
const ACCEPT_BATCH: usize = 16;
/// epoll data of the stop eventfd; listeners use their index.
const WAKE: u64 = u64::MAX;
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

/// What the workers share.
pub struct Server {
    listeners: Vec<(Listener, Protocol)>,
    epoll: Epoll,
    wake: EventFd,
    live: Arc<Live>,
    linger: Arc<Linger>,
    stats: Arc<Stats>,
    sources: Arc<Sources>,
    timeout: Duration,
    max_workers: usize,
    workers: Mutex<Workers>,
    all_gone: Condvar,
    stopping: AtomicBool,
    /// The stop deadline, once stopping began: it bounds the last writes.
    stop_by: OnceLock<Instant>,
    /// The listeners are our own `--listen` sockets, closed by [`Server::stop`].
    bound_here: bool,
    /// Set while accept fails for lack of descriptors, so it is logged once.
    out_of_fds: AtomicBool,
}

#[derive(Default)]
struct Workers {
    total: usize,
    idle: usize,
}

impl Server {
    // Each argument is one shared part or one setting; a struct of them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        listeners: Vec<(Listener, Protocol)>,
        live: Arc<Live>,
        linger: Arc<Linger>,
        stats: Arc<Stats>,
        sources: Arc<Sources>,
        timeout: Duration,
        max_connections: usize,
        bound_here: bool,
    ) -> io::Result<Arc<Server>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        for (i, (listener, _)) in listeners.iter().enumerate() {
            // Non-blocking: several workers wake for one client, all but one find nothing.
            listener.set_nonblocking(true)?;
            epoll.add(listener, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        }
        Ok(Arc::new(Server {
            listeners,
            epoll,
            wake,
            live,
            linger,
            stats,
            sources,
            timeout,
            max_workers: max_connections.max(1),
            workers: Mutex::default(),
            all_gone: Condvar::new(),
            stopping: AtomicBool::new(false),
            stop_by: OnceLock::new(),
            bound_here,
            out_of_fds: AtomicBool::new(false),
        }))
    }

    /// Starts the first workers.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        for _ in 0..SPARE_WORKERS.min(self.max_workers) {
            let mut workers = self.lock();
            workers.total += 1;
            workers.idle += 1;
            drop(workers);
            self.spawn_worker()?;
        }
        Ok(())
    }

    /// Stops accepting new clients after serving those already queued in the
    /// backlog, and waits (until `deadline`) for every worker to finish.
    /// Returns false if some were still busy at the deadline.
    pub fn stop(self: &Arc<Self>, deadline: Instant) -> bool {
        let _ = self.stop_by.set(deadline);
        if self.bound_here {
            self.close_doors();
        }
        let doors_closed = Instant::now();
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        let mut workers = self.lock();
        while workers.total > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            workers = self
                .all_gone
                .wait_timeout(workers, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(workers);
        if self.bound_here {
            // A client whose handshake was under way when the doors closed
            // believes it is connected: wait for it, serve it, then close.
            let grace_end = deadline.min(doors_closed + HANDSHAKE_GRACE);
            std::thread::sleep(grace_end.saturating_duration_since(Instant::now()));
            self.drain_backlogs();
            self.stop_listening();
        }
        true
    }

    /// Lets no new handshake start on TCP listeners; those completing go on.
    fn close_doors(&self) {
        for (listener, _) in &self.listeners {
            if let Listener::Tcp(tcp) = listener
                && let Err(e) = SockRef::from(tcp).attach_filter(&REFUSE_NEW_HANDSHAKES)
            {
                log::warn!("{listener}: cannot hold off new clients while stopping: {e}");
            }
        }
    }

    /// Closes the listening sockets (they are ours alone): from now on
    /// connection attempts are refused.
    fn stop_listening(&self) {
        for (listener, _) in &self.listeners {
            if let Err(e) = SockRef::from(listener).shutdown(std::net::Shutdown::Read) {
                log::debug!("{listener}: stop listening: {e}");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Workers> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn_worker(self: &Arc<Self>) -> io::Result<()> {
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("worker".into())
            .stack_size(crate::THREAD_STACK)
            .spawn(move || me.work());
        if let Err(e) = &spawned {
            log::warn!("cannot start another worker thread: {e}");
            let mut workers = self.lock();
            workers.total -= 1;
            workers.idle -= 1;
            self.all_gone.notify_all();
        }
        spawned.map(drop)
    }

    fn work(self: Arc<Self>) {
        let mut events = [EpollEvent::empty()];
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match self.epoll.wait(
                &mut events,
                EpollTimeout::try_from(RETIRE_AFTER).unwrap_or(EpollTimeout::MAX),
            ) {
                Ok(0) if self.retire_if_spare() => return,
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) if events[0].data() == WAKE => break,
                Ok(_) => {
                    // While clients queue up, take the next without asking epoll again.
                    let index = events[0].data() as usize;
                    for _ in 0..ACCEPT_BATCH {
                        if !self.accept_one(index) || self.stopping.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
                Err(e) => {
                    log::error!("waiting for clients failed: {e}; retrying");
                    std::thread::sleep(FD_BACKOFF);
                }
            }
        }
        // Pass the wake-up on (one epoll waiter wakes per event), then serve
        // what is already queued: those clients finished their handshake.
        let _ = self.wake.write(1);
        self.drain_backlogs();
        let mut workers = self.lock();
        workers.total -= 1;
        workers.idle -= 1;
        self.all_gone.notify_all();
    }

    /// Serves what is queued, until the queues are empty or the stop deadline.
    fn drain_backlogs(self: &Arc<Self>) {
        let deadline = self.stop_by.get().copied();
        for (listener, protocol) in &self.listeners {
            while deadline.is_none_or(|d| Instant::now() < d) {
                match listener.accept() {
                    Ok(stream) => self.serve(stream, *protocol),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// Accepts and serves one client; false if there was none to take.
    fn accept_one(self: &Arc<Self>, index: usize) -> bool {
        let (listener, protocol) = &self.listeners[index];
        match listener.accept() {
            Ok(stream) => {
                if self.out_of_fds.swap(false, Ordering::Relaxed) {
                    log::warn!("descriptors available again; accepting clients");
                }
                self.begin_busy();
                self.serve(stream, *protocol);
                self.end_busy();
                return true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) if is_out_of_fds(&e) => {
                if !self.out_of_fds.swap(true, Ordering::Relaxed) {
                    log::warn!("cannot accept on {listener}: {e}; pausing until descriptors free up");
                }
                std::thread::sleep(FD_BACKOFF);
            }
            // The client left between its handshake and our accept, or a
            // transient network error: nothing to do for anyone else.
            Err(e) => ratelimit::note(Fold::AcceptFailed, format_args!("accept on {listener}: {e}")),
        }
        false
    }

    fn begin_busy(&self) {
        self.lock().idle -= 1;
    }

    /// This worker must wait for a slow reader: starts another if none is
    /// left waiting for new clients. Not at every accept: under load, busy
    /// workers are mostly just descheduled for a moment, and growing the pool
    /// for them only adds threads (and memory) competing for the same CPUs.
    fn about_to_block(self: &Arc<Self>) {
        let mut workers = self.lock();
        if workers.idle == 0 && !self.stopping.load(Ordering::Relaxed) {
            if workers.total < self.max_workers {
                workers.total += 1;
                workers.idle += 1;
                drop(workers);
                let _ = self.spawn_worker();
            } else {
                self.stats.at_cap.store(true, Ordering::Relaxed);
            }
        }
    }

    fn end_busy(&self) {
        let mut workers = self.lock();
        workers.idle += 1;
        self.stats.at_cap.store(false, Ordering::Relaxed);
    }

    fn retire_if_spare(&self) -> bool {
        let mut workers = self.lock();
        if workers.idle > SPARE_WORKERS {
            workers.idle -= 1;
            workers.total -= 1;
            return true;
        }
        false
    }

    /// `--timeout`, or less once stopping: the stop deadline bounds every write.
    fn write_timeout(&self) -> Duration {
        self.stop_by.get().map_or(self.timeout, |&deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(self.timeout)
        })
    }

    /// Sends the frame and shuts down our side. A frame almost always fits
    /// the socket buffer: one non-blocking write, no timeout to set. Only
    /// for the rest does this worker wait, bounded by the timeout.
    fn send(self: &Arc<Self>, stream: &mut Stream, frame: &[u8]) -> io::Result<()> {
        let sent = send_at_once(stream, frame)?;
        if sent == frame.len() {
            return stream.shutdown_write();
        }
        self.about_to_block();
        connection::send(stream, &frame[sent..], self.write_timeout())
    }

    fn serve(self: &Arc<Self>, stream: Stream, protocol: Protocol) {
        // Over its source's share: admit counted and logged it; returning closes it.
        let Some(slot) = self.sources.admit(&stream) else {
            return;
        };
        // Declared after the slot, so closed before the slot is given back.
        let mut stream = stream;
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        match self.live.frame(protocol, None) {
            None => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                ratelimit::note(
                    Fold::NoFortuneFits,
                    format_args!(
                        "{}: no fortune fits the {protocol} protocol; closing",
                        stream.peer()
                    ),
                );
            }
            Some(frame) => match self.send(&mut stream, &frame) {
                Ok(()) => {
                    self.stats.served.fetch_add(1, Ordering::Relaxed);
                    self.linger.park(stream, slot);
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    ratelimit::note(
                        Fold::NotDelivered,
                        format_args!("{}: fortune not delivered: {e}", stream.peer()),
                    );
                }
            },
        }
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes without waiting, as much as the socket takes at once.
fn send_at_once(stream: &Stream, frame: &[u8]) -> io::Result<usize> {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    match socket::send(stream.as_fd().as_raw_fd(), frame, flags) {
        Ok(n) => Ok(n),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    let errnos = [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM];
    errnos.iter().any(|&n| e.raw_os_error() == Some(n as i32))
}
