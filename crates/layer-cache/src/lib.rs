//! Content-addressed on-disk store of image blobs and unpacked layers with
//! LRU eviction and single flight.
//!
//! A worker pulls an image once into a [`Cache`]; containers then start
//! from its unpacked layers, which are ready to be overlayfs lower
//! directories. Moving parts:
//!
//! - **Layout** (documented on [`Cache`]): a versioned tree under a root
//!   directory — compressed blobs by digest, unpacked layers by diff-id,
//!   images (manifest, config, metadata) by manifest digest. Every entry is
//!   written under `tmp/` and renamed into place, so a crash leaves only
//!   `tmp/` debris, which [`Cache::open`] clears.
//! - **Verification on the way in**: blobs are hashed while they stream to
//!   disk and checked against their descriptor before the rename; a
//!   layer's diff-id, computed while it is unpacked, must equal the
//!   config's `rootfs.diff_ids` entry. Unpacking refuses hostile layers
//!   (see [`oci_layer::unpack`]) and converts whiteouts to overlayfs form.
//! - **Index and eviction**: a [`moka`] cache weighted by bytes, LRU
//!   order, whose eviction listener deletes the files. Images in use are
//!   pinned by the [`CachedImage`] a pull returns.
//! - **Single flight**: fifty concurrent pulls of one image download each
//!   blob once and unpack each layer once (moka's `try_get_with`).
//!
//! Cancel safety: dropping a [`Cache::pull`] future stops its downloads
//! and unpacks; their temporary files are removed and nothing half-written
//! is ever visible under a final name. Another caller waiting on the same
//! blob or layer takes the work over.
//!
//! Images come from any [`oci_model::Source`]: a registry client, a list
//! of registries with failover, an OCI layout.
//!
//! ```no_run
//! use layer_cache::{Cache, CacheConfig};
//! use oci_model::{Reference, Source};
//!
//! async fn start<S: Source>(source: &S) -> layer_cache::Result<()> {
//!     let cache = Cache::open(CacheConfig::new("/var/lib/hoist/cache")).await?;
//!     let reference: Reference = "registry.example/fn/hello:v1".parse()?;
//!     let image = cache.pull(&reference, source).await?;
//!     let lowerdir = image
//!         .lower_dirs()
//!         .iter()
//!         .map(|p| p.display().to_string())
//!         .collect::<Vec<_>>()
//!         .join(":");
//!     // Mount an overlay with `lowerdir`; keep `image` alive while the
//!     // container runs so its layers are not evicted.
//!     # let _ = lowerdir;
//!     Ok(())
//! }
//! ```

mod cache;
mod disk;
mod overlay;
mod report;

use std::path::PathBuf;
use std::sync::Arc;

use oci_model::{Digest, Platform};

pub use cache::{Cache, CachedImage};
pub use report::{CacheStats, CorruptEntry, EntryKind, ImageEntry, PruneReport, VerifyReport};

/// The layout version this crate reads and writes.
pub const LAYOUT_VERSION: u32 = 1;

/// Where the cache lives and what it may hold.
///
/// ```
/// let mut config = layer_cache::CacheConfig::new("/var/lib/hoist/cache");
/// assert_eq!(config.max_bytes, 100 << 30);
/// config.max_bytes = 20 << 30;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The root directory; created if missing.
    pub root: PathBuf,
    /// Most bytes kept (blobs, unpacked file contents, manifests and
    /// configs) before the least recently used unpinned entries are
    /// evicted. Default 100 GiB: 200 function images of ~500 MiB.
    pub max_bytes: u64,
    /// Limits on each layer unpacked.
    pub unpack: oci_layer::UnpackOptions,
    /// The platform chosen from indexes.
    pub platform: Platform,
    /// How long [`Cache::open`] waits while another process has the root
    /// open before failing with [`Error::Locked`]. Default 5 minutes.
    pub lock_timeout: std::time::Duration,
}

impl CacheConfig {
    /// Defaults under `root`: 100 GiB, default unpack limits, the host's
    /// platform.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_bytes: 100 << 30,
            unpack: oci_layer::UnpackOptions::default(),
            platform: host_platform(),
            lock_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// `linux/<this machine's architecture>`, in OCI's names: the platform
/// images are pulled for unless told otherwise.
///
/// ```
/// assert_eq!(layer_cache::host_platform().os, "linux");
/// ```
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Platform {
        os: "linux".into(),
        architecture: architecture.into(),
        variant: None,
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache root was written by a newer (or unknown) layout version.
    #[error(
        "{}: cache layout version `{found}` is not supported (this build reads version {supported}); use a newer hoist or another cache root",
        .root.display()
    )]
    UnsupportedVersion {
        /// The cache root.
        root: PathBuf,
        /// What its version file says.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// Another process kept the cache root open for longer than
    /// [`CacheConfig::lock_timeout`].
    #[error("{}: the cache is in use by another process (waited {waited:?})", .root.display())]
    Locked {
        /// The cache root.
        root: PathBuf,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// A file system error on `path`.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The [`oci_model::Source`] failed.
    #[error("fetching {what}: {source}")]
    Fetch {
        /// What was fetched: the manifest or blob and its reference.
        what: String,
        /// The fetcher's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A manifest, reference or platform error from `oci-model`.
    #[error(transparent)]
    Model(#[from] oci_model::Error),
    /// Content whose digest is not the one asked for.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content whose size is not its descriptor's.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// The bytes received (at least this many when too long).
        actual: u64,
    },
    /// A manifest that cannot be run as an image.
    #[error("image {digest}: {reason}")]
    InvalidImage {
        /// The manifest's digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A layer whose unpacked content hashes to another diff-id than the
    /// config lists.
    #[error(
        "layer {layer}: diff-id mismatch: the config lists {expected}, the content is {actual}"
    )]
    DiffIdMismatch {
        /// The layer blob's digest.
        layer: Digest,
        /// The config's diff-id.
        expected: Digest,
        /// The unpacked tar's sha256.
        actual: Digest,
    },
    /// A layer `oci-layer` refused or failed to unpack; the message names
    /// the entry.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer blob's digest.
        layer: Digest,
        /// The unpacker's error.
        source: oci_layer::Error,
    },
    /// A layer whose whiteouts cannot be converted safely.
    #[error("layer {layer}: entry `{}`: {reason}", .entry.display())]
    HostileLayer {
        /// The layer blob's digest.
        layer: Digest,
        /// The whiteout or opaque directory, relative to the layer root.
        entry: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A blob of a [`CachedImage`] that the cache no longer holds (its
    /// layer stays unpacked; the compressed blob was evicted).
    #[error("blob {digest} is not in the cache")]
    NotCached {
        /// The blob.
        digest: Digest,
    },
    /// The error of a manifest request, download, unpack or image record
    /// shared by every caller that waited for it (single flight): see
    /// [`Error::root`].
    #[error(transparent)]
    Shared(#[from] Arc<Error>),
}

impl Error {
    /// The error itself, looking through [`Error::Shared`]: what to match
    /// on.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use layer_cache::Error;
    /// let e = Error::Shared(Arc::new(Error::Shared(Arc::new(Error::Io {
    ///     path: "/x".into(),
    ///     source: std::io::ErrorKind::NotFound.into(),
    /// }))));
    /// assert!(matches!(e.root(), Error::Io { .. }));
    /// ```
    pub fn root(&self) -> &Error {
        match self {
            Error::Shared(inner) => inner.root(),
            other => other,
        }
    }
    /// Whether the bytes received were wrong (digest or size), so that
    /// fetching them again may help.
    pub(crate) fn is_content_error(&self) -> bool {
        matches!(
            self.root(),
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. }
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error to [`Error::Io`] naming `path`.
fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
