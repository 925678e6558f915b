//! advisory-db's version orderings (PEP 440, dpkg, apk, semver) and CVSS
//! v3 scoring on arbitrary text: never panic; every ordering is reflexive
//! and antisymmetric; a score is within 0.0–10.0 with one decimal.
#![no_main]

use std::cmp::Ordering;

use advisory_db::{Ecosystem, compare_semver, cvss3_base_score};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut words = text.split(' ');
    let (a, b) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    for eco in [Ecosystem::PyPI, Ecosystem::Debian, Ecosystem::Alpine] {
        let ab = eco.compare(a, b);
        assert_eq!(ab.map(Ordering::reverse), eco.compare(b, a), "{eco} {a:?} {b:?}");
        if eco.is_valid(a) {
            assert_eq!(eco.compare(a, a), Some(Ordering::Equal), "{eco} {a:?}");
        }
        let _ = eco.normalize_name(a);
    }
    let ab = compare_semver(a, b);
    assert_eq!(ab.map(Ordering::reverse), compare_semver(b, a));
    if let Ok(score) = cvss3_base_score(&text) {
        assert!((0.0..=10.0).contains(&score), "{score}");
        assert_eq!((score * 10.0).round() / 10.0, score);
    }
});
