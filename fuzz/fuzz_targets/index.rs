//! The strfile index parser, the table cut into entries and the entry
//! cutter on arbitrary bytes: no panic, and what they accept is consistent.
#![no_main]

use fortune_server::fortunes::strfile::{self, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    if let Ok(header) = Header::parse(rest) {
        assert!(header.count > 0 && header.shortest <= header.longest);
        let index_len = rest.len() as u64;
        let data_len = u64::from(knobs) * 1000;
        let last = rest
            .get(24..28)
            .map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
        if header.check(index_len, data_len, last).is_ok() {
            assert_eq!(Header::count_from_len(index_len), Some(header.count as usize));
            assert!(u64::from(header.longest) <= data_len);
        }
        // The table, whatever the checks said: spans never panic, and what
        // they keep lies in the file, within the limit.
        let max = u32::from(knobs) * 7;
        if let Ok(spans) = strfile::spans(&header, &rest[strfile::HEADER_LEN..], data_len, max) {
            assert!(spans.kept.len() + spans.long <= header.count as usize);
            // Each entry once.
            let mut starts: Vec<u32> = spans.kept.iter().map(|s| s.start).collect();
            starts.sort_unstable();
            assert!(starts.windows(2).all(|w| w[0] < w[1]));
            for span in &spans.kept {
                assert!(span.start < span.end, "no empty entry");
                assert!(u64::from(span.end) <= data_len);
                assert!(span.end - span.start <= max.saturating_add(3));
                let (from, to) = span.window();
                assert!(from <= to && to - from <= u64::from(max) + 4);
            }
        }
    }
    let (at_start, at_end, delimiter) = (
        knobs & 1 != 0,
        knobs & 2 != 0,
        if knobs & 4 != 0 { b'%' } else { b'#' },
    );
    if let Ok(entry) = strfile::entry(rest, at_start, at_end, delimiter) {
        let body = if at_start { rest } else { &rest[1..] };
        assert!(body.starts_with(entry));
        assert!(entry.len() == body.len() || body[entry.len()..].starts_with(&[delimiter, b'\n']));
    }
});
