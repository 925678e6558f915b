//! `/v1/builds`: status, list, cancel, and the live stream over a
//! WebSocket (a backlog first, then the seed's `progress`, `log`,
//! `complete` and `error` messages; closed after the last).

use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use jobs::{BuildEvent, BuildFilter, BuildStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Api, ApiError, Caller, PageQuery};

/// How long a WebSocket client has to send its key when its request
/// carried none (browsers cannot set headers on a WebSocket).
const AUTH_WAIT: Duration = Duration::from_secs(10);

/// A build job.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildView {
    /// Its id.
    pub id: Uuid,
    /// `function` or `release`.
    pub kind: String,
    /// The function it builds.
    pub function_id: Option<Uuid>,
    /// `pending`, `downloading_artifacts`, `building`, `pushing`,
    /// `completed`, `failed` or `cancelled`.
    pub status: String,
    /// 0 to 100.
    pub progress: u8,
    /// What it is doing.
    pub current_step: Option<String>,
    /// The image, once completed.
    pub image_url: Option<String>,
    /// Its manifest digest.
    pub image_digest: Option<String>,
    /// Config plus layers, in bytes.
    pub size_bytes: Option<u64>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The step it failed in, when known.
    pub error_step: Option<String>,
    /// Whether cancelling it was asked.
    pub cancel_requested: bool,
    /// Who submitted it.
    pub created_by: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// When a worker started it.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
    /// The vulnerability gate's summary of its image, when the worker
    /// scanned it: `{"critical": N, "high": N, "warnings": ["PyYAML 5.3.1
    /// has CRITICAL CVE-2020-14343", …]}`.
    #[schema(value_type = Option<Object>)]
    pub vulnerabilities: Option<Value>,
}

/// A page of builds.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildList {
    /// The builds, newest first.
    pub builds: Vec<BuildView>,
    /// How many match in all.
    pub total: u64,
    /// The page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// Filters of the build list (the caller's own builds only).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct BuildQuery {
    /// Only builds in this status.
    pub status: Option<String>,
    /// Only builds of this function.
    pub function_id: Option<Uuid>,
    /// Only builds by this owner (must be the caller).
    pub created_by: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<u32>,
    /// Items skipped.
    pub offset: Option<u32>,
}

/// The answer to a cancellation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    /// What happened.
    pub message: String,
    /// The build's status now (`cancelled`, or still running until its
    /// worker stops it, within seconds).
    pub status: String,
}

pub(crate) fn view(b: jobs::Build) -> BuildView {
    BuildView {
        id: b.id,
        kind: b.kind.to_string(),
        function_id: b.function_id,
        status: b.status.to_string(),
        progress: b.progress,
        current_step: b.current_step,
        image_url: b.image_url,
        image_digest: b.image_digest,
        size_bytes: b.size_bytes,
        error_message: b.error_message,
        error_step: b.error_step,
        cancel_requested: b.cancel_requested,
        created_by: b.created_by.unwrap_or_default(),
        created_at: b.created_at.to_rfc3339(),
        started_at: b.started_at.map(|t| t.to_rfc3339()),
        completed_at: b.completed_at.map(|t| t.to_rfc3339()),
        vulnerabilities: b.vulnerabilities,
    }
}

async fn owned(api: &Api, caller: &Caller, id: Uuid) -> Result<jobs::Build, ApiError> {
    let b = api
        .jobs()
        .build(id)
        .await?
        .ok_or_else(|| ApiError::not_found("build"))?;
    caller.may_see(b.created_by.as_deref().unwrap_or_default())?;
    Ok(b)
}

/// One build.
#[utoipa::path(get, path = "/v1/builds/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = BuildView), (status = 403, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<BuildView>, ApiError> {
    Ok(Json(view(owned(&api, &caller, id).await?)))
}

/// The caller's builds, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/builds", params(BuildQuery),
    responses((status = 200, body = BuildList), (status = 403, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(api): State<Api>,
    caller: Caller,
    Query(q): Query<BuildQuery>,
) -> Result<Json<BuildList>, ApiError> {
    if let Some(by) = &q.created_by {
        caller.may_see(by)?;
    }
    let status = match &q.status {
        Some(s) => Some(
            s.parse::<BuildStatus>()
                .map_err(|_| ApiError::bad_request(format!("`{s}` is not a build status")))?,
        ),
        None => None,
    };
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page();
    let filter = BuildFilter {
        status,
        function_id: q.function_id,
        created_by: Some(caller.0.owner.clone()),
    };
    let listed = api.jobs().builds(filter, page).await?;
    Ok(Json(BuildList {
        builds: listed.items.into_iter().map(view).collect(),
        total: listed.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// Cancels a build: a pending one never starts; a running one stops
/// within seconds and ends `cancelled`.
#[utoipa::path(delete, path = "/v1/builds/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = Cancelled), (status = 409, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Cancelled>, ApiError> {
    let build = owned(&api, &caller, id).await?;
    if build.status.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_final",
            format!("the build is already {}", build.status),
        ));
    }
    let status = api
        .jobs()
        .cancel_build(id)
        .await?
        .ok_or_else(|| ApiError::not_found("build"))?;
    let message = if status == BuildStatus::Cancelled {
        "Build job cancelled"
    } else {
        "Cancelling: the build stops within seconds"
    };
    Ok(Json(Cancelled {
        message: message.into(),
        status: status.to_string(),
    }))
}

/// The build's live stream. The key comes in the `Authorization` header,
/// or, from a browser, as the first message: `{"type": "auth", "key": "..."}`.
#[utoipa::path(get, path = "/v1/builds/{id}/stream", params(("id" = Uuid, Path)),
    responses((status = 101, description = "WebSocket: backlog, then progress, log, complete or error")))]
pub(crate) async fn stream(
    State(api): State<Api>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_owned());
    upgrade
        .on_upgrade(move |socket| async move {
            if let Err(e) = serve_stream(api, id, header_key, socket).await {
                tracing::debug!(build = %id, error = %e.body.error.message, "stream ended");
            }
        })
        .into_response()
}

async fn serve_stream(
    api: Api,
    id: Uuid,
    header_key: Option<String>,
    mut socket: WebSocket,
) -> Result<(), ApiError> {
    let key = match header_key {
        Some(k) => Some(k),
        None => first_message_key(&mut socket).await,
    };
    let caller = match key {
        Some(k) => api.jobs().authenticate(&k).await?.map(Caller),
        None => None,
    };
    let Some(caller) = caller else {
        send(
            &mut socket,
            json!({"type": "error", "status": "unauthorized", "error": "an API key is needed"}),
        )
        .await;
        let _ = socket.close().await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no key",
        ));
    };
    let build = match owned(&api, &caller, id).await {
        Ok(b) => b,
        Err(e) => {
            send(&mut socket, json!({"type": "error", "status": e.body.error.code, "error": e.body.error.message})).await;
            let _ = socket.close().await;
            return Err(e);
        }
    };
    let subscription = api.jobs().subscribe(id).await?;
    let backlog: Vec<Value> = subscription.backlog.iter().map(message).collect();
    let mut done = subscription.backlog.iter().any(BuildEvent::is_final);
    let view = view(build);
    if !send(
        &mut socket,
        json!({"type": "backlog", "build": view, "messages": backlog}),
    )
    .await
    {
        return Ok(());
    }
    let mut live = subscription.live;
    while !done {
        tokio::select! {
            event = live.next() => match event {
                Some(event) => {
                    done = event.is_final();
                    if !send(&mut socket, message(&event)).await {
                        return Ok(());
                    }
                }
                None => break,
            },
            // The client went away (or sent something: ignored).
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.close().await;
    Ok(())
}

/// The key of a first message `{"type": "auth", "key": "..."}`.
async fn first_message_key(socket: &mut WebSocket) -> Option<String> {
    let first = tokio::time::timeout(AUTH_WAIT, socket.recv())
        .await
        .ok()??
        .ok()?;
    let Message::Text(text) = first else {
        return None;
    };
    let v: Value = serde_json::from_str(text.as_str()).ok()?;
    (v["type"] == "auth")
        .then(|| v["key"].as_str().map(str::to_owned))
        .flatten()
}

async fn send(socket: &mut WebSocket, value: Value) -> bool {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

/// An event as the seed's message (`jobs` serializes them so).
fn message(event: &BuildEvent) -> Value {
    serde_json::to_value(event).unwrap_or_else(|e| json!({"type": "error", "error": e.to_string()}))
}
