//! Taking clients off the listeners and serving each ([`Shared`]'s
//! `accept_some`, `drain`, `serve`): a batch at a time, the balancer's
//! connections through their PROXY header first, each client admitted by its
//! source, its frame written at once if the socket takes it (else the worker
//! waits, bounded, and the pool may grow), then parked until its peer
//! closes; why accept failed, and what that means for the rest of the
//! backlog ([`AcceptError`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use socket2::SockRef;

use super::shared::{Riders, Shared};
use crate::connection;
use crate::fold::{self, Fold};
use crate::linger::Linger;
use crate::proxied::Waiting;
use crate::sockets::Stream;
use crate::sources::SourceSlot;
use crate::wire::Protocol;

/// Pause after accept ran out of descriptors or kernel memory, before accepting again.
pub(super) const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);
/// Clients a worker accepts in a row from one listener before it looks at
/// its other events (peers closing, the other listeners).
const ACCEPT_BATCH: usize = 64;

impl Shared {
    /// Accepts and serves up to a batch of clients from one listener.
    pub(super) fn accept_some<'a>(
        self: &'a Arc<Self>,
        index: usize,
        linger: &mut Linger<Riders<'a>>,
        waiting: &mut Waiting<Protocol>,
    ) -> Backlog {
        let (listener, protocol) = &self.config.listeners[index];
        self.heartbeat.beat();
        for _ in 0..ACCEPT_BATCH {
            let e = match listener.accept() {
                Ok((stream, peer)) => {
                    if self.out_of_resources.load(Ordering::Relaxed)
                        && self.out_of_resources.swap(false, Ordering::Relaxed)
                    {
                        log::warn!("descriptors available again; accepting clients");
                    }
                    match peer.filter(|_| self.config.proxy_from.trusts(peer)) {
                        // A balancer's: served as the client its header names.
                        Some(balancer) => {
                            if let Some(a) = waiting.admit(stream, balancer, *protocol) {
                                self.serve(a.stream, a.source, a.tag, linger);
                            }
                        }
                        None => self.serve(stream, peer, *protocol, linger),
                    }
                    continue;
                }
                Err(e) => e,
            };
            match AcceptError::of(&e) {
                AcceptError::Empty => return Backlog::Empty,
                // The client left between its handshake and our accept, or a
                // network error of its own: nothing to do for the others.
                AcceptError::ClientGone => {
                    fold::note(Fold::AcceptFailed, format_args!("accept on {listener}: {e}"))
                }
                AcceptError::OutOfResources => {
                    if !self.out_of_resources.swap(true, Ordering::Relaxed) {
                        log::warn!(message_id = crate::logging::id::OUT_OF_FDS; "cannot accept on {listener}: {e}; pausing until descriptors free up");
                    }
                    std::thread::sleep(RESOURCE_BACKOFF);
                    return Backlog::Paused;
                }
                AcceptError::Listener => {
                    log::debug!("accept on {listener}: {e}");
                    return Backlog::Empty;
                }
            }
        }
        Backlog::More
    }

    /// Serves what is queued on every listener, until the queues are empty
    /// (true) or the stop deadline, or descriptors or memory run out (false).
    pub(super) fn drain<'a>(
        self: &'a Arc<Self>,
        linger: &mut Linger<Riders<'a>>,
        waiting: &mut Waiting<Protocol>,
    ) -> bool {
        for index in 0..self.config.listeners.len() {
            loop {
                match self.accept_some(index, linger, waiting) {
                    Backlog::Empty => break,
                    Backlog::More if self.stop_by.get().is_none_or(|&d| Instant::now() < d) => {}
                    Backlog::More | Backlog::Paused => return false,
                }
            }
        }
        true
    }

    /// Sends the frame and shuts down our side. A frame almost always fits
    /// the socket buffer: one write. Only for the rest does this worker wait
    /// (blocking, bounded by the timeout), and the pool may grow meanwhile;
    /// unless the client's network already keeps its share of the writers
    /// waiting: then the connection is reset (its fortune cut short; the
    /// reset frees what its socket buffer holds at once) and the worker
    /// goes on with the next client.
    fn send(self: &Arc<Self>, stream: &mut Stream, frame: &[u8], slot: &SourceSlot) -> io::Result<Delivery> {
        let sent = send_at_once(stream, frame)?;
        if sent == frame.len() {
            return stream.shutdown_write().map(|()| Delivery::Whole);
        }
        let Some(_writing) = slot.writer() else {
            SockRef::from(&*stream).set_linger(Some(Duration::ZERO))?;
            return Ok(Delivery::OverShare);
        };
        let _blocked = self.block();
        stream.set_nonblocking(false)?;
        connection::send(stream, &frame[sent..], self.write_timeout())?;
        stream.set_nonblocking(true).map(|()| Delivery::Whole)
    }

    /// Serves `peer`: the connection's own, or the client a balancer's
    /// header names (none: not counted in any source, e.g. a health check).
    pub(super) fn serve<'a>(
        self: &'a Arc<Self>,
        stream: Stream,
        peer: Option<SocketAddr>,
        protocol: Protocol,
        linger: &mut Linger<Riders<'a>>,
    ) {
        // Over its source's share: admit counted and logged it; returning closes it.
        let Some(slot) = self.config.sources.admit(peer) else {
            return;
        };
        let active = self.config.stats.open();
        // Declared after the guards, so closed before they are given back.
        let mut stream = stream;
        let stats = &self.config.stats;
        match self.config.live.frame(protocol, None) {
            None => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                // Debug: the store warned once why (a line per connection would flood).
                log::debug!(
                    "{}: no fortune fits the {protocol} protocol; closing",
                    who(peer, &stream)
                );
            }
            Some(frame) => match self.send(&mut stream, &frame, &slot) {
                Ok(Delivery::Whole) => {
                    log::debug!(peer = who(peer, &stream); "{}: served", who(peer, &stream));
                    stats.served.fetch_add(1, Ordering::Relaxed);
                    linger.park(stream, (active, slot));
                }
                Ok(Delivery::OverShare) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    let share = self.config.sources.writer_share().unwrap_or_default();
                    fold::note(
                        Fold::OverWriterShare,
                        format_args!(
                            "{}: a slow reader, and its network already has {share} others being written \
                             (1/{} of --max-connections); closing",
                            who(peer, &stream),
                            crate::sources::WRITER_SHARE
                        ),
                    );
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    fold::note(
                        Fold::NotDelivered,
                        format_args!("{}: fortune not delivered: {e}", who(peer, &stream)),
                    );
                }
            },
        }
    }
}

/// How [`Shared::send`] ended, short of an error.
enum Delivery {
    /// The whole frame was written, and our side shut down.
    Whole,
    /// A slow reader over its source's writer share: reset, not waited for.
    OverShare,
}

/// What is left in a listener's backlog after [`Shared::accept_some`].
pub(super) enum Backlog {
    Empty,
    More,
    /// Out of descriptors or kernel memory (after a pause): the rest waits.
    Paused,
}

/// Why accept failed, as far as the accept loop cares.
#[derive(Debug, PartialEq, Eq)]
enum AcceptError {
    /// Nothing (more) queued.
    Empty,
    /// This one client is gone, or failed on its own: take the next.
    ClientGone,
    /// Out of descriptors (`EMFILE`, `ENFILE`) or kernel memory (`ENOBUFS`,
    /// `ENOMEM`): back off, the client stays queued.
    OutOfResources,
    /// Something wrong with the listening socket itself.
    Listener,
}

impl AcceptError {
    fn of(e: &io::Error) -> AcceptError {
        let Some(errno) = e.raw_os_error().map(Errno::from_raw) else {
            return AcceptError::Listener;
        };
        match errno {
            Errno::EAGAIN => AcceptError::Empty,
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM => AcceptError::OutOfResources,
            // accept(2): Linux passes pending network errors of the new
            // socket on as accept errors; EPERM is a firewall rule's verdict.
            Errno::EINTR
            | Errno::ECONNABORTED
            | Errno::ECONNRESET
            | Errno::EPROTO
            | Errno::EPERM
            | Errno::ENETDOWN
            | Errno::ENOPROTOOPT
            | Errno::EHOSTDOWN
            | Errno::ENONET
            | Errno::EHOSTUNREACH
            | Errno::EOPNOTSUPP
            | Errno::ENETUNREACH
            | Errno::ETIMEDOUT => AcceptError::ClientGone,
            _ => AcceptError::Listener,
        }
    }
}

/// A client for log lines: the address served (for a balancer's connection,
/// the client its header names), else what the socket says.
fn who(peer: Option<SocketAddr>, stream: &Stream) -> String {
    peer.map_or_else(|| stream.peer(), |p| p.to_string())
}

/// Writes without waiting, as much as the socket takes at once. Corked
/// (`MSG_MORE`): the shutdown that follows adds its FIN to the last segment,
/// so the peer gets one segment (and one wake-up) instead of two.
fn send_at_once(stream: &Stream, frame: &[u8]) -> io::Result<usize> {
    use nix::libc::{MSG_DONTWAIT, MSG_MORE, MSG_NOSIGNAL};
    match SockRef::from(stream).send_with_flags(frame, MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE) {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(0),
        sent => sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(errno: Errno) -> AcceptError {
        AcceptError::of(&io::Error::from_raw_os_error(errno as i32))
    }

    /// Issue 13: a client that left before its accept (ECONNABORTED) must
    /// not end the drain of the backlog on stop; only an empty queue does.
    #[test]
    fn accept_errors_of_one_client_do_not_end_the_backlog() {
        for errno in [
            Errno::ECONNABORTED,
            Errno::EPROTO,
            Errno::EPERM,
            Errno::EINTR,
            Errno::ENETUNREACH,
        ] {
            assert_eq!(kind(errno), AcceptError::ClientGone, "{errno}");
        }
        assert_eq!(kind(Errno::EAGAIN), AcceptError::Empty);
        for errno in [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM] {
            assert_eq!(kind(errno), AcceptError::OutOfResources, "{errno}");
        }
        for errno in [Errno::EBADF, Errno::EINVAL, Errno::ENOTSOCK] {
            assert_eq!(kind(errno), AcceptError::Listener, "{errno}");
        }
    }
}
