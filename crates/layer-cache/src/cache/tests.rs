//! The cache's logic against an in-memory source that counts what it
//! serves: single flight, verification, hostile layers, whiteouts,
//! eviction with pins, restart and repair.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use oci_layer::{LayerWriter, WriteOptions};
use oci_model::media_type::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST};
use serde_json::json;
use tar::{EntryType, Header};

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use oci_model::{BlobStream, Descriptor, Digest, Manifest, Reference, Source};

use super::*;
use crate::EntryKind;
use crate::overlay;
use std::fs;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FakeError(String);

/// An in-memory registry: manifests by tag or digest, blobs by digest.
#[derive(Default)]
struct Fake {
    manifests: Mutex<HashMap<String, Vec<u8>>>,
    blobs: Mutex<HashMap<Digest, Vec<u8>>>,
    /// Blob GETs per digest.
    blob_gets: Mutex<HashMap<Digest, usize>>,
    manifest_gets: AtomicUsize,
    offline: AtomicBool,
}

impl Fake {
    fn blob_gets(&self, digest: &Digest) -> usize {
        lock(&self.blob_gets).get(digest).copied().unwrap_or(0)
    }

    fn total_blob_gets(&self) -> usize {
        lock(&self.blob_gets).values().sum()
    }
}

impl Source for Fake {
    type Error = FakeError;

    async fn manifest(&self, reference: &Reference) -> Result<Manifest, FakeError> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(FakeError("offline".into()));
        }
        self.manifest_gets.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent callers overlap.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let bytes = lock(&self.manifests)
            .get(reference.reference_str())
            .cloned()
            .ok_or_else(|| FakeError(format!("no manifest {reference}")))?;
        Manifest::from_bytes(bytes, None).map_err(|e| FakeError(e.to_string()))
    }

    async fn blob(
        &self,
        _reference: &Reference,
        desc: &Descriptor,
    ) -> Result<BlobStream<FakeError>, FakeError> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(FakeError("offline".into()));
        }
        *lock(&self.blob_gets)
            .entry(desc.digest.clone())
            .or_default() += 1;
        let bytes = lock(&self.blobs)
            .get(&desc.digest)
            .cloned()
            .ok_or_else(|| FakeError(format!("no blob {}", desc.digest)))?;
        // Slow enough that concurrent callers overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let chunks: Vec<Result<Bytes, FakeError>> = bytes
            .chunks(16 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }
}

/// A layer blob with its media type and diff-id.
#[derive(Clone)]
struct TestLayer {
    blob: Vec<u8>,
    media_type: String,
    diff_id: Digest,
}

impl TestLayer {
    /// A gzip layer of files with the given contents.
    fn files(files: &[(&str, Vec<u8>)]) -> Self {
        let mut w = LayerWriter::new(WriteOptions::default());
        for (path, data) in files {
            w.add_bytes(path, 0o644, data.clone()).unwrap();
        }
        let mut blob = Vec::new();
        let info = w.finish(&mut blob).unwrap();
        Self {
            blob,
            media_type: info.media_type.to_owned(),
            diff_id: info.diff_id,
        }
    }

    /// An uncompressed layer from a raw tar.
    fn tar(tar: Vec<u8>) -> Self {
        Self {
            diff_id: Digest::of(&tar),
            blob: tar,
            media_type: OCI_LAYER_TAR.to_owned(),
        }
    }

    fn digest(&self) -> Digest {
        Digest::of(&self.blob)
    }
}

/// A tar built with names written straight into the header, as a hostile
/// layer would be.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn raw(mut self, kind: EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw(EntryType::Regular, name, "", data)
    }

    fn layer(self) -> TestLayer {
        TestLayer::tar(self.0.into_inner().unwrap())
    }
}

/// Pseudo-random, incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Publishes an image under `tag`; returns its manifest digest.
fn publish(source: &Fake, tag: &str, layers: &[TestLayer]) -> Digest {
    publish_with(source, tag, layers, None)
}

fn publish_with(
    source: &Fake,
    tag: &str,
    layers: &[TestLayer],
    diff_ids: Option<Vec<Digest>>,
) -> Digest {
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| l.diff_id.clone()).collect());
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest().as_str(), "size": l.blob.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = Digest::of(&manifest);
    let mut blobs = lock(&source.blobs);
    blobs.insert(config_digest, config);
    for l in layers {
        blobs.insert(l.digest(), l.blob.clone());
    }
    let mut manifests = lock(&source.manifests);
    manifests.insert(tag.to_owned(), manifest.clone());
    manifests.insert(digest.as_str().to_owned(), manifest);
    digest
}

fn reference(tag: &str) -> Reference {
    format!("127.0.0.1:5000/fn/app:{tag}").parse().unwrap()
}

fn pinned(tag: &str, digest: &Digest) -> Reference {
    reference(tag).with_digest(digest.clone())
}

async fn open(root: &Path, max_bytes: u64) -> Cache {
    let mut config = CacheConfig::new(root);
    config.max_bytes = max_bytes;
    config.platform = oci_model::Platform::default();
    Cache::open(config).await.unwrap()
}

/// Everything under `dir`, relative.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            out.push(e.path().strip_prefix(dir).unwrap().to_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn tmp_is_empty(root: &Path) -> bool {
    tree(&root.join("v1/tmp")).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_pulls_download_and_unpack_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let layers: Vec<TestLayer> = (0..3)
        .map(|i| TestLayer::files(&[(&format!("l{i}/data"), noise(i, 100_000))]))
        .collect();
    let digest = publish(&source, "v1", &layers);
    let cache = open(dir.path(), 1 << 30).await;

    let r = reference("v1");
    let images = join_all((0..50).map(|_| cache.pull(&r, &source))).await;
    let images: Vec<CachedImage> = images.into_iter().map(Result::unwrap).collect();

    for l in &layers {
        assert_eq!(source.blob_gets(&l.digest()), 1, "one download per blob");
    }
    assert_eq!(source.total_blob_gets(), 4, "three layers and the config");
    assert_eq!(
        source.manifest_gets.load(Ordering::SeqCst),
        1,
        "one manifest request for fifty overlapping pulls of a tag"
    );
    let stats = cache.stats();
    assert_eq!(stats.downloads, 3);
    assert_eq!(stats.unpacks, 3);
    for image in &images {
        assert_eq!(image.digest, digest);
        assert_eq!(image.layers, images[0].layers);
        assert_eq!(image.config.rootfs().diff_ids().len(), 3);
    }
    let bottom = &images[0].layers[0];
    assert_eq!(fs::read(bottom.join("l0/data")).unwrap(), noise(0, 100_000));
    assert_eq!(images[0].lower_dirs()[0], images[0].layers[2]);
    assert!(tmp_is_empty(dir.path()));
}

#[tokio::test]
async fn cached_digest_reference_needs_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let digest = publish(&source, "v1", &[TestLayer::files(&[("a", b"a".to_vec())])]);
    let cache = open(dir.path(), 1 << 30).await;
    assert!(cache.get(&pinned("v1", &digest)).await.unwrap().is_none());
    drop(cache.pull(&reference("v1"), &source).await.unwrap());

    source.offline.store(true, Ordering::SeqCst);
    let by_digest = pinned("v1", &digest);
    let got = cache.get(&by_digest).await.unwrap().expect("cached");
    assert_eq!(got.digest, digest);
    let pulled = cache.pull(&by_digest, &source).await.unwrap();
    assert_eq!(pulled.layers, got.layers);
    // A tag can move: only a pull resolves it, and this one is offline.
    assert!(cache.get(&reference("v1")).await.unwrap().is_none());
    let err = cache.pull(&reference("v1"), &source).await.unwrap_err();
    assert!(
        matches!(err.root(), Error::Fetch { what, .. } if what.contains("manifest of 127.0.0.1:5000/fn/app:v1")),
        "{err}"
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.downloads), (2, 1));
}

#[tokio::test]
async fn index_resolves_to_the_platform_and_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let amd = publish(
        &source,
        "amd",
        &[TestLayer::files(&[("amd", b"x".to_vec())])],
    );
    let arm = publish(
        &source,
        "arm",
        &[TestLayer::files(&[("arm", b"y".to_vec())])],
    );
    let size = |tag: &str| lock(&source.manifests)[tag].len();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm.as_str(), "size": size("arm"),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": OCI_MANIFEST, "digest": amd.as_str(), "size": size("amd"),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let index_digest = Digest::of(&index);
    lock(&source.manifests).insert("multi".into(), index.clone());
    lock(&source.manifests).insert(index_digest.as_str().into(), index);

    let cache = open(dir.path(), 1 << 30).await;
    let image = cache.pull(&reference("multi"), &source).await.unwrap();
    assert_eq!(image.digest, amd);
    assert!(image.layers[0].join("amd").is_file());
    drop(image);

    source.offline.store(true, Ordering::SeqCst);
    drop(cache);
    let cache = open(dir.path(), 1 << 30).await;
    let again = cache.get(&pinned("multi", &index_digest)).await.unwrap();
    assert_eq!(again.expect("index remembered").digest, amd);
    let listed = cache.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].references[0].ends_with(":multi"), "{listed:?}");
    assert!(listed[0].complete);
}

#[tokio::test]
async fn bad_blobs_are_refused_and_leave_nothing() {
    for case in ["wrong digest", "too long", "too short", "wrong manifest"] {
        let dir = tempfile::tempdir().unwrap();
        let source = Fake::default();
        let layer = TestLayer::files(&[("f", noise(1, 50_000))]);
        let digest = publish(&source, "v1", std::slice::from_ref(&layer));
        {
            let mut blobs = lock(&source.blobs);
            let blob = blobs.get_mut(&layer.digest()).unwrap();
            match case {
                "wrong digest" => {
                    let n = blob.len();
                    blob[n / 2] ^= 1;
                }
                "too long" => blob.extend_from_slice(b"trailing"),
                "too short" => {
                    blob.pop();
                }
                _ => {}
            }
        }
        let cache = open(dir.path(), 1 << 30).await;
        let r = if case == "wrong manifest" {
            let other = Digest::of(b"another manifest");
            let bytes = lock(&source.manifests)["v1"].clone();
            lock(&source.manifests).insert(other.as_str().to_owned(), bytes);
            pinned("v1", &other)
        } else {
            reference("v1")
        };
        let err = cache.pull(&r, &source).await.unwrap_err().to_string();
        let want = match case {
            "wrong digest" | "wrong manifest" => "digest mismatch",
            _ => "bytes, got",
        };
        assert!(err.contains(want), "{case}: {err}");
        if case != "wrong manifest" {
            assert!(err.contains(layer.digest().as_str()), "{case}: {err}");
        }
        assert!(tmp_is_empty(dir.path()), "{case}");
        assert!(
            tree(&dir.path().join("v1/blobs/sha256")).is_empty(),
            "{case}"
        );
        assert!(
            tree(&dir.path().join("v1/layers/sha256")).is_empty(),
            "{case}"
        );
        assert!(cache.get(&pinned("v1", &digest)).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn hostile_layers_are_refused_and_leave_nothing() {
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().display().to_string();
    let cases: Vec<(&str, TestLayer, &str)> = vec![
        (
            "parent traversal",
            Tar::new().file("../../escape", b"x").layer(),
            "entry `../../escape`",
        ),
        (
            // `/x` is read as `x` below the root; `/..` still climbs out.
            "absolute path climbing out",
            Tar::new().file(&format!("/..{out}/abs"), b"x").layer(),
            "climbs out of the layer root",
        ),
        (
            "symlink then a file through it",
            Tar::new()
                .raw(EntryType::Symlink, "evil", &out, b"")
                .file("evil/planted", b"x")
                .layer(),
            "parent `evil` is a symlink",
        ),
        (
            "relative symlink out",
            Tar::new()
                .raw(EntryType::Symlink, "up", "../../..", b"")
                .layer(),
            "climbs out",
        ),
        (
            "hard link out",
            Tar::new()
                .raw(EntryType::Link, "passwd", &format!("{out}/secret"), b"")
                .layer(),
            "entry `passwd`",
        ),
        (
            "whiteout through a symlink",
            Tar::new()
                .raw(EntryType::Symlink, "evil", &out, b"")
                .file("evil/.wh.victim", b"")
                .layer(),
            "symlink",
        ),
    ];
    fs::write(outside.path().join("secret"), b"s").unwrap();
    fs::write(outside.path().join("victim"), b"v").unwrap();
    for (name, layer, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let source = Fake::default();
        let good = TestLayer::files(&[("ok", b"fine".to_vec())]);
        publish(&source, "v1", &[good, layer.clone()]);
        let cache = open(dir.path(), 1 << 30).await;
        let err = cache.pull(&reference("v1"), &source).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(msg.contains(layer.digest().as_str()), "{name}: {msg}");
        assert_eq!(
            tree(outside.path()),
            [PathBuf::from("secret"), PathBuf::from("victim")],
            "{name}: something was written outside"
        );
        assert!(tmp_is_empty(dir.path()), "{name}");
        let layer_dirs = tree(&dir.path().join("v1/layers/sha256"));
        assert!(
            !layer_dirs
                .iter()
                .any(|p| p.starts_with(layer.diff_id.hex())),
            "{name}: partial layer left: {layer_dirs:?}"
        );
    }
}

#[tokio::test]
async fn whiteouts_become_overlayfs_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let base = TestLayer::files(&[("etc/gone", b"x".to_vec()), ("opq/old", b"y".to_vec())]);
    let top = Tar::new()
        .raw(EntryType::Directory, "etc/", "", b"")
        .file("etc/.wh.gone", b"")
        .file("deep/dir/.wh.missing", b"")
        .raw(EntryType::Directory, "opq/", "", b"")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"z")
        .layer();
    publish(&source, "v1", &[base, top]);
    let cache = open(dir.path(), 1 << 30).await;
    let image = cache.pull(&reference("v1"), &source).await.unwrap();
    let upper = &image.layers[1];
    assert!(overlay::is_whiteout(&upper.join("etc/gone")));
    assert!(overlay::is_whiteout(&upper.join("deep/dir/missing")));
    assert!(!upper.join("etc/.wh.gone").exists());
    assert_eq!(
        xattr::get(upper.join("opq"), overlay::OPAQUE_XATTR).unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read(upper.join("opq/new")).unwrap(), b"z");
    assert_eq!(fs::metadata(upper.join("etc/gone")).unwrap().rdev(), 0);
    // The whiteouts are part of what verify counts.
    assert!(cache.verify().await.unwrap().corrupt.is_empty());
}

#[tokio::test]
async fn diff_id_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let layer = TestLayer::files(&[("f", b"data".to_vec())]);
    let wrong = Digest::of(b"not the tar");
    publish_with(
        &source,
        "v1",
        std::slice::from_ref(&layer),
        Some(vec![wrong.clone()]),
    );
    let cache = open(dir.path(), 1 << 30).await;
    let err = cache.pull(&reference("v1"), &source).await.unwrap_err();
    assert!(
        matches!(err.root(), Error::DiffIdMismatch { expected, actual, .. } if *expected == wrong && *actual == layer.diff_id),
        "{err:?}"
    );
    assert!(tmp_is_empty(dir.path()));
    assert!(tree(&dir.path().join("v1/layers/sha256")).is_empty());
}

/// Three images of ~123 KiB each (a 62 KiB blob, its 60 KiB unpacked
/// layer, 1 KiB of manifest and config) for a cache of [`SMALL`].
async fn three_images(source: &Fake) -> Vec<Digest> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, tag)| {
            publish(
                source,
                tag,
                &[TestLayer::files(&[(
                    "data",
                    noise(10 + i as u64, 60 << 10),
                )])],
            )
        })
        .collect()
}

/// Room for one image and a half.
const SMALL: u64 = 200 << 10;

async fn has(cache: &Cache, tag: &str, digest: &Digest) -> bool {
    cache.get(&pinned(tag, digest)).await.unwrap().is_some()
}

#[tokio::test]
async fn eviction_is_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let d = three_images(&source).await;
    let cache = open(dir.path(), SMALL).await;
    drop(cache.pull(&reference("a"), &source).await.unwrap());
    // Over the limit: `a`'s blob, the oldest entry, goes. Its unpacked
    // layer stays, so `a` is still complete.
    drop(cache.pull(&reference("b"), &source).await.unwrap());
    assert!(
        !dir.path()
            .join("v1/blobs/sha256")
            .join(d_blob(&source, "a"))
            .exists()
    );
    // Using `a` again makes `b` the least recently used image.
    assert!(has(&cache, "a", &d[0]).await);
    drop(cache.pull(&reference("c"), &source).await.unwrap());
    assert!(has(&cache, "c", &d[2]).await);
    assert!(has(&cache, "a", &d[0]).await);
    assert!(!has(&cache, "b", &d[1]).await, "b was least recently used");
    assert!(cache.stats().bytes <= SMALL);
    // `b`'s layer left its place (a and c remain, with their markers).
    let layers = tree(&dir.path().join("v1/layers/sha256"));
    assert_eq!(
        layers
            .iter()
            .filter(|p| p.components().count() == 1)
            .count(),
        4,
        "{layers:?}"
    );
}

/// The hex digest of the only layer blob of the image tagged `tag`.
fn d_blob(source: &Fake, tag: &str) -> String {
    let m = Manifest::from_bytes(lock(&source.manifests)[tag].clone(), None).unwrap();
    m.layers()[0].digest.hex().to_owned()
}

#[tokio::test]
async fn pinned_images_survive_eviction_and_come_back_when_released() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let d = three_images(&source).await;
    let cache = open(dir.path(), SMALL).await;
    let a = cache.pull(&reference("a"), &source).await.unwrap();
    drop(cache.pull(&reference("b"), &source).await.unwrap());
    drop(cache.pull(&reference("c"), &source).await.unwrap());
    // `a` was the least recently used, but it is pinned: kept on disk and
    // still served.
    assert!(a.layers[0].join("data").is_file());
    assert!(has(&cache, "a", &d[0]).await);
    assert!(has(&cache, "b", &d[1]).await);
    assert!(has(&cache, "c", &d[2]).await);
    let pruned = cache.prune(0).await.unwrap();
    assert!(pruned.removed > 0);
    assert!(has(&cache, "a", &d[0]).await, "pinned survives prune(0)");
    assert!(!has(&cache, "b", &d[1]).await);
    assert!(a.layers[0].join("data").is_file());
    let layer_dir = a.layers[0].clone();
    drop(a);
    // Unpinned, the next call re-admits it; now prune(0) takes it.
    cache.prune(0).await.unwrap();
    assert!(!has(&cache, "a", &d[0]).await);
    assert_eq!(cache.stats().entries, 0);
    assert!(
        !dir.path()
            .join("v1/layers/sha256")
            .join(format!(
                "{}.json",
                layer_dir.file_name().unwrap().to_string_lossy()
            ))
            .exists()
    );
}

#[tokio::test]
async fn released_pins_rejoin_the_lru_order() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let d = three_images(&source).await;
    let cache = open(dir.path(), SMALL).await;
    let a = cache.pull(&reference("a"), &source).await.unwrap();
    drop(cache.pull(&reference("b"), &source).await.unwrap());
    drop(cache.pull(&reference("c"), &source).await.unwrap());
    drop(a);
    // Re-admitting `a` (most recently used) pushes out `b`, now the
    // least recently used.
    let report = cache.prune(u64::MAX).await.unwrap();
    assert_eq!(report.removed, 0);
    assert!(!has(&cache, "b", &d[1]).await);
    assert!(has(&cache, "c", &d[2]).await);
    assert!(has(&cache, "a", &d[0]).await);
}

#[tokio::test]
async fn reopen_rebuilds_the_index_and_drops_partial_entries() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let digest = publish(&source, "v1", &[TestLayer::files(&[("f", b"x".to_vec())])]);
    let cache = open(dir.path(), 1 << 30).await;
    drop(cache.pull(&reference("v1"), &source).await.unwrap());
    let before = cache.stats();
    drop(cache);

    // What a crash mid-write leaves: temp files, an unpacked layer without
    // its marker, a marker without its layer, a half-written image.
    let v1 = dir.path().join("v1");
    let fake = Digest::of(b"partial");
    fs::write(v1.join("tmp/blob-7"), b"half a blob").unwrap();
    fs::create_dir_all(v1.join("tmp/layer-3/rootfs/usr")).unwrap();
    fs::create_dir_all(v1.join("layers/sha256").join(fake.hex()).join("etc")).unwrap();
    let other = Digest::of(b"other");
    fs::write(
        v1.join("layers/sha256")
            .join(format!("{}.json", other.hex())),
        b"{}",
    )
    .unwrap();
    fs::create_dir_all(v1.join("images/sha256").join(fake.hex())).unwrap();
    fs::write(v1.join("blobs/sha256/not-a-digest"), b"?").unwrap();

    source.offline.store(true, Ordering::SeqCst);
    let cache = open(dir.path(), 1 << 30).await;
    assert!(tmp_is_empty(dir.path()));
    assert!(!v1.join("layers/sha256").join(fake.hex()).exists());
    assert!(
        !v1.join("layers/sha256")
            .join(format!("{}.json", other.hex()))
            .exists()
    );
    assert!(!v1.join("images/sha256").join(fake.hex()).exists());
    assert!(!v1.join("blobs/sha256/not-a-digest").exists());
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.bytes), (before.entries, before.bytes));
    let image = cache.get(&pinned("v1", &digest)).await.unwrap().unwrap();
    assert_eq!(fs::read(image.layers[0].join("f")).unwrap(), b"x");
}

#[tokio::test]
async fn a_root_is_open_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30).await;
    let mut config = CacheConfig::new(dir.path());
    config.lock_timeout = std::time::Duration::from_millis(100);
    let err = Cache::open(config.clone()).await.unwrap_err();
    assert!(matches!(&err, Error::Locked { .. }), "{err}");
    // A second opener waits for the first to close.
    config.lock_timeout = std::time::Duration::from_secs(30);
    let waiting = tokio::spawn(Cache::open(config));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    drop(cache);
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn unknown_layout_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("VERSION"), "2\n").unwrap();
    let err = Cache::open(CacheConfig::new(dir.path())).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedVersion { found, .. } if found == "2"),
        "{err}"
    );
    assert!(err.to_string().contains("version `2` is not supported"));
    assert!(!dir.path().join("v1").exists());
}

#[tokio::test]
async fn verify_finds_damage_and_the_next_pull_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let l1 = TestLayer::files(&[("one", noise(1, 10_000))]);
    let l2 = TestLayer::files(&[("two", noise(2, 10_000))]);
    let digest = publish(&source, "v1", &[l1.clone(), l2.clone()]);
    let cache = open(dir.path(), 1 << 30).await;
    let image = cache.pull(&reference("v1"), &source).await.unwrap();
    let clean = cache.verify().await.unwrap();
    assert_eq!(clean.checked, 5);
    assert!(clean.corrupt.is_empty());
    assert!(clean.hashed_bytes > 20_000);

    // Bit rot in a blob, a truncated file in a layer.
    let blob = dir.path().join("v1/blobs/sha256").join(l1.digest().hex());
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    let file = image.layers[1].join("two");
    fs::write(&file, b"short").unwrap();
    drop(image);

    let report = cache.verify().await.unwrap();
    let mut found: Vec<(EntryKind, Digest)> = report
        .corrupt
        .iter()
        .map(|c| (c.kind, c.digest.clone()))
        .collect();
    found.sort_by_key(|(k, _)| *k as u8);
    assert_eq!(
        found,
        [
            (EntryKind::Blob, l1.digest()),
            (EntryKind::Layer, l2.diff_id.clone())
        ],
        "{report:?}"
    );
    assert!(!blob.exists());
    assert!(!has(&cache, "v1", &digest).await);

    let image = cache.pull(&reference("v1"), &source).await.unwrap();
    assert_eq!(
        source.blob_gets(&l2.digest()),
        1,
        "l2's blob was still good"
    );
    assert_eq!(
        fs::read(image.layers[1].join("two")).unwrap(),
        noise(2, 10_000)
    );
    assert!(cache.verify().await.unwrap().corrupt.is_empty());
    // l1's layer was intact: its blob is fetched again only when needed.
    assert_eq!(source.blob_gets(&l1.digest()), 1);
}

#[tokio::test]
async fn prewarm_pulls_in_parallel_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let d = three_images(&source).await;
    let cache = open(dir.path(), 1 << 30).await;
    let results = cache
        .prewarm(
            &[reference("a"), reference("missing"), reference("c")],
            &source,
        )
        .await;
    assert_eq!(results[0].as_ref().unwrap(), &d[0]);
    assert!(
        results[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("no manifest")
    );
    assert_eq!(results[2].as_ref().unwrap(), &d[2]);
    assert_eq!(cache.stats().pinned, 0);
    let listed = cache.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|e| e.complete && !e.pinned && e.size > 120 << 10)
    );
}

#[tokio::test]
async fn images_in_use_by_another_opener_are_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let source = Fake::default();
    let d = three_images(&source).await;
    // One opener pulls `a` and closes the cache while it still uses the
    // image (a CLI process running a container does exactly this).
    let first = open(dir.path(), SMALL).await;
    let a = first.pull(&reference("a"), &source).await.unwrap();
    drop(first);
    // The next opener (its pin files' locks conflict like another
    // process's would) evicts everything it can: `a` stays on disk.
    let second = open(dir.path(), SMALL).await;
    second.prune(0).await.unwrap();
    assert!(a.layers[0].join("data").is_file());
    drop(second);
    // Released, it goes at the next prune.
    let layer_dir = a.layers[0].clone();
    drop(a);
    let third = open(dir.path(), SMALL).await;
    assert!(has(&third, "a", &d[0]).await, "found again on disk");
    third.prune(0).await.unwrap();
    assert!(!layer_dir.exists());
    assert_eq!(third.stats().entries, 0);
}
