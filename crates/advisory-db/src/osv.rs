//! OSV records (<https://ossf.github.io/osv-schema/>): the parts matching
//! needs, read from untrusted JSON.

use serde::{Deserialize, Deserializer, Serialize};

use crate::cvss4::cvss4_base_score;
use crate::severity::{Severity, cvss3_base_score};
use crate::version::Ecosystem;

/// The largest advisory id, package name, ecosystem or version kept.
const MAX_FIELD: usize = 1024;

/// One `affected[].ranges[].events[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The first affected version (`"0"`: since the beginning).
    Introduced(String),
    /// The first version no longer affected.
    Fixed(String),
    /// The last affected version.
    LastAffected(String),
    /// Versions at or above are outside the range.
    Limit(String),
}

/// How a range's versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeKind {
    /// The ecosystem's own ordering (PEP 440, dpkg, apk).
    Ecosystem,
    /// Semantic versioning 2.0.0.
    Semver,
    /// Git commits (never matched: installed packages carry versions).
    #[serde(other)]
    Git,
}

/// One `affected[].ranges[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// `ECOSYSTEM`, `SEMVER` or `GIT` (any other type reads as `GIT`:
    /// kept, never matched).
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// The events, in the record's order.
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<Event>,
}

/// An advisory as the database keeps it: what a report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// `GHSA-…`, `PYSEC-…`, `DSA-…`, `CVE-…`.
    pub id: String,
    /// Other ids of the same vulnerability (CVE ids among them).
    pub aliases: Vec<String>,
    /// One line, when the record has one.
    pub summary: Option<String>,
    /// RFC 3339 time of the record's last change.
    pub modified: String,
    /// As Trivy decides: the record's own rating, else its CVSS v4.0
    /// score, else its CVSS v3 score.
    pub severity: Severity,
    /// The CVSS vector scored (v4.0 when one scores above zero, else
    /// v3.x), with its score.
    pub cvss: Option<Cvss>,
}

/// A scored CVSS vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// `CVSS:3.1/AV:N/…` or `CVSS:4.0/AV:N/…`.
    pub vector: String,
    /// Its score, 0.0–10.0 (v3.x: the base score; v4.0: with the threat
    /// and environmental metrics the vector has).
    pub score: f64,
}

/// One affected package of an advisory, with the advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The advisory.
    pub advisory: Advisory,
    /// The OSV ecosystem, as written (`PyPI`, `Debian:12`).
    pub ecosystem: String,
    /// The package name, as written.
    pub name: String,
    /// Its ranges.
    pub ranges: Vec<Range>,
    /// Explicitly listed affected versions.
    pub versions: Vec<String>,
}

/// A parsed record: its advisory and what it affects. Withdrawn records
/// parse with `withdrawn` set and are skipped by the importer.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The advisory.
    pub advisory: Advisory,
    /// When the record was withdrawn, if it was.
    pub withdrawn: Option<String>,
    /// Each affected package (records without a package are dropped: they
    /// describe git commits only).
    pub affected: Vec<Affected>,
}

/// Why a record was refused (the importer adds the file's name).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or not an OSV record's shape (including nesting deeper
    /// than serde_json's limit of 128).
    #[error("not an OSV record: {0}")]
    Json(#[from] serde_json::Error),
    /// A field outside what OSV allows.
    #[error("invalid OSV record: {0}")]
    Invalid(String),
}

fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    #[serde(default, deserialize_with = "null_default")]
    modified: String,
    #[serde(default, deserialize_with = "null_default")]
    withdrawn: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    aliases: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    summary: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    severity: Vec<RawSeverity>,
    #[serde(default, deserialize_with = "null_default")]
    affected: Vec<RawAffected>,
    #[serde(default)]
    database_specific: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default, deserialize_with = "null_default")]
    package: Option<RawPackage>,
    #[serde(default, deserialize_with = "null_default")]
    ranges: Vec<Range>,
    #[serde(default, deserialize_with = "null_default")]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

fn check(what: &str, value: &str) -> Result<(), RecordError> {
    if value.is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(RecordError::Invalid(format!(
            "{what} {:?} is empty, longer than {MAX_FIELD} bytes or has control characters",
            value.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

impl Record {
    /// Parses one OSV JSON record. The caller bounds the size of `bytes`;
    /// nesting is bounded by serde_json.
    ///
    /// ```
    /// use advisory_db::{Record, Severity};
    ///
    /// let record = Record::parse(br#"{
    ///   "id": "GHSA-8q59-q68h-6hv4", "modified": "2024-01-01T00:00:00Z",
    ///   "aliases": ["CVE-2020-14343"],
    ///   "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"},
    ///     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
    ///   "database_specific": {"severity": "CRITICAL"}
    /// }"#)?;
    /// assert_eq!(record.advisory.severity, Severity::Critical);
    /// assert_eq!(record.affected[0].name, "PyYAML");
    /// # Ok::<(), advisory_db::RecordError>(())
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
        let raw: RawRecord = serde_json::from_slice(bytes)?;
        check("id", &raw.id)?;
        for alias in &raw.aliases {
            check("alias", alias)?;
        }
        // The highest-scoring vector of each version; a v4.0 one that
        // scores above zero wins over v3 (see `severity`'s docs).
        let mut v3: Option<Cvss> = None;
        let mut v4: Option<Cvss> = None;
        for s in &raw.severity {
            // CVSS v2 vectors are not scored (see the crate docs).
            let (best, scored) = match s.kind.as_str() {
                "CVSS_V3" => (&mut v3, cvss3_base_score(&s.score)),
                "CVSS_V4" => (&mut v4, cvss4_base_score(&s.score)),
                _ => continue,
            };
            if let Ok(score) = scored
                && best.as_ref().is_none_or(|c| score > c.score)
            {
                *best = Some(Cvss {
                    vector: s.score.clone(),
                    score,
                });
            }
        }
        let cvss = match (v4, v3) {
            (Some(v4), _) if v4.score > 0.0 => Some(v4),
            (v4, v3) => v3.or(v4),
        };
        let own = raw
            .database_specific
            .get("severity")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse::<Severity>().ok());
        let severity = own.unwrap_or_else(|| {
            cvss.as_ref()
                .map_or(Severity::Unknown, |c| Severity::from_score(c.score))
        });
        let summary = raw.summary.map(|s| {
            let line = s.lines().next().unwrap_or_default();
            line.chars().take(MAX_FIELD).collect::<String>()
        });
        let advisory = Advisory {
            id: raw.id,
            aliases: raw.aliases,
            summary,
            modified: raw.modified,
            severity,
            cvss,
        };
        let mut affected = Vec::new();
        for a in raw.affected {
            let Some(package) = a.package else { continue };
            check("ecosystem", &package.ecosystem)?;
            check("package name", &package.name)?;
            for range in &a.ranges {
                for event in &range.events {
                    let (Event::Introduced(v)
                    | Event::Fixed(v)
                    | Event::LastAffected(v)
                    | Event::Limit(v)) = event;
                    check("range version", v)?;
                }
            }
            for v in &a.versions {
                check("version", v)?;
            }
            affected.push(Affected {
                advisory: advisory.clone(),
                ecosystem: package.ecosystem,
                name: package.name,
                ranges: a.ranges,
                versions: a.versions,
            });
        }
        Ok(Record {
            advisory,
            withdrawn: raw.withdrawn,
            affected,
        })
    }
}

impl Affected {
    /// Whether this entry affects `version` of its package: `None` if not,
    /// else the smallest fixed version above it when one is known.
    ///
    /// ```
    /// use advisory_db::Record;
    ///
    /// let record = Record::parse(br#"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "a"},
    ///   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.2"}]}]}]}"#)?;
    /// let entry = &record.affected[0];
    /// assert_eq!(entry.affects("1.1"), Some(Some("1.2".to_owned())));
    /// assert_eq!(entry.affects("1.2"), None);
    /// # Ok::<(), advisory_db::RecordError>(())
    /// ```
    pub fn affects(&self, version: &str) -> Option<Option<String>> {
        let eco = Ecosystem::of(&self.ecosystem);
        let equal = |v: &String| match eco {
            Ecosystem::Other => v == version,
            _ => eco.compare(v, version) == Some(std::cmp::Ordering::Equal),
        };
        let mut hit = self.versions.iter().any(equal);
        let mut fixed: Option<String> = None;
        for range in &self.ranges {
            let cmp = |a: &str, b: &str| match range.kind {
                RangeKind::Ecosystem => eco.compare(a, b),
                RangeKind::Semver => crate::version::compare_semver(a, b),
                RangeKind::Git => None,
            };
            if let Some((true, fix)) = range_affects(range, version, &cmp) {
                hit = true;
                if let Some(f) = fix
                    && fixed
                        .as_deref()
                        .is_none_or(|best| cmp(&f, best) == Some(std::cmp::Ordering::Less))
                {
                    fixed = Some(f);
                }
            }
        }
        hit.then_some(fixed)
    }
}

/// OSV's evaluation of one range (the schema's `is_affected` and
/// `includes`): events sorted by version (`introduced: "0"` first), each
/// one at or below `v` switching the state. Also the fix: the first event
/// above `v`, when it is a `fixed` one. `None` when a version in the range
/// or `v` cannot be ordered.
fn range_affects(
    range: &Range,
    v: &str,
    cmp: &dyn Fn(&str, &str) -> Option<std::cmp::Ordering>,
) -> Option<(bool, Option<String>)> {
    use std::cmp::Ordering::{Greater, Less};
    let version_of = |e: &Event| -> Option<String> {
        match e {
            Event::Introduced(x) if x == "0" => None,
            Event::Introduced(x) | Event::Fixed(x) | Event::LastAffected(x) | Event::Limit(x) => {
                Some(x.clone())
            }
        }
    };
    let mut events: Vec<(Option<String>, &Event)> = Vec::with_capacity(range.events.len());
    for e in &range.events {
        let ver = version_of(e);
        if let Some(x) = &ver {
            cmp(x, x)?;
        }
        events.push((ver, e));
    }
    cmp(v, v)?;
    // Every version is comparable now, so the sort sees a total order.
    events.sort_by(|(a, _), (b, _)| match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => Less,
        (Some(_), None) => Greater,
        (Some(a), Some(b)) => cmp(a, b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let mut affected = false;
    let mut limits = Vec::new();
    let mut next: Option<&Event> = None;
    for (ver, e) in events {
        if next.is_none()
            && !matches!(e, Event::Limit(_))
            && ver.as_deref().is_some_and(|x| cmp(x, v) == Some(Greater))
        {
            next = Some(e);
        }
        let reached = |x: &str| cmp(v, x).is_some_and(|o| o != Less);
        match e {
            Event::Introduced(_) => {
                if ver.as_deref().is_none_or(reached) {
                    affected = true;
                }
            }
            Event::Fixed(x) => {
                if reached(x) {
                    affected = false;
                }
            }
            Event::LastAffected(x) => {
                if cmp(v, x) == Some(Greater) {
                    affected = false;
                }
            }
            Event::Limit(x) => limits.push(x),
        }
    }
    let within_limit = limits.is_empty()
        || limits
            .iter()
            .any(|l| l.as_str() == "*" || cmp(v, l) == Some(Less));
    let fix = match next {
        Some(Event::Fixed(x)) => Some(x.clone()),
        _ => None,
    };
    Some((affected && within_limit, fix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(eco: &str, ranges: serde_json::Value, versions: &[&str]) -> Affected {
        let json = serde_json::json!({
            "id": "TEST-1",
            "affected": [{"package": {"ecosystem": eco, "name": "p"}, "ranges": ranges, "versions": versions}],
        });
        let mut record = Record::parse(json.to_string().as_bytes()).unwrap();
        record.affected.remove(0)
    }

    #[test]
    fn ranges_as_the_osv_schema_evaluates_them() {
        let e = entry(
            "PyPI",
            serde_json::json!([{"type": "ECOSYSTEM", "events": [
                {"introduced": "2.0"}, {"fixed": "2.5"}, {"introduced": "1.0"}, {"last_affected": "1.2"}
            ]}]),
            &[],
        );
        for (v, want) in [
            ("0.9", None),
            ("1.0", Some(None)),
            ("1.2", Some(None)),
            ("1.2.post1", None),
            ("1.5", None),
            ("2.0", Some(Some("2.5".to_owned()))),
            ("2.5rc1", Some(Some("2.5".to_owned()))),
            ("2.5", None),
            ("3.0", None),
        ] {
            assert_eq!(e.affects(v), want, "{v}");
        }
    }

    #[test]
    fn limits_semver_and_explicit_versions() {
        let e = entry(
            "npm",
            serde_json::json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"limit": "1.4.0"}]}]),
            &["9.9.9"],
        );
        assert!(e.affects("1.3.9").is_some());
        assert!(e.affects("1.4.0").is_none());
        assert!(e.affects("9.9.9").is_some());
        // GIT ranges never match versions.
        let git = entry(
            "PyPI",
            serde_json::json!([{"type": "GIT", "repo": "x", "events": [{"introduced": "0"}]}]),
            &[],
        );
        assert!(git.affects("1.0").is_none());
        // Unorderable versions match nothing in a range.
        let pypi = entry(
            "PyPI",
            serde_json::json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]),
            &["1.0"],
        );
        assert!(pypi.affects("not-a-version").is_none());
        assert!(
            pypi.affects("1.0.0").is_some(),
            "explicit versions compare as PEP 440"
        );
    }

    #[test]
    fn refuses_bad_records() {
        for bad in [
            &b"{}"[..],
            b"[]",
            br#"{"id": ""}"#,
            br#"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "a\u0000"}}]}"#,
            br#"{"id": "X", "affected": [{"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}]}]}"#,
            br#"{"id": "X", "affected": [{"ranges": [{"type": "ECOSYSTEM", "events": [{"broken": "1"}]}]}]}"#,
        ] {
            assert!(Record::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!(
            "{{\"id\":\"X\",\"database_specific\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(Record::parse(deep.as_bytes()).is_err());
        // Nulls where OSV allows absence.
        let record =
            Record::parse(br#"{"id": "X", "aliases": null, "affected": null, "summary": null}"#)
                .unwrap();
        assert!(record.affected.is_empty());
    }

    #[test]
    fn severity_from_cvss_when_no_rating() {
        let record = Record::parse(
            br#"{"id": "DSA-5514-1", "severity": [
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]}"#,
        )
        .unwrap();
        // As Trivy: the v4.0 score wins over v3's.
        assert_eq!(record.advisory.severity, Severity::Critical);
        let cvss = record.advisory.cvss.unwrap();
        assert_eq!(cvss.score, 9.3);
        assert!(cvss.vector.starts_with("CVSS:4.0/"));
        // Only a v4.0 vector (E:U lowers it to 8.1): scored, the highest.
        let v4_only = Record::parse(
            br#"{"id": "GHSA-x", "severity": [
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U"},
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:L/AC:L/AT:P/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/bad"}]}"#,
        )
        .unwrap();
        assert_eq!(v4_only.advisory.severity, Severity::High);
        assert_eq!(v4_only.advisory.cvss.unwrap().score, 8.1);
        // A v4.0 score of 0.0 gives way to v3.
        let zero_v4 = Record::parse(
            br#"{"id": "GHSA-y", "severity": [
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N"},
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"}]}"#,
        )
        .unwrap();
        assert_eq!(zero_v4.advisory.severity, Severity::Medium);
        assert_eq!(zero_v4.advisory.cvss.unwrap().score, 5.3);
        let moderate =
            Record::parse(br#"{"id": "G", "database_specific": {"severity": "MODERATE"}}"#)
                .unwrap();
        assert_eq!(moderate.advisory.severity, Severity::Medium);
    }
}
