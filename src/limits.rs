//! Process resource limits: the descriptor limit, which both the service
//! and `fortune-client bench` need raised, and the stack of our threads.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Stack size of every thread we start: they hold a few small buffers only.
pub const THREAD_STACK: usize = 128 * 1024;

/// Lingering clients each hold a descriptor (so do `fortune-client bench
/// --idle` ones), and so do the fortune files (`fortunes::load`): raised
/// before the collection is loaded. systemd's default soft limit (1024) is
/// far below its hard limit, and we never use select(2).
pub fn raise_fd_limit() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        log::debug!("cannot raise the descriptor limit to {hard}: {e}");
    }
}
