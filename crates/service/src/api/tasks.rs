//! `/v1/tasks/{id}`: a task's status, output or error, timings and logs.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Api, ApiError, Caller};
use crate::keys;

/// The most log bytes shown per stream.
const LOG_BYTES: u64 = 64 << 10;
/// The largest output read back for an answer.
const OUTPUT_BYTES: u64 = 16 << 20;
/// The largest stored log read (workers store at most 1 MiB a stream).
const LOG_READ_BYTES: u64 = 4 << 20;

/// A task: its status and, once final, its output or error.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// The task (none for an answer from the result cache).
    pub task_id: Option<Uuid>,
    /// The function invoked.
    pub function_id: Uuid,
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    /// The handler's output, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// The error (`type`, `message`, `traceback`), once failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// Whether the answer came from the result cache.
    pub cached: bool,
    /// Runs started (more than one after a worker died mid-task).
    pub attempts: u32,
    /// The worker that ran it last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// When it was queued (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When its last run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The worker's time on it, pull and run included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Its standard output and error (the first 64 KiB of each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<Logs>,
}

/// A run's captured output.
#[derive(Debug, Serialize, ToSchema)]
pub struct Logs {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl TaskView {
    /// An answer from the result cache.
    pub(crate) fn cached(function_id: Uuid, output: serde_json::Value) -> Self {
        Self {
            task_id: None,
            function_id,
            status: "completed".into(),
            output: Some(output),
            error: None,
            cached: true,
            attempts: 0,
            worker: None,
            created_at: None,
            started_at: None,
            completed_at: None,
            duration_ms: None,
            logs: None,
        }
    }
}

/// The view of `task`, its output read from the object store once final,
/// and its logs with `logs`.
pub(crate) async fn task_view(
    api: &Api,
    task: jobs::Task,
    logs: bool,
) -> Result<TaskView, ApiError> {
    let objects = &api.inner.objects;
    let output = match (&task.status, &task.output_key) {
        (jobs::TaskStatus::Completed, Some(key)) => objects
            .get(key, OUTPUT_BYTES)
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok()),
        _ => None,
    };
    let logs = if logs {
        let text = |b: Option<bytes::Bytes>| {
            b.map(|b| String::from_utf8_lossy(&b[..b.len().min(LOG_BYTES as usize)]).into_owned())
                .unwrap_or_default()
        };
        let stdout = objects.get(&keys::stdout(task.id), LOG_READ_BYTES).await?;
        let stderr = objects.get(&keys::stderr(task.id), LOG_READ_BYTES).await?;
        Some(Logs {
            stdout: text(stdout),
            stderr: text(stderr),
        })
    } else {
        None
    };
    Ok(TaskView {
        task_id: Some(task.id),
        function_id: task.function_id,
        status: task.status.to_string(),
        output,
        error: task.error,
        cached: false,
        attempts: task.attempts,
        worker: task.worker,
        created_at: Some(task.created_at.to_rfc3339()),
        started_at: task.started_at.map(|t| t.to_rfc3339()),
        completed_at: task.completed_at.map(|t| t.to_rfc3339()),
        duration_ms: task.duration_ms,
        logs,
    })
}

/// One task, if the caller queued it.
#[utoipa::path(get, path = "/v1/tasks/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskView), (status = 403, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<TaskView>, ApiError> {
    let task = api
        .jobs()
        .task(id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    caller.may_see(task.created_by.as_deref().unwrap_or_default())?;
    Ok(Json(task_view(&api, task, true).await?))
}
