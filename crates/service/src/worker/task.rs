//! A task: the inputs from the object store, the image pulled through the
//! layer cache (failing over between registries), the handler run in the
//! sandbox with the seeds' limits, the output and logs stored, the result
//! recorded.

use std::time::Instant;

use bytes::Bytes;
use function_run::{Options, Reply, WarmFunction};
use image_sign::IdentityCheck;
use jobs::{Task, TaskResult, UsageKind};
use layer_cache::CachedImage;
use oci_model::Endpoint;
use sandbox_run::{RootFs, Sandbox};

use super::Context;
use super::warm::{self, Pool};
use crate::keys;

/// Why a task could not run this time, though another attempt may: the
/// image could not be pulled, the sandbox machinery failed. The task is
/// given back to the queue (and failed for good after its last attempt).
#[derive(Debug)]
pub(crate) struct Retry(pub String);

/// Runs `task` and returns its result, with the output and logs stored.
pub(crate) async fn run(ctx: &Context, task: &Task) -> Result<TaskResult, Retry> {
    let started = Instant::now();
    let inputs = ctx
        .objects
        .get(&task.inputs_key, ctx.config.invoke.io_bytes)
        .await
        .map_err(|e| Retry(format!("reading the inputs: {e}")))?;
    let Some(inputs) = inputs else {
        return Ok(failed(
            task,
            "BadInputs",
            "the task's inputs are missing",
            started,
        ));
    };
    let inputs: serde_json::Value = match serde_json::from_slice(&inputs) {
        Ok(v) => v,
        Err(e) => {
            return Ok(failed(
                task,
                "BadInputs",
                &format!("inputs are not JSON: {e}"),
                started,
            ));
        }
    };
    let image: Endpoint = match task.image.parse() {
        Ok(i) => i,
        Err(e) => return Ok(failed(task, "BadImage", &e.to_string(), started)),
    };
    let key = format!("{}:{}", task.function_id, task.image);
    // A sandbox kept warm holds its image pinned: no pull needed.
    let ready = match ctx.pool.take(&key) {
        Some(kept) => {
            ctx.metrics
                .image_pulled(kept.image.reference.registry(), "function", None);
            Ready::Warm(Box::new(kept))
        }
        None => {
            let image = match signed_image(ctx, task, image, started).await? {
                Ok(image) => image,
                Err(refused) => return Ok(refused),
            };
            Ready::Cold(Box::new(
                ctx.pull_function(&image)
                    .await
                    .map_err(|e| Retry(format!("pulling {image}: {e}")))?,
            ))
        }
    };
    if let Err(e) = ctx
        .jobs
        .record_usage(&task.image, &ctx.config.id, UsageKind::Run)
        .await
    {
        tracing::warn!(task = %task.id, error = %e, "recording image usage");
    }
    let sandbox = ctx.sandbox.clone();
    let options = ctx.config.invoke.clone();
    let pool = ctx.pool.clone();
    let id = task.id;
    let done = tokio::task::spawn_blocking(move || {
        let ready = match ready {
            Ready::Cold(image) => start_warm(&pool, &sandbox, image, &options, id),
            warm => warm,
        };
        match ready {
            Ready::Warm(mut warm) => match warm.function.invoke(&inputs) {
                Ok(done) => {
                    pool.give_back(key, *warm);
                    Ok(done)
                }
                // The sandbox broke before a reply: once more in a
                // container of its own.
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "warm sandbox failed; running cold");
                    let rootfs = RootFs::Overlay {
                        lower: warm.image.lower_dirs(),
                    };
                    function_run::invoke(&sandbox, rootfs, &warm.image.config, &inputs, &options)
                }
            },
            Ready::Cold(image) => {
                let rootfs = RootFs::Overlay {
                    lower: image.lower_dirs(),
                };
                // The image stays pinned in the cache until the run is over.
                function_run::invoke(&sandbox, rootfs, &image.config, &inputs, &options)
            }
        }
    })
    .await
    .map_err(|e| Retry(format!("the sandbox thread failed: {e}")))?
    .map_err(|e| Retry(format!("running the function: {e}")))?;

    let output_key = keys::output(task.id);
    let json = match &done.reply {
        Reply::Output(o) => serde_json::Value::Object(o.clone()),
        other => serde_json::json!({ "error": other.to_json()["error"] }),
    };
    let stored = async {
        ctx.objects
            .put(&output_key, Bytes::from(json.to_string()))
            .await?;
        ctx.objects
            .put(&keys::stdout(task.id), Bytes::from(done.stdout.clone()))
            .await?;
        ctx.objects
            .put(&keys::stderr(task.id), Bytes::from(done.stderr.clone()))
            .await
    };
    stored
        .await
        .map_err(|e| Retry(format!("storing the output: {e}")))?;
    let duration_ms = started.elapsed().as_millis() as u64;
    Ok(match done.reply {
        Reply::Output(_) => TaskResult::Completed {
            output_key,
            duration_ms,
        },
        _ => TaskResult::Failed {
            error: json["error"].clone(),
            output_key: Some(output_key),
            duration_ms: Some(duration_ms),
        },
    })
}

/// Where a task runs.
enum Ready {
    /// In a warm sandbox.
    Warm(Box<warm::Sandbox>),
    /// In a container of its own, from the pulled image.
    Cold(Box<CachedImage>),
}

/// A warm sandbox for `image` when the pool keeps them and the image's
/// runner can serve one; else the image back, for a container of its own.
fn start_warm(
    pool: &Pool,
    sandbox: &Sandbox,
    image: Box<CachedImage>,
    options: &Options,
    task: uuid::Uuid,
) -> Ready {
    if !pool.enabled() || !WarmFunction::supported(&image.config) {
        return Ready::Cold(image);
    }
    let rootfs = RootFs::Overlay {
        lower: image.lower_dirs(),
    };
    match WarmFunction::start(sandbox, rootfs, &image.config, options) {
        Ok(function) => {
            pool.started();
            Ready::Warm(Box::new(warm::Sandbox {
                function,
                image: *image,
            }))
        }
        Err(e) => {
            tracing::warn!(%task, error = %e, "starting a warm sandbox; running cold");
            Ready::Cold(image)
        }
    }
}

/// Under `--require-signature`, the image pinned to the digest whose
/// signature verified — so the pull fetches what was verified even if the
/// tag moves meanwhile — or the task's failure. The image's own registry
/// is asked first; its mirrors (whose host the signature does not name)
/// only when it cannot answer. A verdict from a registry is final; a
/// registry that cannot answer is the platform's failure, retried.
async fn signed_image(
    ctx: &Context,
    task: &Task,
    image: Endpoint,
    started: Instant,
) -> Result<Result<Endpoint, TaskResult>, Retry> {
    let Some(key) = &ctx.config.require_signature else {
        return Ok(Ok(image));
    };
    let reference = match image {
        Endpoint::Registry(r) => r,
        layout => {
            ctx.metrics.signature_failure("no_registry");
            return Ok(Err(failed(
                task,
                "SignatureRejected",
                &format!("{layout}: an image in an OCI layout carries no signature to verify"),
                started,
            )));
        }
    };
    if let Some(pinned) = ctx.verified.get(&task.image).await {
        return Ok(Ok(Endpoint::Registry(pinned)));
    }
    let mut sources = vec![(reference.clone(), IdentityCheck::Repository)];
    sources.extend(
        ctx.config
            .pull
            .mirrors
            .iter()
            .filter_map(|m| reference.with_registry(m).ok())
            .map(|r| (r, IdentityCheck::Any)),
    );
    let mut unreachable = String::new();
    for (source, identity) in sources {
        match image_sign::verify(&ctx.client, &source, key, identity).await {
            Ok(verified) => {
                let digest = verified[0].payload.manifest_digest.clone();
                let pinned = reference.with_digest(digest);
                ctx.verified
                    .insert(task.image.clone(), pinned.clone())
                    .await;
                return Ok(Ok(Endpoint::Registry(pinned)));
            }
            Err(e @ (image_sign::Error::Registry(_) | image_sign::Error::ImageNotFound(_))) => {
                tracing::warn!(%source, error = %e, "verifying a signature");
                unreachable = e.to_string();
            }
            Err(e) => {
                ctx.metrics.signature_failure(e.reason());
                return Ok(Err(failed(
                    task,
                    "SignatureRejected",
                    &e.to_string(),
                    started,
                )));
            }
        }
    }
    ctx.metrics.signature_failure("registry");
    Err(Retry(format!(
        "verifying the signature of {reference}: {unreachable}"
    )))
}

/// A failure of the task itself (bad inputs, a bad image name): final.
fn failed(task: &Task, kind: &str, message: &str, started: Instant) -> TaskResult {
    tracing::info!(task = %task.id, kind, message, "task failed before running");
    TaskResult::Failed {
        error: serde_json::json!({"type": kind, "message": message, "traceback": null}),
        output_key: None,
        duration_ms: Some(started.elapsed().as_millis() as u64),
    }
}
