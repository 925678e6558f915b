//! The [`Failover`]: walks the registry list in order for each manifest
//! and blob, with timeouts, breakers, rounds, digest pinning and resume.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt as _;
use oci_model::{BlobStream, Descriptor, Digest, Manifest, Reference, Source};
use oci_push::{Copier, CopyReport, Endpoint};
use registry_client::{
    Checkpoint, CheckpointHandle, Client, ClientBuilder, RetryPolicy, VerifiedStream,
};

use crate::breaker::{Breaker, Permit};
use crate::error::{RegistryFailure, Verdict, classify, reason};
use crate::metrics::{Metrics, MetricsSnapshot, PullKind};
use crate::{Error, FailoverConfig, Result};

/// Most tag → digest pins kept; beyond it an arbitrary old pin is dropped.
const MAX_PINS: usize = 4096;

/// Pulls manifests and blobs through an ordered list of registries: the
/// primary first, then each secondary, the same repository path on each.
///
/// - **Timeouts** ([`FailoverConfig`]) are enforced here around every
///   request, so a stalled registry costs at most the configured time.
/// - **Circuit breakers**: a registry with `breaker_failures` consecutive
///   unhealthy failures (connection errors, timeouts, 5xx, wrong content)
///   is skipped for `breaker_cool_down`, then one probe request is let
///   through (for a blob, the probe is the whole transfer). A 4xx answer (a secondary that lacks the image answers 404)
///   moves on to the next registry without counting against the breaker.
/// - **Rounds**: only after every registry failed is the list tried again,
///   `rounds` more times with backoff, and only if some failure was
///   temporary. The final error names each registry and why it failed.
/// - **Digest pinning**: a tag is resolved on the first registry that
///   answers (the primary, while it is up); from then on secondaries are
///   asked for that digest only, so a secondary holding other content
///   under the tag fails instead of being substituted. The primary stays
///   the authority on tags: its answer renews the pin.
/// - **Resume**: a blob that breaks midway resumes with `Range` from the
///   last verified byte — on the same registry if the break was not a
///   timeout and its breaker still admits it, else on the next one —
///   carrying the hash state along, so no byte is fetched or hashed twice.
///
/// The registry client should not retry much itself: this type retries
/// across registries, and a client that retries five times per request
/// makes a failing primary slow to leave. [`Failover::from_client_builder`]
/// builds a suitable client; with [`Failover::new`] the caller brings one
/// (best with [`RetryPolicy::none`]).
///
/// Cloning is cheap; clones share breakers, pins and metrics.
///
/// ```no_run
/// # async fn demo() -> Result<(), registry_failover::Error> {
/// use registry_failover::{Failover, FailoverConfig};
/// let failover = Failover::from_client_builder(
///     registry_client::Client::builder(),
///     ["registry.example:5000", "mirror.example:5000"],
///     FailoverConfig::default(),
/// )?;
/// let r = "registry.example:5000/team/fn:v1".parse().unwrap();
/// let (pinned, manifest) = failover.resolve(&r).await?;
/// println!("{pinned}: {} layers", manifest.layers().len());
/// print!("{}", failover.metrics().to_prometheus());
/// # Ok(()) }
/// ```
///
/// Cancel safety: dropping a future or a blob stream aborts its request;
/// a breaker's probe slot held by it is freed.
#[derive(Clone)]
pub struct Failover {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    registries: Vec<String>,
    breakers: Vec<Breaker>,
    config: FailoverConfig,
    metrics: Metrics,
    pins: Mutex<HashMap<(String, String), Digest>>,
    // Registries that served wrong bytes for a blob after some were handed
    // on: the consumer restarts the blob, and asks them last.
    tainted: Mutex<HashMap<Digest, Vec<usize>>>,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("registries", &self.inner.registries)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed.
enum Failed {
    Client(registry_client::Error),
    Timeout(String),
}

impl Failed {
    fn verdict(&self) -> Verdict {
        match self {
            Self::Client(e) => classify(e),
            Self::Timeout(_) => Verdict {
                kind: crate::ErrorKind::Timeout,
                unhealthy: true,
                give_up: false,
            },
        }
    }

    fn reason(&self, registry: &str) -> String {
        match self {
            Self::Client(e) => reason(registry, e),
            Self::Timeout(what) => what.clone(),
        }
    }
}

/// Most blobs remembered as served wrong by some registry.
const MAX_TAINTED: usize = 4096;

impl Inner {
    /// The registries that served wrong bytes for `digest`.
    fn tainted_for(&self, digest: &Digest) -> Vec<usize> {
        let tainted = self.tainted.lock().expect("tainted lock");
        tainted.get(digest).cloned().unwrap_or_default()
    }

    /// Remembers that registry `i` served wrong bytes for `digest`.
    fn taint(&self, digest: &Digest, i: usize) {
        let mut tainted = self.tainted.lock().expect("tainted lock");
        if tainted.len() >= MAX_TAINTED && !tainted.contains_key(digest) {
            tainted.clear();
        }
        let list = tainted.entry(digest.clone()).or_default();
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

impl Failover {
    /// A failover over `registries` (hosts with optional ports, primary
    /// first) using `client` as it is. Its retry policy should be small
    /// ([`RetryPolicy::none`]); its connect timeout is what bounds a
    /// connection attempt, since this type cannot tell connecting from
    /// waiting for headers.
    pub fn new<I, S>(client: Client, registries: I, config: FailoverConfig) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let registries = validate(registries)?;
        let breakers = registries
            .iter()
            .map(|_| Breaker::new(config.breaker_failures, config.breaker_cool_down))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                metrics: Metrics::new(registries.clone()),
                registries,
                breakers,
                config,
                pins: Mutex::new(HashMap::new()),
                tainted: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Like [`Failover::new`], building the client from `builder` (with
    /// its credentials and plain-HTTP hosts) after setting its connect
    /// timeout to `config.connect_timeout`, its read timeout to
    /// `config.first_byte_timeout` and its retry policy to none.
    pub fn from_client_builder<I, S>(
        builder: ClientBuilder,
        registries: I,
        config: FailoverConfig,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let client = builder
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.first_byte_timeout)
            .retry(RetryPolicy::none())
            .build()
            .map_err(|e| Error::Client(Box::new(e)))?;
        Self::new(client, registries, config)
    }

    /// The registry hosts, primary first.
    pub fn registries(&self) -> &[String] {
        &self.inner.registries
    }

    /// The settings in force.
    pub fn config(&self) -> &FailoverConfig {
        &self.inner.config
    }

    /// The counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        let now = Instant::now();
        self.inner
            .metrics
            .snapshot(|i| self.inner.breakers[i].state(now))
    }

    /// Resolves `reference` (which names one of the registries) to its
    /// manifest, trying each registry in order. Returns the reference
    /// pinned to the manifest's digest, on the primary's host and keeping
    /// the tag for display.
    pub async fn resolve(&self, reference: &Reference) -> Result<(Reference, Manifest)> {
        self.index_of(reference)?;
        let inner = &self.inner;
        let pin_key = match (reference.digest(), reference.tag()) {
            (None, Some(tag)) => Some((reference.repository().to_owned(), tag.to_owned())),
            _ => None,
        };
        let mut cursor = Cursor::new(inner.clone(), reference.to_string());
        let (registry, manifest) = loop {
            let (i, permit) = cursor.next().await?;
            let mut r = on_registry(reference, &inner.registries[i]);
            // Secondaries only confirm what is pinned; the primary is the
            // authority on what a tag means.
            if i > 0
                && let Some(key) = &pin_key
                && let Some(digest) = inner.pins.lock().expect("pins lock").get(key)
            {
                r = r.with_digest(digest.clone());
            }
            let started = Instant::now();
            let timeout = inner.config.headers_timeout();
            let failed = match tokio::time::timeout(timeout, inner.client.get_manifest(&r)).await {
                Ok(Ok(m)) => {
                    permit.success();
                    inner
                        .metrics
                        .pulled(i, PullKind::Manifest, started.elapsed());
                    break (i, m);
                }
                Ok(Err(e)) => Failed::Client(e),
                Err(_) => Failed::Timeout(format!("no manifest within {timeout:?}")),
            };
            cursor.failed(i, permit, failed)?;
        };
        if let Some(key) = pin_key {
            let mut pins = inner.pins.lock().expect("pins lock");
            if pins.len() >= MAX_PINS
                && !pins.contains_key(&key)
                && let Some(old) = pins.keys().next().cloned()
            {
                pins.remove(&old);
            }
            pins.insert(key, manifest.digest().clone());
        }
        tracing::debug!(%reference, registry = %inner.registries[registry], digest = %manifest.digest(), "resolved");
        let pinned =
            on_registry(reference, &inner.registries[0]).with_digest(manifest.digest().clone());
        Ok((pinned, manifest))
    }

    /// Opens the blob `desc` of `reference`'s repository, trying each
    /// registry in order. The stream yields every byte once, in order,
    /// verified against `desc`; a transfer that breaks resumes inside it
    /// (see [`Failover`]). An error item ends it.
    pub async fn blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> Result<BlobStream<Error>> {
        self.index_of(reference)?;
        let mut cursor = Cursor::new(
            self.inner.clone(),
            format!("{}@{}", reference.name(), desc.digest),
        );
        cursor.last = self.inner.tainted_for(&desc.digest);
        let mut run = BlobRun {
            inner: self.inner.clone(),
            cursor,
            reference: reference.clone(),
            desc: desc.clone(),
            checkpoint: Checkpoint::default(),
            open: None,
            resumes: 0,
            done: false,
        };
        run.open().await?;
        Ok(Box::pin(futures_util::stream::unfold(
            run,
            |mut run| async move {
                let item = run.next_item().await?;
                Some((item, run))
            },
        )))
    }

    /// Copies the image `reference` names from the primary to every
    /// secondary, pinned to the digest the primary has now, keeping the
    /// tag. Returns each secondary's copy report, in order; stops at the
    /// first secondary that fails.
    pub async fn mirror(&self, reference: &Reference) -> Result<Vec<(String, CopyReport)>> {
        self.index_of(reference)?;
        let inner = &self.inner;
        let primary = on_registry(reference, &inner.registries[0]);
        let mirror_err = |registry: &str, source: oci_push::Error| Error::Mirror {
            reference: reference.to_string(),
            registry: registry.to_owned(),
            source: Box::new(source),
        };
        let manifest = inner
            .client
            .get_manifest(&primary)
            .await
            .map_err(|e| mirror_err(&inner.registries[0], e.into()))?;
        let src = Endpoint::Registry(primary.with_digest(manifest.digest().clone()));
        let copier = Copier::new(inner.client.clone());
        let mut reports = Vec::new();
        for host in &inner.registries[1..] {
            let dst = Endpoint::Registry(on_registry(reference, host));
            let report = copier
                .copy(&src, &dst)
                .await
                .map_err(|e| mirror_err(host, e))?;
            reports.push((host.clone(), report));
        }
        Ok(reports)
    }

    fn index_of(&self, reference: &Reference) -> Result<usize> {
        let regs = &self.inner.registries;
        regs.iter()
            .position(|h| h == reference.registry())
            .ok_or_else(|| Error::ForeignRegistry {
                reference: reference.to_string(),
                registry: reference.registry().to_owned(),
                registries: regs.join(", "),
            })
    }
}

impl Source for Failover {
    type Error = Error;

    async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        Ok(self.resolve(reference).await?.1)
    }

    async fn blob(&self, reference: &Reference, desc: &Descriptor) -> Result<BlobStream<Error>> {
        Failover::blob(self, reference, desc).await
    }

    /// Every registry's bytes go through `registry-client`'s verifier.
    fn verifies_blobs(&self) -> bool {
        true
    }

    fn is_registry(&self) -> bool {
        true
    }
}

/// Registry hosts, checked and lowercased; at least one, no repeats.
fn validate<I, S>(registries: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let probe: Reference = "localhost/probe".parse().expect("a valid reference");
    let mut out: Vec<String> = Vec::new();
    for host in registries {
        let host = host.into();
        let bad = |reason: String| Error::InvalidRegistry {
            registry: host.clone(),
            reason,
        };
        let r = probe.with_registry(&host).map_err(|e| bad(e.to_string()))?;
        let normal = r.registry().to_owned();
        if out.contains(&normal) {
            return Err(bad("listed twice".into()));
        }
        out.push(normal);
    }
    if out.is_empty() {
        return Err(Error::NoRegistries);
    }
    Ok(out)
}

/// `reference` on `host`, which was validated when the failover was made.
fn on_registry(reference: &Reference, host: &str) -> Reference {
    reference
        .with_registry(host)
        .expect("registry hosts are validated up front")
}

/// Walks the registry list round by round for one request: skips open
/// breakers, counts failovers, remembers each registry's last failure.
struct Cursor {
    inner: Arc<Inner>,
    what: String,
    round: u32,
    next: usize,
    from: Option<usize>,
    failures: Vec<Option<RegistryFailure>>,
    // Whether this round saw a failure another round might not repeat.
    temporary: bool,
    // Registries asked only after all the others in a round.
    last: Vec<usize>,
}

impl Cursor {
    fn new(inner: Arc<Inner>, what: String) -> Self {
        let n = inner.registries.len();
        Self {
            inner,
            what,
            round: 0,
            next: 0,
            from: None,
            failures: vec![None; n],
            temporary: false,
            last: Vec::new(),
        }
    }

    /// The registry at position `pos` of this round's order: the
    /// configured order with the `last` ones moved to the end.
    fn at(&self, pos: usize) -> usize {
        let n = self.inner.registries.len();
        (0..n)
            .filter(|i| !self.last.contains(i))
            .chain((0..n).filter(|i| self.last.contains(i)))
            .nth(pos)
            .expect("a position within the registry list")
    }

    /// The next registry to ask and the breaker's leave, or the final
    /// error once every round is used up.
    async fn next(&mut self) -> Result<(usize, Permit)> {
        let inner = self.inner.clone();
        let n = inner.registries.len();
        loop {
            if self.next >= n {
                if !self.temporary || self.round >= inner.config.rounds {
                    return Err(Error::AllFailed {
                        reference: self.what.clone(),
                        failures: self.failures.iter().flatten().cloned().collect(),
                    });
                }
                self.round += 1;
                self.next = 0;
                self.from = None;
                self.temporary = false;
                let wait = inner.config.backoff(self.round);
                tracing::debug!(what = %self.what, round = self.round, ?wait, "every registry failed; next round");
                tokio::time::sleep(wait).await;
            }
            let i = self.at(self.next);
            self.next += 1;
            match inner.breakers[i].admit(Instant::now()) {
                Ok(permit) => {
                    if let Some(from) = self.from.take()
                        && from != i
                    {
                        inner.metrics.failover(from, i);
                        tracing::info!(what = %self.what, from = %inner.registries[from], to = %inner.registries[i], "failing over");
                    }
                    return Ok((i, permit));
                }
                Err(left) => {
                    inner.metrics.skipped(i);
                    // Keep the real reason when there is one.
                    self.failures[i].get_or_insert_with(|| RegistryFailure {
                        registry: inner.registries[i].clone(),
                        kind: None,
                        reason: format!("circuit breaker open (probe in {left:?})"),
                    });
                    self.temporary = true;
                    self.from = Some(i);
                }
            }
        }
    }

    /// Records a failed attempt; an error when no registry can help.
    fn failed(&mut self, i: usize, permit: Permit, failed: Failed) -> Result<()> {
        let inner = &self.inner;
        let verdict = failed.verdict();
        inner.metrics.error(i, verdict.kind);
        permit.failure(verdict.unhealthy, Instant::now());
        let registry = &inner.registries[i];
        let reason = failed.reason(registry);
        if verdict.unhealthy {
            tracing::warn!(what = %self.what, %registry, kind = %verdict.kind, %reason, "registry failed");
        } else {
            tracing::debug!(what = %self.what, %registry, kind = %verdict.kind, %reason, "registry cannot serve this");
        }
        if verdict.give_up
            && let Failed::Client(source) = failed
        {
            return Err(Error::Refused {
                reference: self.what.clone(),
                source: Box::new(source),
            });
        }
        self.failures[i] = Some(RegistryFailure {
            registry: registry.clone(),
            kind: Some(verdict.kind),
            reason,
        });
        self.temporary |= verdict.unhealthy;
        self.from = Some(i);
        Ok(())
    }

    /// Makes registry `i` the next one asked (a resume where it broke).
    fn again(&mut self, i: usize) {
        self.next = (0..self.inner.registries.len())
            .position(|pos| self.at(pos) == i)
            .expect("a registry of the list");
    }
}

/// One blob download across registries.
struct BlobRun {
    inner: Arc<Inner>,
    cursor: Cursor,
    reference: Reference,
    desc: Descriptor,
    // Where the next request starts: the bytes handed on and their hash.
    checkpoint: Checkpoint,
    open: Option<Open>,
    // Resumes in a row on the registry that broke.
    resumes: u32,
    done: bool,
}

/// A response being read.
struct Open {
    registry: usize,
    stream: VerifiedStream,
    progress: CheckpointHandle,
    permit: Permit,
    started: Instant,
    deadline: tokio::time::Instant,
    start_offset: u64,
}

impl BlobRun {
    /// Sends the request for the rest of the blob to the next registry
    /// that answers.
    async fn open(&mut self) -> Result<()> {
        let inner = self.inner.clone();
        loop {
            let (i, permit) = self.cursor.next().await?;
            let r = on_registry(&self.reference, &inner.registries[i]);
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + inner.config.blob_timeout;
            let timeout = inner
                .config
                .headers_timeout()
                .min(inner.config.blob_timeout);
            let request = inner
                .client
                .get_blob(&r, &self.desc, self.checkpoint.clone());
            let failed = match tokio::time::timeout(timeout, request).await {
                Ok(Ok(stream)) => {
                    self.open = Some(Open {
                        registry: i,
                        progress: stream.checkpoint_handle(),
                        stream,
                        permit,
                        started,
                        deadline,
                        start_offset: self.checkpoint.offset,
                    });
                    return Ok(());
                }
                Ok(Err(e)) => Failed::Client(e),
                Err(_) => Failed::Timeout(format!("no response within {timeout:?}")),
            };
            self.cursor.failed(i, permit, failed)?;
        }
    }

    async fn next_item(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if self.open.is_none()
                && let Err(e) = self.open().await
            {
                self.done = true;
                return Some(Err(e));
            }
            let open = self.open.as_mut().expect("opened above");
            let stall = self.inner.config.first_byte_timeout;
            let limit = open.deadline.min(tokio::time::Instant::now() + stall);
            let failed = match tokio::time::timeout_at(limit, open.stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.inner.metrics.bytes(open.registry, chunk.len() as u64);
                    return Some(Ok(chunk));
                }
                Ok(None) => {
                    let open = self.open.take().expect("open");
                    open.permit.success();
                    self.inner.metrics.pulled(
                        open.registry,
                        PullKind::Blob,
                        open.started.elapsed(),
                    );
                    self.done = true;
                    return None;
                }
                Ok(Some(Err(e))) => Failed::Client(e),
                Err(_) if limit == open.deadline => Failed::Timeout(format!(
                    "blob not done within {:?}",
                    self.inner.config.blob_timeout
                )),
                Err(_) => Failed::Timeout(format!("no data for {stall:?}")),
            };
            let open = self.open.take().expect("open");
            let i = open.registry;
            let checkpoint = open.progress.get();
            let progressed = checkpoint.offset > open.start_offset;
            let failed = match failed {
                // Bytes already handed on may be the wrong ones: the
                // consumer has to start over, this stream cannot.
                Failed::Client(source)
                    if checkpoint.offset > 0
                        && classify(&source).kind == crate::ErrorKind::DigestMismatch =>
                {
                    self.inner
                        .metrics
                        .error(i, crate::ErrorKind::DigestMismatch);
                    open.permit.failure(true, Instant::now());
                    self.inner.taint(&self.desc.digest, i);
                    self.done = true;
                    return Some(Err(Error::CorruptBlob {
                        registry: self.inner.registries[i].clone(),
                        digest: self.desc.digest.clone(),
                        offset: checkpoint.offset,
                        source: Box::new(source),
                    }));
                }
                other => other,
            };
            let timed_out = matches!(failed, Failed::Timeout(_))
                || matches!(
                    &failed,
                    Failed::Client(registry_client::Error::Connection { timeout: true, .. })
                );
            self.checkpoint = checkpoint;
            if let Err(e) = self.cursor.failed(i, open.permit, failed) {
                self.done = true;
                return Some(Err(e));
            }
            // The registry was serving: resume there unless its breaker
            // has opened, a few times at most, so that one dropping every
            // connection after a few bytes is left for the next.
            if progressed && !timed_out && self.resumes < self.inner.config.breaker_failures {
                self.resumes += 1;
                self.cursor.again(i);
            } else {
                self.resumes = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::builder().build().unwrap()
    }

    #[test]
    fn refuses_bad_registry_lists() {
        let empty: [&str; 0] = [];
        let cases: [(Vec<&str>, &str); 4] = [
            (empty.to_vec(), "no registries given"),
            (
                vec!["a.example", "A.example"],
                "invalid registry `A.example`: listed twice",
            ),
            (vec!["a.example", "bad host"], "invalid registry `bad host`"),
            (
                vec!["-x-.example:99999999"],
                "invalid registry `-x-.example:99999999`",
            ),
        ];
        for (list, want) in cases {
            let err = Failover::new(client(), list.clone(), FailoverConfig::default()).unwrap_err();
            assert!(err.to_string().starts_with(want), "{list:?}: {err}");
        }
        let f = Failover::new(
            client(),
            ["A.example:5000", "b.example"],
            FailoverConfig::default(),
        )
        .unwrap();
        assert_eq!(f.registries(), ["a.example:5000", "b.example"]);
    }

    #[tokio::test]
    async fn refuses_references_to_other_registries() {
        let f = Failover::new(
            client(),
            ["a.example", "b.example"],
            FailoverConfig::default(),
        )
        .unwrap();
        let r: Reference = "c.example/team/fn:v1".parse().unwrap();
        let err = f.resolve(&r).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.example/team/fn:v1 names registry c.example, which is not one of a.example, b.example"
        );
        let desc = Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(b""),
            size: 0,
            platform: None,
        };
        assert!(matches!(
            f.blob(&r, &desc).await,
            Err(Error::ForeignRegistry { .. })
        ));
        assert!(matches!(
            f.mirror(&r).await,
            Err(Error::ForeignRegistry { .. })
        ));
        // Nothing was sent, so nothing was counted.
        let m = f.metrics();
        assert!(
            m.registries
                .iter()
                .all(|r| r.errors.is_empty() && r.skipped == 0)
        );
    }
}
