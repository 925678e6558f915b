//! Pulling: manifest requests shared between overlapping pulls, the image
//! record, blobs downloaded and layers unpacked once each (single flight).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use oci_layer::Compression;
use oci_model::oci_spec::image::ImageConfiguration;
use oci_model::{
    BlobStream, Descriptor, Digest, Digester, MAX_CONFIG_BYTES, Manifest, Reference, Source,
};

use super::entries::{Key, Value};
use super::image::CachedImage;
use super::pins::PinGuard;
use super::records::{ImageMeta, ImageRecord, LayerRef, load_image, load_layer, write_image};
use super::{Inner, blocking, check_digest, fetch_err, from_source, join_error, lock};
use crate::disk::{self, TempPath};
use crate::overlay;
use crate::{Error, Result, io_at};

/// Bytes gathered before a batch goes to the thread writing a blob.
const WRITE_BATCH: usize = 256 << 10;
/// Tries of one blob download when its source broke after handing on bytes.
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// The last answer to a manifest request: when it came back (on the
/// logical clock) and what it was.
pub(super) type ManifestSlot = Arc<tokio::sync::Mutex<Option<(u64, Result<Manifest, Arc<Error>>)>>>;

/// A source whose manifest requests are shared between overlapping pulls
/// (see [`Inner::manifest`]); blobs come straight from the source.
pub(super) struct SharedManifests<'a, S> {
    pub(super) inner: &'a Inner,
    pub(super) source: &'a S,
}

impl<S: Source> Source for SharedManifests<'_, S> {
    type Error = Error;

    async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        self.inner.manifest(reference, self.source).await
    }

    async fn blob(&self, reference: &Reference, desc: &Descriptor) -> Result<BlobStream<Error>> {
        let what = format!("blob {} of {reference}", desc.digest);
        let stream = self
            .source
            .blob(reference, desc)
            .await
            .map_err(fetch_err(|| what.clone()))?;
        Ok(Box::pin(stream.map(move |item| {
            item.map_err(|e| Error::Fetch {
                what: what.clone(),
                source: Box::new(e),
            })
        })))
    }
}

impl Inner {
    /// Asks `source` for the manifest `reference` names, sharing the
    /// answer (or the error) with every caller that asked while the
    /// request was in flight. An answer that came back before the ask is
    /// not reused: a tag may have moved since.
    async fn manifest<S: Source>(&self, reference: &Reference, source: &S) -> Result<Manifest> {
        let asked = self.tick();
        let key = reference.to_string();
        let slot = lock(&self.manifests)
            .entry(key.clone())
            .or_default()
            .clone();
        let answer = {
            let mut last = slot.lock().await;
            match &*last {
                Some((finished, answer)) if *finished > asked => answer.clone(),
                _ => {
                    let answer = source
                        .manifest(reference)
                        .await
                        .map_err(|e| Arc::new(fetch_err(|| format!("manifest of {reference}"))(e)));
                    *last = Some((self.tick(), answer.clone()));
                    answer
                }
            }
        };
        // Forget the slot once no other caller holds it.
        let mut slots = lock(&self.manifests);
        if Arc::strong_count(&slot) == 2 {
            slots.remove(&key);
        }
        drop(slots);
        answer.map_err(Error::Shared)
    }

    /// The image `digest` names (an image or a resolved index), pinned, if
    /// it is complete in the index.
    pub(super) async fn lookup(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<CachedImage>> {
        let digest = lock(&self.aliases)
            .get(digest)
            .cloned()
            .unwrap_or_else(|| digest.clone());
        let mut pin = PinGuard::new(self.pins.clone(), self.paths.pins_dir());
        let key = Key::Image(digest.clone());
        pin.add(key.clone());
        let Some(entry) = self.find(&key).await else {
            return Ok(None);
        };
        let Some(record) = entry.image.clone() else {
            return Ok(None);
        };
        let layers = lock(&record.meta).layers.clone();
        for layer in &layers {
            let key = Key::Layer(layer.diff_id.clone());
            pin.add(key.clone());
            pin.add(Key::Blob(layer.digest.clone()));
            let Some(entry) = self.find(&key).await else {
                return Ok(None);
            };
            entry.last_used.store(self.tick(), Ordering::Relaxed);
        }
        entry.last_used.store(self.tick(), Ordering::Relaxed);
        Ok(Some(CachedImage::new(
            reference.clone(),
            record,
            &self.paths,
            pin,
        )))
    }

    /// Marks an image's layers, then the image, as just used.
    pub(super) async fn touch(&self, image: &CachedImage) {
        for diff_id in &image.diff_ids {
            if let Some(e) = self.find(&Key::Layer(diff_id.clone())).await {
                e.last_used.store(self.tick(), Ordering::Relaxed);
            }
        }
        if let Some(e) = self.find(&Key::Image(image.digest.clone())).await {
            e.last_used.store(self.tick(), Ordering::Relaxed);
        }
    }

    /// Fetches what the image lacks and returns it pinned.
    pub(super) async fn fill<S: Source>(
        &self,
        reference: &Reference,
        source: &S,
        manifest: &Manifest,
    ) -> Result<CachedImage> {
        let digest = manifest.digest().clone();
        let mut pin = PinGuard::new(self.pins.clone(), self.paths.pins_dir());
        let key = Key::Image(digest.clone());
        pin.add(key.clone());
        let entry = self
            .index
            .try_get_with(key.clone(), self.make_image(reference, source, manifest))
            .await?;
        let record = entry.image.clone().ok_or_else(|| Error::InvalidImage {
            digest: digest.clone(),
            reason: "the cache entry has no image record".into(),
        })?;
        let layers = lock(&record.meta).layers.clone();
        for layer in &layers {
            pin.add(Key::Layer(layer.diff_id.clone()));
            pin.add(Key::Blob(layer.digest.clone()));
        }
        // Every layer runs to its end even when one fails: a sibling
        // cancelled half-way would leave its blocking write or unpack
        // going on behind the error.
        let results = join_all(
            layers
                .iter()
                .map(|layer| self.ensure_layer(reference, source, layer)),
        )
        .await;
        results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(CachedImage::new(
            reference.clone(),
            record,
            &self.paths,
            pin,
        ))
    }

    /// The init of an image entry: the record on disk, or the config
    /// fetched and checked and the record written.
    async fn make_image<S: Source>(
        &self,
        reference: &Reference,
        source: &S,
        manifest: &Manifest,
    ) -> Result<Value> {
        let digest = manifest.digest().clone();
        let paths = self.paths.clone();
        let d = digest.clone();
        if let Some((record, bytes)) = blocking(move || Ok(load_image(&paths, &d))).await? {
            self.forget_evicted(&Key::Image(digest));
            return Ok(self.entry(bytes, Some(Arc::new(record))));
        }
        let invalid = |reason: String| Error::InvalidImage {
            digest: digest.clone(),
            reason,
        };
        let config_desc = manifest
            .config()
            .ok_or_else(|| invalid("no config".into()))?;
        for layer in manifest.layers() {
            if Compression::from_media_type(&layer.media_type).is_none() {
                return Err(invalid(format!(
                    "layer {} has media type `{}`, which is not a layer this cache unpacks",
                    layer.digest, layer.media_type
                )));
            }
        }
        let config_bytes = oci_model::read_blob(source, reference, config_desc, MAX_CONFIG_BYTES)
            .await
            .map_err(from_source)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("config {}: {e}", config_desc.digest)))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(invalid(format!(
                "the manifest has {} layers but the config lists {} diff-ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(l, diff_id)| {
                Ok(LayerRef {
                    digest: l.digest.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                    diff_id: Digest::parse(diff_id)
                        .map_err(|e| invalid(format!("config diff-id: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = ImageMeta {
            media_type: manifest.media_type().to_owned(),
            config_digest: config_desc.digest.clone(),
            layers,
            references: BTreeSet::new(),
            indexes: Vec::new(),
        };
        let bytes = (manifest.bytes().len() + config_bytes.len()) as u64;
        let paths = self.paths.clone();
        let manifest_bytes = manifest.bytes().to_vec();
        let config_copy = config_bytes.clone();
        let d = digest.clone();
        let m = meta.clone();
        blocking(move || write_image(&paths, &d, &manifest_bytes, &config_copy, &m)).await?;
        let record = ImageRecord {
            digest,
            manifest: manifest.clone(),
            config,
            config_bytes,
            meta: Mutex::new(meta),
        };
        Ok(self.entry(bytes, Some(Arc::new(record))))
    }

    /// The layer unpacked: on disk already, or from its blob (downloaded
    /// if missing). One caller does the work; others wait for it.
    async fn ensure_layer<S: Source>(
        &self,
        reference: &Reference,
        source: &S,
        layer: &LayerRef,
    ) -> Result<Value> {
        let key = Key::Layer(layer.diff_id.clone());
        let init = async {
            let paths = self.paths.clone();
            let diff_id = layer.diff_id.clone();
            let marker = blocking(move || Ok(load_layer(&paths, &diff_id))).await?;
            if let Some(marker) = marker {
                self.forget_evicted(&key);
                return Ok(self.entry(marker.tally.bytes, None));
            }
            let desc = Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
                platform: None,
            };
            self.ensure_blob(reference, source, &desc).await?;
            let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
                Error::InvalidImage {
                    digest: layer.digest.clone(),
                    reason: format!("unsupported layer media type `{}`", layer.media_type),
                }
            })?;
            let paths = self.paths.clone();
            let blob = layer.digest.clone();
            let diff_id = layer.diff_id.clone();
            let opts = self.config.unpack.clone();
            let unpacked = blocking(move || {
                overlay::unpack_layer(
                    &paths,
                    &paths.blob(&blob),
                    &blob,
                    compression,
                    &diff_id,
                    &opts,
                )
            })
            .await;
            let marker = match unpacked {
                Ok(marker) => marker,
                Err(e) => {
                    if matches!(
                        e,
                        Error::DiffIdMismatch { .. }
                            | Error::Unpack {
                                source: oci_layer::Error::CorruptStream { .. },
                                ..
                            }
                    ) {
                        // The blob on disk may be what is damaged: fetch
                        // it again next time.
                        self.purge(&Key::Blob(layer.digest.clone())).await?;
                    }
                    return Err(e);
                }
            };
            self.counters.unpacks.fetch_add(1, Ordering::Relaxed);
            Ok(self.entry(marker.tally.bytes, None))
        };
        Ok(self.index.try_get_with(key.clone(), init).await?)
    }

    /// The blob on disk: there already, or downloaded and verified.
    async fn ensure_blob<S: Source>(
        &self,
        reference: &Reference,
        source: &S,
        desc: &Descriptor,
    ) -> Result<Value> {
        let key = Key::Blob(desc.digest.clone());
        let init = async {
            let path = self.paths.blob(&desc.digest);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() && m.len() == desc.size => {
                    self.forget_evicted(&key);
                    return Ok(self.entry(desc.size, None));
                }
                Ok(_) => {
                    if let Some(old) = self.paths.retire(&path)? {
                        disk::remove_tree(&old);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(path)(e)),
            }
            // A source that breaks after handing on bytes (wrong content
            // found at the end, a dropped connection it could not resume)
            // cannot take them back: start over, so a failover source can
            // serve the blob from elsewhere.
            let mut attempt = 1;
            loop {
                let mut received = 0;
                match self.download(reference, source, desc, &mut received).await {
                    Ok(()) => break,
                    Err(e)
                        if attempt < DOWNLOAD_ATTEMPTS
                            && (received > 0 || e.is_content_error()) =>
                    {
                        tracing::warn!(digest = %desc.digest, attempt, error = %e, "blob download failed; starting over");
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(self.entry(desc.size, None))
        };
        Ok(self.index.try_get_with(key.clone(), init).await?)
    }

    /// Streams a blob to `tmp/`, hashing it on a blocking thread as it is
    /// written, and renames it into place once size and digest match.
    async fn download<S: Source>(
        &self,
        reference: &Reference,
        source: &S,
        desc: &Descriptor,
        received: &mut u64,
    ) -> Result<()> {
        let what = || format!("blob {} of {reference}", desc.digest);
        let mut stream = source
            .blob(reference, desc)
            .await
            .map_err(fetch_err(what))?;
        let tmp = TempPath::new(self.paths.tmp_path("blob"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp.path())
            .map_err(io_at(tmp.path()))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(8);
        let path = tmp.path().to_owned();
        // A source that verifies its streams has hashed every byte already
        // and ends in an error rather than hand on a wrong last byte.
        let mut digester = (!source.verifies_blobs()).then(Digester::new);
        let writer = tokio::task::spawn_blocking(move || -> Result<Option<Digest>> {
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch {
                    if let Some(d) = &mut digester {
                        d.update(&chunk);
                    }
                    file.write_all(&chunk).map_err(io_at(&path))?;
                }
            }
            Ok(digester.map(Digester::finish))
        });
        *received = 0;
        let mut failure = None;
        let mut batch = Vec::new();
        let mut batch_len = 0;
        loop {
            let next = stream.next().await;
            let done = next.is_none();
            match next {
                None => {}
                Some(Err(e)) => {
                    failure = Some(fetch_err(what)(e));
                    break;
                }
                Some(Ok(chunk)) => {
                    *received += chunk.len() as u64;
                    if *received > desc.size {
                        failure = Some(Error::SizeMismatch {
                            what: what(),
                            expected: desc.size,
                            actual: *received,
                        });
                        break;
                    }
                    batch_len += chunk.len();
                    batch.push(chunk);
                }
            }
            if (done || batch_len >= WRITE_BATCH) && !batch.is_empty() {
                batch_len = 0;
                // A closed channel means the writer failed: its error is
                // reported below.
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    break;
                }
            }
            if done {
                break;
            }
        }
        drop(tx);
        let written = writer.await.map_err(join_error)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let digest = written?;
        if *received != desc.size {
            return Err(Error::SizeMismatch {
                what: what(),
                expected: desc.size,
                actual: *received,
            });
        }
        if let Some(digest) = digest {
            check_digest(what, &desc.digest, &digest)?;
        }
        tmp.persist(&self.paths.blob(&desc.digest))?;
        self.counters.downloads.fetch_add(1, Ordering::Relaxed);
        self.counters
            .downloaded_bytes
            .fetch_add(*received, Ordering::Relaxed);
        Ok(())
    }
}
