//! `/health`, `/metrics` and `/openapi.json`: no key needed.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::Api;

/// Liveness (the process answers) and readiness of what it needs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every part answers, else `degraded`.
    pub status: String,
    /// The records' database.
    pub database: String,
    /// The queue.
    pub queue: String,
    /// The object store.
    pub objects: String,
}

/// 200 when the database, the queue and the object store answer, 503
/// otherwise; the body says which part failed.
#[utoipa::path(get, path = "/health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn health(State(api): State<Api>) -> (StatusCode, Json<Health>) {
    let jobs = api.jobs().health().await;
    let objects = api.inner.objects.health().await;
    let word = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let objects = objects.map_err(|e| e.to_string());
    let ok = jobs.database.is_ok() && jobs.queue.is_ok() && objects.is_ok();
    let body = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        database: word(&jobs.database),
        queue: word(&jobs.queue),
        objects: word(&objects),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus text: builds by status and duration, tasks by outcome and
/// duration, queue depth, result-cache hits, HTTP requests; with a worker
/// in the process, its layer cache and registry failovers too.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub(crate) async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    let mut extra = String::new();
    match api.jobs().queue_depth().await {
        Ok(depth) => extra.push_str(&format!(
            "# HELP hoist_queue_depth Work waiting in the queue.\n# TYPE hoist_queue_depth gauge\nhoist_queue_depth {depth}\n"
        )),
        Err(e) => tracing::warn!(error = %e, "reading the queue depth"),
    }
    if let Some(more) = &api.inner.config.extra_metrics {
        extra.push_str(&more());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.inner.metrics.to_prometheus(&extra),
    )
}

/// This API's OpenAPI 3 document, generated from the code.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".into()),
    )
}
