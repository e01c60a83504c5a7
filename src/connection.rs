//! Serving one connection, the FortuneThread analogue: write the whole
//! frame, shut down our side, then give the peer a bounded time to leave.
//!
//! Closing while the peer's bytes sit unread would send a reset, which can
//! destroy the fortune still in the peer's receive buffer; so the final wait
//! reads and discards until the peer closes or the deadline passes.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::sockets::Stream;

/// Writes all of `frame` by `deadline` (one timeout for the whole frame, not
/// per write: a client reading a byte at a time cannot stretch it), then
/// shuts down the write side so the peer sees the end of the stream.
/// Blocking or not, the stream is waited on until the deadline.
pub fn send(stream: &mut Stream, frame: &[u8], timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut rest = frame;
    while !rest.is_empty() {
        stream.set_write_timeout(remaining(deadline)?)?;
        match stream.write(rest) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_for(stream, PollFlags::POLLOUT, deadline)?,
            Err(e) => return Err(e),
        }
    }
    stream.shutdown_write()
}

/// Waits until `stream` is ready for `what`, at most until `deadline`: for
/// a non-blocking stream (or a timeout that ended early), where a write or
/// read says `EAGAIN` at once.
fn wait_for(stream: &Stream, what: PollFlags, deadline: Instant) -> io::Result<()> {
    let left = remaining(deadline)?;
    let mut fds = [PollFd::new(stream.as_fd(), what)];
    let millis = left.as_micros().div_ceil(1000);
    match poll(
        &mut fds,
        PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until the peer closes (or resets), draining what it sends, for at
/// most `timeout`. For the one-connection modes; the accept loop hands this
/// wait to [`crate::linger`] instead of parking a thread.
pub fn wait_for_close(stream: &mut Stream, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut sink = [0u8; 4096];
    loop {
        stream.set_read_timeout(remaining(deadline)?)?;
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_for(stream, PollFlags::POLLIN, deadline)?,
            Err(e) => return Err(e),
        }
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(ErrorKind::TimedOut.into()),
    }
}

/// True for a deadline that passed (`SO_SNDTIMEO`/`SO_RCVTIMEO` say `EAGAIN`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

/// `Accept=yes` / inetd: serve the one connection, wait for the peer, done.
/// `peer` names the client in log lines (the one a balancer's header names).
/// A peer that resets or vanishes is logged, not an error: systemd must not
/// count a client's behaviour as a failed unit.
pub fn serve_once(mut stream: Stream, peer: &str, frame: &[u8], timeout: Duration) {
    // Blocking, as the timeouts expect (NonBlocking=yes passes it non-blocking).
    if let Err(e) = stream.set_nonblocking(false) {
        log::warn!(peer = peer; "{peer}: cannot make the connection blocking: {e}; waiting on it instead");
    }
    let result = send(&mut stream, frame, timeout).and_then(|()| wait_for_close(&mut stream, timeout));
    match result {
        Ok(()) => log::debug!(peer = peer; "{peer}: served"),
        Err(e) if is_timeout(&e) => {
            log::info!(peer = peer; "{peer}: gave up after the {}s timeout", timeout.as_secs_f64())
        }
        Err(e) => log::info!(peer = peer; "{peer}: connection ended early: {e}"),
    }
}
