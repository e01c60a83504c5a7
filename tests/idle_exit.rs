//! `--idle-exit` / `FORTUNE_IDLE_EXIT` under systemd-socket-activate: the
//! service exits 0 once no client has been around for that long, and not
//! while one is still lingering.

mod util;

use std::io::Read;
use std::time::Duration;

use util::{Cmd, free_port, loopback, require};

const IDLE_LOG: &str = "(--idle-exit): stopping";

#[test]
fn exits_cleanly_after_idle_seconds_from_the_environment() {
    if !require("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    // systemd-socket-activate passes on only the variables -E names.
    let server =
        Cmd::socket_activate(&["-l", &format!("127.0.0.1:{port}"), "-E", "FORTUNE_IDLE_EXIT=1"]).spawn();
    // systemd-socket-activate starts the service at the first connection.
    let fortunes = util::qt_read(loopback(port), "qt", 1);
    assert!(
        util::builtin().contains(&fortunes[0]),
        "not a built-in fortune: {fortunes:?}"
    );
    let done = server.exit(Duration::from_secs(20));
    done.assert_code(0)
        .assert_stderr_has("no client for 1 s")
        .assert_stderr_has(IDLE_LOG);
    // It stopped the normal way: everything in flight was done first.
    done.assert_stderr_has("stopped; 1 served, 0 active, 0 failed");
}

#[test]
fn a_lingering_client_keeps_the_service_up() {
    if !require("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let mut server = Cmd::socket_activate(&["-l", &format!("127.0.0.1:{port}")])
        .args(["--idle-exit", "1", "--timeout", "60"])
        .spawn();
    // Read the fortune but do not close: the connection lingers up to --timeout.
    let mut client = util::connect(loopback(port)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut frame = Vec::new();
    client.read_to_end(&mut frame).expect("read the fortune");
    assert!(frame.len() > 4, "no fortune: {frame:?}");
    // Well past --idle-exit, long before --timeout (only a test stalled for
    // most of a minute could see the lingering client timed out): still running.
    if server.exited_within(Duration::from_secs(3)).is_some() {
        server.fail("exited while a client was still lingering");
    }
    drop(client);
    server
        .exit(Duration::from_secs(20))
        .assert_code(0)
        .assert_stderr_has(IDLE_LOG);
}

#[test]
fn idle_exit_must_be_positive() {
    Cmd::server()
        .args(["--idle-exit", "0"])
        .run(Duration::from_secs(10))
        .assert_code(fortune_server::exit::USAGE as i32)
        .assert_stderr_has("out of range");
}
