//! advisory-db's CVSS v3 and v4.0 parsers on arbitrary text, and v4.0
//! scoring on vectors built from the input's bytes (to reach every macro
//! vector, not only the parser's refusals): never panic; a score is within
//! 0.0–10.0 with one decimal; a v4.0 vector scores the same whatever the
//! order of its metrics.
#![no_main]

use advisory_db::{cvss3_base_score, cvss4_base_score};
use libfuzzer_sys::fuzz_target;

/// Every v4.0 metric with its values, `X` first where allowed.
const METRICS: [(&str, &[&str]); 32] = [
    ("AV", &["N", "A", "L", "P"]),
    ("AC", &["L", "H"]),
    ("AT", &["N", "P"]),
    ("PR", &["N", "L", "H"]),
    ("UI", &["N", "P", "A"]),
    ("VC", &["H", "L", "N"]),
    ("VI", &["H", "L", "N"]),
    ("VA", &["H", "L", "N"]),
    ("SC", &["H", "L", "N"]),
    ("SI", &["H", "L", "N"]),
    ("SA", &["H", "L", "N"]),
    ("E", &["X", "A", "P", "U"]),
    ("CR", &["X", "H", "M", "L"]),
    ("IR", &["X", "H", "M", "L"]),
    ("AR", &["X", "H", "M", "L"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MAT", &["X", "N", "P"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "P", "A"]),
    ("MVC", &["X", "H", "L", "N"]),
    ("MVI", &["X", "H", "L", "N"]),
    ("MVA", &["X", "H", "L", "N"]),
    ("MSC", &["X", "H", "L", "N"]),
    ("MSI", &["X", "S", "H", "L", "N"]),
    ("MSA", &["X", "S", "H", "L", "N"]),
    ("S", &["X", "N", "P"]),
    ("AU", &["X", "N", "Y"]),
    ("R", &["X", "A", "U", "I"]),
    ("V", &["X", "D", "C"]),
    ("RE", &["X", "L", "M", "H"]),
    ("U", &["X", "Clear", "Green", "Amber", "Red"]),
];

fn check_score(score: f64) {
    assert!((0.0..=10.0).contains(&score), "{score}");
    assert_eq!((score * 10.0).round() / 10.0, score);
}

fn check_v4(vector: &str) {
    let Ok(score) = cvss4_base_score(vector) else {
        return;
    };
    check_score(score);
    let body = vector
        .strip_prefix("CVSS:4.0/")
        .expect("accepted with its prefix");
    let mut fields: Vec<&str> = body.split('/').collect();
    fields.reverse();
    let reversed = format!("CVSS:4.0/{}", fields.join("/"));
    assert_eq!(cvss4_base_score(&reversed), Ok(score), "{vector} reversed");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(score) = cvss3_base_score(&text) {
        check_score(score);
    }
    check_v4(&text);

    // A valid-looking vector: one byte per metric picks its value, or
    // (past the values) leaves an optional metric out.
    let mut vector = String::from("CVSS:4.0");
    for (i, (name, values)) in METRICS.iter().enumerate() {
        let pick = usize::from(data.get(i).copied().unwrap_or(0));
        if let Some(value) = values.get(pick % (values.len() + 1)) {
            vector.push('/');
            vector.push_str(name);
            vector.push(':');
            vector.push_str(value);
        }
    }
    check_v4(&vector);
});
