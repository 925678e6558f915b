//! The OCI image layout on disk: `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`.
//!
//! Writes are atomic: a blob is written to a temporary file inside
//! `blobs/sha256/`, its digest checked, then renamed into place, so a
//! reader never sees a partial or wrong blob. `index.json` is replaced the
//! same way, under an exclusive lock so concurrent writers do not lose each
//! other's entries.

use std::io::Write;
use std::path::{Path, PathBuf};

use fs_err as fs;
use serde_json::{Map, Value, json};

use crate::image::{BlobStream, Source};
use crate::manifest::Descriptor;
use crate::{Digest, Digester, Error, MAX_MANIFEST_BYTES, Manifest, Reference, Result};

/// The annotation that names a manifest inside a layout (`oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = "1.0.0";

/// An OCI image layout directory.
///
/// ```
/// use oci_model::{Digest, Layout};
/// let dir = tempfile::tempdir()?;
/// let layout = Layout::create(dir.path())?;
/// let digest = layout.write_blob(b"{}")?;
/// assert!(layout.has_blob(&digest, Some(2)));
/// assert_eq!(layout.read_blob(&digest, 1024)?, b"{}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens a layout, creating the directory and its marker files when
    /// missing.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs").join("sha256"))?;
        let layout = Self { root };
        if !layout.root.join(LAYOUT_FILE).exists() {
            layout.write_atomic(
                LAYOUT_FILE,
                json!({ "imageLayoutVersion": LAYOUT_VERSION })
                    .to_string()
                    .as_bytes(),
            )?;
        }
        if !layout.root.join("index.json").exists() {
            layout.write_atomic("index.json", empty_index().to_string().as_bytes())?;
        }
        layout.check_version()?;
        Ok(layout)
    }

    /// Opens an existing layout.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let layout = Self { root: root.into() };
        if !layout.root.join(LAYOUT_FILE).is_file() {
            return Err(Error::NotALayout {
                path: layout.root.clone(),
                reason: format!("no `{LAYOUT_FILE}` file"),
            });
        }
        layout.check_version()?;
        Ok(layout)
    }

    fn check_version(&self) -> Result<()> {
        let text = fs::read(self.root.join(LAYOUT_FILE))?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| Error::NotALayout {
            path: self.root.clone(),
            reason: format!("`{LAYOUT_FILE}` is not JSON: {e}"),
        })?;
        match v.get("imageLayoutVersion").and_then(Value::as_str) {
            Some(LAYOUT_VERSION) => Ok(()),
            other => Err(Error::NotALayout {
                path: self.root.clone(),
                reason: format!("unsupported imageLayoutVersion {other:?}"),
            }),
        }
    }

    /// The layout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A reference for `tag` of this layout (without a tag: its only
    /// image), as listings show it: `layout.local/<directory name>[:<tag>]`.
    /// Read from the layout as a [`Source`], only its tag or digest
    /// matters.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let layout = oci_model::Layout::create(dir.path().join("My App"))?;
    /// assert_eq!(layout.reference(Some("v1"))?.to_string(), "layout.local/my-app:v1");
    /// # Ok::<(), oci_model::Error>(())
    /// ```
    pub fn reference(&self, tag: Option<&str>) -> Result<Reference> {
        let name: String = self
            .root
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

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Whether a blob is present (and of `size` bytes, when given).
    pub fn has_blob(&self, digest: &Digest, size: Option<u64>) -> bool {
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    /// Starts writing a blob; see [`BlobWriter`].
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.writer(Some(Digester::new()))
    }

    /// Starts writing a blob of bytes the caller verifies itself (for
    /// example through a verifying stream), sparing a second hash of every
    /// byte; [`BlobWriter::commit`] then needs the expected digest and takes
    /// the caller's word for it.
    pub fn verified_blob_writer(&self) -> Result<BlobWriter> {
        self.writer(None)
    }

    fn writer(&self, digester: Option<Digester>) -> Result<BlobWriter> {
        let dir = self.root.join("blobs").join("sha256");
        let tmp = crate::atomic::temp_file_in(&dir)?;
        Ok(BlobWriter {
            dir,
            tmp: Some(tmp),
            digester,
            written: 0,
        })
    }

    /// Writes a small blob from memory and returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)?;
        w.commit(None)
    }

    /// Reads a whole blob into memory, refusing one over `limit` bytes and
    /// one whose content does not match its name.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let len = fs::metadata(&path)
            .map_err(|_| Error::BlobNotFound {
                path: path.clone(),
                digest: digest.clone(),
            })?
            .len();
        if len > limit {
            return Err(Error::BlobTooLarge {
                digest: digest.clone(),
                size: len,
                limit,
            });
        }
        let bytes = fs::read(&path)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The manifest descriptors listed in `index.json`, with their
    /// `ref.name` annotation when they have one.
    pub fn manifests(&self) -> Result<Vec<(Descriptor, Option<String>)>> {
        let index = self.read_index()?;
        let entries = index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        entries
            .iter()
            .map(|e| {
                let bad = |what: &str| Error::NotALayout {
                    path: self.root.clone(),
                    reason: format!("index.json entry {what}"),
                };
                let digest = e
                    .get("digest")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("has no digest"))?;
                let desc = Descriptor {
                    media_type: e
                        .get("mediaType")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    digest: Digest::parse(digest)?,
                    size: e
                        .get("size")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| bad("has no size"))?,
                    platform: None,
                };
                let name = e
                    .get("annotations")
                    .and_then(|a| a.get(REF_NAME))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Ok((desc, name))
            })
            .collect()
    }

    /// Finds the manifest named `tag`; without a tag, the only manifest.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        let manifests = self.manifests()?;
        match tag {
            Some(t) => manifests
                .into_iter()
                .find(|(_, n)| n.as_deref() == Some(t))
                .map(|(d, _)| d)
                .ok_or_else(|| Error::TagNotFound {
                    path: self.root.clone(),
                    tag: t.to_owned(),
                }),
            None => match manifests.len() {
                1 => Ok(manifests.into_iter().next().expect("one entry").0),
                0 => Err(Error::NotALayout {
                    path: self.root.clone(),
                    reason: "index.json lists no manifest".into(),
                }),
                n => Err(Error::NotALayout {
                    path: self.root.clone(),
                    reason: format!("index.json lists {n} manifests: name one with `:TAG`"),
                }),
            },
        }
    }

    /// Records `desc` in `index.json` under `tag`, replacing an entry of the
    /// same name (or, without a name, one of the same digest).
    pub fn add_manifest(&self, desc: &Descriptor, tag: Option<&str>) -> Result<()> {
        let lock = fs::File::create(self.root.join(".index.lock"))?;
        lock.lock()?;
        let mut index = self.read_index()?;
        let manifests = index
            .as_object_mut()
            .ok_or_else(|| Error::NotALayout {
                path: self.root.clone(),
                reason: "index.json is not an object".into(),
            })?
            .entry("manifests")
            .or_insert_with(|| Value::Array(vec![]));
        let list = manifests.as_array_mut().ok_or_else(|| Error::NotALayout {
            path: self.root.clone(),
            reason: "index.json `manifests` is not an array".into(),
        })?;
        list.retain(|e| {
            let name = e
                .get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str);
            let digest = e.get("digest").and_then(Value::as_str);
            match tag {
                Some(t) => name != Some(t),
                None => !(name.is_none() && digest == Some(desc.digest.as_str())),
            }
        });
        let mut entry = Map::new();
        entry.insert("mediaType".into(), json!(desc.media_type));
        entry.insert("digest".into(), json!(desc.digest.as_str()));
        entry.insert("size".into(), json!(desc.size));
        if let Some(t) = tag {
            entry.insert("annotations".into(), json!({ REF_NAME: t }));
        }
        list.push(Value::Object(entry));
        let text = serde_json::to_vec(&index).expect("a JSON value serializes");
        self.write_atomic("index.json", &text)
    }

    fn read_index(&self) -> Result<Value> {
        let path = self.root.join("index.json");
        let text = fs::read(&path)?;
        serde_json::from_slice(&text).map_err(|e| Error::NotALayout {
            path: self.root.clone(),
            reason: format!("index.json is not JSON: {e}"),
        })
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        Ok(crate::write_atomic(&self.root.join(name), bytes)?)
    }
}

/// A layout serves the manifest a reference's tag names in `index.json`
/// (`org.opencontainers.image.ref.name`), or the one its digest names, and
/// blobs from its files; the reference's registry and repository only name
/// the image. Nothing is verified here: readers check what they get.
impl Source for Layout {
    type Error = Error;

    async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        let desc = match reference.digest() {
            Some(digest) => {
                // A child of an index is not listed in index.json; its
                // bytes name their own media type.
                let listed = self
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
            None => match self.resolve(reference.tag()) {
                Err(Error::TagNotFound { .. }) if reference.tag() == Some("latest") => {
                    self.resolve(None)?
                }
                other => other?,
            },
        };
        let bytes = self.read_blob(&desc.digest, MAX_MANIFEST_BYTES as u64)?;
        let media_type = (!desc.media_type.is_empty()).then_some(desc.media_type.as_str());
        Manifest::from_bytes(bytes, media_type)
    }

    async fn blob(&self, _reference: &Reference, desc: &Descriptor) -> Result<BlobStream<Error>> {
        use futures_util::StreamExt;
        let path = self.blob_path(&desc.digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::BlobNotFound {
                    path,
                    digest: desc.digest.clone(),
                });
            }
            Err(e) => {
                return Err(Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                )));
            }
        };
        let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
            .map(|chunk| chunk.map_err(Error::from));
        Ok(Box::pin(stream))
    }
}

/// Read size for blob streams: large enough that per-chunk costs vanish,
/// small enough that many parallel readers stay within a small budget.
const READ_CHUNK: usize = 256 << 10;

fn empty_index() -> Value {
    json!({ "schemaVersion": 2, "mediaType": crate::media_type::OCI_INDEX, "manifests": [] })
}

/// Writes one blob into a layout: bytes go to a temporary file while being
/// hashed; [`BlobWriter::commit`] checks the digest and renames the file
/// into place. Dropping the writer without committing removes the file.
pub struct BlobWriter {
    dir: PathBuf,
    tmp: Option<(fs::File, PathBuf)>,
    digester: Option<Digester>,
    written: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Finishes the blob. With `expected`, a different digest is an error
    /// and nothing is kept. A writer from [`Layout::verified_blob_writer`]
    /// must be given `expected`.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest> {
        let (file, tmp) = self.tmp.take().expect("commit runs once");
        let actual = match (self.digester.take(), expected) {
            (Some(d), _) => d.finish(),
            (None, Some(e)) => e.clone(),
            (None, None) => {
                drop(file);
                let _ = fs::remove_file(&tmp);
                return Err(Error::Io(std::io::Error::other(
                    "a blob written unhashed needs its expected digest",
                )));
            }
        };
        if let Some(expected) = expected
            && expected != &actual
        {
            drop(file);
            let _ = fs::remove_file(&tmp);
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let result = file.sync_all().and_then(|()| {
            drop(file);
            fs::rename(&tmp, self.dir.join(actual.hex()))
        });
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (file, _) = self.tmp.as_mut().expect("not committed");
        let n = file.write(buf)?;
        if let Some(d) = &mut self.digester {
            d.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.as_mut().expect("not committed").0.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some((_, tmp)) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_digest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let mut w = layout.blob_writer().unwrap();
        w.write_all(b"evil").unwrap();
        let want = Digest::of(b"good");
        let err = w.commit(Some(&want)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn verified_writer_needs_the_expected_digest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let mut w = layout.verified_blob_writer().unwrap();
        w.write_all(b"checked elsewhere").unwrap();
        assert!(w.commit(None).is_err());
        let mut w = layout.verified_blob_writer().unwrap();
        w.write_all(b"checked elsewhere").unwrap();
        let d = Digest::of(b"checked elsewhere");
        assert_eq!(w.commit(Some(&d)).unwrap(), d);
        assert_eq!(layout.read_blob(&d, 100).unwrap(), b"checked elsewhere");
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let mut w = layout.blob_writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn index_entries_by_tag() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let d1 = Descriptor {
            media_type: crate::media_type::OCI_MANIFEST.into(),
            digest: layout.write_blob(b"one").unwrap(),
            size: 3,
            platform: None,
        };
        let d2 = Descriptor {
            digest: layout.write_blob(b"two").unwrap(),
            ..d1.clone()
        };
        layout.add_manifest(&d1, Some("v1")).unwrap();
        assert_eq!(layout.resolve(None).unwrap(), d1);
        layout.add_manifest(&d2, Some("v2")).unwrap();
        layout.add_manifest(&d2, Some("v1")).unwrap();
        assert_eq!(layout.resolve(Some("v1")).unwrap(), d2);
        assert_eq!(layout.manifests().unwrap().len(), 2);
        assert!(
            layout
                .resolve(None)
                .unwrap_err()
                .to_string()
                .contains("2 manifests")
        );
        assert!(matches!(
            layout.resolve(Some("nope")),
            Err(Error::TagNotFound { .. })
        ));
        // A blob renamed by hand is caught on read.
        std::fs::write(layout.blob_path(&d1.digest), b"tampered").unwrap();
        assert!(matches!(
            layout.read_blob(&d1.digest, 100),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(matches!(
            Layout::open(dir.path().join("missing")),
            Err(Error::NotALayout { .. })
        ));
    }
}
