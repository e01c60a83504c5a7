//! The process's own transitions, driven the way systemd or an admin drives
//! them: a good start after a failed one on the same sockets, sockets passed
//! non-blocking, signals at any moment, any watchdog interval, a service
//! manager that does not read.

mod util;

use std::io::Read;
use std::time::{Duration, Instant};

use fortune_server::wire::{self, Protocol};
use util::{Cmd, NotifySocket, Running, activator, figure, file_with, free_port, loopback};

/// How long each idle process is watched for the CPU it uses.
const IDLE: Duration = Duration::from_secs(2);

/// The CPU `server` uses over [`IDLE`] while nothing happens, printed as a
/// figure. An idle service sleeps: it uses next to nothing (0.00 to 0.01 s
/// here), where a spinning thread uses the whole window, or its share of a
/// busy machine's CPUs (0.36 s of 2 s with 8 builds running).
fn assert_idles(server: &Running, test: &str) {
    assert_idles_while(server, test, || {});
}

/// [`assert_idles`], calling `meanwhile` every 20 ms.
fn assert_idles_while(server: &Running, test: &str, mut meanwhile: impl FnMut()) {
    let before = server.cpu_time();
    let end = Instant::now() + IDLE;
    while Instant::now() < end {
        meanwhile();
        std::thread::sleep(Duration::from_millis(20));
    }
    let used = server.cpu_time() - before;
    figure(
        test,
        &format!(
            "{:.2} s of CPU in {:.0} s idle",
            used.as_secs_f64(),
            IDLE.as_secs_f64()
        ),
    );
    if used > IDLE / 20 {
        server.fail(&format!("{used:?} of CPU in {IDLE:?} idle: a thread spins"));
    }
}

/// Python (see [`activator`]): a TCP listener at fd 3 and a UDP socket at
/// fd 4, named `qt:text`; prints their ports as `ports TCP UDP`.
const TCP_AND_UDP: &str = "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n\
    os.dup2(l.fileno(), 3); os.dup2(u.fileno(), 4)\n\
    env.update(LISTEN_FDS='2', LISTEN_FDNAMES='qt:text')\n\
    print(f'ports {l.getsockname()[1]} {u.getsockname()[1]}', file=sys.stderr, flush=True)\n\
    nonblocking = lambda fd: fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK != 0\n";

/// The ports [`TCP_AND_UDP`] printed.
fn ports(server: &Running) -> (u16, u16) {
    server.wait_for_log("ports ");
    let log = server.stderr();
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("ports "))
        .unwrap_or_default();
    let mut ports = line.split(' ').filter_map(|p| p.parse().ok());
    match (ports.next(), ports.next()) {
        (Some(tcp), Some(udp)) => (tcp, udp),
        _ => server.fail("no ports printed"),
    }
}

/// Once serving, `server` idles ([`assert_idles`]), then both sockets
/// serve: a fortune over TCP, one over UDP; it stops with status 0.
fn idles_then_serves(server: Running, (tcp, udp): (u16, u16), test: &str) {
    server.wait_for_log("Serving");
    assert_idles(&server, test);
    let fortune = util::fetch(loopback(tcp));
    assert!(util::builtin().contains(&fortune), "{fortune:?}");
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.send_to(b"?", loopback(udp)).unwrap();
    let mut reply = [0u8; 600];
    if client.recv(&mut reply).is_err() {
        server.fail("no fortune over UDP");
    }
    server.stop().assert_code(0);
}

/// Issue 17: the refusal hold of a failed start set O_NONBLOCK on the
/// sockets, systemd kept them so, and the next, good start spun its UDP
/// thread. The hold now puts back what it changed, and the UDP thread makes
/// its socket blocking whatever it inherits.
#[test]
fn a_good_start_after_a_failed_one_finds_its_sockets_as_they_were_and_idles() {
    let Some(cmd) = activator(&format!(
        "{TCP_AND_UDP}before = (nonblocking(3), nonblocking(4))\n\
         pid = os.fork()\n\
         if pid == 0:\n\
         \x20   os.environ.update(env, LISTEN_PID=str(os.getpid()), FORTUNE_FORTUNES='/nonexistent')\n\
         \x20   os.set_inheritable(3, True); os.set_inheritable(4, True)\n\
         \x20   os.execv(sys.argv[1], sys.argv[1:])\n\
         status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n\
         print(f'failed start: status {{status}}, non-blocking {{before}} before, \
         {{(nonblocking(3), nonblocking(4))}} after', file=sys.stderr, flush=True)"
    )) else {
        return;
    };
    let server = cmd.spawn();
    let ports = ports(&server);
    server.wait_for_log("failed start: ");
    if server.log_count("failed start: status 1, non-blocking (False, False) before, (False, False) after")
        != 1
    {
        server.fail("the failed start should exit 1 and leave the sockets blocking, as it found them");
    }
    idles_then_serves(server, ports, "a good start after a failed one");
}

/// A SIGTERM during the refusal hold (systemctl stop while it refuses) ends
/// the process as before, by the signal, but after the hold put the
/// sockets' flags back (it left them non-blocking for the next start).
#[test]
fn a_stop_during_the_refusal_hold_leaves_the_sockets_as_they_were() {
    let Some(cmd) = activator(&format!(
        "{TCP_AND_UDP}pid = os.fork()\n\
         if pid == 0:\n\
         \x20   os.environ.update(env, LISTEN_PID=str(os.getpid()), FORTUNE_FORTUNES='/nonexistent')\n\
         \x20   os.set_inheritable(3, True); os.set_inheritable(4, True)\n\
         \x20   os.execv(sys.argv[1], sys.argv[1:])\n\
         time.sleep(1)\n\
         os.kill(pid, signal.SIGTERM)\n\
         status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n\
         print(f'stopped in the hold: status {{status}}, non-blocking {{(nonblocking(3), nonblocking(4))}}', \
         file=sys.stderr, flush=True)"
    )) else {
        return;
    };
    let server = cmd.spawn();
    server.wait_for_log("stopped in the hold: ");
    if server.log_count("stopped in the hold: status -15, non-blocking (False, False)") != 1 {
        server.fail("SIGTERM in the hold should end it by the signal, the sockets blocking as it found them");
    }
}

/// `NonBlocking=yes` in a socket unit: the UDP thread must not spin.
#[test]
fn sockets_passed_non_blocking_idle() {
    let Some(cmd) = activator(&format!(
        "{TCP_AND_UDP}for fd in (3, 4): fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)"
    )) else {
        return;
    };
    let server = cmd.spawn();
    let ports = ports(&server);
    idles_then_serves(server, ports, "sockets passed non-blocking");
}

/// `Accept=yes` with `NonBlocking=yes`: a frame larger than the socket
/// buffers, to a client that reads late, arrives whole (it came truncated,
/// with a clean end of stream, and "gave up after the 10s timeout").
#[test]
fn accept_yes_on_a_non_blocking_connection_sends_the_whole_frame() {
    let port = free_port();
    let entry = "a".repeat(512 * 1024);
    let fortunes = file_with(entry.as_bytes());
    let Some(cmd) = activator(&format!(
        "l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         l.bind(('127.0.0.1', {port})); l.listen()\n\
         c, _ = l.accept(); c.setblocking(False); l.close()\n\
         os.dup2(c.fileno(), 3); env['LISTEN_FDS'] = '1'\n\
         sys.argv += ['--max-entry', '1000000', '--fortunes', {fortunes:?}]",
        fortunes = fortunes.path().display().to_string()
    )) else {
        return;
    };
    let server = cmd.spawn();
    let mut client = util::connect(loopback(port)).expect("connected");
    // Late, so that the frame fills the socket buffers first.
    std::thread::sleep(Duration::from_millis(500));
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut frame = Vec::new();
    let _ = client.read_to_end(&mut frame);
    drop(client);
    match wire::decode(Protocol::Qt, &frame) {
        Ok(text) if text == entry => {}
        _ => server.fail(&format!(
            "{} bytes of a {}-byte frame",
            frame.len(),
            4 + 2 * entry.len()
        )),
    }
    let mut server = server;
    if server
        .exited_within(Duration::from_secs(20))
        .and_then(|s| s.code())
        != Some(0)
    {
        server.fail("the one-connection process should exit 0");
    }
    assert!(!server.stderr().contains("gave up"), "{}", server.stderr());
}

/// SIGUSR1, SIGUSR2 and SIGALRM killed the service without a line; SIGPIPE
/// must not either. Each is now logged and ignored; SIGHUP still reloads.
#[test]
fn signals_the_service_has_no_use_for_are_logged_and_ignored() {
    let (server, addr) = util::serving(&[]);
    for signal in ["USR1", "USR2", "ALRM"] {
        server.signal(signal);
        server.wait_for_log(&format!("SIG{signal} received: ignored"));
    }
    server.signal("PIPE");
    server.signal("HUP");
    server.wait_for_log("reloaded 7 fortunes");
    assert!(util::builtin().contains(&util::fetch(addr)));
    server.stop().assert_code(0);
}

/// A SIGHUP while the fortunes load (a package trigger, `systemctl reload`
/// during start-up) killed the process with status 129: it is now a reload
/// once they are loaded. Sent the moment the process is seen holding one of
/// the fortune files open (it is loading them, and has said nothing yet); a
/// try where that moment was missed is not counted.
#[test]
fn a_sighup_while_loading_is_a_reload_once_loaded() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let mut entries = String::new();
    for i in 0..60_000 {
        entries.push_str(&format!(
            "fortune number {i}, long enough to take a while to load\n%\n"
        ));
    }
    let files: Vec<_> = (0..5).map(|_| file_with(entries.as_bytes())).collect();
    let paths: Vec<_> = files.iter().map(|f| f.path().to_path_buf()).collect();
    let fortunes = std::env::join_paths(&paths).unwrap();
    for attempt in 1..=10 {
        let server = Cmd::server()
            .args(["--listen", "127.0.0.1:0"])
            .env("FORTUNE_FORTUNES", &fortunes)
            .spawn();
        let fds = format!("/proc/{}/fd", server.pid());
        let loading = || {
            std::fs::read_dir(&fds).is_ok_and(|d| {
                d.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| paths.contains(&l)))
            })
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !loading() && server.stderr().is_empty() && Instant::now() < end {}
        let _ = kill(Pid::from_raw(server.pid() as i32), Signal::SIGHUP);
        if !server.stderr().is_empty() {
            figure(
                "sighup while loading",
                &format!("attempt {attempt}: loading not seen in time"),
            );
            continue;
        }
        server.wait_for_log("reloaded 300000 fortunes");
        let log = server.stderr();
        assert!(log.find("Serving") < log.find("reloaded"), "{log}");
        server.stop().assert_code(0);
        return;
    }
    panic!("loading was never seen before the server logged: no SIGHUP sent during it");
}

/// `WATCHDOG_USEC=10000` with the shipped idle exit panicked (`clamp`),
/// and `WATCHDOG_USEC` under 2000 busy-looped the main thread: now the
/// pings come every 10 ms at most often, with one warning, and it idles.
#[test]
fn any_watchdog_interval_is_pinged_without_a_panic_or_a_busy_loop() {
    for usec in ["10000", "1000", "0"] {
        let notify = NotifySocket::new();
        let server = Cmd::server()
            .args(["--listen", "127.0.0.1:0"])
            .env("WATCHDOG_USEC", usec)
            .env("FORTUNE_IDLE_EXIT", "600")
            .env("NOTIFY_SOCKET", &notify.path)
            .spawn();
        server.wait_for_log("Serving");
        let mut pings = 0;
        assert_idles_while(&server, &format!("WATCHDOG_USEC={usec}"), || {
            // Every message so far (NotifySocket keeps them): the last count is the total.
            pings = notify
                .messages()
                .iter()
                .filter(|m| m.contains("WATCHDOG=1"))
                .count();
        });
        figure(
            "watchdog",
            &format!("WATCHDOG_USEC={usec}: {pings} pings in {IDLE:?}"),
        );
        if usec == "0" {
            assert_eq!(pings, 0, "WATCHDOG_USEC=0 is no watchdog");
        } else {
            assert!(pings > 0, "no watchdog ping\n{}", server.stderr());
        }
        assert_eq!(server.log_count("WATCHDOG_USEC="), 1, "{}", server.stderr());
        server.stop().assert_code(0);
    }
}

/// A notify socket whose reader stalls blocked the main thread in
/// `sendto`, and SIGTERM waited with it; a missing one logged a warning at
/// every ping. Now a send never waits, and the warnings are folded.
#[test]
fn a_service_manager_that_does_not_read_holds_up_nothing() {
    let notify = NotifySocket::new();
    // Fill its queue, as a manager that stopped reading would have it:
    // new senders until one cannot send at all.
    let mut senders = Vec::new();
    for _ in 0..200 {
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.set_nonblocking(true).unwrap();
        let sent = (0..1000)
            .take_while(|_| sender.send_to(b"X=1", &notify.path).is_ok())
            .count();
        senders.push(sender);
        if sent == 0 {
            break;
        }
    }
    one_folded_warning_with(&notify.path);
    one_folded_warning_with(&std::env::temp_dir().join("fortune-tests-no-notify-socket"));
}

/// Pinging every 10 ms for [`IDLE`] through `notify_socket`, which takes
/// nothing: one warning, and SIGTERM answered.
fn one_folded_warning_with(notify_socket: &std::path::Path) {
    let server = Cmd::server()
        .args(["--listen", "127.0.0.1:0"])
        .env("WATCHDOG_USEC", "20000")
        .env("NOTIFY_SOCKET", notify_socket)
        .spawn();
    server.wait_for_log("Serving");
    server.wait_for_log("cannot notify the service manager");
    std::thread::sleep(IDLE);
    let done = server.stop();
    done.assert_code(0);
    let warnings = done.stderr.matches("cannot notify the service manager").count();
    assert_eq!(warnings, 1, "folded\n{}", done.report());
}

/// `LISTEN_FDS=2` with fd 4 closed, logging to the journal: the logger's
/// socket took fd 4, was adopted and closed, and the fatal line went
/// nowhere. Descriptors are now adopted before logging opens anything, so
/// the journal gets "fd 4 ... is not open". The journal is a socket of the
/// test's own, in a private mount namespace (root only).
#[test]
fn the_fatal_line_reaches_the_journal_when_listen_fds_claims_a_closed_descriptor() {
    if !util::require_root() {
        return;
    }
    let result = std::env::temp_dir().join(format!("fortune-tests-journal-{}", std::process::id()));
    let _ = std::fs::remove_file(&result);
    let Some(cmd) = activator(&format!(
        "import ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         assert libc.unshare(0x20000) == 0, 'unshare(CLONE_NEWNS)'\n\
         assert libc.mount(b'none', b'/', None, 0x4000 | 0x40000, None) == 0, 'mount --make-rprivate /'\n\
         assert libc.mount(b'tmpfs', b'/run', b'tmpfs', 0, None) == 0, 'mount tmpfs /run'\n\
         os.makedirs('/run/systemd/journal')\n\
         j = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); j.bind('/run/systemd/journal/socket')\n\
         if os.fork() == 0:\n\
         \x20   j.settimeout(20); seen = b''\n\
         \x20   try:\n\
         \x20       while b'not open' not in seen: seen += j.recv(65536)\n\
         \x20   except OSError: pass\n\
         \x20   open({result:?}, 'wb').write(seen or b'nothing'); os._exit(0)\n\
         j.close()\n\
         l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); fd = l.detach()\n\
         if fd != 3: os.dup2(fd, 3); os.close(fd)\n\
         env['LISTEN_FDS'] = '2'\n\
         st = os.fstat(2); env['JOURNAL_STREAM'] = f'{{st.st_dev}}:{{st.st_ino}}'",
        result = result.display().to_string()
    )) else {
        return;
    };
    cmd.run(Duration::from_secs(30))
        .assert_code(fortune_server::exit::ACTIVATION.into());
    let end = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        match std::fs::read(&result) {
            Ok(seen) if !seen.is_empty() => break String::from_utf8_lossy(&seen).into_owned(),
            _ if Instant::now() > end => panic!("the journal reader wrote nothing"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = std::fs::remove_file(&result);
    assert!(
        seen.contains("fd 4 was passed by LISTEN_FDS but is not open"),
        "the journal got: {seen:?}"
    );
}
