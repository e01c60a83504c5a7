//! fortune-client against the service (every protocol, IPv4 and IPv6), Qt's
//! own fortuneserver, and servers that misbehave; its exit statuses.

mod util;

use std::time::Duration;

use fortune_server::client::exit;
use fortune_server::wire::{Protocol, encode};
use util::{Cmd, builtin, fake_server, free_port, loopback};

const LIMIT: Duration = Duration::from_secs(30);

/// The service on a fresh loopback port, listening on `addr` ("HOST:" + port).
fn service(host: &str, protocol: &str) -> (util::Running, String) {
    let port = free_port();
    let addr = format!("{host}:{port}");
    let running = Cmd::server()
        .args(["--listen", &addr, "--protocol", protocol])
        .spawn();
    running.wait_for_log("Serving");
    (running, addr)
}

#[test]
fn prints_one_fortune_in_every_protocol() {
    for protocol in ["qt", "qt4", "text"] {
        let (_server, addr) = service("127.0.0.1", protocol);
        let done = Cmd::client().args([&addr, "--protocol", protocol]).run(LIMIT);
        done.assert_code(exit::OK.into());
        let fortune = done
            .stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("{}", done.report()));
        assert!(
            builtin().iter().any(|b| b == fortune),
            "{protocol}: {fortune:?}\n{}",
            done.report()
        );
    }
}

#[test]
fn another_framing_is_named() {
    for (server, client) in [("qt4", "qt"), ("text", "qt"), ("qt", "qt4")] {
        let (_server, addr) = service("127.0.0.1", server);
        let done = Cmd::client().args([&addr, "--protocol", client]).run(LIMIT);
        done.assert_code(exit::FRAME.into())
            .assert_stderr_has(&format!("they read as --protocol {server}: try that"));
    }
}

#[test]
fn ipv6_and_count() {
    let (_server, addr) = service("[::1]", "qt");
    let done = Cmd::client().args([&addr, "--count", "3"]).run(LIMIT);
    done.assert_code(exit::OK.into());
    let fortunes: Vec<&str> = done
        .stdout
        .split("%\n")
        .map(|f| f.trim_end_matches('\n'))
        .collect();
    assert_eq!(fortunes.len(), 3, "{}", done.report());
    for f in fortunes {
        assert!(builtin().iter().any(|b| b == f), "{f:?}\n{}", done.report());
    }
}

#[test]
fn reads_qt_fortuneserver() {
    let qt = "/usr/lib/x86_64-linux-gnu/qt5/examples/network/fortuneserver/fortuneserver";
    if !util::require(qt) || !util::require("ss") {
        return;
    }
    let server = Cmd::new(qt).env("QT_QPA_PLATFORM", "offscreen").spawn();
    let port =
        util::listening_port(server.pid()).unwrap_or_else(|| server.fail("Qt fortuneserver listens nowhere"));
    let done = Cmd::client()
        .args([&loopback(port).to_string(), "-n", "2"])
        .run(LIMIT);
    done.assert_code(exit::OK.into());
    // Qt's example has its own seven fortunes, the same as our built-in ones.
    for f in done.stdout.split("%\n").map(|f| f.trim_end_matches('\n')) {
        assert!(builtin().iter().any(|b| b == f), "{f:?}\n{}", done.report());
    }
}

#[test]
fn absent_server_is_one_line_and_status_1() {
    let port = free_port();
    let done = Cmd::client().arg(format!("127.0.0.1:{port}")).run(LIMIT);
    done.assert_code(exit::NETWORK.into())
        .assert_stderr_has("fortune-client: error: cannot connect to 127.0.0.1")
        .assert_stderr_has("refused");
    assert_eq!(done.stderr.lines().count(), 1, "{}", done.report());
    assert!(done.stdout.is_empty(), "{}", done.report());
}

#[test]
fn silent_server_times_out() {
    let addr = fake_server(b"", 1, Duration::from_secs(5));
    let done = Cmd::client()
        .args([&addr.to_string(), "--timeout", "0.3"])
        .run(LIMIT);
    done.assert_code(exit::NETWORK.into())
        .assert_stderr_has("timed out");
}

#[test]
fn malformed_frames_are_status_3() {
    let cases: [(&[u8], &str); 5] = [
        (b"", "short frame: 0 bytes"),
        (&[0, 0, 0, 10, 0, b'a'], "short frame: 6 of 14 bytes"),
        (&[0, 0, 0, 3, 0, b'a', 0], "odd UTF-16 byte count 3"),
        (&[0, 0, 0, 2, 0, b'a', b'!'], "1 bytes after the end of the frame"),
        (&[0xff, 0xff, 0xff, 0xff], "null QString"),
    ];
    for (reply, why) in cases {
        let addr = fake_server(reply, 1, Duration::ZERO);
        let done = Cmd::client().arg(addr.to_string()).run(LIMIT);
        done.assert_code(exit::FRAME.into()).assert_stderr_has(why);
        assert!(done.stdout.is_empty(), "{}", done.report());
    }
}

#[test]
fn a_qt4_frame_is_not_a_qt_frame() {
    let addr = fake_server(&[0, 6, 0, 0, 0, 2, 0, b'a'], 1, Duration::ZERO);
    Cmd::client()
        .arg(addr.to_string())
        .run(LIMIT)
        .assert_code(exit::FRAME.into());
}

#[test]
fn bad_targets_are_usage_errors() {
    for bad in ["host:port", "host:", "[::1"] {
        Cmd::client()
            .arg(bad)
            .run(LIMIT)
            .assert_code(exit::USAGE.into())
            .assert_stderr_has("HOST[:PORT]");
    }
    for args in [&["--count", "0"][..], &["--bogus"], &["bench", "--clients", "x"]] {
        let done = Cmd::client().args(args).run(LIMIT);
        done.assert_code(exit::USAGE.into());
        assert_eq!(done.stderr.lines().count(), 1, "one line\n{}", done.report());
    }
}

#[test]
fn bench_counts_connections_and_prints_json() {
    let (_server, addr) = service("127.0.0.1", "qt");
    let done = Cmd::client()
        .args([
            "bench",
            &addr,
            "--clients",
            "4",
            "--connections",
            "200",
            "--duration",
            "20",
            "--json",
        ])
        .run(LIMIT);
    done.assert_code(exit::OK.into());
    let json = done.stdout.trim();
    for field in [
        "\"clients\":4,",
        "\"ok\":200,",
        "\"failed\":0,",
        "\"malformed\":0",
        "\"first_error\":null",
    ] {
        assert!(json.contains(field), "{field} missing\n{}", done.report());
    }
    assert!(json.starts_with('{') && json.ends_with('}'), "{}", done.report());
}

/// `--rate`: connection k starts no earlier than k/rate after the start, so
/// 20 connections at 40 a second take at least 19/40 s, however fast the
/// server (a lower bound only: a slow machine takes longer, never shorter).
#[test]
fn bench_paces_connections_under_rate() {
    let (_server, addr) = service("127.0.0.1", "qt");
    let done = Cmd::client()
        .args([
            "bench",
            &addr,
            "-c",
            "4",
            "--connections",
            "20",
            "--rate",
            "40",
            "-d",
            "60",
            "--json",
        ])
        .run(LIMIT);
    done.assert_code(exit::OK.into());
    let json = done.stdout.trim();
    assert!(json.contains("\"ok\":20,"), "{}", done.report());
    let seconds: f64 = json
        .split("\"seconds\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {json}"));
    assert!(
        seconds >= 19.0 / 40.0,
        "20 connections in {seconds} s at --rate 40\n{}",
        done.report()
    );
}

#[test]
fn bench_sorts_errors_by_kind() {
    let odd = fake_server(&[0, 0, 0, 3, 0, b'a', 0], 5, Duration::ZERO);
    let done = Cmd::client()
        .args([
            "bench",
            &odd.to_string(),
            "-c",
            "2",
            "--connections",
            "5",
            "-q",
            "--json",
        ])
        .run(LIMIT);
    done.assert_code(exit::NETWORK.into());
    assert!(done.stdout.contains("\"malformed\":5,"), "{}", done.report());
    assert!(done.stdout.contains("\"ok\":0,"), "{}", done.report());

    let port = free_port();
    let done = Cmd::client()
        .args(["bench", &format!("127.0.0.1:{port}"), "--connections", "3", "-q"])
        .run(LIMIT);
    done.assert_code(exit::NETWORK.into());
    assert!(done.stdout.contains("refused 3,"), "{}", done.report());
    assert!(
        done.stdout.contains("first error  cannot connect to"),
        "{}",
        done.report()
    );
}

#[test]
fn bench_reads_long_frames_and_refuses_endless_ones() {
    let bench = |addr: std::net::SocketAddr| {
        Cmd::client()
            .args([
                "bench",
                &addr.to_string(),
                "-c",
                "2",
                "--connections",
                "3",
                "-q",
                "--json",
            ])
            .run(LIMIT)
    };
    // Many reads per answer: 12,004 bytes.
    let long = encode(Protocol::Qt, &"x".repeat(6000)).expect("encodes");
    let done = bench(fake_server(&long, 3, Duration::ZERO));
    done.assert_code(exit::OK.into());
    assert!(done.stdout.contains("\"ok\":3,"), "{}", done.report());
    // Over the client's 1 MiB bound: counted malformed, not held in memory.
    let huge = encode(Protocol::Qt, &"x".repeat(600_000)).expect("encodes");
    let done = bench(fake_server(&huge, 3, Duration::ZERO));
    done.assert_code(exit::NETWORK.into());
    assert!(done.stdout.contains("\"malformed\":3,"), "{}", done.report());
    assert!(
        done.stdout.contains("longer than 1048576 bytes"),
        "{}",
        done.report()
    );
}

#[test]
fn bench_times_out_a_server_that_never_finishes() {
    // Half a frame, then the connection held open well past --timeout.
    let slow = fake_server(&[0, 0, 0, 4, 0], 2, Duration::from_secs(3));
    let done = Cmd::client()
        .args([
            "bench",
            &slow.to_string(),
            "-c",
            "2",
            "-t",
            "2",
            "--connections",
            "2",
            "--timeout",
            "0.5",
            "-q",
        ])
        .run(LIMIT);
    done.assert_code(exit::NETWORK.into());
    assert!(done.stdout.contains("timeout 2,"), "{}", done.report());
    assert!(
        done.stdout.contains("first error  reading from"),
        "{}",
        done.report()
    );
}

#[test]
fn bench_holds_idle_connections_and_shows_progress() {
    let (_server, addr) = service("127.0.0.1", "qt");
    let done = Cmd::client()
        .args(["bench", &addr, "-c", "2", "--idle", "50", "--duration", "1.5"])
        .run(LIMIT);
    done.assert_code(exit::OK.into())
        .assert_stderr_has("bench: 1 s, ");
    assert!(done.stdout.contains("2 clients, 50 idle"), "{}", done.report());
}

#[test]
fn a_server_that_never_stops_sending_is_refused_within_the_cap() {
    use fortune_server::client::MAX_ANSWER;
    let cases: [(&[u8], &str, String); 3] = [
        // Announces a 2 GiB QString, then streams 200 MB.
        (
            &[0x7f, 0xff, 0xff, 0xfe],
            "qt",
            format!("announces a frame of 2147483650 bytes, more than the {MAX_ANSWER} bytes"),
        ),
        // Announces 30 MiB (within the cap), then sends 200 MB.
        (
            &(30u32 << 20).to_be_bytes(),
            "qt",
            format!("sends more than the {MAX_ANSWER} bytes"),
        ),
        (b"", "text", format!("sends more than the {MAX_ANSWER} bytes")),
    ];
    for (header, protocol, why) in cases {
        let addr = util::streaming_server(header, 200 << 20);
        // 64 MiB of address space: the client's memory can be no larger.
        let done = Cmd::client()
            .args([&addr.to_string(), "--protocol", protocol])
            .with_memory_limit(64)
            .run(LIMIT);
        done.assert_code(exit::FRAME.into()).assert_stderr_has(&why);
        assert!(done.stdout.is_empty(), "{}", done.report());
    }
}

#[test]
fn control_characters_are_escaped_on_a_terminal_only() {
    if !util::require("script") {
        return;
    }
    // Retitle the window, clear the screen, a C1 CSI, a carriage return hiding text.
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2Jsafe\u{9b}31m\rhidden";
    let frame = encode(Protocol::Qt, hostile).expect("encode");
    let addr = fake_server(&frame, 2, Duration::ZERO);
    // Through a pipe: as sent.
    let piped = Cmd::client().arg(addr.to_string()).run(LIMIT);
    piped.assert_code(0);
    assert_eq!(piped.stdout, format!("{hostile}\n"), "{}", piped.report());
    // On a terminal (script(1) gives it one): escaped.
    let client = format!("{} {addr}", util::CLIENT);
    let shown = Cmd::new("script").args(["-qec", &client, "/dev/null"]).run(LIMIT);
    shown.assert_code(0);
    assert!(
        shown.stdout.contains("^[]0;owned^G^[[2Jsafe\\u{9b}31m^Mhidden"),
        "{}",
        shown.report()
    );
    assert!(!shown.stdout.contains('\u{1b}'), "{}", shown.report());
}
