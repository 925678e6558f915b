//! Base images from Debian packages, as apko makes them from Alpine's:
//! a list of packages in, a reproducible OCI image out.
//!
//! [`build`] goes through these steps, each its own module:
//! 1. **index** — the `Packages` files apt keeps after `apt-get update`
//!    ([`Index::from_apt_lists`]), read as deb822 ([`Paragraphs`]);
//! 2. **resolve** — the closure of `Depends` and `Pre-Depends`
//!    ([`resolve`]): alternatives, version constraints, virtual packages;
//!    Essential is not implied and [`DEFAULT_EXCLUDED`] (what only
//!    maintainer scripts need) satisfies without being installed; every
//!    version is pinned and reported;
//! 3. **fetch** — each `.deb` from the cache (named by its SHA256), apt's
//!    archive cache, or `apt-get download`, checked against the index's
//!    SHA256 before it enters the cache and again while it is read;
//! 4. **unpack** — [`unpack_deb`] reads the `ar` archive in Rust, streamed,
//!    and unpacks `data.tar.*` through [`oci_layer::unpack`], which refuses
//!    every entry that would land outside the root; no maintainer script
//!    runs, so what they would make is made here: the `/bin/sh` link to
//!    dash, the BLAS/LAPACK alternatives links, `/etc/passwd` and
//!    `/etc/group` (root and `app`, 1000), `/etc/os-release` when
//!    base-files is not installed, `/tmp`, `/root` and
//!    `/var/lib/dpkg/status` (every package's control file marked
//!    `install ok installed`, sorted: the SBOM's package list);
//! 5. **bytecode** — with a sandbox, the image's own Python compiles its
//!    standard library and Python packages to hash-based `.pyc`
//!    (unchecked: see [`build`]), in their own layer;
//! 6. **image** — layers from [`oci_layer::LayerWriter`] (sorted entries,
//!    mtimes at the epoch, owner root, deterministic compression) and a
//!    config and manifest written to an OCI layout: the same package
//!    versions give the same manifest digest.
//!
//! ```no_run
//! use debian_base::{Preset, Request};
//!
//! let mut request = Request::new(Preset::Slim.packages(), "/var/cache/hoist/debian");
//! request.tag = "python3.11-slim".into();
//! let built = debian_base::build(&request, "/tmp/base-layout".as_ref())?;
//! println!("{} packages, {}", built.packages.len(), built.manifest_digest);
//! # Ok::<(), debian_base::Error>(())
//! ```

mod build;
mod control;
mod deb;
mod fetch;
mod index;
mod resolve;
mod version;

use std::path::{Path, PathBuf};

pub use build::{Built, BytecodeReport, Installed, Preset, Request, build, debian_arch};
pub use control::{
    MAX_PARAGRAPH, Op, Paragraph, Paragraphs, Relation, parse_provides, parse_relations,
};
pub use deb::{DebLimits, unpack_deb};
pub use fetch::APT_ARCHIVES;
pub use index::{APT_LISTS, Index, Package};
pub use resolve::{DEFAULT_EXCLUDED, Resolution, Selected, resolve};
pub use version::compare_versions;

/// Everything that can go wrong; each names the package, file or command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed deb822 text.
    #[error("{origin}, line {line}: {reason}")]
    Control {
        /// The file or package it came from.
        origin: String,
        /// The line (1-based; 0 when not known).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A relation field that does not parse.
    #[error("relation `{text}`: {reason}")]
    Relation {
        /// The text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A package's dependency field that does not parse.
    #[error("package {package}: bad dependency field: {reason}")]
    BadDependency {
        /// `name=version`.
        package: String,
        /// The parse error.
        reason: String,
    },
    /// No apt lists for the architecture.
    #[error("no package lists for {arch} in {} (run `apt-get update`{})", .dir.display(), if .arch.as_str() == "amd64" { "" } else { "; a foreign architecture needs `dpkg --add-architecture` first" })]
    NoLists {
        /// The lists directory.
        dir: PathBuf,
        /// The Debian architecture.
        arch: String,
    },
    /// A requested package (or version) the index does not have.
    #[error("unknown package {package}{} for {arch}{}", .version.as_ref().map(|v| format!("={v}")).unwrap_or_default(), if .known.is_empty() { String::new() } else { format!(" (the index has {})", .known.join(", ")) })]
    UnknownPackage {
        /// The name.
        package: String,
        /// The version asked for.
        version: Option<String>,
        /// The architecture.
        arch: String,
        /// Versions the index does have.
        known: Vec<String>,
    },
    /// A package requested at two versions.
    #[error("package {package} requested at versions {}", .versions.join(" and "))]
    Conflict {
        /// The name.
        package: String,
        /// The versions.
        versions: Vec<String>,
    },
    /// A dependency nothing satisfies.
    #[error("{package} depends on `{dependency}`: {reason}")]
    Unsatisfiable {
        /// `name=version` of the dependent.
        package: String,
        /// The group of alternatives.
        dependency: String,
        /// Why.
        reason: String,
    },
    /// A virtual package several packages provide, none chosen.
    #[error("{wanted_by} needs the virtual package {virtual_package}, which {} provide: add one to the package list", .providers.join(", "))]
    AmbiguousVirtual {
        /// The virtual name.
        virtual_package: String,
        /// The dependent.
        wanted_by: String,
        /// The providers.
        providers: Vec<String>,
    },
    /// The index gives no SHA256 for a package.
    #[error("package {package}: the index gives no SHA256 to check it against")]
    NoHash {
        /// `name=version`.
        package: String,
    },
    /// A `.deb` whose SHA256 is not the index's.
    #[error("package {package}: SHA256 {actual} is not the index's {expected}")]
    HashMismatch {
        /// `name=version`.
        package: String,
        /// The index's hash.
        expected: String,
        /// The file's.
        actual: String,
    },
    /// A malformed `.deb`.
    #[error("package {package}: {reason}")]
    Deb {
        /// The package.
        package: String,
        /// What is wrong.
        reason: String,
    },
    /// A `.deb` whose files cannot be unpacked safely.
    #[error("package {package}: {source}")]
    Unpack {
        /// The package.
        package: String,
        /// The refusal.
        source: oci_layer::Error,
    },
    /// Two packages that ship a file and a directory at one path.
    #[error("package {package}: `{}` {reason}", .path.display())]
    FileConflict {
        /// The later package.
        package: String,
        /// The path in the image.
        path: PathBuf,
        /// What clashes.
        reason: &'static str,
    },
    /// A command (apt-get, apt-helper) that failed.
    #[error("`{command}` failed ({status}): {}", .stderr.trim())]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// Compiling bytecode in the sandbox failed.
    #[error("byte-compiling with {interpreter}: {reason}")]
    Compile {
        /// The image's interpreter.
        interpreter: String,
        /// Why.
        reason: String,
    },
    /// The sandbox could not run.
    #[cfg(feature = "bytecode")]
    #[error("sandbox: {0}")]
    Sandbox(#[from] sandbox_run::Error),
    /// Writing a layer.
    #[error("layer: {0}")]
    Layer(#[from] oci_layer::Error),
    /// Writing the OCI layout.
    #[error("layout: {0}")]
    Layout(#[from] oci_model::Error),
    /// A platform no Debian architecture matches.
    #[error("platform {0} has no Debian architecture")]
    Platform(String),
    /// A preset name that is not one.
    #[error("unknown preset `{0}` (slim, numpy, scipy)")]
    Preset(String),
    /// A file system error on a path.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_owned(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
