//! `hoist base debian`: a base image from Debian packages.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use debian_base::{Built, Preset, Request};
use oci_model::{Platform, Reference};
use oci_push::{Copier, Endpoint};
use registry_client::Client;

use crate::{Global, run};

/// `hoist base ...`.
#[derive(Args)]
pub(crate) struct BaseArgs {
    #[command(subcommand)]
    command: BaseCommand,
}

#[derive(Subcommand)]
enum BaseCommand {
    /// Assemble an image from Debian packages (the apt lists' dependency
    /// closure, verified by SHA256, unpacked without maintainer scripts,
    /// standard library byte-compiled) and push it or write an OCI layout.
    Debian(DebianArgs),
}

#[derive(Args)]
struct DebianArgs {
    /// Packages to install, comma-separated: NAME or NAME=VERSION.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LIST",
        required_unless_present = "preset",
        conflicts_with = "preset"
    )]
    packages: Vec<String>,
    /// A package set: slim (Python 3.11, dash, base-files), numpy
    /// (+ python3-numpy) or scipy (+ python3-scipy).
    #[arg(long, value_name = "slim|numpy|scipy", value_parser = ["slim", "numpy", "scipy"])]
    preset: Option<String>,
    /// More packages on top of --packages or --preset.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    packages_extra: Vec<String>,
    /// Packages that satisfy dependencies without being installed
    /// (default: what only maintainer scripts use: awk, debconf, dpkg,
    /// gcc-12-base, install-info, perl-base;
    /// an empty value excludes nothing).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    exclude: Option<Vec<String>>,
    /// Push the image under this name (repeatable).
    #[arg(long, value_name = "REF", required_unless_present = "output")]
    tag: Vec<Reference>,
    /// Write the image to an OCI layout instead (oci:DIR[:TAG]).
    #[arg(long, value_name = "oci:DIR[:TAG]", conflicts_with = "tag")]
    output: Option<Endpoint>,
    /// The image's platform (default linux/amd64); apt needs lists for
    /// its architecture.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
    /// Cache of verified .deb files (default
    /// $XDG_CACHE_HOME/hoist/debian-base or ~/.cache/hoist/debian-base).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// apt's lists directory.
    #[arg(long, value_name = "DIR", default_value = debian_base::APT_LISTS)]
    lists_dir: PathBuf,
    /// Ship no bytecode (by default the image's Python compiles its
    /// modules in the sandbox, which needs root).
    #[arg(long)]
    no_bytecode: bool,
}

pub(crate) async fn base(g: &Global, client: Client, args: BaseArgs) -> Result<()> {
    let BaseCommand::Debian(args) = args.command;
    debian(g, client, args).await
}

async fn debian(g: &Global, client: Client, args: DebianArgs) -> Result<()> {
    let destinations: Vec<Endpoint> = match &args.output {
        Some(out @ Endpoint::Layout { .. }) => vec![out.clone()],
        Some(out) => {
            bail!("--output takes an OCI layout (oci:DIR[:TAG]), not {out}; to push, use --tag")
        }
        None => args.tag.iter().cloned().map(Endpoint::Registry).collect(),
    };
    let mut packages = match args.preset.as_deref() {
        Some(p) => p.parse::<Preset>()?.packages(),
        None => args.packages.clone(),
    };
    packages.extend(args.packages_extra.iter().cloned());
    packages.retain(|p| !p.is_empty());
    let cache_dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => oci_build::default_cache_dir()
            .map(|d| d.join("debian-base"))
            .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache-dir")?,
    };
    let mut request = Request::new(packages, &cache_dir);
    if let Some(e) = &args.exclude {
        request.excluded = e.iter().filter(|p| !p.is_empty()).cloned().collect();
    }
    if let Some(p) = &args.platform {
        request.platform = p.clone();
    }
    request.lists_dir = args.lists_dir.clone();
    request.tag = "base".into();
    // Base images are immutable: `hoist build` and `hoist copy` refuse to
    // replace them under their tags, `hoist gc` never deletes them.
    request
        .annotations
        .insert(registry_ops::IMMUTABLE_ANNOTATION.into(), "true".into());
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        request.epoch = epoch.parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH `{epoch}` is not a whole number of seconds")
        })?;
    }
    if let Some(preset) = &args.preset {
        request
            .labels
            .insert("dev.hoist.base.preset".into(), preset.clone());
    }
    if !args.no_bytecode {
        let sandbox = run::sandbox()
            .context("byte-compiling needs the sandbox (run as root, or pass --no-bytecode)")?;
        request.sandbox = Some(sandbox.config().clone());
    }
    let tmp = cache_dir.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let staging = tempfile::Builder::new()
        .prefix("layout-")
        .tempdir_in(&tmp)
        .with_context(|| format!("temporary directory in {}", tmp.display()))?;
    let dir = staging.path().to_owned();
    let built: Built = tokio::task::spawn_blocking(move || debian_base::build(&request, &dir))
        .await
        .context("the build thread failed")?
        .context("hoist base debian")?;

    let src = Endpoint::Layout {
        dir: staging.path().to_owned(),
        tag: Some("base".into()),
    };
    let copier = Copier::new(client).jobs(g.jobs);
    let mut pushed = Vec::new();
    for dst in &destinations {
        let report = copier
            .copy(&src, dst)
            .await
            .with_context(|| format!("push {dst}"))?;
        pushed.push(serde_json::json!({ "destination": dst.to_string(), "push": report }));
    }
    if g.json {
        let value = serde_json::json!({
            "digest": built.manifest_digest,
            "config_digest": built.config_digest,
            "image_size": built.image_size,
            "layers": built.layers,
            "packages": built.packages,
            "excluded": built.excluded,
            "downloaded": built.downloaded,
            "bytecode": built.bytecode,
            "destinations": pushed,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if !g.quiet {
        eprintln!(
            "{} packages ({} downloaded), {} bytes, bytecode: {}",
            built.packages.len(),
            built.downloaded,
            built.image_size,
            match &built.bytecode {
                debian_base::BytecodeReport::Compiled { modules, .. } =>
                    format!("{modules} modules"),
                debian_base::BytecodeReport::Skipped { reason } => format!("none ({reason})"),
            }
        );
    }
    for dst in &destinations {
        match dst {
            Endpoint::Registry(r) => println!("{}", r.with_digest(built.manifest_digest.clone())),
            Endpoint::Layout { .. } => println!("{dst}@{}", built.manifest_digest),
        }
    }
    Ok(())
}
