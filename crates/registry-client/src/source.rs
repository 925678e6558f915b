//! A registry as an [`oci_model::Source`]: manifests by reference, and
//! blob streams that are verified and resume with `Range` where they
//! broke.

use bytes::Bytes;
use futures_util::StreamExt;
use oci_model::{BlobStream, Descriptor, Manifest, Reference, Source};

use crate::{Action, Checkpoint, CheckpointHandle, Client, Error, Result, VerifiedStream};

impl Source for Client {
    type Error = Error;

    async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        self.get_manifest(reference).await
    }

    /// A verified stream of the blob. A transfer that breaks with an error
    /// worth retrying (a reset, a timeout, a 5xx on reopening) resumes with
    /// `Range` from the last verified byte, as often as the client's
    /// retry policy allows, so no byte is fetched or hashed twice. Wrong
    /// content ends the stream with an error: the bytes handed on cannot be
    /// taken back.
    async fn blob(&self, reference: &Reference, desc: &Descriptor) -> Result<BlobStream<Error>> {
        let first = self
            .get_blob(reference, desc, Checkpoint::default())
            .await?;
        let run = Resuming {
            client: self.clone(),
            reference: reference.clone(),
            desc: desc.clone(),
            handle: first.checkpoint_handle(),
            stream: Some(first),
            attempt: 1,
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            run,
            |mut run| async move {
                let item = run.next_item().await?;
                Some((item, run))
            },
        )))
    }

    fn verifies_blobs(&self) -> bool {
        true
    }

    fn is_registry(&self) -> bool {
        true
    }
}

/// One blob download that reopens where it broke.
struct Resuming {
    client: Client,
    reference: Reference,
    desc: Descriptor,
    stream: Option<VerifiedStream>,
    handle: CheckpointHandle,
    attempt: u32,
    done: bool,
}

impl Resuming {
    async fn next_item(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            let stream = match &mut self.stream {
                Some(s) => s,
                None => {
                    let from = self.handle.get();
                    match self
                        .client
                        .get_blob(&self.reference, &self.desc, from)
                        .await
                    {
                        Ok(s) => {
                            self.handle = s.checkpoint_handle();
                            self.stream.insert(s)
                        }
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
            };
            match stream.next().await {
                Some(Ok(chunk)) => return Some(Ok(chunk)),
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    let policy = self.client.retry_policy();
                    // A short or overlong body resumes from the verified
                    // prefix; a wrong digest cannot: the bad byte may be
                    // anywhere in what was handed on.
                    let resumable =
                        e.action() == Action::Retry && !matches!(e, Error::DigestMismatch { .. });
                    if !resumable || self.attempt >= policy.max_attempts() {
                        self.done = true;
                        return Some(Err(e));
                    }
                    tracing::debug!(digest = %self.desc.digest, offset = self.handle.get().offset, error = %e, "resuming blob");
                    tokio::time::sleep(policy.delay(self.attempt, &e)).await;
                    self.attempt += 1;
                    self.stream = None;
                }
            }
        }
    }
}
