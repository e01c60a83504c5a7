//! The PROXY protocol header parser on arbitrary bytes: no panic; a header
//! it accepts lies within the bytes and the size limit, and reads the same
//! from exactly its own bytes; every shorter beginning of it asks for more
//! (what reading it a piece at a time relies on); it never asks for more
//! past the size limit.
#![no_main]

use fortune_server::proxy::{MAX_HEADER, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some(header)) => {
            assert!(header.len <= data.len() && header.len <= MAX_HEADER);
            assert_eq!(parse(&data[..header.len]), Ok(Some(header)));
            for n in 1..header.len {
                assert_eq!(parse(&data[..n]), Ok(None), "{n} of {} bytes", header.len);
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER),
        Err(_) => {}
    }
});
