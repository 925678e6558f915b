//! The policy: which severities reject and warn, which advisories are
//! ignored and until when; and its verdict on a scan.

use std::collections::BTreeSet;
use std::path::Path;

use advisory_db::Severity;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{Error, Finding, Result, Scan};

/// Largest policy file read: a policy is a few lines.
const MAX_POLICY_BYTES: u64 = 1 << 20;

/// What a policy does with findings (see the crate documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Severities whose findings reject the image.
    pub reject: BTreeSet<Severity>,
    /// Severities whose findings warn (and let the image through).
    pub warn: BTreeSet<Severity>,
    /// Advisories not held against the image, until their expiry.
    pub ignore: Vec<Ignore>,
}

impl Default for Policy {
    /// Any CRITICAL rejects, HIGH warns, the others pass.
    fn default() -> Self {
        Policy {
            reject: [Severity::Critical].into(),
            warn: [Severity::High].into(),
            ignore: Vec::new(),
        }
    }
}

/// An advisory the policy ignores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignore {
    /// The advisory's id or one of its aliases (`CVE-2020-14343`).
    pub id: String,
    /// Why it is safe to ignore.
    pub reason: String,
    /// The last day it applies (UTC); from the day after, it no longer does.
    pub expires: NaiveDate,
}

/// The policy file's shape, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    reject: Option<Vec<String>>,
    warn: Option<Vec<String>>,
    #[serde(default)]
    ignore: Vec<RawIgnore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIgnore {
    id: String,
    reason: Option<String>,
    expires: Option<RawDate>,
}

/// `expires = 2027-01-31` (a TOML date) or `expires = "2027-01-31"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDate {
    Date(toml::value::Datetime),
    Text(String),
}

impl Policy {
    /// Reads a policy file (see [`Policy::parse`]), at most 1 MiB.
    ///
    /// ```no_run
    /// let policy = scan_gate::Policy::load("policy.toml".as_ref())?;
    /// # Ok::<(), scan_gate::Error>(())
    /// ```
    pub fn load(path: &Path) -> Result<Policy> {
        use std::io::Read;
        let name = path.display().to_string();
        let read_error = |source| Error::PolicyRead {
            path: name.clone(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_error)?
            .take(MAX_POLICY_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_POLICY_BYTES {
            return Err(Error::PolicySyntax {
                path: name,
                message: format!("larger than {MAX_POLICY_BYTES} bytes"),
            });
        }
        Policy::parse(&text, &name)
    }

    /// Parses a policy written in TOML; `origin` names it in errors.
    /// `reject` and `warn` replace the defaults when given; every ignore
    /// needs a `reason` and an `expires` date.
    ///
    /// ```
    /// use advisory_db::Severity;
    ///
    /// let policy = scan_gate::Policy::parse(r#"
    /// reject = ["CRITICAL", "HIGH"]
    /// warn = ["MEDIUM"]
    ///
    /// [[ignore]]
    /// id = "CVE-2020-14343"
    /// reason = "yaml.load is never given untrusted input"
    /// expires = 2027-01-31
    /// "#, "policy.toml")?;
    /// assert!(policy.reject.contains(&Severity::High));
    /// assert_eq!(policy.ignore[0].expires.to_string(), "2027-01-31");
    ///
    /// let missing = scan_gate::Policy::parse("[[ignore]]\nid = \"CVE-1\"\nexpires = 2027-01-01\n", "p.toml");
    /// assert!(matches!(missing, Err(scan_gate::Error::IgnoreWithoutReason { .. })));
    /// # Ok::<(), scan_gate::Error>(())
    /// ```
    pub fn parse(text: &str, origin: &str) -> Result<Policy> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| Error::PolicySyntax {
            path: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let severities = |names: Option<Vec<String>>, default: BTreeSet<Severity>| {
            let Some(names) = names else {
                return Ok(default);
            };
            names
                .iter()
                .map(|n| {
                    if n.trim().eq_ignore_ascii_case("UNKNOWN") {
                        return Ok(Severity::Unknown);
                    }
                    n.parse::<Severity>().map_err(|()| Error::BadSeverity {
                        path: origin.to_owned(),
                        value: n.clone(),
                    })
                })
                .collect::<Result<BTreeSet<_>>>()
        };
        let defaults = Policy::default();
        let reject = severities(raw.reject, defaults.reject)?;
        let warn = severities(raw.warn, defaults.warn)?;
        if let Some(s) = reject.intersection(&warn).next() {
            return Err(Error::SeverityTwice {
                path: origin.to_owned(),
                severity: *s,
            });
        }
        let mut ids = BTreeSet::new();
        let mut ignore = Vec::new();
        for entry in raw.ignore {
            let id = entry.id.trim().to_owned();
            if id.is_empty() || !ids.insert(id.to_ascii_uppercase()) {
                return Err(Error::BadIgnoreId {
                    path: origin.to_owned(),
                    id,
                });
            }
            let reason = match entry.reason.map(|r| r.trim().to_owned()) {
                Some(r) if !r.is_empty() => r,
                _ => {
                    return Err(Error::IgnoreWithoutReason {
                        path: origin.to_owned(),
                        id,
                    });
                }
            };
            let Some(raw_date) = entry.expires else {
                return Err(Error::IgnoreWithoutExpiry {
                    path: origin.to_owned(),
                    id,
                });
            };
            let expires = date(&raw_date).ok_or_else(|| Error::BadExpiry {
                path: origin.to_owned(),
                id: id.clone(),
                value: match &raw_date {
                    RawDate::Date(d) => d.to_string(),
                    RawDate::Text(t) => t.clone(),
                },
            })?;
            ignore.push(Ignore {
                id,
                reason,
                expires,
            });
        }
        Ok(Policy {
            reject,
            warn,
            ignore,
        })
    }

    /// The verdict on `scan` on the day `today` (UTC): each finding's
    /// action, the decision, the counts. An ignore that expired before
    /// `today` does not apply; the verdict lists it.
    pub fn judge(&self, scan: Scan, today: NaiveDate) -> Verdict {
        let mut expired: Vec<Ignore> = Vec::new();
        let mut findings = Vec::with_capacity(scan.findings.len());
        for finding in scan.findings {
            let ignore = self.ignore.iter().find(|i| finding.is_named(&i.id));
            let by_severity = if self.reject.contains(&finding.severity) {
                Action::Reject
            } else if self.warn.contains(&finding.severity) {
                Action::Warn
            } else {
                Action::Pass
            };
            let (action, ignored) = match ignore {
                Some(i) if i.expires >= today => (Action::Ignored, Some(i.clone())),
                Some(i) => {
                    if !expired.contains(i) {
                        expired.push(i.clone());
                    }
                    (by_severity, Some(i.clone()))
                }
                None => (by_severity, None),
            };
            findings.push(Judged {
                finding,
                action,
                ignore: ignored,
            });
        }
        let decision = if findings.iter().any(|j| j.action == Action::Reject) {
            Decision::Reject
        } else if findings.iter().any(|j| j.action == Action::Warn) {
            Decision::Warn
        } else {
            Decision::Pass
        };
        let mut tally = Tally::default();
        for j in &findings {
            if j.action == Action::Ignored {
                tally.ignored += 1;
                continue;
            }
            match j.finding.severity {
                Severity::Critical => tally.critical += 1,
                Severity::High => tally.high += 1,
                Severity::Medium => tally.medium += 1,
                Severity::Low => tally.low += 1,
                Severity::Unknown => tally.unknown += 1,
            }
        }
        Verdict {
            image: scan.image,
            scanner: scan.scanner,
            decision,
            tally,
            findings,
            expired_ignores: expired,
            notes: scan.notes,
        }
    }
}

fn date(raw: &RawDate) -> Option<NaiveDate> {
    match raw {
        RawDate::Date(d) => {
            if d.time.is_some() || d.offset.is_some() {
                return None;
            }
            let d = d.date?;
            NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        }
        RawDate::Text(t) => NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").ok(),
    }
}

/// What the policy does with one finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Its severity rejects the image.
    Reject,
    /// Its severity warns.
    Warn,
    /// Its severity neither rejects nor warns.
    Pass,
    /// An ignore in force names it.
    Ignored,
}

/// The policy's decision on an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Nothing rejects or warns.
    Pass,
    /// Something warns, nothing rejects: the image goes on.
    Warn,
    /// Something rejects: the image must not be pushed or run.
    Reject,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Pass => "pass",
            Decision::Warn => "warn",
            Decision::Reject => "reject",
        })
    }
}

/// A finding and what the policy does with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// The policy's action.
    pub action: Action,
    /// The ignore entry that names it, in force or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore: Option<Ignore>,
}

/// Findings by severity, ignored ones counted apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// CRITICAL findings not ignored.
    pub critical: u64,
    /// HIGH findings not ignored.
    pub high: u64,
    /// MEDIUM findings not ignored.
    pub medium: u64,
    /// LOW findings not ignored.
    pub low: u64,
    /// Findings of unknown severity not ignored.
    pub unknown: u64,
    /// Findings an ignore in force names.
    pub ignored: u64,
}

/// The policy's verdict on a scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The image, when known.
    pub image: Option<image_scan::ImageInfo>,
    /// Who matched: `hoist` or `trivy`.
    pub scanner: String,
    /// Pass, warn or reject.
    pub decision: Decision,
    /// Counts by severity.
    pub tally: Tally,
    /// Every finding with its action, most severe first.
    pub findings: Vec<Judged>,
    /// Ignores that named a finding but had expired: they no longer apply.
    pub expired_ignores: Vec<Ignore>,
    /// Packages that could not be checked, and why.
    pub notes: Vec<String>,
}

/// The short summary a build record carries: counts and one line per
/// finding that rejects or warns, and per expired ignore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// CRITICAL findings not ignored.
    pub critical: u64,
    /// HIGH findings not ignored.
    pub high: u64,
    /// `PyYAML 5.3.1 has CRITICAL CVE-2020-14343`, most severe first.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// The summary (see [`Summary`]).
    pub fn summary(&self) -> Summary {
        let mut warnings: Vec<String> = self
            .findings
            .iter()
            .filter(|j| matches!(j.action, Action::Reject | Action::Warn))
            .map(|j| {
                format!(
                    "{} {} has {} {}",
                    j.finding.package,
                    j.finding.installed,
                    j.finding.severity,
                    j.finding.display_id()
                )
            })
            .collect();
        warnings.extend(
            self.expired_ignores
                .iter()
                .map(|i| format!("ignore of {} expired on {}", i.id, i.expires)),
        );
        Summary {
            critical: self.tally.critical,
            high: self.tally.high,
            warnings,
        }
    }
}
