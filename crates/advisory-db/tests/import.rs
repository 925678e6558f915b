//! Imports real advisory facts written as OSV records, in osv-scanner's
//! layouts, and hostile inputs that must fail without touching the store.

use std::fs;
use std::io::Write;
use std::path::Path;

use advisory_db::{Database, Error, Limits, Package, Severity, import};

/// GHSA-8q59-q68h-6hv4: PyYAML's full_load runs code (CVE-2020-14343),
/// rated CRITICAL by GitHub, fixed in 5.4.
const PYYAML: &str = r#"{
  "schema_version": "1.4.0",
  "id": "GHSA-8q59-q68h-6hv4",
  "modified": "2023-11-08T03:58:16Z",
  "published": "2021-04-01T15:51:55Z",
  "aliases": ["CVE-2020-14343"],
  "summary": "Improper Input Validation in PyYAML",
  "details": "A vulnerability was discovered in the PyYAML library in versions before 5.4,\nwhere it is susceptible to arbitrary code execution ...",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{
    "package": {"ecosystem": "PyPI", "name": "PyYAML", "purl": "pkg:pypi/pyyaml"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}],
    "database_specific": {"source": "https://github.com/github/advisory-database/blob/main/advisories/github-reviewed/2021/04/GHSA-8q59-q68h-6hv4/GHSA-8q59-q68h-6hv4.json"}
  }],
  "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2020-14343"}],
  "database_specific": {"cwe_ids": ["CWE-20"], "github_reviewed": true, "severity": "CRITICAL"}
}"#;

/// DSA-5514-1: glibc's GLIBC_TUNABLES overflow (CVE-2023-4911, "Looking
/// Glass"), fixed in bookworm's 2.36-9+deb12u3 and bullseye's
/// 2.31-13+deb11u7. No rating of its own: NVD's 7.8 vector decides.
const GLIBC: &str = r#"{
  "id": "DSA-5514-1",
  "modified": "2023-10-03T00:00:00Z",
  "published": "2023-10-03T00:00:00Z",
  "aliases": ["CVE-2023-4911"],
  "summary": "glibc - security update",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [
    {"package": {"ecosystem": "Debian:12", "name": "glibc"},
     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}]},
    {"package": {"ecosystem": "Debian:11", "name": "glibc"},
     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.31-13+deb11u7"}]}]}
  ]
}"#;

/// CVE-2023-5363 (OpenSSL key and IV length processing), fixed in Alpine
/// 3.18's openssl 3.1.4-r0.
const OPENSSL_ALPINE: &str = r#"{
  "id": "ALPINE-CVE-2023-5363",
  "modified": "2023-11-01T00:00:00Z",
  "aliases": ["CVE-2023-5363"],
  "affected": [{"package": {"ecosystem": "Alpine:v3.18", "name": "openssl"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.4-r0"}]}]}]
}"#;

const WITHDRAWN: &str = r#"{
  "id": "GHSA-wwww-wwww-wwww", "withdrawn": "2022-01-01T00:00:00Z",
  "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]
}"#;

fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        z.start_file(*name, options).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

/// osv-scanner's offline layout: `<ecosystem>/all.zip`.
fn osv_scanner_tree(root: &Path) {
    write_zip(
        &root.join("PyPI/all.zip"),
        &[
            ("GHSA-8q59-q68h-6hv4.json", PYYAML.as_bytes()),
            ("GHSA-wwww-wwww-wwww.json", WITHDRAWN.as_bytes()),
        ],
    );
    write_zip(
        &root.join("Debian/all.zip"),
        &[("DSA-5514-1.json", GLIBC.as_bytes())],
    );
    fs::create_dir_all(root.join("Alpine")).unwrap();
    fs::write(
        root.join("Alpine/ALPINE-CVE-2023-5363.json"),
        OPENSSL_ALPINE,
    )
    .unwrap();
    fs::write(root.join("README.md"), "not a record").unwrap();
}

fn pkg(ecosystem: &str, name: &str, version: &str) -> Package {
    Package {
        ecosystem: ecosystem.into(),
        name: name.into(),
        version: version.into(),
        ..Package::default()
    }
}

fn ids(db: &Database, p: &Package) -> Vec<String> {
    db.check(p)
        .unwrap()
        .into_iter()
        .map(|f| f.advisory.id)
        .collect()
}

#[test]
fn real_advisories_match_as_their_ecosystems_order_versions() {
    let src = tempfile::tempdir().unwrap();
    osv_scanner_tree(src.path());
    let store = tempfile::tempdir().unwrap();
    let meta = import(src.path(), store.path(), &Limits::default()).unwrap();
    assert_eq!(meta.ecosystems["PyPI"].advisories, 1);
    assert_eq!(meta.ecosystems["Debian:12"].advisories, 1);
    assert_eq!(meta.ecosystems["Debian:11"].packages, 1);
    assert_eq!(meta.ecosystems["Alpine:v3.18"].advisories, 1);
    assert_eq!(meta.withdrawn, 1);
    let db = Database::open(store.path()).unwrap();
    assert_eq!(db.meta(), &meta);

    // PyYAML: the GHSA's own CRITICAL, the CVE kept as an alias, 5.4 fixes.
    let found = db.check(&pkg("PyPI", "PyYAML", "5.3.1")).unwrap();
    assert_eq!(found.len(), 1, "the withdrawn record does not match");
    let f = &found[0];
    assert_eq!(f.advisory.id, "GHSA-8q59-q68h-6hv4");
    assert_eq!(f.advisory.aliases, ["CVE-2020-14343"]);
    assert_eq!(f.advisory.severity, Severity::Critical);
    assert_eq!(f.advisory.cvss.as_ref().unwrap().score, 9.8);
    assert_eq!(
        f.advisory.summary.as_deref(),
        Some("Improper Input Validation in PyYAML")
    );
    assert_eq!(f.fixed.as_deref(), Some("5.4"));
    for (name, version, hit) in [
        ("pyyaml", "5.3.1", true),
        ("PyYaml", "5.4b2", true),
        ("pyyaml", "5.4.dev0", true),
        ("pyyaml", "3.10", true),
        ("pyyaml", "5.4", false),
        ("pyyaml", "5.4.0", false),
        ("pyyaml", "5.4.1", false),
        ("pyyaml", "6.0.1", false),
        ("pyyaml", "1!0.1", false),
        ("pyyaml", "not-pep-440", false),
        ("pyyaml-extra", "5.3.1", false),
    ] {
        assert_eq!(
            !ids(&db, &pkg("PyPI", name, version)).is_empty(),
            hit,
            "{name} {version}"
        );
    }

    // glibc by source package: libc6 2.36-9+deb12u1 is affected; u3 and
    // u10 (after u3 in dpkg's order, before it as text) are not.
    let libc6 = |release: &str, version: &str| Package {
        source_name: Some("glibc".into()),
        ..pkg(release, "libc6", version)
    };
    let found = db.check(&libc6("Debian:12", "2.36-9+deb12u1")).unwrap();
    assert_eq!(found[0].advisory.id, "DSA-5514-1");
    assert_eq!(found[0].advisory.severity, Severity::High);
    assert_eq!(found[0].package, "glibc");
    assert_eq!(found[0].fixed.as_deref(), Some("2.36-9+deb12u3"));
    assert!(ids(&db, &libc6("Debian:12", "2.36-9+deb12u3")).is_empty());
    assert!(ids(&db, &libc6("Debian:12", "2.36-9+deb12u10")).is_empty());
    assert!(!ids(&db, &libc6("Debian:11", "2.31-13+deb11u6")).is_empty());
    assert!(ids(&db, &libc6("Debian:11", "2.31-13+deb11u7")).is_empty());
    assert!(
        ids(&db, &libc6("Debian:13", "2.36-9")).is_empty(),
        "another release's advisory"
    );
    // Without a source name the binary name is looked up, which DSAs do not use.
    assert!(ids(&db, &pkg("Debian:12", "libc6", "2.36-9")).is_empty());
    // A binNMU's binary version differs; the source version decides.
    let binnmu = Package {
        source_version: Some("2.36-9+deb12u1".into()),
        ..libc6("Debian:12", "2.36-9+deb12u1+b1")
    };
    assert!(!ids(&db, &binnmu).is_empty());

    // Alpine: apk ordering, -r revisions and _rc suffixes.
    for (version, hit) in [
        ("3.1.3-r0", true),
        ("3.1.4_rc1-r0", true),
        ("3.1.4-r0", false),
        ("3.1.4-r1", false),
    ] {
        assert_eq!(
            !ids(&db, &pkg("Alpine:v3.18", "openssl", version)).is_empty(),
            hit,
            "openssl {version}"
        );
    }
}

#[test]
fn a_failed_import_leaves_the_previous_store() {
    let src = tempfile::tempdir().unwrap();
    osv_scanner_tree(src.path());
    let store = tempfile::tempdir().unwrap();
    let before = import(src.path(), store.path(), &Limits::default()).unwrap();

    let bad = tempfile::tempdir().unwrap();
    fs::write(bad.path().join("GOOD.json"), PYYAML).unwrap();
    fs::write(
        bad.path().join("broken.json"),
        r#"{"id": "X", "affected": [{"ranges": "no"}]}"#,
    )
    .unwrap();
    let err = import(bad.path(), store.path(), &Limits::default()).unwrap_err();
    assert!(matches!(err, Error::Record { .. }), "{err}");
    assert!(err.to_string().contains("broken.json"), "{err}");

    let db = Database::open(store.path()).unwrap();
    assert_eq!(db.meta(), &before);
    assert!(
        !db.check(&pkg("Alpine:v3.18", "openssl", "3.1.3-r0"))
            .unwrap()
            .is_empty()
    );
    // Only `current` and its generation remain.
    let mut names: Vec<String> = fs::read_dir(store.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "current");

    // A second good import replaces the first and removes its generation.
    fs::remove_file(bad.path().join("broken.json")).unwrap();
    let after = import(bad.path(), store.path(), &Limits::default()).unwrap();
    assert_eq!(after.ecosystems.len(), 1);
    assert_eq!(fs::read_dir(store.path()).unwrap().count(), 2);
    let db = Database::open(store.path()).unwrap();
    assert!(
        db.check(&pkg("Alpine:v3.18", "openssl", "3.1.3-r0"))
            .unwrap()
            .is_empty()
    );
    assert!(!db.check(&pkg("PyPI", "pyyaml", "5.3")).unwrap().is_empty());
}

#[test]
fn hostile_inputs_are_refused_naming_the_file() {
    let store = tempfile::tempdir().unwrap();
    let small = Limits {
        max_record_bytes: 64 << 10,
        max_records: 10,
        max_total_bytes: 200 << 10,
        max_depth: 3,
    };
    let cases = tempfile::tempdir().unwrap();
    let case = |name: &str| {
        let dir = cases.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    };

    // A zip bomb: a few KiB that inflate past the record limit.
    let bomb = case("bomb");
    let padding = format!(
        "{{\"id\": \"X\", \"summary\": \"{}\"}}",
        " ".repeat(1 << 20)
    );
    write_zip(&bomb.join("all.zip"), &[("X.json", padding.as_bytes())]);
    assert!(fs::metadata(bomb.join("all.zip")).unwrap().len() < 16 << 10);
    let err = import(&bomb, store.path(), &small).unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { origin, .. } if origin.ends_with("all.zip!X.json")),
        "{err}"
    );

    // Many records that together pass the total.
    let total = case("total");
    let record = format!(
        "{{\"id\": \"ID\", \"summary\": \"{}\"}}",
        "x".repeat(60 << 10)
    );
    let names: Vec<String> = (0..5).map(|i| format!("R{i}.json")).collect();
    let records: Vec<String> = (0..5)
        .map(|i| record.replace("\"ID\"", &format!("\"R{i}\"")))
        .collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(records.iter().map(String::as_bytes))
        .collect();
    write_zip(&total.join("all.zip"), &entries);
    assert!(matches!(
        import(&total, store.path(), &small),
        Err(Error::TotalTooLarge { .. })
    ));

    // Too many entries.
    let many = case("many");
    let tiny: Vec<String> = (0..20).map(|i| format!("{{\"id\": \"T{i}\"}}")).collect();
    let names: Vec<String> = (0..20).map(|i| format!("T{i}.json")).collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(tiny.iter().map(String::as_bytes))
        .collect();
    write_zip(&many.join("all.zip"), &entries);
    assert!(matches!(
        import(&many, store.path(), &small),
        Err(Error::TooMany { .. })
    ));

    // An entry climbing out of the archive.
    let escape = case("escape");
    write_zip(
        &escape.join("all.zip"),
        &[("../../etc/evil.json", PYYAML.as_bytes())],
    );
    let err = import(&escape, store.path(), &small).unwrap_err();
    assert!(
        matches!(&err, Error::UnsafeEntry { origin } if origin.contains("../../etc/evil.json")),
        "{err}"
    );
    let absolute = case("absolute");
    write_zip(
        &absolute.join("all.zip"),
        &[("/tmp/evil.json", PYYAML.as_bytes())],
    );
    assert!(matches!(
        import(&absolute, store.path(), &small),
        Err(Error::UnsafeEntry { .. })
    ));

    // Not a zip at all.
    let fake = case("fake");
    fs::write(fake.join("all.zip"), b"PK\x03\x04 truncated").unwrap();
    let err = import(&fake, store.path(), &small).unwrap_err();
    assert!(matches!(err, Error::Zip { .. }), "{err}");
    assert!(err.to_string().contains("all.zip"), "{err}");

    // JSON nested past serde_json's limit.
    let deep = case("deep");
    let nested = format!(
        "{{\"id\": \"D\", \"database_specific\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    fs::write(deep.join("D.json"), nested).unwrap();
    let large = Limits {
        max_record_bytes: 1 << 20,
        ..small.clone()
    };
    let err = import(&deep, store.path(), &large).unwrap_err();
    assert!(
        matches!(err, Error::Record { .. }) && err.to_string().contains("D.json"),
        "{err}"
    );

    // A file over the limit on disk.
    let huge = case("huge");
    fs::write(huge.join("H.json"), vec![b' '; 128 << 10]).unwrap();
    assert!(matches!(
        import(&huge, store.path(), &small),
        Err(Error::TooLarge { .. })
    ));

    // A symbolic link below the import path is never followed.
    let link = case("link");
    std::os::unix::fs::symlink("/etc/passwd", link.join("passwd.json")).unwrap();
    let err = import(&link, store.path(), &small).unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err}");

    // Directories deeper than the limit.
    let nested_dirs = case("dirs");
    let bottom = nested_dirs.join("a/b/c/d");
    fs::create_dir_all(&bottom).unwrap();
    fs::write(bottom.join("X.json"), PYYAML).unwrap();
    assert!(matches!(
        import(&nested_dirs, store.path(), &small),
        Err(Error::TooDeep { .. })
    ));

    // Nothing to import: refused, so a wrong path never empties the store.
    let empty = case("empty");
    fs::write(empty.join("notes.txt"), "x").unwrap();
    assert!(matches!(
        import(&empty, store.path(), &small),
        Err(Error::Empty { .. })
    ));

    // Nothing was ever imported, and no generation is left behind.
    assert!(matches!(
        Database::open(store.path()),
        Err(Error::NoDatabase { .. })
    ));
    assert_eq!(fs::read_dir(store.path()).unwrap().count(), 0);
}

#[test]
fn a_store_inside_the_imported_tree_is_not_read_back() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("GHSA-8q59-q68h-6hv4.json"), PYYAML).unwrap();
    let store = src.path().join("db");
    import(src.path(), &store, &Limits::default()).unwrap();
    let again = import(src.path(), &store, &Limits::default()).unwrap();
    assert_eq!(again.ecosystems["PyPI"].advisories, 1);
    assert_eq!(again.duplicates, 0);
}
