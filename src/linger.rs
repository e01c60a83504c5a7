//! One worker's connections whose fortune is fully written, waiting for
//! their peer to close (or for the timeout) without holding up the worker.
//! Owned by that worker alone: no lock. Idle clients cost a socket, not a
//! stack.
//!
//! A well-behaved peer closes within a moment of reading its fortune, so a
//! new connection is first left unwatched: each time the worker comes
//! around anyway (after accepting, or when its `epoll_wait` returns),
//! [`Linger::tend`] reads the unwatched ones, oldest first, without
//! waiting, and closes those whose peer has closed; it stops at the first
//! still open. One still open after [`WATCH_AFTER`] is registered in the
//! worker's epoll set, beside the listeners, so one `epoll_wait` returns
//! both new clients and peers leaving, and an idle client is polled once,
//! not again and again. The worker's wait is bounded by the next such
//! promotion. Most connections thus cost one `recv` to learn of the close:
//! no `epoll_ctl`, and no wake-up of their own.
//!
//! Every connection waits the same `--timeout`, so deadlines come in the
//! order connections were parked: a list in parking order is the whole
//! timer, and the unwatched connections are its newest end. It is threaded
//! through a slab whose index is the epoll key, so finding, closing and
//! expiring a connection are O(1), and memory follows the connections open,
//! not those served within the timeout.
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

/// How long a parked connection is left unwatched before it is registered
/// in epoll: long enough for a busy client on the same network to read and
/// close (at 5 ms, 17 to 58 % of the connections from 256 clients on loopback
/// were registered), short enough that a worker left without new clients
/// looks again soon (its wait is bounded by it) and descriptors whose peer
/// has gone are not held long.
pub const WATCH_AFTER: Duration = Duration::from_millis(20);

/// No slot: the end of the list.
const NIL: usize = usize::MAX;

/// Connections one call of [`Linger::tend`] checks or registers at most,
/// beyond those whose time is up: thousands of idle clients that became due
/// together are registered a batch at a time, between accepts, instead of in
/// one pause that new clients would wait out.
const TEND_BATCH: usize = 64;

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
    /// The oldest connection not in the epoll set: it and all newer ones.
    unwatched: usize,
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
    since: Instant,
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
            unwatched: NIL,
            open: 0,
            timeout,
            sink: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Keeps `stream` (non-blocking, our write side shut down) until its
    /// peer closes; `rider` is dropped when the stream is.
    pub fn park(&mut self, stream: Stream, rider: T) {
        let slot = Slot {
            parked: Some(Parked {
                since: Instant::now(),
                stream,
                _rider: rider,
            }),
            older: self.newest,
            newer: NIL,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        match self.newest {
            NIL => self.oldest = index,
            newest => self.slots[newest].newer = index,
        }
        self.newest = index;
        if self.unwatched == NIL {
            self.unwatched = index;
        }
        self.open += 1;
    }

    /// The connection under `key` (registered in epoll) has something to
    /// read: drains it, and closes it once its peer has closed. Closing also
    /// unregisters it.
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

    /// Closes the connections whose time is up, then those unwatched whose
    /// peer has closed; registers in `epoll` those unwatched for
    /// [`WATCH_AFTER`], `TEND_BATCH` at most. Returns when to come again:
    /// the next deadline or promotion, or now if the batch ran out.
    pub fn tend(&mut self, epoll: &Epoll, now: Instant) -> Option<Instant> {
        while let Some(p) = self.get(self.oldest) {
            if p.since + self.timeout > now {
                break;
            }
            log::debug!("{}: did not close within the timeout; closing", p.stream.peer());
            self.close(self.oldest);
        }
        let mut batch = TEND_BATCH;
        while let Some(slot) = self.slots.get_mut(self.unwatched) {
            if batch == 0 {
                return Some(now); // the rest after a look at new clients
            }
            batch -= 1;
            let (index, newer) = (self.unwatched, slot.newer);
            let Some(p) = slot.parked.as_mut() else { break };
            if drained_to_end(&mut p.stream, &mut self.sink) {
                self.close(index);
                continue;
            }
            if p.since + WATCH_AFTER > now {
                break;
            }
            self.unwatched = newer;
            let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
            let key = EpollEvent::new(interest, FIRST_KEY + index as u64);
            if let Err(e) = epoll.add(p.stream.as_fd(), key) {
                log::debug!("{}: closing without waiting: {e}", p.stream.peer());
                self.close(index);
            }
        }
        let expiry = self.get(self.oldest).map(|p| p.since + self.timeout);
        let promotion = self.get(self.unwatched).map(|p| p.since + WATCH_AFTER);
        expiry.into_iter().chain(promotion).min()
    }

    /// Connections still waiting for their peer.
    pub fn len(&self) -> usize {
        self.open
    }

    pub fn is_empty(&self) -> bool {
        self.open == 0
    }

    fn get(&self, index: usize) -> Option<&Parked<T>> {
        self.slots.get(index).and_then(|s| s.parked.as_ref())
    }

    /// Drops the connection in slot `index` (closing it) and its rider.
    fn close(&mut self, index: usize) {
        let (older, newer) = (self.slots[index].older, self.slots[index].newer);
        if self.unwatched == index {
            self.unwatched = newer;
        }
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
    use crate::sockets::testing::ready_keys;
    use nix::sys::epoll::EpollCreateFlags;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;

    /// Ours as parked: our write side shut down.
    fn pair() -> (Stream, UnixStream) {
        let (ours, theirs) = crate::sockets::testing::pair();
        ours.shutdown_write().expect("shutdown");
        (ours, theirs)
    }

    #[test]
    fn riders_live_as_long_as_their_connection() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        let mut linger = Linger::new(Duration::from_secs(60));
        let rider = Rc::new(());
        let (a, mut peer_a) = pair();
        let (b, peer_b) = pair();
        let before = Instant::now();
        linger.park(a, Rc::clone(&rider));
        linger.park(b, Rc::clone(&rider));
        assert_eq!((linger.len(), Rc::strong_count(&rider)), (2, 3));

        // A peer sending before it closes: drained, still open, unwatched.
        peer_a.write_all(b"junk").expect("write");
        let now = Instant::now();
        let next = linger.tend(&epoll, now).expect("a promotion");
        assert!(next >= before + WATCH_AFTER && next <= now + WATCH_AFTER);
        assert_eq!(linger.len(), 2);
        assert!(ready_keys(&epoll).is_empty());
        // Its close is found when the worker comes around; b's peer is still there.
        drop(peer_a);
        linger.tend(&epoll, now);
        assert_eq!((linger.len(), Rc::strong_count(&rider)), (1, 2));

        // Still open after WATCH_AFTER: b is registered, and its close is an event.
        let deadline = linger
            .tend(&epoll, Instant::now() + WATCH_AFTER)
            .expect("a deadline");
        assert!(deadline >= before + Duration::from_secs(60));
        assert!(ready_keys(&epoll).is_empty());
        drop(peer_b);
        assert_eq!(ready_keys(&epoll), [FIRST_KEY + 1]);
        linger.ready(FIRST_KEY + 1);
        assert_eq!((linger.len(), Rc::strong_count(&rider)), (0, 1));
        // Closed, hence no longer in the epoll set; a stale key is ignored.
        assert!(ready_keys(&epoll).is_empty());
        linger.ready(FIRST_KEY + 1);
        linger.ready(FIRST_KEY + 7);
        assert_eq!(linger.tend(&epoll, Instant::now()), None);

        // Slots are reused; one whose time is up goes with its rider.
        let (c, _peer_c) = pair();
        linger.park(c, Rc::clone(&rider));
        assert_eq!(linger.slots.len(), 2);
        assert_eq!(
            linger.tend(&epoll, Instant::now() + Duration::from_secs(61)),
            None
        );
        assert_eq!((linger.len(), Rc::strong_count(&rider)), (0, 1));
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
            linger.park(ours, i);
            peers.push(Some(theirs));
        }
        // All watched; the middle and the newest leave.
        linger.tend(&epoll, Instant::now() + WATCH_AFTER);
        for i in [2, 4] {
            peers[i] = None;
        }
        let mut keys = ready_keys(&epoll);
        keys.sort();
        assert_eq!(keys, [FIRST_KEY + 2, FIRST_KEY + 4]);
        for key in keys {
            linger.ready(key);
        }
        assert_eq!(linger.len(), 3);
        // The oldest is still the next to expire.
        let first = linger.tend(&epoll, Instant::now()).expect("a deadline");
        assert!(
            first >= parked_at[0] + Duration::from_secs(60)
                && first <= parked_at[1] + Duration::from_secs(60)
        );
        // Expiring up to the second's deadline leaves only the fourth.
        let second = linger.tend(&epoll, first).expect("a deadline");
        assert_eq!(linger.len(), 2);
        let fourth = linger.tend(&epoll, second).expect("a deadline");
        assert_eq!(linger.len(), 1);
        assert!(fourth >= parked_at[3] + Duration::from_secs(60));
        // A new one goes after it, in a freed slot.
        let (ours, _theirs) = pair();
        linger.park(ours, 5);
        assert_eq!(linger.slots.len(), 5);
        assert_eq!(linger.tend(&epoll, fourth).map(|_| linger.len()), Some(1));
        assert_eq!(
            linger.tend(&epoll, Instant::now() + Duration::from_secs(61)),
            None
        );
        assert!(linger.is_empty());
    }
}
