//! Qt's own Fortune Client examples (qtbase5-examples), driven as a person
//! would under Xvfb, against the service in every way it can be started.

mod util;

use util::{Cmd, builtin, free_port, loopback, qt_fortune_client, require};

const FORTUNE_CLIENT: &str = "fortuneclient";
const BLOCKING_CLIENT: &str = "blockingfortuneclient";

fn tools_present() -> bool {
    let examples = "/usr/lib/x86_64-linux-gnu/qt5/examples/network";
    [
        format!("{examples}/{FORTUNE_CLIENT}/{FORTUNE_CLIENT}"),
        format!("{examples}/{BLOCKING_CLIENT}/{BLOCKING_CLIENT}"),
    ]
    .iter()
    .map(String::as_str)
    .chain([
        "/usr/bin/python3",
        "Xvfb",
        "xdotool",
        "tesseract",
        "systemd-socket-activate",
    ])
    .all(require)
}

#[test]
fn standalone() {
    if !tools_present() {
        return;
    }
    let port = free_port();
    let server = Cmd::server()
        .args(["--listen", &loopback(port).to_string()])
        .spawn();
    server.wait_for_log("Serving");
    for client in [FORTUNE_CLIENT, BLOCKING_CLIENT] {
        eprint!("{}", qt_fortune_client(loopback(port), client, 3, &builtin()));
    }
    server.stop().assert_code(0);
}

#[test]
fn accept_no() {
    if !tools_present() {
        return;
    }
    let port = free_port();
    let _server = Cmd::socket_activate(&["-l", &loopback(port).to_string()]).spawn();
    eprint!(
        "{}",
        qt_fortune_client(loopback(port), FORTUNE_CLIENT, 3, &builtin())
    );
}

#[test]
fn accept_yes() {
    if !tools_present() {
        return;
    }
    let port = free_port();
    let _server = Cmd::socket_activate(&["--accept", "-l", &loopback(port).to_string()]).spawn();
    for client in [FORTUNE_CLIENT, BLOCKING_CLIENT] {
        eprint!("{}", qt_fortune_client(loopback(port), client, 3, &builtin()));
    }
}

#[test]
fn inetd() {
    if !tools_present() {
        return;
    }
    let port = free_port();
    let _server = Cmd::socket_activate(&["--inetd", "--accept", "-l", &loopback(port).to_string()])
        .arg("--inetd")
        .spawn();
    eprint!(
        "{}",
        qt_fortune_client(loopback(port), FORTUNE_CLIENT, 3, &builtin())
    );
}
