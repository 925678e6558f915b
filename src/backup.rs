//! `hoist backup`: the registry's metadata as one JSON document in an
//! object store (`s3://BUCKET/PREFIX` or `file://DIR`), and `--check` of
//! such a document against the live registry.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use registry_client::Client;
use service::Objects;

use crate::Global;

/// The largest backup document `--check` reads (about a million tags).
const MAX_DOCUMENT_BYTES: u64 = 512 << 20;

/// `hoist backup --registry HOST [--repository PREFIX]... --to URL`, or
/// `hoist backup --check URL --registry HOST`.
#[derive(Args)]
pub(crate) struct BackupArgs {
    /// The registry (`host[:port]`).
    #[arg(long, value_name = "HOST")]
    registry: String,
    /// Only repositories whose names start with PREFIX (repeatable).
    #[arg(long = "repository", value_name = "PREFIX")]
    repositories: Vec<String>,
    /// Where to write: `s3://BUCKET/PREFIX[?endpoint=URL&region=R]` or
    /// `file:///DIR`; the document is `registry-backup-<UTC time>.json`
    /// there.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "check",
        conflicts_with = "check"
    )]
    to: Option<String>,
    /// Compare this backup document (its URL) with the registry; exit 1
    /// when a repository or tag is missing or a tag's digest changed.
    #[arg(long, value_name = "URL")]
    check: Option<String>,
}

/// A store URL split into the store and the key (or key prefix) in it.
fn split(url: &str, document: bool) -> Result<(Objects, String)> {
    let mut parsed = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("`{url}` is not a local path"))?;
            let (dir, key) = if document {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("`{url}` names no file"))?
                    .to_owned();
                (path.parent().unwrap_or(&path).to_path_buf(), name)
            } else {
                (path, String::new())
            };
            let store = url::Url::from_directory_path(&dir)
                .map_err(|()| anyhow::anyhow!("`{url}`: not an absolute path"))?;
            Ok((Objects::open(store.as_str())?, key))
        }
        "s3" => {
            let key = parsed.path().trim_matches('/').to_owned();
            if document && key.is_empty() {
                bail!("`{url}` names no object");
            }
            parsed.set_path("");
            Ok((Objects::open(parsed.as_str())?, key))
        }
        other => bail!("`{url}`: unsupported scheme `{other}` (s3, file)"),
    }
}

pub(crate) async fn backup(g: &Global, client: Client, args: BackupArgs) -> Result<ExitCode> {
    if let Some(url) = &args.check {
        let (objects, key) = split(url, true)?;
        let bytes = objects
            .get(&key, MAX_DOCUMENT_BYTES)
            .await?
            .with_context(|| format!("{url}: no such backup"))?;
        let doc = registry_backup::parse(&bytes).with_context(|| format!("read {url}"))?;
        let diff = registry_backup::check_against(&client, &args.registry, &doc)
            .await
            .with_context(|| format!("check {url} against {}", args.registry))?;
        if g.json {
            println!("{}", serde_json::to_string_pretty(&diff)?);
        } else {
            for d in &diff {
                println!("{d}");
            }
        }
        return Ok(if diff.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let to = args
        .to
        .as_deref()
        .expect("clap requires --to without --check");
    let (objects, prefix) = split(to, false)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "registry-backup-{}.json",
        oci_model::rfc3339(now).replace(':', "")
    );
    let key = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    // Collected into a local temporary file (bounded memory), uploaded in
    // parts under a temporary key, then renamed: the final key only ever
    // holds a whole document.
    let tmp = tempfile::NamedTempFile::new().context("create a temporary file")?;
    let mut file = tokio::fs::File::from_std(tmp.reopen()?);
    let summary =
        registry_backup::write(&client, &args.registry, &args.repositories, now, &mut file)
            .await
            .with_context(|| format!("backup {}", args.registry))?;
    drop(file);
    let reader = tokio::fs::File::open(tmp.path()).await?;
    let tmp_key = format!("{key}.partial");
    objects
        .put_stream(
            &tmp_key,
            tokio_util::io::ReaderStream::new(reader),
            u64::MAX,
        )
        .await
        .with_context(|| format!("write {to}"))?;
    if let Err(e) = objects.rename(&tmp_key, &key).await {
        let _ = objects.delete(&tmp_key).await;
        return Err(e).with_context(|| format!("write {to}"));
    }
    // The document's own URL, with the store's options, for `--check`.
    let mut location = url::Url::parse(to)?;
    if location.scheme() == "file" {
        let dir = location
            .to_file_path()
            .map_err(|()| anyhow::anyhow!("`{to}` is not a local path"))?;
        location = url::Url::from_file_path(dir.join(&key))
            .map_err(|()| anyhow::anyhow!("`{to}`: not an absolute path"))?;
    } else {
        location.set_path(&format!("/{key}"));
    }
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "backup": location, "repositories": summary.repositories, "tags": summary.tags })
        );
    } else if !g.quiet {
        println!("{location}");
    }
    Ok(ExitCode::SUCCESS)
}
