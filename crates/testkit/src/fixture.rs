//! Fixture images written as OCI image layouts, and the skopeo and umoci
//! command-line tools run against them.

use std::io::{self, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_model::media_type::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER_GZIP, OCI_MANIFEST,
};
use oci_model::{Descriptor, Digest, Digester, Layout, Platform};
use serde_json::{Value, json};

use crate::{Error, Result, find_program, io_err};

/// Layer payloads are split into files of at most this many bytes, so a
/// layer holds several files once it is big.
const MAX_FILE: u64 = 4 << 20;
/// A fixed timestamp keeps configs byte-for-byte reproducible.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// What fixture image to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// Uncompressed payload bytes of each layer, bottom first. Each layer
    /// also carries a directory and tar headers.
    pub layers: Vec<u64>,
    /// Seeds the layers' pseudo-random (incompressible) content: the same
    /// spec always gives the same digests.
    pub seed: u64,
    /// Docker schema 2 media types instead of OCI ones.
    pub docker_media_types: bool,
}

impl Default for ImageSpec {
    /// One 64 KiB OCI layer, seed 0.
    fn default() -> Self {
        Self {
            layers: vec![64 << 10],
            seed: 0,
            docker_media_types: false,
        }
    }
}

/// What [`write_image`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureImage {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The config blob's digest.
    pub config_digest: Digest,
    /// The config blob's size in bytes.
    pub config_size: u64,
    /// The layer descriptors, as in the manifest.
    pub layers: Vec<Descriptor>,
    /// The sha256 of each uncompressed layer, as in the config's
    /// `rootfs.diff_ids`.
    pub diff_ids: Vec<Digest>,
    /// Manifest + config + compressed layer bytes: what a full push sends.
    pub total_bytes: u64,
}

impl FixtureImage {
    /// The manifest's descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.manifest_media_type.clone(),
            digest: self.manifest_digest.clone(),
            size: self.manifest_size,
            platform: None,
        }
    }
}

/// What [`write_index`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureIndex {
    /// The index's digest.
    pub digest: Digest,
    /// The index's size in bytes.
    pub size: u64,
    /// OCI index or Docker manifest list.
    pub media_type: String,
    /// The images it lists, with their platforms (linux/amd64 first, then
    /// linux/arm64).
    pub images: Vec<(Platform, FixtureImage)>,
}

/// Writes a linux/amd64 image into the layout at `layout_dir` (created if
/// needed) and names it `tag` in `index.json`.
pub fn write_image(layout_dir: &Path, tag: &str, spec: &ImageSpec) -> Result<FixtureImage> {
    write_platform_image(layout_dir, Some(tag), spec, &Platform::default())
}

/// Writes an image for `platform`; with a `tag` it is named in
/// `index.json`, without one only its blobs are written (an index's
/// children).
pub fn write_platform_image(
    layout_dir: &Path,
    tag: Option<&str>,
    spec: &ImageSpec,
    platform: &Platform,
) -> Result<FixtureImage> {
    let layout = Layout::create(layout_dir)?;
    let (manifest_type, config_type, layer_type) = if spec.docker_media_types {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
    };
    let mut layers = Vec::with_capacity(spec.layers.len());
    let mut diff_ids = Vec::with_capacity(spec.layers.len());
    for (i, &payload) in spec.layers.iter().enumerate() {
        // Distinct per layer and per platform, so no two layers share a blob.
        let seed = spec
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(i as u64)
            ^ hash_str(&platform.to_string());
        let (digest, size, diff_id) = write_layer(&layout, i, payload, seed)?;
        layers.push(Descriptor {
            media_type: layer_type.into(),
            digest,
            size,
            platform: None,
        });
        diff_ids.push(diff_id);
    }
    let mut config = json!({
        "created": EPOCH,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"org.hoist.testkit.seed": spec.seed.to_string()},
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>(),
        },
        "history": (0..layers.len())
            .map(|i| json!({"created": EPOCH, "created_by": format!("testkit layer {i}")}))
            .collect::<Vec<_>>(),
    });
    if let Some(v) = &platform.variant {
        config["variant"] = json!(v);
    }
    let config_bytes = serde_json::to_vec(&config).expect("JSON serializes");
    let config_digest = layout.write_blob(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": descriptor_json(config_type, &config_digest, config_bytes.len() as u64, None),
        "layers": layers
            .iter()
            .map(|d| descriptor_json(&d.media_type, &d.digest, d.size, None))
            .collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("JSON serializes");
    let manifest_digest = layout.write_blob(&manifest_bytes)?;
    let image = FixtureImage {
        manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        manifest_media_type: manifest_type.into(),
        config_digest,
        config_size: config_bytes.len() as u64,
        total_bytes: manifest_bytes.len() as u64
            + config_bytes.len() as u64
            + layers.iter().map(|l| l.size).sum::<u64>(),
        layers,
        diff_ids,
    };
    if let Some(tag) = tag {
        layout.add_manifest(&image.descriptor(), Some(tag))?;
    }
    Ok(image)
}

/// Writes an index over two images built from `spec`, one for linux/amd64
/// and one for linux/arm64 (different content), and names it `tag`. It is
/// a Docker manifest list when `spec.docker_media_types`, else an OCI
/// index.
pub fn write_index(layout_dir: &Path, tag: &str, spec: &ImageSpec) -> Result<FixtureIndex> {
    let platforms = [Platform::default(), "linux/arm64".parse::<Platform>()?];
    let mut images = Vec::with_capacity(platforms.len());
    for platform in platforms {
        let image = write_platform_image(layout_dir, None, spec, &platform)?;
        images.push((platform, image));
    }
    let media_type = if spec.docker_media_types {
        DOCKER_MANIFEST_LIST
    } else {
        OCI_INDEX
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": images
            .iter()
            .map(|(p, i)| descriptor_json(&i.manifest_media_type, &i.manifest_digest, i.manifest_size, Some(p)))
            .collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&index).expect("JSON serializes");
    let layout = Layout::create(layout_dir)?;
    let digest = layout.write_blob(&bytes)?;
    let desc = Descriptor {
        media_type: media_type.into(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        platform: None,
    };
    layout.add_manifest(&desc, Some(tag))?;
    Ok(FixtureIndex {
        digest,
        size: desc.size,
        media_type: desc.media_type,
        images,
    })
}

fn descriptor_json(
    media_type: &str,
    digest: &Digest,
    size: u64,
    platform: Option<&Platform>,
) -> Value {
    let mut d = json!({"mediaType": media_type, "digest": digest.as_str(), "size": size});
    if let Some(p) = platform {
        d["platform"] = json!({"architecture": p.architecture, "os": p.os});
        if let Some(v) = &p.variant {
            d["platform"]["variant"] = json!(v);
        }
    }
    d
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, which may change between
/// Rust releases) to derive seeds from names.
fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Streams one gzip layer into the layout: tar → diff-id hasher → gzip →
/// blob writer, so no layer is ever held in memory. Returns the blob's
/// digest and size and the diff-id.
fn write_layer(
    layout: &Layout,
    index: usize,
    payload: u64,
    seed: u64,
) -> Result<(Digest, u64, Digest)> {
    // Stored (level 0) deflate: the content is random, compressing it
    // would only burn time.
    let gz = GzEncoder::new(layout.blob_writer()?, Compression::none());
    let mut tar = tar::Builder::new(HashingWriter {
        inner: gz,
        digester: Digester::new(),
    });
    let dir = format!("layer-{index}/");
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    tar.append_data(&mut header, &dir, io::empty())?;
    let mut random = RandomReader::new(seed, payload);
    let files = payload.div_ceil(MAX_FILE).max(1);
    for f in 0..files {
        let size = (payload - f * MAX_FILE).min(MAX_FILE);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let file = (&mut random).take(size);
        tar.append_data(&mut header, format!("{dir}file-{f:04}"), file)?;
    }
    let hashing = tar.into_inner()?;
    let diff_id = hashing.digester.finish();
    let blob = hashing.inner.finish()?;
    let size = blob.written();
    Ok((blob.commit(None)?, size, diff_id))
}

/// Passes bytes on while hashing them.
struct HashingWriter<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A deterministic stream of `len` pseudo-random (incompressible) bytes
/// from `seed`: fixture content, or a big request body for a test.
///
/// xorshift64* rather than a cryptographic generator: it is fast even in
/// debug builds, where tests run. Bytes come from 64 KiB blocks, so the
/// output does not depend on the sizes of the reads.
///
/// ```
/// use std::io::Read;
/// let mut a = Vec::new();
/// testkit::RandomReader::new(1, 100_000).read_to_end(&mut a)?;
/// let mut b = vec![0; 100_000];
/// testkit::RandomReader::new(1, 100_000).read_exact(&mut b)?;
/// assert_eq!(a, b);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RandomReader {
    state: u64,
    remaining: u64,
    block: Vec<u8>,
    pos: usize,
}

impl RandomReader {
    const BLOCK: usize = 64 << 10;

    /// `len` bytes from `seed`.
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            // xorshift must not start at zero; mixing also spreads
            // neighbouring seeds apart.
            state: (seed ^ 0x2545_F491_4F6C_DD1D).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            remaining: len,
            block: vec![0; Self::BLOCK],
            pos: Self::BLOCK,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    fn refill(&mut self) {
        for chunk in self.block.chunks_exact_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        self.pos = 0;
    }
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.pos == self.block.len() {
            self.refill();
        }
        let n = (self.block.len() - self.pos)
            .min(buf.len())
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Runs `skopeo --insecure-policy ARGS…` and returns its stdout. TLS and
/// credential flags are the caller's (`--dest-tls-verify=false`,
/// `--src-creds USER:PASS`, …). Async so in-process servers (a
/// [`FaultProxy`](crate::FaultProxy), a [`TokenServer`](crate::TokenServer))
/// keep running on a single-threaded test runtime meanwhile.
pub async fn skopeo(args: &[&str]) -> Result<String> {
    let bin = find_program("HOIST_SKOPEO", &["/usr/bin/skopeo"], "skopeo")?;
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run(&bin, &all).await
}

/// Runs `umoci ARGS…` and returns its stdout; see [`skopeo`].
pub async fn umoci(args: &[&str]) -> Result<String> {
    let bin = find_program("HOIST_UMOCI", &["/usr/bin/umoci"], "umoci")?;
    run(&bin, args).await
}

async fn run(bin: &Path, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(io_err(format!("run {}", bin.display())))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("{} {}", bin.display(), args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
