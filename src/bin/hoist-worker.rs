//! `hoist-worker`: takes build jobs and tasks from the platform's queue,
//! builds and pushes images, pulls them through its layer cache with
//! failover and runs functions in the sandbox. It re-executes itself as
//! the sandbox launcher (`__sandbox-launch`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../platform.rs"]
#[allow(
    dead_code,
    reason = "shared by the platform binaries; each uses its part"
)]
mod platform;
#[path = "../schedule.rs"]
mod schedule;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The first argument that turns this binary into the sandbox launcher.
/// A worker of the function platform.
#[derive(Parser)]
#[command(name = "hoist-worker", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    store: platform::StoreArgs,
    #[command(flatten)]
    worker: platform::WorkerArgs,
    #[command(flatten)]
    registries: platform::RegistryArgs,
    #[command(flatten)]
    schedule: schedule::ScheduleArgs,
    /// Where /metrics and /health are served.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    platform::launch_if_asked();
    platform::main("hoist-worker", run(Cli::parse()))
}

async fn run(cli: Cli) -> Result<()> {
    let (jobs, objects) = cli.store.open(None).await?;
    let metrics = Arc::new(service::Metrics::default());
    let stop = CancellationToken::new();
    cli.schedule.spawn(
        cli.worker.registry.as_ref(),
        &jobs,
        cli.registries.builder()?.build()?,
        &metrics,
        &stop,
    )?;
    let worker = platform::WorkerArgs::worker(
        jobs,
        objects,
        metrics.clone(),
        cli.registries.builder()?,
        platform::LAUNCHER_ARG,
        cli.worker.config(None, cli.store.lease())?,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listen on {}", cli.listen))?;
    let serving = {
        let stop = stop.clone();
        let router = service::worker::router(worker.clone(), metrics);
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    eprintln!("hoist-worker: working; /metrics on http://{}", cli.listen);
    let signal = {
        let stop = stop.clone();
        async move {
            platform::shutdown_signal().await;
            eprintln!("hoist-worker: draining");
            stop.cancel();
        }
    };
    tokio::spawn(signal);
    worker.run(stop.clone().cancelled_owned()).await?;
    stop.cancel();
    serving.await?.context("serve metrics")?;
    Ok(())
}
