//! The list cache parser on arbitrary bytes: no panic, only plain file names
//! with counts a strfile index can hold, and what it accepts reads back the
//! same after writing.
#![no_main]

use fortune_server::fortunes::lists::Lists;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(lists) = Lists::parse(data) {
        for dir in &lists.dirs {
            assert!(!dir.files.is_empty());
            for (name, count) in &dir.files {
                assert!(!name.is_empty() && !name.contains('/') && !name.starts_with('.'));
                assert!(*count > 0 && *count <= u32::MAX as usize);
            }
        }
        let bytes = lists.to_bytes().expect("parsed names hold no newline");
        assert_eq!(Lists::parse(&bytes), Some(lists));
    }
});
