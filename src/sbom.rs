//! `hoist sbom`: the packages of an image, read from its layers without
//! running it, as SPDX 2.3 or CycloneDX 1.5 JSON or a table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use image_scan::{Format, Limits};
use oci_model::Endpoint;
use registry_client::ClientBuilder;

use crate::Global;
use crate::run::{self, PullArgs};

/// `hoist sbom IMAGE [--format spdx|cyclonedx|table] [--output FILE]`.
#[derive(Args)]
pub(crate) struct SbomArgs {
    /// The image: a reference on the primary registry, or oci:DIR[:TAG].
    image: Endpoint,
    /// What to write: an SPDX 2.3 or CycloneDX 1.5 JSON document, or a
    /// table of the packages (type, name, version, layer, path).
    #[arg(long, value_enum, default_value_t = SbomFormat::Spdx)]
    format: SbomFormat,
    /// Print the table of packages (the same as --format table).
    #[arg(long, conflicts_with = "format")]
    list: bool,
    /// Write to FILE (replaced whole, or left alone on failure) instead of
    /// stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also push the SBOM to the registry as an artifact attached to the
    /// image (artifactType application/spdx+json or
    /// application/vnd.cyclonedx+json).
    #[arg(long)]
    attach: bool,
    #[command(flatten)]
    pull: PullArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SbomFormat {
    Spdx,
    Cyclonedx,
    Table,
}

pub(crate) async fn sbom(g: &Global, builder: ClientBuilder, args: SbomArgs) -> Result<ExitCode> {
    // Bad settings fail before any work.
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH `{v}` is not a number of seconds"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    if let Some(path) = &args.output
        && path.is_dir()
    {
        bail!("--output {}: is a directory", path.display());
    }
    let format = if args.list {
        SbomFormat::Table
    } else {
        args.format
    };
    let attach_to = match (&args.image, args.attach, format) {
        (_, false, _) => None,
        (_, true, SbomFormat::Table) => bail!("--attach needs --format spdx or cyclonedx"),
        (Endpoint::Registry(r), true, _) => Some((r.clone(), builder.clone().build()?)),
        (Endpoint::Layout { .. }, true, _) => {
            bail!("--attach needs an image in a registry, not a layout")
        }
    };
    let image = run::pull(g, builder, &args.image, &args.pull).await?;
    let inventory = image_scan::scan(&image, &Limits::default())
        .await
        .with_context(|| format!("sbom {}", args.image))?;
    drop(image);
    if !g.quiet {
        for note in &inventory.notes {
            eprintln!("hoist: note: {note}");
        }
    }
    let bytes = match (format, g.json) {
        (SbomFormat::Table, false) => image_scan::table(&inventory).into_bytes(),
        (SbomFormat::Table, true) => {
            let mut b = serde_json::to_vec_pretty(&inventory)?;
            b.push(b'\n');
            b
        }
        (SbomFormat::Spdx, _) => image_scan::sbom(&inventory, Format::Spdx, created)?,
        (SbomFormat::Cyclonedx, _) => image_scan::sbom(&inventory, Format::CycloneDx, created)?,
    };
    if let Some((reference, client)) = attach_to {
        let artifact_type = match format {
            SbomFormat::Cyclonedx => "application/vnd.cyclonedx+json",
            _ => "application/spdx+json",
        };
        // With --attach, stdout names the artifact; the SBOM goes to
        // --output only.
        if let Some(path) = &args.output {
            oci_model::write_atomic(path, &bytes)
                .with_context(|| format!("write {}", path.display()))?;
        }
        let attachment = oci_push::Attachment::new(artifact_type, bytes);
        crate::referrers::push(g, &client, &reference, &attachment).await?;
        return Ok(ExitCode::SUCCESS);
    }
    match &args.output {
        Some(path) => {
            oci_model::write_atomic(path, &bytes)
                .with_context(|| format!("write {}", path.display()))?;
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .context("write to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
