//! Attachments: artifacts pushed with a `subject` that points at an image
//! (an SBOM, a scan report), listed through the registry's referrers API
//! or the `sha256-<hex>` fallback tag, and found in an OCI layout as
//! untagged manifests of `index.json` whose `subject` is the image.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::StreamExt;
use oci_model::{
    Descriptor, Digest, EMPTY_JSON, Endpoint, Layout, MAX_MANIFEST_BYTES, Manifest, Reference,
    Referrer, media_type,
};
use registry_client::{BlobSource, ByteStream, Client, ReferrersVia};

use crate::Result;

/// The annotation that dates an attachment, shown by `hoist referrers`.
pub const CREATED: &str = "org.opencontainers.image.created";
/// The annotation naming an attached file, as oras writes it.
pub const TITLE: &str = "org.opencontainers.image.title";

/// The bytes of an attachment.
#[derive(Clone, Debug)]
pub enum Content {
    /// In memory (an SBOM or a report just written).
    Bytes(Vec<u8>),
    /// A file, streamed (hashed once, then uploaded).
    File(PathBuf),
}

/// What to attach to an image.
///
/// ```
/// let a = oci_push::Attachment::new("application/spdx+json", b"{}".to_vec())
///     .annotation("org.example.tool", "hoist");
/// assert_eq!(a.media_type, "application/spdx+json");
/// ```
#[derive(Clone, Debug)]
pub struct Attachment {
    /// The artifact type (`artifactType` of the manifest), which
    /// `hoist referrers --artifact-type` filters on.
    pub artifact_type: String,
    /// The media type of the one layer holding the content (by default the
    /// artifact type).
    pub media_type: String,
    /// The content.
    pub content: Content,
    /// Annotations of the manifest. [`CREATED`] is set to now when absent.
    pub annotations: BTreeMap<String, String>,
}

impl Attachment {
    /// An attachment of `bytes` whose layer media type is its artifact
    /// type.
    pub fn new(artifact_type: impl Into<String>, bytes: Vec<u8>) -> Self {
        let artifact_type = artifact_type.into();
        Self {
            media_type: artifact_type.clone(),
            artifact_type,
            content: Content::Bytes(bytes),
            annotations: BTreeMap::new(),
        }
    }

    /// An attachment of the file at `path`, streamed when pushed; its
    /// name becomes the layer's [`TITLE`].
    pub fn file(artifact_type: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            content: Content::File(path.into()),
            ..Self::new(artifact_type, Vec::new())
        }
    }

    /// Adds an annotation to the manifest.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

/// What [`attach`] pushed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attached {
    /// The image attached to.
    pub subject: Descriptor,
    /// The artifact manifest, as its subject's referrers list it.
    pub referrer: Referrer,
    /// How the registry lists it.
    pub via: ReferrersVia,
}

/// Pushes `attachment` as an OCI 1.1 artifact whose `subject` is the image
/// `subject` names: the content as one layer, the empty config `{}`, the
/// manifest by digest, then (where the registry has no referrers API) the
/// entry in the `sha256-<hex>` fallback index. Nothing is tagged but that
/// index. The manifest's [`CREATED`] annotation is now unless given.
///
/// ```no_run
/// # async fn demo(sbom: Vec<u8>) -> Result<(), oci_push::Error> {
/// let client = registry_client::Client::builder().build()?;
/// let image = "127.0.0.1:5000/team/app:v1".parse()?;
/// let done = oci_push::attach(&client, &image, &oci_push::Attachment::new("application/spdx+json", sbom)).await?;
/// println!("{}@{}", image.name(), done.referrer.digest);
/// # Ok(()) }
/// ```
pub async fn attach(
    client: &Client,
    subject: &Reference,
    attachment: &Attachment,
) -> Result<Attached> {
    let subject_desc = resolve(client, subject).await?;
    let layer = match &attachment.content {
        Content::Bytes(b) => {
            let desc = descriptor(&attachment.media_type, Digest::of(b), b.len() as u64);
            let bytes = bytes::Bytes::from(b.clone());
            client
                .push_blob(subject, &desc, None, &Memory(bytes))
                .await?;
            desc
        }
        Content::File(path) => {
            let p = path.clone();
            let (digest, size) =
                tokio::task::spawn_blocking(move || Digest::of_reader(std::fs::File::open(&p)?))
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
            let desc = descriptor(&attachment.media_type, digest, size);
            // The registry checks the digest of what arrives: a file that
            // changed since it was hashed is refused, not stored.
            client
                .push_blob(subject, &desc, None, &FileSource(path.clone()))
                .await?;
            desc
        }
    };
    let empty = descriptor(media_type::OCI_EMPTY, Digest::of(EMPTY_JSON), 2);
    client
        .push_blob(
            subject,
            &empty,
            None,
            &Memory(bytes::Bytes::from_static(EMPTY_JSON)),
        )
        .await?;
    let mut annotations = attachment.annotations.clone();
    annotations.entry(CREATED.to_owned()).or_insert_with(|| {
        oci_model::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    });
    let mut layer_json = serde_json::json!({
        "mediaType": layer.media_type, "digest": layer.digest, "size": layer.size,
    });
    if let Content::File(p) = &attachment.content
        && let Some(name) = p.file_name().and_then(|n| n.to_str())
    {
        layer_json["annotations"] = serde_json::json!({ TITLE: name });
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": attachment.artifact_type,
        "config": { "mediaType": empty.media_type, "digest": empty.digest, "size": 2, "data": "e30=" },
        "layers": [layer_json],
        "subject": { "mediaType": subject_desc.media_type, "digest": subject_desc.digest, "size": subject_desc.size },
        "annotations": annotations,
    });
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let manifest = Manifest::from_bytes(bytes, Some(media_type::OCI_MANIFEST))?;
    let via = client.put_referrer(subject, &manifest).await?;
    Ok(Attached {
        subject: subject_desc,
        referrer: manifest.referrer(),
        via,
    })
}

/// The referrers of an image and how they were found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReferrerList {
    /// The image's manifest digest.
    pub subject: Digest,
    /// Its referrers (only those of the artifact type asked for).
    pub referrers: Vec<Referrer>,
    /// `api`, `fallback-tag`, or `None` for a layout.
    pub via: Option<ReferrersVia>,
}

/// Lists the referrers of the image at `subject` (a registry reference, or
/// `oci:DIR:TAG`), of `artifact_type` only when one is given. A registry
/// reference pinned by digest is listed without fetching the image.
///
/// ```no_run
/// # async fn demo() -> Result<(), oci_push::Error> {
/// let client = registry_client::Client::builder().build()?;
/// let list = oci_push::referrers(&client, &"127.0.0.1:5000/app:v1".parse()?, None).await?;
/// for r in list.referrers { println!("{} {:?}", r.digest, r.artifact_type) }
/// # Ok(()) }
/// ```
pub async fn referrers(
    client: &Client,
    subject: &Endpoint,
    artifact_type: Option<&str>,
) -> Result<ReferrerList> {
    match subject {
        Endpoint::Registry(r) => {
            let digest = match r.digest() {
                Some(d) => d.clone(),
                None => resolve(client, r).await?.digest,
            };
            let found = client.referrers(r, &digest, artifact_type).await?;
            Ok(ReferrerList {
                subject: digest,
                referrers: found.list,
                via: Some(found.via),
            })
        }
        Endpoint::Layout { dir, tag } => {
            let layout = Layout::open(dir)?;
            let digest = layout.resolve(tag.as_deref())?.digest;
            let mut list = layout_referrers(&layout, &digest)?;
            if let Some(t) = artifact_type {
                list.retain(|r| r.artifact_type.as_deref() == Some(t));
            }
            Ok(ReferrerList {
                subject: digest,
                referrers: list,
                via: None,
            })
        }
    }
}

/// The untagged manifests of a layout whose subject is `subject`.
pub(crate) fn layout_referrers(layout: &Layout, subject: &Digest) -> Result<Vec<Referrer>> {
    let mut out = Vec::new();
    for (desc, name) in layout.manifests()? {
        if name.is_some() || desc.media_type != media_type::OCI_MANIFEST {
            continue;
        }
        let bytes = layout.read_blob(&desc.digest, MAX_MANIFEST_BYTES as u64)?;
        let m = Manifest::from_bytes(bytes, Some(&desc.media_type))?;
        if m.subject().is_some_and(|s| &s.digest == subject) {
            out.push(m.referrer());
        }
    }
    Ok(out)
}

/// The descriptor of the manifest `r` names (a HEAD, or a GET when the
/// registry does not say the digest).
async fn resolve(client: &Client, r: &Reference) -> Result<Descriptor> {
    if let Some(d) = client.head_manifest(r).await?
        && !d.media_type.is_empty()
        && d.size > 0
    {
        return Ok(d);
    }
    Ok(client.get_manifest(r).await?.descriptor())
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size,
        platform: None,
    }
}

struct Memory(bytes::Bytes);

impl BlobSource for Memory {
    fn open(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = registry_client::Result<ByteStream>> + Send + '_>,
    > {
        let bytes = self.0.clone();
        Box::pin(async move {
            let stream: ByteStream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
            Ok(stream)
        })
    }
}

struct FileSource(PathBuf);

impl BlobSource for FileSource {
    fn open(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = registry_client::Result<ByteStream>> + Send + '_>,
    > {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;
            let file = tokio::fs::File::open(&self.0).await?;
            let stream = futures_util::stream::unfold(file, |mut file| async move {
                let mut buf = vec![0u8; 256 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), file))
                    }
                    Err(e) => Some((Err(registry_client::Error::Io(e)), file)),
                }
            });
            let stream: ByteStream = Box::pin(stream.fuse());
            Ok(stream)
        })
    }
}
