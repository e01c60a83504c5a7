//! Starting servers the way systemd or a shell would, and finding their
//! port: shared by the integration tests (through `tests/util`) and the
//! comparison benchmark (`examples/compare.rs` includes this file with
//! `#[path]`), so std only and no test-harness assumptions.
#![allow(dead_code)] // each includer uses a different part

use std::io;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// Variables systemd sets for its services: inherited ones would make a
/// server we start adopt descriptors or notify a manager that are not its.
pub const ACTIVATION_VARS: [&str; 7] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "JOURNAL_STREAM",
    // Set for every process systemd starts (a CI runner's service): the
    // server would take it for a unit started without its socket.
    "INVOCATION_ID",
];

/// Removes [`ACTIVATION_VARS`] from what `cmd` inherits.
pub fn clean_env(cmd: &mut Command) {
    for var in ACTIVATION_VARS {
        cmd.env_remove(var);
    }
}

/// `systemd-socket-activate ARGS... PROGRAM`, with a clean environment.
pub fn socket_activate(args: &[&str], program: &str) -> Command {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(args).arg(program);
    clean_env(&mut cmd);
    cmd
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// The TCP port process `pid` listens on (`ss -Hltnp`), for programs such
/// as Qt's examples that choose a random one; asks again until `wait` has
/// passed (None: the process listens on none by then, or `ss` is missing).
pub fn listening_port(pid: u32, wait: Duration) -> Option<u16> {
    let tag = format!("pid={pid},");
    let end = Instant::now() + wait;
    loop {
        let out = Command::new("ss").arg("-Hltnp").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let port = text
            .lines()
            .find(|l| l.contains(&tag))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|local| local.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok());
        if port.is_some() || Instant::now() >= end {
            return port;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
