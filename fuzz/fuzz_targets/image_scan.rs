//! image-scan's parsers of untrusted image content: dpkg status, apk
//! installed, Python metadata, os-release, and the layer walk over
//! arbitrary tar bytes. Never panics; whatever is accepted makes purls
//! and SBOMs that are valid JSON.
#![no_main]

use image_scan::{
    Format, ImageInfo, Limits, Scanner, parse_apk_installed, parse_dpkg_status, parse_os_release,
    parse_python_metadata, purl, sbom,
};
use libfuzzer_sys::fuzz_target;
use oci_model::Digest;

fuzz_target!(|data: &[u8]| {
    for p in parse_dpkg_status(data).unwrap().records {
        assert!(!p.name.is_empty() && !p.version.contains(char::is_whitespace));
    }
    let _ = parse_apk_installed(data).unwrap();
    let _ = parse_python_metadata(data).unwrap();
    let _ = parse_os_release(data).unwrap();

    let layer = Digest::of(data);
    let mut scanner = Scanner::new(Limits::default());
    // An unreadable tar is an error, never a panic.
    let _ = scanner.scan_layer(data, &layer);
    let mut inventory = scanner.finish();
    for p in &inventory.packages {
        let u = purl(p, inventory.distro.as_ref());
        assert!(u.starts_with("pkg:") && !u.contains(char::is_whitespace), "{u}");
    }
    inventory.image = Some(ImageInfo {
        name: "fuzz/image".into(),
        tag: None,
        digest: layer,
        architecture: "amd64".into(),
        os: "linux".into(),
    });
    for format in [Format::Spdx, Format::CycloneDx] {
        let doc = sbom(&inventory, format, 0).unwrap();
        serde_json::from_slice::<serde_json::Value>(&doc).unwrap();
    }
});
