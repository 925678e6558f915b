//! Dockerfiles and `.dockerignore` files come from users: parsing,
//! finding heredocs, describing each instruction at its line and column, expanding
//! variables and matching ignore patterns never panic, and positions stay
//! inside the text.
#![no_main]

use std::collections::BTreeMap;

use dockerfile_syntax::expand::{process_heredoc, process_words};
use dockerfile_syntax::ignore::Ignore;
use dockerfile_syntax::{describe, heredoc, parse_dockerfile, position};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // Heredocs taken out keep every offset, so spans stay in the text.
    if let Ok(prepared) = heredoc::prepare(text) {
        assert_eq!(prepared.text.len(), text.len());
        for doc in prepared.heredocs.values().flatten() {
            assert!(text[doc.marker..].contains("<<"));
            let _ = process_heredoc(&doc.data(), &BTreeMap::new());
        }
        if let Ok(parsed) = parse_dockerfile::parse(&prepared.text) {
            for instruction in &parsed.instructions {
                let (offset, _) = describe(instruction, text);
                assert!(offset <= text.len());
            }
        }
    }
    if let Ok(parsed) = parse_dockerfile::parse(text) {
        let lines = text.lines().count().max(1);
        for instruction in &parsed.instructions {
            let (offset, _) = describe(instruction, text);
            let (line, column) = position(text, offset);
            assert!(
                line >= 1 && line <= lines + 1 && column >= 1,
                "{line}:{column}"
            );
        }
    }
    let vars = BTreeMap::from([
        ("A".to_owned(), "a b".to_owned()),
        ("B".to_owned(), "${A}".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ]);
    for escape in ['\\', '`'] {
        let _ = process_words(text, &vars, escape);
    }
    let (patterns, path) = text.split_once('\0').unwrap_or((text, "a/b.txt"));
    if let Ok(ignore) = Ignore::parse(patterns) {
        let _ = (ignore.excludes(path), ignore.may_include_below(path));
    }
});
