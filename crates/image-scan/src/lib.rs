//! Inventory of an image's packages without running it, and SBOMs.
//!
//! [`scan`] streams an image's layers, base first, through a tar reader
//! (a layer is never held in memory nor unpacked) and keeps the package
//! records of the merged file system:
//!
//! - Debian packages from `var/lib/dpkg/status` and distroless's
//!   `var/lib/dpkg/status.d/*`, with their source package and version
//!   (the `Source:` field), which is what Debian advisories name;
//! - Alpine packages from `lib/apk/db/installed`;
//! - Python distributions from `*.dist-info/METADATA`,
//!   `*.egg-info/PKG-INFO` and `*.egg-info` files, anywhere;
//! - the distribution from `etc/os-release` (else `usr/lib/os-release`).
//!
//! Each package carries the digest of the layer that last wrote its
//! record. Whiteouts and opaque directories are applied as a runtime
//! applies them, so a package whose record a later layer deleted is
//! gone. Files are read under size caps ([`Limits`]); a record file that
//! is too large, a symlink, or not a record at all is skipped with a
//! [`Note`], never followed or guessed at.
//!
//! [`sbom`] turns an [`Inventory`] into SPDX 2.3 or CycloneDX 1.5 JSON
//! with package URLs, the image (by digest) as the root; the same image
//! gives the same bytes, except the creation time the caller passes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_model::{Layout, Platform, resolve};
//!
//! let layout = Layout::open("/tmp/app-layout")?;
//! let reference = layout.reference(Some("v1"))?;
//! let image = resolve(layout, &reference, &Platform::default()).await?;
//! let inventory = image_scan::scan(&image, &image_scan::Limits::default()).await?;
//! for p in &inventory.packages {
//!     println!("{} {} {} {}", p.ecosystem.as_str(), p.name, p.version, p.layer);
//! }
//! let spdx = image_scan::sbom(&inventory, image_scan::Format::Spdx, 0)?;
//! # let _ = spdx;
//! # Ok(()) }
//! ```

mod records;
mod sbom;
mod scanner;

use futures_util::TryStreamExt;
use oci_layer::Compression;
use oci_model::{Digest, Image};
use serde::{Deserialize, Serialize};

pub use records::{
    Distro, MAX_LINE, Parsed, Record, SourcePackage, parse_apk_installed, parse_dpkg_status,
    parse_os_release, parse_python_metadata, pep503_name,
};
pub use sbom::{Format, purl, sbom, table};
pub use scanner::{Ecosystem, Limits, Note, Package, Scanner};

/// Everything that can go wrong in a scan. A record file that cannot be
/// read is a [`Note`] in the inventory, not an error; errors are about
/// the image and its layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A layer whose media type is not a tar layer this crate reads.
    #[error("layer {digest}: media type `{media_type}` is not a tar layer")]
    UnsupportedLayer {
        /// The layer.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// The image could not serve a layer.
    #[error("layer {digest}: read: {source}")]
    Blob {
        /// The layer.
        digest: Digest,
        /// The image's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A layer that is not a readable (compressed) tar.
    #[error("layer {digest}: corrupt or truncated: {source}")]
    CorruptLayer {
        /// The layer.
        digest: Digest,
        /// The decoder's or tar reader's error.
        source: std::io::Error,
    },
    /// A layer whose bytes are not those its descriptor names.
    #[error("layer {digest}: the bytes served hash to {actual} ({size} bytes)")]
    DigestMismatch {
        /// The layer's descriptor digest.
        digest: Digest,
        /// What the bytes hashed to.
        actual: Digest,
        /// How many bytes came.
        size: u64,
    },
    /// The scanning thread died.
    #[error("the layer scan stopped: {0}")]
    Task(String),
    /// An inventory that cannot become an SBOM (no image to name).
    #[error("an SBOM needs the image: this inventory has none")]
    NoImage,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The image an inventory describes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Its name without tag or digest (`registry.example/team/app`, or
    /// the layout's directory), for display.
    pub name: String,
    /// Its tag, when it was asked for by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The image manifest's digest.
    pub digest: Digest,
    /// The config's `architecture` (`amd64`).
    pub architecture: String,
    /// The config's `os` (`linux`).
    pub os: String,
}

/// The packages found in an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The image, when the inventory came from [`scan`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
    /// The distribution, from `etc/os-release` (else `usr/lib/os-release`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<Distro>,
    /// Every package, sorted by ecosystem, name, version and path.
    pub packages: Vec<Package>,
    /// Record files skipped or read in part, sorted by path.
    pub notes: Vec<Note>,
}

/// Scans `image`'s layers, base first, into an [`Inventory`] (see the
/// crate documentation). Each layer is streamed once, checked against its
/// digest unless the image already verifies its blobs, and read on the
/// blocking pool; memory stays bounded by the caps in `limits`, not by
/// layer sizes.
pub async fn scan<I: Image>(image: &I, limits: &Limits) -> Result<Inventory> {
    let mut scanner = Scanner::new(limits.clone());
    let verify = !image.verifies_blobs();
    for desc in image.layers() {
        let compression = Compression::from_media_type(&desc.media_type).ok_or_else(|| {
            Error::UnsupportedLayer {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
            }
        })?;
        let blob_error = |e: I::Error| Error::Blob {
            digest: desc.digest.clone(),
            source: Box::new(e),
        };
        let stream = image.blob(desc).await.map_err(blob_error)?;
        let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let digest = desc.digest.clone();
        scanner = tokio::task::spawn_blocking(move || {
            scan_blob(scanner, bridge, compression, &digest, verify)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    }
    let mut inventory = scanner.finish();
    let config: serde_json::Value =
        serde_json::from_slice(image.config_bytes()).unwrap_or_default();
    let text = |k: &str| config[k].as_str().unwrap_or("").to_owned();
    let reference = image.reference();
    inventory.image = Some(ImageInfo {
        name: reference.name(),
        tag: reference.tag().map(str::to_owned),
        digest: image.manifest().digest().clone(),
        architecture: text("architecture"),
        os: text("os"),
    });
    Ok(inventory)
}

/// Reads one layer compressed with `compression` through `scanner`,
/// hashing it on the way when `verify`.
fn scan_blob(
    mut scanner: Scanner,
    blob: impl std::io::Read,
    compression: Compression,
    digest: &Digest,
    verify: bool,
) -> Result<Scanner> {
    let corrupt = |source| Error::CorruptLayer {
        digest: digest.clone(),
        source,
    };
    let mut hashing = oci_model::Hashing::new(blob);
    {
        let tar = compression
            .decoder(std::io::BufReader::with_capacity(256 << 10, &mut hashing))
            .map_err(corrupt)?;
        scanner.scan_layer(tar, digest).map_err(corrupt)?;
    }
    if verify {
        // The tar reader stops at the end-of-archive marker; the rest of
        // the blob still counts for its digest.
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(corrupt)?;
        let (_, digester) = hashing.into_parts();
        let size = digester.bytes();
        let actual = digester.finish();
        if &actual != digest {
            return Err(Error::DigestMismatch {
                digest: digest.clone(),
                actual,
                size,
            });
        }
    }
    Ok(scanner)
}
