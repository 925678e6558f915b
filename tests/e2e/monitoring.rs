//! The alert rules and the Grafana dashboard in `docs/monitoring/`:
//! valid for Prometheus (`promtool`), their alerts firing when they
//! should, and every metric they name exposed by a running service.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring")
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dashboard's panels, rows left out.
fn dashboard_panels() -> Vec<Value> {
    let text = std::fs::read_to_string(docs().join("grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .cloned()
        .collect()
}

/// Every PromQL expression of the dashboard.
fn dashboard_exprs() -> Vec<String> {
    dashboard_panels()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// The `hoist_*` metric families named in `text` (a histogram's
/// `_bucket`, `_count` and `_sum` series name its family).
fn families_named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("hoist_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            let name = &text[start..end];
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_owned());
        }
        i = end;
    }
    out
}

/// The families the docs use: the alert rules' and the dashboard's.
fn families_used() -> BTreeSet<String> {
    let mut used = families_named(&std::fs::read_to_string(docs().join("alerts.yml")).unwrap());
    for expr in dashboard_exprs() {
        used.extend(families_named(&expr));
    }
    used
}

#[test]
fn alert_rules_are_valid_and_fire_when_they_should() {
    promtool(&["check", "rules", "alerts.yml"], &docs());
    promtool(&["test", "rules", "alerts.test.yml"], &docs());
}

#[test]
fn the_dashboard_is_valid_promql_on_a_sane_grid() {
    let panels = dashboard_panels();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    // Every query as a recording rule: promtool parses each one.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs().iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    promtool(&["check", "rules", "dashboard.yml"], dir.path());

    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in &panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "no query: {p}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "wider than the grid: {p}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panels overlap at {cx},{cy}: {p}");
            }
        }
    }
}

#[test]
fn the_docs_name_metrics_that_a_scrape_is_checked_against() {
    let used = families_used();
    for family in [
        "hoist_image_pull_duration_seconds",
        "hoist_image_pull_errors_total",
        "hoist_registry_storage_bytes",
    ] {
        assert!(used.contains(family), "{family} not used: {used:?}");
    }
    // The name scanner itself: a histogram series names its family, a
    // longer identifier is not a metric.
    assert_eq!(
        families_named("rate(hoist_a_bucket[5m]) + xhoist_b + hoist_c_total"),
        BTreeSet::from(["hoist_a".to_owned(), "hoist_c_total".to_owned()])
    );
}

/// Checks the `/metrics` texts of a running service (its API and its
/// workers): each is valid exposition for `promtool check metrics`, and
/// together they declare every family the alert rules and the dashboard
/// use.
pub(super) fn check_scrapes(scrapes: &[&str]) {
    let mut declared = BTreeSet::new();
    for text in scrapes {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            }
        }
    }
    let missing: Vec<_> = families_used().difference(&declared).cloned().collect();
    assert!(
        missing.is_empty(),
        "the docs use metrics no scrape declares: {missing:?}\ndeclared: {declared:?}"
    );
}
