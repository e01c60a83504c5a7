//! `fortune-client bench`: concurrent clients, each looping connect, read
//! one frame, check it, close, until a time or connection bound; then the
//! rate, latency percentiles, failures by kind and the client's own CPU per
//! connection. A few threads drive all the clients, each many non-blocking
//! connections in one epoll set, so that the client costs less CPU per
//! connection than the servers it measures. The comparison benchmark
//! (`bench/compare`) calls [`run`] directly.

use std::fmt::Write as _;
use std::io::{self, ErrorKind, IsTerminal, Read, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use socket2::{Domain, SockAddr, Socket, Type};

use super::cli::BenchArgs;
use super::exchange::{self, Error, Failure, exit};
use crate::wire::Protocol;

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often each driver looks for connections past their timeout.
const SCAN_MS: u16 = 50;
const SCAN_EVERY: Duration = Duration::from_millis(SCAN_MS as u64);
/// Stack of each driver thread: one small read buffer.
const DRIVER_STACK: usize = 256 * 1024;
/// Longer answers are counted malformed (no fortune comes near it), so a
/// server that never stops sending cannot fill the client's memory.
const ANSWER_LIMIT: usize = 1 << 20;

/// What to run; `duration` and `connections` both bound it.
#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub clients: usize,
    /// Threads driving the clients (at most one per client).
    pub threads: usize,
    pub duration: Duration,
    pub connections: u64,
    pub timeout: Duration,
    /// Connections opened first and held, unread, until the end.
    pub idle: usize,
    pub progress: bool,
}

/// Latency percentiles of the successful connections, connect to close.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// From latencies in microseconds, sorted in place.
    fn of(micros: &mut [u32]) -> Latency {
        micros.sort_unstable();
        let at = |q: f64| match micros.len() {
            0 => Duration::ZERO,
            n => Duration::from_micros(micros[((n - 1) as f64 * q).round() as usize].into()),
        };
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub options: Options,
    pub elapsed: Duration,
    pub ok: u64,
    /// Failed connections, by kind, in [`Failure::ALL`] order.
    pub errors: [u64; Failure::ALL.len()],
    pub first_error: Option<String>,
    pub latency: Latency,
    /// CPU time (user + system) this process spent on the run.
    pub cpu: Duration,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// This client's CPU time per connection made (ok or failed).
    pub fn cpu_per_connection(&self) -> Duration {
        self.cpu
            .checked_div(u32::try_from(self.ok + self.failed()).unwrap_or(u32::MAX))
            .unwrap_or_default()
    }

    /// Successful connections per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let l = &self.latency;
        let mut s = format!(
            "fortune-client bench: {} ({}), {} clients, {} idle, {:.2} s\n",
            o.addr,
            o.protocol,
            o.clients,
            o.idle,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "connections  {} ok, {} failed, {:.0}/s",
            self.ok,
            self.failed(),
            self.rate()
        );
        let _ = writeln!(
            s,
            "latency      p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max)
        );
        let errors: Vec<String> = Failure::ALL
            .iter()
            .zip(self.errors)
            .map(|(f, n)| format!("{} {n}", f.name()))
            .collect();
        let _ = writeln!(s, "errors       {}", errors.join(", "));
        let _ = writeln!(
            s,
            "client CPU   {:.1} us per connection ({} threads, {:.2} s user+system)",
            self.cpu_per_connection().as_secs_f64() * 1e6,
            o.threads,
            self.cpu.as_secs_f64()
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "first error  {e}");
        }
        s
    }

    pub fn json(&self) -> String {
        let o = &self.options;
        let us = |d: Duration| d.as_micros();
        let l = &self.latency;
        let errors: Vec<String> = Failure::ALL
            .iter()
            .zip(self.errors)
            .map(|(f, n)| format!("\"{}\":{n}", f.name()))
            .collect();
        format!(
            concat!(
                "{{\"target\":\"{}\",\"protocol\":\"{}\",\"clients\":{},\"idle\":{},\"seconds\":{:.3},",
                "\"ok\":{},\"failed\":{},\"per_second\":{:.1},",
                "\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}},",
                "\"errors\":{{{}}},\"first_error\":{},",
                "\"threads\":{},\"client_cpu_us\":{}}}"
            ),
            o.addr,
            o.protocol,
            o.clients,
            o.idle,
            self.elapsed.as_secs_f64(),
            self.ok,
            self.failed(),
            self.rate(),
            us(l.p50),
            us(l.p90),
            us(l.p99),
            us(l.max),
            errors.join(","),
            self.first_error
                .as_deref()
                .map_or_else(|| "null".to_string(), json_string),
            o.threads,
            self.cpu.as_micros()
        )
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What one driver thread saw.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    errors: [u64; Failure::ALL.len()],
    first_error: Option<String>,
}

/// Runs the clients; fails only if the idle connections cannot be opened or
/// no driver thread can run.
pub fn run(o: &Options) -> Result<Report, Error> {
    crate::limits::raise_fd_limit();
    let mut held = Vec::with_capacity(o.idle);
    for i in 0..o.idle {
        let stream = exchange::connect(&[o.addr], o.timeout).map_err(|e| Error {
            message: format!("opening idle connection {} of {}: {e}", i + 1, o.idle),
            ..e
        })?;
        held.push(stream);
    }
    // Measure the steady state: wait until the server has answered every
    // idle connection (peeking leaves the bytes unread).
    let mut byte = [0u8; 1];
    for stream in &held {
        let _ = stream
            .set_read_timeout(Some(o.timeout))
            .and_then(|()| stream.peek(&mut byte));
    }
    let threads = o.threads.clamp(1, o.clients.max(1));
    let started = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let cpu_before = cpu_time();
    let begin = Instant::now();
    let end = begin + o.duration;
    let (started, failed) = (&started, &failed);
    let (tallies, elapsed) = std::thread::scope(|scope| {
        let drivers: Vec<_> = (0..threads)
            .map(|t| {
                // The clients shared out as evenly as they go.
                let clients = o.clients / threads + usize::from(t < o.clients % threads);
                std::thread::Builder::new()
                    .stack_size(DRIVER_STACK)
                    .spawn_scoped(scope, move || {
                        Driver::new(o, clients, end, started, failed)?.run()
                    })
            })
            .collect();
        let mut next = begin + PROGRESS_EVERY;
        let mut progress = Progress::new(o.progress);
        while !drivers
            .iter()
            .all(|d| d.as_ref().map_or(true, |h| h.is_finished()))
        {
            std::thread::sleep(Duration::from_millis(20));
            if Instant::now() >= next {
                progress.show(
                    begin,
                    started.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                );
                next += PROGRESS_EVERY;
            }
        }
        progress.clear();
        let elapsed = begin.elapsed();
        let tallies: Vec<Result<Tally, Error>> = drivers
            .into_iter()
            .filter_map(|d| d.ok().and_then(|h| h.join().ok()))
            .collect();
        (tallies, elapsed)
    });
    let cpu = cpu_time().saturating_sub(cpu_before);
    drop(held);
    if tallies.is_empty() {
        return Err(Error {
            failure: Failure::Other,
            message: "cannot start any client thread".to_string(),
        });
    }
    let mut micros = Vec::new();
    let mut errors = [0; Failure::ALL.len()];
    let mut first_error = None;
    for t in tallies {
        let t = t?;
        micros.extend(t.micros);
        for (sum, n) in errors.iter_mut().zip(t.errors) {
            *sum += n;
        }
        first_error = first_error.or(t.first_error);
    }
    Ok(Report {
        options: o.clone(),
        elapsed,
        ok: micros.len() as u64,
        errors,
        first_error,
        latency: Latency::of(&mut micros),
        cpu,
    })
}

/// User and system CPU time of this process so far.
fn cpu_time() -> Duration {
    let tv = |t: TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| tv(u.user_time()) + tv(u.system_time()))
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
struct Driver<'a> {
    o: &'a Options,
    addr: SockAddr,
    epoll: Epoll,
    slots: Vec<Option<Conn>>,
    active: usize,
    /// No connection starts after this.
    end: Instant,
    started: &'a AtomicU64,
    failed: &'a AtomicU64,
    tally: Tally,
}

impl<'a> Driver<'a> {
    fn new(
        o: &'a Options,
        clients: usize,
        end: Instant,
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
            end,
            started,
            failed,
            tally: Tally::default(),
        })
    }

    /// Keeps every slot busy until the end or the shared count is used up,
    /// then lets the connections in flight finish.
    fn run(mut self) -> Result<Tally, Error> {
        for i in 0..self.slots.len() {
            self.open(i);
        }
        let mut events = vec![EpollEvent::empty(); self.slots.len().clamp(1, 1024)];
        let mut next_scan = Instant::now() + SCAN_EVERY;
        while self.active > 0 {
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(SCAN_MS)) {
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
            if now >= next_scan {
                self.expire(now);
                next_scan = now + SCAN_EVERY;
            }
        }
        Ok(self.tally)
    }

    /// Starts the next connection in slot `i`, if the bounds allow one; a
    /// connection that fails at once is counted and the next one tried.
    fn open(&mut self, i: usize) {
        while self.started.fetch_add(1, Ordering::Relaxed) < self.o.connections {
            let start = Instant::now();
            if start >= self.end {
                return;
            }
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
                    return;
                }
                Err(e) => self.fail(Error::io(format!("cannot connect to {}", self.o.addr), &e)),
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

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per refresh otherwise.
struct Progress {
    on: bool,
    tty: bool,
}

impl Progress {
    fn new(on: bool) -> Progress {
        Progress {
            on,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, begin: Instant, started: u64, failed: u64) {
        if !self.on {
            return;
        }
        let secs = begin.elapsed().as_secs_f64();
        let line = format!(
            "bench: {secs:.0} s, {started} connections, {:.0}/s, {failed} failed",
            started as f64 / secs
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
    }

    fn clear(&mut self) {
        if self.on && self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

/// Two driver threads, or one on a single CPU: enough to keep a server busy
/// while leaving it the most CPU.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// `fortune-client bench`: runs, prints, and says by its status whether
/// every connection succeeded.
pub fn run_cli(args: &BenchArgs) -> Result<u8, Error> {
    let addr = exchange::resolve(&args.common.target)?[0];
    let options = Options {
        addr,
        protocol: args.common.protocol,
        clients: args.clients as usize,
        threads: args.threads.map_or_else(default_threads, |t| t as usize),
        duration: args.duration,
        connections: args.connections,
        timeout: args.common.timeout,
        idle: args.idle as usize,
        progress: !args.quiet,
    };
    let report = run(&options)?;
    let mut out = std::io::stdout().lock();
    let _ = if args.json {
        writeln!(out, "{}", report.json())
    } else {
        write!(out, "{}", report.table())
    };
    Ok(if report.failed() == 0 {
        exit::OK
    } else {
        exit::NETWORK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let l = Latency::of(&mut v);
        assert_eq!(
            [l.p50, l.p90, l.p99, l.max].map(|d| d.as_micros()),
            [51, 90, 99, 100]
        );
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd"), r#""a\"b\\c\u000ad""#);
    }
}
