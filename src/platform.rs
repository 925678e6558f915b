//! Wiring of the platform's processes — `hoist-serve` (what `hoist serve`
//! runs), `hoist-api`, `hoist-worker`: flags, their defaults, signals.
//! Shared by the three binaries (included with `#[path]`); the logic is in
//! the `service`, `jobs` and `function-run` crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use service::api::{Api, ApiConfig};
use service::worker::{Worker, WorkerConfig};
use service::{ImageTarget, Metrics, Objects, ResultCache};

/// Where records, the queue and objects live.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Records: `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "HOIST_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Queue: `sqlite` (the database's own) or `redis://HOST:PORT`.
    #[arg(long, env = "HOIST_QUEUE", value_name = "URL")]
    pub queue: Option<String>,
    /// Objects: `file:///DIR` or `s3://BUCKET?endpoint=http://HOST:PORT`
    /// (credentials from the AWS_* variables).
    #[arg(long, env = "HOIST_OBJECTS", value_name = "URL")]
    pub objects: Option<String>,
    /// Seconds a worker holds a task or build without renewing it before
    /// another worker may take it.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub lease: u64,
}

impl StoreArgs {
    /// The lease workers hold work under.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease.max(1))
    }

    /// Opens the records and the queue, and the object store; defaults
    /// under `data_dir` when given.
    pub async fn open(&self, data_dir: Option<&std::path::Path>) -> Result<(jobs::Jobs, Objects)> {
        let jobs = self.jobs(data_dir).await?;
        let objects = match (&self.objects, data_dir) {
            (Some(o), _) => o.clone(),
            (None, Some(dir)) => format!("file://{}", dir.join("objects").display()),
            (None, None) => bail!("--objects (or HOIST_OBJECTS) is needed"),
        };
        let objects = Objects::open(&objects).context("open the object store")?;
        Ok((jobs, objects))
    }

    /// Opens the records and the queue only (what key management needs).
    pub async fn jobs(&self, data_dir: Option<&std::path::Path>) -> Result<jobs::Jobs> {
        let database = match (&self.database, data_dir) {
            (Some(d), _) => d.clone(),
            (None, Some(dir)) => format!("sqlite://{}", dir.join("hoist.db").display()),
            (None, None) => bail!("--database (or HOIST_DATABASE) is needed"),
        };
        let queue = self.queue.clone().unwrap_or_else(|| "database".into());
        let config = jobs::JobsConfig::new(&database, queue).lease(self.lease());
        jobs::Jobs::open(config)
            .await
            .with_context(|| format!("open the records at {}", redact(&database)))
    }
}

/// The API's flags.
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The URL clients reach the API at (for the WebSocket URLs it hands
    /// out; default: the request's Host).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Result cache: `memory` or `redis://HOST:PORT`.
    #[arg(long, default_value = "memory", value_name = "URL")]
    pub result_cache: String,
    /// A registry a request may name its own base image in (repeatable).
    #[arg(long = "base-registry", value_name = "HOST")]
    pub base_registries: Vec<String>,
    /// A registry release builds may push to (repeatable; none: release
    /// builds are refused).
    #[arg(long = "release-registry", value_name = "HOST")]
    pub release_registries: Vec<String>,
    /// Let a release build ask for the network in its `RUN` steps
    /// (`"network": "host"`).
    #[arg(long)]
    pub release_network: bool,
    /// The largest artifact an upload may be, in MiB.
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    pub max_artifact: u64,
    /// Submissions per second per key.
    #[arg(long, default_value_t = 5.0, value_name = "N")]
    pub rate: f64,
    /// Submissions per key at once.
    #[arg(long, default_value_t = 20.0, value_name = "N")]
    pub burst: f64,
}

impl ApiArgs {
    /// The API over `jobs` and `objects`.
    pub async fn api(
        &self,
        jobs: jobs::Jobs,
        objects: Objects,
        metrics: Arc<Metrics>,
        extra_metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    ) -> Result<Api> {
        let mut config = ApiConfig::default();
        config.public_url = self.public_url.clone();
        config.base_registries = self.base_registries.clone();
        config.release_registries = self.release_registries.clone();
        config.release_network = self.release_network;
        config.max_artifact_bytes = self.max_artifact.saturating_mul(1 << 20);
        config.submissions_per_second = self.rate;
        config.submission_burst = self.burst;
        config.extra_metrics = extra_metrics;
        let results = match self.result_cache.as_str() {
            "memory" => ResultCache::memory(config.result_ttl, 64 << 20),
            "off" => ResultCache::Off,
            url => ResultCache::redis(url, config.result_ttl)
                .await
                .context("connect the result cache")?,
        };
        Ok(Api::with_results(jobs, objects, metrics, results, config))
    }
}

/// The worker's flags.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Where built images go: `HOST/NAMESPACE` of a registry, or `oci:DIR`.
    #[arg(long, value_name = "HOST/NAMESPACE|oci:DIR")]
    pub registry: Option<ImageTarget>,
    /// A registry to fall back to when pulling, in order (repeatable).
    #[arg(long = "mirror", value_name = "HOST")]
    pub mirrors: Vec<String>,
    /// The worker's directory: layer cache, build cache, scratch.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Builds and tasks run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// The base image of function builds that name none.
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<oci_model::Endpoint>,
    /// How many of the last week's most used images to pull at start.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub prewarm: u32,
    /// Seconds running work may take to finish after SIGTERM.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub drain: u64,
    /// Idle sandboxes kept warm between tasks of a function (0: a
    /// container per task).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub warm: usize,
    /// Seconds a warm sandbox may stay idle.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub warm_idle: u64,
    /// MiB of memory the idle warm sandboxes may hold together.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub warm_memory: u64,
    /// Seconds a release build may take, artifacts to push.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub release_timeout: u64,
    /// MiB of memory each `RUN` of a release build may use.
    #[arg(long, value_name = "MIB")]
    pub release_memory: Option<u64>,
    /// GiB the artifacts of one release build may take together.
    #[arg(long, default_value_t = 10, value_name = "GIB")]
    pub release_context: u64,
    /// MiB each `RUN` of a release build may write to the image (a tmpfs,
    /// so counted as its memory too).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub release_disk: u64,
    /// Scan every built image before its push against this OSV database
    /// (`hoist db import --db DIR`): a build the policy rejects fails and
    /// is never pushed.
    #[arg(long, value_name = "DIR")]
    pub advisory_db: Option<PathBuf>,
    /// The policy of the build scan (TOML, as `hoist scan --policy`;
    /// default: CRITICAL rejects, HIGH warns).
    #[arg(long, value_name = "FILE", requires = "advisory_db")]
    pub scan_policy: Option<PathBuf>,
    /// Run only images signed by this cosign public key (cosign.pub):
    /// an unsigned or otherwise signed image fails its task.
    #[arg(long, value_name = "KEY.pub")]
    pub require_signature: Option<PathBuf>,
}

impl WorkerArgs {
    /// The worker's configuration; `data_dir` gives the defaults of
    /// `hoist serve`; `lease` is the queue's.
    pub fn config(
        &self,
        data_dir: Option<&std::path::Path>,
        lease: Duration,
    ) -> Result<WorkerConfig> {
        let images = match (&self.registry, data_dir) {
            (Some(t), _) => t.clone(),
            (None, Some(dir)) => ImageTarget::Layout(dir.join("images")),
            (None, None) => bail!("--registry HOST/NAMESPACE (or oci:DIR) is needed"),
        };
        let cache = match (&self.cache_dir, data_dir) {
            (Some(c), _) => c.clone(),
            (None, Some(dir)) => dir.join("worker"),
            (None, None) => bail!("--cache-dir is needed"),
        };
        let mut config = WorkerConfig::new(cache, images);
        config.pull.mirrors = self.mirrors.clone();
        if let Some(n) = self.concurrency {
            config.concurrency = n.max(1);
        }
        config.base = self.base.clone();
        config.prewarm = self.prewarm;
        config.drain_grace = Duration::from_secs(self.drain);
        config.lease = lease;
        config.warm.max_idle = self.warm;
        config.warm.idle_timeout = Duration::from_secs(self.warm_idle);
        config.warm.max_idle_memory = self.warm_memory.saturating_mul(1 << 20);
        config.release.timeout = Duration::from_secs(self.release_timeout.max(1));
        config.release.limits.timeout = config.release.timeout;
        if let Some(mib) = self.release_memory {
            config.release.limits.memory_bytes = mib.saturating_mul(1 << 20);
        }
        config.release.max_context_bytes = self.release_context.saturating_mul(1 << 30);
        config.release.run_disk = self.release_disk.max(1).saturating_mul(1 << 20);
        if let Some(db) = &self.advisory_db {
            let mut gate = service::worker::ScanConfig::new(db);
            if let Some(p) = &self.scan_policy {
                gate.policy = scan_gate::Policy::load(p)?;
            }
            config.scan = Some(gate);
        }
        if let Some(path) = &self.require_signature {
            let pem = std::fs::read(path)
                .with_context(|| format!("--require-signature {}", path.display()))?;
            config.require_signature = Some(
                image_sign::PublicKey::from_pem(&pem)
                    .with_context(|| format!("--require-signature {}", path.display()))?,
            );
        }
        Ok(config)
    }

    /// Starts a worker with `config` (see [`WorkerArgs::config`]) whose
    /// sandbox launcher is this binary.
    pub async fn worker(
        jobs: jobs::Jobs,
        objects: Objects,
        metrics: Arc<Metrics>,
        registries: registry_client::ClientBuilder,
        launcher_arg: &str,
        config: WorkerConfig,
    ) -> Result<Worker> {
        let exe = std::env::current_exe().context("find this binary")?;
        let sandbox = sandbox_run::SandboxConfig::new(
            sandbox_run::Launcher::new(exe).with_args([launcher_arg]),
        );
        Worker::new(jobs, objects, metrics, registries, sandbox, config)
            .await
            .context("start the worker")
    }
}

/// The first argument that makes a binary its own sandbox launcher.
pub const LAUNCHER_ARG: &str = "__sandbox-launch";

/// Becomes the sandbox launcher (and never returns) when started as one.
/// It forks the container, so it must run before any thread exists: first
/// thing in `main`.
pub fn launch_if_asked() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == LAUNCHER_ARG)
    {
        sandbox_run::launcher_main();
    }
}

/// A server binary's `main` after its flags are parsed: logs to stderr
/// (`RUST_LOG`, default `info`), runs `work` on a multi-threaded runtime,
/// and turns its error into one line and a failing exit status.
pub fn main(
    name: &str,
    work: impl std::future::Future<Output = Result<()>>,
) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes at SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Serves `api` on `listen` until `shutdown`, then lets requests in
/// flight finish.
pub async fn serve(
    api: &Api,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    axum::serve(listener, api.router())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serve the API")
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// An owner name as image names take it: lowercase letters and digits
/// joined by single `.`, `_` or `-`.
pub fn check_owner(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.split(['.', '_', '-']).all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !ok {
        bail!(
            "`{name}` is not a valid key name: lowercase letters and digits, joined by single '.', '_' or '-'"
        );
    }
    Ok(())
}

/// How registries are reached.
#[derive(Args, Clone, Debug)]
pub struct RegistryArgs {
    /// Use plain HTTP: for every registry, or for one host (repeatable).
    /// Loopback hosts always use plain HTTP.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "*", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Docker config.json to read credentials from.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Registry timeout for connecting and for any stalled read, seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub registry_timeout: u64,
}

impl RegistryArgs {
    /// The client builder these flags describe.
    pub fn builder(&self) -> Result<registry_client::ClientBuilder> {
        let credentials =
            registry_client::CredentialStore::from_docker_config(self.authfile.as_deref())?;
        let timeout = Duration::from_secs(self.registry_timeout);
        let mut builder = registry_client::Client::builder()
            .credentials(credentials)
            .connect_timeout(timeout)
            .read_timeout(timeout);
        for host in &self.plain_http {
            builder = if host == "*" {
                builder.plain_http_all(true)
            } else {
                builder.plain_http_host(host)
            };
        }
        Ok(builder)
    }
}
