//! [`CachedImage`]: an image ready to run, pinned while it lives.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_model::oci_spec::image::ImageConfiguration;
use oci_model::{BlobStream, Descriptor, Digest, Image, Manifest, Reference};

use super::lock;
use super::pins::PinGuard;
use super::records::ImageRecord;
use crate::disk::Paths;
use crate::{Error, io_at};

/// An image ready to run: its config and unpacked layers. While it lives,
/// none of the image's entries is evicted.
///
/// It is also an [`Image`]: its manifest and config come from memory, its
/// layer blobs from the cache's files while they are there (the
/// compressed blob of an unpacked layer may have been evicted on its own:
/// reading it then fails with [`Error::NotCached`]).
pub struct CachedImage {
    /// The reference it was asked for by.
    pub reference: Reference,
    /// The image manifest's digest (the platform's manifest when the
    /// reference names an index).
    pub digest: Digest,
    /// The image config.
    pub config: ImageConfiguration,
    /// The unpacked layer directories, bottom (base) first.
    pub layers: Vec<PathBuf>,
    /// Whether this pull had to download or unpack something (a cache
    /// miss); false when the cache held the image complete.
    pub downloaded: bool,
    pub(super) diff_ids: Vec<Digest>,
    record: Arc<ImageRecord>,
    config_desc: Descriptor,
    /// `blobs/sha256/`, to read layer blobs from: not the cache's
    /// `Paths`, whose lock must not outlive the open cache.
    blob_dir: PathBuf,
    _pin: PinGuard,
}

impl CachedImage {
    /// The image of `record`, its layers at their place in the cache,
    /// held by `pin`.
    pub(super) fn new(
        reference: Reference,
        record: Arc<ImageRecord>,
        paths: &Paths,
        pin: PinGuard,
    ) -> Self {
        let layers = lock(&record.meta).layers.clone();
        let config_desc = Descriptor {
            media_type: record
                .manifest
                .config()
                .map(|d| d.media_type.clone())
                .unwrap_or_default(),
            digest: lock(&record.meta).config_digest.clone(),
            size: record.config_bytes.len() as u64,
            platform: None,
        };
        Self {
            reference,
            digest: record.digest.clone(),
            config: record.config.clone(),
            layers: layers.iter().map(|l| paths.layer_dir(&l.diff_id)).collect(),
            downloaded: false,
            diff_ids: layers.into_iter().map(|l| l.diff_id).collect(),
            record,
            config_desc,
            blob_dir: paths.blob_dir(),
            _pin: pin,
        }
    }

    /// The layer directories top-most first, as overlayfs' `lowerdir=`
    /// lists them.
    pub fn lower_dirs(&self) -> Vec<PathBuf> {
        self.layers.iter().rev().cloned().collect()
    }
}

impl Image for CachedImage {
    type Error = Error;

    fn reference(&self) -> &Reference {
        &self.reference
    }

    fn manifest(&self) -> &Manifest {
        &self.record.manifest
    }

    fn config_descriptor(&self) -> &Descriptor {
        &self.config_desc
    }

    fn config_bytes(&self) -> &[u8] {
        &self.record.config_bytes
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream<Error>, Error> {
        if desc.digest == self.config_desc.digest {
            let bytes = Bytes::copy_from_slice(&self.record.config_bytes);
            return Ok(Box::pin(futures_util::stream::iter([Ok(bytes)])));
        }
        let path = self.blob_dir.join(desc.digest.hex());
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotCached {
                    digest: desc.digest.clone(),
                });
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10)
            .map(move |chunk| chunk.map_err(io_at(&path)));
        Ok(Box::pin(stream))
    }
}

impl fmt::Debug for CachedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedImage")
            .field("reference", &self.reference)
            .field("digest", &self.digest)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}
