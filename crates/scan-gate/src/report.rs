//! A verdict as people, scripts and code-scanning tools read it: a table,
//! a JSON document, SARIF 2.1.0.
//!
//! The JSON document's shape (stable; fields are only ever added):
//!
//! ```json
//! {
//!   "image": {"name": "…", "tag": "…", "digest": "sha256:…", "architecture": "amd64", "os": "linux"},
//!   "scanner": "hoist",
//!   "decision": "reject",
//!   "vulnerabilities": {"critical": 1, "high": 1, "warnings": ["PyYAML 5.3.1 has CRITICAL CVE-2020-14343"]},
//!   "counts": {"critical": 1, "high": 1, "medium": 0, "low": 0, "unknown": 0, "ignored": 0},
//!   "findings": [{"package": "PyYAML", "ecosystem": "PyPI", "installed": "5.3.1", "fixed": "5.4",
//!                 "id": "GHSA-8q59-q68h-6hv4", "aliases": ["CVE-2020-14343"], "severity": "CRITICAL",
//!                 "layer": "sha256:…", "path": "…/METADATA", "summary": "…", "action": "reject"}],
//!   "expired_ignores": [{"id": "…", "reason": "…", "expires": "2025-01-31"}],
//!   "notes": []
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use advisory_db::Severity;
use serde_json::{Value, json};

use crate::{Action, Decision, Verdict};

/// The JSON document (see the module documentation).
///
/// ```
/// let verdict = scan_gate::Policy::default()
///     .judge(scan_gate::Scan::default(), chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
/// let doc = scan_gate::report::json(&verdict);
/// assert_eq!(doc["decision"], "pass");
/// assert_eq!(doc["vulnerabilities"]["critical"], 0);
/// ```
pub fn json(verdict: &Verdict) -> Value {
    json!({
        "image": verdict.image,
        "scanner": verdict.scanner,
        "decision": verdict.decision,
        "vulnerabilities": verdict.summary(),
        "counts": verdict.tally,
        "findings": verdict.findings,
        "expired_ignores": verdict.expired_ignores,
        "notes": verdict.notes,
    })
}

/// A table for people: one line per finding, most severe first, then by
/// package; the decision and counts below it.
///
/// ```
/// let verdict = scan_gate::Policy::default()
///     .judge(scan_gate::Scan::default(), chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
/// assert!(scan_gate::report::table(&verdict).contains("decision: pass"));
/// ```
pub fn table(verdict: &Verdict) -> String {
    let header = [
        "SEVERITY",
        "PACKAGE",
        "INSTALLED",
        "FIXED",
        "ADVISORY",
        "ACTION",
        "LAYER",
    ];
    let rows: Vec<[String; 7]> = verdict
        .findings
        .iter()
        .map(|j| {
            let f = &j.finding;
            let id = match f.display_id() {
                shown if shown == f.id => f.id.clone(),
                shown => format!("{} ({shown})", f.id),
            };
            let layer = f.layer.as_deref().map_or("-".to_owned(), |l| {
                l.strip_prefix("sha256:")
                    .map_or(l, |h| &h[..h.len().min(12)])
                    .to_owned()
            });
            [
                f.severity.to_string(),
                f.package.clone(),
                f.installed.clone(),
                f.fixed.clone().unwrap_or_else(|| "-".into()),
                id,
                action_text(j.action).to_owned(),
                layer,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    if !rows.is_empty() {
        line(&header.map(str::to_owned));
        for r in &rows {
            line(r);
        }
    }
    for j in &verdict.findings {
        if let (Action::Ignored, Some(i)) = (j.action, &j.ignore) {
            let _ = writeln!(
                out,
                "ignored {} in {} until {}: {}",
                j.finding.id, j.finding.package, i.expires, i.reason
            );
        }
    }
    for i in &verdict.expired_ignores {
        let _ = writeln!(
            out,
            "expired: the ignore of {} ended on {} and no longer applies ({})",
            i.id, i.expires, i.reason
        );
    }
    for n in &verdict.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let t = &verdict.tally;
    let _ = writeln!(
        out,
        "decision: {} ({} critical, {} high, {} medium, {} low, {} unknown, {} ignored)",
        verdict.decision, t.critical, t.high, t.medium, t.low, t.unknown, t.ignored
    );
    out
}

fn action_text(a: Action) -> &'static str {
    match a {
        Action::Reject => "reject",
        Action::Warn => "warn",
        Action::Pass => "pass",
        Action::Ignored => "ignored",
    }
}

/// The `security-severity` GitHub code scanning reads (a CVSS-like score
/// it bands as critical ≥ 9.0, high ≥ 7.0, medium ≥ 4.0): the finding's
/// CVSS score when it falls in its severity's band, else a score inside
/// the band (as Trivy writes them).
fn security_severity(severity: Severity, score: Option<f64>) -> String {
    let score = score
        .filter(|s| Severity::from_score(*s) == severity)
        .unwrap_or(match severity {
            Severity::Critical => 9.5,
            Severity::High => 8.0,
            Severity::Medium => 5.5,
            Severity::Low => 2.0,
            Severity::Unknown => 0.0,
        });
    format!("{score:.1}")
}

/// The SARIF level of a finding the policy judged: rejects are errors,
/// warnings warnings, the rest notes.
fn level(a: Action) -> &'static str {
    match a {
        Action::Reject => "error",
        Action::Warn => "warning",
        Action::Pass | Action::Ignored => "note",
    }
}

/// A SARIF 2.1.0 log: one run, one rule per advisory, one result per
/// finding (level from the policy: error, warning, note; ignored findings
/// carry an external suppression with the reason). Each result's location
/// is the package's record file in the image, else the image's name.
///
/// ```
/// let verdict = scan_gate::Policy::default()
///     .judge(scan_gate::Scan::default(), chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
/// let log = scan_gate::report::sarif(&verdict, "0.1.0");
/// assert_eq!(log["version"], "2.1.0");
/// ```
pub fn sarif(verdict: &Verdict, tool_version: &str) -> Value {
    let image = verdict
        .image
        .as_ref()
        .map(|i| format!("{}@{}", i.name, i.digest));
    let mut rules: Vec<Value> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut results = Vec::new();
    for j in &verdict.findings {
        let f = &j.finding;
        let rule_index = *index.entry(&f.id).or_insert_with(|| {
            let summary = f
                .summary
                .clone()
                .unwrap_or_else(|| format!("{} in {}", f.display_id(), f.package));
            let mut tags = vec!["security".to_owned(), "vulnerability".to_owned()];
            tags.push(f.severity.to_string());
            rules.push(json!({
                "id": f.id,
                "name": "OsPackageVulnerability",
                "shortDescription": {"text": summary},
                "fullDescription": {"text": format!("{}: {summary}", f.display_id())},
                "helpUri": format!("https://osv.dev/vulnerability/{}", f.id),
                "help": {
                    "text": format!(
                        "Advisory: {}\nAliases: {}\nSeverity: {}\nPackage: {}\nFixed version: {}",
                        f.id,
                        if f.aliases.is_empty() { "-".to_owned() } else { f.aliases.join(", ") },
                        f.severity,
                        f.advisory_package.as_deref().unwrap_or(&f.package),
                        f.fixed.as_deref().unwrap_or("none yet"),
                    )
                },
                "defaultConfiguration": {"level": level(j.action)},
                "properties": {
                    "security-severity": security_severity(f.severity, f.score),
                    "precision": "very-high",
                    "tags": tags,
                },
            }));
            rules.len() - 1
        });
        let uri = f
            .path
            .clone()
            .or_else(|| image.clone())
            .unwrap_or_else(|| "image".into());
        let mut message = format!(
            "Package: {}\nInstalled version: {}\nFixed version: {}\nSeverity: {}\nAdvisory: {}",
            f.package,
            f.installed,
            f.fixed.as_deref().unwrap_or("none yet"),
            f.severity,
            f.id,
        );
        if let Some(layer) = &f.layer {
            let _ = write!(message, "\nLayer: {layer}");
        }
        if let Some(image) = &image {
            let _ = write!(message, "\nImage: {image}");
        }
        let mut result = json!({
            "ruleId": f.id,
            "ruleIndex": rule_index,
            "level": level(j.action),
            "message": {"text": message},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": uri},
                    "region": {"startLine": 1, "startColumn": 1, "endLine": 1, "endColumn": 1},
                },
                "message": {"text": format!("{} {}", f.package, f.installed)},
            }],
        });
        if let (Action::Ignored, Some(i)) = (j.action, &j.ignore) {
            result["suppressions"] = json!([{
                "kind": "external",
                "status": "accepted",
                "justification": format!("{} (until {})", i.reason, i.expires),
            }]);
        }
        results.push(result);
    }
    let mut run = json!({
        "tool": {"driver": {
            "name": "hoist",
            "fullName": "hoist scan",
            "version": tool_version,
            "informationUri": "https://example.invalid/hoist",
            "rules": rules,
        }},
        "results": results,
        "columnKind": "utf16CodeUnits",
        "properties": {
            "decision": verdict.decision,
            "scanner": verdict.scanner,
        },
    });
    if let Some(image) = &image {
        run["properties"]["image"] = image.clone().into();
    }
    if verdict.decision == Decision::Reject {
        run["invocations"] = json!([{
            "executionSuccessful": true,
            "exitCode": 1,
            "exitCodeDescription": "the policy rejects the image",
        }]);
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}
