//! Reliability under abuse, with real sockets on loopback: slow, numerous,
//! hostile and vanishing clients, descriptor exhaustion, and SIGTERM/SIGHUP
//! under load. Every test is bounded in count and time and prints its
//! figures (util::figure; tests/run shows them). They run one at a time
//! (SERIAL): they measure latency and count descriptors.

mod util;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{self, sockopt};
use nix::unistd::Pid;
use util::{Cmd, Running, figure, free_port, loopback, serial};

/// What one client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A whole Qt frame (u32 BE length matching what followed), then EOF.
    Complete,
    /// Some bytes, then EOF, but not a whole frame.
    Partial,
    /// Accepted, then closed without a byte.
    Empty,
    /// ECONNRESET (or EPIPE) on an accepted connection.
    Reset,
    /// ECONNREFUSED: nobody listening (fine after the listener closed).
    Refused,
    TimedOut,
    Other,
}

fn outcome_of(e: &std::io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => Outcome::Reset,
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
        _ => Outcome::Other,
    }
}

fn frame_outcome(bytes: &[u8]) -> Outcome {
    match bytes {
        [] => Outcome::Empty,
        [a, b, c, d, rest @ ..] if u32::from_be_bytes([*a, *b, *c, *d]) as usize == rest.len() => {
            Outcome::Complete
        }
        _ => Outcome::Partial,
    }
}

/// Reads to EOF; a read error wins over what was read.
fn read_frame(stream: &mut TcpStream, limit: Duration) -> Outcome {
    let mut buf = Vec::new();
    match stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.read_to_end(&mut buf))
    {
        Ok(_) => frame_outcome(&buf),
        Err(e) => outcome_of(&e),
    }
}

/// One client: connect, read everything, close.
fn fetch(addr: SocketAddr) -> Outcome {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(mut s) => read_frame(&mut s, Duration::from_secs(5)),
        Err(e) => outcome_of(&e),
    }
}

/// Counts per outcome, printable.
#[derive(Default)]
struct Tally(BTreeMap<Outcome, usize>);

impl Tally {
    fn add(&mut self, o: Outcome) {
        *self.0.entry(o).or_default() += 1;
    }
    fn merge(&mut self, other: Tally) {
        for (o, n) in other.0 {
            *self.0.entry(o).or_default() += n;
        }
    }
    fn get(&self, o: Outcome) -> usize {
        self.0.get(&o).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.0.values().sum()
    }
    fn all_complete(&self) -> bool {
        self.get(Outcome::Complete) == self.total()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(o, n)| format!("{o:?} {n}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// `clients` threads fetch in a loop, each at most `each` times, until
/// `stop` is set or `limit` passes. Returns every outcome and latency.
/// A client stops at its first refusal (the listener is gone).
fn load(
    addr: SocketAddr,
    clients: usize,
    each: usize,
    limit: Duration,
    stop: &AtomicBool,
) -> (Tally, Vec<Duration>) {
    let end = Instant::now() + limit;
    let results: Vec<Vec<(Outcome, Duration)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    while seen.len() < each && !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let start = Instant::now();
                        let outcome = fetch(addr);
                        seen.push((outcome, start.elapsed()));
                        if outcome == Outcome::Refused {
                            break;
                        }
                    }
                    seen
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("client thread"))
            .collect()
    });
    let mut tally = Tally::default();
    let mut latencies = Vec::new();
    for (outcome, latency) in results.into_iter().flatten() {
        tally.add(outcome);
        latencies.push(latency);
    }
    (tally, latencies)
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
    latencies.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The service on a fresh loopback port, serving.
fn start(cmd: Cmd) -> (Running, SocketAddr) {
    let addr = loopback(free_port());
    let server = cmd.arg("--listen").arg(addr.to_string()).spawn();
    server.wait_for_log("Serving");
    (server, addr)
}

/// Waits until `probe`'s value is what `done` wants (or `limit`, only a
/// hang's, passes); returns its last value.
fn settle(limit: Duration, probe: impl Fn() -> usize, done: impl Fn(usize) -> bool) -> usize {
    let end = Instant::now() + limit;
    loop {
        let now = probe();
        if done(now) || Instant::now() > end {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The probe's value once it holds still for 200 ms (at most `limit`): e.g.
/// the server's descriptors after the last connections of a load closed.
fn steady(limit: Duration, probe: impl Fn() -> usize) -> usize {
    let end = Instant::now() + limit;
    let mut last = probe();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = probe();
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

/// Raises this test process's descriptor limit (soft to hard): it holds thousands of sockets.
fn need_fds(n: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= n,
        "this test needs {n} descriptors; the hard limit is {hard} (ulimit -Hn)"
    );
    if soft < n {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise RLIMIT_NOFILE");
    }
}

/// Item 1: 2,000 clients connect and never read nor close while 16 normal clients
/// loop: the normal clients see no error (their latency with and without the
/// 2,000 is a figure: bench/compare measures it); the 2,000 are each served a
/// fortune and closed by the timeout, not before.
#[test]
fn slowloris() {
    let _serial = serial();
    const HOGS: usize = 2000;
    need_fds(HOGS as u64 + 200);
    // Long enough that the loaded rounds end before the idle clients time out,
    // even on a busy machine.
    let timeout = 6;
    // All from 127.0.0.1, as if from 2,000 networks: no per-source cap
    // (one_source_cannot_hold_every_descriptor tests it).
    let (server, addr) =
        start(Cmd::server().args(["--timeout", &timeout.to_string(), "--max-per-source", "0"]));
    let never = AtomicBool::new(false);
    load(addr, 16, 20, Duration::from_secs(10), &never); // warm-up: threads, caches
    let idle_fds = steady(Duration::from_secs(5), || server.fds());
    let (mut quiet, mut quiet_lat, mut busy, mut busy_lat) =
        (Tally::default(), vec![], Tally::default(), vec![]);
    let (mut hogs, mut started, mut connected, mut held_fds) = (vec![], Instant::now(), Duration::ZERO, 0);
    // Unloaded and loaded rounds alternate, so that both see the same noise
    // from the (shared) machine; the last round's idle clients stay.
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let (tally, latencies) = load(addr, 16, 60, Duration::from_secs(20), &never);
        quiet.merge(tally);
        quiet_lat.extend(latencies);
        started = Instant::now();
        hogs = (0..HOGS)
            .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| server.fail(&format!("hog {i}: {e}"))))
            .collect();
        connected = started.elapsed();
        // Measure the steady state: the server has taken every idle client in.
        let taken = settle(Duration::from_secs(60), || server.fds(), |n| n >= idle_fds + HOGS);
        if taken < idle_fds + HOGS {
            server.fail(&format!("the idle clients were not all accepted: {taken} fds"));
        }
        let (tally, latencies) = load(addr, 16, 60, Duration::from_secs(20), &never);
        busy.merge(tally);
        busy_lat.extend(latencies);
        // Fewer than all (a figure) if the round outlasted --timeout on a busy machine.
        held_fds = server.fds();
        if round + 1 < ROUNDS {
            hogs.clear();
            settle(Duration::from_secs(60), || server.fds(), |n| n == idle_fds);
        }
    }
    let mid = started.elapsed();

    let (p50q, p99q) = (percentile(&mut quiet_lat, 0.5), percentile(&mut quiet_lat, 0.99));
    let (p50b, p99b) = (percentile(&mut busy_lat, 0.5), percentile(&mut busy_lat, 0.99));
    figure(
        "slowloris",
        &format!(
            "unloaded: {} fetches ({quiet}), p50 {}, p99 {}",
            quiet.total(),
            ms(p50q),
            ms(p99q)
        ),
    );
    figure(
        "slowloris",
        &format!(
            "with {HOGS} idle clients: {} fetches ({busy}), p50 {}, p99 {}",
            busy.total(),
            ms(p50b),
            ms(p99b)
        ),
    );
    figure(
        "slowloris",
        &format!(
            "p99 ratio {:.2}; {HOGS} connected in {}; the last loaded round ended {} after them \
             (--timeout {timeout} s); server fds idle {idle_fds}, holding {held_fds} then",
            p99b.as_secs_f64() / p99q.as_secs_f64(),
            ms(connected),
            ms(mid)
        ),
    );
    assert!(
        quiet.all_complete() && busy.all_complete(),
        "errors: unloaded {quiet}; loaded {busy}"
    );
    // The p99 ratio is a figure, not an assertion: on a shared machine a
    // timing bound fails for reasons of its own (bench/compare measures it).

    // Each hog was served its frame at once; the timeout then closes the server's side.
    let after = settle(
        Duration::from_secs(timeout + 60),
        || server.fds(),
        |n| n == idle_fds,
    );
    let closed_after = started.elapsed();
    let mut hog_tally = Tally::default();
    for hog in &mut hogs {
        hog_tally.add(read_frame(hog, Duration::from_secs(1)));
    }
    figure(
        "slowloris",
        &format!(
            "server fds back to {after} after {}; the idle clients read: {hog_tally}",
            ms(closed_after)
        ),
    );
    assert_eq!(
        after, idle_fds,
        "the idle clients were not closed by the {timeout}s timeout"
    );
    // A lower bound: only a server closing early breaks it, a slow machine
    // only lengthens closed_after.
    assert!(
        closed_after >= Duration::from_secs(timeout),
        "closed before the timeout"
    );
    assert!(hog_tally.all_complete(), "idle clients: {hog_tally}");
    server.stop().assert_code(0);
}

/// A fortune file holding one fortune of `chars` characters (served only
/// with `--max-entry` at least that).
fn big_fortune(chars: usize) -> util::Scratch {
    util::file_with("x".repeat(chars).as_bytes())
}

/// A fortune whose frame is larger than the largest send buffer (tcp_wmem)
/// plus what a client's receive window takes before it reads: a worker
/// serving it waits until its client reads. Returns the file and its
/// length, the `--max-entry` that lets it be served.
fn beyond_send_buffer() -> (util::Scratch, usize) {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    let wmem_max: usize = wmem
        .split_whitespace()
        .nth(2)
        .and_then(|m| m.parse().ok())
        .unwrap_or(4 << 20);
    let chars = (wmem_max + (1 << 20)) / 2;
    (big_fortune(chars), chars)
}

/// Item 2: 20 x --max-connections attempts at once, on two listening sockets:
/// at most the cap is served at a time (the rest wait in the backlog, the
/// cap is shown in STATUS=), and every accepted client gets a whole frame.
#[test]
fn flood() {
    let _serial = serial();
    const CAP: usize = 16;
    const ATTEMPTS: usize = 20 * CAP;
    // A connection stays in progress until its client reads, so the cap
    // limits how many get data.
    let (fortunes, chars) = beyond_send_buffer();
    let notify = util::NotifySocket::new();
    let second = loopback(free_port());
    // The 320 clients all come from 127.0.0.1: no per-source cap, whatever
    // the descriptor limit (it would be 1/8 of it).
    let (server, first) = start(
        Cmd::server()
            .args([
                "--max-connections",
                &CAP.to_string(),
                "--timeout",
                "10",
                "--max-per-source",
                "0",
                "--max-entry",
                &chars.to_string(),
                "--fortunes",
            ])
            .arg(fortunes.path())
            .args(["--listen", &second.to_string()])
            .env("NOTIFY_SOCKET", &notify.path),
    );
    let gate = Barrier::new(ATTEMPTS + 1);
    // Every client holds off reading until a STATUS= (every 2 s) has shown
    // the cap reached, then looks (peeks) before any reads: a read frees a slot.
    let release = Barrier::new(ATTEMPTS + 1);
    let looked = Barrier::new(ATTEMPTS);
    let at_cap = |m: &String| m.contains("STATUS=") && m.contains("at --max-connections");
    let (results, threads_at_cap): (Vec<(Outcome, bool)>, usize) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..ATTEMPTS)
            .map(|i| {
                let (gate, release, looked) = (&gate, &release, &looked);
                let addr = if i % 2 == 0 { first } else { second };
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn_scoped(scope, move || {
                        gate.wait();
                        let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(10));
                        release.wait();
                        let mut byte = [0u8; 1];
                        let had_data = connected.as_ref().is_ok_and(|s| {
                            s.set_nonblocking(true).is_ok() && s.peek(&mut byte).is_ok_and(|n| n > 0)
                        });
                        looked.wait();
                        match connected {
                            Ok(mut s) => {
                                let _ = s.set_nonblocking(false);
                                (read_frame(&mut s, Duration::from_secs(20)), had_data)
                            }
                            Err(e) => (outcome_of(&e), false),
                        }
                    })
                    .expect("client thread")
            })
            .collect();
        gate.wait();
        let end = Instant::now() + Duration::from_secs(60);
        while !notify.messages().iter().any(at_cap) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let threads_at_cap = server.threads();
        release.wait();
        let results = clients.into_iter().map(|c| c.join().expect("client")).collect();
        (results, threads_at_cap)
    });
    let mut tally = Tally::default();
    let mut served_at_once = 0;
    for (outcome, had_data) in &results {
        tally.add(*outcome);
        served_at_once += usize::from(*had_data);
    }
    let statuses: Vec<String> = notify
        .messages()
        .into_iter()
        .filter(|m| m.contains("STATUS="))
        .collect();
    let capped = statuses.iter().any(at_cap);
    figure(
        "flood",
        &format!(
            "{ATTEMPTS} attempts at --max-connections {CAP} on 2 sockets: {tally}; \
             clients with data before any read: {served_at_once}; server threads then: {threads_at_cap}; \
             STATUS showed the cap: {capped}"
        ),
    );
    assert_eq!(
        tally.get(Outcome::Complete),
        ATTEMPTS,
        "every client must get a whole frame: {tally}"
    );
    assert_eq!(
        served_at_once, CAP,
        "exactly --max-connections clients should be in progress at once"
    );
    assert!(capped, "no STATUS= said the cap was reached: {statuses:?}");
    // The workers and the main thread: no thread per waiting client.
    assert!(
        threads_at_cap <= CAP + 1,
        "{threads_at_cap} threads for a cap of {CAP}"
    );
    let done = server.stop();
    done.assert_code(0);
    assert!(
        !done.stderr.contains("not delivered"),
        "a client was dropped\n{}",
        done.report()
    );
}

/// Item 3: Under `ulimit -n 64`, 200 concurrent clients: the service runs out
/// of descriptors, backs off, logs it once per episode, and serves every
/// client in the end, without spinning (server.rs's `RESOURCE_BACKOFF`).
#[test]
fn fd_exhaustion() {
    let _serial = serial();
    const CLIENTS: usize = 200;
    // One source must be able to exhaust them here: no per-source cap.
    let (server, addr) = start(
        Cmd::server()
            .args(["--timeout", "2", "--max-per-source", "0"])
            .with_fd_limit(64),
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap_or_default();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or("?")
        .to_string();
    let gate = Barrier::new(CLIENTS);
    let cpu_before = server.cpu_time();
    let started = Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let gate = &gate;
                scope.spawn(move || {
                    gate.wait();
                    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                        Ok(s) => s,
                        Err(e) => return outcome_of(&e),
                    };
                    // Hold the connection a while after the fortune, as a
                    // slow client would: the server's descriptors run out.
                    let mut buf = Vec::new();
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    let mut len = [0u8; 4];
                    if let Err(e) = s.read_exact(&mut len) {
                        return outcome_of(&e);
                    }
                    std::thread::sleep(Duration::from_millis(300));
                    buf.extend_from_slice(&len);
                    match s.read_to_end(&mut buf) {
                        Ok(_) => frame_outcome(&buf),
                        Err(e) => outcome_of(&e),
                    }
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().expect("client")).collect()
    });
    let wall = started.elapsed();
    let cpu = server.cpu_time().saturating_sub(cpu_before);
    let mut tally = Tally::default();
    outcomes.iter().for_each(|&o| tally.add(o));
    let ran_out = server.log_count("pausing until descriptors free up");
    let recovered = server.log_count("descriptors available again");
    figure(
        "fd_exhaustion",
        &format!(
            "{CLIENTS} clients under '{open_files}': {tally} in {}; server CPU {} ({:.1}% of wall); \
             out-of-descriptor episodes logged {ran_out}, recoveries logged {recovered}",
            ms(wall),
            ms(cpu),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
        ),
    );
    assert!(
        tally.all_complete(),
        "every client must be served in the end: {tally}"
    );
    assert!(
        ran_out >= 1,
        "the service never ran out of descriptors: the test proves nothing"
    );
    assert!(
        recovered >= 1 && ran_out <= recovered + 1,
        "one warning per episode expected"
    );
    // Not a timing: a busy machine lengthens the wall time, not the server's
    // CPU time (0 ms here); only an accept loop that spins comes near it.
    assert!(cpu * 4 < wall, "the accept loop spun: CPU {cpu:?} in {wall:?}");
    server.stop().assert_code(0);
}

/// Item 4: SIGTERM in the middle of a 64-client load: every accepted client gets
/// a whole frame (the backlog is served too), nobody is reset, exit 0,
/// STOPPING=1. How long stopping took is a figure (the server bounds it by
/// --timeout itself).
#[test]
fn sigterm_under_load() {
    let _serial = serial();
    let timeout = 2;
    let notify = util::NotifySocket::new();
    let (mut server, addr) = start(
        Cmd::server()
            .args(["--timeout", &timeout.to_string()])
            .env("NOTIFY_SOCKET", &notify.path),
    );
    let never = AtomicBool::new(false);
    let mut stopped = None;
    let (tally, _) = std::thread::scope(|scope| {
        let clients = scope.spawn(|| load(addr, 64, 100_000, Duration::from_secs(15), &never));
        std::thread::sleep(Duration::from_millis(500));
        server.signal("TERM");
        let sent = Instant::now();
        let status = server.wait(Duration::from_secs(timeout + 60));
        stopped = Some((status, sent.elapsed()));
        clients.join().expect("load")
    });
    let (status, took) = stopped.expect("stopped");
    let stopping = notify
        .messages()
        .iter()
        .any(|m| m.lines().any(|l| l == "STOPPING=1"));
    figure(
        "sigterm",
        &format!(
            "64 clients, SIGTERM after 0.5 s: {tally}; exit {status:?} after {} (--timeout {timeout} s); \
             STOPPING=1 sent: {stopping}",
            ms(took)
        ),
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status\n{}",
        server.stderr()
    );
    assert!(tally.get(Outcome::Complete) > 0, "no load was served");
    let bad = tally.total() - tally.get(Outcome::Complete) - tally.get(Outcome::Refused);
    assert_eq!(
        bad,
        0,
        "partial, empty, reset or timed-out clients: {tally}\n{}",
        server.stderr()
    );
    assert!(stopping, "no STOPPING=1");
}

/// Issue 13: SIGTERM while clients are queued in the backlog behind clients
/// that left (reset before their accept): stopping serves every one queued
/// behind those. Linux 6.x hands reset connections out of accept (the
/// write then fails); others say ECONNABORTED, which must not end the
/// drain either (the classification is unit-tested in server.rs).
#[test]
fn stop_drains_the_backlog_past_clients_that_left() {
    let _serial = serial();
    const LEFT: usize = 5;
    const QUEUED: usize = 5;
    let (fortunes, chars) = beyond_send_buffer();
    let (mut server, addr) = start(
        Cmd::server()
            .args(["--max-connections", "1", "--timeout", "10", "--max-entry"])
            .arg(chars.to_string())
            .arg("--fortunes")
            .arg(fortunes.path()),
    );
    // The one worker waits for a client that does not read yet.
    let mut hog = TcpStream::connect(addr).expect("connect");
    let blocked_by = Instant::now() + Duration::from_secs(5);
    while !hog.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0) && Instant::now() < blocked_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    (0..LEFT).for_each(|_| reset_client(addr));
    let queued: Vec<TcpStream> = (0..QUEUED)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let (hog_outcome, mut tally) = std::thread::scope(|scope| {
        let readers: Vec<_> = queued
            .into_iter()
            .map(|mut s| scope.spawn(move || read_frame(&mut s, Duration::from_secs(10))))
            .collect();
        let hog_outcome = read_frame(&mut hog, Duration::from_secs(10));
        let mut tally = Tally::default();
        readers
            .into_iter()
            .for_each(|r| tally.add(r.join().expect("reader")));
        (hog_outcome, tally)
    });
    drop(hog);
    let status = server.wait(Duration::from_secs(15));
    tally.add(hog_outcome);
    figure(
        "stop_drain",
        &format!(
            "SIGTERM with {LEFT} reset and {QUEUED} waiting clients queued behind a slow one: {tally}; exit {status:?}"
        ),
    );
    assert_eq!(
        (tally.get(Outcome::Complete), status.and_then(|s| s.code())),
        (QUEUED + 1, Some(0)),
        "{tally}\n{}",
        server.stderr()
    );
}

/// Item 5: SIGHUP (reload) every 10 ms during a 64-client load, until 50
/// reloads are logged: no client notices.
#[test]
fn sighup_under_load() {
    let _serial = serial();
    let fortunes = util::file_with(b"one\ntwo\nthree\nfour\n");
    let (server, addr) = start(
        Cmd::server()
            .args(["--timeout", "2", "--fortunes"])
            .arg(fortunes.path()),
    );
    let pid = Pid::from_raw(server.pid() as i32);
    const RELOADS: usize = 50;
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let (tally, sent) = std::thread::scope(|scope| {
        let hup = scope.spawn(|| {
            // Signals sent while one is pending count once: send until the
            // reloads are seen (a bound only a hang reaches).
            let mut sent = 0;
            while server.log_count("reloaded") < RELOADS && sent < 6000 {
                if kill(pid, Signal::SIGHUP).is_ok() {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            done.store(true, Ordering::Relaxed);
            sent
        });
        let (tally, _) = load(addr, 64, 1_000_000, Duration::from_secs(120), &done);
        (tally, hup.join().expect("hup thread"))
    });
    let reloads = server.log_count("reloaded");
    figure(
        "sighup",
        &format!(
            "64 clients for {}, {sent} SIGHUPs sent, {reloads} reloads logged: {tally}",
            ms(started.elapsed())
        ),
    );
    assert!(
        tally.all_complete() && tally.total() > 0,
        "clients saw errors during reloads: {tally}"
    );
    assert!(reloads >= RELOADS, "only {reloads} reloads happened");
    server.stop().assert_code(0);
}

/// A client that resets the connection as soon as it is made (SO_LINGER 0, close).
fn reset_client(addr: SocketAddr) {
    if let Ok(s) = TcpStream::connect(addr) {
        let fd = OwnedFd::from(s);
        let _ = socket::setsockopt(
            &fd,
            sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        );
    }
}

/// A client that sends 1 MiB of junk before it reads.
fn junk_client(addr: SocketAddr) -> Outcome {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return outcome_of(&e),
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = s.write_all(&vec![b'j'; 1 << 20]) {
        return outcome_of(&e);
    }
    read_frame(&mut s, Duration::from_secs(10))
}

/// Item 6: Clients that reset right after connecting, or send 1 MiB of junk
/// before reading: logged, the others are served, and once the timeout has
/// passed the service holds as many descriptors and threads as before.
#[test]
fn resets_and_junk() {
    let _serial = serial();
    let (server, addr) = start(Cmd::server().args(["--timeout", "1"]));
    let fds_before = steady(Duration::from_secs(5), || server.fds());
    let threads_before = server.threads();
    let stop = AtomicBool::new(false);
    let (normal, junk) = std::thread::scope(|scope| {
        let normal = scope.spawn(|| load(addr, 8, 100_000, Duration::from_secs(10), &stop));
        let resets = scope.spawn(|| (0..200).for_each(|_| reset_client(addr)));
        let junk: Vec<_> = (0..20).map(|_| scope.spawn(|| junk_client(addr))).collect();
        let mut tally = Tally::default();
        junk.into_iter()
            .for_each(|j| tally.add(j.join().expect("junk client")));
        resets.join().expect("reset clients");
        stop.store(true, Ordering::Relaxed);
        (normal.join().expect("load").0, tally)
    });
    // Lingering connections go after the 1 s timeout, extra workers retire after 5 s idle.
    let fds_after = settle(Duration::from_secs(60), || server.fds(), |n| n == fds_before);
    let threads_after = settle(
        Duration::from_secs(60),
        || server.threads(),
        |n| n == threads_before,
    );
    let logged = server.log_count("not delivered");
    figure(
        "resets_and_junk",
        &format!(
            "200 resetting + 20 junk (1 MiB) clients among 8 normal ones: normal {normal}; junk {junk}; \
             resets logged {logged}; fds {fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}"
        ),
    );
    assert!(
        normal.all_complete() && normal.total() > 0,
        "normal clients: {normal}"
    );
    assert!(
        junk.all_complete(),
        "junk clients read their fortune after the junk: {junk}"
    );
    assert!(logged > 0, "no reset was logged\n{}", server.stderr());
    assert_eq!(
        (fds_after, threads_after),
        (fds_before, threads_before),
        "descriptors or threads leaked"
    );
    server.stop().assert_code(0);
}

/// The server's end of a fresh loopback connection, and the client's.
fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server_end, _) = listener.accept().expect("accept");
    (server_end, client)
}

/// Accept=yes / --inetd: a client that resets, or one that vanishes without
/// ever reading, ends the process with status 0 and a log line.
#[test]
fn inetd_client_resets_or_vanishes() {
    let _serial = serial();
    // A client that resets at once.
    let (server_end, client) = socket_pair();
    let fd = OwnedFd::from(client);
    socket::setsockopt(
        &fd,
        sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .expect("SO_LINGER");
    drop(fd);
    let reset = Cmd::server()
        .arg("--inetd")
        .stdin(OwnedFd::from(server_end))
        .run(Duration::from_secs(10));
    reset.assert_code(0);
    // A client that never reads a 4 MB fortune and never closes: the timeout ends it.
    let fortunes = big_fortune(2 << 20);
    let (server_end, client) = socket_pair();
    let started = Instant::now();
    let vanished = Cmd::server()
        .args([
            "--inetd",
            "--timeout",
            "1",
            "--max-entry",
            "2097152",
            "--fortunes",
        ])
        .arg(fortunes.path())
        .stdin(OwnedFd::from(server_end))
        .run(Duration::from_secs(10));
    let took = started.elapsed();
    drop(client);
    figure(
        "inetd",
        &format!(
            "reset client: exit {:?}, log {:?}; silent client: exit {:?} after {}, log {:?}",
            reset.status.and_then(|s| s.code()),
            reset.stderr.trim(),
            vanished.status.and_then(|s| s.code()),
            ms(took),
            vanished.stderr.trim()
        ),
    );
    vanished.assert_code(0);
    assert!(
        reset.stderr.contains("ended early"),
        "no log line\n{}",
        reset.report()
    );
    assert!(
        vanished.stderr.contains("timeout"),
        "no log line\n{}",
        vanished.report()
    );
}

/// One source (127.0.0.1) opens connections that never read nor close, past
/// its --max-per-source: the service holds at most the cap of them (counted
/// in /proc/PID/fd all along), closes the others at once without a fortune,
/// and clients from other networks (127.0.1.1, 127.0.2.1, 127.0.3.1) are
/// served meanwhile. The closed ones are counted and logged folded; once the
/// idle clients leave, their source's slots are free again.
#[test]
fn one_source_cannot_hold_every_descriptor() {
    let _serial = serial();
    const CAP: usize = 50;
    const HOGS: usize = 3 * CAP;
    const OTHER_NETS: u8 = 3;
    let notify = util::NotifySocket::new();
    let began = Instant::now();
    let (server, addr) = start(
        Cmd::server()
            .args(["--timeout", "30", "--max-per-source", &CAP.to_string()])
            .env("NOTIFY_SOCKET", &notify.path),
    );
    let idle_fds = steady(Duration::from_secs(5), || server.fds());
    let mut most = 0;
    let hogs: Vec<TcpStream> = (0..HOGS)
        .map(|i| {
            let hog = TcpStream::connect(addr).unwrap_or_else(|e| server.fail(&format!("hog {i}: {e}")));
            most = most.max(server.fds());
            hog
        })
        .collect();
    // Every hog accepted (the over-cap ones closed), then no more moving.
    settle(Duration::from_secs(60), || server.fds(), |n| n >= idle_fds + CAP);
    let held = steady(Duration::from_secs(5), || server.fds());
    most = most.max(held);
    let workers = server.threads() - 1;
    let started = Instant::now();
    let mut others = Tally::default();
    for net in 1..=OTHER_NETS {
        others.add(
            util::connect_from([127, 0, net, 1].into(), addr)
                .map(|mut s| read_frame(&mut s, Duration::from_secs(10)))
                .unwrap_or_else(|e| outcome_of(&e)),
        );
    }
    let others_took = started.elapsed();
    most = most.max(server.fds());
    let tally = what_held_clients_got(&hogs);
    // STATUS= is refreshed every 2 s: wait for the one that counts them.
    let closed = format!("{} closed over --max-per-source", HOGS - CAP);
    let end = Instant::now() + Duration::from_secs(60);
    let mut status_shows = false;
    while !status_shows && Instant::now() < end {
        status_shows = notify.messages().iter().any(|m| m.contains(&closed));
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(hogs);
    let after = settle(Duration::from_secs(60), || server.fds(), |n| n == idle_fds);
    let again = util::fetch(addr);
    let done = server.stop();
    let logged = done.stderr.matches("--max-per-source").count();
    figure(
        "per_source",
        &format!(
            "{HOGS} idle clients from 127.0.0.1 at --max-per-source {CAP}: server fds {idle_fds} idle, \
             at most {most} (held {held}); they saw {tally}; 127.0.1-3.1 meanwhile: {others} in {}; \
             fds after they left {after}; {logged} log lines about it",
            ms(others_took)
        ),
    );
    // accept(2) makes the descriptor before the source is known: one being
    // refused per worker (every thread but the main one) may add to the cap;
    // and the other networks' clients, served, are closed when the worker
    // next looks (a served connection's close is noticed late, see linger).
    let others_held = OTHER_NETS as usize;
    assert!(
        most <= idle_fds + CAP + workers + others_held,
        "the service held {most} descriptors: more than {idle_fds} + {CAP} (+ {workers} being refused, \
         + {others_held} of other networks)\n{}",
        done.report()
    );
    assert_eq!(held, idle_fds + CAP, "the cap's worth of clients is held");
    assert_eq!(
        (tally.get(Outcome::Complete), tally.get(Outcome::Empty)),
        (CAP, HOGS - CAP),
        "{CAP} served then held, the rest closed without a fortune: {tally}"
    );
    // A network shares its count with 127.0.0.0/24 only by a hash
    // collision (1 in 65,536, which makes its cap stricter): two of three.
    assert!(
        others.get(Outcome::Complete) >= 2,
        "the other networks were not served: {others}\n{}",
        done.report()
    );
    assert_eq!(after, idle_fds, "slots or descriptors leaked");
    assert!(
        !again.is_empty(),
        "127.0.0.1 is served again once its clients left"
    );
    assert!(status_shows, "no STATUS= with {closed:?}");
    // The cap at start, the first in full, one count at stop, the summary at
    // stop, a count per 10 s if the test took that long: not one per client.
    let most_lines = 4 + began.elapsed().as_secs() as usize / 10;
    assert!(
        logged <= most_lines,
        "{logged} lines for {} closed clients\n{}",
        HOGS - CAP,
        done.report()
    );
}

/// A reset storm (clients that connect and reset at once) makes a few log
/// lines, not one per client: the first in full, then a count per interval.
#[test]
fn reset_storm_logs_a_count() {
    let _serial = serial();
    const RESETS: usize = 1000;
    let (server, addr) = start(Cmd::server().args(["--timeout", "1"]));
    let lines_before = server.stderr().lines().count();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| (0..RESETS / 4).for_each(|_| reset_client(addr)));
        }
    });
    let done = server.stop();
    let took = started.elapsed();
    let lines: Vec<&str> = done.stderr.lines().skip(lines_before).collect();
    let failed = done
        .stderr
        .lines()
        .rfind(|l| l.contains("stopped;"))
        .and_then(|l| {
            l.split(", ")
                .find_map(|p| p.strip_suffix(" failed")?.parse::<usize>().ok())
        })
        .unwrap_or(0);
    figure(
        "reset_storm",
        &format!(
            "{RESETS} resetting clients: {failed} fortunes not delivered, {} log lines (SIGTERM and stop included)",
            lines.len()
        ),
    );
    assert!(
        failed >= 10,
        "only {failed} resets reached the service before its fortune: the test proves nothing\n{}",
        done.report()
    );
    // The first in full, a count per 10 s, one at stop, plus SIGTERM and
    // "stopped" (a bound that only grows on a slow machine).
    let most = 6 + took.as_secs() as usize / 10;
    assert!(
        lines.len() <= most,
        "{} log lines\n{}",
        lines.len(),
        done.report()
    );
}

/// What clients still connected got, without closing any: a fortune
/// (data waiting), or the door (end of stream).
fn what_held_clients_got(clients: &[TcpStream]) -> Tally {
    let mut tally = Tally::default();
    for client in clients {
        let mut byte = [0u8; 1];
        let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
        tally.add(match client.peek(&mut byte) {
            Ok(0) => Outcome::Empty,
            Ok(_) => Outcome::Complete,
            Err(e) => outcome_of(&e),
        });
    }
    tally
}

/// A client that connects and never reads, with the smallest receive buffer
/// and segments (MSS 536): what it is sent piles up in our socket buffer.
fn non_reader(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(1)?;
    socket.set_tcp_mss(536)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    Ok(socket)
}

/// Issue 19, item 2: 600 clients of one /24 that never read (receive buffer
/// 1, MSS 536) while the fortune is longer than a socket buffer takes: they
/// keep at most their network's share of the writers waiting (1/8 of
/// --max-connections, 64 of 512), the others are reset at once, and a client
/// of another network is served while they are all still connected. Its
/// wait is a figure; the bound on it (30 s, a hang) is far below the
/// writers' --timeout (120 s), so it is served only if a writer is free.
#[test]
fn one_network_cannot_take_every_writer() {
    let _serial = serial();
    const HOGS: usize = 600;
    const SHARE: usize = 512 / 8;
    need_fds(HOGS as u64 + 200);
    let chars = 100_000;
    let fortunes = big_fortune(chars);
    let (server, addr) = start(
        Cmd::server()
            .args([
                "--timeout",
                "120",
                "--max-entry",
                &chars.to_string(),
                "--fortunes",
            ])
            .arg(fortunes.path()),
    );
    let idle_threads = steady(Duration::from_secs(5), || server.threads());
    let started = Instant::now();
    let hogs: Vec<socket2::Socket> = (0..HOGS)
        .map(|i| {
            non_reader([127, 0, 0, 1].into(), addr)
                .unwrap_or_else(|e| server.fail(&format!("client {i}: {e}")))
        })
        .collect();
    let connected = started.elapsed();
    // Every one looked at: as many threads as writers, for a while.
    let threads = steady(Duration::from_secs(30), || server.threads());
    let rss = server.rss_kib();
    let asked = Instant::now();
    let other = util::connect_from([127, 0, 1, 1].into(), addr)
        .map(|mut s| read_frame(&mut s, Duration::from_secs(30)))
        .unwrap_or_else(|e| outcome_of(&e));
    let waited = asked.elapsed();
    drop(hogs);
    let done = server.stop();
    let reset = format!(
        "{} slow readers closed over their network's writer share",
        HOGS - SHARE
    );
    figure(
        "writer_share",
        &format!(
            "{HOGS} non-reading clients of 127.0.0.0/24 (rcvbuf 1, MSS 536, {chars}-char fortune) connected in {}; \
             server then: {threads} threads ({idle_threads} idle), RSS {rss} KiB; a client of 127.0.1.0/24 got {other:?} after {}",
            ms(connected),
            ms(waited)
        ),
    );
    assert_eq!(
        other,
        Outcome::Complete,
        "another network's client was not served while one /24 kept writers waiting\n{}",
        done.report()
    );
    // The share's writers beside the idle service's threads; one more may be starting.
    assert!(
        threads <= idle_threads + SHARE + 1,
        "{threads} threads ({idle_threads} idle): more than the /24's share of {SHARE} writers\n{}",
        done.report()
    );
    done.assert_stderr_has(&reset);
}

/// Issue 19, item 3: an IPv6 /48 (what one site gets) is one source. In a
/// network namespace of its own, nine /56s of 2001:db8:1::/48 each open
/// --max-per-source connections and hold them: the service holds one cap's
/// worth for the whole /48 and closes the rest at once without a fortune,
/// while a client of another /48 is served.
#[test]
fn an_ipv6_48_is_one_source() {
    if !util::require_root() || !util::require("ip") {
        return;
    }
    let _serial = serial();
    const CAP: usize = 16;
    const NETS: usize = 9;
    let ns = util::Netns::new("v6");
    ns.add_address("2001:db8:ffff::1/128");
    for n in 1..=NETS {
        ns.add_address(&format!("2001:db8:1:{n}00::1/128"));
    }
    ns.add_address("2001:db8:2::1/128");
    let addr: SocketAddr = "[2001:db8:ffff::1]:7017".parse().expect("an address");
    let server = ns
        .cmd(util::SERVER)
        .args(["--timeout", "30", "--max-per-source", &CAP.to_string()])
        .args(["--listen", &addr.to_string()])
        .spawn();
    server.wait_for_log("Serving");
    let idle_fds = steady(Duration::from_secs(5), || server.fds());
    let (tally, held, other) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter();
                let hogs: Vec<TcpStream> = (1..=NETS)
                    .flat_map(|n| (0..CAP).map(move |_| n))
                    .map(|n| {
                        let from = format!("2001:db8:1:{n}00::1").parse().expect("an address");
                        util::connect_from(from, addr)
                            .unwrap_or_else(|e| server.fail(&format!("from {from}: {e}")))
                    })
                    .collect();
                let held = steady(Duration::from_secs(5), || server.fds());
                let other = util::connect_from("2001:db8:2::1".parse().expect("an address"), addr)
                    .map(|mut s| read_frame(&mut s, Duration::from_secs(10)))
                    .unwrap_or_else(|e| outcome_of(&e));
                let tally = what_held_clients_got(&hogs);
                (tally, held, other)
            })
            .join()
            .expect("the clients' thread")
    });
    let done = server.stop();
    figure(
        "ipv6_48",
        &format!(
            "{NETS} /56s of 2001:db8:1::/48 x {CAP} held connections at --max-per-source {CAP}: they saw {tally}; \
             server fds {idle_fds} idle, {held} held; 2001:db8:2::1 got {other:?}"
        ),
    );
    assert_eq!(
        (tally.get(Outcome::Complete), tally.get(Outcome::Empty)),
        (CAP, NETS * CAP - CAP),
        "one cap's worth served for the whole /48, the rest closed: {tally}\n{}",
        done.report()
    );
    assert_eq!(held, idle_fds + CAP, "the /48 holds one cap\n{}", done.report());
    assert_eq!(
        other,
        Outcome::Complete,
        "another /48 was not served\n{}",
        done.report()
    );
    done.assert_stderr_has("2001:db8:1::/48 already holds");
}
