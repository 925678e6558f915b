//! `hoist-api`: the HTTP API of the function platform, for deployments
//! with workers on other machines (`hoist-worker`), over PostgreSQL, Redis
//! and S3 or the embedded defaults. `hoist-api keys create NAME` prints a
//! new API key once.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../platform.rs"]
#[allow(
    dead_code,
    reason = "shared by the platform binaries; each uses its part"
)]
mod platform;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The function platform's HTTP API.
#[derive(Parser)]
#[command(name = "hoist-api", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    store: platform::StoreArgs,
    #[command(flatten)]
    api: platform::ApiArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: Keys,
    },
}

#[derive(Subcommand)]
enum Keys {
    /// Create a key for NAME (its owner) and print it once.
    Create {
        /// The key's name and owner: lowercase letters and digits.
        name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id.
        id: uuid::Uuid,
    },
}

fn main() -> ExitCode {
    platform::main("hoist-api", run(Cli::parse()))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Keys { action }) => keys(&cli.store.jobs(None).await?, action).await,
        None => {
            let (jobs, objects) = cli.store.open(None).await?;
            let metrics = Arc::new(service::Metrics::default());
            let api = cli.api.api(jobs, objects, metrics, None).await?;
            eprintln!("hoist-api: listening on http://{}", cli.api.listen);
            platform::serve(&api, cli.api.listen, platform::shutdown_signal()).await
        }
    }
}

async fn keys(jobs: &jobs::Jobs, action: Keys) -> Result<()> {
    match action {
        Keys::Create { name } => {
            platform::check_owner(&name)?;
            let (key, secret) = jobs.create_key(&name, &name).await?;
            eprintln!(
                "created key {} for {}; it is shown only now:",
                key.id, key.owner
            );
            println!("{secret}");
        }
        Keys::List => {
            for key in jobs.keys().await? {
                println!(
                    "{}  {:<20}  {}  {}{}",
                    key.id,
                    key.name,
                    key.prefix,
                    key.created_at.to_rfc3339(),
                    if key.revoked_at.is_some() {
                        "  (revoked)"
                    } else {
                        ""
                    }
                );
            }
        }
        Keys::Revoke { id } => {
            if !jobs.revoke_key(id).await? {
                anyhow::bail!("no key {id}");
            }
        }
    }
    Ok(())
}
