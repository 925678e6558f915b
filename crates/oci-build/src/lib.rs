//! Builds Python function images as reproducible OCI layers on a base
//! image. It never pushes: the result lands in a local OCI image layout
//! (the build store) from which a caller copies it with `oci-push`.
//!
//! A build ([`Builder::build`]) runs these phases:
//! 1. **validate** — `function-check` reads the function directory; any
//!    problem stops the build before anything is fetched.
//! 2. **base** — the base manifest (platform chosen from an index) and
//!    config are read from a registry or a layout; the base layers are
//!    streamed once into the store and scanned for the Python
//!    interpreter, its version and the C library ([`BaseFacts`], cached by
//!    manifest digest).
//! 3. **resolve** — with requirements only: `uv pip compile` picks one
//!    wheel per package for the base's Python and platform (cached lock).
//! 4. **wheels** — wheels are fetched into a content-addressed cache,
//!    verified by size and SHA-256.
//! 5. **install** — wheels are unpacked (no Python run) into
//!    `/opt/hoist/site-packages`, one layer (cached by wheel hashes, base
//!    digest, epoch and whether it has bytecode). A function without
//!    requirements gets no dependency layer at all.
//! 6. **code** — the function's files under `/opt/hoist/function` and the
//!    runner `/opt/hoist/runner.py`.
//! 7. **bytecode** — with a sandbox ([`Builder::sandbox`]): the modules of
//!    a dependency layer not cached and of code files whose bytecode is not
//!    cached are compiled in one run of the base image's own interpreter
//!    over the build's layers, into hash-based `.pyc` files the runtime
//!    imports (see [`Bytecode`]). The runner is run as a script, which
//!    Python always compiles from source, so it gets none.
//! 8. **config** — user 1000, working directory, environment, command,
//!    labels; then the manifest, recorded in the store's `index.json`.
//!
//! Same inputs give the same manifest digest on any machine: entries are
//! sorted, times are the build epoch (`SOURCE_DATE_EPOCH`, else 0), owners
//! 0:0, modes 0644/0755, gzip is deterministic, every JSON document is
//! serialised from typed structures with sorted maps, and bytecode is
//! hash-based and written with `PYTHONHASHSEED=0`. Whether a build has a
//! sandbox is an input: with one the layers carry bytecode.
//!
//! # Cache directory
//! `bases/<manifest hex>.json` (base facts), `locks/<key>.json`,
//! `layers/<key>.json` (dependency layer descriptors),
//! `bytecode/<key>.pyc` (one code file's bytecode, by base, interpreter,
//! path and source), `wheels/sha256/<hex>/<file>`, `uv/` (uv's own cache),
//! `rootfs/` (a `layer-cache` of unpacked bases, which compiles run on),
//! `store/` (the OCI layout holding every blob built or reused) and `tmp/`
//! (staging).
//!
//! Cancel safety: dropping a build future leaves no partial blob or cache
//! entry (all are written to temporary files and renamed); a staging
//! directory is removed when its guard drops.

mod base;
mod build;
mod bytecode;
mod dockerfile;
mod facts;
mod image;
mod install;
mod lock;
pub mod naming;
mod wheels;

use std::path::{Path, PathBuf};

pub use build::{
    BuildOutput, Builder, DEFAULT_LABEL_PREFIX, FunctionSpec, LayerReport, Phase, Role,
    default_cache_dir,
};
pub use bytecode::{Bytecode, NoBytecode};
pub use dockerfile::{
    DockerfileEvent, DockerfileOutput, DockerfileProgress, DockerfileSpec, RUN_LOG_BYTES,
};
pub use facts::{BaseFacts, Libc};
pub use function_check::{Policy, Problem};
pub use install::{SCRIPTS, SITE_PACKAGES};
pub use lock::{LockedWheel, ResolverSettings};

/// Everything that can go wrong in a build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The function did not pass validation; nothing was fetched.
    #[error("the function is invalid:\n{}", problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem found, each naming file, line and column.
        problems: Vec<Problem>,
    },
    /// A Dockerfile that cannot be built: its problem, where.
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Dockerfile {
        /// The Dockerfile (or `.dockerignore`).
        path: PathBuf,
        /// 1-based line (0 when the problem has no place).
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The validator could not read the function directory.
    #[error(transparent)]
    Check(#[from] function_check::Error),
    /// A reference, manifest or layout problem.
    #[error(transparent)]
    Model(#[from] oci_model::Error),
    /// Writing a layer failed.
    #[error(transparent)]
    Layer(#[from] oci_layer::Error),
    /// Reading the base image from its registry failed.
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
    /// Unpacking the base image to run its interpreter failed.
    #[error(transparent)]
    LayerCache(#[from] layer_cache::Error),
    /// The sandbox could not run the base image's interpreter.
    #[error(transparent)]
    Sandbox(#[from] sandbox_run::Error),
    /// Byte-compiling the image's modules failed.
    #[error("byte-compiling with {interpreter} failed: {reason}")]
    Compile {
        /// The base image's interpreter.
        interpreter: String,
        /// What happened.
        reason: String,
    },
    /// What a compile left where bytecode belongs is not bytecode.
    #[error("bytecode {}: {reason}", .path.display())]
    BadBytecode {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A file system error.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No cache directory was given and neither `XDG_CACHE_HOME` nor
    /// `HOME` is set.
    #[error("no cache directory: set XDG_CACHE_HOME or HOME, or give one")]
    NoCacheDir,
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH `{value}` is not a whole number of seconds")]
    InvalidEpoch {
        /// The value found.
        value: String,
    },
    /// The base image is for another platform than the build's.
    #[error("base image {base} is {actual}, but the build is for {wanted}")]
    PlatformMismatch {
        /// The base.
        base: String,
        /// Its platform.
        actual: String,
        /// The build's.
        wanted: String,
    },
    /// A CPU architecture wheels cannot be chosen for.
    #[error("base image architecture `{arch}` is not supported (amd64 and arm64 are)")]
    UnsupportedArchitecture {
        /// The config's architecture.
        arch: String,
    },
    /// A base layer in a format that cannot be read.
    #[error("base layer {digest} has media type `{media_type}`, which is not a tar layer")]
    UnsupportedLayer {
        /// The layer.
        digest: oci_model::Digest,
        /// Its media type.
        media_type: String,
    },
    /// The base has no Python interpreter and the spec names no version.
    #[error(
        "no Python interpreter (usr/bin/python3.N or usr/local/bin/python3.N) found in base image {base}; use a Python base image or give the Python version"
    )]
    NoPython {
        /// The base.
        base: String,
    },
    /// A Python version that is not `3.N`.
    #[error("python version `{value}` is not of the form 3.N")]
    InvalidPythonVersion {
        /// The value given.
        value: String,
    },
    /// Requirements on a base whose C library is unknown or too old for
    /// manylinux wheels.
    #[error(
        "cannot install requirements on base image {base}: its C library ({libc}) is unknown or older than glibc 2.17"
    )]
    UnsupportedLibc {
        /// The base.
        base: String,
        /// What was found.
        libc: String,
    },
    /// The uv program is not installed.
    #[error("`{}` not found: install uv or point HOIST_UV at it", .program.display())]
    UvNotFound {
        /// The program looked for.
        program: PathBuf,
    },
    /// uv could not resolve the requirements.
    #[error("resolving requirements with uv failed:\n{message}")]
    Resolve {
        /// uv's message.
        message: String,
    },
    /// A package that has no wheel for the base (sdist-only packages are
    /// never built).
    #[error(
        "{package}: no wheel for cp{} {platform}; sdist-only packages are not built",
        .python.replace('.', "")
    )]
    NoWheel {
        /// The package.
        package: String,
        /// Python `X.Y`.
        python: String,
        /// The platform tag.
        platform: String,
    },
    /// uv's lock output could not be read.
    #[error("unreadable lock from uv: {reason}")]
    BadLock {
        /// What is wrong.
        reason: String,
    },
    /// A locked wheel whose hash is not among the requirement's `--hash`es.
    #[error("{package}: locked wheel {wheel} has sha256 {sha256}, which is not among the hashes required ({})", .allowed.join(", "))]
    HashMismatch {
        /// The package.
        package: String,
        /// The wheel file.
        wheel: String,
        /// Its hash.
        sha256: String,
        /// The hashes the requirement allows.
        allowed: Vec<String>,
    },
    /// A wheel URL that is not fetched.
    #[error("wheel URL `{url}` refused: {reason}")]
    WheelUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A wheel download failed.
    #[error("downloading {url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A downloaded wheel that is not the one locked.
    #[error("wheel {wheel}: expected sha256 {expected}, got {actual} ({size} bytes)")]
    WheelIntegrity {
        /// The wheel file.
        wheel: String,
        /// The locked hash.
        expected: String,
        /// The hash of what arrived.
        actual: String,
        /// The bytes that arrived.
        size: u64,
    },
    /// A wheel entry that would land outside the install tree.
    #[error("wheel {wheel}: entry `{entry}` refused: {reason}")]
    HostileWheel {
        /// The wheel file.
        wheel: String,
        /// The entry name.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// A wheel that is not a valid archive.
    #[error("wheel {wheel}: {reason}")]
    BadWheel {
        /// The wheel file.
        wheel: String,
        /// What is wrong.
        reason: String,
    },
    /// A part of an image name that does not fit the reference grammar.
    #[error("invalid {part} `{value}` for an image name: {reason}")]
    InvalidName {
        /// Which part (`registry`, `namespace`, `user`, …).
        part: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The tag `latest` where it is not allowed.
    #[error("refusing tag `latest` for {reference}: function images need a versioned tag")]
    LatestTag {
        /// The reference.
        reference: String,
    },
    /// A step run on the blocking pool panicked or was cancelled.
    #[error("{task} failed: {reason}")]
    TaskFailed {
        /// The step.
        task: &'static str,
        /// What the runtime reported.
        reason: String,
    },
    /// `git rev-parse` failed.
    #[error("{}: cannot read the git commit: {message}", .dir.display())]
    Git {
        /// The directory.
        dir: PathBuf,
        /// git's message.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file through a temporary file and a rename, so readers see
/// the old content or the new, never a part.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    oci_model::write_atomic(path, bytes).map_err(io_at(path))
}

/// Runs `work` on the blocking pool; a panic in it (untrusted input
/// reaching a bug) is an error of the build, not of the caller.
async fn blocking<T: Send + 'static>(
    task: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::TaskFailed {
            task,
            reason: e.to_string(),
        })?
}
