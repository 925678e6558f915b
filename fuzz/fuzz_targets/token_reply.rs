//! Token service replies: parsing never panics; an accepted reply has a
//! non-empty, printable ASCII token and a lifetime between one second and
//! the cap, whatever `expires_in` held. The input is tried as a whole reply
//! and as the `expires_in` value of an otherwise good one.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use registry_client::fuzz::{MAX_TOKEN_LIFETIME, parse_token_reply};

fn check(body: &[u8]) {
    if let Ok((token, lifetime)) = parse_token_reply(body) {
        assert!(!token.is_empty());
        assert!(token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
        assert!(
            (Duration::from_secs(1)..=MAX_TOKEN_LIFETIME).contains(&lifetime),
            "{lifetime:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&[&br#"{"token":"t","expires_in":"#[..], data, b"}"].concat());
});
