//! One driver thread (`Driver`): its share of the clients, each a slot
//! holding at most one connection (connect, read one frame until the server
//! closes, check it, close), all non-blocking in one epoll set; what it saw
//! (`Tally`).

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, SockAddr, Socket, Type};

use super::report::Options;
use crate::client::exchange::{self, Error, Failure};

/// How often each driver looks for connections past their timeout.
const SCAN_MS: u16 = 50;
const SCAN_EVERY: Duration = Duration::from_millis(SCAN_MS as u64);
/// Longer answers are counted malformed (no fortune comes near it), so a
/// server that never stops sending cannot fill the client's memory.
const ANSWER_LIMIT: usize = 1 << 20;

/// What one driver thread saw.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) micros: Vec<u32>,
    pub(super) errors: [u64; Failure::ALL.len()],
    pub(super) first_error: Option<String>,
}

/// One connection in flight: connect, read until the server closes.
struct Conn {
    socket: Socket,
    start: Instant,
    /// First for the connection to be made, then for the whole answer.
    deadline: Instant,
    connected: bool,
    answer: Vec<u8>,
}

/// One thread's share of the clients, each a slot holding at most one
/// connection, all non-blocking in one epoll set (edge-triggered: a
/// connection is added once and its descriptor's close removes it).
pub(super) struct Driver<'a> {
    o: &'a Options,
    addr: SockAddr,
    epoll: Epoll,
    slots: Vec<Option<Conn>>,
    active: usize,
    /// When the run began: under `--rate`, connection k is due k/rate after it.
    begin: Instant,
    /// No connection starts after this.
    end: Instant,
    /// Slots whose next connection waits for its turn under `--rate`, in
    /// the order they are due.
    paced: VecDeque<(Instant, usize)>,
    started: &'a AtomicU64,
    failed: &'a AtomicU64,
    tally: Tally,
}

impl<'a> Driver<'a> {
    pub(super) fn new(
        o: &'a Options,
        clients: usize,
        begin: Instant,
        started: &'a AtomicU64,
        failed: &'a AtomicU64,
    ) -> Result<Driver<'a>, Error> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| Error {
            failure: Failure::Other,
            message: format!("cannot create an epoll set: {e}"),
        })?;
        Ok(Driver {
            o,
            addr: SockAddr::from(o.addr),
            epoll,
            slots: (0..clients).map(|_| None).collect(),
            active: 0,
            begin,
            end: begin + o.duration,
            paced: VecDeque::new(),
            started,
            failed,
            tally: Tally::default(),
        })
    }

    /// Keeps every slot busy until the end or the shared count is used up,
    /// then lets the connections in flight finish.
    pub(super) fn run(mut self) -> Result<Tally, Error> {
        for i in 0..self.slots.len() {
            self.open(i);
        }
        let mut events = vec![EpollEvent::empty(); self.slots.len().clamp(1, 1024)];
        let mut next_scan = Instant::now() + SCAN_EVERY;
        while self.active > 0 || !self.paced.is_empty() {
            // Wake for the next paced start too (rounded up to the millisecond).
            let wait = self.paced.front().map_or(SCAN_MS, |&(due, _)| {
                let ms = due
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                u16::try_from(ms).unwrap_or(SCAN_MS).min(SCAN_MS)
            });
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(wait)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    return Err(Error {
                        failure: Failure::Other,
                        message: format!("waiting for connections (epoll_wait): {e}"),
                    });
                }
            };
            for event in &events[..n] {
                self.ready(event.data() as usize, event.events());
            }
            let now = Instant::now();
            while let Some(&(due, i)) = self.paced.front() {
                if due > now {
                    break;
                }
                self.paced.pop_front();
                if !self.start(i) {
                    self.open(i);
                }
            }
            if now >= next_scan {
                self.expire(now);
                next_scan = now + SCAN_EVERY;
            }
        }
        Ok(self.tally)
    }

    /// Starts the next connection in slot `i` (or queues it until its turn
    /// under `--rate`), if the bounds allow one; a connection that fails at
    /// once is counted and the next one tried.
    fn open(&mut self, i: usize) {
        loop {
            let k = self.started.fetch_add(1, Ordering::Relaxed);
            if k >= self.o.connections {
                return;
            }
            let now = Instant::now();
            let due = self.o.rate.map_or(now, |rate| {
                self.begin + Duration::from_secs_f64(k as f64 / f64::from(rate))
            });
            if due >= self.end || now >= self.end {
                return;
            }
            if due > now {
                self.paced.push_back((due, i));
                return;
            }
            if self.start(i) {
                return;
            }
        }
    }

    /// Connects slot `i` now; false if that failed at once (counted).
    fn start(&mut self, i: usize) -> bool {
        let start = Instant::now();
        match self.connect(i) {
            Ok(socket) => {
                self.slots[i] = Some(Conn {
                    socket,
                    start,
                    deadline: start + self.o.timeout,
                    connected: false,
                    answer: Vec::new(),
                });
                self.active += 1;
                true
            }
            Err(e) => {
                self.fail(Error::io(format!("cannot connect to {}", self.o.addr), &e));
                false
            }
        }
    }

    /// A non-blocking socket, connecting, in the epoll set with key `i`.
    fn connect(&self, i: usize) -> io::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(self.o.addr),
            Type::STREAM.nonblocking().cloexec(),
            None,
        )?;
        match socket.connect(&self.addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS as i32) => {}
            Err(e) => return Err(e),
        }
        let interest =
            EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
        self.epoll
            .add(&socket, EpollEvent::new(interest, i as u64))
            .map_err(io::Error::from)?;
        Ok(socket)
    }

    /// Slot `i`'s socket is ready: reads all there is (edge-triggered).
    fn ready(&mut self, i: usize, flags: EpollFlags) {
        let Some(conn) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !conn.connected && flags.contains(EpollFlags::EPOLLOUT) && !flags.contains(EpollFlags::EPOLLERR) {
            conn.connected = true;
            conn.deadline = Instant::now() + self.o.timeout;
        }
        // The server's FIN is in, so everything before it too: a read that
        // does not fill the buffer has reached the end (saves a read per
        // connection).
        let fin = flags.contains(EpollFlags::EPOLLRDHUP);
        let mut chunk = [0u8; 4096];
        let outcome = loop {
            match (&conn.socket).read(&mut chunk) {
                Ok(0) => break exchange::decode(self.o.protocol, &conn.answer).map(drop),
                Ok(n) if fin && n < chunk.len() && conn.answer.len() + n <= ANSWER_LIMIT => {
                    conn.answer.extend_from_slice(&chunk[..n]);
                    break exchange::decode(self.o.protocol, &conn.answer).map(drop);
                }
                Ok(n) if conn.answer.len() + n > ANSWER_LIMIT => {
                    break Err(Error {
                        failure: Failure::Malformed,
                        message: format!(
                            "the answer from {} is longer than {ANSWER_LIMIT} bytes",
                            self.o.addr
                        ),
                    });
                }
                Ok(n) => conn.answer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(io_error(self.o.addr, conn, &e)),
            }
        };
        self.finish(i, outcome);
    }

    /// Fails the connections past their deadline.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let Some(conn) = self.slots[i].as_ref().filter(|conn| conn.deadline <= now) else {
                continue;
            };
            let e = io_error(self.o.addr, conn, &ErrorKind::TimedOut.into());
            self.finish(i, Err(e));
        }
    }

    /// Closes slot `i`'s connection, counts it, and starts the next.
    fn finish(&mut self, i: usize, outcome: Result<(), Error>) {
        let Some(conn) = self.slots[i].take() else {
            return;
        };
        self.active -= 1;
        let start = conn.start;
        drop(conn); // the close is part of the latency
        match outcome {
            Ok(()) => {
                let us = start.elapsed().as_micros();
                self.tally.micros.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(e) => self.fail(e),
        }
        self.open(i);
    }

    fn fail(&mut self, e: Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.tally.errors[e.failure as usize] += 1;
        self.tally.first_error.get_or_insert(e.message);
    }
}

/// What went wrong with `conn` to `addr`, named by how far it got.
fn io_error(addr: SocketAddr, conn: &Conn, e: &io::Error) -> Error {
    let doing = if conn.connected {
        format!("reading from {addr}")
    } else {
        format!("cannot connect to {addr}")
    };
    Error::io(doing, e)
}
