//! advisory-db's OSV record parser on arbitrary bytes: never panics (nor
//! overflows the stack on deep JSON); an accepted record's entries
//! survive the store's round trip and evaluate any version without
//! panicking.
#![no_main]

use advisory_db::{Affected, Event, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::parse(data) else { return };
    assert!(!record.advisory.id.is_empty());
    for entry in &record.affected {
        let line = serde_json::to_string(entry).unwrap();
        let back: Affected = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, entry);
        let mut versions = vec!["0".to_owned(), "1.0".to_owned()];
        versions.extend(entry.versions.iter().cloned());
        for range in &entry.ranges {
            for event in &range.events {
                let (Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v)) = event;
                versions.push(v.clone());
            }
        }
        for v in versions.iter().take(16) {
            if let Some(Some(fixed)) = entry.affects(v) {
                // A fix is one of the entry's own `fixed` versions.
                assert!(entry.ranges.iter().any(|r| r.events.contains(&Event::Fixed(fixed.clone()))));
            }
        }
    }
});
