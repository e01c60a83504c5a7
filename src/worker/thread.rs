//! One worker thread ([`Worker`]): counted in the pool from before it
//! starts until it ends, its loop (one `epoll_wait` for new clients, PROXY
//! headers arriving and peers closing) and its [`Phase`]: serving, then once
//! stopping draining the backlogs, then closing; starting one more
//! ([`spawn`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollTimeout};

use super::serve::RESOURCE_BACKOFF;
use super::shared::{Riders, Shared, WAKE};
use crate::health::BEAT_EVERY;
use crate::linger::{self, Linger};
use crate::proxied::Waiting;
use crate::wire::Protocol;

/// Workers kept even when idle: one, so that a new client does not wait for
/// a thread to start, and only one, because two taking turns at the same
/// listeners cost each connection half as much CPU again (wake-ups, and the
/// listener and its clients moving between CPUs; bench/server-syscalls.md).
/// Another starts as soon as this one must wait for a slow reader.
pub(crate) const SPARE_WORKERS: usize = 1;
/// An idle worker beyond the spares retires after this long without a client.
const RETIRE_AFTER: Duration = Duration::from_secs(5);
/// Events one `epoll_wait` returns at most.
const EVENTS: usize = 64;

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

/// The epoll timeout until `at` (none: forever), rounded up to the next
/// millisecond so that the deadline has passed when the wait ends.
fn timeout_until(at: Option<Instant>, now: Instant) -> EpollTimeout {
    at.map_or(EpollTimeout::NONE, |at| {
        let micros = at.saturating_duration_since(now).as_micros();
        EpollTimeout::try_from(micros.div_ceil(1000)).unwrap_or(EpollTimeout::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
