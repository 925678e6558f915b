//! debian-base's parsers on arbitrary bytes: deb822 paragraphs (as a
//! `Packages` index), relation fields, version comparison and the `.deb`
//! reader. Never panics; versions order consistently; an unpack either
//! fails leaving nothing or stays inside its directory.
#![no_main]

use std::cmp::Ordering;

use debian_base::{DebLimits, Index, Paragraphs, compare_versions, parse_relations, unpack_deb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for p in Paragraphs::new(data).flatten() {
        for (name, value) in &p.fields {
            assert!(!name.is_empty() && !name.contains(':'), "{name:?}");
            let _ = parse_relations(value);
        }
    }
    let mut index = Index::new("amd64");
    let _ = index.add(data, "fuzz");

    let text = String::from_utf8_lossy(data);
    let mut words = text.split_whitespace();
    if let (Some(a), Some(b)) = (words.next(), words.next()) {
        let ab = compare_versions(a, b);
        assert_eq!(ab.reverse(), compare_versions(b, a), "{a} {b}");
        assert_eq!(compare_versions(a, a), Ordering::Equal);
    }

    let base = tempfile::tempdir().unwrap();
    let dest = base.path().join("root");
    let limits = DebLimits {
        max_entries: 64,
        max_bytes: 1 << 20,
    };
    if unpack_deb(data, &dest, "fuzz", &limits).is_err() {
        assert!(!dest.exists(), "a failed unpack left its directory");
    }
    let left: Vec<_> = std::fs::read_dir(base.path()).unwrap().collect();
    assert!(left.len() <= 1, "something appeared beside the destination");
});
