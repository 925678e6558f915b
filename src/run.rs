//! `hoist run`, `hoist invoke` and `hoist cache`: pull through the layer
//! cache with failover, then run in a libcontainer sandbox.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use function_run::Reply;
use image_pull::{PullConfig, Puller};
use layer_cache::{Cache, CacheConfig, CachedImage};
use oci_model::{Endpoint, Platform};
use registry_client::ClientBuilder;
use sandbox_run::{Launcher, Network, Outcome, Output, RootFs, RunSpec, Sandbox, SandboxConfig};

use crate::Global;

/// The hidden first argument that turns `hoist` into the sandbox launcher.
pub(crate) const LAUNCHER_ARG: &str = "__sandbox-launch";

/// Where images come from and where they are kept: `hoist run`'s and
/// `hoist sbom`'s image-source flags.
#[derive(Args)]
pub(crate) struct PullArgs {
    /// A registry to fall back to, in order, with the image's repository
    /// path (repeatable).
    #[arg(long = "mirror", value_name = "HOST")]
    mirrors: Vec<String>,
    /// Longest one registry may take to serve a whole blob before the next
    /// one is asked (resuming where it stopped).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    blob_timeout: Duration,
    /// Layer cache directory (default $XDG_CACHE_HOME/hoist/layer-cache or
    /// ~/.cache/hoist/layer-cache).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Platform to pick from an index (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
}

/// Where images come from, where they are kept, and the sandbox's limits.
#[derive(Args)]
pub(crate) struct SandboxArgs {
    #[command(flatten)]
    pull: PullArgs,
    /// Memory limit (bytes, or with k/m/g).
    #[arg(long, default_value = "2g", value_parser = parse_bytes, value_name = "SIZE")]
    memory: u64,
    /// CPU limit.
    #[arg(long, default_value_t = 2.0, value_name = "N")]
    cpus: f64,
    /// Most processes.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pids: u64,
    /// Size of the tmpfs on /tmp.
    #[arg(long, default_value = "512m", value_parser = parse_bytes, value_name = "SIZE")]
    tmp_size: u64,
    /// Wall-clock limit (e.g. 300s, 5m, 1500ms).
    #[arg(long, default_value = "300s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Network: `none` (a namespace with loopback only) or `host`.
    #[arg(long, value_enum, default_value_t = NetworkArg::None)]
    network: NetworkArg,
    /// Extra environment variables (KEY=VALUE, repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum NetworkArg {
    None,
    Host,
}

/// `hoist run IMAGE [flags] -- CMD [ARGS]`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// The image: a reference on the primary registry, or oci:DIR[:TAG].
    image: Endpoint,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Run the image only if a cosign signature by this public key
    /// verifies (as `hoist verify`); it then runs the digest verified.
    #[arg(long, value_name = "KEY.pub")]
    require_signature: Option<PathBuf>,
    /// The command and its arguments (default: the image's).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `hoist invoke IMAGE --inputs FILE`.
#[derive(Args)]
pub(crate) struct InvokeArgs {
    /// A function image built by `hoist build`: a reference or oci:DIR[:TAG].
    image: Endpoint,
    /// The handler's inputs: a JSON object.
    #[arg(long, value_name = "FILE")]
    inputs: PathBuf,
    /// Size of the function's private /io (a tmpfs counted in --memory).
    #[arg(long, default_value = "64m", value_parser = parse_bytes, value_name = "SIZE")]
    io_size: u64,
    /// Largest output.json read back.
    #[arg(long, default_value = "16m", value_parser = parse_bytes, value_name = "SIZE")]
    max_output: u64,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// `hoist cache ls|prune|verify`.
#[derive(Args)]
pub(crate) struct CacheArgs {
    #[command(subcommand)]
    action: CacheAction,
    /// Layer cache directory (as for `hoist run`).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CacheAction {
    /// List cached images.
    Ls,
    /// Evict unpinned entries, least recently used first.
    Prune {
        /// Keep up to this many bytes (default: remove everything unpinned).
        #[arg(long, default_value = "0", value_parser = parse_bytes, value_name = "SIZE")]
        keep: u64,
    },
    /// Re-hash every entry; remove damaged ones so they are fetched again.
    Verify,
}

pub(crate) async fn run(g: &Global, builder: ClientBuilder, args: RunArgs) -> Result<ExitCode> {
    let image = match &args.require_signature {
        Some(key) => crate::sign::verified_image(&builder, &args.image, key).await?,
        None => args.image.clone(),
    };
    let image = pull(g, builder, &image, &args.sandbox.pull).await?;
    let command = (!args.command.is_empty()).then_some(args.command);
    let mut spec = spec(&image, &args.sandbox, command);
    spec.output = Output::Inherit;
    let result = sandboxed(spec).await?;
    let code = result.outcome.exit_code();
    match &result.outcome {
        Outcome::Exited(_) => {}
        Outcome::Signaled(s) => eprintln!("hoist: the command was killed by signal {s}"),
        Outcome::TimedOut => eprintln!(
            "hoist: timed out after {} and killed",
            humantime(args.sandbox.timeout)
        ),
        Outcome::OomKilled => eprintln!(
            "hoist: out of memory: killed at the {} limit",
            bytes(args.sandbox.memory)
        ),
        Outcome::FailedToStart(why) => eprintln!("hoist: the command did not start: {why}"),
    }
    Ok(exit_code(code))
}

pub(crate) async fn invoke(
    g: &Global,
    builder: ClientBuilder,
    args: InvokeArgs,
) -> Result<ExitCode> {
    let text =
        std::fs::read(&args.inputs).with_context(|| format!("read {}", args.inputs.display()))?;
    let inputs: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", args.inputs.display()))?;
    if !inputs.is_object() {
        bail!(
            "{}: the inputs must be a JSON object",
            args.inputs.display()
        );
    }
    let image = pull(g, builder, &args.image, &args.sandbox.pull).await?;
    let rootfs = RootFs::Overlay {
        lower: image.lower_dirs(),
    };
    let mut options = function_run::Options::default();
    options.limits = limits(&args.sandbox);
    options.network = network(&args.sandbox);
    options.env = args.sandbox.env.clone();
    options.io_bytes = args.io_size;
    options.max_output_bytes = args.max_output;
    let config = image.config.clone();
    let sandbox = sandbox()?;
    let done = tokio::task::spawn_blocking(move || {
        function_run::invoke(&sandbox, rootfs, &config, &inputs, &options)
    })
    .await
    .map_err(|e| anyhow::anyhow!("the invocation failed: {e}"))??;
    drop(image);
    let stderr = String::from_utf8_lossy(&done.stderr);
    if !stderr.is_empty() && (g.verbose || !done.reply.is_output()) {
        eprint!("{stderr}");
    }
    let printed = match &done.reply {
        Reply::Output(output) => serde_json::Value::Object(output.clone()),
        failed => {
            let json = failed.to_json();
            if let Reply::Failed(why) = failed {
                eprintln!("hoist: the function failed: {why}");
            }
            serde_json::json!({ "error": json["error"] })
        }
    };
    println!("{}", serde_json::to_string_pretty(&printed)?);
    Ok(if done.reply.is_output() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn cache(g: &Global, args: CacheArgs) -> Result<ExitCode> {
    let cache = Cache::open(CacheConfig::new(cache_dir(args.cache_dir)?))
        .await
        .context("open the layer cache")?;
    match args.action {
        CacheAction::Ls => {
            let entries = cache.list().await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in entries {
                    println!(
                        "{}  {:>10}  {}{}",
                        e.digest,
                        bytes(e.size),
                        e.references.join(", "),
                        if e.complete { "" } else { "  (incomplete)" }
                    );
                }
            }
        }
        CacheAction::Prune { keep } => {
            let report = cache.prune(keep).await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if !g.quiet {
                println!(
                    "removed {} entries, freed {}, {} left",
                    report.removed,
                    bytes(report.freed_bytes),
                    bytes(report.remaining_bytes)
                );
            }
        }
        CacheAction::Verify => {
            let report = cache.verify().await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for c in &report.corrupt {
                    println!("removed damaged {:?} {}: {}", c.kind, c.digest, c.reason);
                }
                if !g.quiet {
                    println!(
                        "checked {} entries, {} damaged",
                        report.checked,
                        report.corrupt.len()
                    );
                }
            }
            if !report.corrupt.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pulls `image` into the cache through the primary and the mirrors.
///
/// The cache is closed again before the container starts, so that other
/// `hoist` processes sharing the directory (which wait for it) are not
/// held up for a whole run; the image's pins keep its layers.
pub(crate) async fn pull(
    g: &Global,
    builder: ClientBuilder,
    image: &Endpoint,
    args: &PullArgs,
) -> Result<CachedImage> {
    let source = Source {
        mirrors: args.mirrors.clone(),
        blob_timeout: args.blob_timeout,
        cache_dir: args.cache_dir.clone(),
        platform: args.platform.clone(),
    };
    pull_from(g, builder, image, source).await
}

/// Where an image is pulled from and cached: `SandboxArgs`' part of it.
pub(crate) struct Source {
    pub(crate) mirrors: Vec<String>,
    pub(crate) blob_timeout: Duration,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) platform: Option<Platform>,
}

/// Pulls `image` into the cache of `source` through the primary and the
/// mirrors (see [`pull`]).
pub(crate) async fn pull_from(
    g: &Global,
    builder: ClientBuilder,
    image: &Endpoint,
    source: Source,
) -> Result<CachedImage> {
    let mut config = CacheConfig::new(cache_dir(source.cache_dir)?);
    if let Some(p) = source.platform {
        config.platform = p;
    }
    let cache = Cache::open(config).await.context("open the layer cache")?;
    let timeout = Duration::from_secs(g.registry_timeout);
    let mut pull = PullConfig::default();
    pull.mirrors = source.mirrors;
    pull.failover.connect_timeout = timeout;
    pull.failover.first_byte_timeout = timeout;
    pull.failover.blob_timeout = source.blob_timeout;
    Ok(Puller::new(cache, builder, pull).pull(image).await?)
}

fn cache_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    given
        .or_else(|| oci_build::default_cache_dir().map(|d| d.join("layer-cache")))
        .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache-dir")
}

/// The run spec for `image`: its config, the cache's layers as the root,
/// the limits asked for.
fn spec(image: &CachedImage, args: &SandboxArgs, command: Option<Vec<String>>) -> RunSpec {
    let rootfs = RootFs::Overlay {
        lower: image.lower_dirs(),
    };
    let mut spec = RunSpec::from_image_config(rootfs, &image.config, command);
    spec.limits = limits(args);
    spec.network = network(args);
    spec.env.extend(args.env.iter().cloned());
    spec
}

fn limits(args: &SandboxArgs) -> sandbox_run::Limits {
    let mut limits = sandbox_run::Limits::default();
    limits.memory_bytes = args.memory;
    limits.cpus = args.cpus;
    limits.pids = args.pids;
    limits.tmp_bytes = args.tmp_size;
    limits.timeout = args.timeout;
    limits
}

fn network(args: &SandboxArgs) -> Network {
    match args.network {
        NetworkArg::None => Network::None,
        NetworkArg::Host => Network::Host,
    }
}

/// The sandbox `hoist run` and `hoist build` use, whose launcher is this
/// very binary, after sweeping what crashed runs left behind.
pub(crate) fn sandbox() -> Result<Sandbox> {
    let exe = std::env::current_exe().context("find the hoist binary")?;
    let sandbox = Sandbox::new(SandboxConfig::new(
        Launcher::new(exe).with_args([LAUNCHER_ARG]),
    ))
    .context("set up the sandbox")?;
    sandbox.sweep().context("sweep leftovers of earlier runs")?;
    Ok(sandbox)
}

/// Runs `spec` in the sandbox on the blocking pool.
async fn sandboxed(spec: RunSpec) -> Result<sandbox_run::RunResult> {
    let sandbox = sandbox()?;
    tokio::task::spawn_blocking(move || Ok(sandbox.run(&spec)?))
        .await
        .map_err(|e| anyhow::anyhow!("the sandbox thread failed: {e}"))?
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `512m`, `2g`, `1048576`, `64k` → bytes (powers of 1024).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 512m, 2g)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// `300s`, `5m`, `1500ms`, `2h`, `30` (seconds) → a duration.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration (e.g. 300s, 5m, 1500ms)");
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err("the timeout must be more than zero".into());
    }
    Ok(d)
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("64kb"), Ok(64 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999t").is_err());
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(humantime(Duration::from_secs(1)), "1s");
        assert_eq!(bytes(32 << 20), "32.0 MiB");
    }
}
