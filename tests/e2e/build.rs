//! `hoist validate` and `hoist build`: function images built from the
//! Debian-made Python base, pushed to a loopback registry and run by
//! skopeo + umoci + runc, never by hoist.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use testkit::Registry;

use super::peer::{function_dir, run_function};
use super::{hoist, hoist_ok};

const ECHO: &str = r#"
def handler(inputs):
    return {"echo": inputs, "n": len(inputs)}
"#;

/// The python base pushed to `registry` as `base/python:3.11`.
async fn python_base(registry: &Registry) -> String {
    let base = testkit::python_base().expect("python base image");
    testkit::push_base(&base, registry, "base/python:3.11")
        .await
        .expect("push the base")
        .to_string()
}

/// A build cache that lasts across test runs: wheels and uv's index are
/// fetched once.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-cache")
}

/// `hoist build` with `--json`; returns the result record.
fn build(dir: &Path, base: &str, tag: &str, cache: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "--json",
        "build",
        dir.to_str().unwrap(),
        "--base",
        base,
        "--tag",
        tag,
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&hoist_ok(&args)).expect("build record is JSON")
}

fn layers(record: &Value) -> Vec<(String, String)> {
    record["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["role"].as_str().unwrap().to_owned(),
                l["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn validate_reports_every_problem_with_its_position() {
    let good = function_dir(
        ECHO,
        Some("six==1.17.0\nattrs>=23 ; python_version >= '3.8'\n"),
    );
    hoist_ok(&["validate", good.path().to_str().unwrap()]);

    let bad = function_dir(
        "import os\nfrom subprocess import run\n\ndef handler(inputs):\n    return eval('1')\n",
        Some("-e ./local\nrequests @ https://example.invalid/r.whl\nsix\n"),
    );
    let out = hoist(&["validate", bad.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    for want in [
        "user_function.py:1:",
        "user_function.py:2:",
        "user_function.py:5:12: ",
        "requirements.txt:1:",
        "requirements.txt:2:",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "no line starting {want:?} in:\n{stdout}"
        );
    }
    assert_eq!(lines.len(), 5, "one line per problem:\n{stdout}");

    let json_out = hoist(&["--json", "validate", bad.path().to_str().unwrap()]);
    assert_eq!(json_out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 5);
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["file"] == "user_function.py" && p["line"] == 1 && p["column"].is_u64()),
        "{v}"
    );
}

#[test]
fn invalid_functions_fail_before_anything_is_fetched() {
    let bad = function_dir("def handler(inputs:\n", None);
    let cache = tempfile::tempdir().unwrap();
    // The base registry does not exist: a validation failure must come first.
    let out = hoist(&[
        "build",
        bad.path().to_str().unwrap(),
        "--base",
        "127.0.0.1:1/base/python:3.11",
        "--tag",
        "127.0.0.1:1/fn:v1",
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("user_function.py:"), "{err}");
    assert!(err.contains("syntax error"), "{err}");
    assert!(!err.contains("connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_run_without_hoist_and_errors_come_back_as_json() {
    let registry = Registry::start().await.unwrap();
    let base = python_base(&registry).await;
    let host = registry.host();
    let cache = cache_dir();

    // No requirements: base layers plus one code layer.
    let f = function_dir(ECHO, None);
    let tag = format!("{host}/fn/echo:v1");
    let record = build(f.path(), &base, &tag, &cache, &[]);
    let roles: Vec<String> = layers(&record).into_iter().map(|l| l.0).collect();
    assert_eq!(roles.last().map(String::as_str), Some("code"));
    assert!(!roles.iter().any(|r| r == "dependencies"), "{roles:?}");
    let digest = record["digest"].as_str().unwrap();
    let pinned = format!("{host}/fn/echo@{digest}");
    let run = run_function(&pinned, &json!({"a": 1})).await;
    assert!(
        run.output.status.success(),
        "{run_stderr}",
        run_stderr = String::from_utf8_lossy(&run.output.stderr)
    );
    assert_eq!(run.result, Some(json!({"echo": {"a": 1}, "n": 1})));

    // Pure-Python requirements.
    let f = function_dir(
        "import six\nimport attr\n\ndef handler(inputs):\n    return {\"six\": six.__version__, \"attrs\": attr.__version__ != ''}\n",
        Some("six==1.17.0\nattrs\n"),
    );
    let tag = format!("{host}/fn/deps:v1");
    let record = build(f.path(), &base, &tag, &cache, &[]);
    let run = run_function(&tag, &json!({})).await;
    assert_eq!(
        run.result,
        Some(json!({"six": "1.17.0", "attrs": true})),
        "{}",
        String::from_utf8_lossy(&run.output.stderr)
    );
    let roles: Vec<String> = layers(&record).into_iter().map(|l| l.0).collect();
    assert_eq!(&roles[roles.len() - 2..], ["dependencies", "code"]);

    // A handler that raises: the JSON error, and a non-zero exit.
    let f = function_dir(
        "def handler(inputs):\n    raise ValueError('bad input: ' + str(inputs['x']))\n",
        None,
    );
    let tag = format!("{host}/fn/raises:v1");
    build(f.path(), &base, &tag, &cache, &[]);
    let run = run_function(&tag, &json!({"x": 7})).await;
    assert_eq!(run.output.status.code(), Some(1));
    let error = &run.result.expect("an error record")["error"];
    assert_eq!(error["type"], "ValueError");
    assert_eq!(error["message"], "bad input: 7");
    assert!(
        error["traceback"]
            .as_str()
            .unwrap()
            .contains("user_function.py")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_wheels_work() {
    let registry = Registry::start().await.unwrap();
    let base = python_base(&registry).await;
    let f = function_dir(
        "import numpy as np\n\ndef handler(inputs):\n    a = np.array(inputs['v'], dtype=float)\n    return {\"sum\": float(a.sum()), \"dot\": float(a @ a)}\n",
        Some("numpy>=1.26,<2.3\n"),
    );
    let tag = format!("{}/fn/numpy:v1", registry.host());
    build(f.path(), &base, &tag, &cache_dir(), &[]);
    let run = run_function(&tag, &json!({"v": [1, 2, 3]})).await;
    assert_eq!(
        run.result,
        Some(json!({"sum": 6.0, "dot": 14.0})),
        "{}",
        String::from_utf8_lossy(&run.output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn digests_are_stable_and_changes_touch_only_their_layer() {
    let registry = Registry::start().await.unwrap();
    let base = python_base(&registry).await;
    let host = registry.host();
    let f = function_dir(ECHO, Some("six==1.17.0\n"));

    // Two builds with separate caches give one digest.
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out1 = tempfile::tempdir().unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let tag = format!("{host}/fn/stable:v1");
    let o1 = format!("oci:{}:v1", out1.path().display());
    let o2 = format!("oci:{}:v1", out2.path().display());
    let a = build(f.path(), &base, &tag, c1.path(), &["--output", &o1]);
    let b = build(f.path(), &base, &tag, c2.path(), &["--output", &o2]);
    assert_eq!(a["digest"], b["digest"]);
    // The layout is complete: umoci can unpack it.
    let rootfs = out1.path().join("rootfs");
    testkit::umoci(&[
        "raw",
        "unpack",
        "--image",
        &format!("{}:v1", out1.path().display()),
        rootfs.to_str().unwrap(),
    ])
    .await
    .expect("umoci unpacks the build");
    assert!(rootfs.join("opt/hoist/function/user_function.py").is_file());

    // Push it; a rebuild with the same inputs uploads nothing.
    let pushed = build(f.path(), &base, &tag, c1.path(), &[]);
    assert_eq!(pushed["digest"], a["digest"]);
    let base_layers = layers(&pushed).iter().filter(|l| l.0 == "base").count();
    assert_eq!(
        pushed["push"]["blobs_mounted"], base_layers,
        "base layers are mounted, not uploaded: {pushed}"
    );
    let again = build(f.path(), &base, &tag, c1.path(), &[]);
    assert_eq!(again["push"]["unchanged"], true, "{again}");
    let dependencies = again["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["role"] == "dependencies")
        .expect("a dependency layer");
    assert_eq!(dependencies["reused"], true, "{again}");

    // Change only the code: base and dependency layers stay, only the code
    // layer (and the config) move, and only they are uploaded.
    std::fs::write(
        f.path().join("user_function.py"),
        format!("{ECHO}\n# a comment changes the code layer\n"),
    )
    .unwrap();
    let code = build(f.path(), &base, &tag, c1.path(), &[]);
    let (before, after) = (layers(&a), layers(&code));
    assert_eq!(before.len(), after.len());
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(x.1 == y.1, x.0 != "code", "{x:?} vs {y:?}");
    }
    assert_ne!(code["config_digest"], a["config_digest"]);
    assert!(
        code["push"]["bytes_copied"].as_u64().unwrap() < 20_000,
        "only the code layer and config are uploaded: {code}"
    );

    // Change the requirements: the dependency layer moves.
    std::fs::write(f.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    let deps = build(f.path(), &base, &tag, c1.path(), &[]);
    let after_deps = layers(&deps);
    let dep = |l: &[(String, String)]| l.iter().find(|x| x.0 == "dependencies").unwrap().1.clone();
    assert_ne!(dep(&after), dep(&after_deps));
}

#[tokio::test(flavor = "multi_thread")]
async fn names_follow_the_template_and_latest_is_refused() {
    let registry = Registry::start().await.unwrap();
    let base = python_base(&registry).await;
    let host = registry.host();
    let f = function_dir(ECHO, None);
    let cache = cache_dir();
    let dir = f.path().to_str().unwrap();
    let cache_arg = cache.to_str().unwrap();

    let out = hoist_ok(&[
        "build",
        dir,
        "--base",
        &base,
        "--registry",
        &host,
        "--namespace",
        "acme",
        "--user",
        "123",
        "--function",
        "456",
        "--version",
        "1.2.0",
        "--cache-dir",
        cache_arg,
    ]);
    let sha8 = {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(ECHO.as_bytes());
        hex::encode(h)[..8].to_owned()
    };
    let want = format!("{host}/acme/functions/user-123-func-456:v1.2.0-{sha8}@sha256:");
    assert!(out.starts_with(&want), "{out} does not start with {want}");

    let latest = format!("{host}/fn/x:latest");
    let out = hoist(&[
        "build",
        dir,
        "--base",
        &base,
        "--tag",
        &latest,
        "--cache-dir",
        cache_arg,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("latest"));
    hoist_ok(&[
        "build",
        dir,
        "--base",
        &base,
        "--tag",
        &latest,
        "--allow-latest",
        "--cache-dir",
        cache_arg,
    ]);

    // --tag-from-git: the short SHA of the function's repository.
    let git = |args: &[&str]| {
        let s = std::process::Command::new("git")
            .arg("-C")
            .arg(f.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(s.status.success(), "{s:?}");
        String::from_utf8(s.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "f"]);
    let short = git(&["rev-parse", "--short", "HEAD"]);
    let out = hoist_ok(&[
        "build",
        dir,
        "--base",
        &base,
        "--tag",
        &format!("{host}/fn/git"),
        "--tag-from-git",
        "--cache-dir",
        cache_arg,
    ]);
    assert!(
        out.starts_with(&format!("{host}/fn/git:sha-{short}@sha256:")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sdist_only_requirements_are_a_clear_error() {
    let registry = Registry::start().await.unwrap();
    let base = python_base(&registry).await;
    let f = function_dir(ECHO, Some("pycrypto==2.6.1\n"));
    let cache = cache_dir();
    let out = hoist(&[
        "build",
        f.path().to_str().unwrap(),
        "--base",
        &base,
        "--tag",
        &format!("{}/fn/sdist:v1", registry.host()),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("pycrypto"), "{err}");
    assert!(err.contains("wheel"), "{err}");
}
