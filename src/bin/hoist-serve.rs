//! `hoist serve` (which runs this binary) and `hoist-serve`: the API and a
//! worker in one process on the embedded defaults — SQLite, the database's
//! queue, a local object directory, images in an OCI layout — all under
//! one data directory. A binary of its own so that `hoist` itself stays
//! lean: the HTTP server, the records and the object store live here.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../platform.rs"]
#[allow(
    dead_code,
    reason = "shared by the platform binaries; each uses its part"
)]
mod platform;
#[path = "../schedule.rs"]
mod schedule;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use platform::{ApiArgs, RegistryArgs, StoreArgs, WorkerArgs};

/// `hoist serve [--listen ADDR] [--data-dir DIR] [--base REF] [--registry HOST/NAMESPACE | oci:DIR]`.
#[derive(Parser)]
#[command(name = "hoist serve", version, max_term_width = 100)]
struct ServeArgs {
    /// Where everything is kept (default ~/.local/share/hoist).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    registries: RegistryArgs,
    #[command(flatten)]
    schedule: schedule::ScheduleArgs,
}

fn main() -> ExitCode {
    platform::launch_if_asked();
    platform::main("hoist serve", serve(ServeArgs::parse()))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let builder = args.registries.builder()?;
    let data = match args.data_dir {
        Some(d) => d,
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".local/share/hoist"))
            .context("no data directory: set HOME or pass --data-dir")?,
    };
    std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
    let data = std::path::absolute(&data)?;
    let (jobs, objects) = args.store.open(Some(&data)).await?;
    let key = first_key(&jobs, &data).await?;

    let metrics = Arc::new(service::Metrics::default());
    let stop = CancellationToken::new();
    args.schedule.spawn(
        args.worker.registry.as_ref(),
        &jobs,
        args.registries.builder()?.build()?,
        &metrics,
        &stop,
    )?;
    let worker = platform::WorkerArgs::worker(
        jobs.clone(),
        objects.clone(),
        metrics.clone(),
        builder,
        platform::LAUNCHER_ARG,
        args.worker.config(Some(&data), args.store.lease())?,
    )
    .await?;
    let extra: Arc<dyn Fn() -> String + Send + Sync> = {
        let worker = worker.clone();
        Arc::new(move || worker.prometheus())
    };
    let api = args.api.api(jobs, objects, metrics, Some(extra)).await?;

    let listener = tokio::net::TcpListener::bind(args.api.listen)
        .await
        .with_context(|| format!("listen on {}", args.api.listen))?;
    println!(
        "hoist serve: http://{} (data in {})",
        listener.local_addr()?,
        data.display()
    );
    if let Some(key) = key {
        println!(
            "API key (also in {}): {key}",
            data.join("api-key").display()
        );
    }
    std::io::stdout().flush()?;
    let working = {
        let stop = stop.clone();
        tokio::spawn(async move { worker.run(stop.cancelled_owned()).await })
    };
    let serving = {
        let stop = stop.clone();
        let router = api.router();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    platform::shutdown_signal().await;
    eprintln!("hoist serve: stopping (finishing running work)");
    stop.cancel();
    serving.await?.context("serve the API")?;
    working.await?.context("run the worker")?;
    Ok(())
}

/// On first start, a key named `admin`, written to `DATA/api-key` (mode
/// 0600) and returned to be printed once; `None` later.
async fn first_key(jobs: &jobs::Jobs, data: &std::path::Path) -> Result<Option<String>> {
    let path = data.join("api-key");
    if path.exists() {
        return Ok(None);
    }
    let (_, secret) = jobs.create_key("admin", "admin").await?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("write {}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(Some(secret))
}
