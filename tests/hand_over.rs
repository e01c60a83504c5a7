//! `fortune-server --hand-over UNIT`, the socket units' `ExecStopPre=`, the
//! way systemd restarts a socket: the old listener closes with connections
//! waiting in it, connections arrive while no socket of the unit listens,
//! then a new listener opens. Every one of them must reach the new
//! listener. `systemctl` is a stand-in printing the unit's settings; the
//! eBPF program needs root (CAP_BPF). The booted-systemd run of the same is
//! tests/system/lifecycle.sh (Accept=yes on and off).

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use util::{Cmd, Running, Scratch, free_port, loopback};

const LIMIT: Duration = Duration::from_secs(60);

/// A directory holding a `systemctl` that is the shell script `body`.
fn systemctl_script(body: &str) -> Scratch {
    let dir = Scratch::dir();
    let path = dir.join("systemctl");
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write systemctl");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod systemctl");
    dir
}

/// A directory holding a `systemctl` that prints `show` as given.
fn systemctl_showing(show: &str) -> Scratch {
    systemctl_script(&format!("printf '{show}'\n"))
}

fn hand_over(systemctl: &Scratch) -> Running {
    let path = format!(
        "{}:{}",
        systemctl.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Cmd::server()
        .args(["--hand-over", "test.socket"])
        .env("PATH", path)
        .spawn()
}

/// A listener as systemd opens one with `ReusePort=yes`.
fn reuse_port_listener(addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket.bind(&addr.into()).expect("bind");
    socket.listen(128).expect("listen");
    socket
}

/// A client that connected and sent its number, not yet accepted.
fn waiting_client(addr: SocketAddr, n: u8) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("client {n} not connected: {e}"));
    s.write_all(&[n]).expect("send");
    s
}

/// The numbers the clients waiting in `listener` sent, once `count` came.
fn accepted(listener: &Socket, count: usize) -> Vec<u8> {
    listener.set_nonblocking(true).expect("non-blocking");
    let mut got = Vec::new();
    let end = Instant::now() + LIMIT;
    while got.len() < count && Instant::now() < end {
        match listener.accept() {
            Ok((s, _)) => {
                let mut s: TcpStream = s.into();
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(LIMIT)).expect("timeout");
                let mut n = [0];
                s.read_exact(&mut n).expect("the client's number");
                got.push(n[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    got.sort();
    got
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

#[test]
fn connections_waiting_in_the_old_socket_and_arriving_between_reach_the_new_one() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: this test needs root (CAP_BPF)"
        );
        eprintln!("SKIPPED: not root (loading the eBPF program needs CAP_BPF)");
        return;
    }
    let addr = loopback(free_port());
    let systemctl = systemctl_showing(&format!(
        "Listen={addr} (Stream)\\nBindIPv6Only=both\\nBacklog=128\\n"
    ));
    let old = reuse_port_listener(addr);
    let mut clients: Vec<TcpStream> = (0..3).map(|n| waiting_client(addr, n)).collect();
    let bridge = hand_over(&systemctl);
    bridge.wait_for_log(&format!("test.socket: holding {addr} while it restarts"));
    // systemd closes the old socket: what waits there moves to the hand-over's.
    drop(old);
    clients.extend((3..6).map(|n| waiting_client(addr, n)));
    let new = reuse_port_listener(addr);
    let finished = bridge.exit(LIMIT);
    finished
        .assert_code(0)
        .assert_stderr_has(&format!("test.socket: {addr} handed over after"));
    assert_eq!(accepted(&new, 6), [0, 1, 2, 3, 4, 5], "{}", finished.report());
    drop(clients);
}

#[test]
fn without_a_new_socket_it_lets_go_after_ten_seconds() {
    let addr = loopback(free_port());
    let systemctl = systemctl_showing(&format!(
        "Listen={addr} (Stream)\\nListen=/run/x.sock (Stream)\\n"
    ));
    let old = reuse_port_listener(addr);
    let bridge = hand_over(&systemctl);
    bridge.wait_for_log("holding");
    drop(old);
    bridge
        .exit(LIMIT)
        .assert_code(0)
        .assert_stderr_has(&format!("no new socket listened on {addr} within 10 s"))
        .assert_stderr_has("/run/x.sock (Stream) is not held across the restart (only TCP addresses are)");
    assert!(TcpStream::connect(addr).is_err(), "{addr} still listening");
}

#[test]
fn a_socket_opened_without_reuse_port_or_an_unknown_unit_is_a_warning_not_a_failure() {
    let addr = loopback(free_port());
    let systemctl = systemctl_showing(&format!("Listen={addr} (Stream)\\n"));
    let plain = std::net::TcpListener::bind(addr).expect("bind");
    let finished = hand_over(&systemctl).exit(LIMIT);
    finished
        .assert_code(0)
        .assert_stderr_has("opened without ReusePort=yes (by an older unit file?)");
    drop(plain);

    let unknown = systemctl_script("echo 'Unit test.socket could not be found.' >&2\nexit 1\n");
    hand_over(&unknown)
        .exit(LIMIT)
        .assert_code(0)
        .assert_stderr_has("test.socket: cannot read its addresses (systemctl show)");
}
