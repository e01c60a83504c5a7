//! The fortunes: the built-in Qt seven or fortune-mod collections.
//!
//! [`builtin`]: the seven Qt fortunes (BSD-3-Clause, as Qt's example);
//! [`load`]: what the admin named ([`Selection`], [`Opening`]), listed and
//! opened; [`member`]: one fortune file of a collection and the rule that
//! decides whether a directory member is served; [`disk`]: reading files and
//! their indexes safely; [`limits`]: the caps on what a file or a collection
//! may hold; [`store`]: a loaded collection, entry `n` of it; [`live`]: the
//! collection being served, swapped on reload, and the pick; [`select`]:
//! fortune-mod's ways of choosing (percentages, `--equal`, `--short`/`--long`)
//! and the table a pick draws from; [`error`]: why a load or an entry fails;
//! [`strfile`] and [`text`]: the pure parsers; [`daily`]: the quote of the
//! day; [`lists`]: the directory lists cached for one-connection processes.
//!
//! Which may use which (no circle): `load` → `store` → `member` → `disk` →
//! `limits`, `error`, `strfile`, `text`; `live` → `store`, `daily`; `store`,
//! `load`, `error`, `daily` → `select`; `lists`, `select`, `strfile`, `text`,
//! `builtin` use none of them.

pub mod builtin;
pub mod daily;
pub mod disk;
pub mod error;
pub mod limits;
pub mod lists;
pub mod live;
pub mod load;
pub mod member;
pub mod select;
pub mod store;
pub mod strfile;
pub mod text;

#[cfg(test)]
mod fixture;

pub use builtin::BUILTIN;
pub use error::{EntryError, LoadError, Problem};
pub use limits::{MAX_ENTRY, MAX_INDEX, MAX_WHOLE_FILE};
pub use live::Live;
pub use load::{Opening, Selection};
pub use select::{Choice, Length};
pub use store::Store;
