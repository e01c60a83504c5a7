//! The whole-file fortune parser on arbitrary bytes: no panic; every entry
//! it returns is servable (not blank, no trailing white space, no CR before LF).
#![no_main]

use fortune_server::fortunes::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = text::parse(data) {
        assert!(!entries.is_empty());
        for entry in entries {
            assert!(!entry.trim().is_empty());
            assert_eq!(entry.trim_end(), entry);
            assert!(!entry.contains("\r\n"));
            assert_eq!(text::rot13(&text::rot13(&entry)), entry);
        }
    }
});
