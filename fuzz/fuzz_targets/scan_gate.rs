//! scan-gate's parsers on arbitrary bytes: Trivy's JSON report and the
//! policy file never panic (nor overflow the stack on deep JSON); an
//! accepted report's findings are named, sorted most severe first, and
//! judged and reported (table, JSON, SARIF) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scan_gate::{Policy, report, trivy};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(policy) = Policy::parse(text, "fuzz.toml")
    {
        assert!(policy.reject.is_disjoint(&policy.warn));
        assert!(policy.ignore.iter().all(|i| !i.reason.trim().is_empty() && !i.id.is_empty()));
    }
    let Ok(scan) = trivy::parse(data) else { return };
    assert!(scan.findings.iter().all(|f| !f.id.is_empty() && !f.package.is_empty()));
    assert!(scan.findings.windows(2).all(|w| w[0].severity >= w[1].severity));
    assert!(scan.findings.iter().all(|f| f.score.is_none_or(|s| (0.0..=10.0).contains(&s))));
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let verdict = Policy::default().judge(scan, today);
    let _ = report::table(&verdict);
    serde_json::to_vec(&report::json(&verdict)).unwrap();
    serde_json::to_vec(&report::sarif(&verdict, "0")).unwrap();
});
