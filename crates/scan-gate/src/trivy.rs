//! Trivy as the matcher: its JSON report (`trivy image --format json`)
//! mapped into [`Finding`]s, so the policy and reports apply unchanged.
//!
//! The report is untrusted input: its size is capped by the caller (see
//! [`run`]), unknown fields are ignored, and a field of the wrong type is
//! a named error rather than a guess.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use advisory_db::Severity;
use serde::Deserialize;

use crate::{Error, Finding, Result, Scan, sort};

/// Largest report [`run`] reads from Trivy.
pub const MAX_REPORT_BYTES: u64 = 256 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    results: Vec<TrivyResult>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    #[serde(rename = "OS")]
    os: Option<Os>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Os {
    #[serde(default)]
    family: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    #[serde(default)]
    target: String,
    #[serde(default)]
    class: String,
    #[serde(default, rename = "Type")]
    kind: String,
    #[serde(default)]
    vulnerabilities: Vec<Vulnerability>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(default, rename = "VendorIDs")]
    vendor_ids: Vec<String>,
    pkg_name: String,
    #[serde(default)]
    pkg_path: Option<String>,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    layer: Option<Layer>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default, rename = "CVSS")]
    cvss: Option<std::collections::BTreeMap<String, Cvss>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Layer {
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
struct Cvss {
    #[serde(rename = "V3Score")]
    v3_score: Option<f64>,
}

/// The OSV-style ecosystem of one of Trivy's result types.
fn ecosystem(kind: &str, class: &str, os: Option<&Os>) -> String {
    match kind {
        "pip" | "pipenv" | "poetry" | "uv" | "python-pkg" => "PyPI".into(),
        "debian" | "ubuntu" | "alpine" if class == "os-pkgs" || class.is_empty() => {
            let release = os.map(|o| o.name.as_str()).unwrap_or_default();
            let family = os.map_or(kind, |o| o.family.as_str());
            let distro = image_scan::Distro {
                id: if family.is_empty() { kind } else { family }.to_owned(),
                version_id: (!release.is_empty()).then(|| release.to_owned()),
            };
            crate::distro_ecosystem(&distro).unwrap_or_else(|| kind.to_owned())
        }
        other => other.to_owned(),
    }
}

/// Maps Trivy's JSON report into a [`Scan`] (scanner `trivy`): one finding
/// per (package, vulnerability), `VendorIDs` as aliases, `Title` as the
/// summary, the `nvd` CVSS v3 score (else any vendor's) as the score, the
/// layer's compressed digest as the layer.
///
/// ```
/// let report = br#"{"SchemaVersion": 2, "Results": [{"Target": "app", "Class": "lang-pkgs", "Type": "pip",
///   "Vulnerabilities": [{"VulnerabilityID": "CVE-2020-14343", "PkgName": "PyYAML",
///     "InstalledVersion": "5.3.1", "FixedVersion": "5.4", "Severity": "CRITICAL"}]}]}"#;
/// let scan = scan_gate::trivy::parse(report)?;
/// assert_eq!(scan.findings[0].ecosystem, "PyPI");
/// assert_eq!(scan.findings[0].severity, advisory_db::Severity::Critical);
/// # Ok::<(), scan_gate::Error>(())
/// ```
pub fn parse(bytes: &[u8]) -> Result<Scan> {
    // serde would read a struct from an array too; Trivy writes an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::TrivyReport("not a JSON object".into()));
    }
    let report: Report =
        serde_json::from_slice(bytes).map_err(|e| Error::TrivyReport(e.to_string()))?;
    let os = report.metadata.os.as_ref();
    let mut findings: Vec<Finding> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for result in report.results {
        let eco = ecosystem(&result.kind, &result.class, os);
        for v in result.vulnerabilities {
            if v.vulnerability_id.is_empty() || v.pkg_name.is_empty() {
                return Err(Error::TrivyReport(format!(
                    "{}: a vulnerability without VulnerabilityID or PkgName",
                    result.target
                )));
            }
            let key = (
                eco.clone(),
                v.pkg_name.clone(),
                v.installed_version.clone(),
                v.vulnerability_id.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            let severity = match v.severity.as_deref() {
                None | Some("UNKNOWN") => Severity::Unknown,
                Some(s) => s.parse().map_err(|()| {
                    Error::TrivyReport(format!(
                        "{}: severity `{s}` of {} is not one Trivy writes",
                        result.target, v.vulnerability_id
                    ))
                })?,
            };
            let score = v.cvss.as_ref().and_then(|c| {
                c.get("nvd")
                    .and_then(|n| n.v3_score)
                    .or_else(|| c.values().find_map(|n| n.v3_score))
            });
            let mut aliases = v.vendor_ids;
            aliases.retain(|a| *a != v.vulnerability_id);
            findings.push(Finding {
                package: v.pkg_name,
                ecosystem: eco.clone(),
                installed: v.installed_version,
                advisory_package: None,
                fixed: v.fixed_version.filter(|f| !f.is_empty()),
                id: v.vulnerability_id,
                aliases,
                severity,
                score: score.filter(|s| s.is_finite() && (0.0..=10.0).contains(s)),
                layer: v.layer.and_then(|l| l.digest),
                path: v.pkg_path.filter(|p| !p.is_empty()),
                summary: v.title,
            });
        }
    }
    sort(&mut findings);
    Ok(Scan {
        image: None,
        scanner: "trivy".into(),
        findings,
        notes: Vec::new(),
    })
}

/// What Trivy scans.
#[derive(Clone, Debug)]
pub enum Target {
    /// An image in a registry, by reference.
    Registry(String),
    /// An OCI image layout directory (`trivy image --input DIR`).
    Layout(PathBuf),
}

/// The `trivy` on PATH, if any.
///
/// ```
/// if scan_gate::trivy::find().is_none() {
///     assert!(matches!(
///         scan_gate::trivy::run(&scan_gate::trivy::Target::Registry("alpine:3.19".into())),
///         Err(scan_gate::Error::TrivyNotFound)
///     ));
/// }
/// ```
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("trivy"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `trivy image --format json --quiet` on `target` with the `trivy`
/// on PATH ([`Error::TrivyNotFound`] without one) and maps its report
/// ([`parse`]); a report over [`MAX_REPORT_BYTES`] is refused.
///
/// ```no_run
/// use scan_gate::trivy::{Target, run};
/// let scan = run(&Target::Layout("/tmp/app-layout".into()))?;
/// println!("{} findings", scan.findings.len());
/// # Ok::<(), scan_gate::Error>(())
/// ```
pub fn run(target: &Target) -> Result<Scan> {
    use std::io::Read;
    let trivy = find().ok_or(Error::TrivyNotFound)?;
    let mut command = Command::new(&trivy);
    command.args(["image", "--format", "json", "--quiet"]);
    match target {
        Target::Registry(r) => command.arg(r),
        Target::Layout(dir) => command.arg("--input").arg(dir),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Trivy(format!("start {}: {e}", trivy.display())))?;
    let stderr = child.stderr.take().expect("piped");
    // Read stderr beside stdout so neither pipe fills and stalls Trivy.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.take(64 << 10).read_to_string(&mut text);
        text
    });
    let mut report = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("piped")
        .take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut report);
    if read.is_err() || report.len() as u64 > MAX_REPORT_BYTES {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::Trivy(format!("wait: {e}")))?;
    let errors = errors.join().unwrap_or_default();
    read.map_err(|e| Error::Trivy(format!("read its report: {e}")))?;
    if report.len() as u64 > MAX_REPORT_BYTES {
        return Err(Error::Trivy(format!(
            "its report is larger than {MAX_REPORT_BYTES} bytes"
        )));
    }
    if !status.success() {
        return Err(Error::Trivy(format!(
            "{status}: {}",
            errors.trim().lines().last().unwrap_or("no message")
        )));
    }
    parse(&report)
}
