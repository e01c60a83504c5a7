//! Exit statuses and the one-line errors behind them, as systemd or a shell
//! would provoke them. Pins the table in docs/reference.md to `fortune_server::exit`.

mod util;

use std::time::Duration;

use fortune_server::exit;
use util::{Cmd, Finished, SERVER, file_with, free_port, loopback, require};

const LIMIT: Duration = Duration::from_secs(20);

/// Runs the server from `sh`, which sets up descriptors as systemd would
/// (`exec` keeps the PID, so `LISTEN_PID=$$` names the server).
fn sh(script: &str) -> Finished {
    Cmd::new("sh").args(["-c", script, SERVER]).run(LIMIT)
}

/// Runs the server from Python, for sockets `sh` cannot make. `setup` leaves
/// the descriptors in place and a dict `env` of extra variables.
fn py(setup: &str) -> Option<Finished> {
    if !require("/usr/bin/python3") {
        return None;
    }
    let script = format!(
        "import os, socket, sys, time\nenv = {{}}\n{setup}\nos.environ.update(env)\n\
         for fd in range(3, 3 + int(env.get('LISTEN_FDS', '0'))): os.set_inheritable(fd, True)\n\
         os.environ['LISTEN_PID'] = str(os.getpid())\nos.execv(sys.argv[1], sys.argv[1:])\n"
    );
    Some(
        Cmd::new("/usr/bin/python3")
            .args(["-c", &script, SERVER])
            .run(LIMIT),
    )
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

/// What a client the test forks before exec'ing the server saw: Python that
/// sets `r` (in a child, `os.fork() == 0`) and the path it is written to.
fn client_saw(result: &std::path::Path, done: &Finished) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
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

fn result_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("fortune-tests-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A client waiting on the passed socket when the server cannot start, and
/// one arriving a second later, with the socket kept open elsewhere as
/// systemd keeps it: the server closes both before it exits (left queued,
/// each would make systemd start the service again at once, until the start
/// limit fails the socket); it goes on refusing for `REFUSE_FOR` first, so
/// that clients that keep coming start it at most that often.
fn waiting_client_after(variable: &str, value: &str, code: u8) {
    let result = result_file(&format!("waiting-{code}"));
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
         c.close()\nos.dup2(l.fileno(), 3)\nenv['LISTEN_FDS'] = '1'\nenv[{variable:?}] = {value:?}",
        result = result.display().to_string(),
    )) else {
        return;
    };
    done.assert_code(code.into());
    assert_eq!(
        client_saw(&result, &done),
        "closed, closed",
        "the waiting client and one a second later, after {variable}={value}"
    );
}

#[test]
fn a_waiting_client_is_closed_when_the_fortunes_are_unreadable() {
    waiting_client_after("FORTUNE_FORTUNES", "/nonexistent/fortunes", exit::FORTUNES);
}

#[test]
fn a_waiting_client_is_closed_on_a_usage_error() {
    waiting_client_after("FORTUNE_IDLE_EXIT", "10m", exit::USAGE);
}

/// inetd / StandardInput=socket: stdin, stdout and stderr are the client's
/// socket. A usage error must not write a byte there (it goes to the journal).
#[test]
fn a_usage_error_under_inetd_writes_nothing_to_the_client() {
    let result = result_file("inetd-usage");
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
