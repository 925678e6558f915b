//! A release build job (docker-release-system.md): the artifacts copied
//! from the object store into a fresh build context (`downloading_artifacts`,
//! each checked against its recorded size and digest), the Dockerfile built
//! with `oci-build` (`building`, progress from the steps done out of the
//! steps in all, every step and every line a `RUN` wrote in the build's
//! log, live: a `RUN`'s lines as it writes them), the image pushed to
//! `REGISTRY/NAME:TAG` (`pushing`). The whole
//! build has a time limit (one hour by default, as the seeds' Celery
//! limit) and its context a size limit; a Dockerfile that fails gives
//! `failed` with the failing step and its output.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use jobs::BuildStatus;
use oci_build::{DockerfileEvent, DockerfileSpec};
use oci_model::{Digest, Endpoint, Image, Platform, Reference};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Context;
use super::build::{Built, Failed, record_log, record_step};
use crate::keys;

/// The most bytes of `RUN` output waiting to be recorded: the log's
/// writer makes a database write per line, slower than a command can
/// print, so what comes while this is reached is dropped and counted.
const LOG_QUEUE_BYTES: usize = 1 << 20;
/// What a waiting line costs besides its bytes.
const LINE_COST: usize = 64;

/// An artifact a release build copies into its context.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// Its id.
    pub id: Uuid,
    /// Its file name in the context.
    pub name: String,
    /// Its recorded size.
    pub size_bytes: u64,
    /// Its recorded digest.
    pub digest: Digest,
}

/// What a release build job builds: the `spec` of its record. Its
/// Dockerfile is in the object store under the build's id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseBuildSpec {
    /// Who asked for it.
    pub owner: String,
    /// The registry pushed to.
    pub target_registry: String,
    /// The repository in it.
    pub image_name: String,
    /// The tag.
    pub image_tag: String,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The platform built for (default: the worker's).
    pub platform: Option<String>,
    /// The stage built (default: the last).
    pub target: Option<String>,
    /// Artifacts copied into the context.
    pub artifacts: Vec<ArtifactRef>,
    /// Whether `RUN` may use the network.
    pub network: bool,
    /// The release's version.
    pub version: Option<String>,
    /// The release's notes.
    pub release_notes: Option<String>,
}

/// Runs the release build job `id` of `spec`.
pub(crate) async fn run(ctx: &Context, id: Uuid, spec: &ReleaseBuildSpec) -> Result<Built, Failed> {
    let limit = ctx.config.release.timeout;
    match tokio::time::timeout(limit, build(ctx, id, spec)).await {
        Ok(result) => result,
        Err(_) => Err(Failed {
            step: "building".into(),
            error: format!("the build took longer than its {} s limit", limit.as_secs()),
        }),
    }
}

async fn build(ctx: &Context, id: Uuid, spec: &ReleaseBuildSpec) -> Result<Built, Failed> {
    let jobs = &ctx.jobs;
    let name: Reference = format!(
        "{}/{}:{}",
        spec.target_registry, spec.image_name, spec.image_tag
    )
    .parse()
    .map_err(|e: oci_model::Error| Failed::at("reading the job")(e.to_string()))?;

    record_step(
        jobs,
        id,
        BuildStatus::DownloadingArtifacts,
        2,
        "downloading artifacts",
    )
    .await;
    let work = tempfile::Builder::new()
        .prefix("release-")
        .tempdir_in(ctx.config.work_dir())
        .map_err(|e| Failed::at("downloading artifacts")(e.to_string()))?;
    let context = work.path().join("context");
    std::fs::create_dir(&context)
        .map_err(|e| Failed::at("downloading artifacts")(e.to_string()))?;
    let total: u64 = spec.artifacts.iter().map(|a| a.size_bytes).sum();
    if total > ctx.config.release.max_context_bytes {
        return Err(Failed::at("downloading artifacts")(format!(
            "the artifacts are {total} bytes, over the {}-byte limit of a build context",
            ctx.config.release.max_context_bytes
        )));
    }
    for (i, artifact) in spec.artifacts.iter().enumerate() {
        // Names were checked when the release was accepted; checked again,
        // as the record is the only thing between them and a path.
        if artifact.name.contains('/') || artifact.name.starts_with('.') {
            return Err(Failed::at("downloading artifacts")(format!(
                "artifact {}: `{}` is not a plain file name",
                artifact.id, artifact.name
            )));
        }
        ctx.objects
            .get_to_file(
                &keys::artifact(artifact.id),
                &context.join(&artifact.name),
                artifact.size_bytes,
                &artifact.digest,
            )
            .await
            .map_err(|e| Failed::at("downloading artifacts")(e.to_string()))?;
        record_log(
            jobs,
            id,
            format!(
                "artifact {}/{}: {} ({} bytes, {})",
                i + 1,
                spec.artifacts.len(),
                artifact.name,
                artifact.size_bytes,
                artifact.digest
            ),
        )
        .await;
    }
    let dockerfile = work.path().join("Dockerfile");
    let text = ctx
        .objects
        .get(&keys::dockerfile(id), 1 << 20)
        .await
        .map_err(|e| Failed::at("downloading artifacts")(e.to_string()))?
        .ok_or_else(|| {
            Failed::at("downloading artifacts")("the release's Dockerfile is missing".into())
        })?;
    std::fs::write(&dockerfile, &text)
        .map_err(|e| Failed::at("downloading artifacts")(e.to_string()))?;

    record_step(jobs, id, BuildStatus::Building, 10, "building").await;
    record_log(jobs, id, format!("building {name}")).await;
    let mut builder = ctx.builder.clone();
    if let Some(p) = &spec.platform {
        let platform: Platform = p
            .parse()
            .map_err(|e: oci_model::Error| Failed::at("reading the job")(e.to_string()))?;
        builder = builder.platform(platform);
    }
    let mut build = DockerfileSpec::new(&dockerfile, &context, name.clone());
    build.build_args = spec.build_args.clone();
    build.target = spec.target.clone();
    build.network = spec.network;
    build.limits = ctx.config.release.limits.clone();
    build.run_disk = ctx.config.release.run_disk;
    // Events come from the build's task: recorded in order by one writer,
    // lines dropped (with a note) rather than piling up while it lags.
    let queue = Arc::new(LogQueue::default());
    let events = queue.clone();
    build.on_event(move |e: &DockerfileEvent| events.push(e));
    let recorder = {
        let jobs = jobs.clone();
        let queue = queue.clone();
        async move {
            let mut failing = String::from("building");
            while let Some(event) = queue.next().await {
                match event {
                    DockerfileEvent::Step { index, total, text } => {
                        let step = format!("Step {index}/{total} : {text}");
                        // 10..85 while the steps go.
                        let percent = 10 + (index.saturating_sub(1) * 75 / total.max(1)) as u8;
                        let update = super::progress(BuildStatus::Building, percent, &step);
                        if let Err(e) = jobs.update_build(id, update).await {
                            tracing::warn!(build = %id, error = %e, "recording progress");
                        }
                        record_log(&jobs, id, step.clone()).await;
                        failing = step;
                    }
                    DockerfileEvent::Output(line) => record_log(&jobs, id, line).await,
                    _ => {}
                }
            }
            failing
        }
    };
    let (built, failing) = tokio::join!(
        async {
            let built = builder.build_dockerfile(&build).await;
            queue.close();
            built
        },
        recorder
    );
    let built = built.map_err(|e| Failed {
        step: failing,
        error: e.to_string(),
    })?;
    record_log(jobs, id, format!("built {}", built.manifest_digest)).await;
    super::build::scan(ctx, id, &built.image).await?;

    record_step(jobs, id, BuildStatus::Pushing, 85, "pushing").await;
    let dst = Endpoint::Registry(name.clone());
    let size = image_size(&built.image);
    super::build::push(ctx, id, &built.image, size, &dst).await?;
    Ok(Built {
        image_url: name.to_string(),
        digest: built.manifest_digest.to_string(),
        size_bytes: size,
    })
}

/// Config plus layers, in bytes.
fn image_size(image: &oci_model::SourceImage<oci_model::Layout>) -> u64 {
    let manifest = image.manifest();
    manifest.config().map_or(0, |c| c.size) + manifest.layers().iter().map(|l| l.size).sum::<u64>()
}

/// Build events on their way to the log's writer: steps always, `RUN`
/// lines within [`LOG_QUEUE_BYTES`]; once a line is dropped, lines are
/// dropped until the writer caught up, and a note of how many comes
/// where they were.
#[derive(Default)]
struct LogQueue {
    pending: Mutex<Pending>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    events: VecDeque<DockerfileEvent>,
    bytes: usize,
    /// Lines and bytes dropped since the last note.
    dropped: (u64, u64),
    closed: bool,
}

impl Pending {
    /// Queues the note of what was dropped, if anything was.
    fn note_dropped(&mut self) {
        let (lines, bytes) = std::mem::take(&mut self.dropped);
        if lines > 0 {
            self.events.push_back(DockerfileEvent::Output(format!(
                "… {bytes} bytes dropped ({lines} lines; the log fell behind)"
            )));
        }
    }
}

impl LogQueue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, event: &DockerfileEvent) {
        let mut pending = self.lock();
        if let DockerfileEvent::Output(line) = event {
            let cost = line.len() + LINE_COST;
            if pending.dropped.0 > 0 || pending.bytes + cost > LOG_QUEUE_BYTES {
                pending.dropped.0 += 1;
                pending.dropped.1 += line.len() as u64;
                return;
            }
            pending.bytes += cost;
        } else {
            pending.note_dropped();
        }
        pending.events.push_back(event.clone());
        drop(pending);
        self.ready.notify_one();
    }

    /// No more events after those queued.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next event, once there is one; `None` after the last.
    async fn next(&self) -> Option<DockerfileEvent> {
        loop {
            {
                let mut pending = self.lock();
                if pending.events.is_empty() {
                    pending.note_dropped();
                }
                if let Some(event) = pending.events.pop_front() {
                    if let DockerfileEvent::Output(line) = &event {
                        pending.bytes = pending.bytes.saturating_sub(line.len() + LINE_COST);
                    }
                    return Some(event);
                }
                if pending.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> DockerfileEvent {
        DockerfileEvent::Output(text.to_owned())
    }

    #[tokio::test]
    async fn a_lagging_log_drops_lines_with_a_note_but_never_a_step() {
        let queue = LogQueue::default();
        let big = "x".repeat(LOG_QUEUE_BYTES / 2);
        queue.push(&line(&big));
        queue.push(&line("fits"));
        queue.push(&line(&big));
        // Room now, but the note must come before it.
        queue.push(&line(""));
        let step = DockerfileEvent::Step {
            index: 2,
            total: 2,
            text: "RUN true".into(),
        };
        queue.push(&step);
        queue.push(&line("after"));
        queue.close();
        let mut got = Vec::new();
        while let Some(event) = queue.next().await {
            got.push(event);
        }
        let note = format!(
            "… {} bytes dropped (2 lines; the log fell behind)",
            big.len()
        );
        assert_eq!(
            got,
            [line(&big), line("fits"), line(&note), step, line("after")]
        );
        assert_eq!(queue.lock().bytes, 0);
    }

    #[tokio::test]
    async fn the_writer_wakes_for_each_event_and_ends_after_the_last() {
        let queue = Arc::new(LogQueue::default());
        let writer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    queue.push(&line(&i.to_string()));
                    tokio::task::yield_now().await;
                }
                queue.close();
            })
        };
        let mut got = Vec::new();
        while let Some(event) = queue.next().await {
            got.push(event);
        }
        writer.await.unwrap();
        let wanted: Vec<_> = (0..100).map(|i| line(&i.to_string())).collect();
        assert_eq!(got, wanted);
    }
}
