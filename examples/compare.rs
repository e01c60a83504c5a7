//! The comparison benchmark (run it with `bench/compare`, which builds what
//! it needs first). In one run, contenders alternating round by round so
//! that a busy machine hurts them alike: fortune-server (`Accept=no`, its
//! own listening socket), the floor (`examples/floor.rs`), Qt 5's and Qt 6's
//! `fortuneserver` and `threadedfortuneserver`, at 1, 64 and 256 clients,
//! then 1,000. For every run: conn/s, latency, failures, and the server's
//! CPU time per connection (utime + stime from `/proc/PID/stat` over the
//! run, divided by the connections served), which does not depend on how
//! fast the client is; medians over the rounds, ratios to the floor's. Then
//! the service's peak RSS with 10,000 idle connections held open, then
//! `Accept=yes` under `systemd-socket-activate --accept` against a static C
//! write-and-exit program; then the table of targets (issue 10). Prints a
//! Markdown report (bench/RESULTS.md) on stdout, progress on stderr.
//! Loopback only; every run is bounded in time and count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use fortune_server::client::Failure;
use fortune_server::client::bench::{self, Options, Report};
use fortune_server::wire::Protocol;

// Starting servers and finding their port, as the integration tests do.
#[path = "../tests/util/process.rs"]
mod process;

fn free_port() -> Result<u16, String> {
    process::free_port().map_err(|e| format!("no free loopback port: {e}"))
}

const SERVER: &str = "target/release/fortune-server";
const FLOOR: &str = "target/release/examples/floor";
const STATIC: &str = "target/bench/static-fortune";
/// fortune-server linked statically (`-C target-feature=+crt-static`), to
/// show what process start-up costs under `Accept=yes`.
const SERVER_STATIC: &str = "target/bench/fortune-server-static";
/// The `Accept=yes` contenders; the last is the reference.
const PER_CONNECTION: [(&str, &str); 3] = [
    ("fortune-server", SERVER),
    ("fortune-server, crt-static build", SERVER_STATIC),
    ("static C write-and-exit", STATIC),
];
const REFERENCE: usize = PER_CONNECTION.len() - 1;
/// Qt 5's examples (Debian's qtbase5-examples) and Qt 6's (built by
/// bench/qt6-examples): (contender name, binary).
const QT: [(&str, &str); 4] = [
    (
        "Qt 5 fortuneserver",
        "/usr/lib/x86_64-linux-gnu/qt5/examples/network/fortuneserver/fortuneserver",
    ),
    (
        "Qt 5 threadedfortuneserver",
        "/usr/lib/x86_64-linux-gnu/qt5/examples/network/threadedfortuneserver/threadedfortuneserver",
    ),
    (
        "Qt 6 fortuneserver",
        "target/qt6-examples/build/fortuneserver/fortuneserver",
    ),
    (
        "Qt 6 threadedfortuneserver",
        "target/qt6-examples/build/threadedfortuneserver/threadedfortuneserver",
    ),
];
/// The Qt contender the targets compare with.
const QT_TARGET: &str = "Qt 6 fortuneserver";
const LEVELS: [usize; 3] = [1, 64, 256];
/// The crowd run, after the levels (its peak RSS reported apart).
const CROWD: usize = 1_000;
const IDLE: usize = 10_000;
/// Clients served beside the idle connections.
const BESIDE_IDLE: usize = 64;
/// Time for a server to finish the closes in flight before its CPU is read.
const SETTLE: Duration = Duration::from_millis(100);

#[derive(Parser)]
#[command(about = "Compares fortune-server with the floor, Qt's servers and a static C program")]
struct Args {
    /// Rounds; each contender is measured once per round and level, the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

/// A server process we started; killed (by its PID) when dropped.
struct Contender {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Contender {
    /// Starts `cmd` and finds the TCP port it listens on (`ss -ltnp`), since
    /// Qt's examples choose theirs at random and print it only in their window.
    fn start(name: &'static str, mut cmd: Command) -> Result<Contender, String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id();
        let mut contender = Contender {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let port = process::listening_port(pid, Duration::from_secs(10))
            .ok_or_else(|| format!("{name} (pid {pid}) listens on no TCP port after 10 s"))?;
        contender.addr.set_port(port);
        Ok(contender)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    fn peak_rss(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()));
        status
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .unwrap_or(0.0)
            / 1024.0
    }

    /// CPU time so far, in clock ticks: the process's own (utime + stime,
    /// all its threads), or with `reaped` that of its waited-for children
    /// (cutime + cstime), as for `systemd-socket-activate --accept`.
    fn cpu_ticks(&self, reaped: bool) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields from the third (state) on; the command may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let at = if reaped { 13 } else { 11 }; // fields 16-17, or 14-15
        fields
            .get(at..at + 2)
            .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
    }

    /// One run of `clients` clients, with the server's CPU time over it.
    fn measure(
        &self,
        clients: usize,
        seconds: f64,
        idle: usize,
        tick: f64,
        reaped: bool,
    ) -> Result<Run, String> {
        let before = self.cpu_ticks(reaped);
        let report = load(self.addr, clients, seconds, idle)?;
        std::thread::sleep(SETTLE);
        let server_cpu = (self.cpu_ticks(reaped).saturating_sub(before)) as f64 / tick;
        Ok(Run { report, server_cpu })
    }
}

fn service(extra: &[&str]) -> Command {
    let mut cmd = Command::new(SERVER);
    cmd.args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(extra);
    process::clean_env(&mut cmd);
    cmd
}

fn qt(binary: &str) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env("QT_QPA_PLATFORM", "offscreen");
    cmd
}

/// `fortune-client bench` with its defaults (two driver threads).
fn load(addr: SocketAddr, clients: usize, seconds: f64, idle: usize) -> Result<Report, String> {
    let options = Options {
        addr,
        protocol: Protocol::Qt,
        clients,
        threads: 2,
        duration: Duration::from_secs_f64(seconds),
        // Far above what this machine does in `seconds`: time is the bound that acts.
        connections: (200_000.0 * seconds) as u64,
        rate: None,
        timeout: Duration::from_secs(5),
        idle,
        progress: false,
    };
    bench::run(&options).map_err(|e| e.to_string())
}

/// One measurement: what the client saw, and the server's CPU seconds.
struct Run {
    report: Report,
    server_cpu: f64,
}

impl Run {
    /// Server CPU per connection served, in microseconds.
    fn server_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.report.ok.max(1) as f64
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The rounds of one contender at one level, summed up: medians, but the
/// worst maximum latency and every failure.
struct Summary {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    failed: u64,
    /// Failed connections by kind, in `Failure::ALL` order.
    errors: [u64; Failure::ALL.len()],
    server_us: f64,
    client_us: f64,
}

impl Summary {
    /// "0", or the count and its kinds: "131 (timeout 131)".
    fn failures(&self) -> String {
        if self.failed == 0 {
            return "0".into();
        }
        let kinds: Vec<String> = Failure::ALL
            .iter()
            .zip(self.errors)
            .filter(|&(_, n)| n > 0)
            .map(|(f, n)| format!("{} {n}", f.name()))
            .collect();
        format!("{} ({})", self.failed, kinds.join(", "))
    }
}

fn summarize(runs: &[Run]) -> Summary {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    Summary {
        rate: med(&|r| r.report.rate()),
        p50_ms: med(&|r| ms(r.report.latency.p50)),
        p99_ms: med(&|r| ms(r.report.latency.p99)),
        max_ms: runs.iter().map(|r| ms(r.report.latency.max)).fold(0.0, f64::max),
        failed: runs.iter().map(|r| r.report.failed()).sum(),
        errors: runs.iter().fold([0; Failure::ALL.len()], |mut sum, r| {
            for (s, n) in sum.iter_mut().zip(r.report.errors) {
                *s += n;
            }
            sum
        }),
        server_us: med(&Run::server_us),
        client_us: med(&|r| r.report.cpu_per_connection().as_secs_f64() * 1e6),
    }
}

fn note(s: &str) {
    eprintln!("compare: {s}");
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown CPU")
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {}", kernel.trim())
}

/// The 1-minute load average.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of /proc/PID/stat.
fn clock_tick() -> Result<f64, String> {
    command_output("getconf", &["CLK_TCK"])
        .parse::<f64>()
        .ok()
        .filter(|&t| t > 0.0)
        .ok_or_else(|| "getconf CLK_TCK gives no tick rate".to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every contender at every level (and the crowd), rotated each round so
/// that none always runs first; the load average seen at each round start.
struct Rounds {
    runs: BTreeMap<(usize, usize), Vec<Run>>,
    loads: Vec<f64>,
}

fn rounds(
    contenders: &[Contender],
    levels: &[usize],
    args: &Args,
    tick: f64,
    reaped: bool,
) -> Result<Rounds, String> {
    let mut runs: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    let mut loads = Vec::new();
    let n = contenders.len();
    for round in 0..args.rounds as usize {
        loads.push(load1());
        for &clients in levels {
            for k in 0..n {
                let i = (k + round) % n;
                let c = &contenders[i];
                let r = c.measure(clients, args.seconds, 0, tick, reaped)?;
                note(&format!(
                    "round {}/{} {clients:>4} clients {:<32} {:>7.0}/s, server {:>6.1} us/conn, client {:>5.1} us/conn",
                    round + 1,
                    args.rounds,
                    c.name,
                    r.report.rate(),
                    r.server_us(),
                    r.report.cpu_per_connection().as_secs_f64() * 1e6
                ));
                runs.entry((i, clients)).or_default().push(r);
            }
        }
    }
    Ok(Rounds { runs, loads })
}

impl Rounds {
    fn summary(&self, i: usize, clients: usize) -> Summary {
        summarize(&self.runs[&(i, clients)])
    }
}

const TABLE_HEAD: &str = "| server | clients | conn/s | x floor | p50 ms | p99 ms | p99 x floor | max ms | failed | server CPU/conn | x floor | client CPU/conn | peak RSS |\n\
                          |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

/// One row per contender and level, against the floor (index `floor`).
fn table(contenders: &[Contender], r: &Rounds, levels: &[usize], floor: usize, peak: &[f64]) -> String {
    let mut out = String::from(TABLE_HEAD);
    for (i, c) in contenders.iter().enumerate() {
        for &clients in levels {
            let (s, f) = (r.summary(i, clients), r.summary(floor, clients));
            out += &format!(
                "| {} | {clients} | {:.0} | {:.2}x | {:.3} | {:.3} | {:.2}x | {:.1} | {} | {:.1} us | {:.2}x | {:.1} us | {:.1} MiB |\n",
                c.name,
                s.rate,
                s.rate / f.rate,
                s.p50_ms,
                s.p99_ms,
                s.p99_ms / f.p99_ms,
                s.max_ms,
                s.failures(),
                s.server_us,
                s.server_us / f.server_us,
                s.client_us,
                peak[i]
            );
        }
    }
    out
}

fn load_range(loads: &[f64]) -> String {
    let lo = loads.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = loads.iter().copied().fold(0.0, f64::max);
    format!("{lo:.2} to {hi:.2}")
}

/// "1 client", "64 clients".
fn plural(clients: usize) -> String {
    format!("{clients} client{}", if clients == 1 { "" } else { "s" })
}

/// One row of the targets table.
struct Target {
    what: String,
    measured: String,
    target: &'static str,
    pass: bool,
}

fn target(what: impl Into<String>, measured: String, target: &'static str, pass: bool) -> Target {
    Target {
        what: what.into(),
        measured,
        target,
        pass,
    }
}

fn run(args: &Args) -> Result<(), String> {
    let needed = [SERVER, FLOOR, STATIC, SERVER_STATIC]
        .into_iter()
        .chain(QT.iter().map(|(_, b)| *b));
    for path in needed {
        if !Path::new(path).exists() {
            return Err(format!("{path} is missing: run bench/compare, which builds it"));
        }
    }
    let tick = clock_tick()?;
    let started = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let versions = command_output(
        "dpkg-query",
        &[
            "-W",
            "-f",
            "${Package} ${Version}, ",
            "qtbase5-examples",
            "qt6-base-dev",
        ],
    );
    let mut out = String::new();

    // Accept=no: every contender up at once, measured in turn.
    let mut contenders = vec![
        Contender::start("fortune-server", service(&[]))?,
        Contender::start("floor", Command::new(FLOOR))?,
    ];
    for (name, binary) in QT {
        contenders.push(Contender::start(name, qt(binary))?);
    }
    let (svc, floor) = (0, 1);
    let qt_target = contenders
        .iter()
        .position(|c| c.name == QT_TARGET)
        .ok_or("no Qt 6 fortuneserver contender")?;
    for c in &contenders {
        note(&format!("{} on {} (pid {})", c.name, c.addr, c.pid()));
        load(c.addr, 64, 0.5, 0)?; // warm-up: page cache, thread pools
    }
    let levels = rounds(&contenders, &LEVELS, args, tick, false)?;
    let peak: Vec<f64> = contenders.iter().map(Contender::peak_rss).collect();
    let crowd = rounds(&contenders, &[CROWD], args, tick, false)?;
    let crowd_peak: Vec<f64> = contenders.iter().map(Contender::peak_rss).collect();

    out += &format!(
        "## Comparison\n\n\
         `bench/compare` ({} rounds of {} s per contender and level, contenders alternating, \
         medians of the rounds; the worst max), run {started} on {}; {}. \
         Client and servers share the machine, over loopback. The client is \
         `fortune-client bench` (2 threads driving non-blocking connections with epoll: \
         connect, read one frame, check it, close). **Server CPU/conn** is the server \
         process's utime+stime (`/proc/PID/stat`, {tick} ticks/s) over the run, divided by \
         the connections it served: it does not depend on how fast the client is, and the \
         ratios measured in the same run are what to compare on a shared machine. \
         **Client CPU/conn** is the client's own (getrusage), for scale.\n\n",
        args.rounds,
        args.seconds,
        machine(),
        versions.trim_end_matches([',', ' ']),
    );
    out += &format!(
        "Load average (1 min) at the round starts: {}, with the clients at 1, 64 and 256; \
         {} for {CROWD} clients.\n\n",
        load_range(&levels.loads),
        load_range(&crowd.loads)
    );
    out += "### Accept=no: 1, 64 and 256 clients\n\nPeak RSS: VmHWM after these runs.\n\n";
    out += &table(&contenders, &levels, &LEVELS, floor, &peak);
    out += &format!("\n### Accept=no: {CROWD} clients\n\nPeak RSS: VmHWM after these runs too.\n\n");
    out += &table(&contenders, &crowd, &[CROWD], floor, &crowd_peak);
    drop(contenders);

    // 10,000 idle connections held open (a long --timeout keeps the service
    // waiting on them) while clients are served, alternating with the same
    // clients alone, on one fresh service. They all come from 127.0.0.1:
    // lift the per-source cap, which would close most of them.
    note(&format!("holding {IDLE} idle connections, alternating with none"));
    let idle_svc = Contender::start(
        "fortune-server",
        service(&["--timeout", "120", "--max-per-source", "0"]),
    )?;
    let (mut alone, mut beside_idle) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let a = idle_svc.measure(BESIDE_IDLE, args.seconds, 0, tick, false)?;
        let b = idle_svc.measure(BESIDE_IDLE, args.seconds, IDLE, tick, false)?;
        note(&format!(
            "round {} {BESIDE_IDLE} clients: {:.0}/s alone, {:.0}/s beside {IDLE} idle",
            round + 1,
            a.report.rate(),
            b.report.rate()
        ));
        alone.push(a);
        beside_idle.push(b);
    }
    let idle_rss = idle_svc.peak_rss();
    drop(idle_svc);
    let (alone, idle_sum) = (summarize(&alone), summarize(&beside_idle));
    out += &format!(
        "\n### Accept=no with {IDLE} idle connections held open (a fresh service, `--timeout 120`)\n\n\
         | {BESIDE_IDLE} clients | conn/s | p50 ms | p99 ms | max ms | failed | server CPU/conn |\n\
         |---|---:|---:|---:|---:|---:|---:|\n"
    );
    let beside = format!("beside {IDLE} idle");
    for (what, s) in [("alone", &alone), (beside.as_str(), &idle_sum)] {
        out += &format!(
            "| {what} | {:.0} | {:.3} | {:.3} | {:.1} | {} | {:.1} us |\n",
            s.rate,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.failures(),
            s.server_us
        );
    }
    out += &format!("\nService peak RSS (VmHWM) over this part: {idle_rss:.1} MiB.\n");

    // Accept=yes: one process per connection; their CPU is what
    // systemd-socket-activate reaped.
    let mut per_conn = Vec::new();
    for (name, program) in PER_CONNECTION {
        let c = Contender::start(
            name,
            process::socket_activate(
                &["--accept", "-l", &format!("127.0.0.1:{}", free_port()?)],
                program,
            ),
        )?;
        note(&format!("Accept=yes {name} on {}", c.addr));
        load(c.addr, 4, 0.5, 0)?;
        per_conn.push(c);
    }
    let yes = rounds(&per_conn, &[1, 16], args, tick, true)?;
    out += "\n### Accept=yes (`systemd-socket-activate --accept`, one process per connection)\n\n\
            Process start-up cost, for scale (no target). CPU/conn: the server processes' \
            user+system time, as reaped by systemd-socket-activate.\n\n\
            | program | clients | conn/s | x static C | p50 ms | p99 ms | max ms | failed | CPU/conn |\n\
            |---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (i, (name, _)) in PER_CONNECTION.iter().enumerate() {
        for clients in [1, 16] {
            let (s, base) = (yes.summary(i, clients), yes.summary(REFERENCE, clients));
            out += &format!(
                "| {name} | {clients} | {:.0} | {:.2}x | {:.3} | {:.3} | {:.1} | {} | {:.0} us |\n",
                s.rate,
                s.rate / base.rate,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.failures(),
                s.server_us
            );
        }
    }
    drop(per_conn);

    // The targets of issue 10, as ratios from this run.
    let mut targets = Vec::new();
    for clients in [64, 256] {
        let (s, f, q) = (
            levels.summary(svc, clients),
            levels.summary(floor, clients),
            levels.summary(qt_target, clients),
        );
        targets.push(target(
            format!("server CPU per connection vs the floor, {clients} clients"),
            format!("{:.1} us, {:.2}x", s.server_us, s.server_us / f.server_us),
            "<= 1.3x",
            s.server_us <= 1.3 * f.server_us,
        ));
        targets.push(target(
            format!("server CPU per connection vs {QT_TARGET}, {clients} clients"),
            format!("{:.1} us, {:.2}x", s.server_us, s.server_us / q.server_us),
            "<= 0.8x",
            s.server_us <= 0.8 * q.server_us,
        ));
    }
    for (clients, min) in [(1, 0.9), (64, 0.95), (256, 0.95)] {
        let (s, f) = (levels.summary(svc, clients), levels.summary(floor, clients));
        targets.push(target(
            format!("conn/s vs the floor, {}", plural(clients)),
            format!("{:.0}/s, {:.2}x", s.rate, s.rate / f.rate),
            if clients == 1 { ">= 0.9x" } else { ">= 0.95x" },
            s.rate >= min * f.rate,
        ));
    }
    for clients in LEVELS {
        let (s, f) = (levels.summary(svc, clients), levels.summary(floor, clients));
        targets.push(target(
            format!("p99 latency vs the floor, {}", plural(clients)),
            format!("{:.3} ms, {:.2}x", s.p99_ms, s.p99_ms / f.p99_ms),
            "<= 1.3x",
            s.p99_ms <= 1.3 * f.p99_ms,
        ));
    }
    let worst_max = |i| {
        LEVELS
            .iter()
            .map(|&c| levels.summary(i, c).max_ms)
            .fold(0.0, f64::max)
    };
    let (worst_max, floor_max) = (worst_max(svc), worst_max(floor));
    targets.push(target(
        "max latency, 1 to 256 clients",
        // The floor's, for what the machine's load alone did.
        format!("{worst_max:.1} ms (floor: {floor_max:.1} ms)"),
        "< 50 ms",
        worst_max < 50.0,
    ));
    let failed: u64 = LEVELS.iter().map(|&c| levels.summary(svc, c).failed).sum::<u64>()
        + crowd.summary(svc, CROWD).failed
        + alone.failed
        + idle_sum.failed;
    targets.push(target(
        format!("failed connections, every fortune-server run (1 to {CROWD} clients, idle)"),
        failed.to_string(),
        "0",
        failed == 0,
    ));
    targets.push(target(
        "peak RSS under load (1 to 256 clients)",
        format!("{:.1} MiB", peak[svc]),
        "<= 8 MiB",
        peak[svc] <= 8.0,
    ));
    targets.push(target(
        format!("peak RSS with {IDLE} idle clients"),
        format!("{idle_rss:.1} MiB"),
        "<= 32 MiB",
        idle_rss <= 32.0,
    ));
    out += "\n### Targets (issue 10)\n\n| target | measured | target | |\n|---|---:|---:|---|\n";
    for t in &targets {
        out += &format!(
            "| {} | {} | {} | {} |\n",
            t.what,
            t.measured,
            t.target,
            if t.pass { "pass" } else { "FAIL" }
        );
    }
    out += &format!("\nLoad average (1 min) at the end: {:.2}.\n", load1());
    print!("{out}");
    Ok(())
}
