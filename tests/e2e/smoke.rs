//! `hoist smoke` and `hoist build --smoke-port`: a server image started in
//! the sandbox and polled on its health endpoint from inside its network
//! namespace. Healthy servers pass; failing, exiting, silent, mute and
//! flooding ones fail with their reason and logs, each in bounded time;
//! no container, cgroup or state is ever left; a failed gate pushes
//! nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::hoist;
use super::peer::function_dir;

/// A server whose behaviour depends on `MODE`.
const SERVER: &str = r#"
import os, socket, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

MODE = os.environ.get("MODE", "ok")
print("server starting in mode", MODE, flush=True)
print("a line on stderr", file=sys.stderr, flush=True)

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if MODE == "fail" else (200 if self.path == "/health" else 404)
        body = b"status\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

def raw(answer):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 8000))
    s.listen(16)
    held = []
    while True:
        conn, _ = s.accept()
        held.append(conn)
        answer(conn)

def flood(head):
    def answer(conn):
        chunk = b"a" * 65536
        try:
            conn.sendall(head)
            for _ in range(32768):  # 2 GiB
                conn.sendall(chunk)
        except OSError:
            pass
    return answer

if MODE == "exit":
    print("giving up", file=sys.stderr, flush=True)
    sys.exit(3)
elif MODE == "never":
    time.sleep(3600)
elif MODE == "mute":
    raw(lambda conn: None)
elif MODE == "flood":
    raw(flood(b"HTTP/1.1 200 "))
elif MODE == "bigbody":
    raw(flood(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n"))
else:
    time.sleep(0.5)
    HTTPServer(("127.0.0.1", 8000), Health).serve_forever()
"#;

const DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE}
ARG MODE=ok
ENV MODE=${MODE}
COPY server.py /srv/server.py
CMD ["python3", "/srv/server.py"]
"#;

/// A build context with the server and its Dockerfile.
fn context() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.py"), SERVER).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).unwrap();
    dir
}

fn build_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("smoke-build-cache")
}

/// `hoist build -f` of the server image with `extra` flags.
fn build(ctx: &Path, extra: &[&str]) -> Output {
    let base = testkit::python_base().expect("python base image");
    let owned = [
        "build".to_owned(),
        "-f".to_owned(),
        ctx.join("Dockerfile").display().to_string(),
        ctx.display().to_string(),
        "--build-arg".to_owned(),
        format!("BASE={}", base.oci_ref()),
        "--cache-dir".to_owned(),
        build_cache().display().to_string(),
    ];
    let mut args: Vec<&str> = owned.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    hoist(&args)
}

/// The server image in a layout of its own: (its directory, `oci:DIR:v1`).
fn server_image() -> (TempDir, TempDir, String) {
    let ctx = context();
    let out = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", out.path().display());
    let built = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/server:1", "--output", &layout],
    );
    assert!(built.status.success(), "{}", text(&built.stderr));
    (ctx, out, layout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `hoist smoke` and checks that the process left nothing behind.
fn smoke(image: &str, cache: &Path, flags: &[&str]) -> Output {
    let mut args = vec!["smoke", image, "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(flags);
    let child = spawn(&args);
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_clean(pid);
    out
}

fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env("HOME", "/nonexistent-home-for-tests")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The bundle, state and cgroup directories of the containers of the
/// hoist process `pid` (container ids start with the pid in hex).
fn leftovers(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("{pid:x}-");
    let mut dirs = vec![
        PathBuf::from("/run/hoist/sandbox/bundles"),
        PathBuf::from("/run/hoist/sandbox/containers"),
    ];
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(hierarchies.flatten().map(|h| h.path().join("hoist")));
    }
    dirs.push(PathBuf::from("/sys/fs/cgroup/hoist"));
    let mut left = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        left.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path()),
        );
    }
    left
}

/// No container of `pid` is left: no bundle, state or cgroup (so no
/// process either).
fn assert_clean(pid: u32) {
    let left = leftovers(pid);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_server_passes_and_a_wrong_path_fails_with_its_status() {
    let (_ctx, _out, image) = server_image();
    let cache = tempfile::tempdir().unwrap();

    let out = smoke(
        &image,
        cache.path(),
        &["--port", "8000", "--timeout", "20s"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("http://127.0.0.1:8000/health answered 200"),
        "{said}"
    );

    let out = smoke(
        &image,
        cache.path(),
        &[
            "--json",
            "--port",
            "8000",
            "--timeout",
            "3s",
            "--path",
            "/missing",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["verdict"], "timed_out");
    assert_eq!(report["last_status"], 404);
    assert!(report["attempts"].as_u64().unwrap() >= 2, "{report}");
    let logs = report["container"]["stdout"].as_str().unwrap();
    assert!(logs.contains("server starting in mode ok"), "{report}");
    // The server logs each request on stderr.
    let logs = report["container"]["stderr"].as_str().unwrap();
    assert!(logs.contains("\"GET /missing HTTP/1.1\" 404"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_server_fails_with_its_status_and_logs() {
    let (_ctx, _out, image) = server_image();
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = smoke(
        &image,
        cache.path(),
        &["--port", "8000", "--timeout", "3s", "--env", "MODE=fail"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no 200 from http://127.0.0.1:8000/health within 3000 ms"),
        "{err}"
    );
    assert!(
        err.contains("last probe: answered 500 Internal Server Error"),
        "{err}"
    );
    assert!(err.contains("--- container stdout"), "{err}");
    assert!(err.contains("server starting in mode fail"), "{err}");
    assert!(err.contains("a line on stderr"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_that_exits_fails_at_once() {
    let (_ctx, _out, image) = server_image();
    let cache = tempfile::tempdir().unwrap();
    // Pulled first, so that the time below is the smoke test's.
    let warm = smoke(
        &image,
        cache.path(),
        &["--port", "8000", "--timeout", "20s"],
    );
    assert!(warm.status.success(), "{}", text(&warm.stderr));
    let started = Instant::now();
    let out = smoke(
        &image,
        cache.path(),
        &["--port", "8000", "--timeout", "60s", "--env", "MODE=exit"],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("the container exited with status 3"), "{err}");
    assert!(err.contains("giving up"), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_mute_and_flooding_servers_fail_in_bounded_time() {
    let (_ctx, _out, image) = server_image();
    let cache = tempfile::tempdir().unwrap();
    let cases = [
        ("never", "connection refused"),
        ("mute", "connected, but no answer in time"),
        ("flood", "no status line within 1024 bytes"),
    ];
    for (mode, want) in cases {
        let started = Instant::now();
        let env = format!("MODE={mode}");
        let out = smoke(
            &image,
            cache.path(),
            &["--json", "--port", "8000", "--timeout", "3s", "--env", &env],
        );
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["verdict"], "timed_out", "{mode}: {report}");
        let last = report["last_probe"].as_str().unwrap();
        assert!(last.contains(want), "{mode}: {report}");
        // Three seconds of polling, one probe bounded by them, then the
        // container is stopped and removed.
        assert!(took < Duration::from_secs(40), "{mode} took {took:?}");
    }
    // A 2 GiB answer behind a 200 status line passes: only the status
    // line is read.
    let out = smoke(
        &image,
        cache.path(),
        &[
            "--port",
            "8000",
            "--timeout",
            "20s",
            "--env",
            "MODE=bigbody",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_smoke_test_removes_its_container() {
    let (_ctx, _out, image) = server_image();
    let cache = tempfile::tempdir().unwrap();
    let child = spawn(&[
        "smoke",
        &image,
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--port",
        "8000",
        "--timeout",
        "120s",
        "--env",
        "MODE=never",
    ]);
    let pid = child.id();
    let started = Instant::now();
    while leftovers(pid).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no container started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cancelled"),
        "{}",
        text(&out.stderr)
    );
    assert_clean(pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_build_gate_pushes_only_images_that_pass() {
    let registry = testkit::Registry::start().await.unwrap();
    let ctx = context();
    let tag = format!("{}/acme/server:1", registry.host());
    let tags = || {
        let out = hoist(&["tags", &format!("{}/acme/server", registry.host())]);
        text(&out.stdout)
    };

    let failed = build(
        ctx.path(),
        &[
            "--tag",
            &tag,
            "--build-arg",
            "MODE=fail",
            "--smoke-port",
            "8000",
            "--smoke-timeout",
            "3s",
        ],
    );
    assert_eq!(failed.status.code(), Some(1));
    let err = text(&failed.stderr);
    assert!(err.contains("smoke test failed, nothing pushed"), "{err}");
    assert!(err.contains("answered 500"), "{err}");
    assert!(err.contains("server starting in mode fail"), "{err}");
    assert!(!tags().contains('1'), "a tag was pushed: {}", tags());

    let passed = build(
        ctx.path(),
        &[
            "--tag",
            &tag,
            "--smoke-port",
            "8000",
            "--smoke-path",
            "/health",
        ],
    );
    assert!(passed.status.success(), "{}", text(&passed.stderr));
    assert!(text(&passed.stderr).contains("smoke test: http://127.0.0.1:8000/health answered 200"));
    assert_eq!(tags().trim(), "1");

    // A function image's command is no server: its smoke test fails as
    // soon as the runner exits, and nothing is pushed.
    let function = function_dir("def handler(inputs):\n    return {}\n", None);
    let base = testkit::python_base().expect("python base image");
    let fn_tag = format!("{}/acme/fn:v1", registry.host());
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = hoist(&[
        "build",
        function.path().to_str().unwrap(),
        "--base",
        &base.oci_ref(),
        "--tag",
        &fn_tag,
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--smoke-port",
        "8000",
        "--smoke-timeout",
        "60s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("smoke test failed, nothing pushed: the container exited with status"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(50));
    let fn_tags = hoist(&["tags", &format!("{}/acme/fn", registry.host())]);
    assert!(
        text(&fn_tags.stdout).trim().is_empty(),
        "{}",
        text(&fn_tags.stdout)
    );
}
