//! RFC 865 over UDP, exposed to anyone who can forge a source address: no
//! reply to ourselves, to another instance of us, or to a port below 1024
//! (where "answer anything" services live), so one forged datagram cannot
//! start a loop; replies rate-limited per source prefix, so a flood from one
//! network neither reflects nor keeps another network from being answered,
//! and a budget for all of them together, so a flood forged from many
//! networks neither reflects much nor keeps a regular client from being answered.
//! Forging needs a raw socket: those tests need root (CI runs as root).
//! They run one at a time (SERIAL): the raw socket sees every test's traffic.

mod util;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use util::{Finished, UdpSpy, figure, free_port, require, require_root, serial, spoof_udp, udp_service};

/// The payload of every forged request, to tell it from replies.
const FORGED: &[u8] = b"forged request";

fn at(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

/// The count the service's last words ("stopped; ..., N WHAT") give for `what`.
fn stopped_count(done: &Finished, what: &str) -> u64 {
    let summary = done
        .stderr
        .lines()
        .rfind(|l| l.contains("stopped;"))
        .unwrap_or_else(|| panic!("no 'stopped;' line\n{}", done.report()));
    summary
        .split(", ")
        .find_map(|part| part.strip_suffix(what)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Forged: a datagram from the service's own address and port, from our
/// port on another local address, and from echo (7) and chargen (19). None
/// is answered (the first made the old service answer itself forever), while
/// a genuine client is, which shows the spy sees the service's replies.
#[test]
fn no_reply_to_ourselves_or_to_privileged_ports() {
    let _serial = serial();
    if !require("systemd-socket-activate") || !require_root() {
        return;
    }
    let port = free_port();
    let own = at([127, 0, 0, 1], port);
    let server = udp_service(own.into(), &[], &[]);
    let spy = UdpSpy::new();
    let cpu_before = server.cpu_time();
    let forged = [
        own,
        at([127, 0, 0, 2], port),
        at([127, 0, 0, 1], 7),
        at([127, 0, 0, 1], 19),
    ];
    for from in forged {
        spoof_udp(from, own, FORGED);
    }
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind a client");
    let client_addr = client.local_addr().expect("client address");
    client.send_to(b"\n", own).expect("send a request");
    let replies = spy.watch(Duration::from_secs(1), 10_000, |(from, _, payload)| {
        *from == own && payload != FORGED
    });
    let cpu = server.cpu_time().saturating_sub(cpu_before);
    let to_client = replies
        .iter()
        .filter(|(_, to, _)| SocketAddr::V4(*to) == client_addr)
        .count();
    let done = server.stop();
    let ignored = stopped_count(&done, "datagrams from ports below 1024 or ours");
    figure(
        "udp_loops",
        &format!(
            "4 forged datagrams (from {own}, {}, ports 7 and 19): {} replies to them, \
             {to_client} to the genuine client; server CPU {} ms over 1 s; {ignored} counted as ignored",
            forged[1],
            replies.len() - to_client,
            cpu.as_millis()
        ),
    );
    assert_eq!(
        replies.len() - to_client,
        0,
        "the service answered a forged source: {replies:?}\n{}",
        done.report()
    );
    assert_eq!(
        to_client,
        1,
        "the genuine client was not answered once\n{}",
        done.report()
    );
    assert_eq!(ignored, 4, "STATUS counters\n{}", done.report());
    assert!(
        done.stderr
            .matches("not answered: its port is below 1024 or ours")
            .count()
            == 1,
        "the ignored datagrams were not folded into one line\n{}",
        done.report()
    );
}

/// Two instances, and one datagram forged from one to the other: on the
/// same port (two addresses) the second ignores it; on two ports the rate
/// limit ends the exchange after about a burst each. Either way no loop.
#[test]
fn no_ping_pong_between_two_services() {
    let _serial = serial();
    if !require("systemd-socket-activate") || !require_root() {
        return;
    }
    const BURST: u32 = 3;
    const RATE: u32 = 5;
    let limits = ["--udp-burst", "3", "--udp-rate", "5"];
    let port = free_port();
    let (a, b) = (at([127, 0, 0, 3], port), at([127, 0, 0, 4], port));
    let (c, d) = (at([127, 0, 0, 5], free_port()), at([127, 0, 0, 6], free_port()));
    let servers: Vec<_> = [a, b, c, d]
        .iter()
        .map(|&addr| udp_service(addr.into(), &limits, &[]))
        .collect();
    let spy = UdpSpy::new();
    let between = |pair: [SocketAddrV4; 2]| {
        move |(from, to, payload): &util::Seen| {
            pair.contains(from) && pair.contains(to) && payload.as_slice() != FORGED
        }
    };
    let started = Instant::now();
    spoof_udp(a, b, FORGED);
    spoof_udp(c, d, FORGED);
    let all = spy.watch(Duration::from_secs(1), 100_000, |seen| {
        between([a, b])(seen) || between([c, d])(seen)
    });
    let elapsed = started.elapsed();
    let same_port = all.iter().filter(|s| between([a, b])(s)).count();
    let two_ports = all.len() - same_port;
    // Still going a second later? The loop is over only if nothing moves.
    let later = spy.watch(Duration::from_secs(1), 100_000, between([c, d]));
    figure(
        "udp_loops",
        &format!(
            "one datagram forged between two services: same port {same_port} replies; \
             ports {} and {}: {two_ports} replies (burst {BURST}), then {} in the next second",
            c.port(),
            d.port(),
            later.len()
        ),
    );
    let dones: Vec<Finished> = servers.into_iter().map(|s| s.stop()).collect();
    assert_eq!(
        same_port,
        0,
        "an instance answered its twin\n{}",
        dones[1].report()
    );
    let bound = 2 * (BURST as usize + (f64::from(RATE) * elapsed.as_secs_f64()).ceil() as usize);
    assert!(
        (1..=bound).contains(&two_ports),
        "{two_ports} replies between two ports: expected 1 to {bound}\n{}\n{}",
        dones[2].report(),
        dones[3].report()
    );
    assert!(
        later.is_empty(),
        "the exchange is still going: {} more",
        later.len()
    );
}

/// A flood from one /24 gets its burst, then the rate, whatever it sends;
/// a client from another /24 (127.0.1.1) is answered meanwhile; what was
/// dropped is counted in STATUS= and logged folded.
#[test]
fn replies_are_rate_limited_per_prefix() {
    let _serial = serial();
    if !require("systemd-socket-activate") {
        return;
    }
    const BURST: usize = 10;
    const RATE: usize = 5;
    const FLOOD: usize = 5_000;
    let addr = util::loopback(free_port());
    // Through the environment, as a unit's Environment= would set them.
    let server = udp_service(addr, &[], &["FORTUNE_UDP_RATE=5", "FORTUNE_UDP_BURST=10"]);
    server.wait_for_log("at most 5 replies a second per source after a burst of 10");
    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind the flood");
    flood.set_nonblocking(true).expect("non-blocking");
    let other = UdpSocket::bind("127.0.1.1:0").expect("bind 127.0.1.1");
    other
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    let mut buf = [0u8; 1024];
    let cpu_before = server.cpu_time();
    let started = Instant::now();
    let (mut sent, mut replies, mut other_sent, mut other_answered) = (0, 0, 0, 0);
    while sent < FLOOD {
        for _ in 0..50 {
            if flood.send_to(b"\n", addr).is_ok() {
                sent += 1;
            }
        }
        while flood.recv(&mut buf).is_ok() {
            replies += 1;
        }
        // Five times during the flood the other network asks too (again
        // if the kernel dropped its request: the flood fills the queue).
        if sent % 1000 == 0 {
            for _ in 0..5 {
                other_sent += 1;
                other.send_to(b"\n", addr).expect("send from 127.0.1.1");
                if other.recv(&mut buf).is_ok() {
                    other_answered += 1;
                    break;
                }
            }
        }
        // A flood, but one the service's queue can mostly hold.
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(300));
    while flood.recv(&mut buf).is_ok() {
        replies += 1;
    }
    let elapsed = started.elapsed();
    let cpu = server.cpu_time().saturating_sub(cpu_before);
    let done = server.stop();
    // Every interval's line was logged by now: a slow stop only adds intervals.
    let until_stopped = started.elapsed();
    let limited = stopped_count(&done, "datagrams over --udp-rate");
    let folded = done
        .stderr
        .lines()
        .filter(|l| l.contains("over --udp-rate") && !l.contains("stopped;"))
        .count();
    let bound = BURST + (RATE as f64 * elapsed.as_secs_f64()).ceil() as usize;
    figure(
        "udp_rate",
        &format!(
            "{sent} requests from 127.0.0.1 in {} ms: {replies} replies (burst {BURST}, rate {RATE}/s: at most {bound}); \
             127.0.1.1 answered {other_answered} of {other_sent}; {limited} counted as over the rate; {folded} log lines; \
             server CPU {} ms",
            elapsed.as_millis(),
            cpu.as_millis()
        ),
    );
    assert!(
        (BURST..=bound).contains(&replies),
        "{replies} replies: expected {BURST} to {bound}\n{}",
        done.report()
    );
    assert_eq!(
        other_answered, 5,
        "the other network got {other_answered} replies to {other_sent} requests during the flood"
    );
    assert!(limited > 0, "nothing counted as over the rate\n{}", done.report());
    // The first in full, the count at stop, and a count per 10 s (upper
    // bounds that only grow on a slow machine, as `bound` above).
    let most = 2 + until_stopped.as_secs() as usize / 10;
    assert!(
        folded <= most,
        "{folded} log lines about the rate for one flood\n{}",
        done.report()
    );
    assert!(
        done.stderr
            .contains("more datagrams not answered over --udp-rate"),
        "no count of the dropped datagrams\n{}",
        done.report()
    );
}

/// Forges datagrams from random IPv4 /24s (a new source for nearly every
/// one, each within --udp-rate) to `to` at `rate` a second, until `stop` or
/// `limit`; returns how many. From the calling thread's network namespace.
fn many_prefix_flood(to: SocketAddrV4, rate: u64, stop: &AtomicBool, limit: Duration) -> u64 {
    let spoofer = util::Spoofer::new();
    let started = Instant::now();
    let mut x = 0x2545_f491u32 ^ std::process::id();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            // xorshift32: a random address, its first octet in 1..=223 but not 127.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let first = match (x >> 24) % 223 + 1 {
                127 => 128,
                n => n,
            };
            let from = SocketAddrV4::new(
                Ipv4Addr::from((first << 24) | (x & 0x00ff_ffff)),
                1024 + (x % 60_000) as u16,
            );
            spoofer.send(from, to, FORGED);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

/// UDP datagrams the calling thread's network namespace dropped so far
/// because a socket's receive queue was full (`RcvbufErrors`).
fn queue_drops() -> u64 {
    std::fs::read_to_string("/proc/thread-self/net/snmp")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Udp:"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(5)?.parse().ok())
        .unwrap_or(0)
}

/// Issue 19, item 7: a flood forged from random /24s at twice the reply
/// budget (each source within --udp-rate: rate limits per network cannot
/// tell it from clients) while a client of another network asks twice a
/// second: the client is answered at least 90% of the time, and the flood
/// gets at most the budget. In a network namespace of its own, so that the
/// flood's (public) sources and the replies to them stay on the host: no
/// route leads to them, and those replies fail.
///
/// On a busy machine the service's receive queue overflows while it waits
/// for a CPU, and the kernel drops what arrives, the client's requests
/// included: that is not the service's verdict. Delivery on loopback happens
/// within the sender's call, so a request during which the namespace's drop
/// count did not move reached the queue; the 90% is of those (at least half
/// of them must be), and the raw count is a figure.
#[test]
fn a_regular_is_answered_through_a_many_prefix_flood() {
    let _serial = serial();
    if !require_root() || !require("systemd-socket-activate") || !require("ip") {
        return;
    }
    // --udp-rate 2 (the reply budget for every source together: 4,096 x 2 a
    // second) rather than the default 5: a flood over the budget that the
    // service's receive queue mostly holds on a busy machine.
    const ASKS: usize = 20;
    const EVERY: Duration = Duration::from_millis(500);
    const BUDGET: u64 = 8_192;
    let ns = util::Netns::new("udp");
    let addr = at([127, 0, 0, 1], 7017);
    let flooded = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (done, asks, cpu, elapsed, dropped) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter();
                let server = udp_service(addr.into(), &["--udp-rate", "2"], &[]);
                let cpu_before = server.cpu_time();
                let started = Instant::now();
                let flood = scope.spawn(|| {
                    ns.enter();
                    let sent = many_prefix_flood(addr, 2 * BUDGET, &stop, Duration::from_secs(30));
                    flooded.store(sent, Ordering::Relaxed);
                });
                let regular = UdpSocket::bind("127.0.1.1:0").expect("bind 127.0.1.1");
                // The flood first, at full rate; then the regular, as a new client.
                std::thread::sleep(Duration::from_secs(1));
                let mut buf = [0u8; 1024];
                // Per request: (it reached the queue, it was answered).
                let mut asks = Vec::new();
                let asking = Instant::now();
                for ask in 1..=ASKS as u32 {
                    let before = queue_drops();
                    regular.send_to(b"\n", addr).expect("send from 127.0.1.1");
                    let queued = queue_drops() == before;
                    // Its reply, until the next question.
                    let mut answered = false;
                    let next = asking + EVERY * ask;
                    while let Some(left) = next
                        .checked_duration_since(Instant::now())
                        .filter(|d| !d.is_zero())
                    {
                        regular.set_read_timeout(Some(left)).expect("read timeout");
                        answered |= regular.recv(&mut buf).is_ok();
                    }
                    asks.push((queued, answered));
                }
                stop.store(true, Ordering::Relaxed);
                flood.join().expect("the flood's thread");
                let elapsed = started.elapsed();
                let cpu = server.cpu_time().saturating_sub(cpu_before);
                (server.stop(), asks, cpu, elapsed, queue_drops())
            })
            .join()
            .expect("the namespace's thread")
    });
    let sent = flooded.load(Ordering::Relaxed);
    let over_budget = stopped_count(&done, "datagrams over the reply budget");
    let over_rate = stopped_count(&done, "datagrams over --udp-rate");
    let replies = stopped_count(&done, "served") + stopped_count(&done, "failed");
    let answered = asks.iter().filter(|(_, answered)| *answered).count();
    let queued = asks.iter().filter(|(queued, _)| *queued).count();
    let answered_queued = asks.iter().filter(|&&(q, a)| q && a).count();
    let secs = elapsed.as_secs_f64();
    figure(
        "udp_bystander",
        &format!(
            "{sent} datagrams forged from random /24s in {secs:.1} s ({:.0}/s; budget {BUDGET}/s): \
             {over_budget} over the budget, {over_rate} over --udp-rate, {replies} replies (to the flood: no route), \
             {dropped} dropped by the kernel (the service's queue full); 127.0.1.1 asking 2/s answered \
             {answered} of {ASKS}, {answered_queued} of the {queued} that reached the queue; server CPU {} ms",
            sent as f64 / secs,
            cpu.as_millis()
        ),
    );
    assert!(
        queued * 2 >= ASKS,
        "only {queued} of {ASKS} requests reached the service's queue: the machine is too busy to tell\n{}",
        done.report()
    );
    assert!(
        answered_queued * 10 >= queued * 9,
        "the regular client got {answered_queued} replies to the {queued} requests that reached the service\n{}",
        done.report()
    );
    assert!(
        over_budget > 0,
        "the flood never reached the budget: the test proves nothing\n{}",
        done.report()
    );
    done.assert_stderr_has(&format!("{BUDGET} a second for all sources together"));
    let most = (BUDGET as f64 * secs) as u64 + BUDGET / 10 + ASKS as u64;
    assert!(
        replies <= most,
        "{replies} replies in {secs:.1} s: over the budget\n{}",
        done.report()
    );
}
