//! `hoist run`, `hoist invoke` and `hoist cache`: pulls through the layer
//! cache with failover to mirrors, and sandboxed runs.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{Fault, FaultProxy, Registry, Rule};

use super::hoist;
use super::peer::function_dir;

/// The busybox base pushed to `registry` by skopeo as `base/busybox:1`.
async fn busybox(registry: &Registry) -> String {
    let base = testkit::busybox_base().expect("busybox base image");
    testkit::push_base(&base, registry, "base/busybox:1")
        .await
        .expect("push busybox")
        .to_string()
}

fn run(cache: &Path, image: &str, flags: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run", image, "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    hoist(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_images_pushed_by_skopeo_in_the_sandbox() {
    let registry = Registry::start().await.unwrap();
    let image = busybox(&registry).await;
    let cache = tempfile::tempdir().unwrap();

    let out = run(
        cache.path(),
        &image,
        &[],
        &["sh", "-c", "echo hello; id -u; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n1000\n");

    // The seeds' defaults, seen from inside: read-only root, a 512 MiB
    // /tmp, no capabilities, no new privileges, loopback only.
    let probe = "touch /x 2>/dev/null && echo rw || echo ro; \
                 grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; \
                 grep ' /tmp ' /proc/mounts | grep -o 'size=[0-9a-z]*'; \
                 ls /sys/class/net";
    let out = run(cache.path(), &image, &[], &["sh", "-c", probe]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ro\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nsize=524288k\nlo\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_oom_kills_have_their_own_exit_codes() {
    let registry = Registry::start().await.unwrap();
    let image = busybox(&registry).await;
    let cache = tempfile::tempdir().unwrap();

    let out = run(
        cache.path(),
        &image,
        &["--timeout", "1s"],
        &["sh", "-c", "while :; do :; done"],
    );
    assert_eq!(out.status.code(), Some(124));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );

    let hog = "BEGIN { s = \"xxxxxxxxxxxxxxxx\"; while (1) s = s s }";
    let out = run(cache.path(), &image, &["--memory", "32m"], &["awk", hog]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("out of memory"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_fail_over_to_mirrors_with_the_pinned_digest() {
    let primary = Registry::start().await.unwrap();
    let mirror = Registry::start().await.unwrap();
    busybox(&primary).await;
    busybox(&mirror).await;
    let proxy = FaultProxy::start(primary.addr()).await.unwrap();
    let image = format!("{}/base/busybox:1", proxy.host());
    let mirror_host = mirror.host();
    let flags = ["--mirror", &mirror_host, "--registry-timeout", "2"];

    // Every blob from the primary is corrupt: the mirror serves them.
    proxy.add(Rule::new("/blobs/sha256:", Fault::CorruptBody));
    let cache = tempfile::tempdir().unwrap();
    let out = run(cache.path(), &image, &flags, &["echo", "from the mirror"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the mirror\n");

    // The primary stalls mid-blob: after the stall timeout the mirror
    // serves the rest (resumed with Range).
    proxy.clear();
    proxy.add(Rule::new(
        "/blobs/sha256:",
        Fault::StallBody {
            after_bytes: 50_000,
            stall: Duration::from_secs(30),
        },
    ));
    let cache = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = run(cache.path(), &image, &flags, &["echo", "after a stall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "after a stall\n");
    assert!(started.elapsed() < Duration::from_secs(20));

    // The primary cuts every blob mid-transfer.
    proxy.clear();
    proxy.add(Rule::new(
        "/blobs/sha256:",
        Fault::DropConnection {
            after_bytes: 50_000,
        },
    ));
    let cache = tempfile::tempdir().unwrap();
    let out = run(cache.path(), &image, &flags, &["true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The primary answers 500 to everything.
    proxy.clear();
    proxy.add(Rule::new("/v2/", Fault::Status(500)));
    let cache = tempfile::tempdir().unwrap();
    let out = run(cache.path(), &image, &flags, &["true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The primary is not there at all.
    let cache = tempfile::tempdir().unwrap();
    let gone = format!("127.0.0.1:{}/base/busybox:1", free_port());
    let out = run(cache.path(), &gone, &flags, &["echo", "no primary"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "no primary\n");

    // Both down: one clear error naming both.
    drop(mirror);
    let cache = tempfile::tempdir().unwrap();
    let out = run(cache.path(), &image, &flags, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&proxy.host()) && err.contains(&mirror_host),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_runs_built_functions() {
    let registry = Registry::start().await.unwrap();
    let pb = testkit::python_base().expect("python base image");
    let base = testkit::push_base(&pb, &registry, "base/python:3.11")
        .await
        .unwrap()
        .to_string();
    let build_cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-cache");
    let cache = tempfile::tempdir().unwrap();
    let inputs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(inputs.path(), r#"{"x": 20}"#).unwrap();

    let build = |code: &str, name: &str| -> String {
        let f = function_dir(code, None);
        let tag = format!("{}/fn/{name}:v1", registry.host());
        let out = hoist(&[
            "build",
            f.path().to_str().unwrap(),
            "--base",
            &base,
            "--tag",
            &tag,
            "--cache-dir",
            build_cache.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    let ok = build(
        "def handler(inputs):\n    return {\"y\": inputs[\"x\"] + 1}\n",
        "ok",
    );
    let raises = build("def handler(inputs):\n    return 1 / 0\n", "raises");

    let invoke = |image: &str| {
        hoist(&[
            "invoke",
            image,
            "--inputs",
            inputs.path().to_str().unwrap(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ])
    };
    let out = invoke(&ok);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"y": 21}));

    let out = invoke(&raises);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["type"], "ZeroDivisionError");

    // Straight from an OCI layout, no registry involved.
    let f = function_dir(
        "def handler(inputs):\n    return {\"z\": inputs[\"x\"] * 2}\n",
        None,
    );
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:fn", out_dir.path().display());
    let out = hoist(&[
        "build",
        f.path().to_str().unwrap(),
        "--base",
        &pb.oci_ref(),
        "--tag",
        "127.0.0.1:1/fn/local:v1",
        "--output",
        &layout,
        "--cache-dir",
        build_cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = invoke(&layout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"z": 40}));
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_lists_verifies_repairs_and_prunes() {
    let registry = Registry::start().await.unwrap();
    let image = busybox(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    assert!(run(cache.path(), &image, &[], &["true"]).status.success());

    let ls = hoist(&["--json", "cache", "ls", "--cache-dir", c]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    let entries: Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");

    let verify = hoist(&["cache", "verify", "--cache-dir", c]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));

    // Corrupt one stored blob: verify finds it and removes it, and the
    // next run fetches it again.
    let blob = walk_files(cache.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/blobs/sha256/"))
        .expect("a stored blob");
    std::fs::write(&blob, b"corrupt").unwrap();
    let verify = hoist(&["--json", "cache", "verify", "--cache-dir", c]);
    let report = text(&verify.stdout);
    assert!(
        report.contains(blob.file_name().unwrap().to_str().unwrap()),
        "{report}"
    );
    assert!(run(cache.path(), &image, &[], &["true"]).status.success());
    let verify = hoist(&["cache", "verify", "--cache-dir", c]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));

    let prune = hoist(&["cache", "prune", "--cache-dir", c]);
    assert!(prune.status.success(), "{}", text(&prune.stderr));
    let ls = hoist(&["--json", "cache", "ls", "--cache-dir", c]);
    let entries: Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 0, "{entries}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
