//! `hoist db`: the OSV advisory database on local disk.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use advisory_db::{Database, Limits, Meta};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::Global;

/// `hoist db ...`.
#[derive(Args)]
pub(crate) struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Import an OSV database from local disk: an osv-scanner directory
    /// (`<ecosystem>/all.zip`), one zip of OSV JSON records, or a directory
    /// of records. Replaces the previous import atomically; on any error
    /// the previous one stays.
    Import {
        /// The zip, JSON file or directory to import.
        path: PathBuf,
        #[command(flatten)]
        db: DbDir,
    },
    /// Show what the database holds: source, import time, counts per
    /// ecosystem.
    Status {
        #[command(flatten)]
        db: DbDir,
    },
}

#[derive(Args)]
struct DbDir {
    /// The database directory (default $XDG_CACHE_HOME/hoist/osv or
    /// ~/.cache/hoist/osv).
    #[arg(long = "db", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DbDir {
    fn resolve(&self) -> Result<PathBuf> {
        resolve_dir(self.dir.as_deref())
    }
}

/// `--db DIR`, else the default $XDG_CACHE_HOME/hoist/osv (or
/// ~/.cache/hoist/osv); `hoist scan` and `hoist build --scan` read the
/// same one.
pub(crate) fn resolve_dir(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(d) => Ok(d.to_owned()),
        None => oci_build::default_cache_dir()
            .map(|d| d.join("osv"))
            .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --db"),
    }
}

pub(crate) fn db(g: &Global, args: DbArgs) -> Result<()> {
    match args.command {
        DbCommand::Import { path, db } => {
            let dir = db.resolve()?;
            let meta = advisory_db::import(&path, &dir, &Limits::default())
                .with_context(|| format!("db import {}", path.display()))?;
            report(g, &dir, &meta)
        }
        DbCommand::Status { db } => {
            let dir = db.resolve()?;
            let database = Database::open(&dir).context("db status")?;
            report(g, &dir, database.meta())
        }
    }
}

fn report(g: &Global, dir: &Path, meta: &Meta) -> Result<()> {
    if g.quiet {
        return Ok(());
    }
    if g.json {
        let mut value = serde_json::to_value(meta)?;
        value["db"] = dir.display().to_string().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("database  {}", dir.display());
    println!("source    {}", meta.source);
    println!("imported  {}", utc(meta.imported_at));
    let width = meta
        .ecosystems
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("ECOSYSTEM".len());
    println!(
        "{:<width$}  {:>10}  {:>8}",
        "ECOSYSTEM", "ADVISORIES", "PACKAGES"
    );
    for (ecosystem, counts) in &meta.ecosystems {
        println!(
            "{ecosystem:<width$}  {:>10}  {:>8}",
            counts.advisories, counts.packages
        );
    }
    let total: u64 = meta.ecosystems.values().map(|c| c.advisories).sum();
    println!(
        "{total} advisories; skipped {} withdrawn, {} duplicate ids",
        meta.withdrawn, meta.duplicates
    );
    Ok(())
}

/// Seconds since the epoch as an RFC 3339 UTC time, with the age.
fn utc(secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let age = match now.saturating_sub(secs) {
        a if a < 120 => format!("{a} s ago"),
        a if a < 7_200 => format!("{} min ago", a / 60),
        a if a < 172_800 => format!("{} h ago", a / 3600),
        a => format!("{} days ago", a / 86_400),
    };
    format!("{} ({age})", oci_model::rfc3339(secs))
}
