//! The vulnerability gate: an image's findings, a policy's decision, and
//! the reports people and CI read.
//!
//! - **Findings** ([`findings`]): an [`image_scan::Inventory`] joined with
//!   an [`advisory_db::Database`]. Debian packages are looked up in the
//!   `Debian:<major>` ecosystem named by the image's `os-release` (by
//!   source package and version, as Debian's advisories name them), Alpine
//!   packages in `Alpine:v<major>.<minor>`, Python distributions in
//!   `PyPI`. One finding per (package, advisory): a package found twice
//!   (two copies of a distribution's metadata) or matched through both
//!   `Debian:12` and `Debian` is reported once. [`trivy::parse`] maps
//!   Trivy's JSON report into the same findings.
//! - **Policy** ([`Policy`]): by default any CRITICAL finding rejects, a
//!   HIGH one warns, others pass; a TOML file can say which severities
//!   reject and warn, and ignore advisories (by id or alias), each with a
//!   reason and an expiry date. An expired ignore no longer applies and
//!   the verdict says so.
//! - **Reports** ([`report`]): a table sorted by severity then package,
//!   a JSON document with the `vulnerabilities: {critical, high, warnings}`
//!   summary, and SARIF 2.1.0 for code-scanning tools.
//!
//! ```
//! use advisory_db::{Database, Limits, import};
//! use image_scan::{Ecosystem, Inventory, Package};
//! use scan_gate::{Decision, Policy, findings};
//!
//! let src = tempfile::tempdir()?;
//! std::fs::write(src.path().join("GHSA-8q59-q68h-6hv4.json"), r#"{
//!   "id": "GHSA-8q59-q68h-6hv4", "aliases": ["CVE-2020-14343"],
//!   "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"},
//!     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
//!   "database_specific": {"severity": "CRITICAL"}}"#)?;
//! let store = tempfile::tempdir()?;
//! import(src.path(), store.path(), &Limits::default())?;
//! let db = Database::open(store.path())?;
//!
//! let layer = "sha256:0000000000000000000000000000000000000000000000000000000000000000".parse()?;
//! let inventory = Inventory {
//!     packages: vec![Package {
//!         ecosystem: Ecosystem::Python,
//!         name: "PyYAML".into(),
//!         version: "5.3.1".into(),
//!         arch: None,
//!         source: None,
//!         license: None,
//!         path: "usr/lib/python3/dist-packages/PyYAML-5.3.1.egg-info/PKG-INFO".into(),
//!         layer,
//!     }],
//!     ..Inventory::default()
//! };
//! let scan = findings(&inventory, &db)?;
//! assert_eq!(scan.findings[0].fixed.as_deref(), Some("5.4"));
//!
//! let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
//! let verdict = Policy::default().judge(scan, today);
//! assert_eq!(verdict.decision, Decision::Reject);
//! assert_eq!(verdict.summary().warnings, ["PyYAML 5.3.1 has CRITICAL CVE-2020-14343"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod policy;
pub mod report;
pub mod trivy;

use std::collections::BTreeSet;

use advisory_db::{Database, Severity};
use image_scan::{Distro, Ecosystem, Inventory};
use serde::{Deserialize, Serialize};

pub use policy::{Action, Decision, Ignore, Judged, Policy, Summary, Tally, Verdict};

/// Why findings could not be made, a policy not read, or Trivy's report
/// not used. Each names what it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The advisory database failed a lookup.
    #[error("advisory database: {0}")]
    Database(#[from] advisory_db::Error),
    /// The policy file could not be read.
    #[error("policy {path}: {source}")]
    PolicyRead {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The policy is not valid TOML of the policy's shape.
    #[error("policy {path}: {message}")]
    PolicySyntax {
        /// The file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An ignore entry without a `reason` (or an empty one).
    #[error("policy {path}: ignore of {id} has no reason: say why it is safe to ignore")]
    IgnoreWithoutReason {
        /// The file.
        path: String,
        /// The advisory id it names.
        id: String,
    },
    /// An ignore entry without an `expires` date.
    #[error("policy {path}: ignore of {id} has no expires date (YYYY-MM-DD)")]
    IgnoreWithoutExpiry {
        /// The file.
        path: String,
        /// The advisory id it names.
        id: String,
    },
    /// An `expires` that is not a calendar date.
    #[error("policy {path}: ignore of {id}: expires `{value}` is not a date (YYYY-MM-DD)")]
    BadExpiry {
        /// The file.
        path: String,
        /// The advisory id it names.
        id: String,
        /// What was written.
        value: String,
    },
    /// A severity name that is not one of the five.
    #[error("policy {path}: `{value}` is not a severity (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN)")]
    BadSeverity {
        /// The file.
        path: String,
        /// What was written.
        value: String,
    },
    /// A severity listed under both `reject` and `warn`.
    #[error("policy {path}: {severity} is listed under both reject and warn")]
    SeverityTwice {
        /// The file.
        path: String,
        /// The severity.
        severity: Severity,
    },
    /// An ignore entry whose id is empty or listed twice.
    #[error("policy {path}: ignore id `{id}` is empty or listed twice")]
    BadIgnoreId {
        /// The file.
        path: String,
        /// The id.
        id: String,
    },
    /// Trivy's report is not the JSON Trivy writes.
    #[error("trivy report: {0}")]
    TrivyReport(String),
    /// `--scanner trivy` without a `trivy` binary on PATH.
    #[error(
        "no `trivy` binary on PATH: install Trivy, or scan with hoist's own matcher (--scanner hoist)"
    )]
    TrivyNotFound,
    /// Trivy could not be started, or failed.
    #[error("trivy: {0}")]
    Trivy(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One advisory affecting one installed package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The installed package's name as its database spells it.
    pub package: String,
    /// The OSV ecosystem it was matched in (`PyPI`, `Debian:12`).
    pub ecosystem: String,
    /// Its installed version.
    pub installed: String,
    /// The package the advisory names when it differs (a Debian source
    /// package: `glibc` for `libc6`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advisory_package: Option<String>,
    /// The smallest fixed version, when the advisory names one.
    pub fixed: Option<String>,
    /// The advisory's id (`GHSA-…`, `DSA-…`, `CVE-…`).
    pub id: String,
    /// Its other ids (CVE ids among them).
    pub aliases: Vec<String>,
    /// Its severity.
    pub severity: Severity,
    /// The CVSS base score behind the severity, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The layer that installed the package.
    pub layer: Option<String>,
    /// The package's record file in the image, relative to the root.
    pub path: Option<String>,
    /// The advisory's one-line summary.
    pub summary: Option<String>,
}

impl Finding {
    /// The id people know it by: its CVE id when it has one, else its own.
    ///
    /// ```
    /// # let f = scan_gate::Finding { package: "PyYAML".into(), ecosystem: "PyPI".into(),
    /// #   installed: "5.3.1".into(), advisory_package: None, fixed: None,
    /// #   id: "GHSA-8q59-q68h-6hv4".into(), aliases: vec!["CVE-2020-14343".into()],
    /// #   severity: advisory_db::Severity::Critical, score: None, layer: None, path: None, summary: None };
    /// assert_eq!(f.display_id(), "CVE-2020-14343");
    /// ```
    pub fn display_id(&self) -> &str {
        if self.id.starts_with("CVE-") {
            return &self.id;
        }
        self.aliases
            .iter()
            .find(|a| a.starts_with("CVE-"))
            .unwrap_or(&self.id)
    }

    /// Whether `id` names this advisory (its id or an alias, any case).
    ///
    /// ```
    /// # let f = scan_gate::Finding { package: "PyYAML".into(), ecosystem: "PyPI".into(),
    /// #   installed: "5.3.1".into(), advisory_package: None, fixed: None,
    /// #   id: "GHSA-8q59-q68h-6hv4".into(), aliases: vec!["CVE-2020-14343".into()],
    /// #   severity: advisory_db::Severity::Critical, score: None, layer: None, path: None, summary: None };
    /// assert!(f.is_named("cve-2020-14343"));
    /// assert!(!f.is_named("CVE-2020-1747"));
    /// ```
    pub fn is_named(&self, id: &str) -> bool {
        self.id.eq_ignore_ascii_case(id) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    }
}

/// The findings of one image, and what could not be checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scan {
    /// The image, when known.
    pub image: Option<image_scan::ImageInfo>,
    /// Who matched: `hoist` or `trivy`.
    pub scanner: String,
    /// Sorted by severity (most severe first), then package and id.
    pub findings: Vec<Finding>,
    /// Packages that could not be checked, and why (no distribution to
    /// name their ecosystem, for one).
    pub notes: Vec<String>,
}

/// The OSV ecosystem of a distribution's packages: `Debian:12`,
/// `Ubuntu:22.04`, `Alpine:v3.19`. `None` when the distribution or its
/// release is not known (testing and unstable have no `VERSION_ID`).
///
/// ```
/// use image_scan::Distro;
/// let d = |id: &str, v: &str| Distro { id: id.into(), version_id: Some(v.into()) };
/// assert_eq!(scan_gate::distro_ecosystem(&d("debian", "12")).as_deref(), Some("Debian:12"));
/// assert_eq!(scan_gate::distro_ecosystem(&d("alpine", "3.19.1")).as_deref(), Some("Alpine:v3.19"));
/// ```
pub fn distro_ecosystem(distro: &Distro) -> Option<String> {
    let version = distro.version_id.as_deref()?;
    match distro.id.as_str() {
        "debian" => Some(format!("Debian:{}", version.split('.').next()?)),
        "ubuntu" => Some(format!("Ubuntu:{version}")),
        "alpine" => {
            let mut parts = version.split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            Some(format!("Alpine:v{major}.{minor}"))
        }
        _ => None,
    }
}

/// The findings of `inventory` in `db` (see the crate documentation).
pub fn findings(inventory: &Inventory, db: &Database) -> Result<Scan> {
    let distro = inventory.distro.as_ref().and_then(distro_ecosystem);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut unchecked = 0usize;
    for p in &inventory.packages {
        let ecosystem = match p.ecosystem {
            Ecosystem::Python => "PyPI".to_owned(),
            Ecosystem::Deb | Ecosystem::Apk => match &distro {
                Some(e) => e.clone(),
                None => {
                    unchecked += 1;
                    continue;
                }
            },
        };
        let debian = p.ecosystem == Ecosystem::Deb;
        let query = advisory_db::Package {
            ecosystem: ecosystem.clone(),
            name: p.name.clone(),
            version: p.version.clone(),
            source_name: p.source.as_ref().filter(|_| debian).map(|s| s.name.clone()),
            source_version: p
                .source
                .as_ref()
                .filter(|_| debian)
                .map(|s| s.version.clone()),
        };
        for f in db.check(&query)? {
            let key = (ecosystem.clone(), p.name.clone(), f.advisory.id.clone());
            if !seen.insert(key) {
                continue;
            }
            out.push(Finding {
                package: p.name.clone(),
                ecosystem: ecosystem.clone(),
                installed: p.version.clone(),
                advisory_package: (f.package != p.name && debian).then_some(f.package),
                fixed: f.fixed,
                id: f.advisory.id,
                aliases: f.advisory.aliases,
                severity: f.advisory.severity,
                score: f.advisory.cvss.map(|c| c.score),
                layer: Some(p.layer.to_string()),
                path: Some(p.path.clone()),
                summary: f.advisory.summary,
            });
        }
    }
    sort(&mut out);
    let mut notes = Vec::new();
    if unchecked > 0 {
        let why = match &inventory.distro {
            None => "the image has no os-release to name their distribution".to_owned(),
            Some(d) => format!(
                "no advisory ecosystem for distribution `{}` {}",
                d.id,
                d.version_id.as_deref().unwrap_or("(no VERSION_ID)")
            ),
        };
        notes.push(format!(
            "{unchecked} system package{} not checked: {why}",
            if unchecked == 1 { "" } else { "s" }
        ));
    }
    Ok(Scan {
        image: inventory.image.clone(),
        scanner: "hoist".into(),
        findings: out,
        notes,
    })
}

/// Today's date in UTC: the day ignores' expiry dates are compared with.
///
/// ```
/// let verdict = scan_gate::Policy::default().judge(scan_gate::Scan::default(), scan_gate::today_utc());
/// assert_eq!(verdict.decision, scan_gate::Decision::Pass);
/// ```
pub fn today_utc() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Most severe first, then by package, version and advisory id.
pub(crate) fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.to_lowercase().cmp(&b.package.to_lowercase()))
            .then_with(|| a.installed.cmp(&b.installed))
            .then_with(|| a.id.cmp(&b.id))
    });
}
