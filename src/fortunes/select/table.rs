//! The [`Table`] a pick draws from: built once per collection (at load and
//! reload, and once more for UDP's bound) from the files each named path
//! brought ([`Group`]) and the entries kept, as blocks of entries, each with
//! its weight. A pick is one weighted draw of a block, then one uniform draw
//! within it: O(1), no allocation.

use std::ops::Range;

use super::draw::{Alias, Draw};

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each block's weight as a probability, and its entries.
    fn shape(table: &Table) -> Vec<(f64, Vec<usize>)> {
        let p = table.alias.odds();
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
