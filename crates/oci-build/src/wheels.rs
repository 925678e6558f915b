//! The content-addressed wheel cache: `wheels/sha256/<hex>/<filename>`.
//!
//! A wheel is downloaded only from the HTTPS URL the lock names, its size
//! and SHA-256 checked while it streams to a temporary file, then renamed
//! into place; a cached wheel is hashed again before use, so a file
//! changed on disk is fetched anew rather than installed.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_model::{Digest, Hashing};

use crate::lock::LockedWheel;
use crate::{Error, Result};

/// How many wheels download at once.
const PARALLEL: usize = 4;

/// Makes sure every wheel is in the cache; returns their paths in order.
pub(crate) async fn fetch_all(
    http: &reqwest::Client,
    cache: &Path,
    wheels: &[LockedWheel],
) -> Result<Vec<PathBuf>> {
    use futures_util::{StreamExt, TryStreamExt};
    // The futures are made before they are streamed: a stream over a
    // borrowing closure is not `Send` for every lifetime, which would keep
    // a build off a multi-threaded runtime's spawned tasks.
    let fetches: Vec<_> = wheels.iter().map(|w| fetch(http, cache, w)).collect();
    futures_util::stream::iter(fetches)
        .buffered(PARALLEL)
        .try_collect()
        .await
}

/// Where a wheel lives in the cache.
pub(crate) fn cache_path(cache: &Path, w: &LockedWheel) -> PathBuf {
    cache.join("sha256").join(&w.sha256).join(&w.filename)
}

async fn fetch(http: &reqwest::Client, cache: &Path, w: &LockedWheel) -> Result<PathBuf> {
    let path = cache_path(cache, w);
    let check_path = path.clone();
    let expect = w.clone();
    let cached = crate::blocking("checking a cached wheel", move || {
        Ok(verify_file(&check_path, &expect))
    })
    .await?;
    if cached {
        return Ok(path);
    }
    let url = reqwest::Url::parse(&w.url).map_err(|e| Error::WheelUrl {
        url: w.url.clone(),
        reason: e.to_string(),
    })?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(Error::WheelUrl {
            url: w.url.clone(),
            reason: "only https URLs are fetched".into(),
        });
    }
    let fail = |reason: String| Error::Download {
        url: w.url.clone(),
        reason,
    };
    let dir = cache.join("sha256").join(&w.sha256);
    fs_err::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.without_url().to_string()))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut tmp = Hashing::new(tmp);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?
    {
        if tmp.digester().bytes() + chunk.len() as u64 > w.size {
            return Err(fail(format!(
                "more than the {} bytes the lock names",
                w.size
            )));
        }
        tmp.write_all(&chunk).map_err(|source| Error::Io {
            path: tmp.get_ref().path().to_owned(),
            source,
        })?;
    }
    let (tmp, digester) = tmp.into_parts();
    let got = digester.bytes();
    let actual = digester.finish();
    if got != w.size || actual.hex() != w.sha256 {
        return Err(Error::WheelIntegrity {
            wheel: w.filename.clone(),
            expected: w.sha256.clone(),
            actual: actual.hex().to_owned(),
            size: got,
        });
    }
    tmp.persist(&path).map_err(|e| Error::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(path)
}

/// Whether `path` holds exactly the wheel.
fn verify_file(path: &Path, w: &LockedWheel) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(w.size) {
        return false;
    }
    matches!(Digest::of_reader(file), Ok((d, _)) if d.hex() == w.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(url: &str, data: &[u8]) -> LockedWheel {
        LockedWheel {
            name: "demo".into(),
            version: "1".into(),
            url: url.into(),
            filename: "demo-1-py3-none-any.whl".into(),
            size: data.len() as u64,
            sha256: oci_model::Digest::of(data).hex().to_owned(),
        }
    }

    #[tokio::test]
    async fn cached_wheels_are_verified_and_plain_http_refused() {
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let w = wheel("http://127.0.0.1:1/demo-1-py3-none-any.whl", b"wheel bytes");
        let err = fetch_all(&http, dir.path(), std::slice::from_ref(&w))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WheelUrl { .. }), "{err}");
        // A correct cached file is used without any download.
        let path = cache_path(dir.path(), &w);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"wheel bytes").unwrap();
        assert_eq!(
            fetch_all(&http, dir.path(), std::slice::from_ref(&w))
                .await
                .unwrap(),
            vec![path.clone()]
        );
        // A tampered one is not: the fetch is attempted (and refused here).
        std::fs::write(&path, b"wheel bytez").unwrap();
        assert!(fetch_all(&http, dir.path(), &[w]).await.is_err());
    }
}
