//! Behind a real load balancer: Debian's HAProxy, running the configuration
//! docs/scale-out.md shows (read from the page), in front of three
//! fortune-server instances on loopback with `--proxy-from 127.0.0.1`
//! (HAProxy connects to them from 127.0.0.1). Client networks are loopback
//! addresses: 127.0.0.1 and 127.0.1.1 are different /24s. Bounded in count
//! and time; the figures are printed (util::figure).

mod util;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use util::{Cmd, Running, connect, connect_from, figure, free_port, loopback};

/// The two tests each run four processes: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PER_SOURCE: usize = 50;
const CLIENT_NET: [u8; 4] = [127, 0, 1, 1];

/// The HAProxy configuration of docs/scale-out.md, verbatim.
fn documented_config() -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scale-out.md"))
        .expect("docs/scale-out.md");
    let start = page
        .find("```haproxy\n")
        .expect("a ```haproxy block in docs/scale-out.md")
        + 11;
    let len = page[start..].find("```").expect("the end of the haproxy block");
    page[start..start + len].to_string()
}

/// HAProxy with the documented configuration, listening on the returned
/// address, in front of `hosts`.
fn balancer(hosts: &[SocketAddr; 3]) -> (Running, SocketAddr) {
    let front = loopback(free_port());
    let config = util::file_with(documented_config().as_bytes());
    let mut cmd = Cmd::new("haproxy")
        .args(["-db", "-f"])
        .arg(config.path())
        .env("FORTUNE_BIND", front.to_string());
    for (i, host) in hosts.iter().enumerate() {
        cmd = cmd.env(&format!("FORTUNE_HOST{}", i + 1), host.to_string());
    }
    let haproxy = cmd.spawn();
    // Listening, hence done with the configuration file (dropped here).
    drop(connect(front).unwrap_or_else(|e| haproxy.fail(&format!("balancer not listening: {e}"))));
    (haproxy, front)
}

/// An instance on a port of its own, trusting the balancer (127.0.0.1).
fn instance(args: &[&str]) -> (Running, SocketAddr) {
    let addr = loopback(free_port());
    let server = Cmd::server()
        .args(["--listen", &addr.to_string(), "--proxy-from", "127.0.0.1"])
        .args(args)
        .spawn();
    server.wait_for_log("Serving");
    (server, addr)
}

/// Reads what the server sends until it closes, keeping the connection
/// open on our side (the server keeps holding it until we close).
fn read_held(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let _ = stream.read_to_end(&mut bytes);
    bytes
}

fn is_fortune(bytes: &[u8]) -> bool {
    fortune_server::wire::decode(fortune_server::wire::Protocol::Qt, bytes).is_ok()
}

/// A PROXY v2 header naming `source` (to `dest`), as a balancer sends it.
fn v2_header(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, dest) else {
        panic!("IPv4 only")
    };
    let mut h = fortune_server::proxy::SIGNATURE.to_vec();
    h.extend([0x21, 0x11, 0, 12]);
    h.extend(s.ip().octets());
    h.extend(d.ip().octets());
    h.extend(s.port().to_be_bytes());
    h.extend(d.port().to_be_bytes());
    h
}

#[test]
fn another_network_is_served_while_one_holds_its_share_through_the_balancer() {
    if !util::require("haproxy") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cap = PER_SOURCE.to_string();
    let instances: Vec<_> = (0..3)
        .map(|_| {
            instance(&[
                "--max-per-source",
                &cap,
                "--timeout",
                "60",
                "--log-level",
                "debug",
            ])
        })
        .collect();
    let hosts = [instances[0].1, instances[1].1, instances[2].1];
    let (haproxy, front) = balancer(&hosts);

    // 127.0.0.0/24 opens 200 connections through the balancer and keeps
    // them: each host gives it its share, then closes the rest at once.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let mut s = connect(front).expect("connect through the balancer");
        if is_fortune(&read_held(&mut s)) {
            held.push(s);
        } else {
            refused += 1;
        }
    }
    figure(
        "proxy",
        &format!(
            "127.0.0.0/24 through HAProxy: {} of 200 connections held, {refused} closed over --max-per-source {PER_SOURCE} on each of 3 hosts",
            held.len()
        ),
    );
    assert_eq!(
        held.len(),
        3 * PER_SOURCE,
        "each host gives the network its share, no more"
    );

    // Another network, through the same balancer, from the same host to the
    // hosts (HAProxy's 127.0.0.1): served, and logged as itself.
    let from = IpAddr::from(CLIENT_NET);
    let mut served = 0;
    for _ in 0..6 {
        let mut s = connect_from(from, front).expect("connect from 127.0.1.1");
        served += usize::from(is_fortune(&read_held(&mut s)));
    }
    figure(
        "proxy",
        &format!("127.0.1.1 through HAProxy meanwhile: served {served} of 6"),
    );
    assert_eq!(served, 6);
    let logged = |needle: &str| instances.iter().map(|(s, _)| s.log_count(needle)).sum::<usize>();
    assert!(
        logged("127.0.1.1:") >= 6,
        "the hosts log the client, not the balancer"
    );

    // A forged header from an untrusted address naming the full network:
    // not believed, so the connection is 127.0.1.1's, and served.
    let (first, first_addr) = &instances[0];
    let mut forged = connect_from(from, *first_addr).expect("connect directly");
    forged
        .write_all(&v2_header("127.0.0.9:4242".parse().unwrap(), *first_addr))
        .expect("send a forged header");
    assert!(is_fortune(&read_held(&mut forged)), "served as 127.0.1.1");
    assert_eq!(logged("127.0.0.9"), 0, "the forged address is nowhere");

    // From the trusted address: a health check (LOCAL) is served without a
    // source (127.0.0.0/24 is full); anything but a header is closed, logged.
    let mut local = connect(*first_addr).expect("connect directly");
    local.write_all(&v2_header_local()).expect("send LOCAL");
    assert!(is_fortune(&read_held(&mut local)), "LOCAL is served");
    let mut junk = connect(*first_addr).expect("connect directly");
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send junk");
    assert!(
        read_held(&mut junk).is_empty(),
        "no header: closed without a fortune"
    );
    first.wait_for_log("no PROXY protocol header; closing");
    drop(held);

    let haproxy = haproxy.stop();
    assert!(
        !haproxy.stderr.contains("is DOWN"),
        "the health checks pass:\n{}",
        haproxy.stderr
    );
}

fn v2_header_local() -> Vec<u8> {
    let mut h = fortune_server::proxy::SIGNATURE.to_vec();
    h.extend([0x20, 0x00, 0, 0]);
    h
}

#[test]
fn killing_one_host_under_load_loses_only_what_it_held() {
    if !util::require("haproxy") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // No per-source cap: the load comes from one network.
    let mut instances: Vec<_> = (0..3)
        .map(|_| instance(&["--max-per-source", "0", "--timeout", "60"]))
        .collect();
    let hosts = [instances[0].1, instances[1].1, instances[2].1];
    let (haproxy, front) = balancer(&hosts);
    let clients = 16;
    let bench = |connections: u32, seconds: u32| {
        Cmd::client()
            .args([
                "bench",
                "-q",
                "--json",
                "-c",
                &clients.to_string(),
                "-d",
                &seconds.to_string(),
            ])
            .args(["--connections", &connections.to_string(), &front.to_string()])
    };
    // 5 s of load, the kill 2 s in (not a timed assertion: the counts below
    // hold whenever it happens).
    let load = bench(200_000, 5).spawn();
    let victim = instances.pop().expect("three").0;
    std::thread::sleep(Duration::from_secs(2));
    victim.signal("KILL");
    let during = load.exit(Duration::from_secs(60));
    let after = bench(5_000, 30).run(Duration::from_secs(60));
    let count = |out: &str, field: &str| -> u64 {
        let at = out
            .find(&format!("\"{field}\":"))
            .unwrap_or_else(|| panic!("no {field} in {out}"));
        out[at + field.len() + 3..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad {field} in {out}"))
    };
    let (ok, failed) = (count(&during.stdout, "ok"), count(&during.stdout, "failed"));
    let (ok_after, failed_after) = (count(&after.stdout, "ok"), count(&after.stdout, "failed"));
    figure(
        "proxy",
        &format!(
            "one of 3 hosts killed under load ({clients} clients through HAProxy): {ok} served, {failed} lost; then {ok_after} served, {failed_after} lost"
        ),
    );
    assert!(
        failed <= clients,
        "at most the connections in flight are lost:\n{}",
        during.report()
    );
    assert!(
        ok > 0 && ok_after == 5_000,
        "the rest keep being served:\n{}",
        after.report()
    );
    drop(haproxy);
}

/// A connection sending `bytes`, then reading what it is sent until the
/// server closes (our side stays open).
fn send_then_read(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(addr).expect("connect");
    s.write_all(bytes).expect("send");
    read_held(&mut s)
}

#[test]
fn quote_of_the_day_over_tcp_and_accept_yes_honour_the_header() {
    // QOTD over TCP (text), FORTUNE_PROXY_FROM: a v1 header.
    let addr = loopback(free_port());
    let server = Cmd::server()
        .args([
            "--listen",
            &addr.to_string(),
            "--protocol",
            "text",
            "--log-level",
            "debug",
        ])
        .env("FORTUNE_PROXY_FROM", "10.0.0.0/8,127.0.0.0/8")
        .spawn();
    server.wait_for_log("Serving");
    let text = send_then_read(addr, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 17\r\n");
    assert!(
        text.ends_with(b"\r\n") && text.len() > 2,
        "a text fortune: {text:?}"
    );
    server.wait_for_log("192.0.2.7:40000: served");
    assert!(
        send_then_read(addr, b"PROXY TCP4 192.0.2.7\r\n").is_empty(),
        "malformed: closed"
    );
    server.wait_for_log("malformed PROXY v1 header; closing");
    server
        .stop()
        .assert_stderr_has("1 closed without a valid PROXY header");

    // Accept=yes: one process per connection reads the header first.
    if !util::require("systemd-socket-activate") {
        return;
    }
    let addr = loopback(free_port());
    let server = Cmd::socket_activate(&["--accept", "-l", &addr.to_string()])
        .args(["--proxy-from", "127.0.0.1", "--log-level", "debug"])
        .spawn();
    let named = "192.0.2.8:40001".parse().unwrap();
    assert!(is_fortune(&send_then_read(addr, &v2_header(named, addr))));
    server.wait_for_log("192.0.2.8:40001: served");
    assert!(send_then_read(addr, b"hello\r\n").is_empty(), "no header: closed");
    server.wait_for_log("no PROXY protocol header; closing");
    // A client's behaviour is no unit failure: both exit with status 0.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while server.stderr().matches("died with code 0").count() < 2 {
        if std::time::Instant::now() > end {
            server.fail("both children should have exited with status 0");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_slow_header_holds_up_no_one_and_a_missing_one_times_out() {
    // One worker serves everyone here (no slow reader makes it start another).
    let (server, addr) = instance(&["--timeout", "60", "--log-level", "debug"]);
    let header = v2_header("192.0.2.9:40002".parse().unwrap(), addr);
    let mut slow = connect(addr).expect("connect");
    slow.write_all(&header[..10]).expect("half a header");
    let fast = "192.0.2.10:40003".parse().unwrap();
    assert!(is_fortune(&send_then_read(addr, &v2_header(fast, addr))));
    // The slow one is still waiting for the rest of its header, not closed.
    slow.set_nonblocking(true).expect("nonblocking");
    let still_open = matches!(slow.read(&mut [0; 16]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(
        still_open,
        "the slow connection was closed before the fast one was served"
    );
    slow.set_nonblocking(false).expect("blocking");
    slow.write_all(&header[10..]).expect("the rest");
    assert!(is_fortune(&read_held(&mut slow)));
    server.wait_for_log("192.0.2.9:40002: served");
    drop(server);

    // Nothing at all from a trusted peer: closed after --timeout.
    let (server, addr) = instance(&["--timeout", "1"]);
    let mut silent = connect(addr).expect("connect");
    assert!(read_held(&mut silent).is_empty());
    server.wait_for_log("no PROXY header within 1 s (--timeout); closing");
}
