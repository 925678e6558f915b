//! The cache: its index and eviction, pins, pulls, checks and reports.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use oci_layer::Compression;
use oci_model::media_type::ManifestKind;
use oci_model::oci_spec::image::ImageConfiguration;
use oci_model::{Descriptor, Digest, Digester, Manifest, Reference};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::disk::{self, Paths, TempPath};
use crate::overlay::{self, LayerMarker};
use crate::report::{CacheStats, CorruptEntry, EntryKind, ImageEntry, PruneReport, VerifyReport};
use crate::{CacheConfig, Error, Fetch, Result, io_at};

/// The largest image config read: real ones are a few KiB.
const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Bytes gathered before a batch goes to the thread writing a blob.
const WRITE_BATCH: usize = 256 << 10;
/// Tries of one blob download when its source broke after handing on bytes.
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// An entry of the index, named by what addresses it on disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A compressed layer blob, by digest.
    Blob(Digest),
    /// An unpacked layer, by diff-id.
    Layer(Digest),
    /// An image's manifest, config and metadata, by manifest digest.
    Image(Digest),
}

impl Key {
    fn kind(&self) -> EntryKind {
        match self {
            Key::Blob(_) => EntryKind::Blob,
            Key::Layer(_) => EntryKind::Layer,
            Key::Image(_) => EntryKind::Image,
        }
    }

    fn digest(&self) -> &Digest {
        match self {
            Key::Blob(d) | Key::Layer(d) | Key::Image(d) => d,
        }
    }

    /// The entry's pin file under `pins`.
    fn pin_file(&self, pins: &Path) -> PathBuf {
        let kind = match self {
            Key::Blob(_) => "blob",
            Key::Layer(_) => "layer",
            Key::Image(_) => "image",
        };
        pins.join(format!("{kind}-{}", self.digest().hex()))
    }
}

/// What the index holds for an entry.
struct Entry {
    /// Bytes on disk (file contents): the eviction weight.
    bytes: u64,
    /// Logical time of the last use, for [`Cache::prune`]'s order.
    last_used: AtomicU64,
    /// For an image, its parsed record.
    image: Option<Arc<ImageRecord>>,
}

type Value = Arc<Entry>;

/// An image as the cache keeps it.
struct ImageRecord {
    digest: Digest,
    config: ImageConfiguration,
    meta: Mutex<ImageMeta>,
}

/// `images/sha256/<hex>/meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ImageMeta {
    media_type: String,
    config_digest: Digest,
    layers: Vec<LayerRef>,
    /// Every reference this image was pulled by.
    references: BTreeSet<String>,
    /// Indexes that resolved to this image, with the platform chosen.
    indexes: Vec<IndexAlias>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LayerRef {
    digest: Digest,
    size: u64,
    media_type: String,
    diff_id: Digest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IndexAlias {
    digest: Digest,
    platform: String,
}

/// Pin counts, and entries evicted while pinned.
#[derive(Default)]
struct Pins {
    counts: HashMap<Key, usize>,
    /// Entries moka evicted while pinned: their files stay until the last
    /// pin goes, then they are re-admitted.
    evicted: HashMap<Key, Value>,
    /// Unpinned keys of `evicted`, re-admitted at the next async call.
    readmit: Vec<Key>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds pins on entries; unpins on drop. In this process the pin counts
/// keep moka's evictions from deleting files; for other processes sharing
/// the root (which open it after this one closed it, while its containers
/// still run) a shared `flock` on each entry's pin file does.
struct PinGuard {
    pins: Arc<Mutex<Pins>>,
    keys: Vec<Key>,
    pins_dir: PathBuf,
    files: Vec<Flock<File>>,
}

impl PinGuard {
    fn new(pins: Arc<Mutex<Pins>>, pins_dir: PathBuf) -> Self {
        Self {
            pins,
            keys: Vec::new(),
            pins_dir,
            files: Vec::new(),
        }
    }

    fn add(&mut self, key: Key) {
        *lock(&self.pins).counts.entry(key.clone()).or_default() += 1;
        let path = key.pin_file(&self.pins_dir);
        let shared = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| {
                Flock::lock(f, FlockArg::LockShared).map_err(|(_, e)| io::Error::from(e))
            });
        match shared {
            Ok(file) => self.files.push(file),
            // Pinning against other processes is lost, not this one's.
            Err(e) => tracing::warn!("pin file {}: {e}", path.display()),
        }
        self.keys.push(key);
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = lock(&self.pins);
        for key in self.keys.drain(..) {
            let Some(n) = pins.counts.get_mut(&key) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                pins.counts.remove(&key);
                if pins.evicted.contains_key(&key) {
                    pins.readmit.push(key);
                }
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    downloads: AtomicU64,
    downloaded_bytes: AtomicU64,
    unpacks: AtomicU64,
}

/// An image ready to run: its config and unpacked layers. While it lives,
/// none of the image's entries is evicted.
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
    diff_ids: Vec<Digest>,
    _pin: PinGuard,
}

impl CachedImage {
    /// The layer directories top-most first, as overlayfs' `lowerdir=`
    /// lists them.
    pub fn lower_dirs(&self) -> Vec<PathBuf> {
        self.layers.iter().rev().cloned().collect()
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

/// A content-addressed store of blobs and unpacked layers on local disk.
/// Cheap to clone: clones share one index.
///
/// # Layout
///
/// ```text
/// ROOT/VERSION                          "1": the layout version
/// ROOT/v1/blobs/sha256/<hex>            compressed layer blobs
/// ROOT/v1/layers/sha256/<hex>/          unpacked layers by diff-id: overlayfs lower dirs
/// ROOT/v1/layers/sha256/<hex>.json      completion marker: diff-id, blob, file count and bytes
/// ROOT/v1/images/sha256/<hex>/manifest  the image manifest's exact bytes
/// ROOT/v1/images/sha256/<hex>/config    the config's exact bytes
/// ROOT/v1/images/sha256/<hex>/meta.json layers and diff-ids, references seen, indexes
///                                       resolved to it; its mtime is the last use
/// ROOT/v1/tmp/                          entries being written or deleted
/// ```
///
/// Everything is written under `tmp/` and renamed into place; a layer is
/// complete only once its marker is. [`Cache::open`] empties `tmp/` and
/// discards layer directories without a marker and records it cannot
/// read, so a crash mid-write leaves nothing that is taken for complete.
/// File contents are not synced before the rename (that would cost more
/// than the pull): a power cut can leave a truncated file under its final
/// name, which [`Cache::verify`] finds and a layer's diff-id check
/// refuses.
///
/// # Eviction and pinning
///
/// The index is a moka cache in LRU order whose weight is bytes (in KiB)
/// and whose capacity is [`CacheConfig::max_bytes`]; its eviction listener
/// deletes the files. Moka cannot be told to skip an entry, so pinning
/// works around it: an entry moka evicts while a [`CachedImage`] pins it
/// keeps its files and waits outside the index; when the last pin goes it
/// is re-admitted at the next call, as the most recently used entry, and
/// is evicted again only if the cache is still over its limit. The disk
/// can so hold more than `max_bytes` while pinned images need it. A pull
/// pins every entry before it looks for it, so an eviction never deletes
/// what a pull is about to use.
///
/// Tags name nothing in the cache: a tag can move, so [`Cache::pull`]
/// resolves it with one manifest request and serves the rest from disk.
/// Digest references (of an image, or of an index already resolved to
/// this platform) are answered without the network.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.inner.config.root)
            .field("max_bytes", &self.inner.config.max_bytes)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: CacheConfig,
    paths: Arc<Paths>,
    index: Moka<Key, Value>,
    pins: Arc<Mutex<Pins>>,
    /// Index digest → image digest for this platform.
    aliases: Mutex<HashMap<Digest, Digest>>,
    /// Manifest requests by reference, so that overlapping pulls of one
    /// tag make one request.
    manifests: Mutex<HashMap<String, ManifestSlot>>,
    clock: AtomicU64,
    counters: Counters,
}

/// The last answer to a manifest request: when it came back (on the
/// logical clock) and what it was.
type ManifestSlot = Arc<tokio::sync::Mutex<Option<(u64, Result<Manifest, Arc<Error>>)>>>;

/// What a scan of the disk found.
struct Found {
    /// Entries, least recently used first.
    entries: Vec<(Key, u64, Option<Arc<ImageRecord>>)>,
    aliases: HashMap<Digest, Digest>,
}

impl Cache {
    /// Opens (or creates) the cache at `config.root`: checks the layout
    /// version, removes what a crash left half-written, and rebuilds the
    /// index from disk in last-use order, evicting if `max_bytes` shrank.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> layer_cache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = layer_cache::Cache::open(layer_cache::CacheConfig::new(dir.path())).await?;
    /// assert_eq!(cache.stats().entries, 0);
    /// assert!(dir.path().join("v1/blobs/sha256").is_dir());
    /// # Ok(()) }
    /// ```
    pub async fn open(config: CacheConfig) -> Result<Self> {
        let root = config.root.clone();
        let platform = config.platform.to_string();
        let lock_timeout = config.lock_timeout;
        let (paths, found) = blocking(move || {
            let paths = Paths::open(&root, lock_timeout)?;
            disk::clear_tmp(&paths)?;
            let found = scan(&paths, &platform)?;
            Ok((paths, found))
        })
        .await?;
        let paths = Arc::new(paths);
        let pins = Arc::new(Mutex::new(Pins::default()));
        let index = Moka::builder()
            .max_capacity(config.max_bytes / 1024)
            .weigher(|_: &Key, v: &Value| u32::try_from(v.bytes.div_ceil(1024)).unwrap_or(u32::MAX))
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(listener(paths.clone(), pins.clone(), Handle::current()))
            .build();
        let inner = Inner {
            config,
            paths,
            index,
            pins,
            aliases: Mutex::new(found.aliases),
            manifests: Mutex::default(),
            clock: AtomicU64::new(0),
            counters: Counters::default(),
        };
        for (key, bytes, image) in found.entries {
            let entry = inner.entry(bytes, image);
            inner.index.insert(key, entry).await;
        }
        inner.index.run_pending_tasks().await;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Pulls `reference` into the cache and returns it pinned: the
    /// manifest (an index resolved to the configured platform), the config,
    /// and every layer, downloaded and unpacked in parallel. What the cache
    /// has is not fetched again; a digest reference already complete needs
    /// no network at all. Concurrent pulls share downloads and unpacks.
    pub async fn pull<F: Fetch>(&self, reference: &Reference, fetch: &F) -> Result<CachedImage> {
        let inner = &self.inner;
        inner.readmit().await;
        if let Some(digest) = reference.digest()
            && let Some(image) = inner.lookup(reference, digest).await?
        {
            inner.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(image);
        }
        let top = inner.manifest(reference, fetch).await?;
        if let Some(want) = reference.digest() {
            check_digest(|| format!("manifest of {reference}"), want, top.digest())?;
        }
        let (manifest, index) = match top.kind() {
            ManifestKind::Image => (top, None),
            ManifestKind::Index => {
                let desc = top.select_platform(&inner.config.platform)?;
                let child_ref = reference.with_digest(desc.digest.clone());
                let child = inner.manifest(&child_ref, fetch).await?;
                check_digest(
                    || format!("manifest of {child_ref}"),
                    &desc.digest,
                    child.digest(),
                )?;
                (child, Some(top.digest().clone()))
            }
        };
        if manifest.kind() != ManifestKind::Image {
            return Err(Error::InvalidImage {
                digest: manifest.digest().clone(),
                reason: "an index inside an index".into(),
            });
        }
        let digest = manifest.digest().clone();
        if let Some(index) = &index {
            lock(&inner.aliases).insert(index.clone(), digest.clone());
        }
        let image = match inner.lookup(reference, &digest).await? {
            Some(image) => {
                inner.counters.hits.fetch_add(1, Ordering::Relaxed);
                image
            }
            None => {
                inner.counters.misses.fetch_add(1, Ordering::Relaxed);
                let image = inner.fill(reference, fetch, &manifest).await?;
                // Moka orders entries once it has processed their inserts:
                // a use recorded before would be lost.
                inner.index.run_pending_tasks().await;
                inner.touch(&image).await;
                image
            }
        };
        inner.note_use(&image, reference, index).await?;
        inner.index.run_pending_tasks().await;
        Ok(image)
    }

    /// The image a digest reference names, if the cache has it complete,
    /// pinned; never touches the network. The digest may be an image
    /// manifest's or an index's already pulled for this platform. A
    /// reference without a digest gives `None`: a tag can move, so only
    /// [`Cache::pull`] (one manifest request) resolves it.
    pub async fn get(&self, reference: &Reference) -> Result<Option<CachedImage>> {
        let inner = &self.inner;
        inner.readmit().await;
        let found = match reference.digest() {
            Some(digest) => inner.lookup(reference, digest).await?,
            None => None,
        };
        let counter = match &found {
            Some(image) => {
                inner.touch_meta(&image.digest);
                &inner.counters.hits
            }
            None => &inner.counters.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(found)
    }

    /// Pulls every reference in parallel and unpins them: a warm-up before
    /// work arrives. Returns each image's manifest digest or error, in the
    /// order given.
    pub async fn prewarm<F: Fetch>(
        &self,
        references: &[Reference],
        fetch: &F,
    ) -> Vec<Result<Digest>> {
        join_all(
            references
                .iter()
                .map(|r| async move { self.pull(r, fetch).await.map(|image| image.digest) }),
        )
        .await
    }

    /// Checks every entry and removes the damaged ones, pinned or not (their
    /// content is wrong either way), so the next pull fetches them again.
    ///
    /// Blobs, manifests and configs are re-hashed and their sizes checked.
    /// An unpacked layer is checked cheaply against its completion marker:
    /// the marker must be readable and name the layer, and a walk of the
    /// directory must find the same number of files, directories and other
    /// entries, and the same total file bytes. That catches missing, added,
    /// truncated or extended files and a layer whose files were never
    /// flushed before a power cut; it does not catch a file rewritten in
    /// place with the same size.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let inner = &self.inner;
        inner.readmit().await;
        inner.index.run_pending_tasks().await;
        let mut entries: Vec<(Key, Value)> =
            inner.index.iter().map(|(k, v)| ((*k).clone(), v)).collect();
        entries.extend(
            lock(&inner.pins)
                .evicted
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let paths = inner.paths.clone();
        let (checked, hashed, bad) = blocking(move || {
            let mut hashed = 0;
            let mut bad = Vec::new();
            for (key, value) in &entries {
                let (n, problem) = check(&paths, key, value);
                hashed += n;
                if let Some(reason) = problem {
                    bad.push((key.clone(), reason));
                }
            }
            Ok((entries.len() as u64, hashed, bad))
        })
        .await?;
        let mut report = VerifyReport {
            checked,
            hashed_bytes: hashed,
            corrupt: Vec::new(),
        };
        for (key, reason) in bad {
            inner.purge(&key).await?;
            report.corrupt.push(CorruptEntry {
                kind: key.kind(),
                digest: key.digest().clone(),
                reason,
            });
        }
        Ok(report)
    }

    /// The images the cache knows, most recently used first.
    pub async fn list(&self) -> Result<Vec<ImageEntry>> {
        let inner = &self.inner;
        inner.readmit().await;
        inner.index.run_pending_tasks().await;
        let mut weights: HashMap<Key, Value> =
            inner.index.iter().map(|(k, v)| ((*k).clone(), v)).collect();
        let pins = {
            let pins = lock(&inner.pins);
            for (k, v) in &pins.evicted {
                weights.insert(k.clone(), v.clone());
            }
            pins.counts
                .keys()
                .cloned()
                .collect::<std::collections::HashSet<_>>()
        };
        let mut out = Vec::new();
        for (key, value) in &weights {
            let (Key::Image(digest), Some(record)) = (key, &value.image) else {
                continue;
            };
            let meta = lock(&record.meta).clone();
            let mut size = value.bytes;
            let mut complete = true;
            for layer in &meta.layers {
                match weights.get(&Key::Layer(layer.diff_id.clone())) {
                    Some(v) => size += v.bytes,
                    None => complete = false,
                }
                if let Some(v) = weights.get(&Key::Blob(layer.digest.clone())) {
                    size += v.bytes;
                }
            }
            let meta_path = inner.paths.image_dir(digest).join("meta.json");
            let last_used = fs::metadata(&meta_path)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(ImageEntry {
                digest: digest.clone(),
                references: meta.references.into_iter().collect(),
                size,
                complete,
                pinned: pins.contains(key),
                last_used,
            });
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok(out)
    }

    /// Evicts unpinned entries, least recently used first, until the cache
    /// holds at most `target_bytes` (0: everything not pinned).
    pub async fn prune(&self, target_bytes: u64) -> Result<PruneReport> {
        let inner = &self.inner;
        inner.readmit().await;
        inner.index.run_pending_tasks().await;
        let mut entries: Vec<(Key, Value)> =
            inner.index.iter().map(|(k, v)| ((*k).clone(), v)).collect();
        entries.sort_by_key(|(_, v)| v.last_used.load(Ordering::Relaxed));
        let mut held: u64 = entries.iter().map(|(_, v)| v.bytes).sum();
        let mut report = PruneReport::default();
        for (key, value) in entries {
            if held <= target_bytes {
                break;
            }
            if lock(&inner.pins).counts.contains_key(&key) {
                continue;
            }
            inner.index.invalidate(&key).await;
            held -= value.bytes;
            report.removed += 1;
            report.freed_bytes += value.bytes;
        }
        report.remaining_bytes = held;
        Ok(report)
    }

    /// Counters since open, and what the cache holds.
    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        let c = &inner.counters;
        let (mut bytes, mut entries) = (0, 0);
        for (_, v) in inner.index.iter() {
            bytes += v.bytes;
            entries += 1;
        }
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            downloads: c.downloads.load(Ordering::Relaxed),
            downloaded_bytes: c.downloaded_bytes.load(Ordering::Relaxed),
            unpacks: c.unpacks.load(Ordering::Relaxed),
            bytes,
            entries,
            pinned: lock(&inner.pins).counts.len() as u64,
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        self.inner.paths.root()
    }
}

impl Inner {
    fn entry(&self, bytes: u64, image: Option<Arc<ImageRecord>>) -> Value {
        Arc::new(Entry {
            bytes,
            last_used: AtomicU64::new(self.tick()),
            image,
        })
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Asks `fetch` for the manifest `reference` names, sharing the answer
    /// (or the error) with every caller that asked while the request was
    /// in flight. An answer that came back before the ask is not reused: a
    /// tag may have moved since.
    async fn manifest<F: Fetch>(&self, reference: &Reference, fetch: &F) -> Result<Manifest> {
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
                    let answer = fetch
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

    /// Re-admits entries evicted while pinned whose pins are gone.
    async fn readmit(&self) {
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
    async fn find(&self, key: &Key) -> Option<Value> {
        match self.index.get(key).await {
            Some(v) => Some(v),
            None => lock(&self.pins).evicted.get(key).cloned(),
        }
    }

    /// The image `digest` names (an image or a resolved index), pinned, if
    /// it is complete in the index.
    async fn lookup(&self, reference: &Reference, digest: &Digest) -> Result<Option<CachedImage>> {
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
        let mut dirs = Vec::with_capacity(layers.len());
        for layer in &layers {
            let key = Key::Layer(layer.diff_id.clone());
            pin.add(key.clone());
            pin.add(Key::Blob(layer.digest.clone()));
            let Some(entry) = self.find(&key).await else {
                return Ok(None);
            };
            entry.last_used.store(self.tick(), Ordering::Relaxed);
            dirs.push(self.paths.layer_dir(&layer.diff_id));
        }
        entry.last_used.store(self.tick(), Ordering::Relaxed);
        Ok(Some(CachedImage {
            reference: reference.clone(),
            digest,
            config: record.config.clone(),
            layers: dirs,
            diff_ids: layers.into_iter().map(|l| l.diff_id).collect(),
            _pin: pin,
        }))
    }

    /// Marks an image's layers, then the image, as just used.
    async fn touch(&self, image: &CachedImage) {
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
    async fn fill<F: Fetch>(
        &self,
        reference: &Reference,
        fetch: &F,
        manifest: &Manifest,
    ) -> Result<CachedImage> {
        let digest = manifest.digest().clone();
        let mut pin = PinGuard::new(self.pins.clone(), self.paths.pins_dir());
        let key = Key::Image(digest.clone());
        pin.add(key.clone());
        let entry = self
            .index
            .try_get_with(key.clone(), self.make_image(reference, fetch, manifest))
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
                .map(|layer| self.ensure_layer(reference, fetch, layer)),
        )
        .await;
        results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(CachedImage {
            reference: reference.clone(),
            digest,
            config: record.config.clone(),
            layers: layers
                .iter()
                .map(|l| self.paths.layer_dir(&l.diff_id))
                .collect(),
            diff_ids: layers.into_iter().map(|l| l.diff_id).collect(),
            _pin: pin,
        })
    }

    /// The init of an image entry: the record on disk, or the config
    /// fetched and checked and the record written.
    async fn make_image<F: Fetch>(
        &self,
        reference: &Reference,
        fetch: &F,
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
        let config_bytes = self.fetch_small(reference, fetch, config_desc).await?;
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
        let d = digest.clone();
        let m = meta.clone();
        blocking(move || write_image(&paths, &d, &manifest_bytes, &config_bytes, &m)).await?;
        let record = ImageRecord {
            digest,
            config,
            meta: Mutex::new(meta),
        };
        Ok(self.entry(bytes, Some(Arc::new(record))))
    }

    /// A small blob (a config) read whole, size-capped and verified.
    async fn fetch_small<F: Fetch>(
        &self,
        reference: &Reference,
        fetch: &F,
        desc: &Descriptor,
    ) -> Result<Vec<u8>> {
        let what = || format!("blob {} of {reference}", desc.digest);
        if desc.size > MAX_CONFIG_BYTES {
            return Err(Error::SizeMismatch {
                what: format!("{} (over the {MAX_CONFIG_BYTES}-byte limit)", what()),
                expected: MAX_CONFIG_BYTES,
                actual: desc.size,
            });
        }
        let mut stream = fetch.blob(reference, desc).await.map_err(fetch_err(what))?;
        let mut bytes = Vec::with_capacity(desc.size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(fetch_err(what))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > desc.size {
                return Err(Error::SizeMismatch {
                    what: what(),
                    expected: desc.size,
                    actual: bytes.len() as u64,
                });
            }
        }
        if bytes.len() as u64 != desc.size {
            return Err(Error::SizeMismatch {
                what: what(),
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        check_digest(what, &desc.digest, &Digest::of(&bytes))?;
        Ok(bytes)
    }

    /// The layer unpacked: on disk already, or from its blob (downloaded
    /// if missing). One caller does the work; others wait for it.
    async fn ensure_layer<F: Fetch>(
        &self,
        reference: &Reference,
        fetch: &F,
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
            self.ensure_blob(reference, fetch, &desc).await?;
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
    async fn ensure_blob<F: Fetch>(
        &self,
        reference: &Reference,
        fetch: &F,
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
                match self.download(reference, fetch, desc, &mut received).await {
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
    async fn download<F: Fetch>(
        &self,
        reference: &Reference,
        fetch: &F,
        desc: &Descriptor,
        received: &mut u64,
    ) -> Result<()> {
        let what = || format!("blob {} of {reference}", desc.digest);
        let mut stream = fetch.blob(reference, desc).await.map_err(fetch_err(what))?;
        let tmp = TempPath::new(self.paths.tmp_path("blob"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp.path())
            .map_err(io_at(tmp.path()))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(8);
        let path = tmp.path().to_owned();
        let writer = tokio::task::spawn_blocking(move || -> Result<Digest> {
            let mut digester = Digester::new();
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch {
                    digester.update(&chunk);
                    file.write_all(&chunk).map_err(io_at(&path))?;
                }
            }
            Ok(digester.finish())
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
        check_digest(what, &desc.digest, &digest)?;
        tmp.persist(&self.paths.blob(&desc.digest))?;
        self.counters.downloads.fetch_add(1, Ordering::Relaxed);
        self.counters
            .downloaded_bytes
            .fetch_add(*received, Ordering::Relaxed);
        Ok(())
    }

    /// An entry loaded back from disk is tracked again: it is no longer
    /// waiting outside the index.
    fn forget_evicted(&self, key: &Key) {
        lock(&self.pins).evicted.remove(key);
    }

    /// Removes an entry and its files now, pinned or not.
    async fn purge(&self, key: &Key) -> Result<()> {
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

    /// Records the reference and index an image was used by, and its last
    /// use.
    async fn note_use(
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
                    paths.write_atomic(&paths.image_dir(&digest).join("meta.json"), &json)
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
    fn touch_meta(&self, digest: &Digest) {
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

/// The eviction listener: deletes an evicted entry's files, unless it is
/// pinned, in which case it waits outside the index for its pins to go.
/// It runs under the pins lock, so a pull (which pins before it looks)
/// sees an entry either whole or gone.
fn listener(
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

/// An exclusive lock on an entry's pin file, `None` when it has none, or
/// `Err` when another process holds it shared (a pin).
fn pinned_elsewhere(pin_file: &Path) -> std::result::Result<Option<Flock<File>>, ()> {
    let file = match OpenOptions::new().write(true).open(pin_file) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Err(()),
        Err(_) => Ok(None),
    }
}

/// Moves an entry's files into `tmp/` (a layer's marker goes first, so a
/// crash in between leaves an unmarked directory that open discards).
fn retire(paths: &Paths, key: &Key) -> Result<Vec<PathBuf>> {
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

/// Checks one entry; returns the bytes hashed and what is wrong, if
/// anything.
fn check(paths: &Paths, key: &Key, value: &Entry) -> (u64, Option<String>) {
    match key {
        Key::Blob(d) => match hash_file(&paths.blob(d)) {
            Ok((_, size)) if size != value.bytes => (
                size,
                Some(format!("{size} bytes on disk, {} expected", value.bytes)),
            ),
            Ok((digest, size)) if &digest != d => {
                (size, Some(format!("content hashes to {digest}")))
            }
            Ok((_, size)) => (size, None),
            Err(e) => (0, Some(e.to_string())),
        },
        Key::Layer(d) => {
            let Some(marker) = load_layer(paths, d) else {
                return (0, Some("completion marker missing or unreadable".into()));
            };
            match disk::tally(&paths.layer_dir(d)) {
                Ok(t) if t == marker.tally => (0, None),
                Ok(t) => (
                    0,
                    Some(format!(
                        "holds {} files, {} dirs, {} others, {} bytes; {} files, {} dirs, {} others, {} bytes expected",
                        t.files,
                        t.dirs,
                        t.others,
                        t.bytes,
                        marker.tally.files,
                        marker.tally.dirs,
                        marker.tally.others,
                        marker.tally.bytes
                    )),
                ),
                Err(e) => (0, Some(e.to_string())),
            }
        }
        Key::Image(d) => {
            let dir = paths.image_dir(d);
            let Some(meta) = disk::read_json::<ImageMeta>(&dir.join("meta.json")) else {
                return (0, Some("meta.json missing or unreadable".into()));
            };
            let mut hashed = 0;
            for (file, want) in [("manifest", d), ("config", &meta.config_digest)] {
                match hash_file(&dir.join(file)) {
                    Ok((digest, size)) => {
                        hashed += size;
                        if &digest != want {
                            return (hashed, Some(format!("{file} hashes to {digest}")));
                        }
                    }
                    Err(e) => return (hashed, Some(e.to_string())),
                }
            }
            (hashed, None)
        }
    }
}

fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut digester = Digester::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        digester.update(&buf[..n]);
    }
    let size = digester.bytes();
    Ok((digester.finish(), size))
}

/// The record of a complete layer, if its marker and directory are there.
fn load_layer(paths: &Paths, diff_id: &Digest) -> Option<LayerMarker> {
    let marker: LayerMarker = disk::read_json(&paths.layer_marker(diff_id))?;
    (&marker.diff_id == diff_id && paths.layer_dir(diff_id).is_dir()).then_some(marker)
}

/// An image record read back from disk, with its weight.
fn load_image(paths: &Paths, digest: &Digest) -> Option<(ImageRecord, u64)> {
    let dir = paths.image_dir(digest);
    let meta: ImageMeta = disk::read_json(&dir.join("meta.json"))?;
    let manifest_len = fs::metadata(dir.join("manifest")).ok()?.len();
    let config_bytes = fs::read(dir.join("config")).ok()?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).ok()?;
    let record = ImageRecord {
        digest: digest.clone(),
        config,
        meta: Mutex::new(meta),
    };
    Some((record, manifest_len + config_bytes.len() as u64))
}

/// Writes an image directory under `tmp/` and renames it into place.
fn write_image(
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

/// Reads the cache back from disk, discarding what is incomplete or
/// unreadable, and orders it by the last use of the images using it.
fn scan(paths: &Paths, platform: &str) -> Result<Found> {
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

fn check_digest(what: impl FnOnce() -> String, expected: &Digest, actual: &Digest) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    Err(Error::DigestMismatch {
        what: what(),
        expected: expected.clone(),
        actual: actual.clone(),
    })
}

fn fetch_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl FnOnce() -> String,
) -> impl FnOnce(E) -> Error {
    move |e| Error::Fetch {
        what: what(),
        source: Box::new(e),
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Io {
        path: PathBuf::new(),
        source: io::Error::other(e),
    }
}

/// Runs file system work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

#[cfg(test)]
mod tests;
