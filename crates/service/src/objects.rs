//! Where inputs, outputs, logs and function code are kept: a local
//! directory (`file:///DIR`) on the embedded defaults, an S3-compatible
//! bucket (`s3://BUCKET?endpoint=http://HOST:PORT`) at scale, both through
//! the `object_store` crate. S3 credentials and region come from the usual
//! `AWS_*` variables.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

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

    /// Removes an object; a missing one is fine.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(key, e)),
        }
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
}
