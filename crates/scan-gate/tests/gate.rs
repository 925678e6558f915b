//! Findings from a real OSV store, the policy file's rules and errors, the
//! reports, and Trivy's JSON mapped into findings.

use advisory_db::{Database, Limits, Severity, import};
use chrono::NaiveDate;
use image_scan::{Distro, Ecosystem, Inventory, Package, SourcePackage};
use scan_gate::{Action, Decision, Error, Policy, Scan, findings, report, trivy};

const LAYER_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LAYER_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Real advisories: PyYAML's CRITICAL GHSA (fixed 5.4), Jinja2's HIGH
/// sandbox escape (CVE-2019-10906, fixed 2.10.1, CVSS 8.6), and Debian's
/// DSA-5514-1 on glibc (source package of libc6), written once for
/// `Debian:12` and once for bare `Debian`.
fn store() -> (tempfile::TempDir, Database) {
    let src = tempfile::tempdir().unwrap();
    let w = |name: &str, body: &str| std::fs::write(src.path().join(name), body).unwrap();
    w(
        "GHSA-8q59-q68h-6hv4.json",
        r#"{"id": "GHSA-8q59-q68h-6hv4", "modified": "2024-09-20T00:00:00Z",
        "aliases": ["CVE-2020-14343", "PYSEC-2021-142"],
        "summary": "Improper Input Validation in PyYAML",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"},
          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "database_specific": {"severity": "CRITICAL"}}"#,
    );
    w(
        "GHSA-462w-v97r-4m45.json",
        r#"{"id": "GHSA-462w-v97r-4m45", "modified": "2024-09-20T00:00:00Z",
        "aliases": ["CVE-2019-10906"],
        "summary": "Jinja2 sandbox escape via string formatting",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"},
          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}]}],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:N"}],
        "database_specific": {"severity": "HIGH"}}"#,
    );
    w(
        "DSA-5514-1.json",
        r#"{"id": "DSA-5514-1", "modified": "2023-10-03T00:00:00Z", "aliases": ["CVE-2023-4911"],
        "summary": "glibc - security update",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}]},
          {"package": {"ecosystem": "Debian", "name": "glibc"},
          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}]}],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]}"#,
    );
    let db = tempfile::tempdir().unwrap();
    import(src.path(), db.path(), &Limits::default()).unwrap();
    let opened = Database::open(db.path()).unwrap();
    (db, opened)
}

fn package(eco: Ecosystem, name: &str, version: &str, path: &str, layer: &str) -> Package {
    Package {
        ecosystem: eco,
        name: name.into(),
        version: version.into(),
        arch: None,
        source: None,
        license: None,
        path: path.into(),
        layer: layer.parse().unwrap(),
    }
}

fn inventory() -> Inventory {
    let mut libc6 = package(
        Ecosystem::Deb,
        "libc6",
        "2.36-9+deb12u1",
        "var/lib/dpkg/status",
        LAYER_A,
    );
    libc6.source = Some(SourcePackage {
        name: "glibc".into(),
        version: "2.36-9+deb12u1".into(),
    });
    let libc_bin = Package {
        name: "libc-bin".into(),
        ..libc6.clone()
    };
    let site = "usr/local/lib/python3.11/dist-packages";
    Inventory {
        image: None,
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
        }),
        packages: vec![
            libc6,
            libc_bin,
            package(
                Ecosystem::Deb,
                "bash",
                "5.2.15-2+b2",
                "var/lib/dpkg/status",
                LAYER_A,
            ),
            package(
                Ecosystem::Python,
                "PyYAML",
                "5.3.1",
                &format!("{site}/PyYAML-5.3.1.egg-info/PKG-INFO"),
                LAYER_B,
            ),
            // The same distribution's metadata twice: one finding.
            package(
                Ecosystem::Python,
                "PyYAML",
                "5.3.1",
                "opt/venv/PyYAML-5.3.1.dist-info/METADATA",
                LAYER_B,
            ),
            package(
                Ecosystem::Python,
                "Jinja2",
                "2.10",
                &format!("{site}/Jinja2-2.10.dist-info/METADATA"),
                LAYER_B,
            ),
            package(
                Ecosystem::Python,
                "Jinja2-Fixed",
                "1.0",
                &format!("{site}/Jinja2_Fixed-1.0.dist-info/METADATA"),
                LAYER_B,
            ),
        ],
        notes: Vec::new(),
    }
}

#[test]
fn findings_join_the_inventory_with_the_database() {
    let (_dir, db) = store();
    let scan = findings(&inventory(), &db).unwrap();
    let got: Vec<(&str, &str, Severity, Option<&str>)> = scan
        .findings
        .iter()
        .map(|f| {
            (
                f.package.as_str(),
                f.id.as_str(),
                f.severity,
                f.fixed.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "PyYAML",
                "GHSA-8q59-q68h-6hv4",
                Severity::Critical,
                Some("5.4")
            ),
            (
                "Jinja2",
                "GHSA-462w-v97r-4m45",
                Severity::High,
                Some("2.10.1")
            ),
            (
                "libc-bin",
                "DSA-5514-1",
                Severity::High,
                Some("2.36-9+deb12u3")
            ),
            (
                "libc6",
                "DSA-5514-1",
                Severity::High,
                Some("2.36-9+deb12u3")
            ),
        ]
    );
    let libc = &scan.findings[3];
    assert_eq!(libc.ecosystem, "Debian:12");
    assert_eq!(libc.advisory_package.as_deref(), Some("glibc"));
    assert_eq!(libc.layer.as_deref(), Some(LAYER_A));
    assert_eq!(libc.score, Some(7.8));
    let yaml = &scan.findings[0];
    assert_eq!(yaml.display_id(), "CVE-2020-14343");
    assert_eq!(yaml.layer.as_deref(), Some(LAYER_B));
    assert!(
        yaml.path
            .as_deref()
            .unwrap()
            .contains("PyYAML-5.3.1.egg-info")
    );
    assert!(scan.notes.is_empty());
}

#[test]
fn system_packages_without_a_distribution_are_named_not_guessed() {
    let (_dir, db) = store();
    let mut inv = inventory();
    inv.distro = None;
    let scan = findings(&inv, &db).unwrap();
    assert!(scan.findings.iter().all(|f| f.ecosystem == "PyPI"));
    assert_eq!(
        scan.notes,
        ["3 system packages not checked: the image has no os-release to name their distribution"]
    );
    inv.distro = Some(Distro {
        id: "debian".into(),
        version_id: None,
    });
    let scan = findings(&inv, &db).unwrap();
    assert!(
        scan.notes[0].contains("`debian` (no VERSION_ID)"),
        "{:?}",
        scan.notes
    );
}

fn scan() -> Scan {
    let (_dir, db) = store();
    findings(&inventory(), &db).unwrap()
}

#[test]
fn the_default_policy_rejects_critical_and_warns_high() {
    let verdict = Policy::default().judge(scan(), day(2026, 6, 1));
    assert_eq!(verdict.decision, Decision::Reject);
    assert_eq!(verdict.tally.critical, 1);
    assert_eq!(verdict.tally.high, 3);
    let summary = verdict.summary();
    assert_eq!(
        summary.warnings,
        [
            "PyYAML 5.3.1 has CRITICAL CVE-2020-14343",
            "Jinja2 2.10 has HIGH CVE-2019-10906",
            "libc-bin 2.36-9+deb12u1 has HIGH CVE-2023-4911",
            "libc6 2.36-9+deb12u1 has HIGH CVE-2023-4911",
        ]
    );
    let doc = report::json(&verdict);
    assert_eq!(doc["vulnerabilities"]["critical"], 1);
    assert_eq!(doc["vulnerabilities"]["high"], 3);
    assert_eq!(doc["decision"], "reject");
    assert_eq!(doc["findings"][0]["action"], "reject");
    assert_eq!(doc["findings"][0]["id"], "GHSA-8q59-q68h-6hv4");
    assert_eq!(doc["findings"][1]["action"], "warn");
}

#[test]
fn ignores_apply_until_they_expire_and_name_aliases() {
    let policy = Policy::parse(
        r#"
[[ignore]]
id = "cve-2020-14343"
reason = "yaml.load never sees untrusted input here"
expires = 2026-06-30
"#,
        "policy.toml",
    )
    .unwrap();
    let verdict = policy.judge(scan(), day(2026, 6, 30));
    assert_eq!(
        verdict.decision,
        Decision::Warn,
        "the last day still counts"
    );
    assert_eq!(verdict.findings[0].action, Action::Ignored);
    assert_eq!(verdict.tally.critical, 0);
    assert_eq!(verdict.tally.ignored, 1);
    assert!(verdict.expired_ignores.is_empty());
    let table = report::table(&verdict);
    assert!(
        table.contains("ignored GHSA-8q59-q68h-6hv4 in PyYAML until 2026-06-30: yaml.load never sees untrusted input here"),
        "{table}"
    );

    let verdict = policy.judge(scan(), day(2026, 7, 1));
    assert_eq!(verdict.decision, Decision::Reject);
    assert_eq!(verdict.findings[0].action, Action::Reject);
    assert_eq!(verdict.expired_ignores.len(), 1);
    assert!(
        verdict
            .summary()
            .warnings
            .contains(&"ignore of cve-2020-14343 expired on 2026-06-30".to_owned())
    );
    let table = report::table(&verdict);
    assert!(
        table.contains("expired: the ignore of cve-2020-14343 ended on 2026-06-30"),
        "{table}"
    );
}

#[test]
fn a_policy_file_sets_severities() {
    let policy = Policy::parse(
        "reject = [\"critical\", \"HIGH\"]\nwarn = [\"MEDIUM\", \"UNKNOWN\"]\n",
        "p.toml",
    )
    .unwrap();
    let verdict = policy.judge(scan(), day(2026, 1, 1));
    assert!(verdict.findings.iter().all(|j| j.action == Action::Reject));
    let lenient = Policy::parse("reject = []\nwarn = []\n", "p.toml").unwrap();
    assert_eq!(
        lenient.judge(scan(), day(2026, 1, 1)).decision,
        Decision::Pass
    );
}

#[test]
fn policy_errors_are_named() {
    let err = |text: &str| Policy::parse(text, "p.toml").unwrap_err();
    assert!(matches!(
        err("[[ignore]]\nid = \"CVE-1\"\nexpires = 2027-01-01\n"),
        Error::IgnoreWithoutReason { id, .. } if id == "CVE-1"
    ));
    assert!(matches!(
        err("[[ignore]]\nid = \"CVE-1\"\nreason = \"  \"\nexpires = 2027-01-01\n"),
        Error::IgnoreWithoutReason { .. }
    ));
    assert!(matches!(
        err("[[ignore]]\nid = \"CVE-1\"\nreason = \"r\"\n"),
        Error::IgnoreWithoutExpiry { .. }
    ));
    for bad in [
        "\"2027-13-01\"",
        "\"tomorrow\"",
        "2027-01-01T00:00:00Z",
        "12",
    ] {
        let e = err(&format!(
            "[[ignore]]\nid = \"CVE-1\"\nreason = \"r\"\nexpires = {bad}\n"
        ));
        assert!(
            matches!(e, Error::BadExpiry { .. } | Error::PolicySyntax { .. }),
            "{bad}: {e}"
        );
    }
    assert!(matches!(
        err("reject = [\"SEVERE\"]\n"),
        Error::BadSeverity { value, .. } if value == "SEVERE"
    ));
    assert!(matches!(
        err("reject = [\"HIGH\"]\nwarn = [\"HIGH\"]\n"),
        Error::SeverityTwice {
            severity: Severity::High,
            ..
        }
    ));
    assert!(matches!(
        err(
            "[[ignore]]\nid = \"CVE-1\"\nreason = \"r\"\nexpires = 2027-01-01\n[[ignore]]\nid = \"cve-1\"\nreason = \"r\"\nexpires = 2027-01-01\n"
        ),
        Error::BadIgnoreId { .. }
    ));
    let e = err("rejekt = [\"HIGH\"]\n");
    assert!(
        matches!(&e, Error::PolicySyntax { .. }) && e.to_string().contains("rejekt"),
        "{e}"
    );
    let e = err("reject = [\n");
    assert!(e.to_string().starts_with("policy p.toml: "), "{e}");
    assert!(!e.to_string().contains('\n'));

    let dir = tempfile::tempdir().unwrap();
    let e = Policy::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(e, Error::PolicyRead { .. }), "{e}");
}

#[test]
fn the_table_is_sorted_by_severity_then_package() {
    let verdict = Policy::default().judge(scan(), day(2026, 1, 1));
    let table = report::table(&verdict);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("SEVERITY  PACKAGE"), "{table}");
    assert!(rows[1].starts_with("CRITICAL  PyYAML"), "{table}");
    assert!(rows[1].contains("GHSA-8q59-q68h-6hv4 (CVE-2020-14343)"));
    assert!(rows[1].contains("bbbbbbbbbbbb"));
    assert!(rows[2].starts_with("HIGH      Jinja2"), "{table}");
    assert!(rows[3].starts_with("HIGH      libc-bin"), "{table}");
    assert!(
        table.ends_with(
            "decision: reject (1 critical, 3 high, 0 medium, 0 low, 0 unknown, 0 ignored)\n"
        ),
        "{table}"
    );
}

#[test]
fn sarif_has_one_rule_per_advisory_and_levels_from_the_policy() {
    let policy = Policy::parse(
        "[[ignore]]\nid = \"GHSA-462w-v97r-4m45\"\nreason = \"templates are ours\"\nexpires = 2030-01-01\n",
        "p.toml",
    )
    .unwrap();
    let verdict = policy.judge(scan(), day(2026, 1, 1));
    let log = report::sarif(&verdict, "0.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["GHSA-8q59-q68h-6hv4", "GHSA-462w-v97r-4m45", "DSA-5514-1"]
    );
    assert_eq!(rules[0]["properties"]["security-severity"], "9.8");
    assert_eq!(rules[2]["properties"]["security-severity"], "7.8");
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let levels: Vec<&str> = results
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["error", "note", "warning", "warning"]);
    assert_eq!(results[3]["ruleIndex"], 2);
    assert_eq!(
        results[1]["suppressions"][0]["justification"],
        "templates are ours (until 2030-01-01)"
    );
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "usr/local/lib/python3.11/dist-packages/PyYAML-5.3.1.egg-info/PKG-INFO"
    );
}

#[test]
fn trivy_reports_map_into_findings() {
    let deb = trivy::parse(include_bytes!("data/trivy-debian-buster.json")).unwrap();
    assert_eq!(deb.scanner, "trivy");
    assert_eq!(deb.findings.len(), 2);
    let idn = &deb.findings[0];
    assert_eq!(idn.package, "libidn2-0");
    assert_eq!(idn.ecosystem, "Debian:10");
    assert_eq!(idn.severity, Severity::Critical);
    assert_eq!(idn.fixed.as_deref(), Some("2.0.5-1+deb10u1"));
    assert_eq!(idn.aliases, ["DSA-4613-1"]);
    assert_eq!(idn.score, Some(9.8));
    assert_eq!(
        idn.layer.as_deref(),
        Some("sha256:4a56a430b2bac33260d6449e162017e2b23076c6411a17b46db67f5b84dde2bd")
    );
    let bash = &deb.findings[1];
    assert_eq!(
        (bash.package.as_str(), bash.severity),
        ("bash", Severity::Low)
    );
    assert_eq!(bash.fixed, None);
    let verdict = Policy::default().judge(deb, day(2026, 1, 1));
    assert_eq!(verdict.decision, Decision::Reject);
    assert_eq!(
        verdict.summary().warnings,
        ["libidn2-0 2.0.5-1 has CRITICAL CVE-2019-18224"]
    );

    let pip = trivy::parse(include_bytes!("data/trivy-pip.json")).unwrap();
    let got: Vec<(&str, &str, Severity)> = pip
        .findings
        .iter()
        .map(|f| (f.ecosystem.as_str(), f.id.as_str(), f.severity))
        .collect();
    assert_eq!(
        got,
        [
            ("PyPI", "CVE-2019-14806", Severity::High),
            ("PyPI", "CVE-2020-28724", Severity::Medium),
        ]
    );
    assert_eq!(
        Policy::default().judge(pip, day(2026, 1, 1)).decision,
        Decision::Warn
    );
}

#[test]
fn malformed_trivy_reports_are_errors() {
    for bad in [
        &b""[..],
        b"[]",
        b"{\"Results\": 3}",
        b"{\"Results\": [{\"Vulnerabilities\": [{\"PkgName\": \"x\"}]}]}",
        b"{\"Results\": [{\"Vulnerabilities\": [{\"VulnerabilityID\": \"\", \"PkgName\": \"x\"}]}]}",
        b"{\"Results\": [{\"Vulnerabilities\": [{\"VulnerabilityID\": \"CVE-1\", \"PkgName\": \"x\", \"Severity\": \"SEVERE\"}]}]}",
    ] {
        let e = trivy::parse(bad).unwrap_err();
        assert!(
            matches!(e, Error::TrivyReport(_)),
            "{}: {e}",
            String::from_utf8_lossy(bad)
        );
    }
    // Deep nesting stops at serde_json's recursion limit, not the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(trivy::parse(deep.as_bytes()).is_err());
    // An empty report is no findings.
    assert!(
        trivy::parse(b"{\"SchemaVersion\": 2}")
            .unwrap()
            .findings
            .is_empty()
    );
}
