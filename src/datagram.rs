//! RFC 865 Quote of the Day over UDP: one fortune as text back to the sender
//! of each datagram, at most 512 bytes, whatever the datagram held.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::fortunes::Live;
use crate::notify::Stats;
use crate::wire::{Protocol, QOTD_MAX_DATAGRAM};

/// How often a waiting datagram thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Serves one UDP socket until `stop` is set.
pub fn serve(socket: UdpSocket, live: Arc<Live>, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        log::error!("UDP socket unusable, not serving it: {e}");
        return;
    }
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
        let Some(frame) = live.frame(Protocol::Text, Some(QOTD_MAX_DATAGRAM)) else {
            log::warn!("{peer}: no fortune fits one {QOTD_MAX_DATAGRAM}-byte datagram");
            stats.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match socket.send_to(&frame, peer) {
            Ok(_) => stats.served.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                log::info!("{peer}: UDP reply failed: {e}");
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}
