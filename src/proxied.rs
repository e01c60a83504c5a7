//! Connections from a trusted load balancer (`--proxy-from`), read up to the
//! end of their PROXY header ([`crate::proxy`]) before they are served as
//! the client the header names.
//!
//! A balancer sends the header right after the handshake, so it has mostly
//! arrived by the time the connection is accepted: one `recv` reads it and
//! the connection is served on the spot. If not (a balancer under load
//! sends it when it next goes round its own loop), the connection waits in
//! a [`Waiting`] set owned by one worker: read again when the worker comes
//! around (at most every `LOOK_EVERY`), then after [`WATCH_AFTER`]
//! registered in its epoll set beside the listeners, so a slow balancer
//! connection never holds up the worker's other clients, for at most
//! `--timeout`. A missing or malformed header closes the connection, with a
//! folded log line.

use std::collections::VecDeque;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use crate::fold::{self, Fold};
use crate::proxy::{self, MAX_HEADER};
use crate::sockets::Stream;
use crate::stats::Stats;

/// Epoll keys from here up to `LAST_KEY` are connections waiting for their
/// header; below are the owner's (listeners), above [`crate::linger`]'s.
pub const FIRST_KEY: u64 = 1 << 31;
const LAST_KEY: u64 = (1 << 32) - 2;

/// What has been read of one connection's header.
pub struct Partial {
    buf: [u8; MAX_HEADER],
    filled: usize,
}

/// The outcome of one read.
pub enum Step {
    /// The header is complete: serve the client it names (`None`: a health
    /// check, or a client without an address; served without a source).
    Done(Option<SocketAddr>),
    /// Not all there yet.
    More,
    /// Close the connection, for this reason.
    Refused(String),
}

impl Default for Partial {
    fn default() -> Self {
        Partial {
            buf: [0; MAX_HEADER],
            filled: 0,
        }
    }
}

impl Partial {
    /// One read of what has arrived: a non-blocking stream does not wait,
    /// a blocking one waits as long as its read timeout. One read, not a
    /// loop, so that a peer sending a byte at a time cannot stretch a wait.
    /// Bytes past the header are dropped: a client sends nothing we read.
    pub fn read(&mut self, stream: &mut Stream) -> Step {
        let Some(room) = self.buf.get_mut(self.filled..).filter(|r| !r.is_empty()) else {
            return Step::Refused(proxy::Invalid::TooLong.to_string());
        };
        match stream.read(room) {
            Ok(0) => Step::Refused("closed before the end of its PROXY header".into()),
            Ok(n) => {
                self.filled += n;
                match proxy::parse(&self.buf[..self.filled]) {
                    Ok(Some(header)) => Step::Done(header.source),
                    Ok(None) => Step::More,
                    Err(e) => Step::Refused(e.to_string()),
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Step::More,
            Err(e) => Step::Refused(e.to_string()),
        }
    }
}

/// Logs (folded) and counts a connection from a balancer closed for its header.
pub fn refuse(balancer: impl fmt::Display, why: &str, stats: &Stats) {
    stats.proxy_refused.fetch_add(1, Ordering::Relaxed);
    fold::note(
        Fold::ProxyHeader,
        format_args!(
            "{balancer}: {why}; closing (its address is in --proxy-from: its connections must begin with a PROXY header)"
        ),
    );
}

fn timed_out(timeout: Duration) -> String {
    format!("no PROXY header within {} s (--timeout)", timeout.as_secs_f64())
}

/// For a connection served once (`Accept=yes`, `--inetd`): waits for the
/// header, up to `timeout`. `Err` is why the connection must be closed.
pub fn read_blocking(stream: &mut Stream, timeout: Duration) -> Result<Option<SocketAddr>, String> {
    let deadline = Instant::now() + timeout;
    let mut partial = Box::<Partial>::default();
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(timeout));
        }
        stream.set_read_timeout(left).map_err(|e| e.to_string())?;
        match partial.read(stream) {
            Step::Done(source) => return Ok(source),
            Step::More => {}
            Step::Refused(why) => return Err(why),
        }
    }
}

/// How long a connection whose header has not arrived is left unwatched,
/// read again when the worker comes around, before it is registered in
/// epoll: a registration costs two `epoll_ctl` and a wake-up of its own,
/// and a wake-up costs more than anything else a connection takes
/// (registering at once measured about 1.1x the server CPU per connection of
/// this; bench/RESULTS.md).
pub const WATCH_AFTER: Duration = Duration::from_millis(2);

/// How long after one look at the connections not in epoll the next may be:
/// a header not there at `accept` comes when the balancer next goes round
/// its own loop, under load 0.5 to 5 ms later (bench/RESULTS.md), so
/// reading each time the worker comes around mostly found nothing: about
/// one `EAGAIN` `recv` per connection beyond the one at `accept`.
const LOOK_EVERY: Duration = Duration::from_micros(500);

/// A connection whose header is complete, to be served.
pub struct Arrived<T> {
    pub stream: Stream,
    /// The client the header names (see [`Step::Done`]).
    pub source: Option<SocketAddr>,
    /// What the owner gave with it (the listener's protocol).
    pub tag: T,
}

/// One worker's connections waiting for the rest of their header. Every
/// one waits the same timeout, so deadlines come in arrival order: a queue
/// is the whole timer (entries of connections gone since are skipped).
pub struct Waiting<T> {
    slots: Vec<Option<Entry<T>>>,
    free: Vec<usize>,
    /// (deadline, slot, serial) in arrival order.
    queue: VecDeque<(Instant, usize, u64)>,
    /// (parked at, slot, serial) of those not yet in epoll, in arrival order.
    unwatched: VecDeque<(Instant, usize, u64)>,
    serial: u64,
    timeout: Duration,
    stats: Arc<Stats>,
    /// When those not in epoll were last read again.
    looked: Option<Instant>,
}

struct Entry<T> {
    stream: Stream,
    balancer: SocketAddr,
    partial: Box<Partial>,
    tag: T,
    serial: u64,
}

impl<T> Waiting<T> {
    pub fn new(timeout: Duration, stats: Arc<Stats>) -> Waiting<T> {
        Waiting {
            slots: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            unwatched: VecDeque::new(),
            serial: 0,
            timeout,
            stats,
            looked: None,
        }
    }

    /// A connection just accepted from `balancer`: returns it if its header
    /// has arrived; else keeps it until it does (or is refused).
    pub fn admit(&mut self, mut stream: Stream, balancer: SocketAddr, tag: T) -> Option<Arrived<T>> {
        let mut partial = Partial::default();
        match partial.read(&mut stream) {
            Step::Done(source) => return Some(Arrived { stream, source, tag }),
            Step::Refused(why) => {
                refuse(balancer, &why, &self.stats);
                return None;
            }
            Step::More => {}
        }
        if self.slots.len() as u64 >= LAST_KEY - FIRST_KEY {
            refuse(
                balancer,
                "too many connections waiting for their PROXY header",
                &self.stats,
            );
            return None;
        }
        self.serial += 1;
        let entry = Entry {
            stream,
            balancer,
            partial: Box::new(partial),
            tag,
            serial: self.serial,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(entry);
                i
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        let now = Instant::now();
        self.queue.push_back((now + self.timeout, index, self.serial));
        self.unwatched.push_back((now, index, self.serial));
        None
    }

    /// Closes those whose time is up; reads those not in epoll again (if
    /// `LOOK_EVERY` has passed since the last time, or one is due for
    /// epoll) and hands those now complete to `serve`; registers in `epoll` those
    /// unwatched for [`WATCH_AFTER`]. Returns when to come again.
    pub fn tend(
        &mut self,
        epoll: &Epoll,
        now: Instant,
        mut serve: impl FnMut(Arrived<T>),
    ) -> Option<Instant> {
        while let Some(&(deadline, index, serial)) = self.queue.front() {
            if self.is_live(index, serial) {
                if deadline > now {
                    break;
                }
                self.close(index, &timed_out(self.timeout));
            }
            self.queue.pop_front();
        }
        let promotion = |unwatched: &VecDeque<(Instant, usize, u64)>| {
            unwatched.front().map(|&(since, ..)| since + WATCH_AFTER)
        };
        let due = promotion(&self.unwatched).is_some_and(|at| at <= now);
        if !due && self.looked.is_some_and(|at| at + LOOK_EVERY > now) {
            let expiry = self.queue.front().map(|&(deadline, ..)| deadline);
            return expiry.into_iter().chain(promotion(&self.unwatched)).min();
        }
        self.looked = Some(now);
        for _ in 0..self.unwatched.len() {
            let Some((since, index, serial)) = self.unwatched.pop_front() else {
                break;
            };
            if !self.is_live(index, serial) {
                continue;
            }
            match self.read(index) {
                Some(Step::Done(source)) => {
                    if let Some(e) = self.take(index) {
                        serve(Arrived {
                            stream: e.stream,
                            source,
                            tag: e.tag,
                        });
                    }
                }
                Some(Step::Refused(why)) => self.close(index, &why),
                Some(Step::More) if since + WATCH_AFTER > now => {
                    self.unwatched.push_back((since, index, serial))
                }
                Some(Step::More) | None => self.watch(epoll, index),
            }
        }
        let expiry = self.queue.front().map(|&(deadline, ..)| deadline);
        expiry.into_iter().chain(promotion(&self.unwatched)).min()
    }

    fn is_live(&self, index: usize, serial: u64) -> bool {
        self.slots
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|e| e.serial == serial)
    }

    fn read(&mut self, index: usize) -> Option<Step> {
        let entry = self.slots.get_mut(index)?.as_mut()?;
        Some(entry.partial.read(&mut entry.stream))
    }

    fn watch(&mut self, epoll: &Epoll, index: usize) {
        let Some(entry) = self.slots.get(index).and_then(Option::as_ref) else {
            return;
        };
        let interest = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP,
            FIRST_KEY + index as u64,
        );
        if let Err(e) = epoll.add(entry.stream.as_fd(), interest) {
            self.close(index, &format!("cannot wait for its PROXY header: {e}"));
        }
    }

    /// True for the epoll keys of this set.
    pub fn owns(key: u64) -> bool {
        (FIRST_KEY..=LAST_KEY).contains(&key)
    }

    /// The connection under `key` has something to read: returns it (out
    /// of `epoll`) if that completed its header.
    pub fn ready(&mut self, epoll: &Epoll, key: u64) -> Option<Arrived<T>> {
        let index = usize::try_from(key.checked_sub(FIRST_KEY)?).ok()?;
        match self.read(index)? {
            Step::More => None,
            Step::Refused(why) => {
                self.close(index, &why);
                None
            }
            Step::Done(source) => {
                let entry = self.take(index)?;
                let _ = epoll.delete(entry.stream.as_fd());
                Some(Arrived {
                    stream: entry.stream,
                    source,
                    tag: entry.tag,
                })
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.len() == self.free.len()
    }

    fn close(&mut self, index: usize, why: &str) {
        if let Some(entry) = self.take(index) {
            refuse(entry.balancer, why, &self.stats);
        }
    }

    /// Empties slot `index`; its queue entry is skipped when reached.
    fn take(&mut self, index: usize) -> Option<Entry<T>> {
        let entry = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        if self.is_empty() {
            self.slots.clear();
            self.free.clear();
            self.queue.clear();
            self.unwatched.clear();
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets::testing::{pair, ready_keys};
    use nix::sys::epoll::EpollCreateFlags;
    use std::io::Write;

    const LOCAL: [u8; 16] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn headers_complete_at_once_later_or_never() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        let stats = Arc::new(Stats::default());
        let mut waiting = Waiting::new(Duration::from_secs(60), Arc::clone(&stats));
        let balancer: SocketAddr = "127.0.0.1:9".parse().unwrap();

        // Already there: served at once, nothing kept.
        let (ours, mut theirs) = pair();
        theirs.write_all(&LOCAL).unwrap();
        let arrived = waiting.admit(ours, balancer, 'a').expect("complete");
        assert_eq!((arrived.source, arrived.tag), (None, 'a'));
        assert!(waiting.is_empty());

        // Half of it: kept unwatched, then completed before the worker comes around.
        let nothing = |_: Arrived<char>| panic!("nothing arrives");
        let (ours, mut quick) = pair();
        quick.write_all(&LOCAL[..5]).unwrap();
        let t0 = Instant::now();
        assert!(waiting.admit(ours, balancer, 'b').is_none());
        let promotion = waiting.tend(&epoll, t0, nothing).expect("a promotion");
        assert!(promotion <= Instant::now() + WATCH_AFTER);
        quick.write_all(&LOCAL[5..]).unwrap();
        // Not read again until LOOK_EVERY after that look.
        let mut served = Vec::new();
        assert_eq!(waiting.tend(&epoll, t0, |a| served.push(a.tag)), Some(promotion));
        assert!(served.is_empty());
        assert_eq!(
            waiting.tend(&epoll, t0 + LOOK_EVERY, |a| served.push(a.tag)),
            None
        );
        assert_eq!(served, ['b']);
        assert!(waiting.is_empty() && ready_keys(&epoll).is_empty());

        // Still half after WATCH_AFTER: registered, and completed by the rest.
        let (ours, mut slow) = pair();
        slow.write_all(&LOCAL[..5]).unwrap();
        assert!(waiting.admit(ours, balancer, 'c').is_none());
        let later = Instant::now() + WATCH_AFTER;
        let deadline = waiting.tend(&epoll, later, nothing).expect("a deadline");
        assert!(deadline > Instant::now() + Duration::from_secs(59));
        assert!(ready_keys(&epoll).is_empty());
        slow.write_all(&LOCAL[5..]).unwrap();
        assert_eq!(ready_keys(&epoll), [FIRST_KEY]);
        assert!(Waiting::<char>::owns(FIRST_KEY));
        let arrived = waiting.ready(&epoll, FIRST_KEY).expect("complete");
        assert_eq!(arrived.tag, 'c');
        assert!(waiting.is_empty());
        assert!(ready_keys(&epoll).is_empty(), "out of the epoll set");
        assert_eq!(waiting.tend(&epoll, Instant::now(), nothing), None);

        // Garbage, a close, and silence past the timeout: refused, counted.
        let (ours, mut junk) = pair();
        junk.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(waiting.admit(ours, balancer, 'd').is_none());
        let (ours, gone) = pair();
        assert!(waiting.admit(ours, balancer, 'e').is_none());
        let (ours, _silent) = pair();
        assert!(waiting.admit(ours, balancer, 'f').is_none());
        waiting.tend(&epoll, Instant::now() + WATCH_AFTER, nothing);
        drop(gone);
        for key in ready_keys(&epoll) {
            assert!(waiting.ready(&epoll, key).is_none());
        }
        assert_eq!(stats.proxy_refused.load(Ordering::Relaxed), 2);
        assert!(!waiting.is_empty());
        assert_eq!(
            waiting.tend(&epoll, Instant::now() + Duration::from_secs(61), nothing),
            None
        );
        assert!(waiting.is_empty());
        assert_eq!(stats.proxy_refused.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn blocking_read_for_one_connection() {
        let (mut ours, mut theirs) = pair();
        let mut tcp4 = b"PROXY TCP4 192.0.2.10 198.51.100.1 40000 17\r\n".to_vec();
        tcp4.extend(b"anything");
        theirs.write_all(&tcp4).unwrap();
        assert_eq!(
            read_blocking(&mut ours, Duration::from_secs(60)),
            Ok(Some("192.0.2.10:40000".parse().unwrap()))
        );
        let (mut ours, theirs) = pair();
        drop(theirs);
        assert!(read_blocking(&mut ours, Duration::from_secs(60)).is_err());
    }
}
