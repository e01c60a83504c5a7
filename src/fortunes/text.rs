//! Fortune text as pure functions over bytes: splitting a whole file (when
//! it has no usable index), tidying one entry, undoing rot13.

use std::fmt;

/// Why a whole fortune file cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    NotUtf8 { line: usize },
    Empty,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::NotUtf8 { line } => {
                write!(
                    f,
                    "is not UTF-8 text (line {line}); convert it with iconv -t UTF-8"
                )
            }
            TextError::Empty => f.write_str("holds no fortunes"),
        }
    }
}

/// Splits a whole file: fortune-mod style when any line is exactly `%`
/// (entries may span lines), else one fortune per line. The whole file must
/// be UTF-8 (it is all read anyway, so the admin hears of it at start), and
/// hold at least one entry that is not blank.
pub fn parse(bytes: &[u8]) -> Result<Vec<String>, TextError> {
    let text = std::str::from_utf8(bytes).map_err(|e| TextError::NotUtf8 {
        line: 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let is_delimiter = |line: &str| line.trim_end_matches('\r') == "%";
    let entries: Vec<String> = if text.lines().any(is_delimiter) {
        let mut entries = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if is_delimiter(line) {
                entries.extend(tidy(&current));
                current.clear();
            } else {
                current.push_str(line);
                current.push('\n');
            }
        }
        entries.extend(tidy(&current));
        entries
    } else {
        text.lines().filter_map(tidy).collect()
    };
    if entries.is_empty() {
        return Err(TextError::Empty);
    }
    Ok(entries)
}

/// One entry as served: CRLF line ends (any CRs before the LF) become LF, trailing white space goes;
/// `None` if nothing but white space is left (an empty fortune makes the Qt
/// client loop).
pub fn tidy(entry: &str) -> Option<String> {
    let mut out = String::with_capacity(entry.len());
    for line in entry.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(body) => {
                out.push_str(body.trim_end_matches('\r'));
                out.push('\n');
            }
            None => out.push_str(line),
        }
    }
    out.truncate(out.trim_end().len());
    (!out.is_empty()).then_some(out)
}

/// rot13 of ASCII letters (fortune-mod's offensive files, `strfile -x`).
pub fn rot13(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='m' | 'A'..='M' => (c as u8 + 13) as char,
            'n'..='z' | 'N'..='Z' => (c as u8 - 13) as char,
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fortune_per_line() {
        assert_eq!(parse(b"a\n\nb \r\n  \nc").unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn percent_separated_entries_span_lines() {
        assert_eq!(
            parse(b"one\ntwo\n%\n%\nthree\n%\n").unwrap(),
            ["one\ntwo", "three"]
        );
        assert_eq!(parse(b"%\r\nx\r\ny\r\n%\r\n").unwrap(), ["x\ny"]);
        assert_eq!(parse(b"\xef\xbb\xbfa\n%\nb").unwrap(), ["a", "b"]);
    }

    #[test]
    fn a_percent_inside_a_line_is_text() {
        assert_eq!(parse(b"100% sure\n50 %\n").unwrap(), ["100% sure", "50 %"]);
    }

    #[test]
    fn leading_white_space_is_kept() {
        assert_eq!(parse(b"  indented\n%\n").unwrap(), ["  indented"]);
    }

    #[test]
    fn bad_files() {
        assert_eq!(parse(b"ok\n%\ncaf\xe9\n"), Err(TextError::NotUtf8 { line: 3 }));
        assert_eq!(parse(b""), Err(TextError::Empty));
        assert_eq!(parse(b"%\n \n%\r\n\n"), Err(TextError::Empty));
    }

    #[test]
    fn tidy_entries() {
        assert_eq!(tidy("a\r\nb\r\n\n"), Some("a\nb".to_string()));
        assert_eq!(tidy(" \n\t\n"), None);
        assert_eq!(tidy("x\ry"), Some("x\ry".to_string()));
    }

    #[test]
    fn fuzz_regression_carriage_returns_before_a_newline() {
        // fuzz/artifacts/text/crash-5f297b48f0a1547574b9e1669c5dceb2e0687cac
        assert_eq!(parse(b"%\n\n\r\r\r\r\n\n=").unwrap(), ["\n\n\n="]);
        assert_eq!(tidy("a\r\r\nb"), Some("a\nb".to_string()));
    }

    #[test]
    fn rot13_round_trips_letters_only() {
        assert_eq!(rot13("Uryyb, jbeyq! 42 é"), "Hello, world! 42 é");
        assert_eq!(rot13(&rot13("AZaz mn")), "AZaz mn");
    }
}
