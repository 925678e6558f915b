//! `parse_requirements` on arbitrary text: never panics, every position is
//! inside the text, and every accepted requirement parses again alone, with
//! its hashes, to the same requirement.
#![no_main]

use function_check::{Policy, parse_requirements};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let policy = Policy::default();
    let (requirements, problems) = parse_requirements("requirements.txt", text, &policy);
    // Lines end at \n, \r\n or \r; a file has one line more than breaks.
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
    for p in &problems {
        assert!(p.line >= 1 && p.line <= lines, "{p} in {lines} lines");
        assert!(p.column >= 1, "{p}");
        assert!(!p.message.is_empty());
    }
    for r in &requirements {
        assert!(r.line >= 1 && r.line <= lines);
        assert!(!r.name.is_empty());
        assert_eq!(r.name, r.name.to_lowercase(), "{r:?}");
        let mut line = r.requirement.clone();
        for hash in &r.hashes {
            line.push_str(" --hash=");
            line.push_str(hash);
        }
        let (again, more) = parse_requirements("r", &line, &policy);
        assert_eq!(more, [], "{r:?} -> {line:?}");
        assert_eq!(again.len(), 1, "{r:?} -> {line:?}");
        assert_eq!(
            (&again[0].name, &again[0].requirement, &again[0].hashes),
            (&r.name, &r.requirement, &r.hashes)
        );
    }
});
