//! `/v1/artifacts` and `/v1/releases/build`: files uploaded for release
//! builds, and release builds from a Dockerfile (docker-release-system.md).
//!
//! An artifact is uploaded as the raw request body, streamed to the object
//! store in parts (never whole in memory) up to
//! [`ApiConfig::max_artifact_bytes`](super::ApiConfig::max_artifact_bytes);
//! its record (name, size, SHA-256, owner) is written after its bytes, so
//! an upload cut short leaves no artifact. A release build names its
//! artifacts by id; the worker copies them into the build context under
//! their names, checking size and digest.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use dockerfile_syntax::parse_dockerfile;
use jobs::{BuildKind, NewBuild};
use oci_model::{Digest, Platform, Reference};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Api, ApiError, Caller, stream_url};
use crate::keys;
use crate::worker::{ArtifactRef, ReleaseBuildSpec};

/// The largest Dockerfile a release may have (1 MiB).
pub const MAX_DOCKERFILE_BYTES: usize = 1 << 20;
/// The most artifacts one release may name.
pub const MAX_ARTIFACTS: usize = 32;
/// The most build arguments one release may pass.
pub const MAX_BUILD_ARGS: usize = 64;

/// An uploaded artifact.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ArtifactView {
    /// Its id.
    pub id: Uuid,
    /// Its file name in a build context.
    pub name: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// `sha256:…` of its bytes.
    pub digest: String,
    /// Who uploaded it.
    pub owner: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// Query of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file name the artifact has in a build context: letters, digits,
    /// `.`, `_`, `-`, not starting with `.` (at most 128).
    pub name: String,
}

/// A release build request (the seed's `POST /v1/releases/build`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRelease {
    /// The Dockerfile, base64-encoded (at most 1 MiB decoded).
    pub dockerfile: String,
    /// The registry to push to: one of the server's allowed registries.
    pub target_registry: String,
    /// The repository in it, e.g. `myorg/mymodel` (lowercase components).
    pub image_name: String,
    /// The tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, never `latest`.
    pub image_tag: String,
    /// `--build-arg` values.
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// The platform to build for (default `linux/amd64`).
    pub platform: Option<String>,
    /// The stage to build (default: the last).
    pub target: Option<String>,
    /// Uploaded artifacts copied into the build context.
    #[serde(default)]
    pub artifact_ids: Vec<Uuid>,
    /// `host` to let `RUN` use the network, when the server allows it
    /// (default `none`).
    pub network: Option<String>,
    /// The release's version, recorded with the build.
    pub version: Option<String>,
    /// Free text recorded with the build.
    pub release_notes: Option<String>,
}

/// What a release request may ask for on this server: the console's
/// choices, the same rules the server checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseOptions {
    /// Registries a release may push to (the allow-list; nothing else is
    /// accepted).
    pub registries: Vec<String>,
    /// Whether `RUN` may use the network (`"network": "host"`).
    pub network: bool,
    /// Platforms the workers build for: their own (a `RUN` needs the
    /// platform's binaries to run; there is no emulation).
    pub platforms: Vec<String>,
    /// The largest artifact an upload may be, in bytes.
    pub max_artifact_bytes: u64,
}

/// The release options of this server.
#[utoipa::path(get, path = "/v1/releases/options",
    responses((status = 200, body = ReleaseOptions)), security(("bearer" = [])))]
pub(crate) async fn options(State(api): State<Api>, _caller: Caller) -> Json<ReleaseOptions> {
    let config = &api.inner.config;
    Json(ReleaseOptions {
        registries: config.release_registries.clone(),
        network: config.release_network,
        platforms: vec![layer_cache::host_platform().to_string()],
        max_artifact_bytes: config.max_artifact_bytes,
    })
}

/// A queued release build.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseCreated {
    /// The build job.
    pub job_id: Uuid,
    /// Its status (`pending`).
    pub status: String,
    /// The image it will push: `REGISTRY/NAME:TAG`.
    pub image: String,
    /// Where its progress and logs stream.
    pub websocket_url: String,
    /// When it was queued (RFC 3339).
    pub created_at: String,
}

/// A file name an artifact may have in a build context.
fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Uploads an artifact: the raw body, streamed to the object store.
#[utoipa::path(post, path = "/v1/artifacts", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ArtifactView), (status = 413, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn upload(
    State(api): State<Api>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Result<(StatusCode, Json<ArtifactView>), ApiError> {
    api.submit(&caller.0)?;
    if !is_file_name(&q.name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_artifact",
            format!(
                "name `{}` must be letters, digits, '.', '_' or '-', not start with '.', at most 128",
                q.name
            ),
        ));
    }
    let id = Uuid::now_v7();
    let limit = api.inner.config.max_artifact_bytes;
    let key = keys::artifact(id);
    let stored = api
        .inner
        .objects
        .put_stream(&key, body.into_data_stream(), limit)
        .await;
    let (size, digest) = match stored {
        Ok(s) => s,
        Err(crate::Error::TooLarge { .. }) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("an artifact may be at most {limit} bytes"),
            ));
        }
        Err(crate::Error::Body(reason)) => {
            return Err(ApiError::bad_request(format!(
                "the upload was cut short: {reason}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let view = ArtifactView {
        id,
        name: q.name,
        size_bytes: size,
        digest: digest.to_string(),
        owner: caller.0.owner.clone(),
        created_at: Utc::now().to_rfc3339(),
    };
    let record = serde_json::to_vec(&view).expect("a record serializes");
    if let Err(e) = api
        .inner
        .objects
        .put(&keys::artifact_record(id), Bytes::from(record))
        .await
    {
        let _ = api.inner.objects.delete(&key).await;
        return Err(e.into());
    }
    Ok((StatusCode::CREATED, Json(view)))
}

/// The record of artifact `id`, if it exists.
async fn artifact(api: &Api, id: Uuid) -> Result<Option<ArtifactView>, ApiError> {
    let Some(bytes) = api
        .inner
        .objects
        .get(&keys::artifact_record(id), 64 << 10)
        .await?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("artifact {id}'s record: {e}")))
}

/// One artifact's record.
#[utoipa::path(get, path = "/v1/artifacts/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = ArtifactView), (status = 403, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn show_artifact(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ArtifactView>, ApiError> {
    let view = artifact(&api, id)
        .await?
        .ok_or_else(|| ApiError::not_found("artifact"))?;
    caller.may_see(&view.owner)?;
    Ok(Json(view))
}

/// What is wrong with a release request, if anything: every problem.
fn check(api: &Api, new: &CreateRelease) -> Vec<String> {
    let mut problems = Vec::new();
    let config = &api.inner.config;
    if !config
        .release_registries
        .iter()
        .any(|r| r == &new.target_registry)
    {
        problems.push(if config.release_registries.is_empty() {
            "target_registry: this server allows no release registry (hoist-api --release-registry)"
                .to_owned()
        } else {
            format!(
                "target_registry: `{}` is not allowed (allowed: {})",
                new.target_registry,
                config.release_registries.join(", ")
            )
        });
    }
    if !is_tag(&new.image_tag) {
        problems.push(format!(
            "image_tag: `{}` must be [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}",
            new.image_tag
        ));
    } else if new.image_tag == "latest" {
        problems.push(
            "image_tag: `latest` is refused: tag releases with a version or a git SHA".to_owned(),
        );
    }
    // The name alone (the registry is the allow-list's business).
    match Reference::parse(&format!("localhost:1/{}:x", new.image_name)) {
        Ok(r) if r.repository() == new.image_name => {}
        Ok(_) | Err(_) => problems.push(format!(
            "image_name: `{}` must be lowercase path components ([a-z0-9] separated by '.', '_', '__' or '-', joined by '/')",
            new.image_name
        )),
    }
    if new.build_args.len() > MAX_BUILD_ARGS {
        problems.push(format!(
            "build_args: at most {MAX_BUILD_ARGS}, {} given",
            new.build_args.len()
        ));
    }
    for (k, v) in &new.build_args {
        let name_ok = k.len() <= 128
            && k.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            problems.push(format!(
                "build_args: `{k}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
        if v.len() > 8192 || v.contains('\0') {
            problems.push(format!(
                "build_args: the value of `{k}` must be at most 8192 bytes, without NUL"
            ));
        }
    }
    if let Some(p) = &new.platform
        && let Err(e) = p.parse::<Platform>()
    {
        problems.push(format!("platform: {e}"));
    }
    match new.network.as_deref() {
        None | Some("none") => {}
        Some("host") if config.release_network => {}
        Some("host") => problems.push(
            "network: this server does not let release builds use the network (hoist-api --release-network)"
                .to_owned(),
        ),
        Some(other) => problems.push(format!("network: `{other}` is neither `none` nor `host`")),
    }
    if new.artifact_ids.len() > MAX_ARTIFACTS {
        problems.push(format!(
            "artifact_ids: at most {MAX_ARTIFACTS}, {} given",
            new.artifact_ids.len()
        ));
    }
    for (what, text, max) in [
        ("version", &new.version, 128),
        ("release_notes", &new.release_notes, 64 << 10),
        ("target", &new.target, 128),
    ] {
        if text.as_ref().is_some_and(|t| t.len() > max) {
            problems.push(format!("{what}: at most {max} bytes"));
        }
    }
    problems
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`: the distribution spec's tag.
fn is_tag(s: &str) -> bool {
    s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The Dockerfile's text, or every problem with it (`Dockerfile:LINE:COL`).
fn dockerfile_text(encoded: &str) -> Result<String, Vec<String>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| vec![format!("dockerfile: not base64: {e}")])?;
    if bytes.len() > MAX_DOCKERFILE_BYTES {
        return Err(vec![format!(
            "dockerfile: {} bytes, at most {MAX_DOCKERFILE_BYTES}",
            bytes.len()
        )]);
    }
    let text = String::from_utf8(bytes).map_err(|_| vec!["dockerfile: not UTF-8".to_owned()])?;
    let has_stage = parse_dockerfile::parse(&text)
        .map_err(|e| vec![format!("Dockerfile:{}:{}: {e}", e.line(), e.column())])?
        .stages()
        .next()
        .is_some();
    if !has_stage {
        return Err(vec!["Dockerfile:1:1: no FROM instruction".to_owned()]);
    }
    Ok(text)
}

/// Queues a release build: validated (every problem at once, 422), its
/// Dockerfile stored, its job recorded and queued.
#[utoipa::path(post, path = "/v1/releases/build", request_body = CreateRelease,
    responses((status = 202, body = ReleaseCreated), (status = 422, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody), (status = 429, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    Json(new): Json<CreateRelease>,
) -> Result<(StatusCode, Json<ReleaseCreated>), ApiError> {
    api.submit(&caller.0)?;
    let mut problems = check(&api, &new);
    let dockerfile = match dockerfile_text(&new.dockerfile) {
        Ok(text) => Some(text),
        Err(more) => {
            problems.extend(more);
            None
        }
    };
    let mut artifacts = Vec::with_capacity(new.artifact_ids.len());
    let mut names = std::collections::BTreeSet::new();
    for id in &new.artifact_ids {
        match artifact(&api, *id).await? {
            Some(a) if a.owner == caller.0.owner => {
                if !names.insert(a.name.clone()) {
                    problems.push(format!(
                        "artifact_ids: two artifacts are named `{}`",
                        a.name
                    ));
                }
                let digest: Digest = a
                    .digest
                    .parse()
                    .map_err(|e| ApiError::internal(format!("artifact {id}'s digest: {e}")))?;
                artifacts.push(ArtifactRef {
                    id: a.id,
                    name: a.name,
                    size_bytes: a.size_bytes,
                    digest,
                });
            }
            Some(_) | None => problems.push(format!("artifact_ids: no artifact {id}")),
        }
    }
    let Some(dockerfile) = dockerfile.filter(|_| problems.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_release",
            format!(
                "the release is invalid: {} problem{}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
        )
        .with_problems(problems));
    };
    let id = Uuid::now_v7();
    // The Dockerfile is in place before the build is queued: a worker
    // reads it.
    api.inner
        .objects
        .put(&keys::dockerfile(id), Bytes::from(dockerfile))
        .await?;
    let image = format!(
        "{}/{}:{}",
        new.target_registry, new.image_name, new.image_tag
    );
    let spec = ReleaseBuildSpec {
        owner: caller.0.owner.clone(),
        target_registry: new.target_registry,
        image_name: new.image_name,
        image_tag: new.image_tag,
        build_args: new.build_args,
        platform: new.platform,
        target: new.target,
        artifacts,
        network: new.network.as_deref() == Some("host"),
        version: new.version,
        release_notes: new.release_notes,
    };
    let mut record = NewBuild::new(
        BuildKind::Release,
        serde_json::to_value(&spec).expect("a spec serializes"),
    );
    record.id = Some(id);
    record.created_by = Some(caller.0.owner.clone());
    let build = match api.jobs().create_build(record).await {
        Ok(b) => b,
        Err(e) => {
            let _ = api.inner.objects.delete(&keys::dockerfile(id)).await;
            return Err(e.into());
        }
    };
    let created_at: DateTime<Utc> = build.created_at;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Ok((
        StatusCode::ACCEPTED,
        Json(ReleaseCreated {
            job_id: build.id,
            status: build.status.to_string(),
            image,
            websocket_url: stream_url(&api, host, build.id),
            created_at: created_at.to_rfc3339(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_stay_one_plain_file() {
        for good in ["model.bin", "weights-fp16.safetensors", "a_b"] {
            assert!(is_file_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".env",
            "a/b",
            "../x",
            "a b",
            "x\0",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!is_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for good in ["1.0.0-fp16", "v1", "_x", "sha-abc1234", "latest"] {
            assert!(is_tag(good), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(!is_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn dockerfiles_are_decoded_and_parsed_with_positions() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            dockerfile_text(&enc("FROM scratch\nCOPY a /\n")).unwrap(),
            "FROM scratch\nCOPY a /\n"
        );
        assert!(dockerfile_text("%%%").unwrap_err()[0].contains("not base64"));
        assert!(dockerfile_text(&enc("COPY a /\n")).is_err());
        let bad = dockerfile_text(&enc("FROM scratch\nFROBNICATE x\n")).unwrap_err();
        assert!(bad[0].starts_with("Dockerfile:2:"), "{bad:?}");
        let big = "#".repeat(MAX_DOCKERFILE_BYTES + 1);
        assert!(dockerfile_text(&enc(&big)).unwrap_err()[0].contains("at most"));
    }
}
