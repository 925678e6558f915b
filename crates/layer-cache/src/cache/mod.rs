//! The cache: [`Cache`] and its shared state. The work is split by
//! responsibility: `entries` (the index, eviction, the scan at open),
//! `pins`, `records` (image metadata on disk), `pull` (manifests, blobs,
//! layers), `maintenance` (verify, list, prune, stats) and `image` (what a
//! pull returns).

mod entries;
mod image;
mod maintenance;
mod pins;
mod pull;
mod records;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::join_all;
use moka::future::Cache as Moka;
use moka::policy::EvictionPolicy;
use oci_model::{Digest, Reference, Source, resolve_manifest};
use tokio::runtime::Handle;

use crate::disk::{self, Paths};
use crate::{CacheConfig, Error, Result};
use entries::{Key, Value, listener, scan};
use pins::Pins;
use pull::ManifestSlot;

pub use image::CachedImage;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    downloads: AtomicU64,
    downloaded_bytes: AtomicU64,
    unpacks: AtomicU64,
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
    pub async fn pull<S: Source>(&self, reference: &Reference, source: &S) -> Result<CachedImage> {
        let inner = &self.inner;
        inner.readmit().await;
        if let Some(digest) = reference.digest()
            && let Some(image) = inner.lookup(reference, digest).await?
        {
            inner.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(image);
        }
        let shared = pull::SharedManifests { inner, source };
        let resolved = resolve_manifest(&shared, reference, &inner.config.platform)
            .await
            .map_err(from_source)?;
        let digest = resolved.manifest.digest().clone();
        let index = resolved.index.as_ref().map(|i| i.digest().clone());
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
                let mut image = inner.fill(reference, source, &resolved.manifest).await?;
                image.downloaded = true;
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
    pub async fn prewarm<S: Source>(
        &self,
        references: &[Reference],
        source: &S,
    ) -> Vec<Result<Digest>> {
        join_all(
            references
                .iter()
                .map(|r| async move { self.pull(r, source).await.map(|image| image.digest) }),
        )
        .await
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        self.inner.paths.root()
    }
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

/// An `oci-model` error from reading a source: the cache's own error when
/// the source was the cache's manifest sharing, else a fetch error.
fn from_source(e: oci_model::Error) -> Error {
    match e {
        oci_model::Error::Source { what, source } => match source.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(source) => Error::Fetch { what, source },
        },
        other => Error::Model(other),
    }
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
