//! The fortunes: the built-in Qt seven or fortune-mod collections.
//!
//! [`load`]: what the admin named, listed and opened ([`Selection`],
//! [`Opening`], [`LoadError`]); [`disk`]: reading files and their indexes
//! safely, within documented caps; [`store`]: a loaded collection, entry `n`
//! of it; [`live`]: the collection being served, swapped on reload, and the
//! pick; [`select`]: fortune-mod's ways of choosing (percentages, `--equal`,
//! `--short`/`--long`) and the table a pick draws from; [`strfile`] and
//! [`text`]: the pure parsers; [`daily`]: the quote of the day; [`lists`]:
//! the directory lists cached for one-connection processes.

pub mod daily;
pub mod disk;
pub mod lists;
pub mod live;
pub mod load;
pub mod select;
pub mod store;
pub mod strfile;
pub mod text;

pub use disk::{EntryError, MAX_ENTRY, MAX_INDEX, MAX_WHOLE_FILE};
pub use live::Live;
pub use load::{LoadError, Opening, Problem, Selection};
pub use select::{Choice, Length};
pub use store::Store;

/// The seven fortunes of Qt's Threaded Fortune Server example, verbatim.
pub const BUILTIN: [&str; 7] = [
    "You've been leading a dog's life. Stay off the furniture.",
    "You've got to think about tomorrow.",
    "You will be surprised by a loud noise.",
    "You will feel hungry again in another hour.",
    "You might have mail.",
    "You cannot kill time without injuring eternity.",
    "Computers are not intelligent. They only think they are.",
];
