//! Where a copy's manifests and blobs come from: a [`Source`] at a
//! reference, or an [`Image`] in hand. Blob streams come out verified
//! (wrapped in a [`VerifiedStream`] unless the source verifies already),
//! so bad bytes never reach a destination under a digest, and with
//! `registry-client` errors, so retries ask [`registry_client::Error::action`].

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use oci_model::{Descriptor, Image, MAX_MANIFEST_BYTES, Manifest, Reference, Source};
use registry_client::{ByteStream, Checkpoint, VerifiedStream};

use crate::copy::Progress;
use crate::{Error, Event, Result, from_model};

/// What a copy reads from.
pub(crate) trait Origin: Send + Sync {
    /// A child manifest of an index.
    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Manifest>>;
    /// A blob, verified.
    fn blob<'a>(
        &'a self,
        desc: &'a Descriptor,
    ) -> BoxFuture<'a, registry_client::Result<ByteStream>>;
    /// A repository already holding the blob, to mount from.
    fn mount_source(&self, desc: &Descriptor) -> Option<&Reference>;
}

/// A source at a reference: a registry, registries with failover, a
/// layout.
pub(crate) struct SourceOrigin<S> {
    source: S,
    reference: Reference,
}

impl<S: Source> SourceOrigin<S> {
    pub(crate) fn new(source: S, reference: Reference) -> Self {
        Self { source, reference }
    }
}

impl<S: Source> Origin for SourceOrigin<S> {
    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Manifest>> {
        Box::pin(async move {
            let r = self.reference.with_digest(desc.digest.clone());
            let m =
                self.source.manifest(&r).await.map_err(|e| {
                    from_model(oci_model::Error::source(format!("manifest of {r}"), e))
                })?;
            if m.digest() != &desc.digest {
                return Err(oci_model::Error::DigestMismatch {
                    expected: desc.digest.clone(),
                    actual: m.digest().clone(),
                }
                .into());
            }
            if m.bytes().len() > MAX_MANIFEST_BYTES {
                return Err(oci_model::Error::ManifestTooLarge {
                    size: m.bytes().len() as u64,
                    limit: MAX_MANIFEST_BYTES as u64,
                }
                .into());
            }
            Ok(m)
        })
    }

    fn blob<'a>(
        &'a self,
        desc: &'a Descriptor,
    ) -> BoxFuture<'a, registry_client::Result<ByteStream>> {
        Box::pin(async move {
            let stream = self
                .source
                .blob(&self.reference, desc)
                .await
                .map_err(to_registry)?;
            let stream: ByteStream = Box::pin(stream.map_err(to_registry));
            Ok(verified(
                stream,
                desc,
                self.source.verifies_blobs(),
                &self.reference,
            ))
        })
    }

    fn mount_source(&self, _desc: &Descriptor) -> Option<&Reference> {
        self.source.is_registry().then_some(&self.reference)
    }
}

/// An image in hand.
pub(crate) struct ImageOrigin<'i, I>(pub(crate) &'i I);

impl<I: Image> Origin for ImageOrigin<'_, I> {
    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Manifest>> {
        // An image's children are blobs only; an index never reaches here.
        Box::pin(async move {
            Err(Error::NotAnIndex {
                reference: self.0.reference().to_string(),
                digest: desc.digest.clone(),
            })
        })
    }

    fn blob<'a>(
        &'a self,
        desc: &'a Descriptor,
    ) -> BoxFuture<'a, registry_client::Result<ByteStream>> {
        Box::pin(async move {
            let stream = self.0.blob(desc).await.map_err(to_registry)?;
            let stream: ByteStream = Box::pin(stream.map_err(to_registry));
            Ok(verified(
                stream,
                desc,
                self.0.verifies_blobs(),
                self.0.reference(),
            ))
        })
    }

    fn mount_source(&self, desc: &Descriptor) -> Option<&Reference> {
        self.0.mount_source(desc)
    }
}

/// `stream` checked against `desc`, unless it is checked already.
fn verified(stream: ByteStream, desc: &Descriptor, already: bool, from: &Reference) -> ByteStream {
    if already {
        return stream;
    }
    // A layout or cache is untrusted too: a blob edited on disk must not
    // reach a registry under the old digest.
    Box::pin(VerifiedStream::new(
        stream,
        desc.clone(),
        Checkpoint::default(),
        from.to_string(),
        format!("read blob {}", desc.digest),
    ))
}

/// A source's error as a `registry-client` error: itself when it is one
/// (so its retry advice holds), else an I/O error carrying it.
fn to_registry<E: std::error::Error + Send + Sync + 'static>(e: E) -> registry_client::Error {
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    match boxed.downcast::<registry_client::Error>() {
        Ok(e) => *e,
        Err(other) => registry_client::Error::Io(std::io::Error::other(other)),
    }
}

pub(crate) fn with_progress(
    stream: ByteStream,
    desc: &Descriptor,
    progress: Option<Progress>,
) -> ByteStream {
    let Some(progress) = progress else {
        return stream;
    };
    let digest = desc.digest.clone();
    Box::pin(stream.inspect(move |item| {
        if let Ok(bytes) = item {
            progress(Event::BlobProgress {
                digest: digest.clone(),
                bytes: bytes.len() as u64,
            });
        }
    }))
}
