//! What the workers share ([`Shared`]): the [`Config`], the pool's counts
//! ([`Pool`], changed only by a worker's enlisting and leaving and by
//! [`Blocked`]), the stop deadlines, the heartbeat; and each worker's epoll
//! set. Growing the pool is the thread module's: [`Shared`] holds it as a
//! function ([`Shared::new`]), so that this module uses none of its siblings.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::cidr::Trusted;
use crate::fortunes::Live;
use crate::health::Heartbeat;
use crate::linger;
use crate::sockets::Listener;
use crate::sources::{SourceSlot, Sources};
use crate::stats::{Active, Stats};
use crate::wire::Protocol;

/// epoll key of the stop eventfd; listeners use their index, connections
/// waiting for their PROXY header [`crate::proxied::FIRST_KEY`] and up,
/// parked connections [`linger::FIRST_KEY`] and up.
pub(super) const WAKE: u64 = linger::FIRST_KEY - 1;

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
pub(crate) type Riders<'a> = (Active<'a>, SourceSlot<'a>);

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
    pub(super) out_of_resources: AtomicBool,
    /// Starts one more worker (the thread module's `spawn`); Ok(false) at
    /// `--max-connections`.
    grow: fn(&Arc<Shared>) -> io::Result<bool>,
    /// Beaten by every worker as it goes round (see [`crate::server::Server::stalled`]).
    pub(crate) heartbeat: Heartbeat,
    /// Test hook: this many of the next workers fail to make their epoll set.
    #[cfg(test)]
    pub(crate) failing_epolls: AtomicUsize,
}

/// The worker count, changed only through `thread::Worker` and [`Blocked`].
pub(crate) struct Pool {
    pub(super) max: usize,
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
    pub(crate) fn new(config: Config, grow: fn(&Arc<Shared>) -> io::Result<bool>) -> io::Result<Shared> {
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
            grow,
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

    pub(super) fn started(&self) {
        *self.pool.failed_starts.lock().unwrap_or_else(|p| p.into_inner()) = (0, String::new());
    }

    /// A new epoll set for one worker: the stop eventfd (level-triggered, so
    /// every worker sees it) and every listener.
    pub(super) fn worker_epoll(&self) -> io::Result<Epoll> {
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

    /// This worker must wait for a slow reader: starts another if every
    /// worker now waits for one. Not at every accept: under load, busy
    /// workers are mostly just descheduled for a moment, and growing the pool
    /// for them only adds threads (and memory) competing for the same CPUs.
    pub(super) fn block(self: &Arc<Self>) -> Blocked<'_> {
        let blocked = self.pool.blocked.fetch_add(1, Ordering::SeqCst) + 1;
        if blocked >= self.pool.total.load(Ordering::SeqCst)
            && !self.stopping()
            && matches!((self.grow)(self), Ok(false))
        {
            self.config.stats.reach_cap(self.pool.max);
        }
        Blocked(self)
    }

    /// `--timeout`, or less once stopping: the stop deadline bounds every write.
    pub(super) fn write_timeout(&self) -> Duration {
        let timeout = self.config.timeout;
        self.stop_by.get().map_or(timeout, |&deadline| {
            deadline.saturating_duration_since(Instant::now()).min(timeout)
        })
    }
}

/// A worker waiting for a slow reader, counted as such while this lives.
pub(super) struct Blocked<'a>(&'a Shared);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.pool.blocked.fetch_sub(1, Ordering::SeqCst);
        self.0.config.stats.at_cap.store(false, Ordering::Relaxed);
    }
}
