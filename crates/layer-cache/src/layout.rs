//! Images from an OCI image layout directory, for running what was built
//! or copied locally without a registry.

use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_model::{Descriptor, Layout, MAX_MANIFEST_BYTES, Manifest, Reference};
use tokio_util::io::ReaderStream;

use crate::{BlobStream, Fetch};

/// A [`Fetch`] over an OCI image layout: a reference's tag names an entry
/// of the layout's `index.json` (`org.opencontainers.image.ref.name`), a
/// digest names a manifest blob. The registry and repository of the
/// reference only name the image in the cache's listing.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use layer_cache::{Cache, CacheConfig, LayoutFetch};
/// let cache = Cache::open(CacheConfig::new("/var/cache/hoist")).await?;
/// let layout = LayoutFetch::open("/tmp/build-output")?;
/// let image = cache.pull(&LayoutFetch::reference("/tmp/build-output", Some("v1"))?, &layout).await?;
/// println!("{} layers", image.layers.len());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LayoutFetch {
    layout: Layout,
}

impl LayoutFetch {
    /// Opens the layout at `dir`.
    pub fn open(dir: impl AsRef<Path>) -> oci_model::Result<Self> {
        Ok(Self {
            layout: Layout::open(dir.as_ref())?,
        })
    }

    /// A reference for `tag` of the layout at `dir` (without a tag: its
    /// only image), as the cache lists it: `layout.local/<directory
    /// name>[:<tag>]`.
    pub fn reference(dir: impl AsRef<Path>, tag: Option<&str>) -> oci_model::Result<Reference> {
        let name: String = dir
            .as_ref()
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = name.trim_matches('-');
        let name = if name.is_empty() { "layout" } else { name };
        match tag {
            Some(tag) => Reference::parse(&format!("layout.local/{name}:{tag}")),
            None => Reference::parse(&format!("layout.local/{name}")),
        }
    }
}

impl Fetch for LayoutFetch {
    type Error = oci_model::Error;

    async fn manifest(&self, reference: &Reference) -> Result<Manifest, Self::Error> {
        let desc = match reference.digest() {
            Some(digest) => {
                // A child of an index is not listed in index.json; its
                // bytes name their own media type.
                let listed = self
                    .layout
                    .manifests()?
                    .into_iter()
                    .map(|(d, _)| d)
                    .find(|d| &d.digest == digest);
                listed.unwrap_or(Descriptor {
                    media_type: String::new(),
                    digest: digest.clone(),
                    size: 0,
                    platform: None,
                })
            }
            // A reference without a tag reads as `latest`; a layout
            // without that tag offers its only image instead.
            None => match self.layout.resolve(reference.tag()) {
                Err(oci_model::Error::TagNotFound { .. }) if reference.tag() == Some("latest") => {
                    self.layout.resolve(None)?
                }
                other => other?,
            },
        };
        let bytes = self
            .layout
            .read_blob(&desc.digest, MAX_MANIFEST_BYTES as u64)?;
        let media_type = (!desc.media_type.is_empty()).then_some(desc.media_type.as_str());
        Manifest::from_bytes(bytes, media_type)
    }

    async fn blob(
        &self,
        _reference: &Reference,
        desc: &Descriptor,
    ) -> Result<BlobStream<Self::Error>, Self::Error> {
        let file = tokio::fs::File::open(self.layout.blob_path(&desc.digest)).await?;
        let stream = ReaderStream::with_capacity(file, 256 << 10)
            .map(|chunk: std::io::Result<Bytes>| chunk.map_err(oci_model::Error::from));
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cache, CacheConfig};
    use oci_layer::{LayerWriter, WriteOptions};
    use oci_model::media_type;

    /// A one-layer image tagged `v1` in a fresh layout.
    fn layout_image(dir: &Path) -> Manifest {
        let layout = Layout::create(dir).unwrap();
        let mut w = LayerWriter::new(WriteOptions::default());
        w.add_bytes("etc/greeting", 0o644, b"hello\n".to_vec())
            .unwrap();
        let mut blob = Vec::new();
        let info = w.finish(&mut blob).unwrap();
        layout.write_blob(&blob).unwrap();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": { "type": "layers", "diff_ids": [info.diff_id.to_string()] },
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = layout.write_blob(&config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": Descriptor {
                media_type: media_type::OCI_CONFIG.to_owned(),
                digest: config_digest,
                size: config.len() as u64,
                platform: None,
            },
            "layers": [info.descriptor()],
        });
        let manifest = Manifest::from_bytes(serde_json::to_vec(&manifest).unwrap(), None).unwrap();
        layout.write_blob(manifest.bytes()).unwrap();
        layout
            .add_manifest(&manifest.descriptor(), Some("v1"))
            .unwrap();
        manifest
    }

    #[tokio::test]
    async fn images_come_from_a_layout_by_tag_and_by_digest() {
        let src = tempfile::tempdir().unwrap();
        let manifest = layout_image(src.path());
        let fetch = LayoutFetch::open(src.path()).unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(CacheConfig::new(cache_dir.path()))
            .await
            .unwrap();

        let by_tag = LayoutFetch::reference(src.path(), Some("v1")).unwrap();
        assert!(by_tag.to_string().starts_with("layout.local/"));
        let image = cache.pull(&by_tag, &fetch).await.unwrap();
        assert_eq!(&image.digest, manifest.digest());
        assert_eq!(
            std::fs::read(image.layers[0].join("etc/greeting")).unwrap(),
            b"hello\n"
        );
        let by_digest = by_tag.with_digest(manifest.digest().clone());
        let again = cache.pull(&by_digest, &fetch).await.unwrap();
        assert_eq!(again.layers, image.layers);

        let only = LayoutFetch::reference(src.path(), None).unwrap();
        assert_eq!(
            cache.pull(&only, &fetch).await.unwrap().digest,
            image.digest
        );
        let missing = LayoutFetch::reference(src.path(), Some("v2")).unwrap();
        let err = cache.pull(&missing, &fetch).await.unwrap_err();
        assert!(err.to_string().contains("v2"), "{err}");
    }
}
