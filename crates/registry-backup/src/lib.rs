//! A registry's metadata as one JSON document — repositories (from the
//! paginated catalog), their tags, each tag's manifest digest, media type
//! and size, the config's labels, and the referrers of each tagged image —
//! and the check of such a document against the live registry.
//!
//! The document is written as it is collected, one repository at a time,
//! so memory is bounded by the largest repository's tag list, not the
//! catalog; no blob is read but image configs (at most
//! [`oci_model::MAX_CONFIG_BYTES`] each).
//!
//! ```no_run
//! # async fn demo() -> Result<(), registry_backup::Error> {
//! let client = registry_client::Client::builder().build()?;
//! let mut out = Vec::new();
//! let summary = registry_backup::write(&client, "127.0.0.1:5000", &[], 0, &mut out).await?;
//! let doc: registry_backup::Backup = serde_json::from_slice(&out)?;
//! let diff = registry_backup::check(&client, &doc).await?;
//! assert_eq!(summary.repositories, doc.repositories.len());
//! assert!(diff.is_empty());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use futures_util::StreamExt;
use oci_model::{Digest, MAX_CONFIG_BYTES, Reference, media_type::ManifestKind};
use registry_client::{Checkpoint, Client};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The document's `format` field.
pub const FORMAT: &str = "hoist-registry-backup/1";

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
    /// A bad reference or manifest.
    #[error(transparent)]
    Model(#[from] oci_model::Error),
    /// An image config that is not JSON.
    #[error("{reference}: config {digest} is not JSON: {reason}")]
    BadConfig {
        /// The image.
        reference: String,
        /// The config blob.
        digest: Digest,
        /// The parser's message.
        reason: String,
    },
    /// A document that is not a backup this crate reads.
    #[error("not a registry backup: {0}")]
    BadDocument(String),
    /// A backup document that does not parse.
    #[error("backup document: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing the document.
    #[error("writing the backup: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A whole backup document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Backup {
    /// [`FORMAT`].
    pub format: String,
    /// The registry host.
    pub registry: String,
    /// When the backup started (RFC 3339, UTC).
    pub created: String,
    /// Its repositories, in catalog order.
    pub repositories: Vec<Repository>,
}

/// One repository.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Repository {
    /// Its name (`team/app`).
    pub name: String,
    /// Its tags.
    pub tags: Vec<Tag>,
}

/// One tag and what it points at.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    /// The tag.
    pub tag: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Total size of the config and layers (an image), or of the child
    /// manifests (an index).
    pub content_size: u64,
    /// The image config's labels (empty for an index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Artifacts referring to the manifest (not listed for the
    /// `sha256-<hex>` tags that hold referrers and signatures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<oci_model::Referrer>,
}

/// What [`write`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Repositories written.
    pub repositories: usize,
    /// Tags written.
    pub tags: usize,
}

/// Writes the backup of `registry` (`host[:port]`) to `out`: the
/// repositories whose names start with one of `prefixes` (all when
/// empty), each tag's manifest, labels and referrers. `created` is the
/// time written in the document (seconds since the epoch).
pub async fn write<W: AsyncWrite + Unpin>(
    client: &Client,
    registry: &str,
    prefixes: &[String],
    created: u64,
    out: &mut W,
) -> Result<Summary> {
    let on = Reference::parse(&format!("{registry}/catalog"))?;
    let head = serde_json::json!({
        "format": FORMAT,
        "registry": registry,
        "created": oci_model::rfc3339(created),
    })
    .to_string();
    // The header object, left open for the repositories array.
    out.write_all(&head.as_bytes()[..head.len() - 1]).await?;
    out.write_all(b",\"repositories\":[").await?;
    let mut summary = Summary::default();
    let mut next = None;
    loop {
        let page = client.catalog_page(&on, next.as_ref()).await?;
        for name in page.repositories {
            if !prefixes.is_empty() && !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                continue;
            }
            let repo = repository(client, registry, &name).await?;
            if summary.repositories > 0 {
                out.write_all(b",").await?;
            }
            out.write_all(b"\n").await?;
            out.write_all(&serde_json::to_vec(&repo)?).await?;
            summary.repositories += 1;
            summary.tags += repo.tags.len();
        }
        match page.next {
            Some(n) => next = Some(n),
            None => break,
        }
    }
    out.write_all(b"\n]}\n").await?;
    out.flush().await?;
    Ok(summary)
}

/// Whether `tag` is where referrers or signatures of a digest are kept.
fn is_attachment_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-").is_some_and(|rest| {
        let hex = rest.split('.').next().unwrap_or("");
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

async fn repository(client: &Client, registry: &str, name: &str) -> Result<Repository> {
    let base = Reference::parse(&format!("{registry}/{name}"))?;
    let mut tags = client.list_tags(&base).await?;
    tags.sort();
    let mut out = Vec::with_capacity(tags.len());
    for tag in tags {
        let r = base.with_tag(&tag)?;
        let m = client.get_manifest(&r).await?;
        let labels = match (m.kind(), m.config()) {
            (ManifestKind::Image, Some(config)) => labels(client, &r, config).await?,
            _ => BTreeMap::new(),
        };
        let referrers = if is_attachment_tag(&tag) {
            Vec::new()
        } else {
            client.referrers(&base, m.digest(), None).await?.list
        };
        out.push(Tag {
            content_size: m.children().iter().map(|d| d.size).sum(),
            digest: m.digest().clone(),
            media_type: m.media_type().to_owned(),
            size: m.bytes().len() as u64,
            labels,
            referrers,
            tag,
        });
    }
    Ok(Repository {
        name: name.to_owned(),
        tags: out,
    })
}

/// The labels of an image config (verified, at most
/// [`MAX_CONFIG_BYTES`]); an artifact's non-JSON or empty config has none.
async fn labels(
    client: &Client,
    r: &Reference,
    config: &oci_model::Descriptor,
) -> Result<BTreeMap<String, String>> {
    if config.size > MAX_CONFIG_BYTES
        || !(config.media_type == oci_model::media_type::OCI_CONFIG
            || config.media_type == oci_model::media_type::DOCKER_CONFIG)
    {
        return Ok(BTreeMap::new());
    }
    let mut stream = client.get_blob(r, config, Checkpoint::default()).await?;
    let mut bytes = Vec::with_capacity(config.size as usize);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        config: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default, rename = "Labels")]
        labels: Option<BTreeMap<String, String>>,
    }
    let parsed: Config = serde_json::from_slice(&bytes).map_err(|e| Error::BadConfig {
        reference: r.to_string(),
        digest: config.digest.clone(),
        reason: e.to_string(),
    })?;
    Ok(parsed.config.and_then(|c| c.labels).unwrap_or_default())
}

/// Reads a backup document, refusing one of another format.
pub fn parse(bytes: &[u8]) -> Result<Backup> {
    let doc: Backup = serde_json::from_slice(bytes)?;
    if doc.format != FORMAT {
        return Err(Error::BadDocument(format!(
            "format `{}`, expected `{FORMAT}`",
            doc.format
        )));
    }
    Ok(doc)
}

/// A way the live registry differs from a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Difference {
    /// A repository of the backup the registry no longer has (no tags).
    MissingRepository {
        /// Its name.
        repository: String,
    },
    /// A tag of the backup the registry no longer has.
    MissingTag {
        /// Its repository.
        repository: String,
        /// The tag.
        tag: String,
        /// What it pointed at.
        digest: Digest,
    },
    /// A tag that now points at another manifest.
    ChangedDigest {
        /// Its repository.
        repository: String,
        /// The tag.
        tag: String,
        /// In the backup.
        backup: Digest,
        /// In the registry.
        live: Digest,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingRepository { repository } => write!(f, "missing repository {repository}"),
            Self::MissingTag {
                repository,
                tag,
                digest,
            } => write!(f, "missing tag {repository}:{tag} (was {digest})"),
            Self::ChangedDigest {
                repository,
                tag,
                backup,
                live,
            } => write!(
                f,
                "changed {repository}:{tag}: {backup} in the backup, {live} now"
            ),
        }
    }
}

/// Compares `backup` with its registry (the `registry` field): every
/// repository and tag it lists must still be there with the same digest.
/// Tags and repositories added since are not differences.
pub async fn check(client: &Client, backup: &Backup) -> Result<Vec<Difference>> {
    check_against(client, &backup.registry, backup).await
}

/// [`check`] against another registry (a restored or mirrored one).
pub async fn check_against(
    client: &Client,
    registry: &str,
    backup: &Backup,
) -> Result<Vec<Difference>> {
    let mut out = Vec::new();
    for repo in &backup.repositories {
        let base = Reference::parse(&format!("{registry}/{}", repo.name))?;
        let live = match client.list_tags(&base).await {
            Ok(t) => t,
            Err(registry_client::Error::Status { status: 404, .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if live.is_empty() && !repo.tags.is_empty() {
            out.push(Difference::MissingRepository {
                repository: repo.name.clone(),
            });
            continue;
        }
        let live: std::collections::HashSet<String> = live.into_iter().collect();
        for t in &repo.tags {
            if !live.contains(&t.tag) {
                out.push(Difference::MissingTag {
                    repository: repo.name.clone(),
                    tag: t.tag.clone(),
                    digest: t.digest.clone(),
                });
                continue;
            }
            let r = base.with_tag(&t.tag)?;
            let now = match client.head_manifest(&r).await? {
                Some(d) => d.digest,
                None => client.get_manifest(&r).await?.digest().clone(),
            };
            if now != t.digest {
                out.push(Difference::ChangedDigest {
                    repository: repo.name.clone(),
                    tag: t.tag.clone(),
                    backup: t.digest.clone(),
                    live: now,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_tags() {
        let hex = "a".repeat(64);
        assert!(is_attachment_tag(&format!("sha256-{hex}")));
        assert!(is_attachment_tag(&format!("sha256-{hex}.sig")));
        assert!(!is_attachment_tag("sha256-abc"));
        assert!(!is_attachment_tag("v1"));
    }

    #[test]
    fn refuses_other_documents() {
        let err =
            parse(br#"{"format":"x","registry":"r","created":"c","repositories":[]}"#).unwrap_err();
        assert!(err.to_string().contains("format `x`"), "{err}");
        assert!(parse(b"[]").is_err());
    }
}
