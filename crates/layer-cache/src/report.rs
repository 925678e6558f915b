//! What the cache reports: statistics, listings, prune and verify results.

use std::fmt;
use std::time::SystemTime;

use oci_model::Digest;
use serde::Serialize;

/// The kind of a cache entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A compressed layer blob (`blobs/sha256/<hex>`).
    Blob,
    /// An unpacked layer (`layers/sha256/<diff-id hex>/`).
    Layer,
    /// An image's manifest, config and metadata (`images/sha256/<hex>/`).
    Image,
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Blob => "blob",
            EntryKind::Layer => "layer",
            EntryKind::Image => "image",
        })
    }
}

/// Counters since [`Cache::open`](crate::Cache::open), and what the cache holds now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Pulls and gets whose image was complete on disk (a pull by tag
    /// still made its one manifest request).
    pub hits: u64,
    /// Pulls that had to download or unpack something, and gets that
    /// found nothing.
    pub misses: u64,
    /// Blobs downloaded.
    pub downloads: u64,
    /// Bytes of blobs downloaded.
    pub downloaded_bytes: u64,
    /// Layers unpacked.
    pub unpacks: u64,
    /// Bytes held (eviction weight: file contents, as evicted).
    pub bytes: u64,
    /// Entries (blobs, layers, images) held.
    pub entries: u64,
    /// Entries pinned by live [`CachedImage`](crate::CachedImage)s.
    pub pinned: u64,
}

/// An image in the cache, for `hoist cache ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageEntry {
    /// The image manifest's digest.
    pub digest: Digest,
    /// Every reference it was pulled by.
    pub references: Vec<String>,
    /// Bytes of its manifest, config, layer blobs and unpacked layers
    /// present (shared layers count in every image using them).
    pub size: u64,
    /// Whether every layer is unpacked, so a container can start without
    /// the network.
    pub complete: bool,
    /// Whether a live [`CachedImage`](crate::CachedImage) pins it.
    pub pinned: bool,
    /// When it was last pulled or got.
    pub last_used: SystemTime,
}

/// What [`Cache::prune`](crate::Cache::prune) removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Entries removed.
    pub removed: u64,
    /// Bytes they held.
    pub freed_bytes: u64,
    /// Bytes held afterwards, pinned entries included.
    pub remaining_bytes: u64,
}

/// A damaged entry [`Cache::verify`](crate::Cache::verify) found and removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CorruptEntry {
    /// What kind of entry.
    pub kind: EntryKind,
    /// Its digest (diff-id for a layer).
    pub digest: Digest,
    /// What is wrong with it.
    pub reason: String,
}

/// What [`Cache::verify`](crate::Cache::verify) checked and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Entries checked.
    pub checked: u64,
    /// Bytes hashed (blobs, manifests, configs).
    pub hashed_bytes: u64,
    /// Entries found damaged; each was removed so the next pull fetches
    /// it again.
    pub corrupt: Vec<CorruptEntry>,
}
