//! The `--fortunes` values as fortune-mod reads its arguments: a path with
//! the share of the picks it gets ([`Named`], `30% PATH`, parsed by
//! [`parse_named`]), and fortune-mod's rules for the shares of all values
//! together ([`check_shares`]).

use std::fmt;
use std::path::PathBuf;

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
}
