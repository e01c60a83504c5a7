//! fortune-server: serves a random fortune per connection, framed as Qt's
//! `QDataStream << QString`, on sockets systemd passes or it binds itself.
//!
//! One module per concern: [`activation`] adopts sockets, [`wire`] encodes
//! frames, [`fortunes`] holds the collection, [`connection`] serves one
//! client, [`server`] is the accept loop's pool of workers, `worker` one
//! worker thread (its epoll set, accepting, serving), [`linger`] holds a
//! worker's connections until their peers leave, [`prefix`] says what a
//! source is, [`sources`] caps what one source holds, [`datagram`] answers UDP,
//! [`ratelimit`] bounds the UDP replies a source gets, [`proxy`] parses the
//! PROXY header a load balancer sends, [`proxied`] reads it from those
//! [`cidr`] (`--proxy-from`) trusts, [`fold`] folds client-caused log lines,
//! [`stats`] holds the counters, [`service`] runs the process's life,
//! [`notify`] talks to systemd, [`logging`] chooses where logs go, [`limits`]
//! raises resource limits, [`error`] says how the process ends (exit
//! statuses, [`Error`]); [`handover`] holds a socket unit's addresses while
//! systemd restarts it ([`migrate`] moves the connections waiting there);
//! [`client`] is `fortune-client` and its benchmark.
#![deny(unsafe_code)]

pub mod activation;
pub mod cidr;
pub mod cli;
pub mod client;
pub mod connection;
pub mod datagram;
pub mod error;
pub mod fold;
pub mod fortunes;
pub mod handover;
pub mod health;
pub mod limits;
pub mod linger;
pub mod logging;
pub mod migrate;
pub mod notify;
pub mod prefix;
pub mod proxied;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod signals;
pub mod sockets;
pub mod sources;
pub mod stats;
pub mod wire;
mod worker;

use std::os::fd::AsFd;

use activation::{Activation, Inherited};
use fortunes::{Live, Opening, Store};

pub use error::{Cause, Error, exit};

/// Everything `main` does after taking the inherited descriptors, parsing
/// the command line and starting logging ([`logging::init`]).
pub fn run(cli: cli::Cli, inherited: Inherited) -> Result<(), error::Error> {
    let activation = match activation::activate(inherited, &cli.listen, cli.given.listen) {
        Ok(activation) => activation,
        Err(failed) => return Err(error::Error::from(failed.error).refusing(failed.hold)),
    };
    for line in cli::unknown_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok())) {
        log::warn!("{line}");
    }
    let cache_dir = cli.cache_dir();
    let selection = cli.selection();
    // One connection per process: open only the file picked (see Opening::Lazy).
    let opening = match activation {
        Activation::Connected(_) => Opening::Lazy,
        Activation::Listening { .. } => Opening::Eager,
    };
    // Before loading: a collection holds descriptors (see fortunes::limits).
    limits::raise_fd_limit();
    let store = match Store::load_cached(&selection, opening, cache_dir.as_deref()) {
        Ok(store) => store,
        Err(e) => return Err(error::Error::from(e).refusing(activation)),
    };
    match activation {
        Activation::Connected(mut stream) => {
            // No signalfd in this mode: SIGTERM acts as usual.
            signals::unblock_stop();
            let trusted = cidr::Trusted::new(cli.proxy_from);
            let mut peer = stream.peer();
            if trusted.trusts(stream.peer_addr()) {
                match proxied::read_blocking(&mut stream, cli.timeout) {
                    Ok(source) => peer = source.map_or(peer, |s| s.to_string()),
                    Err(why) => {
                        proxied::refuse(peer, &why, &stats::Stats::default());
                        return Ok(());
                    }
                }
            }
            let live = Live::new(store, cli.daily);
            match live.frame(cli.protocol, None) {
                Some(frame) => connection::serve_once(stream, &peer, &frame, cli.timeout),
                None => log::warn!("{peer}: no fortune fits the {} protocol", cli.protocol),
            }
            Ok(())
        }
        Activation::Listening {
            listeners,
            datagrams,
            bound_here,
        } => {
            let config = service::Config {
                protocol: cli.protocol,
                protocol_given: cli.given.protocol,
                fortunes: selection,
                daily: cli.daily,
                timeout: cli.timeout,
                idle_exit: cli.idle_exit,
                max_connections: cli.max_connections as usize,
                max_per_source: cli.max_per_source,
                udp: datagram::Limits {
                    rate: cli.udp_rate,
                    burst: cli.udp_burst,
                },
                bound_here,
                proxy_from: cidr::Trusted::new(cli.proxy_from),
            };
            service::run(config, store, listeners, datagrams)
        }
    }
}

/// Before exiting with a status that needs the admin: the refusal hold
/// ([`Activation::refuse_pending`]), which SIGTERM or SIGINT cuts short. The
/// hold only watches for them, leaving them pending, so that it can put the
/// sockets' flags back first; unblocked afterwards, they end the process.
pub fn refuse_pending(activation: &Activation) {
    let stop = signals::stop_watch().ok();
    activation.refuse_pending(stop.as_ref().map(|fd| fd.as_fd()));
    signals::unblock_stop();
}
