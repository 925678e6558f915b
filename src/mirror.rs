//! `hoist mirror`: the most used images (from the service's usage
//! records) or a list, from a primary registry to a secondary one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;
use registry_client::Client;
use registry_ops::Mirror;

use crate::Global;

#[derive(Args)]
pub(crate) struct MirrorArgs {
    /// The primary registry (HOST[:PORT]) images are copied from.
    #[arg(long, value_name = "HOST")]
    from: String,
    /// The secondary registry (HOST[:PORT]) images are copied to.
    #[arg(long, value_name = "HOST")]
    to: String,
    /// Mirror the N images used most (pulls and runs) in the usage records.
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "list",
        conflicts_with = "list"
    )]
    top: Option<u32>,
    /// The period --top counts uses over: 7d, 12h, 30m…
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = registry_ops::mirror::parse_age)]
    since: Duration,
    /// Mirror the images of this file: one reference per line, `#`
    /// comments; the registry part is replaced by --from's.
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// The service's records, where usage is (as the service binaries take
    /// it): `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "HOIST_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// Only say what would be copied.
    #[arg(long)]
    dry_run: bool,
}

/// The largest image list read.
const MAX_LIST_BYTES: u64 = 16 << 20;

pub(crate) async fn mirror(g: &Global, client: Client, args: MirrorArgs) -> Result<ExitCode> {
    let mirror = Mirror::new(client, &args.from, &args.to)?.jobs(g.jobs);
    let (images, bad) = match (&args.list, args.top) {
        (Some(file), _) => {
            let text = read_bounded(file, MAX_LIST_BYTES)?;
            let images = registry_ops::parse_list(&text)
                .with_context(|| format!("read {}", file.display()))?;
            (images, Vec::new())
        }
        (None, Some(top)) => {
            let Some(database) = &args.database else {
                bail!("--top reads the usage records: give --database (or HOIST_DATABASE)");
            };
            let config = jobs::JobsConfig::new(database, "database");
            let records = jobs::Jobs::open(config)
                .await
                .with_context(|| format!("open the records at {}", redact(database)))?;
            let since = SystemTime::now() - args.since;
            let used = records
                .most_used_images(since, top)
                .await
                .context("read the usage records")?;
            mirror.top(&used)
        }
        (None, None) => bail!("give --top N or --list FILE"),
    };
    let mut report = mirror.run(&images, args.dry_run).await;
    report.failed.extend(bad);
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

/// A file of at most `limit` bytes, as text.
pub(crate) fn read_bounded(path: &std::path::Path, limit: u64) -> Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("read {} (UTF-8 text)", path.display()))?;
    if text.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(text)
}

/// A database URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
