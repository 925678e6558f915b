//! Types of the OCI image world, with no network in sight: image
//! [`Reference`]s with Docker Hub defaults, typed [`Digest`]s, media types
//! of OCI and Docker schema 2, [`Manifest`]s read safely from untrusted
//! bytes, [`Platform`] selection in indexes, the OCI image [`Layout`]
//! on disk, and the [`Image`] and [`Source`] traits every place images
//! come from implements, with [`resolve`] to pick one platform's image.
//!
//! The [`oci_spec`] crate is re-exported so callers build configs and
//! manifests with the same types this crate parses.
//!
//! ```
//! use oci_model::{Digest, Reference};
//! let r: Reference = "127.0.0.1:5000/functions/hello:v1".parse()?;
//! let pinned = r.with_digest(Digest::of(b"manifest bytes"));
//! assert!(pinned.to_string().starts_with("127.0.0.1:5000/functions/hello:v1@sha256:"));
//! # Ok::<(), oci_model::Error>(())
//! ```

mod atomic;
mod digest;
mod endpoint;
mod image;
mod layout;
mod manifest;
pub mod media_type;
mod reference;
mod referrers;
mod time;

use std::path::PathBuf;

pub use atomic::write_atomic;
pub use digest::{Digest, Digester, Hashing};
pub use endpoint::Endpoint;
pub use image::{
    BlobStream, Image, MAX_CONFIG_BYTES, Resolved, Source, SourceImage, read_blob, resolve,
    resolve_manifest,
};
pub use layout::{BlobWriter, Layout, REF_NAME};
pub use manifest::{Body, Descriptor, MAX_MANIFEST_BYTES, Manifest, Platform};
pub use oci_spec;
pub use reference::{DOCKER_HUB, DOCKER_HUB_API_HOST, Reference};
pub use referrers::{
    EMPTY_JSON, MAX_REFERRERS, Referrer, parse_referrers, referrers_index, referrers_tag,
};
pub use time::rfc3339;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest that is not `algorithm:hex`.
    #[error("invalid digest `{digest}`: {reason}")]
    InvalidDigest {
        /// The text given.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A digest algorithm other than sha256.
    #[error("unsupported digest algorithm `{algorithm}` (only sha256 is supported)")]
    UnsupportedDigestAlgorithm {
        /// The algorithm named.
        algorithm: String,
    },
    /// A reference that does not follow the grammar.
    #[error("invalid reference `{reference}`: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image location (`REF` or `oci:DIR[:TAG]`) that does not parse.
    #[error("invalid image location `{input}`: {reason}")]
    InvalidEndpoint {
        /// The text given.
        input: String,
        /// Why.
        reason: String,
    },
    /// A platform that is not `os/arch[/variant]`.
    #[error("invalid platform `{platform}`: expected os/arch[/variant], e.g. linux/amd64")]
    InvalidPlatform {
        /// The text given.
        platform: String,
    },
    /// A manifest over [`MAX_MANIFEST_BYTES`].
    #[error("manifest of {size} bytes is larger than the {limit}-byte limit")]
    ManifestTooLarge {
        /// Its size (or the size announced).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A manifest that does not parse.
    #[error("malformed manifest: {reason}")]
    MalformedManifest {
        /// The parser's message.
        reason: String,
    },
    /// A manifest media type hoist does not read.
    #[error("unsupported media type `{media_type}` for a manifest")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
    },
    /// A referrers index that does not parse.
    #[error("malformed referrers index: {reason}")]
    MalformedReferrers {
        /// What is wrong.
        reason: String,
    },
    /// A referrers index over [`MAX_REFERRERS`] entries.
    #[error("the referrers index lists {count} entries: more than {limit} referrers")]
    TooManyReferrers {
        /// How many it lists.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Platform selection asked of an image manifest.
    #[error("the manifest is not an index, so it has no platforms to choose from")]
    NotAnIndex,
    /// No index entry for the platform.
    #[error("no image for platform {platform} in the index (it has: {available})")]
    PlatformNotFound {
        /// The platform asked for.
        platform: String,
        /// The platforms listed.
        available: String,
    },
    /// Content whose digest is not the one expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A directory that is not a readable OCI layout.
    #[error("{path}: not an OCI image layout: {reason}")]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tag missing from a layout's index.
    #[error("{path}: no manifest tagged `{tag}` in index.json")]
    TagNotFound {
        /// The layout directory.
        path: PathBuf,
        /// The tag.
        tag: String,
    },
    /// A blob missing from a layout.
    #[error("{path}: blob {digest} not found")]
    BlobNotFound {
        /// Where it should be.
        path: PathBuf,
        /// Its digest.
        digest: Digest,
    },
    /// A blob larger than the caller allows.
    #[error("blob {digest} is {size} bytes, over the {limit}-byte limit")]
    BlobTooLarge {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An index entry for the platform that is itself an index.
    #[error(
        "index {index} lists {child} for the platform, which is itself an index: nested indexes are not supported"
    )]
    NestedIndex {
        /// The index.
        index: Digest,
        /// Its entry for the platform.
        child: Digest,
    },
    /// Content whose size is not its descriptor's.
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// The bytes received (at least this many when too long).
        actual: u64,
    },
    /// A [`Source`] request failed.
    #[error("{what}: {source}")]
    Source {
        /// What was asked for: the manifest or blob and its reference.
        what: String,
        /// The source's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file system error; the message names the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A [`Source`] error, with what was asked for.
    pub fn source(what: String, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Source {
            what,
            source: Box::new(source),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
