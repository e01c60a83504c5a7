//! `fortune-client bench`: concurrent clients, each looping connect, read
//! one frame, check it, close, until a time or connection bound; then the
//! rate, latency percentiles, failures by kind and the client's own CPU per
//! connection. A few threads drive all the clients, each many non-blocking
//! connections in one epoll set, so that the client costs less CPU per
//! connection than the servers it measures. The comparison benchmark
//! (`bench/compare`) calls [`run`] directly.
//!
//! [`report`]: what a run is asked and what it measured, as a table or
//! JSON; [`driver`]: one driver thread, its connections in one epoll set;
//! [`progress`]: the progress line; this file starts the drivers, gathers
//! what they saw and runs `fortune-client bench`. `driver` uses `report`;
//! the others use none of them.

pub mod driver;
pub mod progress;
pub mod report;

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;

use super::cli::BenchArgs;
use super::exchange::{self, Error, Failure, exit};
use driver::{Driver, Tally};
use progress::Progress;

pub use report::{Latency, Options, Report};

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Stack of each driver thread: one small read buffer.
const DRIVER_STACK: usize = 256 * 1024;

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
    let (started, failed) = (&started, &failed);
    let (tallies, elapsed) = std::thread::scope(|scope| {
        let drivers: Vec<_> = (0..threads)
            .map(|t| {
                // The clients shared out as evenly as they go.
                let clients = o.clients / threads + usize::from(t < o.clients % threads);
                std::thread::Builder::new()
                    .stack_size(DRIVER_STACK)
                    .spawn_scoped(scope, move || {
                        Driver::new(o, clients, begin, started, failed)?.run()
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
        rate: args.rate,
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
