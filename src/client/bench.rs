//! `fortune-client bench`: concurrent clients, each looping connect, read
//! one frame, check it, close, until a time or connection bound; then the
//! rate, latency percentiles and failures by kind. The comparison benchmark
//! (`bench/compare`) calls [`run`] directly.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Error, Failure, cli::BenchArgs, exit};
use crate::wire::Protocol;

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Stack of each client thread: one small read buffer.
const CLIENT_STACK: usize = 128 * 1024;

/// What to run; `duration` and `connections` both bound it.
#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub clients: usize,
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
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum()
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
                "\"errors\":{{{}}},\"first_error\":{}}}"
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
                .map_or_else(|| "null".to_string(), json_string)
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

/// What one client thread saw.
struct Tally {
    micros: Vec<u32>,
    errors: [u64; Failure::ALL.len()],
    first_error: Option<String>,
}

/// Runs the clients; fails only if the idle connections cannot be opened.
pub fn run(o: &Options) -> Result<Report, Error> {
    crate::service::raise_fd_limit();
    let mut held = Vec::with_capacity(o.idle);
    for i in 0..o.idle {
        let stream = super::connect(&[o.addr], o.timeout).map_err(|e| Error {
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
    let started = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let begin = Instant::now();
    let deadline = begin + o.duration;
    let (tallies, elapsed) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..o.clients)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(CLIENT_STACK)
                    .spawn_scoped(scope, || client(o, deadline, &started, &failed))
            })
            .collect();
        let mut next = begin + PROGRESS_EVERY;
        let mut progress = Progress::new(o.progress);
        while !clients
            .iter()
            .all(|c| c.as_ref().map_or(true, |h| h.is_finished()))
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
        let tallies: Vec<Tally> = clients
            .into_iter()
            .filter_map(|c| c.ok().and_then(|h| h.join().ok()))
            .collect();
        (tallies, elapsed)
    });
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
    })
}

/// One client: connections until the deadline or the shared count is used up.
fn client(o: &Options, deadline: Instant, started: &AtomicU64, failed: &AtomicU64) -> Tally {
    let mut tally = Tally {
        micros: Vec::new(),
        errors: [0; Failure::ALL.len()],
        first_error: None,
    };
    let mut buf = Vec::with_capacity(4096);
    while started.fetch_add(1, Ordering::Relaxed) < o.connections {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        match exchange(o, &mut buf) {
            Ok(()) => {
                let us = t0.elapsed().as_micros();
                tally.micros.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                tally.errors[e.failure as usize] += 1;
                tally.first_error.get_or_insert(e.message);
            }
        }
    }
    tally
}

fn exchange(o: &Options, buf: &mut Vec<u8>) -> Result<(), Error> {
    let mut stream: TcpStream = super::connect(&[o.addr], o.timeout)?;
    super::read_to_close(&mut stream, buf, o.timeout)?;
    super::decode(o.protocol, buf).map(drop)
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

/// `fortune-client bench`: runs, prints, and says by its status whether
/// every connection succeeded.
pub fn run_cli(args: &BenchArgs) -> Result<u8, Error> {
    let addr = super::resolve(&args.common.target)?[0];
    let options = Options {
        addr,
        protocol: args.common.protocol,
        clients: args.clients as usize,
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
