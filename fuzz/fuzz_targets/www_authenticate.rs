//! `WWW-Authenticate` challenges from a registry: parsing never panics, and
//! a bearer challenge printed back with quoted, escaped values parses to the
//! same challenge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_client::fuzz::{Challenge, parse_challenge};

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|header: &str| {
    let Some(challenge) = parse_challenge(header) else {
        return;
    };
    let Challenge::Bearer {
        realm,
        service,
        scope,
    } = &challenge
    else {
        return;
    };
    let mut printed = format!("Bearer realm={}", quoted(realm));
    for (key, value) in [("service", service), ("scope", scope)] {
        if let Some(v) = value {
            printed.push_str(&format!(",{key}={}", quoted(v)));
        }
    }
    assert_eq!(
        parse_challenge(&printed).as_ref(),
        Some(&challenge),
        "{header:?} -> {printed:?}"
    );
});
