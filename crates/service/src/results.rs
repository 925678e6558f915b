//! The result cache: a completed invocation's output, kept for an hour by
//! (image digest, inputs), so that a repeated identical invocation is
//! answered without running it — in process (moka) on the embedded
//! defaults, in Redis (shared by every API process) at scale, as the seeds
//! keep results in Redis with a one-hour TTL.
//!
//! Only completed outputs are kept: a failure may be transient. A function
//! whose result must not be reused is invoked with `?cache=false`.

use std::sync::Arc;
use std::time::Duration;

use oci_model::Digest;
use serde_json::Value;

use crate::{Error, Result};

/// Outputs larger than this are not cached: they would crowd out many
/// small ones, and they are cheap to read back from the object store.
const MAX_CACHED_BYTES: usize = 1 << 20;

/// Where cached outputs live.
#[derive(Clone)]
pub enum ResultCache {
    /// No cache.
    Off,
    /// In this process, bounded by bytes.
    Memory(moka::future::Cache<String, Arc<Vec<u8>>>),
    /// In Redis, with a TTL per entry.
    Redis {
        /// The connection (reconnects by itself).
        connection: redis::aio::ConnectionManager,
        /// How long an entry lives.
        ttl: Duration,
    },
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "ResultCache::Off",
            Self::Memory(_) => "ResultCache::Memory",
            Self::Redis { .. } => "ResultCache::Redis",
        })
    }
}

impl ResultCache {
    /// An in-process cache of at most `max_bytes` whose entries live `ttl`.
    pub fn memory(ttl: Duration, max_bytes: u64) -> Self {
        Self::Memory(
            moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max_bytes)
                .weigher(|_: &String, v: &Arc<Vec<u8>>| u32::try_from(v.len()).unwrap_or(u32::MAX))
                .build(),
        )
    }

    /// A cache in the Redis at `url` whose entries live `ttl`.
    pub async fn redis(url: &str, ttl: Duration) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| Error::ResultCache(e.to_string()))?;
        let connection = client
            .get_connection_manager()
            .await
            .map_err(|e| Error::ResultCache(e.to_string()))?;
        Ok(Self::Redis { connection, ttl })
    }

    /// The key of an invocation: the image's digest and the inputs, whose
    /// JSON object keys serde_json keeps sorted.
    pub fn key(image_digest: &Digest, inputs: &Value) -> String {
        let mut text = image_digest.as_str().as_bytes().to_vec();
        text.push(b'\n');
        text.extend_from_slice(inputs.to_string().as_bytes());
        format!("hoist:result:{}", Digest::of(&text).hex())
    }

    /// The cached output for `key`, if any.
    pub async fn get(&self, key: &str) -> Option<Value> {
        let bytes = match self {
            Self::Off => return None,
            Self::Memory(cache) => cache.get(key).await.map(|v| v.to_vec()),
            Self::Redis { connection, .. } => {
                let mut c = connection.clone();
                match redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        // A cache that is down only costs a run.
                        tracing::warn!(error = %e, "result cache read failed");
                        None
                    }
                }
            }
        }?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps `output` under `key` (unless it is too large to be worth it).
    pub async fn put(&self, key: &str, output: &Value) {
        let bytes = output.to_string().into_bytes();
        if bytes.len() > MAX_CACHED_BYTES {
            return;
        }
        match self {
            Self::Off => {}
            Self::Memory(cache) => cache.insert(key.to_owned(), Arc::new(bytes)).await,
            Self::Redis { connection, ttl } => {
                let mut c = connection.clone();
                let set = redis::cmd("SET")
                    .arg(key)
                    .arg(bytes)
                    .arg("EX")
                    .arg(ttl.as_secs().max(1))
                    .query_async::<()>(&mut c)
                    .await;
                if let Err(e) = set {
                    tracing::warn!(error = %e, "result cache write failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_keys_by_digest_and_inputs() {
        let cache = ResultCache::memory(Duration::from_secs(60), 1 << 20);
        let d1 = Digest::of(b"image one");
        let d2 = Digest::of(b"image two");
        let a = serde_json::json!({"x": 1, "y": [1, 2]});
        let same = serde_json::json!({"y": [1, 2], "x": 1});
        assert_eq!(ResultCache::key(&d1, &a), ResultCache::key(&d1, &same));
        assert_ne!(ResultCache::key(&d1, &a), ResultCache::key(&d2, &a));
        let k = ResultCache::key(&d1, &a);
        assert!(cache.get(&k).await.is_none());
        cache.put(&k, &serde_json::json!({"out": 2})).await;
        assert_eq!(cache.get(&k).await, Some(serde_json::json!({"out": 2})));
        let big = serde_json::json!({"s": "x".repeat(MAX_CACHED_BYTES)});
        let kb = ResultCache::key(&d2, &a);
        cache.put(&kb, &big).await;
        assert!(cache.get(&kb).await.is_none());
    }
}
