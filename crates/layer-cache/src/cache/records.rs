//! Image records on disk: `images/sha256/<hex>/{manifest,config,meta.json}`
//! and layer completion markers, read, written and updated.

use std::collections::BTreeSet;
use std::fs;
use std::sync::Mutex;

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use oci_model::oci_spec::image::ImageConfiguration;
use oci_model::{Digest, Manifest, Reference};
use serde::{Deserialize, Serialize};

use super::entries::Key;
use super::image::CachedImage;
use super::{Inner, blocking, lock};
use crate::disk::{self, Paths, TempPath};
use crate::overlay::LayerMarker;
use crate::{Result, io_at};

/// An image as the cache keeps it in memory.
pub(super) struct ImageRecord {
    pub(super) digest: Digest,
    pub(super) manifest: Manifest,
    pub(super) config: ImageConfiguration,
    pub(super) config_bytes: Vec<u8>,
    pub(super) meta: Mutex<ImageMeta>,
}

/// `images/sha256/<hex>/meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ImageMeta {
    pub(super) media_type: String,
    pub(super) config_digest: Digest,
    pub(super) layers: Vec<LayerRef>,
    /// Every reference this image was pulled by.
    pub(super) references: BTreeSet<String>,
    /// Indexes that resolved to this image, with the platform chosen.
    pub(super) indexes: Vec<IndexAlias>,
}

/// A layer of an image: its blob and what it unpacks to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct LayerRef {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) media_type: String,
    pub(super) diff_id: Digest,
}

/// An index that resolved to an image, for one platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct IndexAlias {
    pub(super) digest: Digest,
    pub(super) platform: String,
}

/// The record of a complete layer, if its marker and directory are there.
pub(super) fn load_layer(paths: &Paths, diff_id: &Digest) -> Option<LayerMarker> {
    let marker: LayerMarker = disk::read_json(&paths.layer_marker(diff_id))?;
    (&marker.diff_id == diff_id && paths.layer_dir(diff_id).is_dir()).then_some(marker)
}

/// An image record read back from disk, with its weight.
pub(super) fn load_image(paths: &Paths, digest: &Digest) -> Option<(ImageRecord, u64)> {
    let dir = paths.image_dir(digest);
    let meta: ImageMeta = disk::read_json(&dir.join("meta.json"))?;
    let manifest_bytes = fs::read(dir.join("manifest")).ok()?;
    let weight = manifest_bytes.len() as u64;
    let manifest = Manifest::from_bytes(manifest_bytes, Some(&meta.media_type)).ok()?;
    let config_bytes = fs::read(dir.join("config")).ok()?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).ok()?;
    let record = ImageRecord {
        digest: digest.clone(),
        manifest,
        config,
        config_bytes,
        meta: Mutex::new(meta),
    };
    let weight = weight + record.config_bytes.len() as u64;
    Some((record, weight))
}

/// Writes an image directory under `tmp/` and renames it into place.
pub(super) fn write_image(
    paths: &Paths,
    digest: &Digest,
    manifest: &[u8],
    config: &[u8],
    meta: &ImageMeta,
) -> Result<()> {
    let tmp = TempPath::new(paths.tmp_path("image"));
    disk::make_dir(tmp.path())?;
    let meta_json = serde_json::to_vec(meta).expect("metadata serializes");
    for (name, bytes) in [
        ("manifest", manifest),
        ("config", config),
        ("meta.json", &meta_json[..]),
    ] {
        let path = tmp.path().join(name);
        fs::write(&path, bytes).map_err(io_at(&path))?;
    }
    let dest = paths.image_dir(digest);
    if let Some(old) = paths.retire(&dest)? {
        disk::remove_tree(&old);
    }
    tmp.persist(&dest)
}

impl Inner {
    /// Records the reference and index an image was used by, and its last
    /// use.
    pub(super) async fn note_use(
        &self,
        image: &CachedImage,
        reference: &Reference,
        index: Option<Digest>,
    ) -> Result<()> {
        let key = Key::Image(image.digest.clone());
        let Some(record) = self.index.get(&key).await.and_then(|e| e.image.clone()) else {
            return Ok(());
        };
        let changed = {
            let mut meta = lock(&record.meta);
            let mut changed = meta.references.insert(reference.to_string());
            if let Some(digest) = index {
                let alias = IndexAlias {
                    digest,
                    platform: self.config.platform.to_string(),
                };
                if !meta.indexes.contains(&alias) {
                    meta.indexes.push(alias);
                    changed = true;
                }
            }
            changed.then(|| meta.clone())
        };
        match changed {
            Some(meta) => {
                let paths = self.paths.clone();
                let digest = record.digest.clone();
                blocking(move || {
                    let json = serde_json::to_vec(&meta).expect("metadata serializes");
                    let path = paths.image_dir(&digest).join("meta.json");
                    oci_model::write_atomic(&path, &json).map_err(io_at(&path))
                })
                .await
            }
            None => {
                self.touch_meta(&image.digest);
                Ok(())
            }
        }
    }

    /// Sets the image's last-use time (its `meta.json` mtime), which
    /// orders the index after a restart. Best effort: a failure costs
    /// only LRU precision.
    pub(super) fn touch_meta(&self, digest: &Digest) {
        let path = self.paths.image_dir(digest).join("meta.json");
        let _ = utimensat(
            None,
            &path,
            &TimeSpec::UTIME_OMIT,
            &TimeSpec::UTIME_NOW,
            UtimensatFlags::NoFollowSymlink,
        );
    }
}
