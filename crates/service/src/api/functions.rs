//! `/v1/functions`: submit, list, show, delete, invoke.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use jobs::{BuildKind, NewBuild, NewFunction, NewTask, TaskStatus};
use oci_model::{Digest, Endpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::tasks::{TaskView, task_view};
use super::{Api, ApiError, Caller, PageQuery, stream_url};
use crate::worker::FunctionBuildSpec;
use crate::{ResultCache, keys};

/// A function to build: `user_function.py`'s text and, optionally,
/// `requirements.txt`'s.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateFunction {
    /// Lowercase letters and digits, separated by single `.`, `_` or `-`.
    pub name: String,
    /// Tag characters (`[A-Za-z0-9_.-]`), at most 64.
    pub version: String,
    /// The Python source defining `handler(inputs: dict) -> dict`.
    pub code: String,
    /// PEP 508 lines, wheels only.
    pub requirements: Option<String>,
    /// A base image in an allowed registry (default: the service's).
    pub base: Option<String>,
}

/// A submitted function and its build.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionCreated {
    /// The function.
    pub function_id: Uuid,
    /// Its build job.
    pub build_id: Uuid,
    /// The build's status (`pending`).
    pub status: String,
    /// Where the build's progress and logs stream.
    pub websocket_url: String,
}

/// A function.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionView {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Who submitted it.
    pub owner: String,
    /// SHA-256 of its code.
    pub code_hash: String,
    /// Its requirements.
    pub requirements: Option<String>,
    /// The base it was asked to be built on.
    pub base: Option<String>,
    /// Its image once built: `REF@DIGEST` or `oci:DIR:TAG`.
    pub image: Option<String>,
    /// The image's manifest digest.
    pub image_digest: Option<String>,
    /// Its build job.
    pub build_id: Option<Uuid>,
    /// When it was submitted (RFC 3339).
    pub created_at: String,
}

/// A page of functions.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionList {
    /// The functions, newest first.
    pub functions: Vec<FunctionView>,
    /// How many there are in all.
    pub total: u64,
    /// The page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// An invocation.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Invoke {
    /// The handler's inputs: a JSON object.
    pub inputs: serde_json::Value,
}

/// Query of an invocation.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InvokeQuery {
    /// Seconds to wait for the result (0: answer at once with the task).
    pub wait: Option<f64>,
    /// `false` skips the result cache.
    pub cache: Option<bool>,
}

pub(crate) fn view(f: jobs::Function) -> FunctionView {
    FunctionView {
        id: f.id,
        name: f.name,
        version: f.version,
        owner: f.owner,
        code_hash: f.code_hash,
        requirements: (!f.requirements.is_empty()).then_some(f.requirements),
        base: f.base,
        image: f.image,
        image_digest: f.image_digest,
        build_id: f.build_id,
        created_at: f.created_at.to_rfc3339(),
    }
}

/// `[a-z0-9]` runs joined by single `.`, `_` or `-`: a name the image
/// template takes as it is.
fn is_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split(['.', '_', '-']).all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn is_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Submits a function: validated (every problem at once, 422), recorded,
/// its build queued.
#[utoipa::path(post, path = "/v1/functions", request_body = CreateFunction,
    responses((status = 202, body = FunctionCreated), (status = 422, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody), (status = 429, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    Json(new): Json<CreateFunction>,
) -> Result<(StatusCode, Json<FunctionCreated>), ApiError> {
    api.submit(&caller.0)?;
    let invalid = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_function",
            message,
        )
    };
    if !is_component(&new.name) {
        return Err(invalid(format!(
            "name `{}` must be lowercase letters and digits separated by single '.', '_' or '-' (at most 64)",
            new.name
        )));
    }
    if !is_version(&new.version) {
        return Err(invalid(format!(
            "version `{}` must be letters, digits, '.', '_' or '-' (at most 64)",
            new.version
        )));
    }
    if let Some(base) = &new.base {
        check_base(&api, base).map_err(invalid)?;
    }
    let problems = validate(&api, &new).await?;
    if !problems.is_empty() {
        return Err(invalid(format!(
            "the function is invalid: {} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ))
        .with_problems(problems));
    }
    let owner = caller.0.owner.clone();
    let function = api
        .jobs()
        .create_function(NewFunction {
            owner: owner.clone(),
            name: new.name.clone(),
            version: new.version.clone(),
            code_hash: Digest::of(new.code.as_bytes()).to_string(),
            requirements: new.requirements.clone().unwrap_or_default(),
            base: new.base.clone(),
        })
        .await?;
    // The code is in place before the build is queued: a worker reads it.
    api.inner
        .objects
        .put(&keys::code(function.id), Bytes::from(new.code))
        .await?;
    let spec = FunctionBuildSpec {
        function_id: function.id,
        owner: owner.clone(),
        name: new.name,
        version: new.version,
        base: new.base,
        requirements: new.requirements,
    };
    let build = api
        .jobs()
        .create_build(NewBuild {
            id: None,
            kind: BuildKind::Function,
            function_id: Some(function.id),
            spec: serde_json::to_value(&spec).map_err(ApiError::internal)?,
            created_by: Some(owner),
        })
        .await?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Ok((
        StatusCode::ACCEPTED,
        Json(FunctionCreated {
            function_id: function.id,
            build_id: build.id,
            status: build.status.to_string(),
            websocket_url: stream_url(&api, host, build.id),
        }),
    ))
}

/// A request's base must be a registry reference in an allowed registry:
/// a layout path would read the service's disk, and any host at all would
/// make workers fetch from wherever a user says.
fn check_base(api: &Api, base: &str) -> Result<(), String> {
    match base.parse::<Endpoint>() {
        Ok(Endpoint::Registry(r)) => {
            if api
                .inner
                .config
                .base_registries
                .iter()
                .any(|allowed| allowed == r.registry())
            {
                Ok(())
            } else {
                Err(format!(
                    "base registry `{}` is not allowed (allowed: {})",
                    r.registry(),
                    if api.inner.config.base_registries.is_empty() {
                        "none; omit `base` for the service's default".to_owned()
                    } else {
                        api.inner.config.base_registries.join(", ")
                    }
                ))
            }
        }
        Ok(Endpoint::Layout { .. }) => Err("base must be a registry reference".into()),
        Err(e) => Err(format!("base: {e}")),
    }
}

/// Every problem of the function, as `file:line:col: message`.
async fn validate(api: &Api, new: &CreateFunction) -> Result<Vec<String>, ApiError> {
    let dir = tempfile::tempdir().map_err(ApiError::internal)?;
    std::fs::write(dir.path().join(oci_build::naming::CODE_FILE), &new.code)
        .map_err(ApiError::internal)?;
    if let Some(r) = &new.requirements {
        std::fs::write(dir.path().join("requirements.txt"), r).map_err(ApiError::internal)?;
    }
    let policy = api.inner.config.policy.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let checked = function_check::check_dir(dir.path(), &policy);
        drop(dir);
        checked
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(checked.problems.iter().map(ToString::to_string).collect())
}

/// The caller's functions.
#[utoipa::path(get, path = "/v1/functions", params(PageQuery),
    responses((status = 200, body = FunctionList)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(api): State<Api>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<FunctionList>, ApiError> {
    let page = q.page();
    let listed = api.jobs().functions(Some(&caller.0.owner), page).await?;
    Ok(Json(FunctionList {
        functions: listed.items.into_iter().map(view).collect(),
        total: listed.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// The function, if the caller owns it.
async fn owned(api: &Api, caller: &Caller, id: Uuid) -> Result<jobs::Function, ApiError> {
    let f = api
        .jobs()
        .function(id)
        .await?
        .filter(|f| f.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found("function"))?;
    caller.may_see(&f.owner)?;
    Ok(f)
}

/// One function.
#[utoipa::path(get, path = "/v1/functions/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = FunctionView), (status = 403, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<FunctionView>, ApiError> {
    Ok(Json(view(owned(&api, &caller, id).await?)))
}

/// Deletes a function: it can no longer be invoked; its records stay.
#[utoipa::path(delete, path = "/v1/functions/{id}", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    owned(&api, &caller, id).await?;
    api.jobs().delete_function(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invokes a function: queues a task and answers at once (202), or with
/// the result when it comes within `?wait=SECONDS`; an identical
/// invocation of the same image within the hour is answered from the
/// result cache.
#[utoipa::path(post, path = "/v1/functions/{id}/invoke", request_body = Invoke,
    params(("id" = Uuid, Path), InvokeQuery),
    responses((status = 200, body = TaskView), (status = 202, body = TaskView),
              (status = 409, body = super::ErrorBody), (status = 429, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn invoke(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<InvokeQuery>,
    Json(body): Json<Invoke>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    api.submit(&caller.0)?;
    let function = owned(&api, &caller, id).await?;
    let (Some(image), Some(digest)) = (&function.image, &function.image_digest) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_built",
            "the function has no image yet: its build is not complete",
        ));
    };
    if !body.inputs.is_object() {
        return Err(ApiError::bad_request("`inputs` must be a JSON object"));
    }
    let inputs = body.inputs.to_string();
    if inputs.len() > api.inner.config.max_inputs_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the inputs are {} bytes; the limit is {}",
                inputs.len(),
                api.inner.config.max_inputs_bytes
            ),
        ));
    }
    let use_cache = q.cache.unwrap_or(true);
    let key = Digest::parse(digest)
        .ok()
        .map(|d| ResultCache::key(&d, &body.inputs));
    if use_cache && let Some(key) = &key {
        let hit = api.inner.results.get(key).await;
        api.inner.metrics.result_cache(hit.is_some());
        if let Some(output) = hit {
            return Ok((StatusCode::OK, Json(TaskView::cached(id, output))));
        }
    }
    let task_id = Uuid::new_v4();
    api.inner
        .objects
        .put(&keys::inputs(task_id), Bytes::from(inputs))
        .await?;
    let task = api
        .jobs()
        .create_task(NewTask {
            id: Some(task_id),
            function_id: id,
            image: image.clone(),
            inputs_key: keys::inputs(task_id),
            created_by: Some(caller.0.owner.clone()),
        })
        .await?;
    let wait = q
        .wait
        .filter(|w| w.is_finite() && *w > 0.0)
        .map(|w| Duration::from_secs_f64(w).min(api.inner.config.max_wait));
    let Some(wait) = wait else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(task_view(&api, task, false).await?),
        ));
    };
    let finished = api.jobs().wait_task(task.id, wait).await?;
    match finished {
        Some(done) => {
            let view = task_view(&api, done, false).await?;
            if use_cache
                && view.status == TaskStatus::Completed.to_string()
                && let (Some(key), Some(output)) = (&key, &view.output)
            {
                api.inner.results.put(key, output).await;
            }
            Ok((StatusCode::OK, Json(view)))
        }
        None => {
            let now = api
                .jobs()
                .task(task.id)
                .await?
                .ok_or_else(|| ApiError::not_found("task"))?;
            Ok((
                StatusCode::ACCEPTED,
                Json(task_view(&api, now, false).await?),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for good in ["hello", "a-b.c_d", "x9"] {
            assert!(is_component(good), "{good}");
        }
        for bad in ["", "Hello", "a--b", "-a", "a/b", &"x".repeat(65)] {
            assert!(!is_component(bad), "{bad}");
        }
        assert!(is_version("1.0.0-rc_1"));
        for bad in ["", "1 0", "1/0", &"1".repeat(65)] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}
