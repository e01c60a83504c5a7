//! fortune-mod's ways of choosing ([`Choice`]): a share of the picks per
//! named path (`30% PATH`, parsed by [`parse_named`], checked by
//! [`check_shares`]), each file equally likely (`--equal`, fortune's `-e`),
//! only short or long fortunes (`--short`/`--long`/`--short-max`, fortune's
//! `-s`/`-l`/`-n`); and the [`Table`] a pick draws from.
//!
//! A table is built once per collection (at load and reload, and once more
//! for UDP's bound): blocks of entries, each with its weight. A pick is one
//! draw from an alias table over the blocks (Vose's method: a column, then a
//! coin), then one uniform draw within the block: O(1), no allocation.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// fortune-mod's default of `-n`: the longest fortune counted as short.
pub const SHORT_MAX: usize = 160;

/// One `--fortunes` value: a path, with the share of the picks it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub percent: Option<u8>,
    /// As written, with its leading `-` when optional.
    pub path: PathBuf,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.percent {
            write!(f, "{p}% ")?;
        }
        write!(f, "{}", self.path.display())
    }
}

/// Parses a `--fortunes` value as fortune-mod reads its arguments: `N%`
/// before the path gives it N percent of the picks (`30% PATH` or
/// `30%PATH`); digits not followed by `%` are part of the path.
pub fn parse_named(value: &str) -> Result<Named, String> {
    let digits = value.len() - value.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let after = &value[digits..];
    let fraction = after.strip_prefix('.').map(|f| {
        let rest = f.trim_start_matches(|c: char| c.is_ascii_digit());
        rest.starts_with('%')
    });
    if digits > 0 && fraction == Some(true) {
        return Err("percentages must be whole numbers, as in '30% PATH'".into());
    }
    let Some(rest) = after.strip_prefix('%').filter(|_| digits > 0) else {
        return Ok(Named {
            percent: None,
            path: PathBuf::from(value),
        });
    };
    let percent = match value[..digits].parse::<u8>() {
        Ok(p @ 1..=100) => p,
        _ => return Err("a percentage must be from 1 to 100".into()),
    };
    let path = rest.trim_start_matches([' ', '\t']);
    if path.is_empty() {
        return Err("a percentage must be followed by its path in the same value, as in '30% PATH'".into());
    }
    Ok(Named {
        percent: Some(percent),
        path: PathBuf::from(path),
    })
}

/// fortune-mod's rules for the percentages of all values together: at most
/// 100 in all; below 100, some path without one takes the rest; at 100, no
/// path is left without one. The error names the values.
pub fn check_shares(named: &[Named]) -> Result<(), String> {
    let shared: Vec<String> = named
        .iter()
        .filter(|n| n.percent.is_some())
        .map(Named::to_string)
        .collect();
    if shared.is_empty() {
        return Ok(());
    }
    let sum: u32 = named.iter().filter_map(|n| n.percent).map(u32::from).sum();
    let rest: Vec<String> = named
        .iter()
        .filter(|n| n.percent.is_none())
        .map(|n| n.path.display().to_string())
        .collect();
    let listed = shared.join(", ");
    if sum > 100 {
        Err(format!(
            "--fortunes: the percentages add up to {sum}% ({listed}), more than 100%"
        ))
    } else if sum < 100 && rest.is_empty() {
        Err(format!(
            "--fortunes: the percentages add up to {sum}% ({listed}) and no path without a percentage takes the other {}%",
            100 - sum
        ))
    } else if sum == 100 && !rest.is_empty() {
        Err(format!(
            "--fortunes: the percentages add up to 100% ({listed}), leaving nothing for {}",
            rest.join(", ")
        ))
    } else {
        Ok(())
    }
}

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

/// The files (their numbers in the store) one named path brought, and its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub files: Range<usize>,
    pub percent: Option<u8>,
}

/// Why no table could be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// The group (its position) with a percentage has no entry to serve.
    Group(usize),
    /// No entry of the whole collection can be served.
    All,
}

/// What a pick draws from: random numbers, or the day's (`--daily`).
pub trait Draw {
    /// Uniform in `0..n`; 0 when `n` is 0.
    fn below(&mut self, n: usize) -> usize;
    /// Uniform over all `u32`.
    fn coin(&mut self) -> u32;
}

impl Draw for rand::rngs::ThreadRng {
    fn below(&mut self, n: usize) -> usize {
        rand::RngExt::random_range(self, 0..n.max(1))
    }

    fn coin(&mut self) -> u32 {
        rand::RngExt::random(self)
    }
}

/// The entries a pick may give and their weights: built once, drawn from
/// in O(1) without allocating.
#[derive(Debug, Clone)]
pub struct Table {
    blocks: Box<[Block]>,
    alias: Alias,
    /// The entries that may be served, ascending; `None`: all of `0..len`.
    entries: Option<Box<[u32]>>,
    len: usize,
}

/// Entries drawn uniformly once the block is chosen: `start..start + len`
/// of [`Table::entries`] (or of the entry numbers).
#[derive(Debug, Clone, Copy)]
struct Block {
    start: usize,
    len: usize,
}

impl Table {
    /// Every entry of `0..len` equally likely (the built-in fortunes).
    pub fn uniform(len: usize) -> Table {
        Table {
            blocks: Box::new([Block { start: 0, len }]),
            alias: Alias::new(&[1.0]),
            entries: None,
            len,
        }
    }

    /// The table of a collection whose file `f` holds `counts[f]` entries,
    /// numbered across files in order, brought by `groups` (ascending,
    /// together every file). `keep(n)`: whether entry `n` may be served
    /// (`None`: all). A group with a percentage gets that share; the rest is
    /// shared by the groups without one, in proportion to their entries, or
    /// with `equal` by their files; with `equal` each file of a group gets
    /// the same part of its share. Groups left out (optional paths) leave
    /// their share to the others, in proportion.
    pub fn build(
        groups: &[Group],
        counts: &[usize],
        equal: bool,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Result<Table, Empty> {
        // Each file's first entry number, and where its kept entries start.
        let mut entries: Option<Vec<u32>> = keep.map(|_| Vec::new());
        let mut first = 0;
        // (position, kept) per file.
        let mut files = Vec::with_capacity(counts.len());
        for &count in counts {
            match (&mut entries, keep) {
                (Some(list), Some(keep)) => {
                    let at = list.len();
                    let numbers = (first..first + count).filter(|&n| keep(n));
                    list.extend(numbers.filter_map(|n| u32::try_from(n).ok()));
                    files.push((at, list.len() - at));
                }
                _ => files.push((first, count)),
            }
            first += count;
        }
        let kept = |g: &Group| -> usize { files[g.files.clone()].iter().map(|f| f.1).sum() };
        let filled = |g: &Group| files[g.files.clone()].iter().filter(|f| f.1 > 0).count();
        if let Some(g) = groups.iter().position(|g| g.percent.is_some() && kept(g) == 0) {
            return Err(Empty::Group(g));
        }
        let named: f64 = groups.iter().filter_map(|g| g.percent).map(f64::from).sum();
        let residual = (100.0 - named).max(0.0);
        let unnamed = groups.iter().filter(|g| g.percent.is_none());
        let (rest_entries, rest_files) = unnamed.fold((0, 0), |(e, f), g| (e + kept(g), f + filled(g)));
        let mut blocks: Vec<Block> = Vec::new();
        let mut weights: Vec<f64> = Vec::new();
        // Whether the last block is of groups without a percentage, so the
        // next such group joins it (without any: one block of all entries,
        // as fortune itself draws).
        let mut open = false;
        for g in groups {
            let share = match g.percent {
                Some(p) => f64::from(p),
                None => residual,
            };
            if equal {
                let parts = match g.percent {
                    Some(_) => filled(g),
                    None => rest_files,
                };
                for &(start, len) in files[g.files.clone()].iter().filter(|f| f.1 > 0) {
                    blocks.push(Block { start, len });
                    weights.push(share / parts as f64);
                }
                continue;
            }
            let len = kept(g);
            if len == 0 {
                continue;
            }
            let start = files[g.files.start].0;
            let weight = match g.percent {
                Some(_) => share,
                None => share * len as f64 / rest_entries as f64,
            };
            match blocks.last_mut() {
                Some(last) if open && g.percent.is_none() && last.start + last.len == start => {
                    last.len += len;
                    if let Some(w) = weights.last_mut() {
                        *w += weight;
                    }
                }
                _ => {
                    blocks.push(Block { start, len });
                    weights.push(weight);
                }
            }
            open = g.percent.is_none();
        }
        let len = blocks.iter().map(|b| b.len).sum();
        if len == 0 || weights.iter().all(|&w| w <= 0.0) {
            return Err(Empty::All);
        }
        Ok(Table {
            blocks: blocks.into(),
            alias: Alias::new(&weights),
            entries: entries.map(Vec::into_boxed_slice),
            len,
        })
    }

    /// How many entries a pick may give.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An entry number: the block by its weight, then an entry of it, not
    /// `previous` when the block has another (a block of one entry, e.g. a
    /// file of one fortune given a percentage, repeats: its share comes first).
    pub fn pick(&self, draw: &mut impl Draw, previous: Option<usize>) -> usize {
        let block = self.blocks[self.alias.column(draw)];
        let at = |i: usize| match &self.entries {
            Some(entries) => entries[block.start + i] as usize,
            None => block.start + i,
        };
        let mut i = draw.below(block.len);
        if block.len > 1 && previous == Some(at(i)) {
            // Uniform over the others.
            i = (i + 1 + draw.below(block.len - 1)) % block.len;
        }
        at(i)
    }
}

/// Vose's alias table: column `c` is itself with probability
/// `threshold[c] / 2^32`, else `alias[c]`.
#[derive(Debug, Clone)]
struct Alias {
    threshold: Box<[u32]>,
    alias: Box<[u32]>,
}

impl Alias {
    /// For `weights` (not all zero), in any scale.
    fn new(weights: &[f64]) -> Alias {
        let k = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * k as f64 / total).collect();
        let mut threshold = vec![u32::MAX; k];
        let mut alias: Vec<u32> = (0..k as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..k).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            threshold[s] = (scaled[s] * 4_294_967_296.0) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding: always itself.
        Alias {
            threshold: threshold.into(),
            alias: alias.into(),
        }
    }

    fn column(&self, draw: &mut impl Draw) -> usize {
        let k = self.threshold.len();
        if k <= 1 {
            return 0;
        }
        let c = draw.below(k);
        if draw.coin() < self.threshold[c] {
            c
        } else {
            self.alias[c] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(percent: Option<u8>, path: &str) -> Named {
        Named {
            percent,
            path: path.into(),
        }
    }

    #[test]
    fn values_parse_as_fortune_mod_reads_them() {
        assert_eq!(parse_named("30% /a b"), Ok(named(Some(30), "/a b")));
        assert_eq!(parse_named("30%/a"), Ok(named(Some(30), "/a")));
        assert_eq!(parse_named("100%\t-/opt/f"), Ok(named(Some(100), "-/opt/f")));
        assert_eq!(parse_named("/a"), Ok(named(None, "/a")));
        assert_eq!(parse_named("-/a"), Ok(named(None, "-/a")));
        // Digits not followed by % start a name.
        assert_eq!(parse_named("2024-quotes"), Ok(named(None, "2024-quotes")));
        assert_eq!(parse_named("1.5-quotes"), Ok(named(None, "1.5-quotes")));
        assert_eq!(parse_named("%a"), Ok(named(None, "%a")));
        let whole = Err("percentages must be whole numbers, as in '30% PATH'".to_string());
        assert_eq!(parse_named("30.5% /a"), whole);
        assert_eq!(parse_named("30.% /a"), whole);
        let range = Err("a percentage must be from 1 to 100".to_string());
        assert_eq!(parse_named("101% /a"), range);
        assert_eq!(parse_named("0% /a"), range);
        assert_eq!(parse_named("99999999999% /a"), range);
        let alone =
            Err("a percentage must be followed by its path in the same value, as in '30% PATH'".to_string());
        assert_eq!(parse_named("30%"), alone);
        assert_eq!(parse_named("30%  "), alone);
        assert_eq!(named(Some(30), "/a").to_string(), "30% /a");
    }

    #[test]
    fn shares_follow_fortune_mods_rules() {
        let ok = |v: &[Named]| check_shares(v);
        assert_eq!(ok(&[named(None, "/a"), named(None, "/b")]), Ok(()));
        assert_eq!(ok(&[named(Some(80), "/a"), named(Some(20), "/b")]), Ok(()));
        assert_eq!(ok(&[named(Some(30), "/a"), named(None, "/b")]), Ok(()));
        assert_eq!(
            ok(&[named(Some(80), "/a"), named(Some(40), "-/b")]),
            Err("--fortunes: the percentages add up to 120% (80% /a, 40% -/b), more than 100%".into())
        );
        assert_eq!(
            ok(&[named(Some(30), "/a"), named(Some(20), "/b")]),
            Err("--fortunes: the percentages add up to 50% (30% /a, 20% /b) and no path without a percentage takes the other 50%".into())
        );
        assert_eq!(
            ok(&[named(Some(100), "/a"), named(None, "/b"), named(None, "/c")]),
            Err("--fortunes: the percentages add up to 100% (100% /a), leaving nothing for /b, /c".into())
        );
    }

    #[test]
    fn lengths() {
        assert!(Length::Any.keeps(10_000));
        assert!(Length::Short(160).keeps(160));
        assert!(!Length::Short(160).keeps(161));
        assert!(Length::Long(160).keeps(161));
        assert!(!Length::Long(160).keeps(160));
    }

    /// The probability of each column of an alias table.
    fn odds(alias: &Alias) -> Vec<f64> {
        let k = alias.threshold.len();
        let mut p = vec![0.0; k];
        for c in 0..k {
            let stay = f64::from(alias.threshold[c]) / 4_294_967_296.0;
            p[c] += stay / k as f64;
            p[alias.alias[c] as usize] += (1.0 - stay) / k as f64;
        }
        p
    }

    #[test]
    fn alias_tables_give_the_weights() {
        for weights in [
            vec![1.0],
            vec![80.0, 20.0],
            vec![1.0, 2.0, 3.0, 4.0],
            vec![0.0, 5.0, 0.0, 5.0],
        ] {
            let total: f64 = weights.iter().sum();
            let got = odds(&Alias::new(&weights));
            for (g, w) in got.iter().zip(&weights) {
                assert!((g - w / total).abs() < 1e-6, "{weights:?}: {got:?}");
            }
        }
    }

    /// Each block's weight as a probability, and its entries.
    fn shape(table: &Table) -> Vec<(f64, Vec<usize>)> {
        let p = odds(&table.alias);
        table
            .blocks
            .iter()
            .zip(p)
            .map(|(b, p)| {
                let entries = (b.start..b.start + b.len)
                    .map(|i| table.entries.as_ref().map_or(i, |e| e[i] as usize))
                    .collect();
                ((p * 1e6).round() / 1e6, entries)
            })
            .collect()
    }

    fn group(files: Range<usize>, percent: Option<u8>) -> Group {
        Group { files, percent }
    }

    #[test]
    fn without_a_choice_one_block_of_all_entries() {
        let groups = [group(0..2, None), group(2..3, None)];
        let table = Table::build(&groups, &[1, 2, 3], false, None).unwrap();
        assert_eq!(shape(&table), [(1.0, vec![0, 1, 2, 3, 4, 5])]);
        assert_eq!(table.len(), 6);
    }

    #[test]
    fn percentages_then_the_rest_by_entries() {
        // 30% of one file (3 entries), the rest to two paths by their entries.
        let groups = [group(0..1, None), group(1..2, Some(30)), group(2..4, None)];
        let table = Table::build(&groups, &[1, 3, 2, 4], false, None).unwrap();
        assert_eq!(
            shape(&table),
            [
                (0.1, vec![0]),
                (0.3, vec![1, 2, 3]),
                (0.6, vec![4, 5, 6, 7, 8, 9])
            ]
        );
    }

    #[test]
    fn equal_files_within_each_share() {
        let groups = [group(0..2, Some(40)), group(2..4, None)];
        let table = Table::build(&groups, &[1, 9, 2, 3], true, None).unwrap();
        assert_eq!(
            shape(&table),
            [
                (0.2, vec![0]),
                (0.2, (1..10).collect()),
                (0.3, vec![10, 11]),
                (0.3, vec![12, 13, 14])
            ]
        );
    }

    #[test]
    fn kept_entries_only_and_empty_shares() {
        let even = |n: usize| n % 2 == 0 && n != 4;
        let groups = [group(0..1, Some(50)), group(1..3, None)];
        // File 1 keeps nothing: it counts for nothing, with --equal too.
        let table = Table::build(&groups, &[4, 1, 3], true, Some(&even)).unwrap();
        assert_eq!(shape(&table), [(0.5, vec![0, 2]), (0.5, vec![6])]);
        // The group with a percentage keeps nothing: an error naming it.
        let odd = |n: usize| n % 2 == 1 && n > 4;
        assert_eq!(
            Table::build(&groups, &[4, 1, 3], false, Some(&odd)).unwrap_err(),
            Empty::Group(0)
        );
        let none = |_: usize| false;
        let rest = [group(0..3, None)];
        assert_eq!(
            Table::build(&rest, &[4, 1, 3], false, Some(&none)).unwrap_err(),
            Empty::All
        );
        // An optional path left out: the others share all.
        let left = [group(0..1, Some(80))];
        assert_eq!(
            shape(&Table::build(&left, &[2], false, None).unwrap()),
            [(1.0, vec![0, 1])]
        );
    }

    /// Fixed draws, cycling.
    struct Fixed(Vec<usize>, usize);

    impl Draw for Fixed {
        fn below(&mut self, n: usize) -> usize {
            self.1 += 1;
            self.0[(self.1 - 1) % self.0.len()] % n
        }
        fn coin(&mut self) -> u32 {
            0
        }
    }

    #[test]
    fn a_pick_avoids_the_previous_within_its_block() {
        let table = Table::uniform(3);
        assert_eq!(table.pick(&mut Fixed(vec![1], 0), None), 1);
        // Drew 1, the previous: moves on by 1 + 1.
        assert_eq!(table.pick(&mut Fixed(vec![1, 1], 0), Some(1)), 0);
        assert_eq!(Table::uniform(1).pick(&mut Fixed(vec![0], 0), Some(0)), 0);
    }

    #[test]
    fn shares_of_twenty_thousand_picks() {
        // 80% A (1 entry), 20% B (10 entries); then equally likely files.
        let share_of_a = |groups: &[Group], equal: bool| {
            let table = Table::build(groups, &[1, 10], equal, None).unwrap();
            let mut rng = rand::rng();
            let mut previous = None;
            let a = (0..20_000)
                .filter(|_| {
                    let n = table.pick(&mut rng, previous);
                    previous = Some(n);
                    n == 0
                })
                .count();
            a as f64 / 20_000.0
        };
        let a = share_of_a(&[group(0..1, Some(80)), group(1..2, Some(20))], false);
        assert!((a - 0.8).abs() < 0.02, "{a}");
        let a = share_of_a(&[group(0..1, None), group(1..2, None)], true);
        assert!((a - 0.5).abs() < 0.02, "{a}");
        let a = share_of_a(&[group(0..1, None), group(1..2, None)], false);
        assert!((a - 1.0 / 11.0).abs() < 0.02, "{a}");
    }
}
