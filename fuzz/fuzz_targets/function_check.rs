//! `check_python` and `check_user_function` on arbitrary text: never panic
//! or overflow the stack, and every position is inside the source.
#![no_main]

use function_check::{Policy, check_python, check_user_function};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &str| {
    let policy = Policy::default();
    let lines = source.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
    let problems = check_python("m.py", source, &policy);
    for p in &problems {
        assert!(p.line >= 1 && p.line <= lines, "{p} in {lines} lines");
        assert!(p.column >= 1, "{p}");
        assert!(
            p.message != "the Python parser failed on this file",
            "parser panicked"
        );
    }
    // The handler check adds to the same problems, never removes any.
    let with_handler = check_user_function(source, &policy);
    for p in &problems {
        assert!(
            with_handler
                .iter()
                .any(|q| (q.line, q.column, &q.message) == (p.line, p.column, &p.message)),
            "{p} missing from {with_handler:?}"
        );
    }
});
