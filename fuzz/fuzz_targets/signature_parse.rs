//! image-sign's parsers of untrusted bytes: key files (the private key's
//! PEM and encrypted envelope, without running scrypt; the public key),
//! simple-signing payloads and `.sig` manifests. Never panic; an accepted
//! payload re-encodes to bytes that parse to the same payload.
#![no_main]

use image_sign::{Payload, PublicKey, parse_private_pem, parse_signature_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_private_pem(data);
    let _ = PublicKey::from_pem(data);
    if let Ok(p) = Payload::parse(data) {
        assert_eq!(Payload::parse(&p.to_bytes()).expect("re-parse"), p);
    }
    if let Ok(layers) = parse_signature_manifest(data) {
        for l in layers {
            assert_eq!(l.payload.media_type, image_sign::PAYLOAD_MEDIA_TYPE);
        }
    }
});
