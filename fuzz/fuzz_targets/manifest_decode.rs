//! `Manifest::from_bytes` on arbitrary bytes: never panics, the digest is
//! that of the bytes, and parsing is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_model::{Digest, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_bytes(data.to_vec(), None) {
        assert_eq!(m.digest(), &Digest::of(data));
        let again = Manifest::from_bytes(data.to_vec(), None).expect("parsed once, parses again");
        assert_eq!(again.children(), m.children());
        assert_eq!(again.media_type(), m.media_type());
    }
});
