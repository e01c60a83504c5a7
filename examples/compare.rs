//! The comparison benchmark (run it with `bench/compare`, which builds what
//! it needs first). In one run, contenders alternating round by round so
//! that a busy machine hurts them alike: fortune-server (`Accept=no`, its
//! own listening socket), the floor (`examples/floor.rs`), Qt's
//! `fortuneserver` and `threadedfortuneserver`, at 1, 16 and 64 clients;
//! then `Accept=yes` under `systemd-socket-activate --accept` against a
//! static C write-and-exit program; then the service's peak RSS with 10,000
//! idle connections held open while 16 clients keep being served. Prints a
//! Markdown report (bench/RESULTS.md) on stdout, progress on stderr.
//! Loopback only; every run is bounded in time and count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fortune_server::client::bench::{self, Options, Report};
use fortune_server::wire::Protocol;

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
const QT_EXAMPLES: &str = "/usr/lib/x86_64-linux-gnu/qt5/examples/network";
const LEVELS: [usize; 3] = [1, 16, 64];
const IDLE: usize = 10_000;

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
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(port) = listening_port(pid) {
                contender.addr.set_port(port);
                return Ok(contender);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{name} (pid {pid}) listens on no TCP port after 10 s"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    fn peak_rss(&self) -> f64 {
        self.status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
    }
}

/// The port process `pid` listens on, from `ss -Hltnp`.
fn listening_port(pid: u32) -> Option<u16> {
    let out = Command::new("ss").args(["-Hltnp"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tag = format!("pid={pid},");
    let line = text.lines().find(|l| l.contains(&tag))?;
    let local = line.split_whitespace().nth(3)?;
    local.rsplit_once(':')?.1.parse().ok()
}

fn service(extra: &[&str]) -> Command {
    let mut cmd = Command::new(SERVER);
    cmd.args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(extra);
    clean_env(&mut cmd);
    cmd
}

fn qt(example: &str) -> Command {
    let mut cmd = Command::new(format!("{QT_EXAMPLES}/{example}/{example}"));
    cmd.env("QT_QPA_PLATFORM", "offscreen");
    cmd
}

fn clean_env(cmd: &mut Command) {
    for var in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
    ] {
        cmd.env_remove(var);
    }
}

fn socket_activate(port: u16, program: &str) -> Command {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["--accept", "-l", &format!("127.0.0.1:{port}"), program]);
    clean_env(&mut cmd);
    cmd
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn measure(addr: SocketAddr, clients: usize, seconds: f64, idle: usize) -> Result<Report, String> {
    let options = Options {
        addr,
        protocol: Protocol::Qt,
        clients,
        threads: 2,
        duration: Duration::from_secs_f64(seconds),
        // Far above what this machine does in `seconds`: time is the bound that acts.
        connections: (200_000.0 * seconds) as u64,
        timeout: Duration::from_secs(5),
        idle,
        progress: false,
    };
    bench::run(&options).map_err(|e| e.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The rounds of one contender at one level, summed up.
struct Summary {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    failed: u64,
}

fn summarize(reports: &[Report]) -> Summary {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Summary {
        rate: median(reports.iter().map(Report::rate).collect()),
        p50_ms: median(reports.iter().map(|r| ms(r.latency.p50)).collect()),
        p99_ms: median(reports.iter().map(|r| ms(r.latency.p99)).collect()),
        max_ms: reports.iter().map(|r| ms(r.latency.max)).fold(0.0, f64::max),
        failed: reports.iter().map(Report::failed).sum(),
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

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
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

fn run(args: &Args) -> Result<(), String> {
    for needed in [SERVER, FLOOR, STATIC, SERVER_STATIC] {
        if !Path::new(needed).exists() {
            return Err(format!("{needed} is missing: run bench/compare, which builds it"));
        }
    }
    let started = date();
    let load_before = load();
    let mut out = String::new();

    // Accept=no: every contender up at once, measured in turn.
    let mut contenders = vec![
        Contender::start("fortune-server", service(&[]))?,
        Contender::start("floor", Command::new(FLOOR))?,
    ];
    for example in ["fortuneserver", "threadedfortuneserver"] {
        if Path::new(&format!("{QT_EXAMPLES}/{example}/{example}")).exists() {
            let name = if example == "fortuneserver" {
                "Qt fortuneserver"
            } else {
                "Qt threadedfortuneserver"
            };
            contenders.push(Contender::start(name, qt(example))?);
        } else {
            note(&format!(
                "{example} not found (apt install qtbase5-examples): not compared"
            ));
        }
    }
    for c in &contenders {
        note(&format!("{} on {} (pid {})", c.name, c.addr, c.pid()));
        measure(c.addr, 16, 0.5, 0)?; // warm-up: page cache, thread pools
    }
    let mut results: BTreeMap<(usize, usize), Vec<Report>> = BTreeMap::new();
    let n = contenders.len();
    for round in 0..args.rounds as usize {
        for &clients in &LEVELS {
            for k in 0..n {
                // Rotated each round, so no contender always runs first.
                let i = (k + round) % n;
                let c = &contenders[i];
                let r = measure(c.addr, clients, args.seconds, 0)?;
                note(&format!(
                    "round {}/{} {:>2} clients {:<25} {:>8.0}/s",
                    round + 1,
                    args.rounds,
                    clients,
                    c.name,
                    r.rate()
                ));
                results.entry((i, clients)).or_default().push(r);
            }
        }
    }
    let peak: Vec<f64> = contenders.iter().map(Contender::peak_rss).collect();
    let summary = |i: usize, clients: usize| summarize(&results[&(i, clients)]);
    let (svc, floor) = (0, 1);
    let qt_single = contenders.iter().position(|c| c.name == "Qt fortuneserver");

    out += &format!(
        "## Comparison\n\n\
         `bench/compare` (defaults: {} rounds of {} s per contender and level, contenders \
         alternating), run {started} on {}; load average before: {load_before}. \
         Client and servers share the machine, over loopback; the client is \
         `fortune-client bench` (connect, read one frame, check it, close).\n\n",
        args.rounds,
        args.seconds,
        machine()
    );
    out += "### Accept=no: connections per second (median of the rounds)\n\n";
    out += "| server | clients | conn/s | vs floor | p50 ms | p99 ms | p99 vs floor | max ms | failed | peak RSS |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (i, c) in contenders.iter().enumerate() {
        for &clients in &LEVELS {
            let s = summary(i, clients);
            let f = summary(floor, clients);
            out += &format!(
                "| {} | {clients} | {:.0} | {:.2}x | {:.3} | {:.3} | {:.2}x | {:.1} | {} | {:.1} MiB |\n",
                c.name,
                s.rate,
                s.rate / f.rate,
                s.p50_ms,
                s.p99_ms,
                s.p99_ms / f.p99_ms,
                s.max_ms,
                s.failed,
                peak[i]
            );
        }
    }
    drop(contenders);

    // 10,000 idle connections held open (a long --timeout keeps the service
    // waiting on them) while 16 clients are served, alternating with the
    // same 16 clients alone, on one fresh service.
    note(&format!("holding {IDLE} idle connections, alternating with none"));
    let idle_svc = Contender::start("fortune-server", service(&["--timeout", "120"]))?;
    let (mut alone, mut beside_idle) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let a = measure(idle_svc.addr, 16, args.seconds, 0)?;
        let b = measure(idle_svc.addr, 16, args.seconds, IDLE)?;
        note(&format!(
            "round {} 16 clients: {:.0}/s alone, {:.0}/s beside {IDLE} idle",
            round + 1,
            a.rate(),
            b.rate()
        ));
        alone.push(a);
        beside_idle.push(b);
    }
    let idle_rss = idle_svc.peak_rss();
    drop(idle_svc);
    let (alone, idle_sum) = (summarize(&alone), summarize(&beside_idle));

    // Accept=yes: one process per connection.
    let mut per_conn = Vec::new();
    let mut port = free_port()?;
    for (name, program) in PER_CONNECTION {
        let c = Contender::start(name, socket_activate(port, program))?;
        note(&format!("Accept=yes {name} on {}", c.addr));
        measure(c.addr, 4, 0.5, 0)?;
        per_conn.push(c);
        port = free_port()?;
    }
    let mut yes: BTreeMap<(usize, usize), Vec<Report>> = BTreeMap::new();
    for round in 0..args.rounds as usize {
        for clients in [1, 16] {
            for k in 0..per_conn.len() {
                let i = (k + round) % per_conn.len();
                let r = measure(per_conn[i].addr, clients, args.seconds, 0)?;
                note(&format!(
                    "Accept=yes round {} {clients:>2} clients {:<32} {:>6.0}/s",
                    round + 1,
                    per_conn[i].name,
                    r.rate()
                ));
                yes.entry((i, clients)).or_default().push(r);
            }
        }
    }
    drop(per_conn);

    out += &format!(
        "\n### Accept=no with {IDLE} idle connections held open (a fresh service, `--timeout 120`)\n\n\
         | 16 clients | conn/s | p50 ms | p99 ms | max ms | failed |\n|---|---:|---:|---:|---:|---:|\n"
    );
    let beside = format!("beside {IDLE} idle");
    for (what, s) in [("alone", &alone), (beside.as_str(), &idle_sum)] {
        out += &format!(
            "| {what} | {:.0} | {:.3} | {:.3} | {:.1} | {} |\n",
            s.rate, s.p50_ms, s.p99_ms, s.max_ms, s.failed
        );
    }
    out += &format!("\nService peak RSS (VmHWM) over this part: {idle_rss:.1} MiB.\n");
    out += "\n### Accept=yes (`systemd-socket-activate --accept`, one process per connection)\n\n";
    out += "| program | clients | conn/s | vs static C | p50 ms | p99 ms | max ms | failed |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (i, (name, _)) in PER_CONNECTION.iter().enumerate() {
        for clients in [1, 16] {
            let s = summarize(&yes[&(i, clients)]);
            let base = summarize(&yes[&(REFERENCE, clients)]);
            out += &format!(
                "| {name} | {clients} | {:.0} | {:.2}x | {:.3} | {:.3} | {:.1} | {} |\n",
                s.rate,
                s.rate / base.rate,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.failed
            );
        }
    }

    // The targets of issue 7, as ratios from this run.
    let mut targets = Vec::new();
    for clients in [16, 64] {
        let (s, f) = (summary(svc, clients), summary(floor, clients));
        targets.push((
            format!("Accept=no throughput >= 0.90x the floor, {clients} clients"),
            format!("{:.2}x", s.rate / f.rate),
            s.rate >= 0.9 * f.rate,
        ));
        if let Some(q) = qt_single {
            let qs = summary(q, clients);
            targets.push((
                format!("Accept=no ahead of Qt fortuneserver, {clients} clients"),
                format!("{:.2}x", s.rate / qs.rate),
                s.rate > qs.rate,
            ));
        }
        targets.push((
            format!("p99 latency <= 1.5x the floor's, {clients} clients"),
            format!("{:.2}x", s.p99_ms / f.p99_ms),
            s.p99_ms <= 1.5 * f.p99_ms,
        ));
    }
    let worst_max = LEVELS.iter().map(|&c| summary(svc, c).max_ms).fold(0.0, f64::max);
    targets.push((
        "max latency < 100 ms (all levels)".into(),
        format!("{worst_max:.1} ms"),
        worst_max < 100.0,
    ));
    targets.push((
        "peak RSS under the 64-client load <= 8 MiB".into(),
        format!("{:.1} MiB", peak[svc]),
        peak[svc] <= 8.0,
    ));
    targets.push((
        format!("RSS with {IDLE} idle connections <= 32 MiB"),
        format!("{idle_rss:.1} MiB"),
        idle_rss <= 32.0,
    ));
    targets.push((
        format!("16 clients beside {IDLE} idle: p99 <= 1.5x alone, no failures"),
        format!(
            "{:.2}x, {} failed",
            idle_sum.p99_ms / alone.p99_ms,
            idle_sum.failed
        ),
        idle_sum.failed == 0 && idle_sum.p99_ms <= 1.5 * alone.p99_ms,
    ));
    for (i, (name, _)) in PER_CONNECTION[..REFERENCE].iter().enumerate() {
        for clients in [1, 16] {
            let (s, c) = (
                summarize(&yes[&(i, clients)]),
                summarize(&yes[&(REFERENCE, clients)]),
            );
            targets.push((
                format!("Accept=yes throughput >= 0.80x static C, {clients} clients ({name})"),
                format!("{:.2}x", s.rate / c.rate),
                s.rate >= 0.8 * c.rate,
            ));
        }
    }
    out += "\n### Targets (issue 7)\n\n| target | measured | |\n|---|---:|---|\n";
    for (what, measured, ok) in &targets {
        out += &format!("| {what} | {measured} | {} |\n", verdict(*ok));
    }
    out += &format!("\nLoad average after: {}.\n", load());
    print!("{out}");
    Ok(())
}
