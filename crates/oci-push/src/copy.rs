//! The copy engine: resolve the source manifest, skip what the destination
//! has, move the missing blobs in parallel (bounded) and stream them, then
//! write manifests children first so a reader never finds a manifest whose
//! content is missing.
//!
//! What is copied comes from an [`Origin`]: a [`Source`] at a reference
//! (a whole index, or one platform's image), or an [`Image`] in hand (a
//! build result) whose blobs may be mounted from where the image says they
//! live.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use oci_model::media_type::ManifestKind;
use oci_model::{
    Descriptor, Digest, Endpoint, Image, Layout, Manifest, Platform, Reference, Source,
};
use registry_client::{Action, BlobSource, ByteStream, Client, PushOutcome};
use tokio::sync::Semaphore;

use crate::source::{Origin, with_progress};
use crate::{Error, Event, Result, from_model};

/// How a blob reached the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobHow {
    /// The destination already had it.
    Existed,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Its bytes were copied.
    Copied,
}

/// What a copy did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CopyReport {
    /// The digest of the manifest written at the destination.
    pub digest: Option<Digest>,
    /// Its media type.
    pub media_type: String,
    /// Whether the destination already had exactly this image.
    pub unchanged: bool,
    /// Manifests written.
    pub manifests: usize,
    /// Blobs whose bytes were copied.
    pub blobs_copied: usize,
    /// Blobs mounted across repositories.
    pub blobs_mounted: usize,
    /// Blobs the destination already had.
    pub blobs_existed: usize,
    /// Bytes of blobs copied.
    pub bytes_copied: u64,
    /// Attachments brought along with [`Copier::referrers`]: referrer
    /// manifests and cosign-style `sha256-<hex>.sig|.att|.sbom` tags.
    pub referrers: usize,
}

/// A sink for progress events; called from many tasks at once.
pub type Progress = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

/// Copies images between registries and layout directories.
///
/// ```no_run
/// # async fn demo() -> Result<(), oci_push::Error> {
/// use oci_push::{Copier, Endpoint};
/// let client = registry_client::Client::builder().build()?;
/// let copier = Copier::new(client).jobs(8);
/// let src: Endpoint = "127.0.0.1:5000/app:v1".parse()?;
/// let dst: Endpoint = "oci:/tmp/app-layout:v1".parse()?;
/// let report = copier.copy(&src, &dst).await?;
/// println!("{:?}", report.digest);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Copier {
    client: Client,
    jobs: usize,
    platform: Option<Platform>,
    progress: Option<Progress>,
    referrers: bool,
}

/// State shared by the tasks of one copy.
struct Run<'a> {
    origin: &'a dyn Origin,
    dst: Dst,
    permits: Semaphore,
    jobs: usize,
    done: Mutex<HashSet<Digest>>,
    report: Mutex<CopyReport>,
    progress: Option<Progress>,
    retry: registry_client::RetryPolicy,
}

enum Dst {
    Registry(Client, Reference),
    Layout(Layout, Option<String>),
}

impl Copier {
    /// A copier using `client` for every registry, copying 8 blobs at once.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            jobs: 8,
            platform: None,
            progress: None,
            referrers: false,
        }
    }

    /// How many blobs move at once (at least 1).
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// Copy only this platform's image out of an index. Without it an
    /// index is copied whole, so its digest stays the same.
    pub fn platform(mut self, p: Option<Platform>) -> Self {
        self.platform = p;
        self
    }

    /// Receives progress events.
    pub fn progress(mut self, sink: Progress) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Also copy the image's attachments ([`Copier::copy`] only): its
    /// referrers (OCI 1.1 `subject`, found through the referrers API, the
    /// `sha256-<hex>` fallback tag, or a layout's untagged manifests) and
    /// the cosign-style tags `sha256-<hex>.sig`, `.att` and `.sbom`, for the
    /// image and, for an index, each child manifest; then the referrers of
    /// those, [`MAX_ATTACHMENT_DEPTH`] levels down, each digest once, at
    /// most [`MAX_ATTACHMENTS`] in all. Every digest stays the same; at a
    /// registry without the referrers API the fallback index is updated,
    /// in a layout the referrers become untagged `index.json` entries.
    pub fn referrers(mut self, on: bool) -> Self {
        self.referrers = on;
        self
    }

    /// Copies `src` to `dst`.
    pub async fn copy(&self, src: &Endpoint, dst: &Endpoint) -> Result<CopyReport> {
        let (mut report, attachments) = match src {
            Endpoint::Registry(r) => (
                self.copy_from(self.client.clone(), r, dst).await?,
                Attachments::Registry(self.client.clone(), r.clone()),
            ),
            Endpoint::Layout { dir, tag } => {
                let layout = Layout::open(dir)?;
                let reference = layout.reference(tag.as_deref())?;
                (
                    self.copy_from(layout.clone(), &reference, dst).await?,
                    Attachments::Layout(layout, reference),
                )
            }
        };
        if self.referrers {
            let root = report.digest.clone().expect("a finished copy has a digest");
            let extra = match &attachments {
                Attachments::Registry(client, r) => {
                    let origin = crate::source::SourceOrigin::new(client.clone(), r.clone());
                    self.copy_attachments(&attachments, &origin, &root, dst)
                        .await?
                }
                Attachments::Layout(layout, r) => {
                    let origin = crate::source::SourceOrigin::new(layout.clone(), r.clone());
                    self.copy_attachments(&attachments, &origin, &root, dst)
                        .await?
                }
            };
            report.referrers = extra.referrers;
            report.manifests += extra.manifests;
            report.blobs_copied += extra.blobs_copied;
            report.blobs_mounted += extra.blobs_mounted;
            report.blobs_existed += extra.blobs_existed;
            report.bytes_copied += extra.bytes_copied;
        }
        Ok(report)
    }

    /// Copies the attachments of `root` (and of its children) breadth
    /// first, each digest once.
    async fn copy_attachments(
        &self,
        src: &Attachments,
        origin: &dyn Origin,
        root: &Digest,
        dst: &Endpoint,
    ) -> Result<CopyReport> {
        let run = self.new_run(origin, dst)?;
        let root_manifest = src.manifest(root).await?;
        // An index's children have attachments of their own (per-platform
        // signatures, SBOMs).
        let children = match root_manifest.kind() {
            ManifestKind::Index => root_manifest.children(),
            ManifestKind::Image => &[],
        };
        let mut queue: std::collections::VecDeque<(Digest, usize)> = std::iter::once(root.clone())
            .chain(children.iter().map(|d| d.digest.clone()))
            .map(|d| (d, 0))
            .collect();
        let mut seen: HashSet<Digest> = queue.iter().map(|(d, _)| d.clone()).collect();
        let mut count = 0;
        while let Some((subject, depth)) = queue.pop_front() {
            let mut found = Vec::new();
            for r in src.referrers(&subject).await? {
                if seen.insert(r.digest.clone()) {
                    found.push((
                        Descriptor {
                            media_type: r.media_type,
                            digest: r.digest,
                            size: r.size,
                            platform: None,
                        },
                        None,
                    ));
                }
            }
            for suffix in ["sig", "att", "sbom"] {
                let tag = format!("{}.{suffix}", oci_model::referrers_tag(&subject));
                if let Some(desc) = src.tagged(&tag).await?
                    && seen.insert(desc.digest.clone())
                {
                    found.push((desc, Some(tag)));
                }
            }
            for (desc, tag) in found {
                count += 1;
                if count > MAX_ATTACHMENTS {
                    return Err(Error::TooManyAttachments {
                        limit: MAX_ATTACHMENTS,
                    });
                }
                let m = origin.manifest(&desc).await?;
                if tag.is_none() && m.subject().map(|s| &s.digest) != Some(&subject) {
                    return Err(Error::ReferrerSubjectMismatch {
                        referrer: desc.digest.clone(),
                        expected: subject.clone(),
                        actual: m.subject().map(|s| s.digest.clone()),
                    });
                }
                run.copy_manifest(m.clone(), false).await?;
                run.dst.attach(&m, tag.as_deref()).await?;
                if depth + 1 < MAX_ATTACHMENT_DEPTH {
                    queue.push_back((m.digest().clone(), depth + 1));
                }
            }
        }
        let mut report = run.report.lock().expect("report lock").clone();
        report.referrers = count;
        Ok(report)
    }

    /// Copies what `reference` names on `source` — a registry, registries
    /// with failover, a layout — to `dst`: an index whole, or with
    /// [`Copier::platform`] the platform's image only.
    pub async fn copy_from<S: Source>(
        &self,
        source: S,
        reference: &Reference,
        dst: &Endpoint,
    ) -> Result<CopyReport> {
        let root = match &self.platform {
            Some(p) => {
                oci_model::resolve_manifest(&source, reference, p)
                    .await
                    .map_err(from_model)?
                    .manifest
            }
            None => source.manifest(reference).await.map_err(|e| {
                from_model(oci_model::Error::source(
                    format!("manifest of {reference}"),
                    e,
                ))
            })?,
        };
        let origin = crate::source::SourceOrigin::new(source, reference.clone());
        self.run(&origin, root, dst).await
    }

    /// Copies one image in hand — a build result, a cached image — to
    /// `dst`. Blobs the image says live in a repository of the
    /// destination's registry ([`Image::mount_source`]) are mounted from
    /// there instead of uploaded.
    ///
    /// ```no_run
    /// # async fn demo(image: oci_model::SourceImage<oci_model::Layout>) -> Result<(), oci_push::Error> {
    /// let copier = oci_push::Copier::new(registry_client::Client::builder().build()?);
    /// let report = copier.push(&image, &"127.0.0.1:5000/fn/hello:v1".parse()?).await?;
    /// println!("{} mounted, {} uploaded", report.blobs_mounted, report.blobs_copied);
    /// # Ok(()) }
    /// ```
    pub async fn push<I: Image>(&self, image: &I, dst: &Endpoint) -> Result<CopyReport> {
        let origin = crate::source::ImageOrigin(image);
        self.run(&origin, image.manifest().clone(), dst).await
    }

    fn new_run<'o>(&self, origin: &'o dyn Origin, dst: &Endpoint) -> Result<Run<'o>> {
        let dst = match dst {
            Endpoint::Registry(r) => Dst::Registry(self.client.clone(), r.clone()),
            Endpoint::Layout { dir, tag } => Dst::Layout(Layout::create(dir)?, tag.clone()),
        };
        Ok(Run {
            origin,
            dst,
            permits: Semaphore::new(self.jobs),
            jobs: self.jobs,
            done: Mutex::default(),
            report: Mutex::default(),
            progress: self.progress.clone(),
            retry: self.client.retry_policy().clone(),
        })
    }

    async fn run(&self, origin: &dyn Origin, root: Manifest, dst: &Endpoint) -> Result<CopyReport> {
        let run = self.new_run(origin, dst)?;
        let digest = root.digest().clone();
        let unchanged = run.dst.has_root(&root).await?;
        if !unchanged {
            run.copy_manifest(root.clone(), true).await?;
        }
        let mut report = run.report.lock().expect("report lock").clone();
        report.digest = Some(digest);
        report.media_type = root.media_type().to_owned();
        report.unchanged = unchanged;
        Ok(report)
    }
}

impl<'a> Run<'a> {
    fn emit(&self, e: Event) {
        if let Some(p) = &self.progress {
            p(e);
        }
    }

    /// Copies a manifest's content, then the manifest itself. Boxed because
    /// indexes recurse.
    fn copy_manifest(&'a self, manifest: Manifest, root: bool) -> BoxFuture<'a, Result<()>> {
        async move {
            if !root && self.dst.has_manifest(manifest.digest()).await? {
                return Ok(());
            }
            match manifest.kind() {
                ManifestKind::Image => {
                    let mut seen = HashSet::new();
                    let blobs: Vec<Descriptor> = manifest
                        .children()
                        .iter()
                        .filter(|d| seen.insert(d.digest.clone()))
                        .cloned()
                        .collect();
                    futures_util::stream::iter(blobs.into_iter().map(|d| self.copy_blob(d)))
                        .buffer_unordered(self.jobs)
                        .try_collect::<Vec<()>>()
                        .await?;
                }
                ManifestKind::Index => {
                    let children = manifest.children().to_vec();
                    futures_util::stream::iter(children.into_iter().map(|d| async move {
                        let child = self.origin.manifest(&d).await?;
                        if oci_model::media_type::base(&d.media_type) != child.media_type() {
                            return Err(Error::MediaTypeMismatch {
                                digest: d.digest.clone(),
                                declared: d.media_type.clone(),
                                actual: child.media_type().to_owned(),
                            });
                        }
                        self.copy_manifest(child, false).await
                    }))
                    .buffer_unordered(self.jobs)
                    .try_collect::<Vec<()>>()
                    .await?;
                }
            }
            self.dst.put_manifest(&manifest, root).await?;
            self.report.lock().expect("report lock").manifests += 1;
            self.emit(Event::ManifestWritten {
                digest: manifest.digest().clone(),
            });
            Ok(())
        }
        .boxed()
    }

    async fn copy_blob(&self, desc: Descriptor) -> Result<()> {
        if !self
            .done
            .lock()
            .expect("done lock")
            .insert(desc.digest.clone())
        {
            return Ok(());
        }
        let _permit = self.permits.acquire().await.expect("semaphore open");
        self.emit(Event::BlobStarted {
            digest: desc.digest.clone(),
            size: desc.size,
        });
        let how = if self.dst.has_blob(&desc).await? {
            BlobHow::Existed
        } else {
            self.transfer(&desc).await?
        };
        {
            let mut report = self.report.lock().expect("report lock");
            match how {
                BlobHow::Existed => report.blobs_existed += 1,
                BlobHow::Mounted => report.blobs_mounted += 1,
                BlobHow::Copied => {
                    report.blobs_copied += 1;
                    report.bytes_copied += desc.size;
                }
            }
        }
        self.emit(Event::BlobDone {
            digest: desc.digest.clone(),
            size: desc.size,
            how,
        });
        Ok(())
    }

    async fn transfer(&self, desc: &Descriptor) -> Result<BlobHow> {
        match &self.dst {
            Dst::Registry(client, dst) => {
                let mount_from = self
                    .origin
                    .mount_source(desc)
                    .filter(|r| r.api_host() == dst.api_host())
                    .map(|r| r.repository().to_owned());
                let source = BlobReader { run: self, desc };
                match client
                    .push_blob(dst, desc, mount_from.as_deref(), &source)
                    .await?
                {
                    PushOutcome::Mounted => Ok(BlobHow::Mounted),
                    PushOutcome::Uploaded => Ok(BlobHow::Copied),
                }
            }
            Dst::Layout(layout, _) => {
                self.download(layout, desc).await?;
                Ok(BlobHow::Copied)
            }
        }
    }

    /// A blob's verified bytes, reporting progress as they flow.
    async fn open(&self, desc: &Descriptor) -> registry_client::Result<ByteStream> {
        let stream = self.origin.blob(desc).await?;
        Ok(with_progress(stream, desc, self.progress.clone()))
    }

    /// Streams a blob into a layout. A source that broke off is resumed
    /// inside its stream where it can be (a registry resumes with
    /// `Range`); what still fails and is worth retrying starts over;
    /// nothing unverified is ever renamed into place.
    async fn download(&self, layout: &Layout, desc: &Descriptor) -> Result<()> {
        let mut attempt = 1;
        loop {
            // The source stream verifies every byte; hashing again is waste.
            let mut writer = layout.verified_blob_writer()?;
            match self.write_all(desc, &mut writer).await {
                Ok(()) => {
                    writer.commit(Some(&desc.digest))?;
                    return Ok(());
                }
                Err(e) if e.action() == Action::Retry && attempt < self.retry.max_attempts() => {
                    tracing::debug!(digest = %desc.digest, error = %e, "downloading again");
                    let wait = match &e {
                        Error::Registry(re) => self.retry.delay(attempt, re),
                        _ => std::time::Duration::from_millis(100),
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn write_all(&self, desc: &Descriptor, writer: &mut oci_model::BlobWriter) -> Result<()> {
        let mut stream = self.open(desc).await?;
        while let Some(chunk) = stream.next().await {
            writer.write_all(&chunk?)?;
        }
        Ok(())
    }
}

/// One blob of a run, opened as often as an upload's retries need.
struct BlobReader<'r, 'a> {
    run: &'r Run<'a>,
    desc: &'r Descriptor,
}

impl BlobSource for BlobReader<'_, '_> {
    fn open(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = registry_client::Result<ByteStream>> + Send + '_>,
    > {
        Box::pin(self.run.open(self.desc))
    }
}

impl Dst {
    /// Whether the destination already holds `root` under the wanted name.
    async fn has_root(&self, root: &Manifest) -> Result<bool> {
        match self {
            Dst::Registry(client, r) => {
                let target = match r.tag() {
                    Some(_) => r.clone(),
                    None => r.with_digest(root.digest().clone()),
                };
                Ok(client
                    .head_manifest(&target)
                    .await?
                    .is_some_and(|d| &d.digest == root.digest()))
            }
            Dst::Layout(layout, tag) => Ok(layout.has_blob(root.digest(), None)
                && layout.manifests()?.iter().any(|(d, name)| {
                    &d.digest == root.digest() && name.as_deref() == tag.as_deref()
                })),
        }
    }

    async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        match self {
            Dst::Registry(client, r) => {
                let target = r.with_digest(digest.clone());
                Ok(client.head_manifest(&target).await?.is_some())
            }
            Dst::Layout(layout, _) => Ok(layout.has_blob(digest, None)),
        }
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        match self {
            Dst::Registry(client, r) => Ok(client.head_blob(r, &desc.digest).await?.is_some()),
            Dst::Layout(layout, _) => Ok(layout.has_blob(&desc.digest, Some(desc.size))),
        }
    }

    /// Records an attachment already written by digest: under its cosign
    /// tag, or as a referrer of its subject (at a registry without the
    /// referrers API, in the fallback index; in a layout, as an untagged
    /// `index.json` entry).
    async fn attach(&self, m: &Manifest, tag: Option<&str>) -> Result<()> {
        match (self, tag) {
            (Dst::Registry(client, r), Some(tag)) => {
                Ok(client.put_manifest(&r.with_tag(tag)?, m).await?)
            }
            (Dst::Registry(client, r), None) => client
                .put_referrer(r, m)
                .await
                .map(drop)
                .map_err(Into::into),
            (Dst::Layout(layout, _), tag) => Ok(layout.add_manifest(&m.descriptor(), tag)?),
        }
    }

    async fn put_manifest(&self, m: &Manifest, root: bool) -> Result<()> {
        match self {
            Dst::Registry(client, r) => {
                let target = match (root, r.tag()) {
                    (true, Some(tag)) => r.with_tag(tag)?,
                    // Children, and roots asked for by digest, go by digest.
                    _ => Reference::parse(&format!("{}@{}", r.name(), m.digest()))?,
                };
                Ok(client.put_manifest(&target, m).await?)
            }
            Dst::Layout(layout, tag) => {
                let written = layout.write_blob(m.bytes())?;
                debug_assert_eq!(&written, m.digest());
                if root {
                    layout.add_manifest(&m.descriptor(), tag.as_deref())?;
                }
                Ok(())
            }
        }
    }
}

/// How many levels of attachments [`Copier::referrers`] follows: an
/// image's referrers (1), theirs (2, a signature of an SBOM), and theirs.
pub const MAX_ATTACHMENT_DEPTH: usize = 3;
/// The most attachments one copy brings along.
pub const MAX_ATTACHMENTS: usize = 1000;

/// Where a copy's attachments are listed: the source registry or layout.
enum Attachments {
    Registry(Client, Reference),
    Layout(Layout, Reference),
}

impl Attachments {
    async fn manifest(&self, digest: &Digest) -> Result<Manifest> {
        match self {
            Attachments::Registry(client, r) => {
                Ok(client.get_manifest(&r.with_digest(digest.clone())).await?)
            }
            Attachments::Layout(layout, r) => layout
                .manifest(&r.with_digest(digest.clone()))
                .await
                .map_err(from_model),
        }
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<oci_model::Referrer>> {
        match self {
            Attachments::Registry(client, r) => Ok(client.referrers(r, subject, None).await?.list),
            Attachments::Layout(layout, _) => crate::referrers::layout_referrers(layout, subject),
        }
    }

    /// The manifest at `tag`, if there is one.
    async fn tagged(&self, tag: &str) -> Result<Option<Descriptor>> {
        match self {
            Attachments::Registry(client, r) => {
                let at = r.with_tag(tag)?;
                match client.get_manifest(&at).await {
                    Ok(m) => Ok(Some(m.descriptor())),
                    Err(registry_client::Error::Status { status: 404, .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Attachments::Layout(layout, _) => Ok(layout
                .manifests()?
                .into_iter()
                .find(|(_, name)| name.as_deref() == Some(tag))
                .map(|(d, _)| d)),
        }
    }
}
