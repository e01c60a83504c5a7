//! Exit statuses and the one-line errors behind them, as systemd or a shell
//! would provoke them. Pins the table in docs/reference.md to `fortune_server::exit`.

mod util;

use std::time::Duration;

use fortune_server::exit;
use util::{Cmd, Finished, SERVER, Scratch, activator, file_with, free_port, loopback};

const LIMIT: Duration = Duration::from_secs(20);

/// Runs the server from `sh`, which sets up descriptors as systemd would
/// (`exec` keeps the PID, so `LISTEN_PID=$$` names the server).
fn sh(script: &str) -> Finished {
    Cmd::new("sh").args(["-c", script, SERVER]).run(LIMIT)
}

/// Runs the server from Python, for sockets `sh` cannot make (see [`activator`]).
fn py(setup: &str) -> Option<Finished> {
    activator(setup).map(|cmd| cmd.run(LIMIT))
}

#[test]
fn codes_match_the_readme_table() {
    let pinned = [
        (exit::OK, 0),
        (exit::FORTUNES, 1),
        (exit::USAGE, 2),
        (exit::ACTIVATION, 3),
        (exit::LISTEN, 4),
        (exit::RUNTIME, 5),
    ];
    for (constant, value) in pinned {
        assert_eq!(constant, value);
    }
    let reference =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md")).unwrap();
    let table = reference
        .split("## Exit statuses")
        .nth(1)
        .expect("docs/reference.md has an exit status section");
    for (_, value) in pinned {
        assert!(
            table.contains(&format!("\n| {value} | ")),
            "docs/reference.md documents no exit status {value}"
        );
    }
}

#[test]
fn listen_fds_that_is_not_a_number() {
    sh("LISTEN_PID=$$ LISTEN_FDS=abc exec \"$0\"")
        .assert_code(exit::ACTIVATION.into())
        .assert_stderr_has("LISTEN_FDS=\"abc\" is not a number of descriptors");
}

#[test]
fn listen_fdnames_that_do_not_match_the_count() {
    sh("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=qt:text exec \"$0\" 3</dev/null")
        .assert_code(exit::ACTIVATION.into())
        .assert_stderr_has("LISTEN_FDNAMES=\"qt:text\" must hold one name per descriptor");
}

#[test]
fn a_passed_fd_that_is_not_open() {
    sh("exec 3<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\"")
        .assert_code(exit::ACTIVATION.into())
        .assert_stderr_has("fd 3 was passed by LISTEN_FDS but is not open");
}

#[test]
fn a_passed_fd_that_is_a_regular_file() {
    let file = file_with(b"not a socket");
    sh(&format!(
        "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" 3<{}",
        file.display()
    ))
    .assert_code(exit::ACTIVATION.into())
    .assert_stderr_has("fd 3 is a regular file, expected a stream or datagram socket");
}

#[test]
fn a_passed_fd_that_is_a_pipe() {
    let Some(done) = py("r, w = os.pipe()\nos.dup2(r, 3)\nenv['LISTEN_FDS'] = '1'") else {
        return;
    };
    done.assert_code(exit::ACTIVATION.into())
        .assert_stderr_has("fd 3 is a pipe");
}

#[test]
fn inetd_with_stdin_not_a_socket() {
    Cmd::server()
        .arg("--inetd")
        .run(LIMIT)
        .assert_code(exit::ACTIVATION.into())
        .assert_stderr_has("fd 0 is a character device");
}

#[test]
fn a_unix_datagram_socket() {
    let Some(done) = py("a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         os.dup2(a.fileno(), 3)\nenv['LISTEN_FDS'] = '1'")
    else {
        return;
    };
    done.assert_code(exit::ACTIVATION.into())
        .assert_stderr_has("fd 3 is a Unix datagram socket");
}

#[test]
fn a_connected_socket_among_listening_ones() {
    let Some(done) = py("l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
         a, b = socket.socketpair()\n\
         os.dup2(l.fileno(), 3); os.dup2(a.fileno(), 4)\nenv['LISTEN_FDS'] = '2'")
    else {
        return;
    };
    done.assert_code(exit::ACTIVATION.into())
        .assert_stderr_has("fd 4 is a connected socket (Accept=yes) but 2 descriptors were passed");
}

#[test]
fn a_listen_pid_for_another_process_is_ignored() {
    // sd_listen_fds(3): the variables are for someone else; bind --listen instead.
    let port = free_port();
    let server = Cmd::server()
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .args(["--listen", &loopback(port).to_string()])
        .spawn();
    server.wait_for_log(&format!("listening on tcp 127.0.0.1:{port}"));
    server.stop().assert_code(exit::OK.into());
}

#[test]
fn fortune_files_that_cannot_be_used() {
    let missing = std::env::temp_dir().join("fortune-tests-no-such-file");
    let empty = file_with(b"\n%\n  \n%\n");
    let latin1 = file_with(b"fine\ncaf\xe9\n");
    for (path, message) in [
        (missing.as_path(), "cannot read fortune file"),
        (empty.path(), "holds no fortunes"),
        (latin1.path(), "is not UTF-8 text (line 2)"),
    ] {
        let done = Cmd::server()
            .args(["--listen", "127.0.0.1:0", "--fortunes"])
            .arg(path)
            .run(LIMIT);
        done.assert_code(exit::FORTUNES.into()).assert_stderr_has(message);
        done.assert_stderr_has(&path.display().to_string());
        assert_eq!(done.stderr.lines().count(), 1, "one line\n{}", done.report());
    }
}

#[test]
fn an_address_already_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    Cmd::server()
        .args(["--listen", &addr])
        .run(LIMIT)
        .assert_code(exit::LISTEN.into())
        .assert_stderr_has(&format!("cannot listen on {addr}"));
}

#[test]
fn usage_errors_are_one_line() {
    for args in [
        &["--bogus"][..],
        &["--timeout", "0"],
        &["--protocol", "http"],
        &["--listen", "nowhere"],
    ] {
        let done = Cmd::server().args(args).run(LIMIT);
        done.assert_code(exit::USAGE.into());
        assert_eq!(done.stderr.lines().count(), 1, "one line\n{}", done.report());
    }
    Cmd::server()
        .arg("--help")
        .run(LIMIT)
        .assert_code(exit::OK.into());
}

#[test]
fn bad_percentages_are_one_line_naming_the_value() {
    let usage = |args: &[&str], env: Option<&str>, line: &str| {
        let mut cmd = Cmd::server().args(["--listen", "127.0.0.1:0"]).args(args);
        if let Some(value) = env {
            cmd = cmd.env("FORTUNE_FORTUNES", value);
        }
        let done = cmd.run(LIMIT);
        done.assert_code(exit::USAGE.into());
        assert_eq!(
            done.stderr,
            format!("fortune-server: error: {line} (see --help)\n"),
            "\n{}",
            done.report()
        );
    };
    let fortunes = |values: &[&str]| -> Vec<String> {
        values
            .iter()
            .flat_map(|v| ["--fortunes".to_string(), v.to_string()])
            .collect()
    };
    let args = fortunes(&["80% /srv/ours", "40% /usr/share/games/fortunes"]);
    usage(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
        "--fortunes: the percentages add up to 120% (80% /srv/ours, 40% /usr/share/games/fortunes), more than 100%",
    );
    usage(
        &[],
        Some("30% /a:20% -/b"),
        "--fortunes: the percentages add up to 50% (30% /a, 20% -/b) and no path without a percentage takes the other 50%",
    );
    usage(
        &[],
        Some("100% /a:/b"),
        "--fortunes: the percentages add up to 100% (100% /a), leaving nothing for /b",
    );
    usage(
        &[],
        Some("30.5% /a:/b"),
        "invalid value '30.5% /a' for '--fortunes <[N%] PATH>': percentages must be whole numbers, as in '30% PATH'",
    );
    usage(
        &["--fortunes", "30%", "--fortunes", "/a"],
        None,
        "invalid value '30%' for '--fortunes <[N%] PATH>': a percentage must be followed by its path in the same value, as in '30% PATH'",
    );
    usage(
        &["--fortunes", "101% /a"],
        None,
        "invalid value '101% /a' for '--fortunes <[N%] PATH>': a percentage must be from 1 to 100",
    );
    // A percentage on a path that is missing: the error of any missing path (status 1)...
    let missing = std::env::temp_dir().join("fortune-tests-no-such-file");
    let builtin = file_with(b"one\ntwo\n");
    let done = Cmd::server()
        .args(["--listen", "127.0.0.1:0", "--fortunes"])
        .arg(format!("30% {}", missing.display()))
        .arg("--fortunes")
        .arg(builtin.path())
        .run(LIMIT);
    done.assert_code(exit::FORTUNES.into())
        .assert_stderr_has(&format!("cannot read fortune file {}", missing.display()));
    // ...or with nothing of the length chosen.
    let done = Cmd::server()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--short-max",
            "2",
            "--short",
            "--fortunes",
        ])
        .arg(format!("30% {}", builtin.display()))
        .arg("--fortunes=-/nonexistent")
        .run(LIMIT);
    done.assert_code(exit::FORTUNES.into());
    assert_eq!(
        done.stderr.lines().last().unwrap_or_default(),
        format!(
            "fortune-server: error: {} holds no fortune of at most 2 bytes (--short, --short-max); choose another length or path",
            builtin.display()
        ),
        "\n{}",
        done.report()
    );
}

/// What a client the test forks before exec'ing the server saw: Python that
/// sets `r` (in a child, `os.fork() == 0`) and the path it is written to.
fn client_saw(result: &std::path::Path, done: &Finished) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match std::fs::read_to_string(result) {
            Ok(r) if !r.is_empty() => {
                let _ = std::fs::remove_file(result);
                return r;
            }
            _ if std::time::Instant::now() > deadline => {
                panic!("the client reported nothing\n{}", done.report())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// An empty file for the client's report (removed, with its directory, when dropped).
fn result_file() -> Scratch {
    Scratch::file(b"")
}

/// A client waiting on the passed socket when the server cannot start, and
/// one arriving a second later, with the socket kept open elsewhere as
/// systemd keeps it: the server closes both before it exits (left queued,
/// each would make systemd start the service again at once, until the start
/// limit fails the socket); it goes on refusing for `REFUSE_FOR` first, so
/// that clients that keep coming start it at most that often. The socket is
/// fd 3, `LISTEN_FDS=1` unless `setup` (Python, see [`activator`]) says more.
fn waiting_client_after(setup: &str, code: u8) {
    let result = result_file();
    let Some(done) = py(&format!(
        "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
         c = socket.create_connection(l.getsockname())\n\
         if os.fork() == 0:\n\
         \x20   def seen(c):\n\
         \x20       c.settimeout(5)\n\
         \x20       try: return 'closed' if c.recv(100) == b'' else 'data'\n\
         \x20       except Exception as e: return type(e).__name__\n\
         \x20   first = seen(c); time.sleep(1)\n\
         \x20   later = seen(socket.create_connection(l.getsockname()))\n\
         \x20   open({result:?}, 'w').write(f'{{first}}, {{later}}'); os._exit(0)\n\
         c.close()\nos.dup2(l.fileno(), 3)\nenv['LISTEN_FDS'] = '1'\n{setup}",
        result = result.display().to_string(),
    )) else {
        return;
    };
    done.assert_code(code.into());
    assert_eq!(
        client_saw(&result, &done),
        "closed, closed",
        "the waiting client and one a second later, after {setup}"
    );
}

#[test]
fn a_waiting_client_is_closed_when_the_fortunes_are_unreadable() {
    waiting_client_after(
        "env['FORTUNE_FORTUNES'] = '/nonexistent/fortunes'",
        exit::FORTUNES,
    );
}

#[test]
fn a_waiting_client_is_closed_on_a_usage_error() {
    waiting_client_after("env['FORTUNE_IDLE_EXIT'] = '10m'", exit::USAGE);
}

/// Status 3 holds too: the listening socket among unusable descriptors
/// (here a character device at fd 4) is still refused on.
#[test]
fn a_waiting_client_is_closed_when_a_descriptor_is_unusable() {
    waiting_client_after(
        "os.dup2(os.open('/dev/null', os.O_RDONLY), 4)\nenv['LISTEN_FDS'] = '2'",
        exit::ACTIVATION,
    );
}

/// inetd / StandardInput=socket: stdin, stdout and stderr are the client's
/// socket. A usage error must not write a byte there (it goes to the journal).
#[test]
fn a_usage_error_under_inetd_writes_nothing_to_the_client() {
    let result = result_file();
    let Some(done) = py(&format!(
        "a, b = socket.socketpair()\n\
         if os.fork() == 0:\n\
         \x20   a.close(); b.settimeout(5); data = b''\n\
         \x20   while chunk := b.recv(4096): data += chunk\n\
         \x20   open({result:?}, 'w').write(f'{{len(data)}} bytes'); os._exit(0)\n\
         for fd in (0, 1, 2): os.dup2(a.fileno(), fd)\n\
         b.close(); a.close()\nsys.argv += ['--inetd', '--timeout=never']",
        result = result.display().to_string(),
    )) else {
        return;
    };
    done.assert_code(exit::USAGE.into());
    assert_eq!(client_saw(&result, &done), "0 bytes", "what the client read");
}
