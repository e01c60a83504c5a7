//! How the picks are shared out ([`Choice`]): the share of each named path,
//! each file equally likely (`--equal`, fortune's `-e`), only short or long
//! fortunes ([`Length`]: `--short`/`--long`/`--short-max`, fortune's
//! `-s`/`-l`/`-n`).

use std::fmt;

/// fortune-mod's default of `-n`: the longest fortune counted as short.
pub const SHORT_MAX: usize = 160;

/// Which fortunes may be served for their length, in bytes as strfile(1)
/// counts them: their lines with the newlines, not the `%` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Length {
    #[default]
    Any,
    /// At most this many bytes (`--short`, fortune's `-s`).
    Short(usize),
    /// More than this many bytes (`--long`, fortune's `-l`).
    Long(usize),
}

impl Length {
    pub fn keeps(self, len: usize) -> bool {
        match self {
            Length::Any => true,
            Length::Short(max) => len <= max,
            Length::Long(max) => len > max,
        }
    }
}

impl fmt::Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Length::Any => f.write_str("any length"),
            Length::Short(max) => write!(f, "at most {max} bytes (--short, --short-max)"),
            Length::Long(max) => write!(f, "more than {max} bytes (--long, --short-max)"),
        }
    }
}

/// How the picks are shared out, besides what is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// The share of each `--fortunes` path, in the order of the paths (a
    /// missing one: none).
    pub percents: Vec<Option<u8>>,
    /// Each file equally likely, then an entry in it (`--equal`).
    pub equal: bool,
    pub length: Length,
}

impl Choice {
    pub fn percent(&self, path: usize) -> Option<u8> {
        self.percents.get(path).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert!(Length::Any.keeps(10_000));
        assert!(Length::Short(160).keeps(160));
        assert!(!Length::Short(160).keeps(161));
        assert!(Length::Long(160).keeps(161));
        assert!(!Length::Long(160).keeps(160));
    }
}
