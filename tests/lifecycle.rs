//! What systemd and an admin see across the service's life: STATUS= kept
//! current and across reloads, a failed reload shown until a good one, the
//! unit's ExecReload= failing when the reload did, the first error logged
//! before the refusal hold, warnings for configuration that would otherwise
//! be ignored, and the error of a unit started without its socket.

mod util;

use std::time::Duration;

use util::{Cmd, NotifySocket, dir_with, fetch, free_port, loopback, require};

const LIMIT: Duration = Duration::from_secs(90);

fn listening(args: &[&str], notify: Option<&NotifySocket>) -> (util::Running, std::net::SocketAddr) {
    let addr = loopback(free_port());
    let mut server = Cmd::server().args(["--listen", &addr.to_string()]).args(args);
    if let Some(notify) = notify {
        server = server.env("NOTIFY_SOCKET", &notify.path);
    }
    let server = server.spawn();
    server.wait_for_log("Serving");
    (server, addr)
}

#[test]
fn status_keeps_its_counters_across_a_reload_and_shows_a_failed_one_until_a_good_one() {
    let dir = dir_with(&[("ours", b"one\n%\ntwo\n")]);
    let file = dir.join("ours");
    let notify = NotifySocket::new();
    let (server, addr) = listening(&["--fortunes", file.to_str().expect("UTF-8")], Some(&notify));
    for _ in 0..3 {
        fetch(addr);
    }
    let (_, next) = notify.wait_for(0, "with 3 served", |m| {
        m.contains("STATUS=") && m.contains("; 3 served,")
    });
    let next = std::cell::Cell::new(next);
    // Each wait looks only at what came after the last one found.
    let wait = |what: &str, wanted: &dyn Fn(&str) -> bool| {
        let (message, after) = notify.wait_for(next.get(), what, wanted);
        next.set(after);
        message
    };
    let reload = |what: &str| {
        server.signal("HUP");
        wait(what, &|m| m.contains("READY=1"))
    };
    let ready = reload("READY=1 after the reload");
    assert!(
        ready.contains("; 3 served,"),
        "the counters vanished after the reload: {ready}"
    );

    std::fs::write(&file, b"").expect("empty the file");
    let ready = reload("READY=1 after the failed reload");
    assert!(
        ready.contains("RELOAD FAILED") && ready.contains(file.to_str().expect("UTF-8")),
        "{ready}"
    );
    fetch(addr);
    let later = wait("the next STATUS=", &|m| m.contains("; 4 served,"));
    assert!(
        later.contains("RELOAD FAILED"),
        "the failed reload vanished: {later}"
    );

    std::fs::write(&file, b"one\n%\ntwo\n%\nthree\n").expect("mend the file");
    let ready = reload("READY=1 after the good reload");
    assert!(
        !ready.contains("RELOAD FAILED") && ready.contains("Serving 3 fortunes"),
        "{ready}"
    );
    server.stop().assert_code(0);
}

/// The `ExecReload=` line of a unit, as the shell gets it (systemd's `$$` is `$`).
fn exec_reload(unit: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/systemd/{unit}", env!("CARGO_MANIFEST_DIR")))
        .expect("read the unit");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecReload=/bin/sh -c '"))
        .expect("ExecReload=/bin/sh -c '...'");
    line.strip_suffix('\'')
        .expect("a quoted script")
        .replace("$$", "$")
}

#[test]
fn the_units_exec_reload_fails_when_the_reload_does() {
    let dir = dir_with(&[("ours", b"one\n%\ntwo\n")]);
    let file = dir.join("ours");
    // No NOTIFY_SOCKET: nobody would read it here. INVOCATION_ID: the
    // answer is given only under systemd.
    let server = Cmd::server()
        .args(["--listen", &loopback(free_port()).to_string(), "--fortunes"])
        .arg(&file)
        .env("INVOCATION_ID", "0123456789abcdef")
        .spawn();
    server.wait_for_log("Serving");
    for unit in ["fortune.service", "fortune-qotd.service"] {
        let reload = || {
            Cmd::new("sh")
                .args(["-c", &exec_reload(unit)])
                .env("MAINPID", server.pid().to_string())
                .run(LIMIT)
        };
        reload().assert_code(0);
        std::fs::write(&file, b"").expect("empty the file");
        reload().assert_code(1);
        std::fs::write(&file, b"one\n%\ntwo\n").expect("mend the file");
        reload().assert_code(0);
    }
    server.stop().assert_code(0);
}

#[test]
fn a_fatal_error_is_logged_before_the_refusal_hold() {
    if !require("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let addr = loopback(port).to_string();
    let mut server = Cmd::socket_activate(&["-l", &addr])
        .args(["--fortunes", "/nonexistent/fortunes"])
        .spawn();
    // The first client starts it (systemd-socket-activate waits for one).
    let _ = util::read_all(loopback(port));
    server.wait_for_log("error: cannot read fortune file /nonexistent/fortunes");
    // Still refusing clients (activation::REFUSE_FOR, 3 s): the line came first.
    assert!(
        server.exited_within(Duration::ZERO).is_none(),
        "the error was logged only when the process exited"
    );
    assert_eq!(server.wait(LIMIT).and_then(|s| s.code()), Some(1));
}

#[test]
fn an_unknown_variable_is_named_with_the_closest_known_one() {
    let addr = loopback(free_port());
    let server = Cmd::server()
        .args(["--listen", &addr.to_string()])
        .env("FORTUNE_FORTUNE", "/srv/fortunes/ours")
        .spawn();
    server.wait_for_log("Serving");
    let done = server.stop();
    done.assert_stderr_has(
        "FORTUNE_FORTUNE is not a variable fortune-server reads (ignored); did you mean FORTUNE_FORTUNES?",
    );
    assert_eq!(
        done.stderr.matches("is not a variable").count(),
        1,
        "{}",
        done.stderr
    );
}

#[test]
fn booleans_take_the_usual_spellings() {
    for yes in ["1", "yes", "on", "true"] {
        let addr = loopback(free_port());
        let server = Cmd::server()
            .args(["--listen", &addr.to_string()])
            .env("FORTUNE_OFFENSIVE", yes)
            .spawn();
        server.wait_for_log("Serving");
        server.stop().assert_code(0);
    }
    Cmd::server()
        .env("FORTUNE_DAILY", "maybe")
        .run(LIMIT)
        .assert_code(2)
        .assert_stderr_has("use 1/0, yes/no, on/off or true/false");
}

#[test]
fn a_socket_name_overriding_fortune_protocol_is_warned_about() {
    if !require("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    // systemd-socket-activate passes on only the variables given with -E.
    let server = Cmd::socket_activate(&[
        "-l",
        &loopback(port).to_string(),
        "--fdname=qt",
        "-E",
        "FORTUNE_PROTOCOL=qt4",
    ])
    .spawn();
    let frame = util::read_all(loopback(port)).expect("a fortune");
    fortune_server::wire::decode(fortune_server::wire::Protocol::Qt, &frame)
        .expect("qt framing, as the name says");
    server.wait_for_log("Serving");
    server.stop().assert_code(0).assert_stderr_has(&format!(
        "FORTUNE_PROTOCOL (--protocol) qt4 does not apply to tcp 127.0.0.1:{port}: its systemd name \
         (FileDescriptorName=qt) chooses qt"
    ));
}

#[test]
fn started_by_systemd_without_a_socket_names_the_cause_not_listen() {
    let done = Cmd::server().env("INVOCATION_ID", "0123456789abcdef").run(LIMIT);
    done.assert_code(3).assert_stderr_has("without a socket to serve");
    assert!(!done.stderr.contains("--listen"), "{}", done.stderr);
    // An address given on purpose is still bound.
    let addr = loopback(free_port());
    let server = Cmd::server()
        .env("INVOCATION_ID", "0123456789abcdef")
        .args(["--listen", &addr.to_string()])
        .spawn();
    server.wait_for_log("Serving");
    fetch(addr);
    server.stop().assert_code(0);
}
