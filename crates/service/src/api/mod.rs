//! The HTTP API (axum): functions, invocations, tasks, builds and their
//! live stream, health, metrics and the OpenAPI document.
//!
//! - **Auth**: `Authorization: Bearer KEY` on every `/v1` route; a missing
//!   or unknown key is 401, another owner's object 403. Keys are stored
//!   hashed (`jobs`); the caller's owner is recorded as `created_by`.
//! - **Limits**: request bodies are capped ([`ApiConfig::max_body_bytes`]);
//!   submissions (new functions, invocations) are rate-limited per key
//!   with a token bucket: over it, 429 with `Retry-After`.
//! - **Errors** are JSON: `{"error": {"code", "message"}}`, and a function
//!   that fails validation is 422 with every problem (`file:line:col`).
//!
//! [`Api::router`] builds the router a server or a test calls.

mod builds;
mod console;
mod functions;
mod openapi;
mod releases;
mod system;
mod tasks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jobs::{ApiKey, Jobs};
use serde::Serialize;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::ToSchema;

pub use openapi::ApiDoc;

use crate::{Metrics, Objects, ResultCache};

/// The API's settings.
///
/// ```
/// let config = service::api::ApiConfig::default();
/// assert_eq!(config.max_body_bytes, 8 << 20);
/// assert_eq!(config.result_ttl.as_secs(), 3600);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// The largest request body (8 MiB: code under 1 MB, inputs up to the
    /// function's `/io`).
    pub max_body_bytes: usize,
    /// The largest inputs of one invocation (6 MiB).
    pub max_inputs_bytes: usize,
    /// Submissions per second each key may make, on average (5).
    pub submissions_per_second: f64,
    /// Submissions a key may make at once (20).
    pub submission_burst: f64,
    /// The longest `?wait=` honoured (300 s, the functions' own limit).
    pub max_wait: Duration,
    /// How long completed outputs are cached (1 hour, as the seeds).
    pub result_ttl: Duration,
    /// What a function may contain (the validator's policy).
    pub policy: function_check::Policy,
    /// Registries a request may name its own base image in (none by
    /// default: only the service's default base is used).
    pub base_registries: Vec<String>,
    /// Registries release builds may push to (none by default: releases
    /// are refused until one is allowed).
    pub release_registries: Vec<String>,
    /// Whether a release build may ask for the network in `RUN` (no).
    pub release_network: bool,
    /// The largest artifact an upload may be (2 GiB).
    pub max_artifact_bytes: u64,
    /// The URL clients reach the API at, for `websocket_url` (default: the
    /// request's `Host`).
    pub public_url: Option<String>,
    /// More metrics text for `/metrics` (a worker in the same process).
    pub extra_metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_inputs_bytes: 6 << 20,
            submissions_per_second: 5.0,
            submission_burst: 20.0,
            max_wait: Duration::from_secs(300),
            result_ttl: Duration::from_secs(3600),
            policy: function_check::Policy::default(),
            base_registries: Vec::new(),
            release_registries: Vec::new(),
            release_network: false,
            max_artifact_bytes: 2 << 30,
            public_url: None,
            extra_metrics: None,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("submissions_per_second", &self.submissions_per_second)
            .field("submission_burst", &self.submission_burst)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The API's shared state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Api {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: Jobs,
    objects: Objects,
    metrics: Arc<Metrics>,
    results: ResultCache,
    config: ApiConfig,
    buckets: Mutex<HashMap<uuid::Uuid, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Api {
    /// An API over `jobs` and `objects`, caching results in process.
    pub fn new(jobs: Jobs, objects: Objects, metrics: Arc<Metrics>, config: ApiConfig) -> Self {
        let results = ResultCache::memory(config.result_ttl, 64 << 20);
        Self::with_results(jobs, objects, metrics, results, config)
    }

    /// The same with another result cache (Redis, or none).
    pub fn with_results(
        jobs: Jobs,
        objects: Objects,
        metrics: Arc<Metrics>,
        results: ResultCache,
        config: ApiConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                jobs,
                objects,
                metrics,
                results,
                config,
                buckets: Mutex::default(),
            }),
        }
    }

    /// The router: every route, with the body limit and request metrics.
    pub fn router(&self) -> Router {
        let limit = self.inner.config.max_body_bytes;
        // Uploads have their own, larger limit; they are streamed. The
        // layer refuses a declared length over it (and a stream far over
        // it); the handler counts the bytes itself and stops first at the
        // limit, so a stream that runs over gets the same 413.
        let uploads = Router::new()
            .route("/v1/artifacts", post(releases::upload))
            .layer(RequestBodyLimitLayer::new(
                usize::try_from(self.inner.config.max_artifact_bytes.saturating_add(1 << 20))
                    .unwrap_or(usize::MAX),
            ));
        Router::new()
            .route(
                "/v1/functions",
                post(functions::create).get(functions::list),
            )
            .route(
                "/v1/functions/{id}",
                get(functions::show).delete(functions::delete),
            )
            .route("/v1/functions/{id}/invoke", post(functions::invoke))
            .route("/v1/tasks/{id}", get(tasks::show))
            .route("/v1/artifacts/{id}", get(releases::show_artifact))
            .route("/v1/releases/build", post(releases::create))
            .route("/v1/releases/options", get(releases::options))
            .route("/v1/builds", get(builds::list))
            .route("/v1/builds/{id}", get(builds::show).delete(builds::cancel))
            .route("/v1/builds/{id}/stream", get(builds::stream))
            .route("/health", get(system::health))
            .route("/metrics", get(system::metrics))
            .route("/openapi.json", get(system::openapi))
            .route("/", get(console::index))
            .route("/console/{file}", get(console::file))
            .layer(RequestBodyLimitLayer::new(limit))
            .merge(uploads)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                count_requests,
            ))
            .with_state(self.clone())
    }

    fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// Takes one submission token from `key`'s bucket, or says how long
    /// until one is there.
    fn submit(&self, key: &ApiKey) -> Result<(), ApiError> {
        let rate = self.inner.config.submissions_per_second.max(0.001);
        let burst = self.inner.config.submission_burst.max(1.0);
        let now = Instant::now();
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.id).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many submissions: try again in {wait} s"),
        )
        .retry_after(wait))
    }
}

/// Counts every answer by route (its pattern, not the path: ids would
/// make a series each) and status.
async fn count_requests(State(api): State<Api>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    api.inner
        .metrics
        .request(&route, response.status().as_u16());
    response
}

/// The authenticated caller of a `/v1` route.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) ApiKey);

impl Caller {
    /// 403 unless the caller owns what belongs to `owner`.
    pub(crate) fn may_see(&self, owner: &str) -> Result<(), ApiError> {
        if self.0.owner == owner {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this belongs to another owner",
            ))
        }
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let unauthorized = |message: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned())
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("an API key is needed: Authorization: Bearer KEY"))?;
        let secret = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer KEY`"))?;
        match api.jobs().authenticate(secret).await {
            Ok(Some(key)) => Ok(Caller(key)),
            Ok(None) => Err(unauthorized("unknown or revoked API key")),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

/// An error answer: `{"error": {"code", "message"}}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<u64>,
}

/// The JSON of an error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`not_found`, `invalid_function`...).
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// For `invalid_function`: every problem as `file:line:col: message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    code: code.to_owned(),
                    message: message.into(),
                    problems: None,
                },
            },
            retry_after: None,
        }
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A failure of the service itself: logged whole, answered briefly.
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed; see its log",
        )
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn with_problems(mut self, problems: Vec<String>) -> Self {
        self.body.error.problems = Some(problems);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<jobs::Error> for ApiError {
    fn from(e: jobs::Error) -> Self {
        Self::internal(e)
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        Self::internal(e)
    }
}

/// Pagination of list routes.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct PageQuery {
    /// Items per page (default 20, at most 100).
    pub limit: Option<u32>,
    /// Items skipped.
    pub offset: Option<u32>,
}

impl PageQuery {
    pub(crate) fn page(&self) -> jobs::Page {
        jobs::Page::new(
            self.limit.unwrap_or(20).clamp(1, 100),
            u64::from(self.offset.unwrap_or(0)),
        )
    }
}

/// The `ws://` URL of a build's stream, from the configured public URL or
/// the request's `Host`.
pub(crate) fn stream_url(api: &Api, host: Option<&str>, build: uuid::Uuid) -> String {
    let base = match &api.inner.config.public_url {
        Some(url) => url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1),
        None => format!("ws://{}", host.unwrap_or("localhost")),
    };
    format!("{}/v1/builds/{build}/stream", base.trim_end_matches('/'))
}
