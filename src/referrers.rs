//! `hoist referrers` and `hoist attach`: the artifacts that refer to an
//! image (OCI 1.1 `subject`), listed and pushed, as `oras discover` and
//! `oras attach` do.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use oci_model::{Endpoint, Reference};
use oci_push::Attachment;
use registry_client::Client;

use crate::Global;

/// `hoist referrers REF [--artifact-type T]`.
#[derive(Args)]
pub(crate) struct ReferrersArgs {
    /// The image: a reference, or oci:DIR:TAG.
    image: Endpoint,
    /// Only artifacts of this type (e.g. application/spdx+json).
    #[arg(long, value_name = "TYPE")]
    artifact_type: Option<String>,
}

/// `hoist attach REF --artifact-type T FILE [--annotation K=V]...`.
#[derive(Args)]
pub(crate) struct AttachArgs {
    /// The image to attach to.
    image: Reference,
    /// The file to attach (streamed, any size).
    file: PathBuf,
    /// The artifact's type (its manifest's `artifactType`).
    #[arg(long, value_name = "TYPE")]
    artifact_type: String,
    /// The media type of the file's layer (default: the artifact type).
    #[arg(long, value_name = "TYPE")]
    media_type: Option<String>,
    /// An annotation of the artifact's manifest (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    annotations: Vec<(String, String)>,
}

fn parse_annotation(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub(crate) async fn referrers(g: &Global, client: Client, args: ReferrersArgs) -> Result<()> {
    let list = oci_push::referrers(&client, &args.image, args.artifact_type.as_deref())
        .await
        .with_context(|| format!("referrers of {}", args.image))?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if g.quiet {
        return Ok(());
    }
    println!(
        "{:<71}  {:<40}  {:>9}  CREATED",
        "DIGEST", "ARTIFACT TYPE", "SIZE"
    );
    for r in &list.referrers {
        println!(
            "{:<71}  {:<40}  {:>9}  {}",
            r.digest,
            r.artifact_type.as_deref().unwrap_or("-"),
            r.size,
            r.annotations
                .get(oci_push::CREATED)
                .map_or("-", String::as_str)
        );
    }
    Ok(())
}

pub(crate) async fn attach(g: &Global, client: Client, args: AttachArgs) -> Result<()> {
    if !args.file.is_file() {
        bail!("{}: not a regular file", args.file.display());
    }
    let mut attachment = Attachment::file(&args.artifact_type, &args.file);
    if let Some(m) = args.media_type {
        attachment.media_type = m;
    }
    attachment.annotations.extend(args.annotations);
    push(g, &client, &args.image, &attachment).await
}

/// Pushes an attachment and prints where it went (also for `hoist sbom
/// --attach`).
pub(crate) async fn push(
    g: &Global,
    client: &Client,
    image: &Reference,
    attachment: &Attachment,
) -> Result<()> {
    let done = oci_push::attach(client, image, attachment)
        .await
        .with_context(|| format!("attach {} to {image}", attachment.artifact_type))?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else if !g.quiet {
        println!("{}@{}", image.name(), done.referrer.digest);
    }
    Ok(())
}
