//! fortune-mod's ways of choosing and the table a pick draws from (pure).
//!
//! [`named`]: a share of the picks per named path (`30% PATH`, parsed by
//! [`parse_named`], checked by [`check_shares`]); [`choice`]: how the picks
//! are shared out ([`Choice`]: the shares, each file equally likely with
//! `--equal`, fortune's `-e`, only short or long fortunes with
//! `--short`/`--long`/`--short-max`, fortune's `-s`/`-l`/`-n`); [`table`]:
//! the [`Table`] a pick draws from, built once per collection; [`draw`]:
//! what a pick draws from ([`Draw`]) and the weighted draw over the table's
//! blocks (Vose's alias method), so a pick is O(1), without allocating.
//! `table` uses `draw`; the others use none of them.

pub mod choice;
pub mod draw;
pub mod named;
pub mod table;

pub use choice::{Choice, Length, SHORT_MAX};
pub use draw::Draw;
pub use named::{Named, check_shares, parse_named};
pub use table::{Empty, Group, Table};
