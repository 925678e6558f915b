//! Dockerfiles and `.dockerignore` files come from users: parsing,
//! describing each instruction at its line and column, expanding
//! variables and matching ignore patterns never panic, and positions stay
//! inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_build::dockerfile_fuzz::{describe_all, dockerignore, expand_words};

fuzz_target!(|text: &str| {
    if let Some(steps) = describe_all(text) {
        let lines = text.lines().count().max(1);
        for (line, column, _) in steps {
            assert!(line >= 1 && line <= lines + 1 && column >= 1, "{line}:{column}");
        }
    }
    for escape in ['\\', '`'] {
        let _ = expand_words(text, escape);
    }
    let (patterns, path) = text.split_once('\0').unwrap_or((text, "a/b.txt"));
    let _ = dockerignore(patterns, path);
});
