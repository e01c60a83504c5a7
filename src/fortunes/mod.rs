//! The fortunes: the built-in Qt seven or fortune-mod collections.
//!
//! [`builtin`]: the seven Qt fortunes (BSD-3-Clause, as Qt's example);
//! [`load`]: what the admin named, listed and opened ([`Selection`],
//! [`Opening`], [`LoadError`]); [`disk`]: reading files and their indexes
//! safely, within documented caps; [`store`]: a loaded collection, entry `n`
//! of it; [`live`]: the collection being served, swapped on reload, and the
//! pick; [`strfile`] and [`text`]: the pure parsers; [`daily`]: the quote of
//! the day; [`lists`]: the directory lists cached for one-connection processes.

pub mod builtin;
pub mod daily;
pub mod disk;
pub mod lists;
pub mod live;
pub mod load;
pub mod store;
pub mod strfile;
pub mod text;

pub use builtin::BUILTIN;
pub use disk::{EntryError, MAX_ENTRY, MAX_INDEX, MAX_WHOLE_FILE};
pub use live::Live;
pub use load::{LoadError, Opening, Problem, Selection};
pub use store::Store;
