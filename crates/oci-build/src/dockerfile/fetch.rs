//! `ADD <url>`: an HTTP(S) download, only in builds allowed the network.
//!
//! The body streams to a temporary file beside the content-addressed
//! store `fetched/sha256/<hex>` in the build cache, counted against a cap
//! (a declared length over it is refused before a byte is read) and
//! hashed as it comes; it is renamed into place only when complete and,
//! with `--checksum`, equal to the digest named. A `--checksum` already in
//! the store is not fetched again: the file is hashed anew instead, so a
//! file changed on disk is fetched rather than used.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_model::{Digest, Hashing};

use crate::{Error, Result};

/// The most one `ADD <url>` may download, as for a local archive.
pub(super) const MAX_FETCH: u64 = 4 << 30;

/// A downloaded file in the build cache.
#[derive(Debug)]
pub(super) struct Fetched {
    /// The URL path's last segment, when it names a file.
    pub name: Option<String>,
    /// Where it is, under `fetched/sha256/`.
    pub path: PathBuf,
    pub size: u64,
    pub digest: Digest,
}

/// Whether `src` is a URL `ADD` may fetch.
pub(super) fn is_http(src: &str) -> bool {
    let lower = src.get(..8).unwrap_or(src).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The URL path's last segment, if it can name a file.
fn file_name(url: &reqwest::Url) -> Option<String> {
    let last = url.path_segments()?.next_back()?;
    (!last.is_empty() && last != "." && last != ".." && !last.contains('\\'))
        .then(|| last.to_owned())
}

/// Downloads `url` into `cache`'s content-addressed store, at most `max`
/// bytes; `checksum`, when given, must equal the content's digest.
pub(super) async fn fetch(
    url: &str,
    checksum: Option<&Digest>,
    cache: &Path,
    max: u64,
) -> Result<Fetched> {
    let fail = |reason: String| Error::Download {
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| fail(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(fail(
            "only http and https URLs with a host are fetched".into(),
        ));
    }
    let name = file_name(&parsed);
    let dir = cache.join("fetched").join("sha256");
    std::fs::create_dir_all(&dir).map_err(crate::io_at(&dir))?;
    if let Some(want) = checksum {
        let path = dir.join(want.hex());
        let check = path.clone();
        let expected = want.clone();
        let cached = crate::blocking("checking a fetched file", move || {
            Ok(std::fs::File::open(&check)
                .ok()
                .and_then(|f| Digest::of_reader(f).ok())
                .filter(|(d, _)| *d == expected)
                .map(|(_, size)| size))
        })
        .await?;
        if let Some(size) = cached {
            return Ok(Fetched {
                name,
                path,
                size,
                digest: want.clone(),
            });
        }
    }
    let http = client().map_err(|e| fail(e.to_string()))?;
    let mut response = http
        .get(parsed)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.without_url().to_string()))?;
    if let Some(len) = response.content_length().filter(|len| *len > max) {
        return Err(fail(format!(
            "the server declares {len} bytes, over the {max}-byte limit"
        )));
    }
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(crate::io_at(&dir))?;
    let mut out = Hashing::new(std::io::BufWriter::with_capacity(256 * 1024, tmp));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?
    {
        if out.digester().bytes() + chunk.len() as u64 > max {
            return Err(fail(format!("more than the {max}-byte limit")));
        }
        out.write_all(&chunk).map_err(crate::io_at(&dir))?;
    }
    let (buffered, digester) = out.into_parts();
    let tmp = buffered
        .into_inner()
        .map_err(|e| crate::io_at(&dir)(e.into_error()))?;
    let size = digester.bytes();
    let digest = digester.finish();
    if let Some(want) = checksum
        && *want != digest
    {
        return Err(fail(format!(
            "checksum mismatch: --checksum names {want}, the download is {digest}"
        )));
    }
    let path = dir.join(digest.hex());
    tmp.persist(&path)
        .map_err(|e| crate::io_at(&path)(e.error))?;
    Ok(Fetched {
        name,
        path,
        size,
        digest,
    })
}

/// A client that follows at most ten redirects and never from HTTPS down
/// to plain HTTP.
fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::custom(|a| {
            let downgrade =
                a.url().scheme() != "https" && a.previous().iter().any(|u| u.scheme() == "https");
            if downgrade || a.previous().len() >= 10 {
                a.stop()
            } else {
                a.follow()
            }
        }))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;

    use super::*;

    /// Serves `responses` (raw HTTP bytes), one per connection, in order.
    fn serve(responses: Vec<Vec<u8>>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for response in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let _ = s.write_all(&response);
            }
        });
        format!("http://{addr}")
    }

    fn chunked(total: usize) -> Vec<u8> {
        let mut r =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
        let chunk = vec![b'x'; 4096];
        for _ in 0..total / chunk.len() {
            r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            r.extend_from_slice(&chunk);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    }

    fn leftovers(cache: &Path) -> Vec<String> {
        std::fs::read_dir(cache.join("fetched/sha256"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_and_leaves_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let base = serve(vec![chunked(64 * 1024)]);
        let err = fetch(&format!("{base}/big.bin"), None, cache.path(), 16 * 1024)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("16384-byte limit"), "{err}");
        assert!(leftovers(cache.path()).is_empty());
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        let cache = tempfile::tempdir().unwrap();
        let base = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5368709120\r\n\r\nxx".to_vec(),
        ]);
        let err = fetch(&format!("{base}/huge"), None, cache.path(), MAX_FETCH)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("declares 5368709120 bytes"),
            "{err}"
        );
        assert!(leftovers(cache.path()).is_empty());
    }

    #[tokio::test]
    async fn a_checksum_in_the_store_is_not_fetched_again_unless_changed() {
        let cache = tempfile::tempdir().unwrap();
        let body = b"payload";
        let digest = Digest::of(body);
        let ok = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\npayload",
            body.len()
        )
        .into_bytes();
        // One answer only: the second fetch must come from the store.
        let base = serve(vec![ok.clone()]);
        let url = format!("{base}/dir/p.txt");
        let first = fetch(&url, Some(&digest), cache.path(), MAX_FETCH)
            .await
            .unwrap();
        assert_eq!(first.name.as_deref(), Some("p.txt"));
        let again = fetch(&url, Some(&digest), cache.path(), MAX_FETCH)
            .await
            .unwrap();
        assert_eq!((again.path.clone(), again.size), (first.path.clone(), 7));
        // Changed on disk: fetched anew, from a server that answers again.
        std::fs::write(&first.path, "tampered").unwrap();
        let base = serve(vec![ok]);
        let fresh = fetch(&format!("{base}/p"), Some(&digest), cache.path(), MAX_FETCH)
            .await
            .unwrap();
        let mut read = String::new();
        std::fs::File::open(&fresh.path)
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "payload");
    }

    #[tokio::test]
    async fn a_wrong_checksum_keeps_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let base = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc".to_vec(),
        ]);
        let want = Digest::of(b"something else");
        let err = fetch(&format!("{base}/a"), Some(&want), cache.path(), MAX_FETCH)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(leftovers(cache.path()).is_empty());
    }

    #[test]
    fn file_names_come_from_the_last_segment() {
        let name = |u: &str| file_name(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            name("https://h/a/b.tar.gz?x=1").as_deref(),
            Some("b.tar.gz")
        );
        assert_eq!(name("https://h/a/"), None);
        assert_eq!(name("https://h"), None);
        // The URL standard reads an encoded `..` as `..`: no name.
        assert_eq!(name("https://h/a/%2e%2e"), None);
        assert_eq!(name("https://h/a/%2e%2e/b").as_deref(), Some("b"));
        assert!(is_http("HTTPS://h/x") && is_http("http://h") && !is_http("ftp://h/x"));
        assert!(!is_http("git@h:x") && !is_http("app.tar"));
    }
}
