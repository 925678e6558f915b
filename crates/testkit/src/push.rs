//! Pushes an image or index from an OCI layout to a registry with plain
//! HTTP requests: a way to seed a registry that does not depend on the
//! client under test, and that keeps Docker media types, which skopeo
//! 1.9's `oci:` transport refuses to read from `index.json`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use oci_model::media_type::ManifestKind;
use oci_model::{Digest, Layout, MAX_MANIFEST_BYTES, Manifest};
use tokio::io::AsyncReadExt as _;

use crate::net::{self, Body, BoxError};
use crate::{Error, Result, io_err};

/// Pushes the manifest named `tag` in the layout at `layout_dir`, with
/// every blob and child manifest it references, to `target`
/// (`127.0.0.1:PORT/REPO:TAG`), over plain HTTP. `basic` credentials go
/// on every request, for a [`RegistryAuth::Basic`](crate::RegistryAuth)
/// registry; token authentication is not spoken (use skopeo there).
/// Digests are kept exactly; returns the pushed manifest's digest.
pub async fn push_layout(
    layout_dir: &Path,
    tag: &str,
    target: &str,
    basic: Option<(&str, &str)>,
) -> Result<Digest> {
    let layout = Layout::open(layout_dir)?;
    let desc = layout.resolve(Some(tag))?;
    let bad_target = || Error::Push(format!("target `{target}` is not HOST:PORT/REPO:TAG"));
    let (host, rest) = target.split_once('/').ok_or_else(bad_target)?;
    let (repo, dest_tag) = rest.rsplit_once(':').ok_or_else(bad_target)?;
    let pusher = Pusher {
        layout,
        addr: host.parse().map_err(|_| bad_target())?,
        repo: repo.to_owned(),
        auth: basic.map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))),
    };
    pusher
        .push_manifest(&desc.digest, &desc.media_type, dest_tag)
        .await?;
    Ok(desc.digest)
}

struct Pusher {
    layout: Layout,
    addr: SocketAddr,
    repo: String,
    auth: Option<String>,
}

impl Pusher {
    /// Pushes children first, so the registry never sees a manifest whose
    /// references are missing.
    fn push_manifest<'a>(
        &'a self,
        digest: &'a Digest,
        media_type: &'a str,
        reference: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let bytes = self.layout.read_blob(digest, MAX_MANIFEST_BYTES as u64)?;
            let manifest = Manifest::from_bytes(bytes.clone(), Some(media_type))?;
            for child in manifest.children() {
                match manifest.kind() {
                    ManifestKind::Index => {
                        self.push_manifest(&child.digest, &child.media_type, child.digest.as_str())
                            .await?;
                    }
                    ManifestKind::Image => self.push_blob(&child.digest).await?,
                }
            }
            let path = format!("/v2/{}/manifests/{reference}", self.repo);
            let (status, _, body) = self
                .send(
                    Method::PUT,
                    &path,
                    Some(manifest.media_type()),
                    net::full(bytes),
                )
                .await?;
            expect(status, StatusCode::CREATED, &path, &body)
        })
    }

    async fn push_blob(&self, digest: &Digest) -> Result<()> {
        let head = format!("/v2/{}/blobs/{digest}", self.repo);
        if self.send(Method::HEAD, &head, None, empty()).await?.0 == StatusCode::OK {
            return Ok(());
        }
        let start = format!("/v2/{}/blobs/uploads/", self.repo);
        let (status, headers, body) = self.send(Method::POST, &start, None, empty()).await?;
        expect(status, StatusCode::ACCEPTED, &start, &body)?;
        let location = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Push(format!("POST {start}: no Location")))?;
        // The registry may answer with an absolute URL; only its path and
        // query matter, the address is ours.
        let path = match location.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => location,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{sep}digest={digest}");
        let (status, _, body) = self
            .send(Method::PUT, &put, None, self.file_body(digest).await?)
            .await?;
        expect(status, StatusCode::CREATED, &put, &body)
    }

    /// The blob's file as a streamed body: blobs may be large.
    async fn file_body(&self, digest: &Digest) -> Result<Body> {
        let path = self.layout.blob_path(digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(io_err(format!("open {}", path.display())))?;
        let chunks = futures_util::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; 256 << 10];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buf))), Some(file)))
                }
                Err(e) => Some((Err(BoxError::from(e)), None)),
            }
        });
        Ok(BodyExt::boxed(StreamBody::new(chunks)))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes)> {
        let mut req = Request::new(body);
        *req.method_mut() = method.clone();
        *req.uri_mut() = path
            .parse()
            .map_err(|e| Error::Push(format!("bad path {path}: {e}")))?;
        let headers = req.headers_mut();
        headers.insert(header::HOST, header_value(&self.addr.to_string())?);
        if let Some(auth) = &self.auth {
            headers.insert(header::AUTHORIZATION, header_value(auth)?);
        }
        if let Some(t) = content_type {
            headers.insert(header::CONTENT_TYPE, header_value(t)?);
        }
        let failed = |e: BoxError| Error::Push(format!("{method} {path}: {e}"));
        let resp = net::send(self.addr, req).await.map_err(failed)?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| failed(e.into()))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

fn empty() -> Body {
    net::full(Bytes::new())
}

fn header_value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|e| Error::Push(format!("bad header value: {e}")))
}

fn expect(status: StatusCode, want: StatusCode, what: &str, body: &[u8]) -> Result<()> {
    if status == want {
        return Ok(());
    }
    Err(Error::Push(format!(
        "{what}: {status} (wanted {want}): {}",
        String::from_utf8_lossy(body)
    )))
}
