//! The worker: takes build jobs and tasks from the queue and runs them,
//! `concurrency` at a time.
//!
//! - **At least once, never lost**: a lease is renewed while its work runs
//!   and acknowledged only after the result is recorded. A worker killed
//!   mid-task stops renewing; its lease expires and another worker (or
//!   this one, restarted) takes the task again. A task whose result is
//!   already recorded is not run again (`Jobs::start_task`).
//! - **Retries**: a task that could not run for a reason outside it (the
//!   image could not be pulled, the sandbox machinery failed) is given
//!   back; after its last attempt it fails for good.
//! - **Cancellation**: a running build whose cancellation was asked stops
//!   within a second (its future is dropped: nothing half-written stays).
//! - **Drain**: on shutdown the worker takes nothing more, lets what runs
//!   finish within the grace period, then gives the rest back.
//! - **Pre-warm**: at start, the images most used in the last week are
//!   pulled into the layer cache in the background.

mod build;
mod release;
mod task;
mod warm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use function_run::Options;
use image_pull::{PullConfig, Puller};
use jobs::{Build, BuildResult, BuildStatus, BuildUpdate, Jobs, Lease, TaskResult, Work};
use layer_cache::{Cache, CacheConfig, CachedImage};
use oci_model::Endpoint;
use registry_client::ClientBuilder;
use sandbox_run::{Sandbox, SandboxConfig};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use build::FunctionBuildSpec;
pub use release::{ArtifactRef, ReleaseBuildSpec};
pub use warm::WarmPolicy;

use crate::{ImageTarget, Metrics, Objects, Result};

/// How often a running build looks for a cancellation request.
const CANCEL_POLL: Duration = Duration::from_millis(500);

/// A worker's settings.
///
/// ```
/// let config = service::worker::WorkerConfig::new("/var/lib/hoist", "oci:/var/lib/hoist/images".parse()?);
/// assert_eq!(config.invoke.limits.memory_bytes, 2 << 30);
/// # Ok::<(), service::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// This worker's name in records and leases (default: host name and
    /// process id).
    pub id: String,
    /// Work run at once (default: the number of cores).
    pub concurrency: usize,
    /// Where built images go.
    pub images: ImageTarget,
    /// The base of function builds that name none.
    pub base: Option<Endpoint>,
    /// The worker's directory: `layers/` (the layer cache), `build/` (the
    /// build cache), `work/` (per-job scratch).
    pub data_dir: PathBuf,
    /// Limits of each function run (the seeds': 2 GiB, 2 CPUs, 300 s).
    pub invoke: Options,
    /// Registry mirrors and failover timeouts.
    pub pull: PullConfig,
    /// How many of the most used images to pull at start (default 10).
    pub prewarm: u32,
    /// How long work may finish after a shutdown begins (default 30 s).
    pub drain_grace: Duration,
    /// The queue's lease (as `jobs` was opened with): leases are renewed
    /// at a third of it.
    pub lease: Duration,
    /// Runs of a task that failed for the platform's reasons (an image
    /// that cannot be pulled, a store that cannot be written) before the
    /// task is failed for good (default 5).
    pub attempts: u32,
    /// Sandboxes kept warm between tasks of a function (see
    /// [`WarmPolicy`]).
    pub warm: WarmPolicy,
    /// Limits of release builds.
    pub release: ReleaseLimits,
    /// When set, a task's image runs only if a signature by this key
    /// verifies (cosign's `.sig` tag in the registry it is pulled from);
    /// images in OCI layouts, which carry no signatures, are refused.
    pub require_signature: Option<image_sign::PublicKey>,
    /// The vulnerability gate of builds (off by default): every built
    /// image is scanned before its push, and a rejected one never pushed.
    pub scan: Option<ScanConfig>,
}

/// The vulnerability gate of a worker's builds.
///
/// ```
/// let gate = service::worker::ScanConfig::new("/var/lib/hoist/osv");
/// assert!(gate.policy.reject.contains(&advisory_db::Severity::Critical));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ScanConfig {
    /// The OSV database (`hoist db import --db DIR`).
    pub db: PathBuf,
    /// What rejects and warns (default: CRITICAL rejects, HIGH warns).
    pub policy: scan_gate::Policy,
}

impl ScanConfig {
    /// The gate on the database at `db` with the default policy.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Self {
            db: db.into(),
            policy: scan_gate::Policy::default(),
        }
    }
}

/// Limits of one release build (a Dockerfile build).
///
/// ```
/// let limits = service::worker::ReleaseLimits::default();
/// assert_eq!(limits.timeout.as_secs(), 3600);
/// assert_eq!(limits.max_context_bytes, 10 << 30);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReleaseLimits {
    /// The whole build, artifacts to push (one hour, as the seeds).
    pub timeout: Duration,
    /// The artifacts copied into the context, together (10 GiB).
    pub max_context_bytes: u64,
    /// Memory, CPU, processes and time of each `RUN` (the sandbox's
    /// defaults, with the build's hour as its time).
    pub limits: sandbox_run::Limits,
    /// What each `RUN` may write to the image (1 GiB; see
    /// [`oci_build::DockerfileSpec::run_disk`]).
    pub run_disk: u64,
}

impl Default for ReleaseLimits {
    fn default() -> Self {
        let mut limits = sandbox_run::Limits::default();
        limits.timeout = Duration::from_secs(3600);
        Self {
            timeout: Duration::from_secs(3600),
            max_context_bytes: 10 << 30,
            limits,
            run_disk: 1 << 30,
        }
    }
}

impl WorkerConfig {
    /// Defaults for a worker keeping its files in `data_dir` and putting
    /// images in `images`.
    pub fn new(data_dir: impl Into<PathBuf>, images: ImageTarget) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".into());
        Self {
            id: format!("{host}-{}", std::process::id()),
            concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            images,
            base: None,
            data_dir: data_dir.into(),
            invoke: Options::default(),
            pull: PullConfig::default(),
            prewarm: 10,
            drain_grace: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            attempts: 5,
            warm: WarmPolicy::default(),
            release: ReleaseLimits::default(),
            require_signature: None,
            scan: None,
        }
    }

    pub(crate) fn work_dir(&self) -> PathBuf {
        self.data_dir.join("work")
    }
}

/// What running a build or a task needs.
pub(crate) struct Context {
    pub(crate) jobs: Jobs,
    pub(crate) objects: Objects,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: WorkerConfig,
    pub(crate) builder: oci_build::Builder,
    pub(crate) client: registry_client::Client,
    pub(crate) puller: Puller,
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) pool: Arc<warm::Pool>,
    /// Images whose signature verified, by the name a task gave, to the
    /// digest verified: a warm start asks the registry nothing. Entries
    /// expire so that a moved tag is looked at again.
    pub(crate) verified: moka::future::Cache<String, oci_model::Reference>,
    /// The advisory database of the build gate, when it is on.
    pub(crate) advisories: Option<Arc<advisory_db::Database>>,
}

/// A worker; see the module documentation.
#[derive(Clone)]
pub struct Worker {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.ctx.config.id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Opens the worker's layer cache and sandbox (sweeping what a crashed
    /// predecessor left) and its builder.
    pub async fn new(
        jobs: Jobs,
        objects: Objects,
        metrics: Arc<Metrics>,
        registries: ClientBuilder,
        sandbox: SandboxConfig,
        config: WorkerConfig,
    ) -> Result<Self> {
        for dir in [config.work_dir(), config.data_dir.join("build")] {
            std::fs::create_dir_all(&dir).map_err(|source| crate::Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        // A gate without its database is a configuration error now, not
        // a failed build later.
        let advisories = match &config.scan {
            Some(gate) => Some(Arc::new(advisory_db::Database::open(&gate.db).map_err(
                |e| crate::Error::Config {
                    what: "advisory database",
                    reason: e.to_string(),
                },
            )?)),
            None => None,
        };
        let cache = Cache::open(CacheConfig::new(config.data_dir.join("layers"))).await?;
        let client = registries
            .clone()
            .build()
            .map_err(|e| crate::Error::Config {
                what: "registry client",
                reason: e.to_string(),
            })?;
        // Builds compile the function's bytecode in the same sandbox setup.
        let builder = oci_build::Builder::new(client.clone())?
            .cache_dir(config.data_dir.join("build"))
            .sandbox(sandbox.clone());
        let puller = Puller::new(cache, registries, config.pull.clone());
        let sandbox = tokio::task::spawn_blocking(move || -> Result<Sandbox> {
            let sandbox = Sandbox::new(sandbox)?;
            sandbox.sweep()?;
            Ok(sandbox)
        })
        .await
        .map_err(|e| crate::Error::Config {
            what: "sandbox",
            reason: e.to_string(),
        })??;
        Ok(Self {
            ctx: Arc::new(Context {
                jobs,
                objects,
                metrics,
                builder,
                client,
                puller,
                sandbox: Arc::new(sandbox),
                pool: Arc::new(warm::Pool::new(config.warm.clone())),
                verified: moka::future::Cache::builder()
                    .max_capacity(4096)
                    .time_to_live(Duration::from_secs(300))
                    .build(),
                advisories,
                config,
            }),
        })
    }

    /// The layer cache's and the registries' metrics, for `/metrics`.
    pub fn prometheus(&self) -> String {
        let stats = self.ctx.puller.cache().stats();
        let mut out = format!(
            "# HELP hoist_layer_cache_hits_total Pulls answered from the layer cache.\n# TYPE hoist_layer_cache_hits_total counter\nhoist_layer_cache_hits_total {}\n# HELP hoist_layer_cache_misses_total Pulls that fetched or unpacked something.\n# TYPE hoist_layer_cache_misses_total counter\nhoist_layer_cache_misses_total {}\n# HELP hoist_layer_cache_bytes Bytes the layer cache holds.\n# TYPE hoist_layer_cache_bytes gauge\nhoist_layer_cache_bytes {}\n",
            stats.hits, stats.misses, stats.bytes
        );
        for failover in self.ctx.puller.failovers() {
            out.push_str(&failover.metrics().to_prometheus());
        }
        out.push_str(&self.ctx.pool.prometheus());
        out
    }

    /// Runs until `shutdown` completes, then drains (see the module
    /// documentation).
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let ctx = &self.ctx;
        let prewarm = tokio::spawn(prewarm(ctx.clone()));
        let expire = tokio::spawn({
            let pool = ctx.pool.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let pool = pool.clone();
                    let _ = tokio::task::spawn_blocking(move || pool.expire()).await;
                }
            }
        });
        let slots = Arc::new(Semaphore::new(ctx.config.concurrency.max(1)));
        let mut running = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            // Take work only with a free slot: a lease held while waiting
            // would be work nobody runs.
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let lease = tokio::select! {
                _ = &mut shutdown => break,
                l = ctx.jobs.take(&ctx.config.id, Duration::from_secs(1)) => l,
            };
            let lease = match lease {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "taking work");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let ctx = ctx.clone();
            running.spawn(async move {
                let _permit = permit;
                handle(&ctx, lease).await;
            });
            // Reap what finished, so the set does not grow.
            while running.try_join_next().is_some() {}
        }
        prewarm.abort();
        tracing::info!(running = running.len(), "draining");
        let drained = tokio::time::timeout(ctx.config.drain_grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // What is still running is given back: dropping a handler
            // releases nothing by itself, so leases simply expire; give
            // them back at once instead.
            tracing::warn!(
                left = running.len(),
                "drain grace over; giving the rest back"
            );
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        expire.abort();
        let pool = ctx.pool.clone();
        let _ = tokio::task::spawn_blocking(move || pool.close()).await;
        Ok(())
    }
}

/// Runs one lease's work: renews the lease meanwhile, records the result,
/// acknowledges (or gives back).
async fn handle(ctx: &Arc<Context>, lease: Lease) {
    let work = lease.work;
    let attempt = lease.attempt;
    let lease = Arc::new(lease);
    let renew = {
        let jobs = ctx.jobs.clone();
        let lease = lease.clone();
        let every = ctx.config.lease / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = jobs.renew(&lease).await {
                    tracing::warn!(error = %e, "renewing a lease");
                }
            }
        })
    };
    // A handler dropped by a drain that ran out of time gives its lease
    // back rather than let it run out.
    let mut guard = ReleaseOnDrop {
        jobs: ctx.jobs.clone(),
        renew: Some(renew),
        lease: Some(lease),
    };
    let done = match work {
        Work::Task(id) => run_task(ctx, id).await,
        Work::Build(id) => run_build(ctx, id).await,
    };
    let Some(lease) = guard.take().await else {
        return;
    };
    let acked = match done {
        Done::Ack => ctx.jobs.ack(lease).await,
        Done::GiveBack => {
            // Not at once: whatever failed (a registry, the sandbox) gets
            // a moment before the next attempt.
            tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(15)) * 2)).await;
            ctx.jobs.release(lease).await
        }
    };
    if let Err(e) = acked {
        tracing::warn!(error = %e, "acknowledging work");
    }
}

enum Done {
    Ack,
    GiveBack,
}

async fn run_task(ctx: &Context, id: uuid::Uuid) -> Done {
    let task = match ctx.jobs.start_task(id, &ctx.config.id).await {
        Ok(Some(task)) => task,
        // Already final: not run again.
        Ok(None) => return Done::Ack,
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "starting a task");
            return Done::GiveBack;
        }
    };
    let started = Instant::now();
    let result = match task::run(ctx, &task).await {
        Ok(result) => result,
        Err(task::Retry(reason)) if task.attempts < ctx.config.attempts => {
            tracing::warn!(task = %id, attempt = task.attempts, %reason, "task given back");
            return Done::GiveBack;
        }
        // A give-back does not count as a delivery in the queue, so the
        // task's own count of runs decides when to stop trying.
        Err(task::Retry(reason)) => {
            tracing::warn!(task = %id, attempt = task.attempts, %reason, "task failed for good");
            TaskResult::Failed {
                error: serde_json::json!({
                    "type": "WorkerError",
                    "message": format!("gave up after {} attempts: {reason}", task.attempts),
                    "traceback": null,
                }),
                output_key: None,
                duration_ms: None,
            }
        }
    };
    let outcome = match &result {
        TaskResult::Completed { .. } => "completed",
        _ => "failed",
    };
    match ctx.jobs.finish_task(id, result).await {
        Ok(_) => {
            ctx.metrics.task_finished(outcome, started.elapsed());
            Done::Ack
        }
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "recording a task's result");
            Done::GiveBack
        }
    }
}

async fn run_build(ctx: &Context, id: uuid::Uuid) -> Done {
    let build = match ctx.jobs.build(id).await {
        Ok(Some(b)) => b,
        Ok(None) => return Done::Ack,
        Err(e) => {
            tracing::warn!(build = %id, error = %e, "reading a build");
            return Done::GiveBack;
        }
    };
    if build.status.is_final() {
        return Done::Ack;
    }
    let started = Instant::now();
    let result = if build.cancel_requested {
        BuildResult::Cancelled
    } else {
        tokio::select! {
            r = build_one(ctx, &build) => r,
            () = cancelled(ctx, id) => BuildResult::Cancelled,
        }
    };
    let status = match &result {
        BuildResult::Completed { .. } => "completed",
        BuildResult::Failed { .. } => "failed",
        BuildResult::Cancelled => "cancelled",
    };
    match ctx.jobs.finish_build(id, result).await {
        Ok(_) => {
            ctx.metrics.build_finished(status, started.elapsed());
            Done::Ack
        }
        Err(e) => {
            tracing::warn!(build = %id, error = %e, "recording a build's result");
            Done::GiveBack
        }
    }
}

async fn build_one(ctx: &Context, record: &Build) -> BuildResult {
    match record.kind {
        jobs::BuildKind::Function => build_function(ctx, record).await,
        jobs::BuildKind::Release => build_release(ctx, record).await,
    }
}

async fn build_release(ctx: &Context, record: &Build) -> BuildResult {
    let spec: ReleaseBuildSpec = match serde_json::from_value(record.spec.clone()) {
        Ok(s) => s,
        Err(e) => {
            return BuildResult::Failed {
                error: format!("not a release build: {e}"),
                step: Some("reading the job".into()),
            };
        }
    };
    match release::run(ctx, record.id, &spec).await {
        Ok(built) => BuildResult::Completed {
            image_url: built.image_url,
            image_digest: built.digest,
            size_bytes: built.size_bytes,
        },
        Err(failed) => failed_build(ctx, record, failed).await,
    }
}

/// Logs a failed build's error and makes its result.
async fn failed_build(ctx: &Context, record: &Build, failed: build::Failed) -> BuildResult {
    let _ = ctx
        .jobs
        .log_build(record.id, &format!("{}: {}", failed.step, failed.error))
        .await;
    BuildResult::Failed {
        error: failed.error,
        step: Some(failed.step),
    }
}

async fn build_function(ctx: &Context, record: &Build) -> BuildResult {
    let spec: FunctionBuildSpec = match serde_json::from_value(record.spec.clone()) {
        Ok(s) => s,
        Err(e) => {
            return BuildResult::Failed {
                error: format!("not a function build: {e}"),
                step: Some("reading the job".into()),
            };
        }
    };
    let _ = ctx
        .jobs
        .update_build(record.id, progress(BuildStatus::Building, 1, "starting"))
        .await;
    match build::run(ctx, record.id, &spec).await {
        Ok(built) => {
            if let Err(e) = ctx
                .jobs
                .set_function_image(spec.function_id, &built.image_url, &built.digest)
                .await
            {
                return BuildResult::Failed {
                    error: format!("recording the image: {e}"),
                    step: Some("recording".into()),
                };
            }
            BuildResult::Completed {
                image_url: built.image_url,
                image_digest: built.digest,
                size_bytes: built.size_bytes,
            }
        }
        Err(failed) => failed_build(ctx, record, failed).await,
    }
}

/// Completes once cancelling build `id` was asked.
async fn cancelled(ctx: &Context, id: uuid::Uuid) {
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        if let Ok(Some(b)) = ctx.jobs.build(id).await
            && (b.cancel_requested || b.status.is_final())
        {
            return;
        }
    }
}

impl Context {
    /// Pulls a function image through the layer cache, counting it in the
    /// image pull metrics: a download's duration, a cache hit, or the kind
    /// of error.
    pub(crate) async fn pull_function(&self, image: &Endpoint) -> image_pull::Result<CachedImage> {
        let registry = match image {
            Endpoint::Registry(r) => r.registry().to_owned(),
            Endpoint::Layout { .. } => "oci-layout".to_owned(),
        };
        let started = Instant::now();
        match self.puller.pull(image).await {
            Ok(pulled) => {
                let took = pulled.downloaded.then(|| started.elapsed());
                self.metrics.image_pulled(&registry, "function", took);
                Ok(pulled)
            }
            Err(e) => {
                self.metrics
                    .image_pull_failed(&registry, pull_error_type(&e));
                Err(e)
            }
        }
    }
}

/// The `error_type` label of a failed pull: the registry failed or lied
/// (`registry`, `integrity`), the image cannot run (`invalid_image`), the
/// reference or configuration is wrong (`reference`), or the worker's own
/// disk or cache failed (`local`).
fn pull_error_type(e: &image_pull::Error) -> &'static str {
    match e {
        image_pull::Error::Cache { source, .. } => cache_error_type(source),
        image_pull::Error::Model(_)
        | image_pull::Error::MirrorsForLayout { .. }
        | image_pull::Error::Failover(_) => "reference",
        _ => "local",
    }
}

fn cache_error_type(e: &layer_cache::Error) -> &'static str {
    use layer_cache::Error as C;
    match e {
        C::Fetch { .. } => "registry",
        C::DigestMismatch { .. }
        | C::SizeMismatch { .. }
        | C::DiffIdMismatch { .. }
        | C::HostileLayer { .. } => "integrity",
        C::InvalidImage { .. } | C::Model(_) | C::Unpack { .. } => "invalid_image",
        C::Shared(inner) => cache_error_type(inner),
        _ => "local",
    }
}

/// Pulls the images most used in the last week, in parallel; readiness
/// does not wait for it.
async fn prewarm(ctx: Arc<Context>) {
    if ctx.config.prewarm == 0 {
        return;
    }
    let since = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    let images = match ctx.jobs.most_used_images(since, ctx.config.prewarm).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "listing images to pre-warm");
            return;
        }
    };
    let pulls = images.into_iter().map(|(image, _)| {
        let ctx = ctx.clone();
        async move {
            let Ok(endpoint) = image.parse::<Endpoint>() else {
                return;
            };
            match ctx.pull_function(&endpoint).await {
                Ok(_) => tracing::info!(%image, "pre-warmed"),
                Err(e) => tracing::warn!(%image, error = %e, "pre-warming"),
            }
        }
    });
    futures_util::future::join_all(pulls).await;
}

/// A build's progress report.
pub(crate) fn progress(status: BuildStatus, percent: u8, step: &str) -> BuildUpdate {
    BuildUpdate {
        status: Some(status),
        progress: Some(percent),
        current_step: Some(step.to_owned()),
    }
}

/// A lease and the task renewing it; gives the lease back if dropped
/// before its handler answered (a drain that ran out of time).
struct ReleaseOnDrop {
    jobs: Jobs,
    renew: Option<tokio::task::JoinHandle<()>>,
    lease: Option<Arc<Lease>>,
}

impl ReleaseOnDrop {
    /// Stops renewing and hands the lease back to the handler.
    async fn take(&mut self) -> Option<Lease> {
        if let Some(renew) = self.renew.take() {
            renew.abort();
            let _ = renew.await;
        }
        Arc::into_inner(self.lease.take()?)
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(renew) = self.renew.take() {
            renew.abort();
        }
        if let Some(lease) = self.lease.take() {
            let jobs = self.jobs.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    // The renewing task lets go of its clone once aborted.
                    for _ in 0..50 {
                        if Arc::strong_count(&lease) == 1 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    if let Some(lease) = Arc::into_inner(lease) {
                        let _ = jobs.release(lease).await;
                    }
                });
            }
        }
    }
}

/// A worker's own small HTTP face, for deployments where it runs apart
/// from the API: `/metrics` (tasks and builds it ran, its layer cache,
/// its registries' failovers) and `/health` (it is alive).
pub fn router(worker: Worker, metrics: Arc<Metrics>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = metrics.to_prometheus(&worker.prometheus());
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        text,
                    )
                }
            }),
        )
        .route("/health", get(|| async { "ok" }))
}
