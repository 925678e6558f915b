//! Where inputs, outputs, logs and function code are kept: a local
//! directory (`file:///DIR`) on the embedded defaults, an S3-compatible
//! bucket (`s3://BUCKET?endpoint=http://HOST:PORT`) at scale, both through
//! the `object_store` crate. S3 credentials and region come from the usual
//! `AWS_*` variables.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use oci_model::{Digest, Digester};
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

/// An object store with the keys this service writes.
///
/// ```no_run
/// # async fn demo() -> service::Result<()> {
/// let objects = service::Objects::open("file:///var/lib/hoist/objects")?;
/// objects.put("tasks/1/inputs.json", bytes::Bytes::from_static(b"{}")).await?;
/// assert_eq!(objects.get("tasks/1/inputs.json", 1 << 20).await?.as_deref(), Some(&b"{}"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

impl Objects {
    /// Opens `file:///DIR` (created when missing) or
    /// `s3://BUCKET[?endpoint=URL][&region=R]`.
    pub fn open(url: &str) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            what: "object store",
            reason: format!("`{url}`: {reason}"),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("not a local path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad(e.to_string()))?;
                Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?)
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("no bucket".into()))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in parsed.query_pairs() {
                    builder = match &*k {
                        "endpoint" => builder
                            .with_allow_http(v.starts_with("http://"))
                            .with_virtual_hosted_style_request(false)
                            .with_endpoint(v.into_owned()),
                        "region" => builder.with_region(v.into_owned()),
                        other => return Err(bad(format!("unknown option `{other}`"))),
                    };
                }
                Arc::new(builder.build().map_err(|e| bad(e.to_string()))?)
            }
            other => return Err(bad(format!("unsupported scheme `{other}` (file, s3)"))),
        };
        Ok(Self {
            store,
            url: redact(url),
        })
    }

    /// The store's URL, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes an object whole.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| object_error(key, e))?;
        Ok(())
    }

    /// Reads an object of at most `limit` bytes; `None` when there is none.
    pub async fn get(&self, key: &str, limit: u64) -> Result<Option<Bytes>> {
        let path = Path::from(key);
        let got = match self.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(object_error(key, e)),
        };
        if got.meta.size > limit {
            return Err(Error::TooLarge {
                what: format!("object {key}"),
                limit,
            });
        }
        Ok(Some(got.bytes().await.map_err(|e| object_error(key, e))?))
    }

    /// Writes an object from a stream of chunks, in parts (memory stays
    /// bounded): at most `limit` bytes. Returns its size and SHA-256. When
    /// the stream fails or goes over the limit, the upload is aborted and
    /// no object appears.
    pub async fn put_stream<S, E>(
        &self,
        key: &str,
        mut chunks: S,
        limit: u64,
    ) -> Result<(u64, Digest)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let upload = self
            .store
            .put_multipart(&Path::from(key))
            .await
            .map_err(|e| object_error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut digester = Digester::new();
        let failure = loop {
            let chunk = match chunks.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => break Some(Error::Body(e.to_string())),
            };
            digester.update(&chunk);
            if digester.bytes() > limit {
                break Some(Error::TooLarge {
                    what: format!("object {key}"),
                    limit,
                });
            }
            if let Err(e) = writer.wait_for_capacity(4).await {
                break Some(object_error(key, e));
            }
            writer.put(chunk);
        };
        if let Some(e) = failure {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await.map_err(|e| object_error(key, e))?;
        let size = digester.bytes();
        Ok((size, digester.finish()))
    }

    /// Copies an object into a new file at `dest`, streamed, checking that
    /// it is `size` bytes with SHA-256 `digest` (a store that lies fails
    /// the copy). The file is removed when the copy fails.
    pub async fn get_to_file(
        &self,
        key: &str,
        dest: &std::path::Path,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let result = self.copy_checked(key, dest, size, digest).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    async fn copy_checked(
        &self,
        key: &str,
        dest: &std::path::Path,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let io = |source| Error::Io {
            path: dest.to_owned(),
            source,
        };
        let got = match self.store.get(&Path::from(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Objects {
                    key: key.to_owned(),
                    reason: "missing".into(),
                });
            }
            Err(e) => return Err(object_error(key, e)),
        };
        let mismatch = |reason: String| Error::Objects {
            key: key.to_owned(),
            reason,
        };
        if got.meta.size != size {
            return Err(mismatch(format!(
                "{} bytes where {size} were recorded",
                got.meta.size
            )));
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(io)?;
        let mut digester = Digester::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| object_error(key, e))?;
            digester.update(&chunk);
            if digester.bytes() > size {
                return Err(mismatch(format!("more than the {size} bytes recorded")));
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        let bytes = digester.bytes();
        let found = digester.finish();
        if bytes != size || &found != digest {
            return Err(mismatch(format!(
                "content is {found} ({bytes} bytes), recorded {digest} ({size} bytes)"
            )));
        }
        Ok(())
    }

    /// Removes an object; a missing one is fine.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(key, e)),
        }
    }

    /// Moves an object to another key, replacing what is there (a copy
    /// then a delete on S3): how a document written under a temporary key
    /// appears whole under its final one.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.store
            .rename(&Path::from(from), &Path::from(to))
            .await
            .map_err(|e| object_error(from, e))
    }

    /// Whether the store answers: a probe object written, read and removed.
    pub async fn health(&self) -> Result<()> {
        let key = ".health";
        self.put(key, Bytes::from_static(b"ok")).await?;
        self.get(key, 16).await?;
        self.delete(key).await
    }
}

fn object_error(key: &str, e: object_store::Error) -> Error {
    Error::Objects {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

/// `url` without a `user:password@` part.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_objects_round_trip_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(&format!("file://{}", dir.path().display())).unwrap();
        objects.health().await.unwrap();
        objects
            .put("tasks/a/output.json", Bytes::from_static(b"{\"x\":1}"))
            .await
            .unwrap();
        assert_eq!(
            objects
                .get("tasks/a/output.json", 100)
                .await
                .unwrap()
                .unwrap(),
            &b"{\"x\":1}"[..]
        );
        assert!(objects.get("tasks/a/missing", 100).await.unwrap().is_none());
        assert!(matches!(
            objects.get("tasks/a/output.json", 3).await,
            Err(Error::TooLarge { .. })
        ));
        for bad in ["ftp://x/y", "s3://", "nonsense"] {
            assert!(Objects::open(bad).is_err(), "{bad}");
        }
        assert_eq!(redact("http://user:pw@host/x"), "http://host/x");
    }

    fn chunks(
        parts: Vec<std::result::Result<Bytes, String>>,
    ) -> impl Stream<Item = std::result::Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(parts)
    }

    #[tokio::test]
    async fn streamed_objects_are_whole_or_absent_and_read_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(&format!("file://{}", dir.path().display())).unwrap();
        let parts = vec![
            Ok(Bytes::from(vec![1u8; 5000])),
            Ok(Bytes::from(vec![2u8; 3])),
        ];
        let (size, digest) = objects
            .put_stream("a/data", chunks(parts), 5003)
            .await
            .unwrap();
        let mut whole = vec![1u8; 5000];
        whole.extend([2, 2, 2]);
        assert_eq!((size, &digest), (5003, &Digest::of(&whole)));

        // Over the limit, or cut short: nothing stored, nothing staged.
        let over = vec![
            Ok(Bytes::from(vec![0u8; 10])),
            Ok(Bytes::from(vec![0u8; 10])),
        ];
        assert!(matches!(
            objects.put_stream("b/data", chunks(over), 15).await,
            Err(Error::TooLarge { .. })
        ));
        let cut = vec![Ok(Bytes::from(vec![0u8; 10])), Err("reset".to_owned())];
        assert!(matches!(
            objects.put_stream("c/data", chunks(cut), 100).await,
            Err(Error::Body(_))
        ));
        for key in ["b", "c"] {
            let files = std::fs::read_dir(dir.path().join(key))
                .map(|d| d.count())
                .unwrap_or(0);
            assert_eq!(files, 0, "{key}");
        }

        // Read back: checked against size and digest; a mismatch leaves
        // no file.
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("data");
        objects
            .get_to_file("a/data", &dest, 5003, &digest)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), whole);
        let other = out.path().join("other");
        for (size, want) in [(5003, Digest::of(b"x")), (5002, digest.clone())] {
            assert!(matches!(
                objects.get_to_file("a/data", &other, size, &want).await,
                Err(Error::Objects { .. })
            ));
            assert!(!other.exists());
        }
        assert!(
            objects
                .get_to_file("missing", &other, 1, &digest)
                .await
                .is_err()
        );
    }
}
