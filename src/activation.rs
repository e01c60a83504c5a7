//! Socket activation: adopting the descriptors systemd (or inetd) hands over,
//! and asking each socket what it is (`SO_ACCEPTCONN`, `SO_TYPE`, family),
//! the way `QTcpSocket::setSocketDescriptor()` adopts one. Without inherited
//! sockets, binding `--listen` addresses also lives here.

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, AddressFamily, SockType, SockaddrLike, SockaddrStorage, sockopt};
use nix::sys::stat::{SFlag, fstat};

use crate::sockets::{Family, Listener, Stream};

/// What systemd handed over, once every descriptor has been asked.
#[derive(Debug)]
pub enum Activation {
    /// `Accept=no`, or our own `--listen` sockets: accept and serve many.
    Listening {
        listeners: Vec<Named<Listener>>,
        datagrams: Vec<Named<UdpSocket>>,
        /// True for `--listen` sockets: nobody else holds them, so on stop
        /// this process closes them (inherited ones stay open in systemd).
        bound_here: bool,
    },
    /// `Accept=yes` or inetd: one connection, then exit.
    Connected(Stream),
}

/// A socket with its `FileDescriptorName=` (systemd's `LISTEN_FDNAMES`).
#[derive(Debug)]
pub struct Named<T> {
    pub socket: T,
    pub name: Option<String>,
}

/// Why the inherited descriptors cannot be used.
#[derive(Debug)]
pub enum ActivationError {
    /// An activation variable that cannot be right.
    Environment {
        var: &'static str,
        value: String,
        why: String,
    },
    /// `LISTEN_FDS` promised a descriptor that is not open.
    NotOpen {
        fd: RawFd,
    },
    NotASocket {
        fd: RawFd,
        kind: &'static str,
    },
    Unsupported {
        fd: RawFd,
        what: String,
    },
    Inspect {
        fd: RawFd,
        errno: Errno,
    },
    /// A connected socket (`Accept=yes`) came with other descriptors.
    ConnectedAmongOthers {
        fd: RawFd,
        count: usize,
    },
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// Started by systemd (`INVOCATION_ID`) with no socket, and no
    /// `--listen` given: its socket unit is down or has `Accept=yes`.
    NoSocket {
        unit: Option<String>,
    },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ActivationError::*;
        match self {
            Environment { var, value, why } => write!(f, "{var}={value:?} {why}"),
            NotOpen { fd } => write!(f, "fd {fd} was passed by LISTEN_FDS but is not open"),
            NotASocket { fd, kind } => write!(
                f,
                "fd {fd} is a {kind}, expected a stream or datagram socket (check the .socket unit's Listen*= lines)"
            ),
            Unsupported { fd, what } => write!(
                f,
                "fd {fd} is {what}, expected a TCP, Unix stream or UDP socket (use ListenStream= or ListenDatagram=)"
            ),
            Inspect { fd, errno } => write!(f, "fd {fd}: cannot ask the socket what it is: {}", errno.desc()),
            ConnectedAmongOthers { fd, count } => write!(
                f,
                "fd {fd} is a connected socket (Accept=yes) but {count} descriptors were passed; expected it alone"
            ),
            Bind { addr, error } => write!(
                f,
                "cannot listen on {addr}: {error} (choose another address with --listen or FORTUNE_LISTEN)"
            ),
            NoSocket { unit } => {
                let service = unit.as_deref().unwrap_or("this service");
                let socket = unit
                    .as_deref()
                    .and_then(|u| u.strip_suffix(".service"))
                    .map_or_else(|| "its .socket unit".to_string(), |u| format!("{u}.socket"));
                write!(
                    f,
                    "systemd started {service} without a socket to serve (no LISTEN_FDS): {socket} is not \
                     listening, or has Accept=yes and starts one process per connection itself. Start the \
                     socket (systemctl start {socket}); with Accept=yes, {service} is not needed \
                     (systemctl stop {service})"
                )
            }
        }
    }
}

impl std::error::Error for ActivationError {}

/// The descriptors this process was handed, owned, not yet asked what
/// they are (see [`activate`]).
#[derive(Debug)]
pub struct Inherited {
    fds: Vec<(OwnedFd, Option<String>)>,
    /// Why they cannot all be used, found while taking them.
    problem: Option<ActivationError>,
}

/// Takes the descriptors this process inherited: fd 0 with `--inetd`, else
/// those `LISTEN_FDS` names. Unsets `LISTEN_*` so children inherit nothing.
/// The one place raw inherited descriptors become owned.
///
/// # Safety
///
/// Call it once, first thing in `main`: before any thread starts (it
/// changes the environment, which another thread may be reading), and
/// before anything in the process opens a descriptor (a log socket, a
/// file): the numbers `LISTEN_FDS` names must be the inherited descriptors,
/// owned by nothing else, not one the process opened itself and uses.
#[allow(unsafe_code)]
pub unsafe fn take_inherited(inetd: bool) -> Inherited {
    use std::os::fd::FromRawFd;
    let fds_value = std::env::var("LISTEN_FDS").unwrap_or_default();
    let names_value = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let pid_value = std::env::var("LISTEN_PID").unwrap_or_default();
    // SAFETY: no other thread exists yet (this function's contract).
    let listed = unsafe { sd_notify::listen_fds_with_names_and_unset_env() };
    let is_open = |fd: RawFd| {
        // SAFETY: borrowed only for this fcntl, which is harmless on any number.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD) != Err(Errno::EBADF)
    };
    // SAFETY: the fd was handed to this process to own (fd 0 by inetd or
    // StandardInput=socket; fds 3.. by systemd, LISTEN_PID having matched),
    // it is open, and nothing in the process has opened or used a
    // descriptor yet (this function's contract), so nothing else owns it.
    let adopt = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
    let taken = |fds, problem| Inherited { fds, problem };
    if inetd {
        return match is_open(0) {
            true => taken(vec![(adopt(0), None)], None),
            false => taken(Vec::new(), Some(ActivationError::NotOpen { fd: 0 })),
        };
    }
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => {
            if e.raw_os_error() == Some(Errno::EBADF as i32) {
                let count: RawFd = fds_value.parse().unwrap_or(0);
                // The open ones are still ours, to refuse their clients.
                let (open, closed): (Vec<RawFd>, Vec<RawFd>) = (3..3 + count).partition(|&fd| is_open(fd));
                if let Some(&fd) = closed.first() {
                    let fds = open.into_iter().map(|fd| (adopt(fd), None)).collect();
                    return taken(fds, Some(ActivationError::NotOpen { fd }));
                }
            }
            let (var, value, why) = match e.to_string().as_str() {
                "invalid LISTEN_FDNAMES" => (
                    "LISTEN_FDNAMES",
                    names_value,
                    format!("must hold one name per descriptor (LISTEN_FDS={fds_value}), separated by ':'"),
                ),
                "invalid LISTEN_PID" => ("LISTEN_PID", pid_value, "is not a process id".to_string()),
                _ => (
                    "LISTEN_FDS",
                    fds_value,
                    "is not a number of descriptors".to_string(),
                ),
            };
            return taken(Vec::new(), Some(ActivationError::Environment { var, value, why }));
        }
    };
    let named = |name: String| Some(name).filter(|n| !n.is_empty() && n != "unknown");
    let mut fds = Vec::new();
    let mut problem = None;
    for (fd, name) in listed {
        match is_open(fd) {
            true => fds.push((adopt(fd), named(name))),
            false => problem = problem.or(Some(ActivationError::NotOpen { fd })),
        }
    }
    taken(fds, problem)
}

/// What kind of socket one descriptor is, by asking it.
enum Kind {
    Listening(Family),
    Connected(Family),
    Datagram,
}

fn inspect(fd: &OwnedFd) -> Result<Kind, ActivationError> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
    let ask = |errno| ActivationError::Inspect { fd: raw, errno };
    let stat = fstat(fd.as_fd()).map_err(ask)?;
    let file_type = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if file_type != SFlag::S_IFSOCK {
        let kind = match file_type {
            SFlag::S_IFREG => "regular file",
            SFlag::S_IFDIR => "directory",
            SFlag::S_IFCHR => "character device (a terminal?)",
            SFlag::S_IFIFO => "pipe",
            _ => "non-socket file",
        };
        return Err(ActivationError::NotASocket { fd: raw, kind });
    }
    let unsupported = |what: String| ActivationError::Unsupported { fd: raw, what };
    let family = socket::getsockname::<SockaddrStorage>(raw).map_err(ask)?.family();
    let family = match family {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => Family::Inet,
        Some(AddressFamily::Unix) => Family::Unix,
        other => return Err(unsupported(format!("a socket of family {other:?}"))),
    };
    match socket::getsockopt(fd, sockopt::SockType).map_err(ask)? {
        SockType::Stream if socket::getsockopt(fd, sockopt::AcceptConn).map_err(ask)? => {
            Ok(Kind::Listening(family))
        }
        SockType::Stream => Ok(Kind::Connected(family)),
        SockType::Datagram if family == Family::Inet => Ok(Kind::Datagram),
        SockType::Datagram => Err(unsupported("a Unix datagram socket".to_string())),
        other => Err(unsupported(format!("a {other:?} socket"))),
    }
}

/// Why [`activate`] failed, with the inherited sockets that could still be
/// adopted: [`Activation::refuse_pending`] on them before exiting.
#[derive(Debug)]
pub struct Failed {
    pub error: ActivationError,
    pub hold: Activation,
}

/// Asks each inherited socket what it is, or binds `listen` when nothing
/// was inherited (unless systemd started us and `listen` was not `given`:
/// the unit's sandbox has no network, so the socket unit is what is
/// missing, see `systemd_unit`).
pub fn activate(inherited: Inherited, listen: &[SocketAddr], given: bool) -> Result<Activation, Failed> {
    let Inherited { fds, mut problem } = inherited;
    if fds.is_empty() && problem.is_none() {
        let error = if !given && std::env::var_os("INVOCATION_ID").is_some() {
            Err(ActivationError::NoSocket { unit: systemd_unit() })
        } else {
            bind(listen)
        };
        return error.map_err(|error| Failed {
            error,
            hold: Activation::refusing(Vec::new(), Vec::new()),
        });
    }
    let count = fds.len();
    let mut listeners = Vec::new();
    let mut datagrams = Vec::new();
    for (fd, name) in fds {
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        match inspect(&fd) {
            Ok(Kind::Listening(family)) => listeners.push(Named {
                socket: Listener::from_fd(fd, family),
                name,
            }),
            Ok(Kind::Datagram) => datagrams.push(Named {
                socket: UdpSocket::from(fd),
                name,
            }),
            Ok(Kind::Connected(family)) if count == 1 && problem.is_none() => {
                return Ok(Activation::Connected(Stream::from_fd(fd, family)));
            }
            Ok(Kind::Connected(_)) => {
                problem = problem.or(Some(ActivationError::ConnectedAmongOthers { fd: raw, count }))
            }
            Err(e) => problem = problem.or(Some(e)),
        }
    }
    match problem {
        None => Ok(Activation::Listening {
            listeners,
            datagrams,
            bound_here: false,
        }),
        Some(error) => Err(Failed {
            error,
            hold: Activation::refusing(listeners, datagrams),
        }),
    }
}

/// At most this many queued connections (and datagrams) per socket are
/// refused in one round.
const REFUSE_AT_MOST: usize = 4096;

/// How long a service that cannot start goes on refusing clients before it
/// exits: longer than systemd's default start limit allows between starts
/// (5 in 10 s), so clients that keep coming while the configuration is
/// broken start it at most every 3 s and never fail the sockets.
pub const REFUSE_FOR: Duration = Duration::from_secs(3);

impl Activation {
    /// Inherited sockets to refuse clients on (see [`Activation::refuse_pending`]).
    fn refusing(listeners: Vec<Named<Listener>>, datagrams: Vec<Named<UdpSocket>>) -> Activation {
        Activation::Listening {
            listeners,
            datagrams,
            bound_here: false,
        }
    }

    /// Before exiting on an error: for [`REFUSE_FOR`], closes the
    /// connections arriving on inherited listening sockets and drops the
    /// datagrams arriving on inherited UDP ones. Left queued, they would make
    /// systemd start the service again at once, to fail the same way until
    /// the start limit fails the sockets too. Sockets bound here (`--listen`)
    /// die with the process: nothing to do for them. Ends early, the sockets
    /// as they were, once `stop` (if any) is readable.
    pub fn refuse_pending(&self, stop: Option<BorrowedFd<'_>>) {
        let Activation::Listening {
            listeners,
            datagrams,
            bound_here: false,
        } = self
        else {
            return;
        };
        // Non-blocking for the hold only: systemd keeps these open file
        // descriptions for the next start, which must find them as they were.
        let listeners: Vec<NonBlocking<'_, Listener>> = listeners
            .iter()
            .filter_map(|named| NonBlocking::set(&named.socket))
            .collect();
        let datagrams: Vec<NonBlocking<'_, UdpSocket>> = datagrams
            .iter()
            .filter_map(|named| NonBlocking::set(&named.socket))
            .collect();
        let deadline = Instant::now() + REFUSE_FOR;
        let mut byte = [0u8; 1];
        loop {
            for socket in &listeners {
                (0..REFUSE_AT_MOST)
                    .map_while(|_| socket.0.accept().ok())
                    .for_each(drop);
            }
            for socket in &datagrams {
                (0..REFUSE_AT_MOST)
                    .map_while(|_| socket.0.recv(&mut byte).ok())
                    .for_each(drop);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds: Vec<PollFd<'_>> = stop
                .into_iter()
                .chain(listeners.iter().map(|socket| socket.0.as_fd()))
                .chain(datagrams.iter().map(|socket| socket.0.as_fd()))
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            if poll(&mut fds, wait).is_err_and(|e| e != Errno::EINTR) {
                return;
            }
            let stopped = stop.is_some() && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
            if stopped {
                return;
            }
        }
    }
}

/// A socket made non-blocking for a while: put back as it was when dropped.
struct NonBlocking<'a, S: AsFd>(&'a S, OFlag);

impl<'a, S: AsFd> NonBlocking<'a, S> {
    /// None if the socket's flags cannot be read or set (it is left out).
    fn set(socket: &'a S) -> Option<NonBlocking<'a, S>> {
        let was = OFlag::from_bits_truncate(fcntl(socket.as_fd(), FcntlArg::F_GETFL).ok()?);
        fcntl(socket.as_fd(), FcntlArg::F_SETFL(was | OFlag::O_NONBLOCK)).ok()?;
        Some(NonBlocking(socket, was))
    }
}

impl<S: AsFd> Drop for NonBlocking<'_, S> {
    fn drop(&mut self) {
        let _ = fcntl(self.0.as_fd(), FcntlArg::F_SETFL(self.1));
    }
}

/// The unit systemd runs this process in: the last part of its cgroup
/// (`0::/system.slice/fortune.service`), if it names a service.
fn systemd_unit() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    unit_of_cgroup(&cgroup)
}

fn unit_of_cgroup(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    let last = path.trim_end().rsplit('/').next()?;
    last.ends_with(".service").then(|| last.to_string())
}

/// Listen backlog for sockets we bind: deep enough that a burst of clients
/// waits in the kernel instead of being dropped (the kernel caps it at
/// net.core.somaxconn).
const BACKLOG: i32 = 4096;

fn bind(addrs: &[SocketAddr]) -> Result<Activation, ActivationError> {
    let listeners = addrs
        .iter()
        .map(|&addr| {
            let fail = |error| ActivationError::Bind { addr, error };
            let listener = TcpListener::bind(addr).map_err(fail)?;
            socket::listen(
                &listener,
                socket::Backlog::new(BACKLOG).unwrap_or(socket::Backlog::MAXCONN),
            )
            .map_err(|e| fail(e.into()))?;
            Ok(Named {
                socket: Listener::Tcp(listener),
                name: None,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Activation::Listening {
        listeners,
        datagrams: Vec::new(),
        bound_here: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_comes_from_the_cgroup() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/fortune.service\n").as_deref(),
            Some("fortune.service")
        );
        assert_eq!(unit_of_cgroup("0::/user.slice/session-3.scope\n"), None);
        assert_eq!(unit_of_cgroup("1:name=systemd:/x\n"), None);
    }

    #[test]
    fn no_socket_names_the_cause_and_the_fix_never_listen() {
        let e = ActivationError::NoSocket {
            unit: Some("fortune.service".into()),
        }
        .to_string();
        assert!(e.contains("without a socket to serve"), "{e}");
        assert!(e.contains("systemctl start fortune.socket"), "{e}");
        assert!(e.contains("Accept=yes"), "{e}");
        assert!(!e.contains("--listen") && !e.contains("FORTUNE_LISTEN"), "{e}");
    }
}
