//! Process resource limits that both the service and `fortune-client bench`
//! need raised: the descriptor limit.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

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
