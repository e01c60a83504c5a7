//! [`Live`], the collection being served, swapped whole on reload, and the
//! pick: a random fortune (never the one served just before) or today's,
//! that fits the protocol's frame.

use std::sync::{Arc, RwLock};

use rand::RngExt;

use super::daily;
use super::error::EntryError;
use super::store::Store;
use crate::wire::{self, Protocol};

/// The collection being served, swapped whole on reload: a connection keeps
/// the `Arc<Store>` it started with.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Store>>,
    daily: bool,
}

impl Live {
    /// `daily`: the same fortune all day (`--daily`), else a random one each time.
    pub fn new(store: Store, daily: bool) -> Live {
        Live {
            current: RwLock::new(Arc::new(store)),
            daily,
        }
    }

    pub fn store(&self) -> Arc<Store> {
        // A poisoned lock still holds a whole Arc: keep serving it.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, store: Store) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
    }

    /// One frame of a fortune from the collection served now (see `draw`).
    pub fn frame(&self, protocol: Protocol, max_len: Option<usize>) -> Option<Vec<u8>> {
        draw(&self.store(), self.daily, protocol, max_len)
    }
}

/// How many entries one pick reads at most before giving up (unreadable,
/// not UTF-8, index mismatch): a broken file costs a bounded amount per pick.
const TRIES: usize = 16;
/// How many draws one pick makes at most, refused files' entries included.
const DRAWS: usize = 1024;

/// One frame of a fortune of `store` that fits `protocol` (qt4's 64 KiB)
/// and `max_len` (one UDP datagram): random and never the one this store
/// served just before (the Qt clients re-request at once on a repeat), or
/// today's with `daily`. An entry that cannot be served (see
/// [`EntryError`]) is skipped and another drawn, [`TRIES`] times at most
/// (entries of a file refused when opened do not count, up to [`DRAWS`]),
/// which keeps the draw uniform over the servable ones.
/// `None` only if no entry fits or none of those drawn could be served.
fn draw(store: &Store, daily: bool, protocol: Protocol, max_len: Option<usize>) -> Option<Vec<u8>> {
    let limit = frame_limit(protocol, max_len);
    // When some entry may not fit and all are known, draw among those that do.
    let fitting = limit
        .filter(|&limit| store.longest().is_some_and(|l| worst_frame(protocol, l) > limit))
        .map(|limit| store.fitting(protocol, limit));
    let n = fitting.as_ref().map_or(store.len(), |f| f.len());
    if n == 0 {
        return None;
    }
    let entry_of = |k: usize| fitting.as_ref().map_or(k, |f| f[k]);
    let previous = store.last().filter(|_| !daily);
    let today = daily.then(daily::today);
    // Some(frame), or None after a costly failure; Err for an entry of a
    // file refused when opened (a lazy member that is not a fortune file
    // after all): drawing those again costs nothing, so they count toward
    // DRAWS only, not TRIES, and a wrong list cache cannot starve the pick.
    let serve = |i: usize| -> Result<Option<Vec<u8>>, EntryError> {
        // Store::entry logs what it could not read.
        let text = match store.entry(i) {
            Ok(text) => text,
            Err(e @ EntryError::Refused { .. }) => return Err(e),
            Err(_) => return Ok(None),
        };
        match wire::encode(protocol, &text) {
            Ok(frame) if limit.is_none_or(|limit| frame.len() <= limit) => {
                store.set_last(i);
                Ok(Some(frame))
            }
            Ok(frame) => {
                log::debug!("fortune {i} ({} bytes) is too long", frame.len());
                Ok(None)
            }
            Err(e) => {
                log::debug!("fortune {i}: {e}");
                Ok(None)
            }
        }
    };
    let mut tries = 0;
    for attempt in 0..DRAWS {
        let i = match today {
            Some(date) => entry_of(daily::index(date, attempt as u64, n)),
            None => entry_of(random_other(n, |k| Some(entry_of(k)) == previous)),
        };
        match serve(i) {
            Ok(Some(frame)) => return Some(frame),
            Ok(None) => tries += 1,
            Err(_) => {}
        }
        if tries == TRIES {
            break;
        }
    }
    // The previous fortune as the last resort: better a repeat than nothing.
    if let Some(Ok(Some(frame))) = previous.map(serve) {
        return Some(frame);
    }
    let message = format!("no servable fortune among {TRIES} drawn from {}", store.origin());
    if store.first_exhausted() {
        log::warn!("{message} (said once; then at debug level)");
    } else {
        log::debug!("{message}");
    }
    None
}

/// A uniformly random position in `0..n`, not one `is_previous` says was
/// served last when there is another.
fn random_other(n: usize, is_previous: impl Fn(usize) -> bool) -> usize {
    let mut rng = rand::rng();
    let k = rng.random_range(0..n);
    if n > 1 && is_previous(k) {
        // Uniform over the n-1 others.
        (k + rng.random_range(1..n)) % n
    } else {
        k
    }
}

/// The largest frame `protocol` and `max_len` allow, if any.
fn frame_limit(protocol: Protocol, max_len: Option<usize>) -> Option<usize> {
    let own = (protocol == Protocol::Qt4).then_some(2 + wire::QT4_MAX_PAYLOAD);
    match (own, max_len) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An upper bound on the frame of any text of `bytes` UTF-8 bytes: at most
/// one UTF-16 unit (2 bytes) per byte for the Qt framings; in text, every
/// byte a newline that becomes CRLF, plus the final CRLF.
fn worst_frame(protocol: Protocol, bytes: usize) -> usize {
    match protocol {
        Protocol::Qt => 4 + 2 * bytes,
        Protocol::Qt4 => 6 + 2 * bytes,
        Protocol::Text => 2 * bytes + 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fortunes::fixture::Scratch;
    use crate::fortunes::{BUILTIN, Opening, Selection};

    /// A store loaded from a scratch file holding `entries`.
    fn store_of(entries: &[&str]) -> Store {
        let file = Scratch::file(entries.join("\n%\n").as_bytes());
        let selection = Selection {
            paths: vec![file.to_path_buf()],
            ..Selection::default()
        };
        Store::load(&selection, Opening::Eager).unwrap()
    }

    fn live_of(entries: &[&str], daily: bool) -> Live {
        Live::new(store_of(entries), daily)
    }

    fn text_of(frame: &[u8]) -> String {
        wire::decode(Protocol::Qt, frame).unwrap()
    }

    #[test]
    fn never_the_same_twice_in_a_row() {
        let live = Live::new(Store::builtin(), false);
        let mut previous = String::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let text = text_of(&live.frame(Protocol::Qt, None).unwrap());
            assert_ne!(text, previous);
            seen.insert(text.clone());
            previous = text;
        }
        assert_eq!(seen.len(), BUILTIN.len());
    }

    #[test]
    fn one_entry_is_served_again() {
        let live = live_of(&["only"], false);
        for _ in 0..3 {
            assert_eq!(text_of(&live.frame(Protocol::Qt, None).unwrap()), "only");
        }
    }

    #[test]
    fn daily_is_the_same_all_day() {
        let live = live_of(&["a", "b", "c", "d", "e"], true);
        let first = live.frame(Protocol::Qt, None).unwrap();
        for _ in 0..20 {
            assert_eq!(live.frame(Protocol::Qt, None).unwrap(), first);
        }
    }

    #[test]
    fn datagrams_get_only_entries_that_fit() {
        let long = "x".repeat(600);
        let live = live_of(&[&long, "short one", &long, "short two", &long], false);
        for _ in 0..100 {
            let frame = live.frame(Protocol::Text, Some(wire::QOTD_MAX_DATAGRAM)).unwrap();
            assert!(
                frame == b"short one\r\n" || frame == b"short two\r\n",
                "{frame:?}"
            );
        }
        // Over TCP the long ones are served too.
        assert!((0..100).any(|_| live.frame(Protocol::Text, None).unwrap().len() > 600));
        let none_fit = live_of(&[&long], false);
        assert_eq!(
            none_fit.frame(Protocol::Text, Some(wire::QOTD_MAX_DATAGRAM)),
            None
        );
    }

    #[test]
    fn worst_frame_bounds_the_encoder() {
        for text in ["\n\n\n", "é", "\u{10000}", "abc", "日本"] {
            for protocol in Protocol::ALL {
                let frame = wire::encode(protocol, text).unwrap();
                assert!(
                    frame.len() <= worst_frame(protocol, text.len()),
                    "{protocol} {text:?}"
                );
            }
        }
    }

    #[test]
    fn limits() {
        assert_eq!(frame_limit(Protocol::Qt, None), None);
        assert_eq!(frame_limit(Protocol::Text, Some(512)), Some(512));
        assert_eq!(frame_limit(Protocol::Qt4, None), Some(65537));
        assert_eq!(frame_limit(Protocol::Qt4, Some(512)), Some(512));
    }

    #[test]
    fn a_pick_racing_a_reload_into_a_smaller_collection() {
        let live = live_of(&["a", "b", "c", "d", "e"], false);
        // A worker takes the large collection and draws from it...
        let large = live.store();
        // ...a reload into a one-entry collection lands meanwhile...
        live.replace(store_of(&["only"]));
        // ...then the worker records its pick: entry 4, which the new one lacks.
        assert!(draw(&large, false, Protocol::Qt, None).is_some());
        large.set_last(4);
        // The next pick draws from the new collection and never sees that number.
        for _ in 0..3 {
            assert_eq!(text_of(&live.frame(Protocol::Qt, None).unwrap()), "only");
        }
        // The late worker's store still knows its own last pick.
        assert_eq!(large.last(), Some(4));
        assert!(draw(&large, false, Protocol::Qt, None).is_some());
        // A number past the end is an error, not a panic.
        let small = live.store();
        small.set_last(4);
        assert_eq!(small.last(), None);
        assert!(matches!(
            small.entry(4),
            Err(crate::fortunes::EntryError::Missing { n: 4, len: 1 })
        ));
    }

    #[test]
    fn random_other_avoids_the_previous() {
        assert!((0..1000).all(|_| random_other(3, |k| k == 1) != 1));
        assert_eq!(random_other(1, |k| k == 0), 0);
    }
}
