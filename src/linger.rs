//! The shared waiter: connections whose fortune is fully written wait here,
//! in one epoll set, for their peer to close (or for the timeout), instead of
//! each parking a thread. Idle clients then cost a socket, not a stack.
//!
//! Every connection waits the same `--timeout`, so deadlines come in the
//! order connections were parked: a map ordered by parking order is the
//! whole timer.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::sockets::Stream;
use crate::sources::SourceSlot;

/// How much one ready connection may be drained per round, so that a client
/// sending junk cannot starve the others.
const DRAIN_PER_ROUND: usize = 64 * 1024;

pub struct Linger {
    epoll: Epoll,
    state: Mutex<State>,
    timeout: Duration,
    stop: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Keyed by parking order, hence by deadline. The stream comes before
    /// its source slot: it is closed before the slot is given back.
    open: BTreeMap<u64, (Instant, Stream, SourceSlot)>,
    next_key: u64,
}

impl Linger {
    pub fn new(timeout: Duration) -> nix::Result<Arc<Linger>> {
        Ok(Arc::new(Linger {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            state: Mutex::default(),
            timeout,
            stop: AtomicBool::new(false),
        }))
    }

    /// Starts the waiter thread.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("linger".into())
            .stack_size(crate::THREAD_STACK)
            .spawn(move || me.run())
    }

    /// Hands over a connection whose write side is shut down, with its
    /// source slot, which is given back once the connection is closed.
    pub fn park(&self, stream: Stream, slot: SourceSlot) {
        if let Err(e) = stream.set_nonblocking(true) {
            log::debug!("{}: closing without waiting: {e}", stream.peer());
            drop(stream); // before the slot
            return;
        }
        let mut state = self.lock();
        let key = state.next_key;
        state.next_key += 1;
        // Registered under the lock, so the waiter never sees an unknown key.
        match self.epoll.add(
            &stream,
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, key),
        ) {
            Ok(()) => {
                state
                    .open
                    .insert(key, (Instant::now() + self.timeout, stream, slot));
            }
            Err(e) => {
                log::debug!("{}: closing without waiting: {e}", stream.peer());
                drop(stream); // before the slot
            }
        }
    }

    /// Connections still waiting for their peer.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every parked connection is gone or `deadline` passes,
    /// then stops the waiter (dropping, hence closing, what is left).
    pub fn finish(&self, deadline: Instant) {
        while !self.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.lock().open.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; keep going after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut sink = vec![0u8; 16 * 1024];
        while !self.stop.load(Ordering::Relaxed) {
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(100u16)) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("waiting for peers to close failed: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let mut state = self.lock();
            for event in &events[..n] {
                let key = event.data();
                let done = match state.open.get_mut(&key) {
                    Some((_, stream, _)) => drained_to_end(stream, &mut sink),
                    None => false,
                };
                if done {
                    state.open.remove(&key);
                }
            }
            let now = Instant::now();
            while let Some(entry) = state.open.first_entry() {
                if entry.get().0 > now {
                    break;
                }
                log::debug!(
                    "{}: did not close within the timeout; closing",
                    entry.get().1.peer()
                );
                drop(entry.remove());
            }
        }
    }
}

/// Reads and discards; true once the peer has closed or failed.
fn drained_to_end(stream: &mut Stream, sink: &mut [u8]) -> bool {
    let mut taken = 0;
    while taken < DRAIN_PER_ROUND {
        match stream.read(sink) {
            Ok(0) => return true,
            Ok(n) => taken += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    false
}
