//! `hoist gc`: delete what a retention policy no longer keeps.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Args;
use registry_client::Client;
use registry_ops::Policy;
use registry_ops::gc::{self, GcReport, Records};

use crate::Global;
use crate::mirror::{read_bounded, redact};

#[derive(Args)]
pub(crate) struct GcArgs {
    /// The registry (HOST[:PORT]) to clean; it must serve its catalog and
    /// allow deletes.
    #[arg(long, value_name = "HOST")]
    registry: String,
    /// The retention policy (TOML; see the README for its fields and
    /// defaults).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The service's records (last uses, deleted functions): `sqlite://PATH`
    /// or `postgres://USER@HOST/DB`. Without it no image counts as used
    /// and no function as deleted.
    #[arg(long, env = "HOIST_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn gc(g: &Global, client: Client, args: GcArgs) -> Result<ExitCode> {
    let text = read_bounded(&args.policy, registry_ops::MAX_POLICY_BYTES as u64)?;
    let policy = Policy::from_toml(&text).with_context(|| format!("{}", args.policy.display()))?;
    let (usage, functions) = match &args.database {
        Some(database) => {
            let records = jobs::Jobs::open(jobs::JobsConfig::new(database, "database"))
                .await
                .with_context(|| format!("open the records at {}", redact(database)))?;
            (
                records
                    .last_used_images()
                    .await
                    .context("read the usage records")?,
                records
                    .function_names()
                    .await
                    .context("read the function records")?,
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let inventory = gc::inventory(&client, &args.registry, g.jobs)
        .await
        .with_context(|| format!("read {}", args.registry))?;
    let plan = gc::plan(
        &inventory,
        &Records::new(&usage, &functions),
        &policy,
        Utc::now(),
    );
    let report = if args.dry_run {
        GcReport {
            dry_run: true,
            plan,
            failed: Vec::new(),
        }
    } else {
        gc::apply(&client, &args.registry, plan).await?
    };
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !g.quiet {
        print!("{}", report.text());
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
