//! [`Live`], the collection being served, swapped whole on reload, and the
//! pick: a random fortune (never the one served just before while its file
//! or share has another) or today's, from the collection's
//! [`Table`](super::select::Table), that fits the protocol's frame.

use std::sync::{Arc, RwLock};

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
/// and `max_len` (one UDP datagram): drawn from the store's table (its
/// shares), never the one this store served just before when the share it
/// fell in has another (the Qt clients re-request at once on a repeat), or
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
    let table = fitting.as_deref().unwrap_or(store.table());
    if table.is_empty() {
        return None;
    }
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
    let mut rng = rand::rng();
    for attempt in 0..DRAWS {
        let i = match today {
            Some(date) => table.pick(&mut daily::Days::new(date, attempt as u64), None),
            None => table.pick(&mut rng, previous),
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

    use std::path::PathBuf;

    use crate::fortunes::fixture::Scratch;
    use crate::fortunes::{BUILTIN, Choice, Length, LoadError, Opening, Selection};

    /// A store loaded from a scratch file holding `entries`.
    fn store_of(entries: &[&str]) -> Store {
        load_files(&[(None, entries)], Choice::default()).unwrap()
    }

    /// Loads scratch files, one per list of entries, each named with its
    /// percentage (an empty list: an optional path that is missing).
    fn load_files(files: &[(Option<u8>, &[&str])], choice: Choice) -> Result<Store, LoadError> {
        let dir = Scratch::dir();
        let mut paths = Vec::new();
        for (n, (_, entries)) in files.iter().enumerate() {
            let file = dir.join(n.to_string());
            if entries.is_empty() {
                paths.push(PathBuf::from(format!("-{}", file.display())));
            } else {
                std::fs::write(
                    &file,
                    entries.join(
                        "
%
",
                    ),
                )
                .unwrap();
                paths.push(file);
            }
        }
        let selection = Selection {
            paths,
            choice: Choice {
                percents: files.iter().map(|f| f.0).collect(),
                ..choice
            },
            ..Selection::default()
        };
        Store::load(&selection, Opening::Eager)
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

    const TEN: [&str; 10] = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"];

    /// The share of "a" in 20,000 picks.
    fn share_of_a(live: &Live) -> f64 {
        let picks = 20_000;
        let a = (0..picks)
            .filter(|_| text_of(&live.frame(Protocol::Qt, None).unwrap()) == "a")
            .count();
        let share = a as f64 / picks as f64;
        println!("share of A in {picks} picks: {share:.4}");
        share
    }

    #[test]
    fn percentages_share_the_picks() {
        // 80% A (1 fortune), 20% B (10): A repeats, its share comes first.
        let store = load_files(&[(Some(80), &["a"]), (Some(20), &TEN)], Choice::default()).unwrap();
        let a = share_of_a(&Live::new(store, false));
        assert!((a - 0.8).abs() < 0.02, "{a}");
        // 20% A, the rest to B.
        let store = load_files(&[(Some(20), &["a"]), (None, &TEN)], Choice::default()).unwrap();
        let a = share_of_a(&Live::new(store, false));
        assert!((a - 0.2).abs() < 0.02, "{a}");
        // An optional path missing: its share goes to the others.
        let store = load_files(&[(Some(50), &[]), (Some(50), &["a", "b"])], Choice::default()).unwrap();
        let a = share_of_a(&Live::new(store, false));
        assert!((a - 0.5).abs() < 0.02, "{a}");
    }

    #[test]
    fn equal_files_share_the_picks() {
        let equal = Choice {
            equal: true,
            ..Choice::default()
        };
        let store = load_files(&[(None, &["a"]), (None, &TEN)], equal.clone()).unwrap();
        let a = share_of_a(&Live::new(store, false));
        assert!((a - 0.5).abs() < 0.02, "{a}");
        // Without --equal, each entry: 1 in 11.
        let store = load_files(&[(None, &["a"]), (None, &TEN)], Choice::default()).unwrap();
        let a = share_of_a(&Live::new(store, false));
        assert!((a - 1.0 / 11.0).abs() < 0.02, "{a}");
    }

    #[test]
    fn short_and_long_fortunes() {
        let long = "l".repeat(200);
        let entries = ["s1", long.as_str(), "s2"];
        let short = Choice {
            length: Length::Short(160),
            ..Choice::default()
        };
        let live = Live::new(load_files(&[(None, &entries)], short.clone()).unwrap(), false);
        for _ in 0..50 {
            assert!(text_of(&live.frame(Protocol::Qt, None).unwrap()).starts_with('s'));
        }
        let live = Live::new(
            load_files(
                &[(None, &entries)],
                Choice {
                    length: Length::Long(160),
                    ..Choice::default()
                },
            )
            .unwrap(),
            false,
        );
        assert_eq!(text_of(&live.frame(Protocol::Qt, None).unwrap()), long);
        // --short-max counts the newline, as strfile does: "s1\n" is 3 bytes.
        let tiny = Choice {
            length: Length::Short(2),
            ..Choice::default()
        };
        let e = load_files(&[(None, &entries)], tiny).unwrap_err();
        assert!(matches!(
            e.problem,
            crate::fortunes::Problem::NoneOfLength(Length::Short(2))
        ));
        assert!(
            e.to_string().ends_with(
                " holds no fortune of at most 2 bytes (--short, --short-max); choose another length or path"
            ),
            "{e}"
        );
        // A path with a percentage and nothing short: an error naming it...
        let longs: [&str; 1] = [&long];
        let e = load_files(&[(Some(30), &longs), (None, &entries)], short.clone()).unwrap_err();
        assert!(
            e.to_string().contains("holds no fortune of at most 160 bytes"),
            "{e}"
        );
        // ...while a path without one only counts for what it has.
        assert!(load_files(&[(None, &longs), (None, &entries)], short.clone()).is_ok());
        // The short ones still fit a datagram, drawn from the same table.
        let live = Live::new(load_files(&[(None, &entries)], short).unwrap(), true);
        let day = live.frame(Protocol::Text, Some(wire::QOTD_MAX_DATAGRAM)).unwrap();
        assert!(day == b"s1\r\n" || day == b"s2\r\n", "{day:?}");
    }

    #[test]
    fn daily_composes_with_the_shares() {
        // 100% of the picks to B: the day's fortune is one of B's, all day.
        let store = load_files(&[(Some(100), &TEN)], Choice::default()).unwrap();
        let live = Live::new(store, true);
        let first = text_of(&live.frame(Protocol::Qt, None).unwrap());
        assert!(first.starts_with('b'), "{first}");
        for _ in 0..20 {
            assert_eq!(text_of(&live.frame(Protocol::Qt, None).unwrap()), first);
        }
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
}
