//! A function build job: the code from the object store, validated, built
//! on the base with `oci-build`, pushed with `oci-push` to the service's
//! image target, with progress and log lines recorded (and so streamed)
//! as it goes. Dropping the future cancels the build: `oci-build` and
//! `oci-push` leave no partial blob or cache entry behind, and the job's
//! working directory is removed with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jobs::{BuildStatus, Jobs};
use oci_build::{BuildOutput, FunctionSpec, naming};
use oci_model::{Endpoint, Reference};
use oci_push::{Copier, Event};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Context;
use crate::{ImageTarget, keys};

/// What a function build job builds: the `spec` of its record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FunctionBuildSpec {
    /// The function.
    pub function_id: Uuid,
    /// Its owner (the `user` of the image name and labels).
    pub owner: String,
    /// Its name (the `function` of the image name).
    pub name: String,
    /// Its version.
    pub version: String,
    /// The base image, when not the service's default.
    pub base: Option<String>,
    /// `requirements.txt`, if any.
    pub requirements: Option<String>,
}

/// A finished build: where the image is.
#[derive(Debug)]
pub(crate) struct Built {
    /// What a task pulls: `REF@DIGEST` or `oci:DIR:TAG`.
    pub image_url: String,
    /// The manifest digest.
    pub digest: String,
    /// Config plus layers, in bytes.
    pub size_bytes: u64,
}

/// Why a build failed, and at which step.
#[derive(Debug)]
pub(crate) struct Failed {
    pub step: String,
    pub error: String,
}

impl Failed {
    pub(super) fn at(step: &'static str) -> impl FnOnce(String) -> Failed {
        move |error| Failed {
            step: step.to_owned(),
            error,
        }
    }
}

/// Records progress. Progress is advice: a record that cannot be updated
/// does not fail the build.
pub(super) async fn record_step(
    jobs: &Jobs,
    id: Uuid,
    status: BuildStatus,
    percent: u8,
    step: &'static str,
) {
    let update = super::progress(status, percent, step);
    if let Err(e) = jobs.update_build(id, update).await {
        tracing::warn!(build = %id, error = %e, "recording progress");
    }
}

/// Records one build log line (advice too).
pub(super) async fn record_log(jobs: &Jobs, id: Uuid, line: String) {
    if let Err(e) = jobs.log_build(id, &line).await {
        tracing::warn!(build = %id, error = %e, "recording a log line");
    }
}

/// Progress of a push of `total` bytes: 85 to 99 % as bytes move, each
/// new percent recorded once, in order, by the returned task (which ends
/// when the sink is dropped: await it after the push, so that no progress
/// is recorded after the build's end).
fn push_progress(
    jobs: &Jobs,
    id: Uuid,
    total: u64,
) -> (oci_push::Progress, tokio::task::JoinHandle<()>) {
    let total = total.max(1);
    let (percents, mut received) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let sent = AtomicU64::new(0);
    let sink: oci_push::Progress = Arc::new(move |e: Event| {
        let n = match e {
            Event::BlobProgress { bytes, .. } => bytes,
            Event::BlobDone { size, how, .. } if how != oci_push::BlobHow::Copied => size,
            _ => return,
        };
        let done = sent.fetch_add(n, Ordering::Relaxed) + n;
        let _ = percents.send(85 + done.min(total) * 14 / total);
    });
    let jobs = jobs.clone();
    let recorder = tokio::spawn(async move {
        let mut recorded = 85;
        while let Some(percent) = received.recv().await {
            // Sinks run on several threads: sends may come out of order.
            if percent > recorded {
                recorded = percent;
                let update = super::progress(BuildStatus::Pushing, percent as u8, "pushing");
                let _ = jobs.update_build(id, update).await;
            }
        }
    });
    (sink, recorder)
}

/// Pushes build `id`'s image (`size` bytes) from the build store to
/// `dst`, recording progress and a log line of what was sent.
pub(super) async fn push(
    ctx: &Context,
    id: Uuid,
    image: &oci_model::SourceImage<oci_model::Layout>,
    size: u64,
    dst: &Endpoint,
) -> Result<(), Failed> {
    let (progress, recorder) = push_progress(&ctx.jobs, id, size);
    let report = Copier::new(ctx.client.clone())
        .progress(progress)
        .push(image, dst)
        .await
        .map_err(|e| Failed::at("pushing")(e.to_string()));
    // After the push, so that no progress is recorded after the build's end.
    let _ = recorder.await;
    let report = report?;
    record_log(
        &ctx.jobs,
        id,
        format!(
            "pushed to {dst}: {} copied, {} mounted, {} there already",
            report.blobs_copied, report.blobs_mounted, report.blobs_existed
        ),
    )
    .await;
    Ok(())
}

/// The vulnerability gate, when the worker has one: scans build `id`'s
/// image before its push, records the summary on the build and in the
/// log, counts the decision; a rejection fails the build (nothing is
/// pushed).
pub(super) async fn scan(
    ctx: &Context,
    id: Uuid,
    image: &oci_model::SourceImage<oci_model::Layout>,
) -> Result<(), Failed> {
    let (Some(db), Some(gate)) = (&ctx.advisories, &ctx.config.scan) else {
        return Ok(());
    };
    let jobs = &ctx.jobs;
    record_step(jobs, id, BuildStatus::Building, 80, "scanning").await;
    let inventory = image_scan::scan(image, &image_scan::Limits::default())
        .await
        .map_err(|e| Failed::at("scanning")(e.to_string()))?;
    let db = db.clone();
    // Matching reads many small files.
    let found = tokio::task::spawn_blocking(move || scan_gate::findings(&inventory, &db))
        .await
        .map_err(|e| Failed::at("scanning")(e.to_string()))?
        .map_err(|e| Failed::at("scanning")(e.to_string()))?;
    let verdict = gate.policy.judge(found, scan_gate::today_utc());
    let summary = verdict.summary();
    let value = serde_json::to_value(&summary).expect("a summary serializes");
    if let Err(e) = jobs.set_build_vulnerabilities(id, &value).await {
        tracing::warn!(build = %id, error = %e, "recording the scan's summary");
    }
    ctx.metrics.scan_finished(&verdict.decision.to_string());
    let t = &verdict.tally;
    record_log(
        jobs,
        id,
        format!(
            "scan: {} ({} critical, {} high, {} medium, {} low, {} unknown, {} ignored)",
            verdict.decision, t.critical, t.high, t.medium, t.low, t.unknown, t.ignored
        ),
    )
    .await;
    for line in &summary.warnings {
        record_log(jobs, id, format!("scan: {line}")).await;
    }
    if verdict.decision == scan_gate::Decision::Reject {
        return Err(Failed::at("scanning")(format!(
            "vulnerability scan rejected the image, nothing pushed: {} critical, {} high: {}",
            summary.critical,
            summary.high,
            summary.warnings.join("; ")
        )));
    }
    Ok(())
}

/// Runs the build job `id` of `spec`.
pub(crate) async fn run(
    ctx: &Context,
    id: Uuid,
    spec: &FunctionBuildSpec,
) -> Result<Built, Failed> {
    let jobs = &ctx.jobs;
    record_step(jobs, id, BuildStatus::Building, 5, "fetching the code").await;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(ctx.config.work_dir())
        .map_err(|e| Failed::at("fetching the code")(e.to_string()))?;
    let dir = work.path().join("function");
    std::fs::create_dir_all(&dir).map_err(|e| Failed::at("fetching the code")(e.to_string()))?;
    let code = ctx
        .objects
        .get(&keys::code(spec.function_id), 1 << 20)
        .await
        .map_err(|e| Failed::at("fetching the code")(e.to_string()))?
        .ok_or_else(|| Failed::at("fetching the code")("the function's code is missing".into()))?;
    std::fs::write(dir.join(naming::CODE_FILE), &code)
        .map_err(|e| Failed::at("fetching the code")(e.to_string()))?;
    if let Some(r) = &spec.requirements {
        std::fs::write(dir.join("requirements.txt"), r)
            .map_err(|e| Failed::at("fetching the code")(e.to_string()))?;
    }

    record_step(jobs, id, BuildStatus::Building, 15, "building the image").await;
    let name = image_name(&ctx.config.images, spec, &dir)
        .map_err(|e| Failed::at("naming the image")(e))?;
    let base: Endpoint = match &spec.base {
        Some(b) => b
            .parse()
            .map_err(|e: oci_model::Error| Failed::at("reading the base")(e.to_string()))?,
        None => ctx.config.base.clone().ok_or_else(|| {
            Failed::at("reading the base")(
                "no base image: the request named none and the service has no default".into(),
            )
        })?,
    };
    record_log(jobs, id, format!("building {name} on {base}")).await;
    let mut function = FunctionSpec::new(dir.clone(), base, name.clone());
    function.user = Some(spec.owner.clone());
    function.function = Some(spec.name.clone());
    function.version = Some(spec.version.clone());
    let built: BuildOutput = ctx
        .builder
        .build(&function)
        .await
        .map_err(|e| Failed::at("building the image")(e.to_string()))?;
    for (phase, took) in &built.phases {
        record_log(
            jobs,
            id,
            format!("{phase}: {:.1} ms", took.as_secs_f64() * 1e3),
        )
        .await;
    }
    record_log(jobs, id, format!("built {}", built.manifest_digest)).await;
    scan(ctx, id, &built.image).await?;

    record_step(jobs, id, BuildStatus::Pushing, 85, "pushing").await;
    let (dst, image_url) = match &ctx.config.images {
        ImageTarget::Registry { .. } => (
            Endpoint::Registry(name.clone()),
            name.with_digest(built.manifest_digest.clone()).to_string(),
        ),
        ImageTarget::Layout(dir) => {
            let dst = Endpoint::Layout {
                dir: dir.clone(),
                tag: Some(built.store_tag.clone()),
            };
            let url = dst.to_string();
            (dst, url)
        }
    };
    push(ctx, id, &built.image, built.image_size, &dst).await?;
    Ok(Built {
        image_url,
        digest: built.manifest_digest.to_string(),
        size_bytes: built.image_size,
    })
}

/// The image's name: the seeds' template on a registry target; on a
/// layout target, the same name under `layout.local` (only its tag is
/// kept, as the build store tags it).
fn image_name(
    target: &ImageTarget,
    spec: &FunctionBuildSpec,
    dir: &std::path::Path,
) -> Result<Reference, String> {
    let sha8 = naming::code_sha8(dir).map_err(|e| e.to_string())?;
    let (registry, namespace) = match target {
        ImageTarget::Registry { host, namespace } => (host.as_str(), namespace.as_str()),
        ImageTarget::Layout(_) => ("layout.local", "hoist"),
    };
    naming::default_reference(
        registry,
        namespace,
        &spec.owner,
        &spec.name,
        &spec.version,
        &sha8,
    )
    .map_err(|e| e.to_string())
}
