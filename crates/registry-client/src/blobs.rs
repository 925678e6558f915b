//! Blob download: HEAD to ask, GET streamed through a verifier that
//! refuses a byte more than the descriptor's size and checks the digest
//! before the last byte is handed on; `Range` to resume.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::{StatusCode, header};
use oci_model::{Descriptor, Digest, Digester, Reference};

use crate::client::{Access, connection_error, header_length, scope};
use crate::{Client, Error, Result};

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Where a verified read stands: the bytes handed on so far and the hash
/// state after them. A broken download resumes from here.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// Bytes verified and handed on.
    pub offset: u64,
    /// SHA-256 state over those bytes.
    pub digester: Digester,
}

/// Wraps a stream of blob bytes: counts and hashes them, fails as soon as
/// more than `size` bytes arrive, and yields the final bytes only after the
/// digest matched. A consumer therefore never sees an unverified end.
pub struct VerifiedStream {
    inner: ByteStream,
    expected: Descriptor,
    state: Arc<Mutex<Checkpoint>>,
    registry: String,
    what: String,
    done: bool,
}

impl VerifiedStream {
    /// Verifies `inner`, which starts at `from.offset` of the blob.
    pub fn new(
        inner: ByteStream,
        expected: Descriptor,
        from: Checkpoint,
        registry: impl Into<String>,
        what: impl Into<String>,
    ) -> Self {
        Self {
            inner,
            expected,
            state: Arc::new(Mutex::new(from)),
            registry: registry.into(),
            what: what.into(),
            done: false,
        }
    }

    /// A handle that reads the checkpoint even after the stream was moved
    /// into a request body.
    pub fn checkpoint_handle(&self) -> CheckpointHandle {
        CheckpointHandle(self.state.clone())
    }
}

/// Reads a [`VerifiedStream`]'s progress from elsewhere.
#[derive(Clone, Debug)]
pub struct CheckpointHandle(Arc<Mutex<Checkpoint>>);

impl CheckpointHandle {
    /// The bytes verified so far and the hash state after them.
    pub fn get(&self) -> Checkpoint {
        self.0.lock().expect("checkpoint lock").clone()
    }
}

impl Stream for VerifiedStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let size = self.expected.size;
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                let mut state = self.state.lock().expect("checkpoint lock");
                let new_offset = state.offset + chunk.len() as u64;
                if new_offset > size {
                    drop(state);
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::SizeMismatch {
                        registry: self.registry.clone(),
                        what: self.what.clone(),
                        expected: size,
                        actual: new_offset,
                    })));
                }
                let mut next = state.digester.clone();
                next.update(&chunk);
                if new_offset == size {
                    let actual = next.clone().finish();
                    if actual != self.expected.digest {
                        drop(state);
                        self.done = true;
                        return Poll::Ready(Some(Err(Error::DigestMismatch {
                            registry: self.registry.clone(),
                            what: self.what.clone(),
                            expected: self.expected.digest.clone(),
                            actual,
                        })));
                    }
                }
                state.digester = next;
                state.offset = new_offset;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.done = true;
                let offset = self.state.lock().expect("checkpoint lock").offset;
                if offset != size {
                    return Poll::Ready(Some(Err(Error::SizeMismatch {
                        registry: self.registry.clone(),
                        what: self.what.clone(),
                        expected: size,
                        actual: offset,
                    })));
                }
                Poll::Ready(None)
            }
        }
    }
}

impl Client {
    /// Asks whether a repository has a blob: its size, or `None`.
    pub async fn head_blob(&self, r: &Reference, digest: &Digest) -> Result<Option<u64>> {
        let what = format!("HEAD blob {}@{digest}", r.repository());
        let url = format!("{}/blobs/{digest}", self.repo_url(r));
        let scope = scope(r.repository(), Access::Pull);
        self.inner
            .retry
            .run(|_| async {
                let response = self.send(r, &scope, &what, |h| h.head(&url)).await?;
                match response.status() {
                    s if s.is_success() => Ok(Some(header_length(response.headers()).unwrap_or(0))),
                    StatusCode::NOT_FOUND => Ok(None),
                    _ => Err(Client::fail(r, &what, response).await),
                }
            })
            .await
    }

    /// Opens a blob for reading from `from.offset` on, verified against
    /// `desc` (see [`VerifiedStream`]). The stream itself is not retried: a
    /// caller resumes with the stream's checkpoint.
    pub async fn get_blob(
        &self,
        r: &Reference,
        desc: &Descriptor,
        from: Checkpoint,
    ) -> Result<VerifiedStream> {
        let what = format!("GET blob {}@{}", r.repository(), desc.digest);
        let url = format!("{}/blobs/{}", self.repo_url(r), desc.digest);
        let scope = scope(r.repository(), Access::Pull);
        let registry = r.api_host().to_owned();
        let offset = from.offset;
        let response = self
            .inner
            .retry
            .run(|_| async {
                let response = self
                    .send(r, &scope, &what, |h| {
                        let req = h.get(&url);
                        if offset > 0 {
                            req.header(header::RANGE, format!("bytes={offset}-"))
                        } else {
                            req
                        }
                    })
                    .await?;
                if !response.status().is_success() {
                    return Err(Client::fail(r, &what, response).await);
                }
                Ok(response)
            })
            .await?;
        // A registry that ignores Range sends everything: skip the prefix.
        let skip = if offset > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
            offset
        } else {
            0
        };
        if let Some(len) = response.content_length()
            && len.saturating_sub(skip) > desc.size - offset.min(desc.size)
        {
            return Err(Error::SizeMismatch {
                registry,
                what,
                expected: desc.size,
                actual: len - skip + offset,
            });
        }
        let reg = registry.clone();
        let w = what.clone();
        let mut to_skip = skip;
        let body = futures_util::StreamExt::filter_map(response.bytes_stream(), move |item| {
            let out = match item {
                Err(e) => Some(Err(connection_error(&reg, &w, &e))),
                Ok(mut chunk) => {
                    if to_skip > 0 {
                        let n = to_skip.min(chunk.len() as u64);
                        to_skip -= n;
                        chunk = chunk.slice(n as usize..);
                    }
                    (!chunk.is_empty()).then_some(Ok(chunk))
                }
            };
            std::future::ready(out)
        });
        Ok(VerifiedStream::new(
            Box::pin(body),
            desc.clone(),
            from,
            registry,
            what,
        ))
    }
}
