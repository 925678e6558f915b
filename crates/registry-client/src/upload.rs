//! Blob upload: cross-repository mount first, then a monolithic PUT or
//! chunked PATCHes with `Content-Range`; an interrupted chunked upload
//! resumes from the `Range` the registry reports.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{StatusCode, header};
use oci_model::{Descriptor, Reference};

use crate::blobs::ByteStream;
use crate::client::{Access, connection_error, header_str, scope};
use crate::{Action, Client, Error, Result};

/// Something that can produce a blob's bytes as often as a retry needs. Implemented by registries, layout directories, caches.
pub trait BlobSource: Send + Sync {
    /// Opens the blob from its start. The stream should be verified (see
    /// [`crate::VerifiedStream`]) so that bad bytes end it with an error.
    fn open(&self) -> Pin<Box<dyn Future<Output = Result<ByteStream>> + Send + '_>>;
}

/// How a blob got into the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Mounted from another repository of the same registry: no bytes sent.
    Mounted,
    /// Uploaded.
    Uploaded,
}

enum Start {
    Mounted,
    Session(String),
}

impl Client {
    /// Puts a blob into `r`'s repository. With `mount_from` (a repository of
    /// the same registry) a cross-repository mount is tried first; any
    /// refusal falls back to an upload. Temporary failures are retried by
    /// the client's policy; chunked uploads resume where the registry says
    /// they stopped.
    pub async fn push_blob(
        &self,
        r: &Reference,
        desc: &Descriptor,
        mount_from: Option<&str>,
        source: &dyn BlobSource,
    ) -> Result<PushOutcome> {
        let mut scope = scope(r.repository(), Access::Push);
        if let Some(from) = mount_from.filter(|f| *f != r.repository()) {
            scope = format!("{scope} {}", self::scope(from, Access::Pull));
        }
        self.inner
            .retry
            .clone()
            .run(|_| async {
                let started = match self.start_upload(r, desc, mount_from, &scope).await {
                    // Any refusal of a mount (no pull right on the source
                    // repository, mounts disabled, a failing mount path)
                    // falls back to a plain upload.
                    Err(e) if mount_from.is_some() => {
                        tracing::debug!(error = %e, "mount refused, uploading");
                        self.start_upload(r, desc, None, &scope).await?
                    }
                    other => other?,
                };
                match started {
                    Start::Mounted => Ok(PushOutcome::Mounted),
                    Start::Session(location) => {
                        match self.inner.chunk_size {
                            None => self.put_whole(r, desc, &scope, &location, source).await?,
                            Some(chunk) => {
                                self.put_chunked(r, desc, &scope, location, source, chunk)
                                    .await?
                            }
                        }
                        Ok(PushOutcome::Uploaded)
                    }
                }
            })
            .await
    }

    async fn start_upload(
        &self,
        r: &Reference,
        desc: &Descriptor,
        mount_from: Option<&str>,
        scope: &str,
    ) -> Result<Start> {
        let what = format!("POST upload {}@{}", r.repository(), desc.digest);
        let mut url = format!("{}/blobs/uploads/", self.repo_url(r));
        if let Some(from) = mount_from {
            url = format!("{url}?mount={}&from={from}", desc.digest);
        }
        let response = self
            .send(r, scope, &what, |h| {
                h.post(&url).header(header::CONTENT_LENGTH, "0")
            })
            .await?;
        match response.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(Start::Mounted),
            StatusCode::ACCEPTED => Ok(Start::Session(self.location(r, &what, &response)?)),
            _ => Err(Client::fail(r, &what, response).await),
        }
    }

    /// The absolute upload URL from a `Location` header.
    fn location(&self, r: &Reference, what: &str, response: &reqwest::Response) -> Result<String> {
        let loc = header_str(response.headers(), "location").ok_or_else(|| Error::Protocol {
            registry: r.api_host().to_owned(),
            what: what.to_owned(),
            reason: "no Location header in the upload response".into(),
        })?;
        response
            .url()
            .join(loc)
            .map(String::from)
            .map_err(|e| Error::Protocol {
                registry: r.api_host().to_owned(),
                what: what.to_owned(),
                reason: format!("bad Location header: {e}"),
            })
    }

    fn with_digest(location: &str, desc: &Descriptor) -> Result<String> {
        let mut url = url::Url::parse(location).map_err(|e| Error::Protocol {
            registry: String::new(),
            what: "upload".into(),
            reason: format!("bad upload URL: {e}"),
        })?;
        url.query_pairs_mut()
            .append_pair("digest", desc.digest.as_str());
        Ok(url.into())
    }

    /// Sends one request on an upload session, with the warm auth header.
    async fn send_upload(
        &self,
        r: &Reference,
        scope: &str,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let req = match self.auth_header(r, scope).await? {
            Some(a) => req.header(header::AUTHORIZATION, a),
            None => req,
        };
        req.send()
            .await
            .map_err(|e| connection_error(r.api_host(), what, &e))
    }

    async fn put_whole(
        &self,
        r: &Reference,
        desc: &Descriptor,
        scope: &str,
        location: &str,
        source: &dyn BlobSource,
    ) -> Result<()> {
        let what = format!("PUT blob {}@{}", r.repository(), desc.digest);
        let url = Self::with_digest(location, desc)?;
        let stream = source.open().await?;
        // A source error ends the request body; keep the error itself to
        // report instead of the transport's "body error".
        let failure: Arc<Mutex<Option<Error>>> = Arc::default();
        let slot = failure.clone();
        let body = stream.map(move |item| {
            item.map_err(|e| {
                let msg = e.to_string();
                *slot.lock().expect("slot") = Some(e);
                std::io::Error::other(msg)
            })
        });
        let req = self
            .inner
            .http
            .put(&url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, desc.size)
            .body(reqwest::Body::wrap_stream(body));
        let result = self.send_upload(r, scope, &what, req).await;
        if let Some(e) = failure.lock().expect("slot").take() {
            return Err(e);
        }
        let response = result?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(Client::fail(r, &what, response).await);
        }
        Ok(())
    }

    async fn put_chunked(
        &self,
        r: &Reference,
        desc: &Descriptor,
        scope: &str,
        mut location: String,
        source: &dyn BlobSource,
        chunk_size: u64,
    ) -> Result<()> {
        let what = format!("PATCH blob {}@{}", r.repository(), desc.digest);
        let mut stream = source.open().await?;
        let mut offset = 0u64;
        loop {
            let chunk = read_chunk(&mut stream, chunk_size).await?;
            if chunk.is_empty() {
                break;
            }
            let end = offset + chunk.len() as u64;
            let mut sent_from = offset;
            let mut attempt = 1;
            loop {
                let part = chunk.slice((sent_from - offset) as usize..);
                match self
                    .patch(r, scope, &what, &location, sent_from, part)
                    .await
                {
                    Ok(next) => {
                        location = next;
                        break;
                    }
                    Err(e)
                        if e.action() == Action::Retry
                            && attempt < self.inner.retry.max_attempts() =>
                    {
                        tokio::time::sleep(self.inner.retry.delay(attempt, &e)).await;
                        attempt += 1;
                        // Ask the registry how much it kept and go on from
                        // there, if that is inside this chunk.
                        let (next, have) = self.upload_status(r, scope, &location).await?;
                        location = next;
                        if have < offset || have > end {
                            return Err(e);
                        }
                        if have == end {
                            break;
                        }
                        sent_from = have;
                    }
                    Err(e) => return Err(e),
                }
            }
            offset = end;
        }
        let what = format!("PUT blob {}@{}", r.repository(), desc.digest);
        let url = Self::with_digest(&location, desc)?;
        let req = self
            .inner
            .http
            .put(&url)
            .header(header::CONTENT_LENGTH, "0");
        let response = self.send_upload(r, scope, &what, req).await?;
        if !response.status().is_success() {
            return Err(Client::fail(r, &what, response).await);
        }
        Ok(())
    }

    async fn patch(
        &self,
        r: &Reference,
        scope: &str,
        what: &str,
        location: &str,
        from: u64,
        part: Bytes,
    ) -> Result<String> {
        let last = from + part.len() as u64 - 1;
        let req = self
            .inner
            .http
            .patch(location)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, format!("{from}-{last}"))
            .header(header::CONTENT_LENGTH, part.len())
            .body(part);
        let response = self.send_upload(r, scope, what, req).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Client::fail(r, what, response).await);
        }
        self.location(r, what, &response)
    }

    /// How many bytes an upload session holds, from its `Range` header.
    async fn upload_status(
        &self,
        r: &Reference,
        scope: &str,
        location: &str,
    ) -> Result<(String, u64)> {
        let what = format!("GET upload status {}", r.repository());
        let req = self.inner.http.get(location);
        let response = self.send_upload(r, scope, &what, req).await?;
        if response.status() != StatusCode::NO_CONTENT && !response.status().is_success() {
            return Err(Client::fail(r, &what, response).await);
        }
        // distribution writes "0-0" for an empty session (and for one
        // byte): read it as empty; resending one byte too many is refused
        // and the upload starts over, never corrupt.
        let have = header_str(response.headers(), "range")
            .and_then(|range| range.rsplit_once('-'))
            .and_then(|(_, last)| last.trim().parse::<u64>().ok())
            .map_or(0, |last| if last == 0 { 0 } else { last + 1 });
        let next = self
            .location(r, &what, &response)
            .unwrap_or_else(|_| location.to_owned());
        Ok((next, have))
    }
}

/// Reads the next chunk: at least `size` bytes (the last one fewer). A
/// piece of the source is never split, which registries do not mind.
async fn read_chunk(stream: &mut ByteStream, size: u64) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while (buf.len() as u64) < size {
        match stream.next().await {
            Some(Ok(b)) => buf.extend_from_slice(&b),
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(buf.freeze())
}
