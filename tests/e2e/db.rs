//! `hoist db import` and `hoist db status` on osv-scanner's layout.

use std::path::Path;
use std::process::Command;

use super::*;

const PYYAML: &str = r#"{"id": "GHSA-8q59-q68h-6hv4", "aliases": ["CVE-2020-14343"],
  "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
  "database_specific": {"severity": "CRITICAL"}}"#;

const GLIBC: &str = r#"{"id": "DSA-5514-1", "aliases": ["CVE-2023-4911"],
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}]}]}"#;

/// A zip made by Python's zipfile, not by hoist's zip crate.
fn python_zip(zip: &Path, dir: &Path, names: &[&str]) {
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(zip)
        .args(names)
        .current_dir(dir)
        .status()
        .expect("run python3");
    assert!(status.success());
}

#[test]
fn import_and_status() {
    let src = TempDir::new().unwrap();
    let pypi = src.path().join("PyPI");
    std::fs::create_dir_all(&pypi).unwrap();
    std::fs::write(pypi.join("GHSA-8q59-q68h-6hv4.json"), PYYAML).unwrap();
    python_zip(&pypi.join("all.zip"), &pypi, &["GHSA-8q59-q68h-6hv4.json"]);
    std::fs::remove_file(pypi.join("GHSA-8q59-q68h-6hv4.json")).unwrap();
    let debian = src.path().join("Debian");
    std::fs::create_dir_all(&debian).unwrap();
    std::fs::write(debian.join("DSA-5514-1.json"), GLIBC).unwrap();

    let store = TempDir::new().unwrap();
    let db = store.path().join("osv");
    let db = db.to_str().unwrap();
    let out = hoist_ok(&["db", "import", src.path().to_str().unwrap(), "--db", db]);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row: {out}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("PyPI"), ["1", "1"]);
    assert_eq!(row("Debian:12"), ["1", "1"]);
    assert!(out.contains("2 advisories"), "{out}");

    let status: serde_json::Value =
        serde_json::from_str(&hoist_ok(&["db", "status", "--db", db, "--json"])).unwrap();
    assert_eq!(status["ecosystems"]["PyPI"]["advisories"], 1);
    assert_eq!(status["ecosystems"]["Debian:12"]["packages"], 1);
    assert_eq!(status["source"], src.path().to_str().unwrap());

    // A hostile archive fails with one line naming the entry; the
    // database stays as it was.
    let bad = TempDir::new().unwrap();
    let zipped = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1], 'w').writestr('../../evil.json', sys.argv[2])",
        ])
        .arg(bad.path().join("all.zip"))
        .arg(PYYAML)
        .status()
        .unwrap();
    assert!(zipped.success());
    let err = hoist_err(&["db", "import", bad.path().to_str().unwrap(), "--db", db]);
    assert!(err.contains("all.zip!") && err.contains("escapes"), "{err}");
    let after: serde_json::Value =
        serde_json::from_str(&hoist_ok(&["db", "status", "--db", db, "--json"])).unwrap();
    assert_eq!(after, status);

    let empty = TempDir::new().unwrap();
    let err = hoist_err(&["db", "status", "--db", empty.path().to_str().unwrap()]);
    assert!(err.contains("hoist db import"), "{err}");

    // The default database lives in the cache directory.
    let cache = TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["db", "import", "--quiet"])
        .arg(&debian)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert!(cache.path().join("hoist/osv/current/meta.json").is_file());
}
