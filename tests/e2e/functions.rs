//! Hostile functions through `hoist invoke`: whatever a function leaves in
//! its `/io` — a link to a host file, a directory, a FIFO, a hard link, a
//! huge file, a full disk — gives a clear error, never host bytes, never
//! a hang. The functions are built with the import deny list off: it is a
//! courtesy that fails early, and the sandbox must hold without it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::hoist;
use super::peer::function_dir;

/// The secret a hostile function tries to read: a host file.
const SECRET: &str = "HOST-SECRET-4f1c2a";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Builds `code` on the Python base into a fresh layout; returns its
/// `oci:DIR:fn` and the directory.
pub(super) fn build(code: &str) -> (tempfile::TempDir, String) {
    let base = testkit::python_base().expect("python base image");
    let build_cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-cache");
    let f = function_dir(code, None);
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:fn", out_dir.path().display());
    let out = hoist(&[
        "build",
        f.path().to_str().unwrap(),
        "--base",
        &base.oci_ref(),
        "--tag",
        "127.0.0.1:1/fn/hostile:v1",
        "--output",
        &layout,
        "--deny-modules",
        "",
        "--cache-dir",
        build_cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "build: {}", text(&out.stderr));
    (out_dir, layout)
}

fn invoke(layout: &str, cache: &Path, extra: &[&str]) -> (Output, Duration) {
    let inputs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(inputs.path(), "{}").unwrap();
    let mut args = vec![
        "invoke",
        layout,
        "--inputs",
        inputs.path().to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = hoist(&args);
    (out, started.elapsed())
}

/// A host file holding [`SECRET`], world-readable.
fn secret_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, format!("{{\"auths\": \"{SECRET}\"}}")).unwrap();
    (dir, path)
}

/// The function's failure as `hoist invoke` prints it: exit status 1, the
/// error JSON on stdout, and no secret anywhere.
fn failure(out: &Output) -> Value {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "{stdout}\n{stderr}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    v["error"].clone()
}

#[test]
fn outputs_that_are_not_plain_files_are_refused_without_leaking() {
    let (_secret_dir, secret) = secret_file();
    let cache = tempfile::tempdir().unwrap();
    // Each leaves output.json as something else and exits before the
    // runner could replace it.
    let cases = [
        (
            format!(
                "os.symlink({:?}, '/io/output.json')",
                secret.display().to_string()
            ),
            "a symbolic link",
        ),
        ("os.mkdir('/io/output.json')".to_owned(), "a directory"),
        ("os.mkfifo('/io/output.json')".to_owned(), "a FIFO"),
        (
            "open('/io/x', 'w').write('{}'); os.link('/io/x', '/io/output.json')".to_owned(),
            "a hard link (2 names for one file)",
        ),
        (
            "open('/io/output.json', 'w').write('{\"a\": \"' + 'x' * (17 << 20) + '\"}')"
                .to_owned(),
            "over the 16777216-byte limit",
        ),
    ];
    for (act, want) in cases {
        let code = format!("import os\n\ndef handler(inputs):\n    {act}\n    os._exit(0)\n");
        let (_dir, layout) = build(&code);
        let (out, took) = invoke(&layout, cache.path(), &[]);
        let error = failure(&out);
        assert_eq!(error["type"], "OutputRefused", "{act}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{act}: {message}");
        assert!(took < Duration::from_secs(60), "{act}: took {took:?}");
    }
}

#[test]
fn a_function_filling_io_fails_alone() {
    let cache = tempfile::tempdir().unwrap();
    // 2 GiB into a 16 MiB /io: the write fails inside the function, which
    // then cannot write its reply either.
    let code = "def handler(inputs):\n    with open('/io/big', 'wb') as f:\n        for _ in range(2048):\n            f.write(b'x' * (1 << 20))\n    return {}\n";
    let (_dir, layout) = build(code);
    let (out, _) = invoke(&layout, cache.path(), &["--io-size", "16m"]);
    let error = failure(&out);
    assert_eq!(error["type"], "NoOutput", "{error}");
    assert!(
        text(&out.stderr).contains("No space left on device"),
        "{}",
        text(&out.stderr)
    );
    // A small reply still fits beside what the function may write.
    let code = "def handler(inputs):\n    open('/io/some', 'wb').write(b'x' * (4 << 20))\n    return {'ok': True}\n";
    let (_dir, layout) = build(code);
    let (out, _) = invoke(&layout, cache.path(), &["--io-size", "16m"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_function_cannot_make_device_nodes() {
    let cache = tempfile::tempdir().unwrap();
    let code = "import os, stat\n\ndef handler(inputs):\n    os.mknod('/io/output.json', stat.S_IFCHR | 0o666, os.makedev(1, 3))\n    os._exit(0)\n";
    let (_dir, layout) = build(code);
    let (out, _) = invoke(&layout, cache.path(), &[]);
    let error = failure(&out);
    // No capability to make one: the handler raises, the runner reports.
    assert_eq!(error["type"], "PermissionError", "{error}");
}

#[test]
fn a_good_reply_survives_a_hostile_neighbour_file() {
    // Links and FIFOs elsewhere in /io do not matter; output.json does.
    let (_secret_dir, secret) = secret_file();
    let cache = tempfile::tempdir().unwrap();
    let code = format!(
        "import os\n\ndef handler(inputs):\n    os.symlink({:?}, '/io/other')\n    os.mkfifo('/io/pipe')\n    return {{'fine': True}}\n",
        secret.display().to_string()
    );
    let (_dir, layout) = build(&code);
    let (out, _) = invoke(&layout, cache.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"fine": true}));
}
