//! Where a cache gets what it lacks.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use oci_model::{Descriptor, Manifest, Reference};

/// A stream of a blob's bytes, from its first byte to its last.
pub type BlobStream<E> = Pin<Box<dyn Stream<Item = Result<Bytes, E>> + Send>>;

/// A source of manifests and blobs: one registry, a list of registries
/// with failover, a layout directory, a test double.
///
/// The cache checks everything a `Fetch` hands it (digests, sizes), so an
/// implementation needs to be correct only for the cache to be fast, not
/// for it to be safe.
pub trait Fetch: Send + Sync {
    /// What a fetch fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The manifest (or index) `reference` names. For a tag this resolves
    /// it; the manifest's digest is what the caller pins from then on.
    fn manifest(
        &self,
        reference: &Reference,
    ) -> impl Future<Output = Result<Manifest, Self::Error>> + Send;

    /// The whole blob `desc` names, from the repository of `reference`.
    /// A download that breaks is resumed inside the stream if the source
    /// can; an error item ends the stream.
    fn blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> impl Future<Output = Result<BlobStream<Self::Error>, Self::Error>> + Send;
}
