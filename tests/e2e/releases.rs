//! Release builds through the API (docker-release-system.md): artifacts
//! uploaded, a Dockerfile submitted, built by the worker of `hoist serve`,
//! pushed to a real registry, followed over the WebSocket; and what the
//! API and the worker refuse.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use testkit::Registry;

use super::service::{Client, Serve, stream};
use super::{hoist, hoist_ok};

/// Uploads `bytes` as artifact `name`.
async fn upload(api: &Client, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/artifacts?name={name}", api.url))
        .bearer_auth(&api.key)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Bytes that do not compress away.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE} AS base
ARG FLAVOR=plain
COPY model.bin /opt/model/
RUN echo "flavor=$FLAVOR" && sha256sum /opt/model/model.bin > /opt/model/SHA256SUMS
LABEL flavor=$FLAVOR
CMD ["cat", "/opt/model/SHA256SUMS"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_build_fetches_artifacts_builds_and_pushes() {
    let registry = Registry::start().await.unwrap();
    let host = registry.host();
    let serve = Serve::start(&["--release-registry", &host]);
    let api = &serve.client;
    let base = testkit::busybox_base().expect("busybox base").oci_ref();

    let model = noise(3 << 20);
    let (status, artifact) = upload(api, "model.bin", model.clone()).await;
    assert_eq!(status, 201, "{artifact}");
    let digest = oci_model::Digest::of(&model).to_string();
    assert_eq!(artifact["digest"], digest.as_str(), "{artifact}");
    assert_eq!(artifact["size_bytes"], model.len());
    let artifact_id = artifact["id"].as_str().unwrap().to_owned();
    let (status, shown) = api.get(&format!("/v1/artifacts/{artifact_id}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["name"], "model.bin");

    let (status, created) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": b64(DOCKERFILE),
                "target_registry": host,
                "image_name": "acme/model",
                "image_tag": "1.0.0-fp16",
                "build_args": {"BASE": base, "FLAVOR": "fp16"},
                "platform": "linux/amd64",
                "artifact_ids": [artifact_id],
                "version": "1.0.0",
                "release_notes": "first",
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["status"], "pending");
    let image = format!("{host}/acme/model:1.0.0-fp16");
    assert_eq!(created["image"], image.as_str());
    let job = created["job_id"].as_str().unwrap().to_owned();
    assert!(
        created["websocket_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/builds/{job}/stream")),
        "{created}"
    );

    // The stream: the statuses in order, every step with its number, the
    // RUN's output, then the result.
    let messages = stream(&api.url, &job, Some(&api.key)).await;
    let mut all: Vec<Value> = messages[0]["messages"].as_array().unwrap().clone();
    all.extend(messages[1..].iter().cloned());
    let statuses: Vec<&str> = all
        .iter()
        .filter(|m| m["type"] == "progress")
        .filter_map(|m| m["status"].as_str())
        .collect();
    let order = ["downloading_artifacts", "building", "pushing"];
    let firsts: Vec<usize> = order
        .iter()
        .map(|s| statuses.iter().position(|x| x == s).expect(s))
        .collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");
    let lines: Vec<&str> = all
        .iter()
        .filter(|m| m["type"] == "log")
        .filter_map(|m| m["line"].as_str())
        .collect();
    for wanted in [
        "Step 1/6 : FROM ",
        "Step 3/6 : COPY model.bin /opt/model/",
        "Step 4/6 : RUN echo",
        "flavor=fp16",
        "artifact 1/1: model.bin",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(wanted)),
            "{wanted:?} not in {lines:#?}"
        );
    }
    let progress: Vec<u64> = all
        .iter()
        .filter(|m| m["type"] == "progress")
        .filter_map(|m| m["progress"].as_u64())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let last = all.last().unwrap();
    assert_eq!(last["type"], "complete", "{all:#?}");
    assert_eq!(last["image_url"], image.as_str(), "{last}");

    let done = api.build_done(&job, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["kind"], "release", "{done}");
    assert_eq!(done["progress"], 100);
    let pushed = hoist_ok(&["digest", &image]);
    assert_eq!(pushed.trim(), done["image_digest"].as_str().unwrap());
    assert!(done["size_bytes"].as_u64().unwrap() > model.len() as u64 / 2);

    // The image holds the artifact, byte for byte, and runs.
    let cache = tempfile::tempdir().unwrap();
    let out = hoist(&["run", &image, "--cache-dir", cache.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sums = String::from_utf8_lossy(&out.stdout);
    assert!(
        sums.starts_with(digest.strip_prefix("sha256:").unwrap()),
        "{sums}"
    );
    let config: Value = serde_json::from_str(&hoist_ok(&["inspect", "--config", &image])).unwrap();
    assert_eq!(config["config"]["Labels"]["flavor"], "fp16", "{config}");

    // The same release again: every step from the cache, the same image.
    let (status, again) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": b64(DOCKERFILE),
                "target_registry": host,
                "image_name": "acme/model",
                "image_tag": "1.0.1",
                "build_args": {"BASE": base, "FLAVOR": "fp16"},
                "artifact_ids": [artifact_id],
            }),
        )
        .await;
    assert_eq!(status, 202, "{again}");
    let again = api
        .build_done(again["job_id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["image_digest"], done["image_digest"], "{again}");

    // A failing RUN: `failed`, at that step, with its output; nothing
    // pushed.
    let failing = format!("FROM {base}\nRUN echo about-to-fail && exit 3\n");
    let (status, created) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": b64(&failing),
                "target_registry": host,
                "image_name": "acme/broken",
                "image_tag": "1",
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let failed = api
        .build_done(
            created["job_id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error_message"].as_str().unwrap();
    assert!(
        error.contains("about-to-fail") && error.contains("status 3"),
        "{failed}"
    );
    assert!(error.contains(":2:"), "the Dockerfile line: {failed}");
    let out = hoist(&["digest", &format!("{host}/acme/broken:1")]);
    assert!(!out.status.success(), "nothing was pushed");

    // An artifact changed in the store after its upload: the build stops
    // before building, naming it.
    let (_, other) = upload(api, "weights.bin", noise(4096)).await;
    let other_id = other["id"].as_str().unwrap();
    let stored = serve
        .data
        .path()
        .join(format!("objects/artifacts/{other_id}/data"));
    let mut tampered = std::fs::read(&stored).unwrap();
    tampered[100] ^= 1;
    std::fs::write(&stored, tampered).unwrap();
    let (status, created) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": b64(&format!("FROM {base}\nCOPY weights.bin /\n")),
                "target_registry": host,
                "image_name": "acme/tampered",
                "image_tag": "1",
                "artifact_ids": [other_id],
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let failed = api
        .build_done(created["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error_message"].as_str().unwrap();
    assert!(error.contains("recorded"), "{failed}");
    // Nothing left of any build's scratch.
    let work = serve.data.path().join("worker/work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_requests_and_uploads_are_checked() {
    // 25 submissions with one key: over the default burst of 20 when they
    // come faster than the refill (rate limits have their own test).
    let serve = Serve::start(&[
        "--release-registry",
        "registry.example:5000",
        "--max-artifact",
        "1",
        "--burst",
        "100",
    ]);
    let api = &serve.client;
    let good = || {
        json!({
            "dockerfile": b64("FROM scratch\nCOPY a /\n"),
            "target_registry": "registry.example:5000",
            "image_name": "acme/app",
            "image_tag": "1.0",
        })
    };
    let refused = |status: u16, body: &Value, wanted: &str| {
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_release", "{body}");
        let problems = body["error"]["problems"].to_string();
        assert!(problems.contains(wanted), "{wanted:?} not in {body}");
    };

    let (status, _) = api.as_key("").post("/v1/releases/build", good()).await;
    assert_eq!(status, 401);
    let (status, _) = upload(&api.as_key(""), "x.bin", vec![1]).await;
    assert_eq!(status, 401);

    for (field, value, wanted) in [
        ("image_tag", json!("latest"), "`latest` is refused"),
        ("image_tag", json!("-x"), "image_tag"),
        ("image_name", json!("Acme/App"), "image_name"),
        ("image_name", json!("acme//app"), "image_name"),
        (
            "target_registry",
            json!("docker.io"),
            "`docker.io` is not allowed",
        ),
        ("dockerfile", json!("%%%"), "not base64"),
        (
            "dockerfile",
            json!(b64("FROM scratch\nNOPE x\n")),
            "Dockerfile:2:",
        ),
        ("dockerfile", json!(b64("# nothing\n")), "FROM instruction"),
        (
            "build_args",
            json!({"NOT-A-NAME": "1"}),
            "not a variable name",
        ),
        ("network", json!("host"), "does not let release builds"),
        ("platform", json!("linux"), "platform"),
        (
            "artifact_ids",
            json!(["0190c7f0-0000-7000-8000-000000000000"]),
            "no artifact",
        ),
    ] {
        let mut body = good();
        body[field] = value;
        let (status, answer) = api.post("/v1/releases/build", body).await;
        refused(status, &answer, wanted);
    }
    // Every problem at once.
    let (status, answer) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": "%%%",
                "target_registry": "elsewhere",
                "image_name": "acme/app",
                "image_tag": "latest",
            }),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        answer["error"]["problems"].as_array().unwrap().len(),
        3,
        "{answer}"
    );

    // Artifacts: names that are one plain file, a size limit, owners.
    for bad in [".env", "a%2Fb", "..", "a%20b"] {
        let (status, body) = upload(api, bad, vec![1, 2, 3]).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, body) = upload(api, "big.bin", noise((1 << 20) + 1)).await;
    assert_eq!(status, 413, "{body}");
    // Far over, declared: refused before any byte is read.
    let (status, _) = upload(api, "huge.bin", noise(3 << 20)).await;
    assert_eq!(status, 413);
    // Chunked, no length declared: cut at the limit (the server may
    // answer 413 and close while the client still sends).
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(noise(64 << 10))));
    let sent = reqwest::Client::new()
        .post(format!("{}/v1/artifacts?name=streamed.bin", api.url))
        .bearer_auth(&api.key)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    match sent {
        Ok(response) => assert_eq!(response.status().as_u16(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let artifacts = serve.data.path().join("objects/artifacts");
    let left: Vec<_> = walk(&artifacts);
    assert!(left.is_empty(), "nothing kept of refused uploads: {left:?}");
    let (status, mine) = upload(api, "a.bin", vec![7; 10]).await;
    assert_eq!(status, 201, "{mine}");
    let id = mine["id"].as_str().unwrap();
    let eve = api.as_key(&serve.other_key("eve"));
    let (status, _) = eve.get(&format!("/v1/artifacts/{id}")).await;
    assert_eq!(status, 403);
    let mut body = good();
    body["artifact_ids"] = json!([id]);
    let (status, answer) = eve.post("/v1/releases/build", body).await;
    refused(status, &answer, "no artifact");
    let (_, twin) = upload(api, "a.bin", vec![8; 10]).await;
    let mut body = good();
    body["artifact_ids"] = json!([id, twin["id"]]);
    let (status, answer) = api.post("/v1/releases/build", body).await;
    refused(status, &answer, "two artifacts are named `a.bin`");

    // The one good request is queued.
    let (status, created) = api.post("/v1/releases/build", good()).await;
    assert_eq!(status, 202, "{created}");
    let (_, openapi) = api.as_key("").get("/openapi.json").await;
    assert!(openapi["paths"]["/v1/releases/build"].is_object());
    assert!(openapi["paths"]["/v1/artifacts"].is_object());
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Processes on this machine whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> usize {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_release_build_stops_its_run_at_once() {
    let registry = Registry::start().await.unwrap();
    let host = registry.host();
    let serve = Serve::start(&["--release-registry", &host]);
    let api = &serve.client;
    let base = testkit::busybox_base().expect("busybox base").oci_ref();
    let (status, created) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": b64(&format!("FROM {base}\nRUN echo started && sleep 173\n")),
                "target_registry": host,
                "image_name": "acme/slow",
                "image_tag": "1",
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let job = created["job_id"].as_str().unwrap();
    let sleep = ["sleep", "173"];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while processes(&sleep) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = api
        .send(reqwest::Method::DELETE, &format!("/v1/builds/{job}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let done = api.build_done(job, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    // The RUN's command is killed, not left to its hour.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes(&sleep) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled RUN still runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = hoist(&["digest", &format!("{host}/acme/slow:1")]);
    assert!(!out.status.success(), "nothing was pushed");
}
