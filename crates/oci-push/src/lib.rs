//! Copying images: registry → registry, registry ↔ OCI layout directory,
//! layout → layout, the way `crane copy` and `skopeo copy` do, daemonless.
//!
//! What is copied comes from any [`oci_model::Source`] ([`Copier::copy_from`]:
//! a registry client, registries with failover, a layout) or is an
//! [`oci_model::Image`] in hand ([`Copier::push`]: a build result, whose
//! base layers are mounted from the base's repository).
//!
//! A copy reads the source manifest, returns at once when the destination
//! already has it under the wanted name, and otherwise moves every blob the
//! destination lacks — at most `jobs` at a time, streamed, so memory stays
//! flat whatever the layer size — mounting across repositories when source
//! and destination share a registry. Manifests are written after their
//! content, children before indexes, their bytes unchanged so digests never
//! move. Every byte is verified against its digest on the way; a layout
//! blob is renamed into place only once verified.
//!
//! Cancel safety: dropping a copy's future stops its transfers; a layout
//! keeps no partial blob, and a registry keeps only blobs that were
//! complete and verified (never a manifest whose content is missing).
//!
//! ```no_run
//! # async fn demo() -> Result<(), oci_push::Error> {
//! use std::sync::Arc;
//! use oci_push::{Copier, Endpoint, Event};
//! let client = registry_client::Client::builder().build()?;
//! let copier = Copier::new(client)
//!     .jobs(4)
//!     .progress(Arc::new(|e: Event| if let Event::BlobDone { digest, .. } = e { eprintln!("{digest}") }));
//! let report = copier
//!     .copy(&"127.0.0.1:5000/app:v1".parse()?, &"127.0.0.1:5001/mirror/app:v1".parse()?)
//!     .await?;
//! assert!(report.digest.is_some());
//! # Ok(()) }
//! ```

mod copy;
mod inspect;
mod referrers;
mod source;

use oci_model::Digest;

pub use copy::{BlobHow, Copier, CopyReport, MAX_ATTACHMENT_DEPTH, MAX_ATTACHMENTS, Progress};
pub use inspect::{config, manifest};
pub use oci_model::Endpoint;
pub use referrers::{
    Attached, Attachment, CREATED, Content, ReferrerList, TITLE, attach, referrers,
};

/// Progress of a copy.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A blob is being looked at (and copied if missing).
    BlobStarted {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Some bytes of a blob went through.
    BlobProgress {
        /// Its digest.
        digest: Digest,
        /// How many bytes, since the last event for it.
        bytes: u64,
    },
    /// A blob is at the destination.
    BlobDone {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// How it got there.
        how: BlobHow,
    },
    /// A manifest was written.
    ManifestWritten {
        /// Its digest.
        digest: Digest,
    },
}

/// Everything that can go wrong in a copy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
    /// A reference, manifest or layout problem.
    #[error(transparent)]
    Model(#[from] oci_model::Error),
    /// A child manifest asked of a single image.
    #[error("{reference} is one image: it has no child manifest {digest}")]
    NotAnIndex {
        /// The image.
        reference: String,
        /// The child asked for.
        digest: Digest,
    },
    /// An index entry whose media type is not the manifest's own.
    #[error("index entry {digest} says `{declared}` but the manifest is `{actual}`")]
    MediaTypeMismatch {
        /// The child manifest.
        digest: Digest,
        /// What the index says.
        declared: String,
        /// What the manifest is.
        actual: String,
    },
    /// A referrer whose manifest does not name the image it is listed for
    /// as its `subject`.
    #[error("{referrer} is listed as a referrer of {expected}, but its subject is {}", actual.as_ref().map_or("missing".to_owned(), |d| d.to_string()))]
    ReferrerSubjectMismatch {
        /// The referrer manifest.
        referrer: Digest,
        /// The image it was listed for.
        expected: Digest,
        /// Its own subject.
        actual: Option<Digest>,
    },
    /// More attachments than one copy brings along.
    #[error("more than {limit} attachments (referrers and signature tags) to copy")]
    TooManyAttachments {
        /// The limit.
        limit: usize,
    },
    /// Local file I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether to retry, try another registry, or give up.
    pub fn action(&self) -> registry_client::Action {
        use registry_client::Action;
        match self {
            Self::Registry(e) => e.action(),
            Self::Model(oci_model::Error::DigestMismatch { .. }) => Action::Retry,
            Self::Model(_)
            | Self::NotAnIndex { .. }
            | Self::MediaTypeMismatch { .. }
            | Self::ReferrerSubjectMismatch { .. }
            | Self::TooManyAttachments { .. } => Action::GiveUp,
            Self::Io(_) => Action::GiveUp,
        }
    }
}

/// An `oci-model` error as this crate's: a source's `registry-client`
/// error comes back as itself (it names the registry and the request, and
/// its [`registry_client::Error::action`] drives retries).
pub(crate) fn from_model(e: oci_model::Error) -> Error {
    match e {
        oci_model::Error::Source { what, source } => {
            match source.downcast::<registry_client::Error>() {
                Ok(e) => Error::Registry(*e),
                Err(source) => match source.downcast::<oci_model::Error>() {
                    Ok(e) => from_model(*e),
                    Err(source) => Error::Model(oci_model::Error::Source { what, source }),
                },
            }
        }
        other => Error::Model(other),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
