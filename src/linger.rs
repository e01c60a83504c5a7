//! One worker's connections whose fortune is fully written, waiting for
//! their peer to close (or for the timeout) without holding up the worker:
//! each is registered in the worker's own epoll set, beside the listeners,
//! so one `epoll_wait` returns both new clients and peers leaving. Owned by
//! that worker alone: no lock. Idle clients cost a socket, not a stack.
//!
//! Every connection waits the same `--timeout`, so deadlines come in the
//! order connections were parked: a FIFO indexed by parking order is the
//! whole timer, and finding a connection by its epoll key is one subtraction.
//!
//! Each parked connection carries a rider (`T`) dropped exactly when its
//! descriptor is closed: the per-connection guards (the active count, a
//! per-source slot) live as long as the descriptor does.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use crate::sockets::Stream;

/// How much one ready connection may be drained per round, so that a client
/// sending junk cannot starve the others.
const DRAIN_PER_ROUND: usize = 64 * 1024;

/// Epoll keys at or above this are parked connections; the owner of the
/// epoll set keeps the keys below for itself (listeners, wake-ups).
pub const FIRST_KEY: u64 = 1 << 32;

pub struct Linger<T> {
    /// Keyed by parking order, hence by deadline; `None` once closed.
    parked: VecDeque<Option<Parked<T>>>,
    /// The key of `parked[0]`.
    front_key: u64,
    /// Connections still open in `parked`.
    open: usize,
    timeout: Duration,
    sink: Box<[u8]>,
}

struct Parked<T> {
    deadline: Instant,
    stream: Stream,
    _rider: T,
}

impl<T> Linger<T> {
    pub fn new(timeout: Duration) -> Linger<T> {
        Linger {
            parked: VecDeque::new(),
            front_key: FIRST_KEY,
            open: 0,
            timeout,
            sink: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Waits, in `epoll`, for the peer of `stream` (non-blocking, our write
    /// side shut down) to close; `rider` is dropped when the stream is.
    pub fn park(&mut self, epoll: &Epoll, stream: Stream, rider: T) {
        let key = self.front_key + self.parked.len() as u64;
        let interest = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, key);
        if let Err(e) = epoll.add(stream.as_fd(), interest) {
            log::debug!("{}: closing without waiting: {e}", stream.peer());
            return;
        }
        self.parked.push_back(Some(Parked {
            deadline: Instant::now() + self.timeout,
            stream,
            _rider: rider,
        }));
        self.open += 1;
    }

    /// The connection under `key` has something to read: drains it, and
    /// closes it once its peer has closed. Closing also unregisters it.
    pub fn ready(&mut self, key: u64) {
        let Some(slot) = key
            .checked_sub(self.front_key)
            .and_then(|i| self.parked.get_mut(i as usize))
        else {
            return;
        };
        if slot
            .as_mut()
            .is_some_and(|p| drained_to_end(&mut p.stream, &mut self.sink))
        {
            *slot = None;
            self.open -= 1;
        }
    }

    /// Closes the connections whose time is up; returns the next deadline.
    pub fn expire(&mut self, now: Instant) -> Option<Instant> {
        while let Some(front) = self.parked.front() {
            match front {
                Some(p) if p.deadline > now => return Some(p.deadline),
                Some(p) => {
                    log::debug!("{}: did not close within the timeout; closing", p.stream.peer());
                    self.open -= 1;
                }
                None => {}
            }
            self.parked.pop_front();
            self.front_key += 1;
        }
        None
    }

    /// Connections still waiting for their peer.
    pub fn len(&self) -> usize {
        self.open
    }

    pub fn is_empty(&self) -> bool {
        self.open == 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::epoll::{EpollCreateFlags, EpollTimeout};
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;

    fn pair() -> (Stream, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        ours.shutdown(std::net::Shutdown::Write).expect("shutdown");
        (Stream::Unix(ours), theirs)
    }

    fn ready_keys(epoll: &Epoll) -> Vec<u64> {
        let mut events = [EpollEvent::empty(); 8];
        let n = epoll.wait(&mut events, EpollTimeout::ZERO).expect("epoll_wait");
        events[..n].iter().map(|e| e.data()).collect()
    }

    #[test]
    fn riders_live_as_long_as_their_connection() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        let mut linger = Linger::new(Duration::from_secs(60));
        let rider = Rc::new(());
        let (a, mut peer_a) = pair();
        let (b, peer_b) = pair();
        linger.park(&epoll, a, Rc::clone(&rider));
        linger.park(&epoll, b, Rc::clone(&rider));
        assert_eq!((linger.len(), Rc::strong_count(&rider)), (2, 3));
        assert!(ready_keys(&epoll).is_empty());

        // A peer sending before it closes: drained, still open.
        peer_a.write_all(b"junk").expect("write");
        assert_eq!(ready_keys(&epoll), [FIRST_KEY]);
        linger.ready(FIRST_KEY);
        assert_eq!(linger.len(), 2);
        drop(peer_a);
        linger.ready(FIRST_KEY);
        assert_eq!((linger.len(), Rc::strong_count(&rider)), (1, 2));
        // Closed, hence no longer in the epoll set; a stale key is ignored.
        assert!(ready_keys(&epoll).is_empty());
        linger.ready(FIRST_KEY);
        linger.ready(FIRST_KEY + 7);
        assert_eq!(linger.len(), 1);

        // The second waits for its deadline, then goes with its rider.
        let now = Instant::now();
        let next = linger.expire(now).expect("a deadline");
        assert!(next > now);
        assert_eq!(linger.len(), 1);
        assert_eq!(linger.expire(next), None);
        assert_eq!((linger.len(), Rc::strong_count(&rider)), (0, 1));
        drop(peer_b);
        assert!(ready_keys(&epoll).is_empty());

        // Keys go on from where they were.
        let (c, peer_c) = pair();
        linger.park(&epoll, c, Rc::clone(&rider));
        drop(peer_c);
        assert_eq!(ready_keys(&epoll), [FIRST_KEY + 2]);
        linger.ready(FIRST_KEY + 2);
        assert!(linger.is_empty());
    }
}
