//! RFC 865 Quote of the Day over UDP: one fortune as text back to the sender
//! of each datagram, at most 512 bytes, whatever the datagram held; but
//! never to a port below 1024 or to our own port (where "answer anything"
//! services live, ourselves included: answering one starts a loop), and at
//! most `--udp-rate` replies a second per source prefix (a reflection
//! amplifier otherwise, the source address being anyone's to forge).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::fold::{self, Fold};
use crate::fortunes::Live;
use crate::ratelimit::ReplyLimiter;
use crate::stats::Stats;
use crate::wire::{Protocol, QOTD_MAX_DATAGRAM};

/// How often a waiting datagram thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Replies allowed per source prefix: `--udp-rate` and `--udp-burst`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Replies a second; 0: no limit.
    pub rate: u32,
    pub burst: u32,
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rate {
            0 => f.write_str("no rate limit (--udp-rate 0)"),
            rate => write!(
                f,
                "at most {rate} replies a second per source after a burst of {} (--udp-rate, --udp-burst)",
                self.burst
            ),
        }
    }
}

/// Serves one UDP socket until `stop` is set.
pub fn serve(socket: UdpSocket, live: Arc<Live>, stats: Arc<Stats>, stop: Arc<AtomicBool>, limits: Limits) {
    let own = match socket.local_addr() {
        Ok(own) => own,
        Err(e) => {
            log::error!("UDP socket unusable, not serving it: {e}");
            return;
        }
    };
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        log::error!("UDP socket unusable, not serving it: {e}");
        return;
    }
    let mut limiter = (limits.rate > 0).then(|| ReplyLimiter::new(limits.rate, limits.burst, Instant::now()));
    let mut request = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let peer = match socket.recv_from(&mut request) {
            Ok((_, peer)) => peer,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // An ICMP error from an earlier reply, say: it concerns that peer only.
                log::debug!("UDP receive: {e}");
                continue;
            }
        };
        if !may_answer(peer, own) {
            stats.udp_ignored.fetch_add(1, Ordering::Relaxed);
            fold::note(
                Fold::DatagramIgnored,
                format_args!(
                    "{peer}: not answered: its port is below 1024 or ours (an \"answer anything\" service, or ourselves)"
                ),
            );
            continue;
        }
        if limiter
            .as_mut()
            .is_some_and(|limiter| !limiter.allow(peer.ip(), Instant::now()))
        {
            stats.udp_limited.fetch_add(1, Ordering::Relaxed);
            fold::note(
                Fold::DatagramLimited,
                format_args!("{peer}: not answered: its network is over --udp-rate"),
            );
            continue;
        }
        let Some(frame) = live.frame(Protocol::Text, Some(QOTD_MAX_DATAGRAM)) else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            fold::note(
                Fold::NoFortuneFits,
                format_args!("{peer}: no fortune fits one {QOTD_MAX_DATAGRAM}-byte datagram"),
            );
            continue;
        };
        match socket.send_to(&frame, peer) {
            Ok(_) => stats.served.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                fold::note(Fold::ReplyFailed, format_args!("{peer}: UDP reply failed: {e}"));
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// False for a source we must not answer: a port below 1024 (echo, daytime,
/// chargen, QOTD and the like answer whatever arrives: a spoofed request
/// would start an endless exchange) or our own port (ourselves, or another
/// instance of this service, anywhere: the same loop). A genuine client
/// sends from an unprivileged ephemeral port; one that happens to use our
/// port number only goes unanswered.
fn may_answer(peer: SocketAddr, own: SocketAddr) -> bool {
    peer.port() >= 1024 && peer.port() != own.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_never_answered() {
        let own: SocketAddr = "0.0.0.0:7017".parse().unwrap();
        let ok = |peer: &str| may_answer(peer.parse().unwrap(), own);
        assert!(ok("192.0.2.1:40000"));
        assert!(ok("[2001:db8::1]:1024"));
        // Ourselves, on any of our addresses, or our twin elsewhere.
        assert!(!ok("127.0.0.1:7017"));
        assert!(!ok("198.51.100.7:7017"));
        assert!(!ok("[::ffff:127.0.0.1]:7017"));
        // echo, discard, daytime, QOTD, chargen, and port 0.
        for port in [0, 7, 9, 13, 17, 19, 1023] {
            assert!(!ok(&format!("192.0.2.1:{port}")), "port {port}");
        }
    }
}
