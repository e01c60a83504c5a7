//! The binary started the ways systemd and a shell start it: standalone,
//! under `systemd-socket-activate` in all three modes, with named sockets;
//! fortunes read by our decoder and by the real Qt (PyQt5).

mod util;

use std::time::Duration;

use fortune_server::wire::{self, Protocol};
use util::{Cmd, builtin, free_port, loopback, qt_read, read_all, require};

fn assert_builtin(text: &str) {
    assert!(
        builtin().iter().any(|f| f == text),
        "not a built-in fortune: {text:?}"
    );
}

#[test]
fn standalone_serves_the_builtin_fortunes_and_stops_cleanly_on_sigterm() {
    let port = free_port();
    let server = Cmd::server()
        .args(["--listen", &loopback(port).to_string()])
        .spawn();
    server.wait_for_log("Serving 7 fortunes (built-in)");
    assert!(
        server
            .stderr()
            .contains(&format!("listening on tcp 127.0.0.1:{port} (qt)"))
    );
    for _ in 0..20 {
        let frame = read_all(loopback(port)).expect("a frame");
        assert_builtin(&wire::decode(Protocol::Qt, &frame).expect("a whole qt frame"));
    }
    let done = server.stop();
    done.assert_code(0)
        .assert_stderr_has("20 served, 0 active, 0 failed");
}

#[test]
fn standalone_listens_on_every_address_given_by_flag_or_environment() {
    let (a, b) = (free_port(), free_port());
    let server = Cmd::server()
        .env("FORTUNE_LISTEN", format!("127.0.0.1:{a},[::1]:{b}"))
        .spawn();
    server.wait_for_log("Serving");
    assert_builtin(&wire::decode(Protocol::Qt, &read_all(loopback(a)).unwrap()).unwrap());
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, b));
    match read_all(v6) {
        Ok(frame) => assert_builtin(&wire::decode(Protocol::Qt, &frame).unwrap()),
        // A machine without IPv6 loopback cannot bind [::1]: then the service must have said so.
        Err(_) => server.fail("no fortune over [::1]"),
    }
    server.stop().assert_code(0);
}

#[test]
fn real_qt_reader_gets_fortunes_in_qt_and_qt4_framing() {
    if !require("/usr/bin/python3") {
        return;
    }
    for framing in ["qt", "qt4"] {
        let port = free_port();
        let server = Cmd::server()
            .args(["--listen", &loopback(port).to_string(), "--protocol", framing])
            .spawn();
        server.wait_for_log("Serving");
        let fortunes = qt_read(loopback(port), framing, 10);
        assert_eq!(fortunes.len(), 10);
        fortunes.iter().for_each(|f| assert_builtin(f));
        // The Qt client re-requests when a fortune repeats: consecutive ones differ.
        assert!(fortunes.windows(2).all(|w| w[0] != w[1]), "{fortunes:?}");
        server.stop().assert_code(0);
    }
}

#[test]
fn accept_no_adopts_the_listening_socket() {
    if !require("systemd-socket-activate") || !require("/usr/bin/python3") {
        return;
    }
    let port = free_port();
    let server = Cmd::socket_activate(&["-l", &loopback(port).to_string()]).spawn();
    // systemd-socket-activate execs the service on the first connection.
    let fortunes = qt_read(loopback(port), "qt", 5);
    fortunes.iter().for_each(|f| assert_builtin(f));
    server.wait_for_log("Serving 7 fortunes (built-in) on tcp 127.0.0.1");
    let done = server.stop();
    done.assert_code(0).assert_stderr_has("5 served");
}

#[test]
fn accept_yes_serves_one_connection_per_process_on_fd_3() {
    if !require("systemd-socket-activate") || !require("/usr/bin/python3") {
        return;
    }
    let port = free_port();
    let server = Cmd::socket_activate(&["--accept", "-l", &loopback(port).to_string()]).spawn();
    for f in qt_read(loopback(port), "qt", 3) {
        assert_builtin(&f);
    }
    let frame = read_all(loopback(port)).unwrap();
    assert_builtin(&wire::decode(Protocol::Qt, &frame).unwrap());
    // Each child is reported by systemd-socket-activate with its exit status.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while server.stderr().matches("died with code 0").count() < 4 {
        if std::time::Instant::now() > end {
            server.fail("four children should have exited with status 0");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !server.stderr().contains("died with code 1"),
        "a child failed\n{}",
        server.stderr()
    );
}

#[test]
fn inetd_mode_serves_stdin_and_never_logs_into_the_socket() {
    if !require("systemd-socket-activate") {
        return;
    }
    for (protocol, check) in [
        ("text", Protocol::Text),
        ("qt", Protocol::Qt),
        ("qt4", Protocol::Qt4),
    ] {
        let port = free_port();
        let server = Cmd::socket_activate(&["--inetd", "--accept", "-l", &loopback(port).to_string()])
            .args(["--inetd", "--protocol", protocol, "--log-level", "debug"])
            .spawn();
        let frame = read_all(loopback(port)).unwrap();
        // Byte-exact: exactly one frame, no log line mixed in.
        let text = wire::decode(check, &frame).unwrap_or_else(|e| server.fail(&format!("{protocol}: {e}")));
        assert_builtin(&text);
        assert_eq!(frame, wire::encode(check, &text).unwrap());
    }
}

#[test]
fn named_sockets_choose_their_protocol() {
    if !require("systemd-socket-activate") {
        return;
    }
    let (qt, text) = (free_port(), free_port());
    let (qt_addr, text_addr) = (loopback(qt).to_string(), loopback(text).to_string());
    let server = Cmd::socket_activate(&["-l", &qt_addr, "-l", &text_addr, "--fdname=qt:text"]).spawn();
    let frame = read_all(loopback(text)).unwrap();
    let fortune = wire::decode(Protocol::Text, &frame).unwrap();
    assert_builtin(&fortune);
    assert_eq!(frame, format!("{fortune}\r\n").into_bytes());
    assert_builtin(&wire::decode(Protocol::Qt, &read_all(loopback(qt)).unwrap()).unwrap());
    server.wait_for_log("(text)");
    let done = server.stop();
    done.assert_code(0)
        .assert_stderr_has(&format!("listening on tcp 127.0.0.1:{qt} (qt)"));
    done.assert_stderr_has(&format!("listening on tcp 127.0.0.1:{text} (text)"));
}

#[test]
fn a_client_that_sends_bytes_still_gets_its_whole_fortune() {
    let port = free_port();
    let server = Cmd::server()
        .args(["--listen", &loopback(port).to_string()])
        .spawn();
    server.wait_for_log("Serving");
    for _ in 0..10 {
        let frame = util::send_and_read(loopback(port), &[b'x'; 100_000]).expect("no reset");
        assert_builtin(&wire::decode(Protocol::Qt, &frame).unwrap());
    }
    server.stop().assert_code(0);
}

#[test]
fn options_come_from_the_environment_too() {
    let port = free_port();
    let server = Cmd::server()
        .env("FORTUNE_LISTEN", loopback(port).to_string())
        .env("FORTUNE_PROTOCOL", "text")
        .env("FORTUNE_LOG_LEVEL", "debug")
        .env("FORTUNE_TIMEOUT", "1")
        .env("FORTUNE_MAX_CONNECTIONS", "1")
        .env("FORTUNE_MAX_PER_SOURCE", "3")
        .spawn();
    server.wait_for_log("(text)");
    server.wait_for_log("may hold 3 connections (--max-per-source)");
    assert_builtin(&wire::decode(Protocol::Text, &read_all(loopback(port)).unwrap()).unwrap());
    // A client that never closes is dropped after FORTUNE_TIMEOUT=1.
    let idle = util::connect(loopback(port)).unwrap();
    server.wait_for_log("did not close within the timeout");
    drop(idle);
    server.stop().assert_code(0);
}

#[test]
fn a_unix_stream_socket_is_served_too() {
    if !require("systemd-socket-activate") {
        return;
    }
    let dir = util::Scratch::dir();
    let path = dir.join("fortune.sock");
    let server = Cmd::socket_activate(&["-l", path.to_str().unwrap()]).spawn();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() > end => server.fail(&format!("connect: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut frame = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut frame).unwrap();
    drop(stream);
    assert_builtin(&wire::decode(Protocol::Qt, &frame).unwrap());
    server.wait_for_log("listening on unix");
    server.stop().assert_code(0);
}

#[test]
fn udp_datagrams_get_rfc865_text() {
    if !require("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let server = Cmd::socket_activate(&["--datagram", "-l", &loopback(port).to_string()]).spawn();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 2048];
    // The first datagram starts the service; retry until a reply arrives.
    let mut replies = 0;
    for _ in 0..40 {
        client.send_to(b"any", loopback(port)).unwrap();
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            assert!(n <= wire::QOTD_MAX_DATAGRAM);
            assert_builtin(&wire::decode(Protocol::Text, &buf[..n]).unwrap());
            replies += 1;
            if replies == 3 {
                break;
            }
        }
    }
    if replies < 3 {
        server.fail("fewer than 3 UDP replies");
    }
    server.wait_for_log("answering datagrams on udp");
    server.stop().assert_code(0);
}
