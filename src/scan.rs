//! `hoist scan`: an image's packages matched against the OSV database on
//! local disk (or Trivy's), judged by a policy; and the same gate for
//! `hoist build --scan`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use advisory_db::Database;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use image_scan::Limits;
use oci_model::{Endpoint, Image};
use registry_client::ClientBuilder;
use scan_gate::{Decision, Policy, Verdict, report, trivy};

use crate::Global;
use crate::run::{self, PullArgs};

/// `hoist scan IMAGE [--db DIR] [--policy FILE] [--format table|json|sarif]`.
#[derive(Args)]
pub(crate) struct ScanArgs {
    /// The image: a reference on the primary registry, or oci:DIR[:TAG].
    image: Endpoint,
    /// The advisory database (default $XDG_CACHE_HOME/hoist/osv or
    /// ~/.cache/hoist/osv; fill it with `hoist db import`).
    #[arg(long = "db", value_name = "DIR")]
    db: Option<PathBuf>,
    /// The policy: a TOML file of severities that reject and warn and
    /// advisories to ignore (default: CRITICAL rejects, HIGH warns).
    #[arg(long = "policy", value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The report: a table, a JSON document, or SARIF 2.1.0.
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    format: ScanFormat,
    /// Write the report to FILE (replaced whole, or left alone on
    /// failure) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Who matches: hoist's own matcher on the OSV database, or the
    /// `trivy` binary on PATH (`trivy image --format json`).
    #[arg(long, value_enum, default_value_t = Scanner::Hoist)]
    scanner: Scanner,
    /// Also push the report (`--format json` or `sarif`) to the registry
    /// as an artifact attached to the image; stdout then names the
    /// artifact and the report goes to `--output` only.
    #[arg(long)]
    attach: bool,
    #[command(flatten)]
    pull: PullArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScanFormat {
    Table,
    Json,
    Sarif,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scanner {
    Hoist,
    Trivy,
}

/// Exit status of a scan that could not decide (no database, no image).
const EXIT_ERROR: u8 = 2;

/// Runs `hoist scan`: 0 when the policy passes or warns, 1 when it
/// rejects, 2 on any error.
pub(crate) async fn scan(g: &Global, builder: ClientBuilder, args: ScanArgs) -> ExitCode {
    match scan_inner(g, builder, args).await {
        Ok(Decision::Reject) => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hoist: {}", crate::one_line(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn scan_inner(g: &Global, builder: ClientBuilder, args: ScanArgs) -> Result<Decision> {
    // Bad settings fail before any pull.
    if let Some(path) = &args.output
        && path.is_dir()
    {
        bail!("--output {}: is a directory", path.display());
    }
    let policy = load_policy(args.policy.as_deref())?;
    let format = if g.json && args.format == ScanFormat::Table {
        ScanFormat::Json
    } else {
        args.format
    };
    let attach_to = match (&args.image, args.attach, format) {
        (_, false, _) => None,
        (_, true, ScanFormat::Table) => bail!("--attach needs --format json or sarif"),
        (Endpoint::Registry(r), true, _) => Some((r.clone(), builder.clone().build()?)),
        (Endpoint::Layout { .. }, true, _) => {
            bail!("--attach needs an image in a registry, not a layout")
        }
    };
    let scan = match args.scanner {
        Scanner::Hoist => {
            let db = open_db(args.db.as_deref())?;
            let image = run::pull(g, builder, &args.image, &args.pull).await?;
            let found = findings(&image, &db)
                .await
                .with_context(|| format!("scan {}", args.image))?;
            drop(image);
            found
        }
        Scanner::Trivy => {
            let target = match &args.image {
                Endpoint::Registry(r) => trivy::Target::Registry(r.to_string()),
                Endpoint::Layout { dir, .. } => trivy::Target::Layout(dir.clone()),
            };
            tokio::task::spawn_blocking(move || trivy::run(&target))
                .await
                .context("the trivy task")?
                .with_context(|| format!("scan {}", args.image))?
        }
    };
    let verdict = policy.judge(scan, scan_gate::today_utc());
    let mut bytes = match format {
        ScanFormat::Table => report::table(&verdict).into_bytes(),
        ScanFormat::Json => serde_json::to_vec_pretty(&report::json(&verdict))?,
        ScanFormat::Sarif => {
            serde_json::to_vec_pretty(&report::sarif(&verdict, env!("CARGO_PKG_VERSION")))?
        }
    };
    if format != ScanFormat::Table {
        bytes.push(b'\n');
    }
    if let Some((reference, client)) = attach_to {
        if let Some(path) = &args.output {
            oci_model::write_atomic(path, &bytes)
                .with_context(|| format!("write {}", path.display()))?;
        }
        let artifact_type = match format {
            ScanFormat::Sarif => "application/sarif+json",
            _ => "application/vnd.hoist.scan.report.v1+json",
        };
        let attachment = oci_push::Attachment::new(artifact_type, bytes);
        crate::referrers::push(g, &client, &reference, &attachment).await?;
        if !g.quiet {
            eprintln!("{}", decision_line(&verdict));
        }
        return Ok(verdict.decision);
    }
    match &args.output {
        Some(path) => {
            oci_model::write_atomic(path, &bytes)
                .with_context(|| format!("write {}", path.display()))?;
            if !g.quiet {
                eprintln!("{}", decision_line(&verdict));
            }
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .context("write to stdout")?;
        }
    }
    Ok(verdict.decision)
}

/// The policy of `--policy FILE`, else the default.
pub(crate) fn load_policy(path: Option<&Path>) -> Result<Policy> {
    Ok(match path {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    })
}

/// The advisory database of `--db DIR` (or the default directory).
pub(crate) fn open_db(dir: Option<&Path>) -> Result<Database> {
    let dir = crate::db::resolve_dir(dir)?;
    Ok(Database::open(&dir)?)
}

/// The inventory of `image` matched against `db`. Matching reads many
/// small files: it runs on the blocking pool.
async fn findings<I: Image>(image: &I, db: &Database) -> Result<scan_gate::Scan> {
    let inventory = image_scan::scan(image, &Limits::default()).await?;
    Ok(tokio::task::block_in_place(|| {
        scan_gate::findings(&inventory, db)
    })?)
}

/// One line: the decision and the counts.
fn decision_line(verdict: &Verdict) -> String {
    let t = &verdict.tally;
    format!(
        "scan: {} ({} critical, {} high, {} medium, {} low, {} unknown, {} ignored)",
        verdict.decision, t.critical, t.high, t.medium, t.low, t.unknown, t.ignored
    )
}

/// The build gate (`hoist build --scan`): the database and policy, loaded
/// before the build so bad settings fail before any work.
pub(crate) struct BuildGate {
    db: Database,
    policy: Policy,
}

impl BuildGate {
    /// Opens `--db` and reads `--policy`.
    pub(crate) fn load(db: Option<&Path>, policy: Option<&Path>) -> Result<BuildGate> {
        Ok(BuildGate {
            db: open_db(db).context("build --scan")?,
            policy: load_policy(policy).context("build --scan")?,
        })
    }

    /// Scans the built image before it is pushed. A rejection prints the
    /// report to stderr and fails (nothing is pushed); warnings are printed
    /// and the build goes on.
    pub(crate) async fn check<I: Image>(&self, g: &Global, image: &I) -> Result<Verdict> {
        let found = findings(image, &self.db).await.context("build --scan")?;
        let verdict = self.policy.judge(found, scan_gate::today_utc());
        match verdict.decision {
            Decision::Reject => {
                eprint!("{}", report::table(&verdict));
                let t = &verdict.tally;
                bail!(
                    "vulnerability scan rejected the image, nothing pushed: {} critical, {} high",
                    t.critical,
                    t.high
                );
            }
            Decision::Warn if !g.quiet => {
                for w in verdict.summary().warnings {
                    eprintln!("hoist: warning: {w}");
                }
            }
            _ => {}
        }
        Ok(verdict)
    }
}
