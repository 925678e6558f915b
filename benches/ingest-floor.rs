//! The destination registry's own ingest floor, for `copy-vs-skopeo.sh`:
//! the fastest a client can hand an image to a registry over plain HTTP.
//!
//! `ingest-floor SRC DST` (both `HOST:PORT/REPO:TAG`, plain HTTP) reads
//! SRC's manifest and blobs into memory, untimed, then uploads them to DST
//! and prints the seconds that took: every blob at once, each on its own
//! connection with one monolithic `POST` + `PUT ?digest=`, then the manifest
//! `PUT`. Nothing is checked for existence first and nothing is mounted, so
//! DST must be a repository that does not hold the blobs yet. No client
//! library: the requests are written by hand, so the time is the
//! registry's and the kernel's, not a client's.

// A benchmark prints its measurement and its errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json,\
    application/vnd.docker.distribution.manifest.v2+json";
/// Response heads and error bodies bigger than this are not a registry's.
const MAX_SMALL_READ: u64 = 1 << 20;

/// `HOST:PORT/REPO:TAG`.
struct Image {
    host: String,
    repo: String,
    tag: String,
}

impl Image {
    fn parse(s: &str) -> Result<Self> {
        let (host, rest) = s.split_once('/').ok_or("want HOST:PORT/REPO:TAG")?;
        let (repo, tag) = rest.rsplit_once(':').ok_or("want HOST:PORT/REPO:TAG")?;
        Ok(Self {
            host: host.to_owned(),
            repo: repo.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// A response: status, headers (names lowercased) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Ok(self)` if the status is `want`, else an error naming the request.
    fn expect(self, want: u16, what: &str) -> Result<Self> {
        if self.status == want {
            return Ok(self);
        }
        let body = String::from_utf8_lossy(&self.body);
        Err(format!(
            "{what}: HTTP {} (want {want}): {}",
            self.status,
            body.trim()
        )
        .into())
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    host: String,
    stream: BufReader<TcpStream>,
}

impl Connection {
    async fn open(host: &str) -> Result<Self> {
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            host: host.to_owned(),
            stream: BufReader::new(stream),
        })
    }

    /// Sends one request (`target` is the path and query) and reads the
    /// whole response.
    async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let socket = self.stream.get_mut();
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(body).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> Result<Response> {
        let mut line = String::new();
        let mut limited = (&mut self.stream).take(MAX_SMALL_READ);
        limited.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            limited.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("bad header {header:?}"))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if response.header("transfer-encoding").is_some() {
            return Err("chunked responses are not supported".into());
        }
        let length: u64 = response
            .header("content-length")
            .map_or(Ok(0), str::parse)?;
        let mut body = (&mut self.stream).take(length);
        body.read_to_end(&mut response.body).await?;
        if response.body.len() as u64 != length {
            return Err("connection closed mid-response".into());
        }
        Ok(response)
    }
}

/// A blob's digest and bytes.
struct Blob {
    digest: String,
    bytes: Vec<u8>,
}

/// Reads the manifest and every blob it names from `src`.
async fn load(src: &Image) -> Result<(Vec<u8>, String, Vec<Blob>)> {
    let mut conn = Connection::open(&src.host).await?;
    let target = format!("/v2/{}/manifests/{}", src.repo, src.tag);
    let manifest = conn
        .request("GET", &target, &[("Accept", MANIFEST_ACCEPT)], &[])
        .await?
        .expect(200, &format!("GET {target}"))?;
    let media_type = manifest
        .header("content-type")
        .ok_or("the manifest has no Content-Type")?
        .to_owned();
    let doc: serde_json::Value = serde_json::from_slice(&manifest.body)?;
    let layers = doc["layers"].as_array().ok_or("not an image manifest")?;
    let mut blobs = Vec::new();
    for desc in std::iter::once(&doc["config"]).chain(layers) {
        let digest = desc["digest"]
            .as_str()
            .ok_or("a descriptor has no digest")?;
        let target = format!("/v2/{}/blobs/{digest}", src.repo);
        let blob = conn
            .request("GET", &target, &[], &[])
            .await?
            .expect(200, &format!("GET {target}"))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&blob.body)));
        if actual != digest {
            return Err(format!("{target}: got {actual}").into());
        }
        blobs.push(Blob {
            digest: digest.to_owned(),
            bytes: blob.body,
        });
    }
    Ok((manifest.body, media_type, blobs))
}

/// The path and query of a `Location`, which may be an absolute URL.
fn path_of(location: &str) -> &str {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    }
}

/// Monolithic upload: `POST` for a session, `PUT` of the bytes to it.
async fn upload(host: &str, repo: &str, blob: &Blob) -> Result<()> {
    let mut conn = Connection::open(host).await?;
    let started = format!("/v2/{repo}/blobs/uploads/");
    let session = conn
        .request("POST", &started, &[], &[])
        .await?
        .expect(202, &format!("POST {started}"))?;
    let location = session
        .header("location")
        .ok_or("the upload session has no Location")?;
    let path = path_of(location);
    let separator = if path.contains('?') { '&' } else { '?' };
    let target = format!("{path}{separator}digest={}", blob.digest);
    conn.request(
        "PUT",
        &target,
        &[("Content-Type", "application/octet-stream")],
        &blob.bytes,
    )
    .await?
    .expect(201, &format!("PUT blob {}", blob.digest))?;
    Ok(())
}

async fn run(src: Image, dst: Image) -> Result<f64> {
    let (manifest, media_type, blobs) = load(&src).await?;
    let blobs: Vec<Arc<Blob>> = blobs.into_iter().map(Arc::new).collect();

    let started = Instant::now();
    let uploads: Vec<_> = blobs
        .iter()
        .map(|blob| {
            let (host, repo, blob) = (dst.host.clone(), dst.repo.clone(), blob.clone());
            tokio::spawn(async move { upload(&host, &repo, &blob).await })
        })
        .collect();
    for upload in uploads {
        upload.await??;
    }
    let target = format!("/v2/{}/manifests/{}", dst.repo, dst.tag);
    Connection::open(&dst.host)
        .await?
        .request("PUT", &target, &[("Content-Type", &media_type)], &manifest)
        .await?
        .expect(201, &format!("PUT {target}"))?;
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: ingest-floor SRC DST (HOST:PORT/REPO:TAG, plain HTTP)");
        return ExitCode::from(2);
    };
    let measured = Image::parse(src).and_then(|src| {
        let dst = Image::parse(dst)?;
        tokio::runtime::Runtime::new()?.block_on(run(src, dst))
    });
    match measured {
        Ok(seconds) => {
            println!("{seconds:.4}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ingest-floor: {e}");
            ExitCode::FAILURE
        }
    }
}
