//! The socket kinds the service speaks on, over TCP (IPv4, IPv6) and Unix
//! stream sockets alike, so the other modules need not care.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use socket2::SockRef;

/// A listening stream socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// One accepted (or inherited, connected) stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Socket families an adopted descriptor may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Unix,
}

impl Listener {
    pub fn from_fd(fd: OwnedFd, family: Family) -> Listener {
        match family {
            Family::Inet => Listener::Tcp(fd.into()),
            Family::Unix => Listener::Unix(fd.into()),
        }
    }

    /// Accepts one client, its socket non-blocking and close-on-exec from
    /// the start: one `accept4`, no `ioctl(FIONBIO)` later. With its
    /// address if it has one (TCP), as accept4 gives it: no `getpeername`.
    pub fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        let flags = nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC;
        let (socket, peer) = SockRef::from(self).accept4(flags)?;
        let family = match self {
            Listener::Tcp(_) => Family::Inet,
            Listener::Unix(_) => Family::Unix,
        };
        Ok((Stream::from_fd(socket.into(), family), peer.as_socket()))
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            Listener::Unix(l) => l.set_nonblocking(on),
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => write!(f, "tcp {a}"),
                Err(_) => f.write_str("tcp (unknown address)"),
            },
            Listener::Unix(l) => match l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.to_owned()))
            {
                Some(p) => write!(f, "unix {}", p.display()),
                None => f.write_str("unix (unnamed)"),
            },
        }
    }
}

impl Stream {
    pub fn from_fd(fd: OwnedFd, family: Family) -> Stream {
        match family {
            Family::Inet => Stream::Tcp(fd.into()),
            Family::Unix => Stream::Unix(fd.into()),
        }
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    pub fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
        }
    }

    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// The peer's address (TCP), from `getpeername`.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr().ok(),
            Stream::Unix(_) => None,
        }
    }

    /// The peer, for log lines.
    pub fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "unknown peer".into(), |a| a.to_string()),
            Stream::Unix(_) => "unix peer".to_string(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(s) => s.as_fd(),
            Listener::Unix(s) => s.as_fd(),
        }
    }
}

/// Helpers for the unit tests of the modules that hold streams in epoll.
#[cfg(test)]
pub(crate) mod testing {
    use crate::sockets::Stream;
    use nix::sys::epoll::{Epoll, EpollEvent, EpollTimeout};
    use std::os::unix::net::UnixStream;

    /// A connected pair: ours non-blocking (as accepted), and the peer's.
    pub fn pair() -> (Stream, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        (Stream::Unix(ours), theirs)
    }

    /// The keys of the events ready in `epoll` now.
    pub fn ready_keys(epoll: &Epoll) -> Vec<u64> {
        let mut events = [EpollEvent::empty(); 8];
        let n = epoll.wait(&mut events, EpollTimeout::ZERO).expect("epoll_wait");
        events[..n].iter().map(|e| e.data()).collect()
    }
}
