//! The index: entries by key, their weights and last use, moka's
//! eviction and what it deletes, and the scan that rebuilds it at open.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use moka::notification::RemovalCause;
use oci_model::Digest;
use tokio::runtime::Handle;

use super::pins::{Pins, pinned_elsewhere};
use super::records::{ImageRecord, load_image, load_layer};
use super::{Inner, lock};
use crate::disk::{self, Paths};
use crate::report::EntryKind;
use crate::{Result, io_at};

/// An entry of the index, named by what addresses it on disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// A compressed layer blob, by digest.
    Blob(Digest),
    /// An unpacked layer, by diff-id.
    Layer(Digest),
    /// An image's manifest, config and metadata, by manifest digest.
    Image(Digest),
}

impl Key {
    pub(super) fn kind(&self) -> EntryKind {
        match self {
            Key::Blob(_) => EntryKind::Blob,
            Key::Layer(_) => EntryKind::Layer,
            Key::Image(_) => EntryKind::Image,
        }
    }

    pub(super) fn digest(&self) -> &Digest {
        match self {
            Key::Blob(d) | Key::Layer(d) | Key::Image(d) => d,
        }
    }

    /// The entry's pin file under `pins`.
    pub(super) fn pin_file(&self, pins: &Path) -> PathBuf {
        let kind = match self {
            Key::Blob(_) => "blob",
            Key::Layer(_) => "layer",
            Key::Image(_) => "image",
        };
        pins.join(format!("{kind}-{}", self.digest().hex()))
    }
}

/// What the index holds for an entry.
pub(super) struct Entry {
    /// Bytes on disk (file contents): the eviction weight.
    pub(super) bytes: u64,
    /// Logical time of the last use, for [`Cache::prune`](super::Cache::prune)'s order.
    pub(super) last_used: AtomicU64,
    /// For an image, its parsed record.
    pub(super) image: Option<Arc<ImageRecord>>,
}

pub(super) type Value = Arc<Entry>;

/// What a scan of the disk found.
pub(super) struct Found {
    /// Entries, least recently used first.
    pub(super) entries: Vec<(Key, u64, Option<Arc<ImageRecord>>)>,
    pub(super) aliases: HashMap<Digest, Digest>,
}

impl Inner {
    pub(super) fn entry(&self, bytes: u64, image: Option<Arc<ImageRecord>>) -> Value {
        Arc::new(Entry {
            bytes,
            last_used: AtomicU64::new(self.tick()),
            image,
        })
    }

    pub(super) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Re-admits entries evicted while pinned whose pins are gone.
    pub(super) async fn readmit(&self) {
        let back: Vec<(Key, Value)> = {
            let mut guard = lock(&self.pins);
            let pins = &mut *guard;
            let keys = std::mem::take(&mut pins.readmit);
            keys.into_iter()
                .filter(|k| !pins.counts.contains_key(k))
                .filter_map(|k| pins.evicted.remove(&k).map(|v| (k, v)))
                .collect()
        };
        for (key, value) in back {
            value.last_used.store(self.tick(), Ordering::Relaxed);
            self.index.insert(key, value).await;
        }
    }

    /// An entry of the index, or one evicted while pinned (its files are
    /// still there). Counts as a use for moka's LRU order.
    pub(super) async fn find(&self, key: &Key) -> Option<Value> {
        match self.index.get(key).await {
            Some(v) => Some(v),
            None => lock(&self.pins).evicted.get(key).cloned(),
        }
    }

    /// An entry loaded back from disk is tracked again: it is no longer
    /// waiting outside the index.
    pub(super) fn forget_evicted(&self, key: &Key) {
        lock(&self.pins).evicted.remove(key);
    }

    /// Removes an entry and its files now, pinned or not.
    pub(super) async fn purge(&self, key: &Key) -> Result<()> {
        self.index.invalidate(key).await;
        let mut pins = lock(&self.pins);
        pins.evicted.remove(key);
        let trash = retire(&self.paths, key)?;
        drop(pins);
        for path in trash {
            disk::remove_tree(&path);
        }
        Ok(())
    }
}

/// The eviction listener: deletes an evicted entry's files, unless it is
/// pinned, in which case it waits outside the index for its pins to go.
/// It runs under the pins lock, so a pull (which pins before it looks)
/// sees an entry either whole or gone.
pub(super) fn listener(
    paths: Arc<Paths>,
    pins: Arc<Mutex<Pins>>,
    runtime: Handle,
) -> impl Fn(Arc<Key>, Value, RemovalCause) + Send + Sync + 'static {
    move |key, value, cause| {
        if !matches!(cause, RemovalCause::Size | RemovalCause::Explicit) {
            return;
        }
        let mut pins = lock(&pins);
        if pins.counts.contains_key(&*key) {
            pins.evicted.insert((*key).clone(), value);
            return;
        }
        // Held while retiring, so that no other process pins it meanwhile.
        let pin_file = key.pin_file(&paths.pins_dir());
        let _exclusive = match pinned_elsewhere(&pin_file) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => None,
            Err(()) => {
                // Another process runs a container on it: leave the files;
                // the next open finds them again.
                tracing::debug!(
                    "{} {} is in use by another process; kept",
                    key.kind(),
                    key.digest()
                );
                return;
            }
        };
        match retire(&paths, &key) {
            Ok(trash) => {
                let _ = fs::remove_file(&pin_file);
                drop(pins);
                runtime.spawn_blocking(move || trash.iter().for_each(|p| disk::remove_tree(p)));
            }
            Err(e) => tracing::warn!("evicting {} {}: {e}", key.kind(), key.digest()),
        }
    }
}

/// Moves an entry's files into `tmp/` (a layer's marker goes first, so a
/// crash in between leaves an unmarked directory that open discards).
pub(super) fn retire(paths: &Paths, key: &Key) -> Result<Vec<PathBuf>> {
    let mut trash = Vec::new();
    match key {
        Key::Blob(d) => trash.extend(paths.retire(&paths.blob(d))?),
        Key::Layer(d) => {
            let marker = paths.layer_marker(d);
            match fs::remove_file(&marker) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(marker)(e)),
            }
            trash.extend(paths.retire(&paths.layer_dir(d))?);
        }
        Key::Image(d) => trash.extend(paths.retire(&paths.image_dir(d))?),
    }
    Ok(trash)
}

/// Reads the cache back from disk, discarding what is incomplete or
/// unreadable, and orders it by the last use of the images using it.
pub(super) fn scan(paths: &Paths, platform: &str) -> Result<Found> {
    let base = paths.base();
    let as_digest = |name: &str| Digest::parse(&format!("sha256:{name}")).ok();
    let mut aliases = HashMap::new();
    // Key → last use of the newest image using it.
    let mut recency: HashMap<Key, SystemTime> = HashMap::new();
    let mut entries = Vec::new();

    for (name, path) in disk::scan(&base.join("images/sha256"))? {
        let loaded = as_digest(&name).and_then(|d| load_image(paths, &d).map(|l| (d, l)));
        let Some((digest, (record, bytes))) = loaded else {
            disk::remove_tree(&path);
            continue;
        };
        let used = fs::metadata(path.join("meta.json"))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        {
            let meta = lock(&record.meta);
            for alias in meta.indexes.iter().filter(|a| a.platform == platform) {
                aliases.insert(alias.digest.clone(), digest.clone());
            }
            for layer in &meta.layers {
                for key in [
                    Key::Layer(layer.diff_id.clone()),
                    Key::Blob(layer.digest.clone()),
                ] {
                    let t = recency.entry(key).or_insert(used);
                    *t = (*t).max(used);
                }
            }
        }
        recency.insert(Key::Image(digest.clone()), used);
        entries.push((Key::Image(digest), bytes, Some(Arc::new(record))));
    }

    let layers_dir = base.join("layers/sha256");
    let listing = disk::scan(&layers_dir)?;
    let mut complete = BTreeSet::new();
    for (name, path) in &listing {
        let Some(hex) = name.strip_suffix(".json") else {
            continue;
        };
        match as_digest(hex).and_then(|d| load_layer(paths, &d)) {
            Some(marker) => {
                complete.insert(marker.diff_id.hex().to_owned());
                entries.push((Key::Layer(marker.diff_id), marker.tally.bytes, None));
            }
            None => disk::remove_tree(path),
        }
    }
    for (name, path) in &listing {
        if !name.ends_with(".json") && !complete.contains(name) {
            disk::remove_tree(path);
        }
    }

    for (name, path) in disk::scan(&base.join("blobs/sha256"))? {
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        match as_digest(&name) {
            Some(d) if meta.is_file() => entries.push((Key::Blob(d), meta.len(), None)),
            _ => disk::remove_tree(&path),
        }
    }

    let order = |key: &Key| {
        let kind = match key {
            Key::Blob(_) => 0,
            Key::Layer(_) => 1,
            Key::Image(_) => 2,
        };
        (
            recency.get(key).copied().unwrap_or(SystemTime::UNIX_EPOCH),
            kind,
        )
    };
    entries.sort_by_key(|(key, _, _)| order(key));
    Ok(Found { entries, aliases })
}
