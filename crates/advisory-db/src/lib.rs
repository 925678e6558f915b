//! An OSV advisory database on local disk and the matching of installed
//! packages against it.
//!
//! - **Import** ([`import`]): osv-scanner's layouts (`<ecosystem>/all.zip`,
//!   a zip of OSV JSON records, or a directory of records) into a store
//!   whose every (ecosystem, package) has its own file, so a lookup reads
//!   one small file. The store is swapped in atomically: a failed import
//!   leaves the previous one intact. Input is untrusted: sizes, counts,
//!   depth and JSON nesting are bounded, zip entries that would climb out
//!   are refused, and every error names the file (`all.zip!ID.json`).
//! - **Versions** ([`Ecosystem`]): PEP 440 for PyPI (epochs, pre, post,
//!   dev and local versions) with PEP 503 names, dpkg ordering for Debian
//!   (matched by source package), apk-tools ordering for Alpine, semver for
//!   `SEMVER` ranges.
//! - **Matching** ([`Database::check`]): OSV's range evaluation
//!   (`introduced`, `fixed`, `last_affected`, `limit`) and explicit
//!   `versions`; withdrawn records are skipped at import; aliases (CVE
//!   ids) are kept.
//! - **Severity** ([`Severity`]): as Trivy decides (trivy-db's
//!   `detailToSeverity`), the record's own rating (GHSA's
//!   `database_specific.severity`, `MODERATE` = `MEDIUM`), else the highest
//!   CVSS v4.0 score among its `CVSS_V4` vectors ([`cvss4_base_score`])
//!   when that is above zero, else the highest CVSS v3.x base score among
//!   its `CVSS_V3` vectors ([`cvss3_base_score`]), in the CVSS bands: a
//!   v4.0 score wins over v3 even when lower, as in Trivy. v4.0 is scored
//!   as FIRST's reference calculator does (macro vectors, its table of 270
//!   macro-vector scores, interpolation), threat and environmental metrics
//!   included when the vector has them. CVSS v2 vectors are not scored;
//!   unparsable vectors are ignored.
//!
//! ```
//! use advisory_db::{Database, Limits, Package, Severity, import};
//!
//! let src = tempfile::tempdir()?;
//! std::fs::write(src.path().join("DSA-5514-1.json"), r#"{
//!   "id": "DSA-5514-1", "aliases": ["CVE-2023-4911"],
//!   "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
//!     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}]}],
//!   "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]}"#)?;
//! let store = tempfile::tempdir()?;
//! import(src.path(), store.path(), &Limits::default())?;
//! let db = Database::open(store.path())?;
//!
//! let libc6 = Package {
//!     ecosystem: "Debian:12".into(),
//!     name: "libc6".into(),
//!     version: "2.36-9+deb12u1".into(),
//!     source_name: Some("glibc".into()),
//!     source_version: None,
//! };
//! let found = db.check(&libc6)?;
//! assert_eq!(found[0].advisory.severity, Severity::High);
//! assert_eq!(found[0].fixed.as_deref(), Some("2.36-9+deb12u3"));
//!
//! let fixed = Package { version: "2.36-9+deb12u10".into(), ..libc6 };
//! assert!(db.check(&fixed)?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cvss4;
mod osv;
mod severity;
mod store;
mod version;

use std::path::{Path, PathBuf};

pub use cvss4::cvss4_base_score;
pub use osv::{Advisory, Affected, Cvss, Event, Range, RangeKind, Record, RecordError};
pub use severity::{CvssError, Severity, cvss3_base_score};
pub use store::{Counts, Database, Finding, Limits, Meta, Package, import};
pub use version::{Ecosystem, compare_semver};

/// Why an import or a lookup failed. Each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading a record's bytes failed (a zip entry's data is corrupt, for one).
    #[error("{origin}: {source}")]
    Read {
        /// The file, or `archive.zip!entry.json`.
        origin: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A zip archive could not be read.
    #[error("{}: not a readable zip archive: {source}", path.display())]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The cause.
        source: zip::result::ZipError,
    },
    /// A zip entry's name is absolute or climbs out with `..`.
    #[error("{origin}: zip entry name escapes the archive")]
    UnsafeEntry {
        /// `archive.zip!name`.
        origin: String,
    },
    /// A record is larger than [`Limits::max_record_bytes`].
    #[error("{origin}: larger than the {limit}-byte limit for one record")]
    TooLarge {
        /// The file, or `archive.zip!entry.json`.
        origin: String,
        /// The limit.
        limit: u64,
    },
    /// The import read more than [`Limits::max_total_bytes`].
    #[error("{origin}: the import passed its {limit}-byte limit")]
    TotalTooLarge {
        /// Where it passed.
        origin: String,
        /// The limit.
        limit: u64,
    },
    /// More files or zip entries than [`Limits::max_records`].
    #[error("{}: more than {limit} files and zip entries", path.display())]
    TooMany {
        /// Where it passed.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// Directories nested deeper than [`Limits::max_depth`].
    #[error("{}: directories nested deeper than {limit} levels", path.display())]
    TooDeep {
        /// The directory.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// A symbolic link below the import path (never followed).
    #[error("{}: symbolic link refused in an advisory database", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A record is not valid OSV.
    #[error("{origin}: {source}")]
    Record {
        /// The file, or `archive.zip!entry.json`.
        origin: String,
        /// What is wrong.
        source: RecordError,
    },
    /// The import path holds no OSV record: nothing replaced the store.
    #[error("{}: no OSV JSON record found (expected <ecosystem>/all.zip, a zip or a directory of .json files)", path.display())]
    Empty {
        /// The import path.
        path: PathBuf,
    },
    /// No database has been imported at this path.
    #[error("{}: no advisory database here; run `hoist db import PATH` first", path.display())]
    NoDatabase {
        /// The store directory.
        path: PathBuf,
    },
    /// The store's own files are not what an import writes.
    #[error("{}: damaged advisory database: {reason}; import again", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}
