//! What the unit tests of `fortunes` share: the strfile fixture, scratch
//! directories that remove themselves (the integration tests' own helper,
//! included by path: one copy) and a store's entries.

#[path = "../../tests/util/scratch.rs"]
mod scratch;
pub use scratch::Scratch;

use super::store::Store;

/// The fortune file [`DAT`] indexes.
pub const TEXT: &[u8] = b"a\n%\nbc\n%\n";

/// What Debian's strfile wrote for "a\n%\nbc\n%\n" (checked with xxd).
pub const DAT: [u8; 36] = [
    0, 0, 0, 2, // version
    0, 0, 0, 2, // 2 entries
    0, 0, 0, 3, // longest: "bc\n"
    0, 0, 0, 2, // shortest: "a\n"
    0, 0, 0, 0, // flags
    b'%', 0, 0, 0, // delimiter, pad
    0, 0, 0, 0, // entry 0
    0, 0, 0, 4, // entry 1
    0, 0, 0, 9, // end of file
];

/// [`DAT`] with its flags word set to `flags` (4: rot13).
pub fn dat(flags: u8) -> Vec<u8> {
    let mut dat = DAT.to_vec();
    dat[19] = flags;
    dat
}

/// Every entry of `store`, in order.
pub fn entries(store: &Store) -> Vec<String> {
    (0..store.len())
        .map(|n| store.entry(n).unwrap().into_owned())
        .collect()
}
