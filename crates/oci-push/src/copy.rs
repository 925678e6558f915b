//! The copy engine: resolve the source manifest, skip what the destination
//! has, move the missing blobs in parallel (bounded) and stream them, then
//! write manifests children first so a reader never finds a manifest whose
//! content is missing.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use oci_model::media_type::ManifestKind;
use oci_model::{Descriptor, Digest, Layout, MAX_MANIFEST_BYTES, Manifest, Platform, Reference};
use registry_client::{
    Action, BlobSource, ByteStream, Checkpoint, CheckpointHandle, Client, PushOutcome,
};
use tokio::sync::Semaphore;

use crate::endpoint::Endpoint;
use crate::source::{LayoutBlob, RegistryBlob, with_progress};
use crate::{Error, Event, Result};

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
}

/// A sink for progress events; called from many tasks at once.
pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

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
    mount_hint: Option<Arc<MountHint>>,
}

/// A repository known to hold some of the blobs, tried as a mount source.
struct MountHint {
    repository: Reference,
    blobs: HashSet<Digest>,
}

/// State shared by the tasks of one copy.
struct Run {
    src: Src,
    dst: Dst,
    permits: Semaphore,
    jobs: usize,
    done: Mutex<HashSet<Digest>>,
    report: Mutex<CopyReport>,
    progress: Option<Progress>,
    retry: registry_client::RetryPolicy,
    mount_hint: Option<Arc<MountHint>>,
}

pub(crate) enum Src {
    Registry(Client, Reference),
    Layout(Layout, Option<String>),
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
            mount_hint: None,
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

    /// Names a repository that already holds `blobs` — say, the base image
    /// of a build. When it is on the destination's registry, those blobs
    /// are mounted from it instead of uploaded from the source.
    pub fn mount_from(
        mut self,
        repository: Reference,
        blobs: impl IntoIterator<Item = Digest>,
    ) -> Self {
        self.mount_hint = Some(Arc::new(MountHint {
            repository,
            blobs: blobs.into_iter().collect(),
        }));
        self
    }

    /// Copies `src` to `dst`.
    pub async fn copy(&self, src: &Endpoint, dst: &Endpoint) -> Result<CopyReport> {
        let src = match src {
            Endpoint::Registry(r) => Src::Registry(self.client.clone(), r.clone()),
            Endpoint::Layout { dir, tag } => Src::Layout(Layout::open(dir)?, tag.clone()),
        };
        let dst = match dst {
            Endpoint::Registry(r) => Dst::Registry(self.client.clone(), r.clone()),
            Endpoint::Layout { dir, tag } => Dst::Layout(Layout::create(dir)?, tag.clone()),
        };
        let run = Arc::new(Run {
            src,
            dst,
            permits: Semaphore::new(self.jobs),
            jobs: self.jobs,
            done: Mutex::default(),
            report: Mutex::default(),
            progress: self.progress.clone(),
            retry: self.client.retry_policy().clone(),
            mount_hint: self.mount_hint.clone(),
        });
        let mut root = run.src.root_manifest().await?;
        if let Some(p) = &self.platform
            && root.kind() == ManifestKind::Index
        {
            let child = root.select_platform(p)?.clone();
            root = run.src.manifest(&child).await?;
        }
        let digest = root.digest().clone();
        if run.dst.has_root(&root).await? {
            let mut report = run.report.lock().expect("report lock").clone();
            report.digest = Some(digest);
            report.media_type = root.media_type().to_owned();
            report.unchanged = true;
            return Ok(report);
        }
        run.clone().copy_manifest(root.clone(), true).await?;
        let mut report = run.report.lock().expect("report lock").clone();
        report.digest = Some(digest);
        report.media_type = root.media_type().to_owned();
        Ok(report)
    }
}

impl Run {
    fn emit(&self, e: Event) {
        if let Some(p) = &self.progress {
            p(e);
        }
    }

    /// Copies a manifest's content, then the manifest itself. Boxed because
    /// indexes recurse.
    fn copy_manifest(
        self: Arc<Self>,
        manifest: Manifest,
        root: bool,
    ) -> BoxFuture<'static, Result<()>> {
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
                    futures_util::stream::iter(
                        blobs.into_iter().map(|d| self.clone().copy_blob(d)),
                    )
                    .buffer_unordered(self.jobs)
                    .try_collect::<Vec<()>>()
                    .await?;
                }
                ManifestKind::Index => {
                    let children = manifest.children().to_vec();
                    let this = self.clone();
                    futures_util::stream::iter(children.into_iter().map(move |d| {
                        let this = this.clone();
                        async move {
                            let child = this.src.manifest(&d).await?;
                            if oci_model::media_type::base(&d.media_type) != child.media_type() {
                                return Err(Error::MediaTypeMismatch {
                                    digest: d.digest.clone(),
                                    declared: d.media_type.clone(),
                                    actual: child.media_type().to_owned(),
                                });
                            }
                            this.copy_manifest(child, false).await
                        }
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

    async fn copy_blob(self: Arc<Self>, desc: Descriptor) -> Result<()> {
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

    fn blob_source(&self, desc: &Descriptor) -> Box<dyn BlobSource + '_> {
        let progress = self.progress.clone();
        match &self.src {
            Src::Registry(client, r) => Box::new(RegistryBlob {
                client,
                reference: r,
                desc: desc.clone(),
                progress,
            }),
            Src::Layout(layout, _) => Box::new(LayoutBlob {
                layout,
                desc: desc.clone(),
                progress,
            }),
        }
    }

    async fn transfer(&self, desc: &Descriptor) -> Result<BlobHow> {
        match &self.dst {
            Dst::Registry(client, dst) => {
                let mount_from = match &self.src {
                    Src::Registry(_, src) if src.api_host() == dst.api_host() => {
                        Some(src.repository())
                    }
                    _ => self
                        .mount_hint
                        .as_deref()
                        .filter(|h| {
                            h.repository.api_host() == dst.api_host()
                                && h.blobs.contains(&desc.digest)
                        })
                        .map(|h| h.repository.repository()),
                };
                let source = self.blob_source(desc);
                match client
                    .push_blob(dst, desc, mount_from, source.as_ref())
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

    /// Streams a blob into a layout. A registry download that breaks is
    /// resumed with `Range` from the last verified byte; bad content starts
    /// over; nothing unverified is ever renamed into place.
    async fn download(&self, layout: &Layout, desc: &Descriptor) -> Result<()> {
        // The source stream verifies every byte; hashing again is waste.
        let mut writer = layout.verified_blob_writer()?;
        let mut from = Checkpoint::default();
        let mut attempt = 1;
        loop {
            let result = self.write_from(desc, &mut writer, &mut from).await;
            match result {
                Ok(()) => break,
                Err(e) if e.action() == Action::Retry && attempt < self.retry.max_attempts() => {
                    tracing::debug!(digest = %desc.digest, error = %e, "resuming download");
                    let wait = match &e {
                        Error::Registry(re) => self.retry.delay(attempt, re),
                        _ => std::time::Duration::from_millis(100),
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    // Resuming needs the writer to hold exactly the verified
                    // prefix; after a digest mismatch the bad byte may be
                    // anywhere. Otherwise start from zero.
                    if writer.written() != from.offset
                        || matches!(
                            &e,
                            Error::Registry(registry_client::Error::DigestMismatch { .. })
                        )
                    {
                        writer = layout.verified_blob_writer()?;
                        from = Checkpoint::default();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        writer.commit(Some(&desc.digest))?;
        Ok(())
    }

    async fn write_from(
        &self,
        desc: &Descriptor,
        writer: &mut oci_model::BlobWriter,
        from: &mut Checkpoint,
    ) -> Result<()> {
        let (mut stream, handle): (ByteStream, Option<CheckpointHandle>) = match &self.src {
            Src::Registry(client, r) => {
                let s = client.get_blob(r, desc, from.clone()).await?;
                let handle = s.checkpoint_handle();
                (
                    with_progress(Box::pin(s), desc, self.progress.clone()),
                    Some(handle),
                )
            }
            Src::Layout(..) => (self.blob_source(desc).open().await?, None),
        };
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => writer.write_all(&bytes)?,
                Err(e) => {
                    // Remember how far the verified bytes reached, so a
                    // registry download resumes there.
                    if let Some(h) = handle {
                        *from = h.get();
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

impl Src {
    pub(crate) async fn root_manifest(&self) -> Result<Manifest> {
        match self {
            Src::Registry(client, r) => Ok(client.get_manifest(r).await?),
            Src::Layout(layout, tag) => {
                let desc = layout.resolve(tag.as_deref())?;
                self.manifest(&desc).await
            }
        }
    }

    pub(crate) async fn manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        match self {
            Src::Registry(client, r) => Ok(client
                .get_manifest(&r.with_digest(desc.digest.clone()))
                .await?),
            Src::Layout(layout, _) => {
                let bytes = layout.read_blob(&desc.digest, MAX_MANIFEST_BYTES as u64)?;
                let media_type = Some(desc.media_type.as_str()).filter(|t| !t.is_empty());
                Ok(Manifest::from_bytes(bytes, media_type)?)
            }
        }
    }
}

impl Src {
    /// A small blob (a config) read whole, verified, at most `limit` bytes.
    pub(crate) async fn small_blob(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        if desc.size > limit {
            return Err(oci_model::Error::BlobTooLarge {
                digest: desc.digest.clone(),
                size: desc.size,
                limit,
            }
            .into());
        }
        match self {
            Src::Registry(client, r) => {
                let mut stream = client.get_blob(r, desc, Checkpoint::default()).await?;
                let mut out = Vec::with_capacity(desc.size as usize);
                while let Some(chunk) = stream.next().await {
                    out.extend_from_slice(&chunk?);
                }
                Ok(out)
            }
            Src::Layout(layout, _) => Ok(layout.read_blob(&desc.digest, limit)?),
        }
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
