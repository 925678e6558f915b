//! `hoist smoke` and the smoke-test gate of `hoist build --smoke-port`:
//! start an image's own command in the sandbox, poll its health endpoint
//! from inside the container's network namespace, print the container's
//! logs on failure; the container is always removed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use http_probe::{Probe, Target};
use oci_model::{Endpoint, Platform};
use registry_client::ClientBuilder;
use sandbox_run::{Output, RootFs, RunSpec};
use smoke_test::{Check, Report, Verdict};
use tokio::signal::unix::{SignalKind, signal};

use crate::Global;
use crate::run::{self, Source, parse_bytes, parse_duration};

/// `hoist smoke IMAGE --port N [--path P] [--timeout D]`.
#[derive(Args)]
pub(crate) struct SmokeArgs {
    /// The image: a reference on the primary registry, or oci:DIR[:TAG].
    image: Endpoint,
    /// The port the server listens on, inside the container.
    #[arg(long, value_name = "PORT")]
    port: u16,
    /// The health endpoint's path (and query).
    #[arg(long, default_value = "/health", value_name = "PATH")]
    path: String,
    /// How long the server has to answer 200 (e.g. 20s, 1500ms).
    #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Extra environment variables (KEY=VALUE, repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Bytes of the container's stdout and of its stderr kept for the logs.
    #[arg(long, default_value = "64k", value_parser = parse_bytes, value_name = "SIZE")]
    max_log: u64,
    /// A registry to fall back to, in order, with the image's repository
    /// path (repeatable).
    #[arg(long = "mirror", value_name = "HOST")]
    mirrors: Vec<String>,
    /// Longest one registry may take to serve a whole blob.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    blob_timeout: Duration,
    /// Layer cache directory (as for `hoist run`).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Platform to pick from an index (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
}

/// `hoist build`'s smoke-test gate: with `--smoke-port`, the built image
/// must answer 200 before it is pushed.
#[derive(Args)]
pub(crate) struct BuildSmokeArgs {
    /// Smoke-test the built image before pushing it: run its command and
    /// wait for 200 on this port; a failure pushes nothing.
    #[arg(long, value_name = "PORT")]
    smoke_port: Option<u16>,
    /// The health endpoint's path for --smoke-port.
    #[arg(long, default_value = "/health", value_name = "PATH")]
    smoke_path: String,
    /// How long the server has to answer 200, for --smoke-port.
    #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    smoke_timeout: Duration,
}

/// The logs kept by the build gate, per stream.
const BUILD_LOG_BYTES: usize = 64 << 10;

pub(crate) async fn smoke(g: &Global, builder: ClientBuilder, args: SmokeArgs) -> Result<ExitCode> {
    let check = check(args.port, &args.path, args.timeout)?;
    let max_log = usize::try_from(args.max_log).context("--max-log is too large")?;
    let source = Source {
        mirrors: args.mirrors,
        blob_timeout: args.blob_timeout,
        cache_dir: args.cache_dir,
        platform: args.platform,
    };
    let report = test_image(g, builder, &args.image, source, check, args.env, max_log).await?;
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json(&args.image, &report))?
        );
    } else if report.passed() {
        if !g.quiet {
            println!("{}: {}", args.image, report.reason());
        }
    } else {
        print_logs(&report);
    }
    Ok(match report.verdict {
        Verdict::Passed => ExitCode::SUCCESS,
        Verdict::Cancelled => {
            eprintln!("hoist: smoke test of {}: {}", args.image, report.reason());
            ExitCode::from(130)
        }
        _ => {
            eprintln!(
                "hoist: smoke test of {} failed: {}",
                args.image,
                report.reason()
            );
            ExitCode::FAILURE
        }
    })
}

/// The build gate: smoke-tests `image` (the build store's layout) when
/// `--smoke-port` was given; fails, with the logs printed, unless it
/// passes. `cache_dir` is the build cache, whose `layer-cache` holds the
/// unpacked layers.
pub(crate) async fn gate(
    g: &Global,
    args: &BuildSmokeArgs,
    image: &Endpoint,
    cache_dir: Option<PathBuf>,
    platform: Option<Platform>,
) -> Result<()> {
    let Some(port) = args.smoke_port else {
        return Ok(());
    };
    let check = check(port, &args.smoke_path, args.smoke_timeout)?;
    let source = Source {
        mirrors: Vec::new(),
        blob_timeout: Duration::from_secs(30),
        cache_dir: cache_dir.map(|c| c.join("layer-cache")),
        platform,
    };
    let report = test_image(
        g,
        ClientBuilder::default(),
        image,
        source,
        check,
        Vec::new(),
        BUILD_LOG_BYTES,
    )
    .await?;
    if report.passed() {
        if !g.quiet && !g.json {
            eprintln!("smoke test: {}", report.reason());
        }
        return Ok(());
    }
    print_logs(&report);
    bail!("smoke test failed, nothing pushed: {}", report.reason())
}

fn check(port: u16, path: &str, timeout: Duration) -> Result<Check> {
    let mut check = Check::new(Target::new(port, path)?);
    check.timeout = timeout;
    Ok(check)
}

/// Pulls `image` through the layer cache and smoke-tests it on the
/// blocking pool. SIGINT and SIGTERM cancel the test; the container is
/// removed before this returns either way.
async fn test_image(
    g: &Global,
    builder: ClientBuilder,
    image: &Endpoint,
    source: Source,
    check: Check,
    env: Vec<String>,
    max_log: usize,
) -> Result<Report> {
    // Handlers first: from here on a signal cancels instead of killing
    // this process with a container still running.
    let mut interrupt = signal(SignalKind::interrupt()).context("handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handle SIGTERM")?;
    let pulled = run::pull_from(g, builder, image, source).await?;
    let rootfs = RootFs::Overlay {
        lower: pulled.lower_dirs(),
    };
    let mut spec = RunSpec::from_image_config(rootfs, &pulled.config, None);
    if spec.args.is_empty() {
        bail!("{image} has no entrypoint or command to start");
    }
    spec.env.extend(env);
    spec.output = Output::Capture { max_bytes: max_log };
    let sandbox = run::sandbox()?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let mut task =
        tokio::task::spawn_blocking(move || smoke_test::smoke(&sandbox, &spec, &check, &flag));
    let done = tokio::select! {
        done = &mut task => done,
        _ = interrupt.recv() => { cancel.store(true, Ordering::Relaxed); task.await }
        _ = terminate.recv() => { cancel.store(true, Ordering::Relaxed); task.await }
    };
    drop(pulled);
    Ok(done.map_err(|e| anyhow::anyhow!("the smoke test thread failed: {e}"))??)
}

/// The container's output, each stream under a header, on stderr.
fn print_logs(report: &Report) {
    for (name, bytes, truncated) in [
        ("stdout", &report.run.stdout, report.run.stdout_truncated),
        ("stderr", &report.run.stderr, report.run.stderr_truncated),
    ] {
        let more = if truncated { ", truncated" } else { "" };
        eprintln!("--- container {name} ({} bytes{more}) ---", bytes.len());
        let text = String::from_utf8_lossy(bytes);
        eprint!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            eprintln!();
        }
    }
    eprintln!("--- end of container logs ---");
}

fn json(image: &Endpoint, report: &Report) -> serde_json::Value {
    let verdict = match report.verdict {
        Verdict::Passed => "passed",
        Verdict::TimedOut => "timed_out",
        Verdict::Ended => "ended",
        Verdict::Cancelled => "cancelled",
    };
    let status = match &report.last {
        Some(Probe::Answered(line)) => Some(line.code),
        _ => None,
    };
    let run = &report.run;
    serde_json::json!({
        "image": image.to_string(),
        "url": report.target.to_string(),
        "passed": report.passed(),
        "verdict": verdict,
        "reason": report.reason(),
        "attempts": report.attempts,
        "elapsed_ms": report.elapsed.as_millis() as u64,
        "last_probe": report.last.as_ref().map(ToString::to_string),
        "last_status": status,
        "container": {
            "outcome": format!("{:?}", run.outcome),
            "exit_code": run.outcome.exit_code(),
            "stdout": String::from_utf8_lossy(&run.stdout),
            "stderr": String::from_utf8_lossy(&run.stderr),
            "stdout_truncated": run.stdout_truncated,
            "stderr_truncated": run.stderr_truncated,
        },
    })
}
