//! One worker thread of the pool ([`crate::server`]): it serves the
//! clients it accepted itself, start to finish, the FortuneThread way. Each
//! worker has its own epoll set holding every listening socket
//! (`EPOLLEXCLUSIVE`: a new client wakes one waiting worker, not all) and its
//! own connections waiting for their peer to close ([`crate::linger`]), so
//! one `epoll_wait` returns both, and no lock is taken on the way of a
//! connection. A connection whose peer closes promptly is not registered at
//! all: the worker looks for its close when it comes around after
//! accepting, or at the latest [`crate::linger::WATCH_AFTER`] later. While
//! a worker waits for a slow reader its parked connections wait too: a
//! peer's close is then noticed late, at worst by `--timeout`.
//!
//! Also what the workers share ([`Shared`]: the [`Config`], the pool's
//! counts, the stop deadlines), and starting one more ([`spawn`]): a worker
//! that must wait for a slow reader grows the pool, one that panics is
//! replaced. A worker's `Phase`: serving, then once stopping draining the
//! backlogs, then closing (waiting only for its lingering peers). These
//! live here, not in the pool's module, so that uses run one way (`server`
//! uses `worker`, which re-exports nothing back); `server` re-exports
//! [`Config`].
//!
//! [`shared`](mod@shared): what the workers share; [`serve`]: accepting and serving a
//! client; [`thread`]: one worker thread and its phases. `thread` uses
//! `serve` and `shared`, `serve` uses `shared`; this file only joins them.

mod serve;
mod shared;
mod thread;

use std::io;

pub use shared::Config;
pub(crate) use shared::Shared;
pub(crate) use thread::{SPARE_WORKERS, spawn};

/// What the workers share, growing the pool with [`spawn`].
pub(crate) fn shared(config: Config) -> io::Result<Shared> {
    Shared::new(config, spawn)
}
