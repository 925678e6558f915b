//! Severity as Trivy decides it: the advisory's own rating when it has
//! one (GHSA's `database_specific.severity`), else the score of its CVSS
//! vectors in the CVSS score bands: a v4.0 score above zero first, else
//! the v3.x base score (the order of trivy-db's `detailToSeverity`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A severity level, ordered from `Unknown` to `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// No rating and no scorable vector (or a score of 0.0).
    Unknown,
    /// CVSS 0.1–3.9.
    Low,
    /// CVSS 4.0–6.9; GHSA's `MODERATE`.
    Medium,
    /// CVSS 7.0–8.9.
    High,
    /// CVSS 9.0–10.0.
    Critical,
}

impl Severity {
    /// The band of a CVSS base score (CVSS v3.1 specification, table 14).
    ///
    /// ```
    /// use advisory_db::Severity;
    ///
    /// assert_eq!(Severity::from_score(9.8), Severity::Critical);
    /// assert_eq!(Severity::from_score(7.0), Severity::High);
    /// assert_eq!(Severity::from_score(6.9), Severity::Medium);
    /// assert_eq!(Severity::from_score(0.1), Severity::Low);
    /// assert_eq!(Severity::from_score(0.0), Severity::Unknown);
    /// ```
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Unknown,
        }
    }
}

impl FromStr for Severity {
    type Err = ();

    /// Reads an advisory's own rating: `LOW`, `MODERATE` or `MEDIUM`,
    /// `HIGH`, `CRITICAL` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "LOW" => Ok(Severity::Low),
            "MODERATE" | "MEDIUM" => Ok(Severity::Medium),
            "HIGH" => Ok(Severity::High),
            "CRITICAL" => Ok(Severity::Critical),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        })
    }
}

/// The longest vector accepted, in bytes: a v4.0 vector with every
/// metric at its longest value is under 200.
pub(crate) const MAX_VECTOR_LEN: usize = 1024;

/// Why a CVSS vector was not scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    /// Not `CVSS:3.0/…` or `CVSS:3.1/…`.
    #[error("not a CVSS v3 vector (it must start with CVSS:3.0/ or CVSS:3.1/)")]
    Version,
    /// Not `CVSS:4.0/…`.
    #[error("not a CVSS v4.0 vector (it must start with CVSS:4.0/)")]
    NotVersion4,
    /// Longer than any valid vector.
    #[error("CVSS vector of {len} bytes is longer than the {limit}-byte limit")]
    TooLong {
        /// The vector's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A field that is not `NAME:VALUE` (an empty one among them), or a
    /// value its metric does not have.
    #[error("bad CVSS metric {0:?}")]
    Metric(String),
    /// A metric name this CVSS version does not define.
    #[error("unknown CVSS metric {0:?}")]
    Unknown(String),
    /// A metric given twice.
    #[error("CVSS metric {0} is given twice")]
    Duplicate(&'static str),
    /// A base metric is missing.
    #[error("CVSS base metric {0} is missing")]
    Missing(&'static str),
}

/// The CVSS v3.1 base score of a `CVSS:3.x/…` vector (v3.0 vectors are
/// scored with the v3.1 formula, as Trivy and NVD do). Temporal and
/// environmental metrics are checked for form and left out of the base
/// score.
///
/// ```
/// use advisory_db::cvss3_base_score;
///
/// // CVE-2020-14343 (PyYAML full_load): 9.8.
/// assert_eq!(cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), Ok(9.8));
/// assert!(cvss3_base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P").is_err());
/// ```
pub fn cvss3_base_score(vector: &str) -> Result<f64, CvssError> {
    if vector.len() > MAX_VECTOR_LEN {
        return Err(CvssError::TooLong {
            len: vector.len(),
            limit: MAX_VECTOR_LEN,
        });
    }
    let rest = vector
        .strip_prefix("CVSS:3.1/")
        .or_else(|| vector.strip_prefix("CVSS:3.0/"))
        .ok_or(CvssError::Version)?;
    const BASE: [&str; 8] = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"];
    const OTHER: [&str; 14] = [
        "E", "RL", "RC", "CR", "IR", "AR", "MAV", "MAC", "MPR", "MUI", "MS", "MC", "MI", "MA",
    ];
    let mut base: [Option<u8>; 8] = [None; 8];
    let mut seen_other = [false; 14];
    for metric in rest.split('/') {
        let bad = || CvssError::Metric(metric.chars().take(32).collect());
        let (name, value) = metric.split_once(':').ok_or_else(bad)?;
        let mut value_chars = value.chars();
        let (Some(v), None) = (value_chars.next(), value_chars.next()) else {
            return Err(bad());
        };
        if let Some(i) = BASE.iter().position(|n| *n == name) {
            let allowed = match name {
                "AV" => "NALP",
                "AC" => "LH",
                "PR" | "C" | "I" | "A" => "NLH",
                "UI" => "NR",
                _ => "UC",
            };
            if base[i].is_some() {
                return Err(CvssError::Duplicate(BASE[i]));
            }
            if !allowed.contains(v) {
                return Err(bad());
            }
            base[i] = Some(v as u8);
        } else if let Some(i) = OTHER.iter().position(|n| *n == name) {
            if seen_other[i] {
                return Err(CvssError::Duplicate(OTHER[i]));
            }
            if !v.is_ascii_uppercase() {
                return Err(bad());
            }
            seen_other[i] = true;
        } else {
            return Err(CvssError::Unknown(name.chars().take(32).collect()));
        }
    }
    let mut m = [0u8; 8];
    for (i, slot) in base.iter().enumerate() {
        m[i] = slot.ok_or(CvssError::Missing(BASE[i]))?;
    }
    let [av, ac, pr, ui, s, c, i, a] = m;
    let changed = s == b'C';
    let av = match av {
        b'N' => 0.85,
        b'A' => 0.62,
        b'L' => 0.55,
        _ => 0.2,
    };
    let ac = if ac == b'L' { 0.77 } else { 0.44 };
    let pr = match (pr, changed) {
        (b'N', _) => 0.85,
        (b'L', false) => 0.62,
        (b'L', true) => 0.68,
        (_, false) => 0.27,
        (_, true) => 0.5,
    };
    let ui = if ui == b'N' { 0.85 } else { 0.62 };
    let cia = |x: u8| match x {
        b'H' => 0.56,
        b'L' => 0.22,
        _ => 0.0,
    };
    let iss = 1.0 - (1.0 - cia(c)) * (1.0 - cia(i)) * (1.0 - cia(a));
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Ok(0.0);
    }
    let sum = if changed {
        1.08 * (impact + exploitability)
    } else {
        impact + exploitability
    };
    Ok(roundup(sum.min(10.0)))
}

/// CVSS v3.1's `Roundup` (appendix A): the smallest one-decimal number not
/// below `x`, computed on integers so that 4.000000001 is not 4.1.
fn roundup(x: f64) -> f64 {
    let int = (x * 100_000.0).round() as i64;
    if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_known_vectors() {
        // Vectors and base scores from FIRST's CVSS v3.1 examples document
        // and NVD.
        for (vector, score) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1), // CVE-2013-1937
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4), // CVE-2013-0375
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1), // CVE-2014-3566 POODLE
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5), // CVE-2014-0160 Heartbleed
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0), // CVE-2021-44228 Log4Shell
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8), // CVE-2023-4911 glibc
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8), // CVE-2020-14343 PyYAML
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 5.3),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            // Temporal metrics do not change the base score.
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N/E:P/RL:O/RC:C",
                7.5,
            ),
        ] {
            assert_eq!(cvss3_base_score(vector), Ok(score), "{vector}");
        }
    }

    #[test]
    fn refuses_malformed_vectors() {
        assert_eq!(cvss3_base_score("CVSS:4.0/AV:N"), Err(CvssError::Version));
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"),
            Err(CvssError::Missing("A"))
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Err(CvssError::Duplicate("AV"))
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/E:P"),
            Err(CvssError::Duplicate("E"))
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1"),
            Err(CvssError::Unknown("ZZ".into()))
        );
        let long = format!("CVSS:3.1/{}", "AV:N/".repeat(1 << 20));
        assert!(matches!(
            cvss3_base_score(&long),
            Err(CvssError::TooLong { limit: 1024, .. })
        ));
        for bad in [
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:HH",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",
        ] {
            assert!(
                matches!(cvss3_base_score(bad), Err(CvssError::Metric(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bands_and_ratings() {
        assert_eq!("MODERATE".parse(), Ok(Severity::Medium));
        assert_eq!("critical".parse(), Ok(Severity::Critical));
        assert_eq!("SEVERE".parse::<Severity>(), Err(()));
        assert_eq!(Severity::from_score(3.9), Severity::Low);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(8.9), Severity::High);
        assert_eq!(Severity::from_score(10.0), Severity::Critical);
        assert!(Severity::Critical > Severity::High);
    }
}
