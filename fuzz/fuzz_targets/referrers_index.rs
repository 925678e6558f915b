//! `oci_model::parse_referrers` on arbitrary bytes (a referrers API answer
//! or a fallback tag's index): never panics, lists at most
//! `MAX_REFERRERS` distinct digests, and what it reads survives writing it
//! back as a fallback index.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_model::{MAX_REFERRERS, parse_referrers, referrers_index};

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = parse_referrers(data) {
        assert!(list.len() <= MAX_REFERRERS);
        let again = parse_referrers(&referrers_index(&list)).expect("a written index parses");
        assert_eq!(again, list);
    }
});
