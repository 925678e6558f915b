//! Looking after the cache: verify, list, prune and stats.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use oci_model::{Digest, Digester};

use super::entries::{Entry, Key, Value};
use super::records::{ImageMeta, load_layer};
use super::{Cache, blocking, lock};
use crate::disk::{self, Paths};
use crate::report::{CacheStats, CorruptEntry, ImageEntry, PruneReport, VerifyReport};
use crate::{Result, io_at};

impl Cache {
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
            pins.counts.keys().cloned().collect::<HashSet<_>>()
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
}

/// Checks one entry; returns the bytes hashed and what is wrong, if
/// anything.
pub(super) fn check(paths: &Paths, key: &Key, value: &Entry) -> (u64, Option<String>) {
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

pub(super) fn hash_file(path: &Path) -> Result<(Digest, u64)> {
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
