//! The one helper every integration test goes through: spawn the binary the
//! way systemd or a shell would, and when a test fails, print the command,
//! its stdout and its stderr.
#![allow(dead_code)] // each test file uses a different part

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SERVER: &str = env!("CARGO_BIN_EXE_fortune-server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_fortune-client");

/// The seven fortunes of Qt's example.
pub fn builtin() -> Vec<String> {
    fortune_server::fortunes::BUILTIN
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// True if `tool` is on PATH (or is a path that exists). Missing: in CI
/// (`CI=true`) the test fails; elsewhere it is skipped with a note.
pub fn require(tool: &str) -> bool {
    let found = if tool.contains('/') {
        Path::new(tool).exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
    };
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is missing and CI=true: install it (.ci/packages)");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

mod process;

/// Held by a test that must run alone in its binary (heavy load, or counts
/// that another test's traffic would disturb); a failed holder frees it.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    process::free_port().expect("a free loopback port")
}

mod scratch;
pub use scratch::Scratch;

/// Writes `contents` to a new scratch file (removed when dropped).
pub fn file_with(contents: &[u8]) -> Scratch {
    Scratch::file(contents)
}

/// The server started from Python the way an activator starts it: `setup`
/// (Python; `os`, `socket`, `sys`, `time`, `fcntl` and `signal` imported)
/// leaves the descriptors at 3 and up, a dict `env` of variables to set
/// (`LISTEN_FDS` among them) and may append server arguments to `sys.argv`;
/// then the server is exec'd with `LISTEN_PID` set to its (Python's) PID
/// (descriptors `LISTEN_FDS` claims may be closed, for tests of that).
/// None if `/usr/bin/python3` is missing (see [`require`]).
pub fn activator(setup: &str) -> Option<Cmd> {
    if !require("/usr/bin/python3") {
        return None;
    }
    let script = format!(
        "import os, socket, sys, time, fcntl, signal\nenv = {{}}\n{setup}\nos.environ.update(env)\n\
         for fd in range(3, 3 + int(env.get('LISTEN_FDS', '0'))):\n\
         \x20   if os.path.exists(f'/proc/self/fd/{{fd}}'): os.set_inheritable(fd, True)\n\
         os.environ['LISTEN_PID'] = str(os.getpid())\nos.execv(sys.argv[1], sys.argv[1:])\n"
    );
    Some(Cmd::new("/usr/bin/python3").args(["-c", &script, SERVER]))
}

/// The server with `args` on a free loopback port (`--listen`), serving.
pub fn serving(args: &[&str]) -> (Running, SocketAddr) {
    serving_from(Cmd::server().args(args))
}

/// `server` (fortune-server with its options and environment, or a wrapper
/// running it) with `--listen` on a free loopback port appended, serving.
pub fn serving_from(server: Cmd) -> (Running, SocketAddr) {
    let addr = loopback(free_port());
    let server = server.args(["--listen", &addr.to_string()]).spawn();
    server.wait_for_log("Serving");
    (server, addr)
}

/// A command whose output is kept for the failure report.
pub struct Cmd {
    cmd: Command,
    shown: String,
    stdin: Option<Stdio>,
    /// `spawn` returns once the log has this many `Listening on` lines
    /// (systemd-socket-activate's, one per socket, before it accepts).
    listening: usize,
}

impl Cmd {
    pub fn new(program: &str) -> Cmd {
        let mut cmd = Command::new(program);
        // Tests set what they need; inherited activation variables would confuse them.
        process::clean_env(&mut cmd);
        Cmd {
            cmd,
            shown: program.to_string(),
            stdin: None,
            listening: 0,
        }
    }

    pub fn server() -> Cmd {
        Cmd::new(SERVER)
    }

    pub fn client() -> Cmd {
        Cmd::new(CLIENT)
    }

    /// `systemd-socket-activate ARGS... fortune-server`, ready for the server's
    /// own args; `spawn` returns once it listens on every `-l` socket.
    pub fn socket_activate(args: &[&str]) -> Cmd {
        let mut cmd = Cmd::new("systemd-socket-activate").args(args).arg(SERVER);
        cmd.listening = args.iter().filter(|a| **a == "-l").count();
        cmd
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.shown.push(' ');
        self.shown.push_str(&a.as_ref().to_string_lossy());
        self.cmd.arg(a);
        self
    }

    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.shown = format!("{k}={} {}", v.as_ref().to_string_lossy(), self.shown);
        self.cmd.env(k, v);
        self
    }

    /// Standard input for the process (default: /dev/null), e.g. a socket for `--inetd`.
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Cmd {
        self.shown.push_str(" <socket");
        self.stdin = Some(stdin.into());
        self
    }

    /// `sh -c 'ulimit -n N; exec CMD'`: the same command with at most `n` descriptors
    /// (soft and hard limit: `-n` without `-S`/`-H` sets both).
    pub fn with_fd_limit(self, n: u32) -> Cmd {
        self.with_fd_limits(n, n)
    }

    /// [`Cmd::with_fd_limit`] with a soft limit below the hard one, as
    /// systemd sets them (1024 and 524288 by default).
    pub fn with_fd_limits(self, soft: u32, hard: u32) -> Cmd {
        self.under_ulimit(format!("ulimit -Sn {soft} && ulimit -Hn {hard}"))
    }

    /// Runs under a limit of `mib` MiB of address space (`ulimit -v`): its
    /// resident set can be no larger.
    pub fn with_memory_limit(self, mib: u32) -> Cmd {
        self.under_ulimit(format!("ulimit -v {}", mib * 1024))
    }

    fn under_ulimit(self, ulimit: String) -> Cmd {
        let shown = format!("{ulimit}; exec {}", self.shown);
        let mut limited = Cmd::new("sh")
            .arg("-c")
            .arg(format!("{ulimit} && exec \"$0\" \"$@\""));
        limited.cmd.arg(self.cmd.get_program()).args(self.cmd.get_args());
        for (k, v) in self.cmd.get_envs() {
            match v {
                Some(v) => limited.cmd.env(k, v),
                None => limited.cmd.env_remove(k),
            };
        }
        limited.shown = shown;
        limited.stdin = self.stdin;
        limited
    }

    /// Runs to completion (killed after `limit`).
    pub fn run(self, limit: Duration) -> Finished {
        let mut running = self.spawn();
        let status = running.wait(limit);
        running.finish(status)
    }

    /// Starts in the background; stopped (by PID) when dropped.
    pub fn spawn(mut self) -> Running {
        let files = Scratch::dir();
        let (out, err) = (files.join("stdout"), files.join("stderr"));
        let child = self
            .cmd
            .stdin(self.stdin.take().unwrap_or_else(Stdio::null))
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.shown));
        let running = Running {
            child: Some(child),
            shown: self.shown,
            out,
            err,
            _files: files,
        };
        let end = Instant::now() + Duration::from_secs(60);
        while running.log_count("Listening on") < self.listening {
            if Instant::now() > end {
                running.fail("not listening within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        running
    }
}

/// A process started by a test.
pub struct Running {
    child: Option<Child>,
    shown: String,
    out: PathBuf,
    err: PathBuf,
    /// Holds `out` and `err`; removed after the failure report (a field
    /// drops after `Drop::drop`).
    _files: Scratch,
}

pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub shown: String,
}

impl Finished {
    pub fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.shown, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code, printing everything if it differs.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.and_then(|s| s.code()),
            Some(code),
            "\n{}",
            self.report()
        );
        self
    }

    pub fn assert_stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.report()
        );
        self
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    /// Waits for exit, up to `limit`; then kills.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = self.exited_within(limit);
        if let (None, Some(child)) = (status, self.child.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Waits for exit, up to `limit`; leaves it running if it has not exited.
    pub fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Open descriptors of the process (/proc/PID/fd).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// Threads of the process (/proc/PID/task).
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid())).map_or(0, |d| d.count())
    }

    /// CPU time used so far, user + system (/proc/PID/stat).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the ")" closing the command name: utime and stime are the 12th and 13th.
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let ticks: u64 = fields.iter().sum();
        // USER_HZ is 100 on every Linux ABI.
        Duration::from_millis(ticks * 10)
    }

    /// Bytes read so far through read(2) and its kin, pread included
    /// (`rchar` in /proc/PID/io).
    pub fn read_bytes(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid())).unwrap_or_default();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Resident memory in KiB (VmRSS in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The largest resident set size it had so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits for it to exit by itself (killed after `limit`) and collects the output.
    pub fn exit(mut self, limit: Duration) -> Finished {
        let status = self.wait(limit);
        self.finish(status)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Stops with SIGTERM and collects the output.
    pub fn stop(mut self) -> Finished {
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(15));
        self.finish(status)
    }

    fn finish(mut self, status: Option<ExitStatus>) -> Finished {
        self.child = None;
        Finished {
            status,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            shown: std::mem::take(&mut self.shown),
        }
    }

    /// Panics with the process's command and output.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\ncommand: {}\n--- stdout\n{}--- stderr\n{}---",
            self.shown,
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            self.stderr()
        )
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the log has `needle` (or fails the test after a minute,
    /// which only a hang takes).
    pub fn wait_for_log(&self, needle: &str) {
        let end = Instant::now() + Duration::from_secs(60);
        while !self.stderr().contains(needle) {
            if Instant::now() > end {
                self.fail(&format!("no {needle:?} in the log within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if std::thread::panicking() {
                eprintln!(
                    "command: {}\n--- stdout\n{}--- stderr\n{}---",
                    self.shown,
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(5);
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Connects, reads until the server closes, returns every byte.
pub fn read_all(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Connects, retrying while the port is not open yet (up to 10 s).
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One of the Python scripts beside this module that talk to `addr` through
/// Qt (Debian's PyQt5, hence Debian's python3, not one on PATH).
fn qt_script(script: &str, addr: SocketAddr) -> Cmd {
    Cmd::new("/usr/bin/python3")
        .arg(format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR")))
        .args([addr.ip().to_string(), addr.port().to_string()])
}

/// Reads `count` fortunes through the real Qt (tests/qt_reader.py).
pub fn qt_read(addr: SocketAddr, framing: &str, count: usize) -> Vec<String> {
    let done = qt_script("qt_reader.py", addr)
        .args(["--framing", framing, "--count", &count.to_string()])
        .env("QT_QPA_PLATFORM", "offscreen")
        .env("PYTHONIOENCODING", "utf-8")
        .run(Duration::from_secs(60));
    done.assert_code(0);
    done.stdout
        .lines()
        .map(|l| json_string(l).unwrap_or_else(|| panic!("bad line {l:?}\n{}", done.report())))
        .collect()
}

/// Parses one JSON string literal (what qt_reader.py prints).
fn json_string(line: &str) -> Option<String> {
    let inner = line.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            // qt_reader.py prints non-ASCII as is; only control characters are \u-escaped.
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Writes `bytes` then shuts down writing (a client that sends something).
pub fn send_and_read(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = connect(addr)?;
    s.write_all(bytes)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Prints a measured figure for the CI log: to stderr and appended to
/// `target/tmp/figures.txt`, which tests/run prints after the tests
/// (cargo test hides a passing test's stderr).
pub fn figure(test: &str, line: &str) {
    let line = format!("FIGURE {test}: {line}\n");
    eprint!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// A NOTIFY_SOCKET for the service to talk to, as systemd's would be.
pub struct NotifySocket {
    pub path: PathBuf,
    socket: std::os::unix::net::UnixDatagram,
    seen: std::sync::Mutex<Vec<String>>,
    _dir: Scratch,
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = Scratch::dir();
        let path = dir.join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind a notify socket");
        socket.set_nonblocking(true).expect("non-blocking notify socket");
        NotifySocket {
            path,
            socket,
            seen: Default::default(),
            _dir: dir,
        }
    }

    /// Every message received so far (also those an earlier call returned).
    pub fn messages(&self) -> Vec<String> {
        let mut buf = vec![0u8; 4096];
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(n) = self.socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        seen.clone()
    }
}

impl NotifySocket {
    /// Waits (20 s at most, else fails the test) for a message after index
    /// `from` of [`NotifySocket::messages`] that `wanted` accepts; returns
    /// it with the index to look from next time.
    pub fn wait_for(&self, from: usize, what: &str, wanted: impl Fn(&str) -> bool) -> (String, usize) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let all = self.messages();
            if let Some(i) = (from..all.len()).find(|&i| wanted(&all[i])) {
                return (all[i].clone(), i + 1);
            }
            assert!(
                Instant::now() < end,
                "no notify message {what} within 20 s; got {:#?}",
                all.get(from..)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for NotifySocket {
    fn default() -> Self {
        NotifySocket::new()
    }
}

/// A misbehaving server for client tests: on 127.0.0.1, answers each of the
/// first `connections` clients with `reply` (then closes, or holds the
/// connection open for `hold` first). Its thread ends after that many.
/// A server for one connection that sends `header`, then zeros until
/// `total` bytes are sent or the client goes away.
pub fn streaming_server(header: &[u8], total: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let header = header.to_vec();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let zeros = vec![0u8; 1 << 16];
            let mut sent = header.len();
            let _ = s.write_all(&header);
            while sent < total && s.write_all(&zeros).is_ok() {
                sent += zeros.len();
            }
        }
    });
    addr
}

pub fn fake_server(reply: &[u8], connections: usize, hold: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let reply = reply.to_vec();
    std::thread::spawn(move || {
        // A failed accept uses up one of `connections` too: the thread stays bounded.
        for mut s in listener.incoming().take(connections).flatten() {
            let _ = s.write_all(&reply);
            std::thread::sleep(hold);
        }
    });
    addr
}

/// The TCP port process `pid` listens on (`ss -Hltnp`), for programs such
/// as Qt's examples that choose a random one; waits up to 10 s.
pub fn listening_port(pid: u32) -> Option<u16> {
    process::listening_port(pid, Duration::from_secs(10))
}

/// Drives Qt's own Fortune Client example under Xvfb (tests/qt_fortune_client.py)
/// and returns what it showed; fails the test unless every press showed one
/// of `expected`.
pub fn qt_fortune_client(addr: SocketAddr, client: &str, presses: usize, expected: &[String]) -> String {
    let lines: String = expected.iter().map(|f| json_quote(f) + "\n").collect();
    let expect = file_with(lines.as_bytes());
    let done = qt_script("qt_fortune_client.py", addr)
        .args(["--client", client, "--presses", &presses.to_string()])
        .arg("--expect")
        .arg(expect.path())
        .run(Duration::from_secs(120));
    done.assert_code(0);
    done.stdout
}

fn json_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A new scratch directory holding `files` (names may contain `/`),
/// removed when dropped.
pub fn dir_with(files: &[(&str, &[u8])]) -> Scratch {
    Scratch::with(files)
}

/// A FIFO at `path` (`mkfifo`), for tests that nothing waits on one.
pub fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Writes `dir/name` holding `entries` fortune-mod style and its index
/// `name.dat` as `strfile -s` writes it (version 2, file order), without
/// needing strfile: for collections of many files.
pub fn indexed_file(dir: &Path, name: &str, entries: &[&str]) {
    let mut text = Vec::new();
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(text.len() as u32);
        text.extend_from_slice(entry.as_bytes());
        text.extend_from_slice(b"\n%\n");
    }
    offsets.push(text.len() as u32);
    let lengths = entries.iter().map(|e| e.len() as u32 + 1);
    let mut dat = Vec::new();
    for word in [
        2,
        entries.len() as u32,
        lengths.clone().max().unwrap_or(0),
        lengths.min().unwrap_or(0),
        0,
    ] {
        dat.extend_from_slice(&word.to_be_bytes());
    }
    dat.extend_from_slice(&[b'%', 0, 0, 0]);
    for offset in offsets {
        dat.extend_from_slice(&offset.to_be_bytes());
    }
    std::fs::write(dir.join(name), text).expect("write a fortune file");
    std::fs::write(dir.join(format!("{name}.dat")), dat).expect("write its index");
}

/// Runs fortune-mod's `strfile ARGS FILE` (writes FILE.dat); the caller has `require("strfile")`d it.
pub fn strfile(file: &Path, args: &[&str]) {
    Cmd::new("strfile")
        .args(args)
        .arg(file)
        .run(Duration::from_secs(10))
        .assert_code(0);
}

/// One fortune over TCP, decoded from the `qt` framing (which must be whole).
pub fn fetch(addr: SocketAddr) -> String {
    let bytes = read_all(addr).unwrap_or_else(|e| panic!("reading a fortune from {addr}: {e}"));
    fortune_server::wire::decode(fortune_server::wire::Protocol::Qt, &bytes).unwrap_or_else(|e| {
        panic!(
            "not one whole qt frame from {addr} ({} bytes): {e:?}",
            bytes.len()
        )
    })
}

/// True if this process runs as root (raw sockets, ports below 1024). Not
/// root: in CI (`CI=true`) the test fails; elsewhere it is skipped with a note.
pub fn require_root() -> bool {
    // /proc/self belongs to the process's effective user.
    let root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self")) == 0;
    if !root {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("this test needs root and CI=true: run the tests as root");
        }
        eprintln!("SKIPPED: needs root");
    }
    root
}

/// The service answering UDP on `addr` (`systemd-socket-activate --datagram`,
/// which starts it at the first datagram) with `args` and the environment
/// variables `env` (`VAR=value`), serving; the caller has `require`d
/// systemd-socket-activate. The datagrams that start it come from
/// 127.255.255.254, a /24 no test uses.
pub fn udp_service(addr: SocketAddr, args: &[&str], env: &[&str]) -> Running {
    let mut activate = vec!["--datagram".to_string(), "-l".to_string(), addr.to_string()];
    // systemd-socket-activate passes on only the variables given with -E.
    for var in env {
        activate.extend(["-E".to_string(), var.to_string()]);
    }
    let activate: Vec<&str> = activate.iter().map(String::as_str).collect();
    let server = Cmd::socket_activate(&activate).args(args).spawn();
    let starter = std::net::UdpSocket::bind("127.255.255.254:0").expect("bind 127.255.255.254");
    let end = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("Serving") {
        if Instant::now() > end {
            server.fail("the UDP service did not start within 10 s");
        }
        let _ = starter.send_to(b"start", addr);
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// A TCP connection to `addr` from the local address `from` (another
/// loopback address is another client network: 127.0.1.1 is not in
/// 127.0.0.0/24).
pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Sends one UDP datagram with a forged source (a raw socket writing its
/// own IPv4 header; root only). Loopback destinations only.
pub fn spoof_udp(from: std::net::SocketAddrV4, to: std::net::SocketAddrV4, payload: &[u8]) {
    Spoofer::new().send(from, to, payload);
}

/// A raw IPv4 socket for UDP (root only).
fn raw_udp_socket() -> socket2::Socket {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::UDP),
    )
    .expect("a raw socket (root)")
}

/// A raw socket that forges UDP datagrams (root only), kept for a flood.
pub struct Spoofer(socket2::Socket);

impl Spoofer {
    pub fn new() -> Spoofer {
        let raw = raw_udp_socket();
        raw.set_header_included_v4(true).expect("IP_HDRINCL");
        Spoofer(raw)
    }

    /// Sends `payload` to `to` (loopback only) as if from `from`.
    pub fn send(&self, from: std::net::SocketAddrV4, to: std::net::SocketAddrV4, payload: &[u8]) {
        assert!(to.ip().is_loopback(), "spoofed datagrams go to loopback only");
        let len = 20 + 8 + payload.len();
        let mut packet = Vec::with_capacity(len);
        // IPv4 header: version 4, 5 words; total length; id 0 and checksum 0 (the kernel fills them); TTL 64; UDP.
        packet.extend_from_slice(&[0x45, 0, (len >> 8) as u8, len as u8, 0, 0, 0, 0, 64, 17, 0, 0]);
        packet.extend_from_slice(&from.ip().octets());
        packet.extend_from_slice(&to.ip().octets());
        // UDP header, checksum 0 (none, allowed over IPv4).
        packet.extend_from_slice(&from.port().to_be_bytes());
        packet.extend_from_slice(&to.port().to_be_bytes());
        packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(payload);
        // A full send buffer under a flood: the datagram is lost, as on a network.
        if let Err(e) = self.0.send_to(&packet, &SocketAddr::V4(to).into()) {
            assert!(
                matches!(e.raw_os_error(), Some(nix::libc::ENOBUFS | nix::libc::EAGAIN)),
                "send the spoofed datagram: {e}"
            );
        }
    }
}

impl Default for Spoofer {
    fn default() -> Self {
        Spoofer::new()
    }
}

/// One UDP datagram seen on the host: source, destination, payload.
pub type Seen = (std::net::SocketAddrV4, std::net::SocketAddrV4, Vec<u8>);

/// Every UDP datagram the host receives over IPv4, loopback included (a raw
/// socket gets a copy of each; root only): who really sent what to whom.
pub struct UdpSpy(socket2::Socket);

impl UdpSpy {
    pub fn new() -> UdpSpy {
        let raw = raw_udp_socket();
        raw.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        UdpSpy(raw)
    }

    /// The datagrams that `wanted` keeps, among those seen from now for `span`
    /// (at most `max` of them).
    pub fn watch(&self, span: Duration, max: usize, wanted: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        let end = Instant::now() + span;
        let mut buf = [0u8; 2048];
        let mut kept = Vec::new();
        while Instant::now() < end && kept.len() < max {
            let Ok(n) = (&self.0).read(&mut buf) else {
                continue;
            };
            if let Some(seen) = parse_ipv4_udp(&buf[..n]).filter(|seen| wanted(seen)) {
                kept.push(seen);
            }
        }
        kept
    }
}

impl Default for UdpSpy {
    fn default() -> Self {
        UdpSpy::new()
    }
}

/// An IPv4 packet carrying UDP, as a raw socket receives it.
fn parse_ipv4_udp(p: &[u8]) -> Option<Seen> {
    let header = usize::from(p.first()? & 0x0f) * 4;
    if p.first()? >> 4 != 4 || header < 20 || p.get(9) != Some(&17) || p.len() < header + 8 {
        return None;
    }
    let ip = |at: usize| std::net::Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    let port = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    Some((
        std::net::SocketAddrV4::new(ip(12), port(header)),
        std::net::SocketAddrV4::new(ip(16), port(header + 2)),
        p[header + 8..].to_vec(),
    ))
}

/// A network namespace made for one test (`ip netns add`; root only): its
/// loopback up, and whatever addresses the test adds to it. Deleted (by its
/// name) when dropped. Traffic to or from it never leaves the host.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named after `tag` and this process; the caller has
    /// `require_root()`d and `require("ip")`d.
    pub fn new(tag: &str) -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "fortune-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        ip(&["netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Adds `addr` (e.g. `2001:db8:1:100::1/128`) to its loopback.
    pub fn add_address(&self, addr: &str) {
        self.ip(&["address", "add", addr, "dev", "lo", "nodad"]);
    }

    /// `program` run inside it (`ip netns exec`, which execs it: the PID is the program's).
    pub fn cmd(&self, program: &str) -> Cmd {
        Cmd::new("ip").args(["netns", "exec", self.name.as_str(), program])
    }

    /// Moves the calling thread into it: the sockets it makes from now on
    /// belong to the namespace. Call it from a thread of the test's own.
    pub fn enter(&self) {
        let ns = File::open(format!("/run/netns/{}", self.name)).expect("the namespace's file");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering network namespace {}: {e}", self.name));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
