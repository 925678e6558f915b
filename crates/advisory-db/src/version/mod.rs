//! Version ordering per ecosystem: PEP 440 for PyPI, dpkg's for Debian,
//! apk-tools' for Alpine, and semver 2.0.0 for OSV `SEMVER` ranges.

mod apk;
mod dpkg;
mod pep440;
mod semver;

use std::cmp::Ordering;
use std::fmt;

/// The ecosystems whose versions and names this crate understands. OSV
/// names a distribution release after a colon (`Debian:12`,
/// `Alpine:v3.18`); [`Ecosystem::of`] maps those to their family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// Python packages: PEP 503 names, PEP 440 versions.
    PyPI,
    /// Debian: source package names, dpkg version ordering.
    Debian,
    /// Alpine: apk version ordering.
    Alpine,
    /// Any other OSV ecosystem: only `SEMVER` ranges and explicit versions
    /// can match.
    Other,
}

impl Ecosystem {
    /// The family of an OSV ecosystem string (`"Debian:12"` → `Debian`).
    ///
    /// ```
    /// use advisory_db::Ecosystem;
    ///
    /// assert_eq!(Ecosystem::of("PyPI"), Ecosystem::PyPI);
    /// assert_eq!(Ecosystem::of("Debian:12"), Ecosystem::Debian);
    /// assert_eq!(Ecosystem::of("Alpine:v3.18"), Ecosystem::Alpine);
    /// assert_eq!(Ecosystem::of("npm"), Ecosystem::Other);
    /// ```
    pub fn of(osv: &str) -> Ecosystem {
        match osv.split_once(':').map_or(osv, |(family, _)| family) {
            "PyPI" => Ecosystem::PyPI,
            "Debian" => Ecosystem::Debian,
            "Alpine" => Ecosystem::Alpine,
            _ => Ecosystem::Other,
        }
    }

    /// A package name as the ecosystem compares names: PEP 503 for PyPI
    /// (lowercase, runs of `-`, `_`, `.` as one `-`); others unchanged.
    ///
    /// ```
    /// use advisory_db::Ecosystem;
    ///
    /// assert_eq!(Ecosystem::PyPI.normalize_name("PyYAML"), "pyyaml");
    /// assert_eq!(Ecosystem::PyPI.normalize_name("zope.Interface__x"), "zope-interface-x");
    /// assert_eq!(Ecosystem::Debian.normalize_name("glibc"), "glibc");
    /// ```
    pub fn normalize_name(self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => {
                let mut out = String::with_capacity(name.len());
                let mut in_run = false;
                for c in name.trim().chars() {
                    if matches!(c, '-' | '_' | '.') {
                        if !in_run {
                            out.push('-');
                        }
                        in_run = true;
                    } else {
                        out.extend(c.to_lowercase());
                        in_run = false;
                    }
                }
                out
            }
            _ => name.to_owned(),
        }
    }

    /// Orders two versions of this ecosystem, or `None` when either is not
    /// a version here (or the ecosystem has no known ordering).
    ///
    /// ```
    /// use std::cmp::Ordering;
    /// use advisory_db::Ecosystem;
    ///
    /// assert_eq!(Ecosystem::PyPI.compare("5.4b1", "5.4"), Some(Ordering::Less));
    /// assert_eq!(Ecosystem::Debian.compare("2.36-9+deb12u10", "2.36-9+deb12u3"), Some(Ordering::Greater));
    /// assert_eq!(Ecosystem::Alpine.compare("1.0_rc1-r0", "1.0-r0"), Some(Ordering::Less));
    /// assert_eq!(Ecosystem::PyPI.compare("not a version", "1.0"), None);
    /// ```
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            Ecosystem::PyPI => Some(pep440::Pep440::parse(a)?.cmp(&pep440::Pep440::parse(b)?)),
            Ecosystem::Debian => {
                let ok = |v: &str| {
                    !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_whitespace)
                };
                (ok(a) && ok(b)).then(|| dpkg::compare(a, b))
            }
            Ecosystem::Alpine => (apk::is_valid(a) && apk::is_valid(b)).then(|| apk::compare(a, b)),
            Ecosystem::Other => None,
        }
    }

    /// Whether `version` is a valid version of this ecosystem.
    pub fn is_valid(self, version: &str) -> bool {
        self.compare(version, version).is_some()
    }

    /// Whether a PyPI version is a pre- or development release (`false`
    /// for every other ecosystem).
    pub fn is_prerelease(self, version: &str) -> bool {
        self == Ecosystem::PyPI && pep440::Pep440::parse(version).is_some_and(|v| v.is_prerelease())
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Debian => "Debian",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Other => "other",
        })
    }
}

/// Orders two semantic versions (semver 2.0.0 precedence, a leading `v`
/// and a missing minor or patch tolerated), or `None` if either is not one.
///
/// ```
/// use std::cmp::Ordering;
/// use advisory_db::compare_semver;
///
/// assert_eq!(compare_semver("1.0.0-rc.1", "1.0.0"), Some(Ordering::Less));
/// assert_eq!(compare_semver("v2.1", "2.1.0"), Some(Ordering::Equal));
/// ```
pub fn compare_semver(a: &str, b: &str) -> Option<Ordering> {
    Some(semver::SemVer::parse(a)?.cmp(&semver::SemVer::parse(b)?))
}
