//! `Reference::parse` on arbitrary text: never panics, and what parses
//! prints back to an equal reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_model::Reference;

fuzz_target!(|input: &str| {
    if let Ok(r) = Reference::parse(input) {
        let printed = r.to_string();
        let again = Reference::parse(&printed)
            .unwrap_or_else(|e| panic!("{input:?} parsed, its display {printed:?} did not: {e}"));
        assert_eq!(again, r, "{input:?} -> {printed:?}");
    }
});
