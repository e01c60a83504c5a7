//! `fortune-server --hand-over UNIT`: keeps a socket unit's TCP addresses
//! listening while systemd restarts it (the only way to change `Accept=`),
//! so no client is refused or reset in between.
//!
//! A socket restart closes the listening socket and opens a new one: the
//! connections waiting in the old one are reset and those arriving before
//! the new one listens are refused. The units run this from `ExecStopPre=`
//! (through `systemd-run`, so it outlives the socket's stop): it joins each
//! address's `SO_REUSEPORT` group (the units set `ReusePort=yes`), turns on
//! migration there ([`crate::migrate`]), reports ready, and waits. When
//! systemd closes the old socket, its waiting connections move here; new
//! ones are shared between the sockets of the group. Once a new listener
//! appears on an address (`/proc/net/tcp*`), this one closes and what waits
//! in it moves on to the new socket. Nothing is accepted here.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::migrate::{self, Migration};
use crate::{notify, signals};

/// How long the new socket may take to listen (a restart takes
/// milliseconds); then what waits here is reset.
const WAIT_FOR_NEW: Duration = Duration::from_secs(10);
/// How often to look for the new socket.
const POLL: Duration = Duration::from_millis(5);

/// What of a socket unit's settings the held sockets must share with its
/// own to join their groups (`systemctl show`).
#[derive(Debug, Default, PartialEq)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    /// `BindIPv6Only=`: both (false), ipv6-only (true), default (None).
    pub v6only: Option<bool>,
    pub device: Option<String>,
    pub backlog: i32,
    /// `Listen=` entries not held (not TCP), as systemctl shows them.
    pub skipped: Vec<String>,
}

/// Parses `systemctl show --property=Listen,BindIPv6Only,BindToDevice,Backlog`.
pub fn parse_show(text: &str) -> Settings {
    let mut settings = Settings {
        backlog: 4096,
        ..Settings::default()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "Listen" => {
                let tcp = value.rsplit_once(" (").filter(|(_, kind)| *kind == "Stream)");
                match tcp.and_then(|(addr, _)| addr.parse().ok()) {
                    Some(addr) => settings.listen.push(addr),
                    None => settings.skipped.push(value.to_string()),
                }
            }
            "BindIPv6Only" => {
                settings.v6only = match value {
                    "both" => Some(false),
                    "ipv6-only" => Some(true),
                    _ => None,
                }
            }
            "BindToDevice" if !value.is_empty() => settings.device = Some(value.to_string()),
            "Backlog" => settings.backlog = value.parse().unwrap_or(4096),
            _ => {}
        }
    }
    settings
}

/// The address a `/proc/net/tcp` or `tcp6` `local_address` field shows:
/// the address as the kernel's 32-bit words in host order, then the port.
pub fn parse_local(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[..]).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..]).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The inodes of the listeners on `addr` in a `/proc/net/tcp*` table. The
/// kernel lists listeners first: reading stops at the first other line, so
/// a host with many connections costs little.
pub fn parse_listeners(table: impl BufRead, addr: SocketAddr) -> Vec<u64> {
    let mut inodes = Vec::new();
    for line in table.lines().map_while(Result::ok).skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&"0A") {
            break;
        }
        if fields.get(1).and_then(|f| parse_local(f)) == Some(addr) {
            inodes.extend(fields.get(9).and_then(|i| i.parse::<u64>().ok()));
        }
    }
    inodes
}

fn listeners(addr: SocketAddr) -> io::Result<Vec<u64>> {
    let table = if addr.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    Ok(parse_listeners(BufReader::new(std::fs::File::open(table)?), addr))
}

/// One address held, and the listeners it had when the hold began.
struct Held {
    addr: SocketAddr,
    socket: Option<Socket>,
    before: HashSet<u64>,
}

/// The whole of `--hand-over`: never fails the unit's stop, only warns.
pub fn run(unit: &str) {
    // SIGTERM ends it at once: what waits here moves to another listener.
    signals::unblock_stop();
    let settings = match settings(unit) {
        Ok(settings) => settings,
        Err(e) => {
            log::warn!(
                "{unit}: cannot read its addresses (systemctl show): {e}; its restart may lose connections"
            );
            notify::ready("Nothing held");
            return;
        }
    };
    for entry in &settings.skipped {
        log::info!("{unit}: {entry} is not held across the restart (only TCP addresses are)");
    }
    let migration = migration(unit);
    let mut held: Vec<Held> = settings
        .listen
        .iter()
        .filter_map(|&addr| match hold(addr, &settings, migration.as_ref()) {
            // The listeners now, this one among them: any other is the new socket.
            Ok(socket) => Some(Held {
                addr,
                socket: Some(socket),
                before: listeners(addr).unwrap_or_default().into_iter().collect(),
            }),
            Err(e) => {
                log::warn!(
                    "{unit}: cannot hold {addr} across the restart: {e}; its waiting connections may be lost"
                );
                None
            }
        })
        .collect();
    let shown: Vec<String> = held.iter().map(|h| h.addr.to_string()).collect();
    notify::ready(&format!("Holding {} while {unit} restarts", shown.join(" ")));
    log::info!("{unit}: holding {} while it restarts", shown.join(" "));
    let start = Instant::now();
    while held.iter().any(|h| h.socket.is_some()) && start.elapsed() < WAIT_FOR_NEW {
        std::thread::sleep(POLL);
        for h in held.iter_mut().filter(|h| h.socket.is_some()) {
            let now = listeners(h.addr).unwrap_or_default();
            if now.iter().any(|inode| !h.before.contains(inode)) {
                // Closing moves what waits here to the new listener.
                h.socket = None;
                log::info!(
                    "{unit}: {} handed over after {} ms",
                    h.addr,
                    start.elapsed().as_millis()
                );
            }
        }
    }
    for h in held.iter().filter(|h| h.socket.is_some()) {
        log::warn!(
            "{unit}: no new socket listened on {} within {} s: the connections waiting for it are reset",
            h.addr,
            WAIT_FOR_NEW.as_secs()
        );
    }
}

fn settings(unit: &str) -> io::Result<Settings> {
    let out = Command::new("systemctl")
        .args([
            "show",
            "--property=Listen,BindIPv6Only,BindToDevice,Backlog",
            "--",
            unit,
        ])
        .output()?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!("{}: {}", out.status, why.trim())));
    }
    Ok(parse_show(&String::from_utf8_lossy(&out.stdout)))
}

/// The migration program, unless the namespace migrates already or it
/// cannot be loaded (then waiting connections are still reset on close,
/// but none is refused while the unit restarts).
fn migration(unit: &str) -> Option<Migration> {
    if migrate::namespace_migrates() {
        return None;
    }
    Migration::load()
        .inspect_err(|e| {
            log::warn!(
                "{unit}: cannot load the eBPF program that moves waiting connections between sockets \
                 ({e}; it needs CAP_BPF and Linux 5.14): connections waiting in the old socket are \
                 reset; sysctl net.ipv4.tcp_migrate_req=1 would keep them"
            )
        })
        .ok()
}

/// A listener on `addr` in the group of the unit's own (same options).
fn hold(addr: SocketAddr, settings: &Settings, migration: Option<&Migration>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    if let (true, Some(only)) = (addr.is_ipv6(), settings.v6only) {
        socket.set_only_v6(only)?;
    }
    if let Some(device) = &settings.device {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    socket.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                "its socket was opened without ReusePort=yes (by an older unit file?)",
            )
        } else {
            e
        }
    })?;
    socket.listen(settings.backlog)?;
    if let Some(migration) = migration {
        migration.attach(&socket)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_gives_the_tcp_addresses_and_options() {
        let shown = "Backlog=4096\nBindIPv6Only=both\nBindToDevice=\nListen=[::]:7017 (Stream)\n\
                     Listen=127.0.0.1:17 (Datagram)\nListen=/run/fortune.sock (Stream)\nListen=0.0.0.0:7018 (Stream)\n";
        let s = parse_show(shown);
        assert_eq!(
            s.listen,
            ["[::]:7017".parse().unwrap(), "0.0.0.0:7018".parse().unwrap()]
        );
        assert_eq!(s.v6only, Some(false));
        assert_eq!(s.device, None);
        assert_eq!(s.backlog, 4096);
        assert_eq!(
            s.skipped,
            ["127.0.0.1:17 (Datagram)", "/run/fortune.sock (Stream)"]
        );
        let s = parse_show("BindIPv6Only=ipv6-only\nBindToDevice=eth0\nBacklog=128\n");
        assert_eq!(
            (s.v6only, s.device.as_deref(), s.backlog),
            (Some(true), Some("eth0"), 128)
        );
        assert_eq!(parse_show("BindIPv6Only=default\n").v6only, None);
    }

    #[test]
    fn proc_net_addresses() {
        // As printed on a little-endian host.
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_local("0100007F:1B69"),
                Some("127.0.0.1:7017".parse().unwrap())
            );
            assert_eq!(
                parse_local("00000000000000000000000001000000:0011"),
                Some("[::1]:17".parse().unwrap())
            );
        }
        assert_eq!(
            parse_local("00000000000000000000000000000000:1B69"),
            Some("[::]:7017".parse().unwrap())
        );
        assert_eq!(
            parse_local("00000000:1B69"),
            Some("0.0.0.0:7017".parse().unwrap())
        );
        for bad in ["", "0100007F", "0100007:1B69", "0100007F:XYZ", "0100007F0:1B69"] {
            assert_eq!(parse_local(bad), None, "{bad}");
        }
    }

    #[test]
    fn listeners_are_read_up_to_the_first_other_line() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:1B69 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0\n\
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0\n\
   2: 00000000000000000000000000000000:1B69 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0\n\
   3: 00000000000000000000000000000000:1B69 00000000000000000000000000000000:A000 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 100 0 0 10 0\n\
   4: 00000000000000000000000000000000:1B69 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1005 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(
            parse_listeners(table.as_bytes(), "[::]:7017".parse().unwrap()),
            [1001, 1003]
        );
    }
}
