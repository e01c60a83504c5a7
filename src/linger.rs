//! One worker's connections whose fortune is fully written, waiting for
//! their peer to close (or for the timeout) without holding up the worker:
//! each is registered in the worker's own epoll set, beside the listeners,
//! so one `epoll_wait` returns both new clients and peers leaving. Owned by
//! that worker alone: no lock. Idle clients cost a socket, not a stack.
//!
//! Every connection waits the same `--timeout`, so deadlines come in the
//! order connections were parked: a list in parking order is the whole
//! timer. It is threaded through a slab whose index is the epoll key, so
//! finding, closing and expiring a connection are O(1), and memory follows
//! the connections open, not those served within the timeout.
//!
//! Each parked connection carries a rider (`T`) dropped exactly when its
//! descriptor is closed: the per-connection guards (the active count, a
//! per-source slot) live as long as the descriptor does.

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

/// No slot: the end of the list.
const NIL: usize = usize::MAX;

/// Slots kept allocated once all are free again, so that a burst's peak
/// does not stay resident.
const KEEP_SLOTS: usize = 1024;

pub struct Linger<T> {
    /// Indexed by epoll key minus [`FIRST_KEY`].
    slots: Vec<Slot<T>>,
    /// Indices of the empty slots.
    free: Vec<usize>,
    /// The first and last parked, hence the first and last deadline.
    oldest: usize,
    newest: usize,
    /// Connections parked (slots in use).
    open: usize,
    timeout: Duration,
    sink: Box<[u8]>,
}

struct Slot<T> {
    parked: Option<Parked<T>>,
    /// Neighbours in parking order.
    older: usize,
    newer: usize,
}

struct Parked<T> {
    deadline: Instant,
    stream: Stream,
    _rider: T,
}

impl<T> Linger<T> {
    pub fn new(timeout: Duration) -> Linger<T> {
        Linger {
            slots: Vec::new(),
            free: Vec::new(),
            oldest: NIL,
            newest: NIL,
            open: 0,
            timeout,
            sink: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Waits, in `epoll`, for the peer of `stream` (non-blocking, our write
    /// side shut down) to close; `rider` is dropped when the stream is.
    pub fn park(&mut self, epoll: &Epoll, stream: Stream, rider: T) {
        let index = self.free.last().copied().unwrap_or(self.slots.len());
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        if let Err(e) = epoll.add(
            stream.as_fd(),
            EpollEvent::new(interest, FIRST_KEY + index as u64),
        ) {
            log::debug!("{}: closing without waiting: {e}", stream.peer());
            drop(stream); // before its rider
            return;
        }
        let slot = Slot {
            parked: Some(Parked {
                deadline: Instant::now() + self.timeout,
                stream,
                _rider: rider,
            }),
            older: self.newest,
            newer: NIL,
        };
        match self.free.pop() {
            Some(i) => self.slots[i] = slot,
            None => self.slots.push(slot),
        }
        match self.newest {
            NIL => self.oldest = index,
            newest => self.slots[newest].newer = index,
        }
        self.newest = index;
        self.open += 1;
    }

    /// The connection under `key` has something to read: drains it, and
    /// closes it once its peer has closed. Closing also unregisters it.
    pub fn ready(&mut self, key: u64) {
        let Some(index) = key.checked_sub(FIRST_KEY).map(|i| i as usize) else {
            return;
        };
        let sink = &mut self.sink;
        if self
            .slots
            .get_mut(index)
            .and_then(|slot| slot.parked.as_mut())
            .is_some_and(|p| drained_to_end(&mut p.stream, sink))
        {
            self.close(index);
        }
    }

    /// Closes the connections whose time is up; returns the next deadline.
    pub fn expire(&mut self, now: Instant) -> Option<Instant> {
        while let Some(p) = self.slots.get(self.oldest).and_then(|s| s.parked.as_ref()) {
            if p.deadline > now {
                return Some(p.deadline);
            }
            log::debug!("{}: did not close within the timeout; closing", p.stream.peer());
            self.close(self.oldest);
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

    /// Drops the connection in slot `index` (closing it) and its rider.
    fn close(&mut self, index: usize) {
        let (older, newer) = (self.slots[index].older, self.slots[index].newer);
        match older {
            NIL => self.oldest = newer,
            older => self.slots[older].newer = newer,
        }
        match newer {
            NIL => self.newest = older,
            newer => self.slots[newer].older = older,
        }
        self.slots[index].parked = None;
        self.free.push(index);
        self.open -= 1;
        if self.open == 0 && self.slots.len() > KEEP_SLOTS {
            self.slots = Vec::new();
            self.free = Vec::new();
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

        // Slots are reused.
        let (c, peer_c) = pair();
        linger.park(&epoll, c, Rc::clone(&rider));
        drop(peer_c);
        let keys = ready_keys(&epoll);
        assert!(keys == [FIRST_KEY] || keys == [FIRST_KEY + 1], "{keys:?}");
        linger.ready(keys[0]);
        assert!(linger.is_empty());
        assert_eq!(linger.slots.len(), 2);
    }

    /// Closes out of parking order keep the deadlines in parking order.
    #[test]
    fn deadlines_stay_in_parking_order() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        let mut linger = Linger::new(Duration::from_secs(60));
        let mut peers = Vec::new();
        let mut parked_at = Vec::new();
        for i in 0..5 {
            let (ours, theirs) = pair();
            parked_at.push(Instant::now());
            linger.park(&epoll, ours, i);
            peers.push(Some(theirs));
        }
        // The middle and the newest leave; the oldest is still the next to expire.
        for i in [2, 4] {
            peers[i] = None;
            linger.ready(FIRST_KEY + i as u64);
        }
        assert_eq!(linger.len(), 3);
        let first = linger.expire(Instant::now()).expect("a deadline");
        assert!(
            first >= parked_at[0] + Duration::from_secs(60)
                && first <= parked_at[1] + Duration::from_secs(60)
        );
        // Expiring up to the second's deadline leaves only the fourth.
        let second = linger.expire(first).expect("a deadline");
        assert_eq!(linger.len(), 2);
        let fourth = linger.expire(second).expect("a deadline");
        assert_eq!(linger.len(), 1);
        assert!(fourth >= parked_at[3] + Duration::from_secs(60));
        // A new one goes after it, in a freed slot.
        let (ours, _theirs) = pair();
        linger.park(&epoll, ours, 5);
        assert_eq!(linger.slots.len(), 5);
        assert_eq!(linger.expire(fourth).map(|_| linger.len()), Some(1));
        assert_eq!(linger.expire(Instant::now() + Duration::from_secs(61)), None);
        assert!(linger.is_empty());
    }
}
