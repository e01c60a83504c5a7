//! Printing a fortune to a terminal: its control characters escaped, so a
//! server cannot move the cursor, retitle the window, clear the screen or
//! hide text with escape sequences (ESC, CSI and the other C0 and C1
//! controls, DEL). Only newlines and tabs are printed as they are. Output to
//! a pipe or a file is left untouched.

use std::borrow::Cow;

/// `text` with every control character but `\n` and `\t` written as `^X`
/// (C0 and DEL, as `cat -v` does) or `\u{XX}` (C1).
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !escaped(c) => out.push(c),
            '\u{7f}' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(c as u8 + 0x40));
            }
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

fn escaped(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            for_terminal("Hi.\n\tthere"),
            Cow::Borrowed("Hi.\n\tthere")
        ));
    }

    #[test]
    fn controls_are_escaped() {
        // Clear the screen, set the title, a CSI (C1) and a carriage return hiding text.
        assert_eq!(for_terminal("\u{1b}[2J"), "^[[2J");
        assert_eq!(for_terminal("\u{1b}]0;owned\u{7}"), "^[]0;owned^G");
        assert_eq!(for_terminal("a\u{9b}31mb"), "a\\u{9b}31mb");
        assert_eq!(for_terminal("safe\rrm -rf"), "safe^Mrm -rf");
        assert_eq!(for_terminal("\0\u{7f}"), "^@^?");
        assert_eq!(for_terminal("é\n日本"), "é\n日本");
    }
}
