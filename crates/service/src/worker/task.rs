//! A task: the inputs from the object store, the image pulled through the
//! layer cache (failing over between registries), the handler run in the
//! sandbox with the seeds' limits, the output and logs stored, the result
//! recorded.

use std::time::Instant;

use bytes::Bytes;
use function_run::Reply;
use jobs::{Task, TaskResult, UsageKind};
use oci_model::Endpoint;
use sandbox_run::RootFs;

use super::Context;
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
    let pulled = ctx
        .puller
        .pull(&image)
        .await
        .map_err(|e| Retry(format!("pulling {image}: {e}")))?;
    if let Err(e) = ctx
        .jobs
        .record_usage(&task.image, &ctx.config.id, UsageKind::Run)
        .await
    {
        tracing::warn!(task = %task.id, error = %e, "recording image usage");
    }
    let rootfs = RootFs::Overlay {
        lower: pulled.lower_dirs(),
    };
    let config = pulled.config.clone();
    let sandbox = ctx.sandbox.clone();
    let options = ctx.config.invoke.clone();
    let done = tokio::task::spawn_blocking(move || {
        let done = function_run::invoke(&sandbox, rootfs, &config, &inputs, &options);
        // The image stays pinned in the cache until the run is over.
        drop(pulled);
        done
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

/// A failure of the task itself (bad inputs, a bad image name): final.
fn failed(task: &Task, kind: &str, message: &str, started: Instant) -> TaskResult {
    tracing::info!(task = %task.id, kind, message, "task failed before running");
    TaskResult::Failed {
        error: serde_json::json!({"type": kind, "message": message, "traceback": null}),
        output_key: None,
        duration_ms: Some(started.elapsed().as_millis() as u64),
    }
}
