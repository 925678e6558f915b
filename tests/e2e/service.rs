//! The function platform end to end, through its binaries: `hoist serve`
//! on the embedded defaults, and `hoist-api` with two `hoist-worker`s over
//! PostgreSQL, Redis Streams and S3 (SeaweedFS), pushing to a real
//! registry. Clients speak HTTP and WebSocket as any client would.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CODE: &str = "def handler(inputs):\n    return {'greeting': 'hello ' + inputs['name']}\n";

/// A child process killed when the test ends, however it ends.
pub(super) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client of the API at `url` with `key`.
#[derive(Clone)]
pub(super) struct Client {
    http: reqwest::Client,
    pub(super) url: String,
    pub(super) key: String,
}

impl Client {
    fn new(url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            key: key.to_owned(),
        }
    }

    pub(super) fn as_key(&self, key: &str) -> Self {
        Self::new(&self.url, key)
    }

    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub(super) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Submits `code` as function `name`; the created record.
    async fn submit(&self, name: &str, code: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/functions",
                json!({"name": name, "version": "1.0.0", "code": code}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body
    }

    /// Submits `code` as function `name` and waits for its build to
    /// complete; the function's id.
    async fn submit_built(&self, name: &str, code: &str) -> String {
        let created = self.submit(name, code).await;
        let build = created["build_id"].as_str().unwrap();
        let done = self.build_done(build, Duration::from_secs(300)).await;
        assert_eq!(done["status"], "completed", "{done}");
        created["function_id"].as_str().unwrap().to_owned()
    }

    /// Polls task `id` until `until` holds for its record (by the time
    /// `deadline` passes); the record.
    async fn task_until(
        &self,
        id: &str,
        deadline: Instant,
        until: impl Fn(&Value) -> bool,
    ) -> Value {
        loop {
            let (_, t) = self.get(&format!("/v1/tasks/{id}")).await;
            if until(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "task {id}: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls build `id` until it is final; its record.
    pub(super) async fn build_done(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.get(&format!("/v1/builds/{id}")).await;
            assert_eq!(status, 200, "{body}");
            let state = body["status"].as_str().unwrap().to_owned();
            if ["completed", "failed", "cancelled"].contains(&state.as_str()) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "build {id} still {state}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `hoist serve` on a fresh data directory, the Python base as default.
pub(super) struct Serve {
    proc: Proc,
    pub(super) data: tempfile::TempDir,
    pub(super) client: Client,
}

impl Serve {
    pub(super) fn start(extra: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Starts on `data`; a directory used before keeps its key (none is
    /// printed again) and its records.
    fn start_in(data: tempfile::TempDir, extra: &[&str]) -> Self {
        let base = testkit::python_base().expect("python base image");
        let fresh = !data.path().join("api-key").exists();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(["serve", "--listen", "127.0.0.1:0", "--prewarm", "0"])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--base", &base.oci_ref()])
            .args(extra)
            .env("HOME", "/nonexistent-home-for-tests")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hoist serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("hoist serve printed nothing").unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_owned();
        let stored = std::fs::read_to_string(data.path().join("api-key")).unwrap();
        let key = stored.trim().to_owned();
        if fresh {
            let second = lines.next().expect("no key line").unwrap();
            assert_eq!(
                second.rsplit(' ').next().unwrap(),
                key,
                "the printed key is the stored one"
            );
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(data.path().join("api-key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        Self {
            proc: Proc(child),
            data,
            client: Client::new(&url, &key),
        }
    }

    /// A key of another owner, made with `hoist-api keys create`.
    pub(super) fn other_key(&self, owner: &str) -> String {
        let database = format!("sqlite://{}", self.data.path().join("hoist.db").display());
        create_key(&database, owner)
    }
}

fn create_key(database: &str, owner: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hoist-api"))
        .args(["--database", database])
        .args(["keys", "create", owner])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Every message of a build's WebSocket stream until the server closes it.
pub(super) async fn stream(url: &str, build: &str, key: Option<&str>) -> Vec<Value> {
    let ws = format!("{}/v1/builds/{build}/stream", url.replacen("http", "ws", 1));
    let mut request = ws.into_client_request().unwrap();
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut messages = Vec::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Text(text)) => messages.push(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), read)
        .await
        .expect("the stream closes after the build's last message");
    let _ = socket.close(None).await;
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_builds_and_invokes_a_function() {
    let serve = Serve::start(&[]);
    let api = &serve.client;

    // Open routes, and what a client without a key gets.
    let (status, health) = api.as_key("").get("/health").await;
    assert_eq!(status, 200, "{health}");
    let (status, openapi) = api.as_key("").get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/v1/functions"].is_object(), "{openapi}");
    let (status, body) = api.as_key("").get("/v1/functions").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (status, _) = api.as_key("hoist_wrong").get("/v1/builds").await;
    assert_eq!(status, 401);

    // An invalid function: every problem at once, with its position.
    let (status, body) = api
        .post(
            "/v1/functions",
            json!({"name": "bad", "version": "1", "code": "import subprocess\ndef handler(inputs):\n    return eval('1')\n"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let problems = body["error"]["problems"].to_string();
    assert!(
        problems.contains("1:") && problems.contains("subprocess"),
        "{body}"
    );
    assert!(
        problems.contains("3:") && problems.contains("eval"),
        "{body}"
    );

    // A good one: built, with its progress streamed.
    let created = api.submit("greet", CODE).await;
    let build = created["build_id"].as_str().unwrap().to_owned();
    let function = created["function_id"].as_str().unwrap().to_owned();
    assert!(
        created["websocket_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/builds/{build}/stream")),
        "{created}"
    );
    let messages = stream(&api.url, &build, Some(&api.key)).await;
    assert_eq!(messages[0]["type"], "backlog", "{messages:?}");
    let last = messages.last().unwrap();
    assert_eq!(last["type"], "complete", "{messages:?}");
    let done = api.build_done(&build, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100, "{done}");
    assert!(
        done["image_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{done}"
    );
    // A late client gets the whole story as its backlog, then the close.
    let late = stream(&api.url, &build, Some(&api.key)).await;
    assert_eq!(late.len(), 1, "{late:?}");
    let backlog = late[0]["messages"].as_array().unwrap();
    assert_eq!(backlog.last().unwrap()["type"], "complete", "{late:?}");
    assert!(
        backlog.iter().any(|m| m["type"] == "log"),
        "logs are kept: {late:?}"
    );

    // Invoked, waiting for the answer.
    let path = format!("/v1/functions/{function}/invoke?wait=120");
    let (status, task) = api.post(&path, json!({"inputs": {"name": "ada"}})).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["output"], json!({"greeting": "hello ada"}), "{task}");
    assert_eq!(task["cached"], false);
    let id = task["task_id"].as_str().unwrap().to_owned();
    let (status, shown) = api.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["output"], task["output"]);
    // The same inputs again: from the result cache, without a run.
    let (status, again) = api.post(&path, json!({"inputs": {"name": "ada"}})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["output"], task["output"]);
    // Without waiting: queued, then done.
    let (status, queued) = api
        .post(
            &format!("/v1/functions/{function}/invoke?cache=false"),
            json!({"inputs": {"name": "bob"}}),
        )
        .await;
    assert!(status == 202 || status == 200, "{queued}");
    let id = queued["task_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished = api
        .task_until(&id, deadline, |t: &Value| {
            t["status"] == "completed" || t["status"] == "failed"
        })
        .await;
    assert_eq!(
        finished["output"],
        json!({"greeting": "hello bob"}),
        "{finished}"
    );

    // A handler error comes back with its traceback.
    let failing = api
        .submit_built(
            "fails",
            "def handler(inputs):\n    raise ValueError('no ' + inputs['name'])\n",
        )
        .await;
    let (_, task) = api
        .post(
            &format!("/v1/functions/{failing}/invoke?wait=120"),
            json!({"inputs": {"name": "way"}}),
        )
        .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["type"], "ValueError", "{task}");
    assert_eq!(task["error"]["message"], "no way", "{task}");
    assert!(
        task["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("raise ValueError"),
        "{task}"
    );

    // Another owner sees none of it.
    let eve = api.as_key(&serve.other_key("eve"));
    let (status, body) = eve.get(&format!("/v1/functions/{function}")).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = eve.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 403);
    let (status, _) = eve
        .post(
            &format!("/v1/functions/{function}/invoke"),
            json!({"inputs": {}}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, list) = eve.get("/v1/builds").await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 0, "{list}");
    let denied = stream(
        &api.url,
        &build_of(api, &function).await,
        Some(eve.key.as_str()),
    )
    .await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["type"], "error", "{denied:?}");

    // The owner's list, filtered.
    let (_, list) = api.get("/v1/builds?status=completed&limit=1").await;
    assert_eq!(list["total"], 2, "{list}");
    assert_eq!(list["builds"].as_array().unwrap().len(), 1, "{list}");

    // Metrics count what happened.
    let (status, metrics) = api.as_key("").get("/metrics").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    for name in [
        "hoist_builds_total",
        "hoist_tasks_total",
        "hoist_queue_depth",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(!metrics.contains(&api.key), "no secret in the metrics");
    // Three runs of two functions: each function's first run started a
    // warm sandbox, kept for the next run of the same function.
    for line in [
        "hoist_warm_starts_total 2",
        "hoist_warm_reuses_total 1",
        "hoist_warm_sandboxes 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }

    // Deleted: gone for its owner too.
    let (status, _) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/functions/{failing}"),
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    let (status, _) = api.get(&format!("/v1/functions/{failing}")).await;
    assert_eq!(status, 404);
}

async fn build_of(api: &Client, function: &str) -> String {
    let (_, f) = api.get(&format!("/v1/functions/{function}")).await;
    f["build_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_are_rate_limited_and_builds_cancelled() {
    let serve = Serve::start(&["--rate", "0.01", "--burst", "3"]);
    let api = &serve.client;
    // Three builds at once: with one worker slot, the later ones wait.
    let mut builds = Vec::new();
    for name in ["one", "two", "three"] {
        builds.push(
            api.submit(name, CODE).await["build_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // The fourth submission is over the rate.
    let (status, body) = api
        .post(
            "/v1/functions",
            json!({"name": "four", "version": "1", "code": CODE}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");

    // Cancelling: whatever state each is in, each ends `cancelled` or had
    // already completed, within seconds; cancelling twice is harmless.
    for build in &builds {
        let (status, body) = api
            .send(
                reqwest::Method::DELETE,
                &format!("/v1/builds/{build}"),
                None,
            )
            .await;
        assert!(status == 200 || status == 409, "{body}");
    }
    let mut cancelled = 0;
    for build in &builds {
        let done = api.build_done(build, Duration::from_secs(10)).await;
        let state = done["status"].as_str().unwrap();
        assert!(state == "cancelled" || state == "completed", "{done}");
        cancelled += usize::from(state == "cancelled");
    }
    assert!(cancelled >= 2, "pending builds never start");
    // No scratch left by the cancelled builds.
    let work = serve.data.path().join("worker/work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Spawns a platform binary with the store flags.
fn spawn(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    Proc(
        Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .env("HOME", "/nonexistent-home-for-tests")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

async fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/health")).await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_two_workers_over_postgres_redis_and_s3() {
    let base = testkit::python_base().expect("python base image");
    let pg = testkit::Postgres::start().await.unwrap();
    let redis = testkit::Redis::start().await.unwrap();
    let s3 = testkit::S3::start().await.unwrap();
    let registry = testkit::Registry::start().await.unwrap();
    let database = pg.create_database().await.unwrap();
    let queue = redis.url();
    let objects = format!(
        "s3://{}?endpoint={}&region={}",
        s3.bucket(),
        s3.endpoint(),
        s3.region()
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key()),
    ];
    let store = [
        "--database",
        database.as_str(),
        "--queue",
        queue.as_str(),
        "--objects",
        objects.as_str(),
    ];
    let key = create_key(&database, "alice");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let registry_host = registry.host();
    let mut api_args = store.to_vec();
    api_args.extend([
        "--listen",
        listen.as_str(),
        "--result-cache",
        queue.as_str(),
        "--release-registry",
        registry_host.as_str(),
    ]);
    let mut api_proc = spawn(env!("CARGO_BIN_EXE_hoist-api"), &api_args, &env);
    let target = format!("{}/fns", registry.host());
    let base_ref = base.oci_ref();
    let caches: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut workers = Vec::new();
    let mut scrapes = Vec::new();
    for cache in &caches {
        let metrics = format!("127.0.0.1:{}", free_port());
        scrapes.push(metrics.clone());
        let mut args = store.to_vec();
        args.extend([
            "--registry",
            target.as_str(),
            "--base",
            base_ref.as_str(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--listen",
            metrics.as_str(),
            "--prewarm",
            "0",
            "--lease",
            "5",
        ]);
        workers.push(spawn(env!("CARGO_BIN_EXE_hoist-worker"), &args, &env));
    }
    let url = format!("http://{listen}");
    wait_healthy(&url).await;
    let api = Client::new(&url, &key);

    let created = api.submit("greet", CODE).await;
    let function = created["function_id"].as_str().unwrap().to_owned();
    // The API dies mid-build and comes back: the job was never its to lose.
    let _ = Command::new("kill")
        .args(["-9", &api_proc.0.id().to_string()])
        .status();
    let _ = api_proc.0.wait();
    api_proc = spawn(env!("CARGO_BIN_EXE_hoist-api"), &api_args, &env);
    wait_healthy(&url).await;
    let done = api
        .build_done(
            created["build_id"].as_str().unwrap(),
            Duration::from_secs(300),
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let image = done["image_url"].as_str().unwrap();
    assert!(image.starts_with(&target), "pushed to the registry: {done}");
    // The registry holds what the record says.
    let tagged = image.split('@').next().unwrap();
    let digest = super::skopeo_digest(&format!("docker://{tagged}")).await;
    assert_eq!(done["image_digest"], digest.as_str(), "{done}");

    // Twenty invocations at once, spread over both workers; one worker is
    // killed midway and the rest is finished by the other.
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let api = api.clone();
            let path = format!("/v1/functions/{function}/invoke?cache=false");
            tokio::spawn(async move {
                let (status, t) = api
                    .post(&path, json!({"inputs": {"name": format!("n{i}")}}))
                    .await;
                assert!(status == 202 || status == 200, "{t}");
                t["task_id"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut tasks = Vec::new();
    for call in calls {
        tasks.push(call.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut killed = workers.remove(0);
    let _ = Command::new("kill")
        .args(["-9", &killed.0.id().to_string()])
        .status();
    let _ = killed.0.wait();
    let deadline = Instant::now() + Duration::from_secs(240);
    for (i, id) in tasks.iter().enumerate() {
        let task = api
            .task_until(id, deadline, |t: &Value| {
                t["status"] == "completed" || t["status"] == "failed"
            })
            .await;
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(
            task["output"],
            json!({"greeting": format!("hello n{i}")}),
            "{task}"
        );
    }
    // Outputs live in S3, not on a worker's disk.
    assert!(
        !s3_is_empty(s3.dir()),
        "the object store holds code and outputs"
    );

    // A release: its artifact uploaded to S3 in parts (9 MiB: two of
    // them), copied into the build's context, pushed to the registry.
    let model: Vec<u8> = (0..9u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let uploaded = reqwest::Client::new()
        .post(format!("{url}/v1/artifacts?name=model.bin"))
        .bearer_auth(&key)
        .body(model.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 201);
    let artifact: Value = serde_json::from_str(&uploaded.text().await.unwrap()).unwrap();
    let dockerfile = format!("FROM {base_ref}\nCOPY model.bin /opt/model.bin\n");
    let (status, created) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": base64::engine::general_purpose::STANDARD.encode(dockerfile),
                "target_registry": registry_host,
                "image_name": "acme/model",
                "image_tag": "2.0.0",
                "artifact_ids": [artifact["id"]],
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let done = api
        .build_done(
            created["job_id"].as_str().unwrap(),
            Duration::from_secs(300),
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let digest = super::skopeo_digest(&format!("docker://{registry_host}/acme/model:2.0.0")).await;
    assert_eq!(done["image_digest"], digest.as_str(), "{done}");

    // The API's and the surviving worker's metrics: valid, and every
    // metric the alert rules and the dashboard use is there.
    let mut texts = Vec::new();
    for url in [
        format!("{url}/metrics"),
        format!("http://{}/metrics", scrapes[1]),
    ] {
        texts.push(reqwest::get(&url).await.unwrap().text().await.unwrap());
    }
    assert!(
        texts[1].contains(&format!("hoist_image_pull_duration_seconds_count{{registry=\"{registry_host}\",image_type=\"function\"}}")),
        "the worker timed its pull:\n{}",
        texts[1]
    );
    super::monitoring::check_scrapes(&[&texts[0], &texts[1]]);
    drop(workers);
    drop(api_proc);
}

fn s3_is_empty(dir: &Path) -> bool {
    walk(dir) == 0
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { walk(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_work_finish() {
    let serve = Serve::start(&[]);
    let api = serve.client.clone();
    let function = api
        .submit_built(
            "slow",
            "import time\n\ndef handler(inputs):\n    time.sleep(3)\n    return {'slept': True}\n",
        )
        .await;
    let (_, task) = api
        .post(
            &format!("/v1/functions/{function}/invoke?cache=false"),
            json!({"inputs": {}}),
        )
        .await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = api
        .task_until(&id, deadline, |t| t["status"] != "pending")
        .await;
    assert_eq!(
        running["status"], "running",
        "too late to test a drain: {running}"
    );

    // SIGTERM mid-task: the server stops taking work, lets the task finish
    // and exits cleanly.
    let Serve { mut proc, data, .. } = serve;
    let pid = proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(40),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");

    // Started again on the same data: the task has its one result.
    let again = Serve::start_in(data, &[]);
    let (status, t) = again.client.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["output"], json!({"slept": true}), "{t}");
    assert_eq!(t["attempts"], 1, "run once: {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_image_is_gone_fails_after_its_attempts() {
    let serve = Serve::start(&[]);
    let api = &serve.client;
    let function = api.submit_built("vanishing", CODE).await;
    // The image is removed behind the platform's back.
    std::fs::remove_dir_all(serve.data.path().join("images")).unwrap();
    let (_, task) = api
        .post(
            &format!("/v1/functions/{function}/invoke?cache=false"),
            json!({"inputs": {"name": "x"}}),
        )
        .await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = api
        .task_until(&id, deadline, |t| {
            t["status"] == "failed" || t["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["type"], "WorkerError", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("gave up after 5 attempts"), "{done}");
    assert_eq!(done["attempts"], 5, "{done}");
}

/// The sum of `hoist_tasks_total{outcome="completed"}` a worker reports.
async fn completed_by(metrics: &str) -> u64 {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("hoist_tasks_total{outcome=\"completed\"} "))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_queued_invocations_drain_through_two_workers() {
    const TASKS: usize = 1000;
    let base = testkit::python_base().expect("python base image");
    let pg = testkit::Postgres::start().await.unwrap();
    let redis = testkit::Redis::start().await.unwrap();
    let database = pg.create_database().await.unwrap();
    let queue = redis.url();
    let shared = tempfile::tempdir().unwrap();
    let objects = format!("file://{}/objects", shared.path().display());
    let images = format!("oci:{}/images", shared.path().display());
    let store = [
        "--database",
        database.as_str(),
        "--queue",
        queue.as_str(),
        "--objects",
        objects.as_str(),
    ];
    let key = create_key(&database, "alice");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut api_args = store.to_vec();
    // Invocations are not what the submission limit is for; lifted here.
    api_args.extend(["--listen", &listen, "--rate", "100000", "--burst", "100000"]);
    let _api_proc = spawn(env!("CARGO_BIN_EXE_hoist-api"), &api_args, &[]);
    let base_ref = base.oci_ref();
    let caches: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut workers = Vec::new();
    let mut scrapes = Vec::new();
    for cache in &caches {
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut args = store.to_vec();
        args.extend([
            "--registry",
            images.as_str(),
            "--base",
            base_ref.as_str(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--listen",
            metrics.as_str(),
            "--prewarm",
            "0",
        ]);
        workers.push(spawn(env!("CARGO_BIN_EXE_hoist-worker"), &args, &[]));
        scrapes.push(metrics);
    }
    let url = format!("http://{listen}");
    wait_healthy(&url).await;
    for metrics in &scrapes {
        wait_healthy(&format!("http://{metrics}")).await;
    }
    let api = Client::new(&url, &key);
    let function = api
        .submit_built(
            "count",
            "def handler(inputs):\n    return {'n': inputs['n']}\n",
        )
        .await;

    // All queued first (16 requests in flight), then drained.
    let path = format!("/v1/functions/{function}/invoke?cache=false");
    let submitted: Vec<String> = futures_util::stream::iter(0..TASKS)
        .map(|n| {
            let api = api.clone();
            let path = path.clone();
            async move {
                let (status, t) = api.post(&path, json!({"inputs": {"n": n}})).await;
                assert!(status == 202 || status == 200, "{t}");
                t["task_id"].as_str().unwrap().to_owned()
            }
        })
        .buffered(16)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(600);
    for (n, id) in submitted.iter().enumerate() {
        let task = api
            .task_until(id, deadline, |t: &Value| {
                t["status"] == "completed" || t["status"] == "failed"
            })
            .await;
        // None lost: each has its own answer; none run twice: one start.
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(task["output"], json!({"n": n}), "{task}");
        assert_eq!(task["attempts"], 1, "{task}");
    }
    // Each worker ran its share, and the runs add up to the tasks.
    let mut total = 0;
    for metrics in &scrapes {
        let ran = completed_by(metrics).await;
        assert!(ran > 0, "a worker took no task");
        total += ran;
    }
    assert_eq!(total, TASKS as u64, "runs, counted by the workers");
    drop(workers);
}
