//! One way to speak of an image, wherever it comes from.
//!
//! - A [`Source`] serves manifests and blobs by reference: a registry, an
//!   ordered list of registries with failover, an OCI layout, a layer
//!   cache. It answers what it is asked and nothing more; whoever reads
//!   from it checks digests.
//! - [`resolve_manifest`] turns a reference into one platform's image
//!   manifest: an index is resolved to the platform's entry, an index
//!   inside an index is refused, and every manifest is checked against the
//!   digest that named it. [`resolve`] also reads the config (size-capped,
//!   verified) and returns a [`SourceImage`].
//! - An [`Image`] is accessors only: its manifest, config and layers, and
//!   a reader for each blob. A registry image, a layout image, a cached
//!   image and a build result implement it, so that copying, caching and
//!   running take any of them.
//!
//! ```no_run
//! # async fn demo() -> oci_model::Result<()> {
//! use oci_model::{Image, Layout, Platform, resolve};
//! let layout = Layout::open("/tmp/app-layout")?;
//! let reference = layout.reference(Some("v1"))?;
//! let image = resolve(layout, &reference, &Platform::default()).await?;
//! println!("{} layers, config {}", image.layers().len(), image.config_descriptor().digest);
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::media_type::ManifestKind;
use crate::{Descriptor, Digest, Digester, Error, Manifest, Platform, Reference, Result};

/// A blob's bytes, from its first byte to its last; an error item ends it.
pub type BlobStream<E> = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, E>> + Send>>;

/// The most config bytes read: real configs are a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Where manifests and blobs come from, by reference.
///
/// Whoever reads from a source checks what it hands over (digests,
/// sizes), so an implementation needs to be correct only to be useful, not
/// for its reader to be safe — unless it claims
/// [`verifies_blobs`](Source::verifies_blobs).
pub trait Source: Send + Sync {
    /// What a request fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The manifest or index `reference` names. For a tag this resolves
    /// it; the digest of the answer is what a caller pins from then on.
    fn manifest(
        &self,
        reference: &Reference,
    ) -> impl Future<Output = std::result::Result<Manifest, Self::Error>> + Send;

    /// The whole blob `desc` names, from the repository of `reference`.
    /// A download that breaks is resumed inside the stream when the source
    /// can.
    fn blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> impl Future<Output = std::result::Result<BlobStream<Self::Error>, Self::Error>> + Send;

    /// Whether every blob stream is already verified against its
    /// descriptor: it fails past the size and hands on its last bytes only
    /// after the digest matched. A reader may then skip hashing again.
    fn verifies_blobs(&self) -> bool {
        false
    }

    /// Whether the blobs served for a reference live in that reference's
    /// repository on its registry, so that a push to the same registry may
    /// mount them instead of uploading them.
    fn is_registry(&self) -> bool {
        false
    }
}

impl<S: Source + ?Sized> Source for &S {
    type Error = S::Error;

    fn manifest(
        &self,
        reference: &Reference,
    ) -> impl Future<Output = std::result::Result<Manifest, Self::Error>> + Send {
        (**self).manifest(reference)
    }

    fn blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> impl Future<Output = std::result::Result<BlobStream<Self::Error>, Self::Error>> + Send
    {
        (**self).blob(reference, desc)
    }

    fn verifies_blobs(&self) -> bool {
        (**self).verifies_blobs()
    }

    fn is_registry(&self) -> bool {
        (**self).is_registry()
    }
}

impl<S: Source + ?Sized> Source for Arc<S> {
    type Error = S::Error;

    fn manifest(
        &self,
        reference: &Reference,
    ) -> impl Future<Output = std::result::Result<Manifest, Self::Error>> + Send {
        (**self).manifest(reference)
    }

    fn blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> impl Future<Output = std::result::Result<BlobStream<Self::Error>, Self::Error>> + Send
    {
        (**self).blob(reference, desc)
    }

    fn verifies_blobs(&self) -> bool {
        (**self).verifies_blobs()
    }

    fn is_registry(&self) -> bool {
        (**self).is_registry()
    }
}

/// One platform's image: accessors only. Whatever it comes from, the
/// manifest is an image manifest (never an index) and the config bytes
/// were checked against their descriptor.
pub trait Image: Send + Sync {
    /// What reading a blob fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name it is known by, pinned to [`Image::manifest`]'s digest
    /// where the source allows (a tag is kept for display).
    fn reference(&self) -> &Reference;

    /// The image manifest.
    fn manifest(&self) -> &Manifest;

    /// The config's descriptor.
    fn config_descriptor(&self) -> &Descriptor;

    /// The config's exact bytes, verified.
    fn config_bytes(&self) -> &[u8];

    /// The layer descriptors, base first.
    fn layers(&self) -> &[Descriptor] {
        self.manifest().layers()
    }

    /// The bytes of one of its blobs (a layer or the config).
    fn blob(
        &self,
        desc: &Descriptor,
    ) -> impl Future<Output = std::result::Result<BlobStream<Self::Error>, Self::Error>> + Send;

    /// See [`Source::verifies_blobs`].
    fn verifies_blobs(&self) -> bool {
        false
    }

    /// A repository already holding `desc`, which a push to its registry
    /// may mount from (the image's own repository for a registry image; a
    /// base image's for a build's base layers).
    fn mount_source(&self, desc: &Descriptor) -> Option<&Reference> {
        let _ = desc;
        None
    }
}

/// A reference resolved to one platform's image manifest.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The reference asked for, pinned to the image manifest's digest (the
    /// tag kept for display).
    pub reference: Reference,
    /// The image manifest.
    pub manifest: Manifest,
    /// The index it was chosen from, when the reference named one.
    pub index: Option<Manifest>,
}

/// Resolves `reference` on `source` to `platform`'s image manifest: an
/// index is resolved to the platform's entry; a manifest that does not
/// hash to the digest naming it is refused, and so is an index inside an
/// index.
///
/// ```no_run
/// # async fn demo(layout: oci_model::Layout) -> oci_model::Result<()> {
/// let r = layout.reference(Some("v1"))?;
/// let resolved = oci_model::resolve_manifest(&layout, &r, &"linux/arm64".parse()?).await?;
/// assert!(resolved.manifest.config().is_some());
/// # Ok(()) }
/// ```
pub async fn resolve_manifest<S: Source + ?Sized>(
    source: &S,
    reference: &Reference,
    platform: &Platform,
) -> Result<Resolved> {
    let top = source
        .manifest(reference)
        .await
        .map_err(|e| Error::source(format!("manifest of {reference}"), e))?;
    if let Some(want) = reference.digest()
        && want != top.digest()
    {
        return Err(Error::DigestMismatch {
            expected: want.clone(),
            actual: top.digest().clone(),
        });
    }
    if top.kind() == ManifestKind::Image {
        return Ok(Resolved {
            reference: reference.with_digest(top.digest().clone()),
            manifest: top,
            index: None,
        });
    }
    let entry = top.select_platform(platform)?.clone();
    let child_ref = reference.with_digest(entry.digest.clone());
    let child = source
        .manifest(&child_ref)
        .await
        .map_err(|e| Error::source(format!("manifest of {child_ref}"), e))?;
    if child.digest() != &entry.digest {
        return Err(Error::DigestMismatch {
            expected: entry.digest,
            actual: child.digest().clone(),
        });
    }
    if child.kind() != ManifestKind::Image {
        return Err(Error::NestedIndex {
            index: top.digest().clone(),
            child: entry.digest,
        });
    }
    Ok(Resolved {
        reference: child_ref,
        manifest: child,
        index: Some(top),
    })
}

/// Resolves `reference` to `platform`'s image (see [`resolve_manifest`])
/// and reads its config.
pub async fn resolve<S: Source>(
    source: S,
    reference: &Reference,
    platform: &Platform,
) -> Result<SourceImage<S>> {
    let resolved = resolve_manifest(&source, reference, platform).await?;
    SourceImage::new(source, resolved).await
}

/// Reads a whole small blob (a config, a manifest stored as a blob) into
/// memory: refused when its descriptor is over `limit`, and checked
/// against the descriptor's size and digest.
pub async fn read_blob<S: Source + ?Sized>(
    source: &S,
    reference: &Reference,
    desc: &Descriptor,
    limit: u64,
) -> Result<Vec<u8>> {
    if desc.size > limit {
        return Err(Error::BlobTooLarge {
            digest: desc.digest.clone(),
            size: desc.size,
            limit,
        });
    }
    let what = || format!("blob {} of {reference}", desc.digest);
    let mut stream = source
        .blob(reference, desc)
        .await
        .map_err(|e| Error::source(what(), e))?;
    let mut bytes = Vec::with_capacity(desc.size as usize);
    let mut digester = Digester::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::source(what(), e))?;
        if (bytes.len() + chunk.len()) as u64 > desc.size {
            return Err(Error::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: (bytes.len() + chunk.len()) as u64,
            });
        }
        digester.update(&chunk);
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != desc.size {
        return Err(Error::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = digester.finish();
    if actual != desc.digest {
        return Err(Error::DigestMismatch {
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// An [`Image`] read from a [`Source`]: a registry image, a layout image,
/// an image behind failover.
#[derive(Clone, Debug)]
pub struct SourceImage<S> {
    source: S,
    reference: Reference,
    manifest: Manifest,
    index: Option<Manifest>,
    config_desc: Descriptor,
    config: Vec<u8>,
    mounts: Option<Arc<Mounts>>,
}

#[derive(Debug)]
struct Mounts {
    repository: Reference,
    blobs: HashSet<Digest>,
}

impl<S: Source> SourceImage<S> {
    /// The image `resolved` names on `source`, its config read and checked.
    pub async fn new(source: S, resolved: Resolved) -> Result<Self> {
        let config_desc = config_descriptor(&resolved.manifest)?;
        let config =
            read_blob(&source, &resolved.reference, &config_desc, MAX_CONFIG_BYTES).await?;
        Ok(Self {
            source,
            reference: resolved.reference,
            manifest: resolved.manifest,
            index: resolved.index,
            config_desc,
            config,
            mounts: None,
        })
    }

    /// The image `resolved` names on `source`, with its config bytes in
    /// hand (a build that just wrote them); they are checked against the
    /// manifest's config descriptor all the same.
    pub fn with_config(source: S, resolved: Resolved, config: Vec<u8>) -> Result<Self> {
        let config_desc = config_descriptor(&resolved.manifest)?;
        if config.len() as u64 != config_desc.size {
            return Err(Error::SizeMismatch {
                digest: config_desc.digest,
                expected: config_desc.size,
                actual: config.len() as u64,
            });
        }
        let actual = Digest::of(&config);
        if actual != config_desc.digest {
            return Err(Error::DigestMismatch {
                expected: config_desc.digest,
                actual,
            });
        }
        Ok(Self {
            source,
            reference: resolved.reference,
            manifest: resolved.manifest,
            index: resolved.index,
            config_desc,
            config,
            mounts: None,
        })
    }

    /// The source it reads from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The index the image was chosen from, if any.
    pub fn index(&self) -> Option<&Manifest> {
        self.index.as_ref()
    }

    /// Names a repository known to hold `blobs` (a base image's, for the
    /// base layers of a build), so a push to its registry mounts them.
    pub fn with_mount_source(
        mut self,
        repository: Reference,
        blobs: impl IntoIterator<Item = Digest>,
    ) -> Self {
        self.mounts = Some(Arc::new(Mounts {
            repository,
            blobs: blobs.into_iter().collect(),
        }));
        self
    }
}

fn config_descriptor(manifest: &Manifest) -> Result<Descriptor> {
    manifest
        .config()
        .cloned()
        .ok_or_else(|| Error::MalformedManifest {
            reason: "an image manifest without a config".into(),
        })
}

impl<S: Source> Image for SourceImage<S> {
    type Error = S::Error;

    fn reference(&self) -> &Reference {
        &self.reference
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn config_descriptor(&self) -> &Descriptor {
        &self.config_desc
    }

    fn config_bytes(&self) -> &[u8] {
        &self.config
    }

    fn blob(
        &self,
        desc: &Descriptor,
    ) -> impl Future<Output = std::result::Result<BlobStream<Self::Error>, Self::Error>> + Send
    {
        self.source.blob(&self.reference, desc)
    }

    fn verifies_blobs(&self) -> bool {
        self.source.verifies_blobs()
    }

    fn mount_source(&self, desc: &Descriptor) -> Option<&Reference> {
        if let Some(m) = &self.mounts
            && m.blobs.contains(&desc.digest)
        {
            return Some(&m.repository);
        }
        self.source.is_registry().then_some(&self.reference)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::media_type;

    /// Manifests and blobs from memory, by digest (and one tag).
    #[derive(Debug, Default)]
    struct Memory {
        tags: HashMap<String, Digest>,
        manifests: HashMap<Digest, Vec<u8>>,
        blobs: HashMap<Digest, Vec<u8>>,
    }

    impl Memory {
        fn add_manifest(&mut self, tag: Option<&str>, json: serde_json::Value) -> Descriptor {
            let bytes = serde_json::to_vec(&json).unwrap();
            let m = Manifest::from_bytes(bytes.clone(), None).unwrap();
            if let Some(t) = tag {
                self.tags.insert(t.to_owned(), m.digest().clone());
            }
            self.manifests.insert(m.digest().clone(), bytes);
            m.descriptor()
        }

        fn add_blob(&mut self, bytes: &[u8]) -> Descriptor {
            let digest = Digest::of(bytes);
            self.blobs.insert(digest.clone(), bytes.to_vec());
            Descriptor {
                media_type: media_type::OCI_CONFIG.into(),
                digest,
                size: bytes.len() as u64,
                platform: None,
            }
        }
    }

    impl Source for Memory {
        type Error = Error;

        async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
            let digest = match (reference.digest(), reference.tag()) {
                (Some(d), _) => d.clone(),
                (None, Some(t)) => self.tags[t].clone(),
                (None, None) => unreachable!("test references have a tag or digest"),
            };
            Manifest::from_bytes(self.manifests[&digest].clone(), None)
        }

        async fn blob(&self, _: &Reference, desc: &Descriptor) -> Result<BlobStream<Error>> {
            let bytes = Bytes::from(self.blobs[&desc.digest].clone());
            Ok(Box::pin(futures_util::stream::iter([Ok(bytes)])))
        }
    }

    fn image(config: &Descriptor) -> serde_json::Value {
        serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": config, "layers": [],
        })
    }

    fn index(entries: &[(Descriptor, &str)]) -> serde_json::Value {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(d, arch)| {
                serde_json::json!({
                    "mediaType": d.media_type, "digest": d.digest, "size": d.size,
                    "platform": {"os": "linux", "architecture": arch},
                })
            })
            .collect();
        serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests,
        })
    }

    fn reference(text: &str) -> Reference {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn resolves_images_and_indexes_and_refuses_nested_indexes() {
        let mut m = Memory::default();
        let config = m.add_blob(br#"{"architecture":"amd64","os":"linux"}"#);
        let amd = m.add_manifest(Some("img"), image(&config));
        let arm_config = m.add_blob(br#"{"architecture":"arm64","os":"linux"}"#);
        let arm = m.add_manifest(None, image(&arm_config));
        let idx = m.add_manifest(
            Some("idx"),
            index(&[(amd.clone(), "amd64"), (arm, "arm64")]),
        );
        let inner = m.add_manifest(None, index(&[(amd.clone(), "amd64")]));
        m.add_manifest(Some("nested"), index(&[(inner.clone(), "amd64")]));
        let amd64 = Platform::default();

        let img = resolve(&m, &reference("r.example/a:img"), &amd64)
            .await
            .unwrap();
        assert_eq!(img.manifest().digest(), &amd.digest);
        assert_eq!(img.reference().digest(), Some(&amd.digest));
        assert_eq!(img.reference().tag(), Some("img"));
        assert_eq!(img.config_bytes(), m.blobs[&config.digest].as_slice());
        assert!(img.index().is_none());

        let via_index = resolve(&m, &reference("r.example/a:idx"), &amd64)
            .await
            .unwrap();
        assert_eq!(via_index.manifest().digest(), &amd.digest);
        assert_eq!(via_index.index().unwrap().digest(), &idx.digest);
        let arm64 = resolve(
            &m,
            &reference("r.example/a:idx"),
            &"linux/arm64".parse().unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(arm64.config_descriptor(), &arm_config);

        let err = resolve(&m, &reference("r.example/a:nested"), &amd64)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NestedIndex { child, .. } if child == &inner.digest),
            "{err}"
        );
        assert!(err.to_string().contains("nested"), "{err}");

        // A digest reference must name what comes back.
        let wrong = reference("r.example/a:img").with_digest(Digest::of(b"other"));
        let mut lying = Memory {
            tags: m.tags.clone(),
            manifests: m.manifests.clone(),
            ..Memory::default()
        };
        lying
            .manifests
            .insert(Digest::of(b"other"), m.manifests[&amd.digest].clone());
        assert!(matches!(
            resolve_manifest(&lying, &wrong, &amd64).await,
            Err(Error::DigestMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn small_blobs_are_capped_and_verified() {
        let mut m = Memory::default();
        let desc = m.add_blob(b"0123456789");
        let r = reference("r.example/a:b");
        assert_eq!(read_blob(&m, &r, &desc, 10).await.unwrap(), b"0123456789");
        assert!(matches!(
            read_blob(&m, &r, &desc, 9).await,
            Err(Error::BlobTooLarge { .. })
        ));
        let short = Descriptor {
            size: 5,
            ..desc.clone()
        };
        assert!(matches!(
            read_blob(&m, &r, &short, 10).await,
            Err(Error::SizeMismatch { .. })
        ));
        let long = Descriptor {
            size: 11,
            ..desc.clone()
        };
        assert!(matches!(
            read_blob(&m, &r, &long, 20).await,
            Err(Error::SizeMismatch { .. })
        ));
        m.blobs.insert(desc.digest.clone(), b"9876543210".to_vec());
        assert!(matches!(
            read_blob(&m, &r, &desc, 10).await,
            Err(Error::DigestMismatch { .. })
        ));
    }
}
