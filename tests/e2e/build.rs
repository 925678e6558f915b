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

/// What the base's interpreter says of itself, run in the unpacked image
/// `rootfs`: its bytecode magic number and `__pycache__` tag.
struct Python {
    magic: Vec<u8>,
    tag: String,
}

const INTERPRETER: &str = "/usr/bin/python3.11";

fn base_python(rootfs: &Path) -> Python {
    let out = std::process::Command::new("chroot")
        .arg(rootfs)
        .args([
            INTERPRETER,
            "-I",
            "-S",
            "-c",
            "import importlib.util, sys; print(importlib.util.MAGIC_NUMBER.hex(), sys.implementation.cache_tag)",
        ])
        .output()
        .expect("run chroot");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (magic, tag) = stdout.trim().split_once(' ').expect("magic and tag");
    Python {
        magic: hex::decode(magic).unwrap(),
        tag: tag.to_owned(),
    }
}

/// The source hashes (PEP 552) the base's interpreter computes for
/// `sources`, paths in the unpacked image `rootfs`.
fn source_hashes(rootfs: &Path, sources: &[String]) -> Vec<Vec<u8>> {
    let out = std::process::Command::new("chroot")
        .arg(rootfs)
        .args([
            INTERPRETER,
            "-I",
            "-S",
            "-c",
            "import importlib.util, sys\nfor p in sys.argv[1:]:\n    print(importlib.util.source_hash(open(p, 'rb').read()).hex())",
        ])
        .args(sources)
        .output()
        .expect("run chroot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|h| hex::decode(h).unwrap())
        .collect()
}

/// Checks every `.pyc` of the layer `digest` of the layout `layout`: each is
/// where `python` reads the bytecode of a source of the same layer, with
/// its magic number, hash-based (PEP 552 flags: bit 0 set) and holding the
/// hash of that source. Returns the sources with bytecode, as image paths.
fn check_layer_bytecode(
    layout: &Path,
    digest: &str,
    rootfs: &Path,
    python: &Python,
) -> Vec<String> {
    let blob = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    let tree = tempfile::tempdir().unwrap();
    let dest = tree.path().join("layer");
    oci_layer::unpack(
        &blob[..],
        oci_layer::Compression::detect(&blob),
        &dest,
        &oci_layer::UnpackOptions::default(),
    )
    .unwrap();
    let suffix = format!(".{}.pyc", python.tag);
    let (mut sources, mut headers) = (Vec::new(), Vec::new());
    let mut todo = vec![dest.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            if !name.ends_with(".pyc") {
                continue;
            }
            let stem = name
                .strip_suffix(&suffix)
                .unwrap_or_else(|| panic!("{}: not tagged {}", path.display(), python.tag));
            let cache = path.parent().unwrap();
            assert_eq!(
                cache.file_name().unwrap(),
                "__pycache__",
                "{}",
                path.display()
            );
            let source = cache.parent().unwrap().join(format!("{stem}.py"));
            assert!(
                source.is_file(),
                "{}: no source in the layer",
                path.display()
            );
            sources.push(format!(
                "/{}",
                source.strip_prefix(&dest).unwrap().display()
            ));
            headers.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    let hashes = source_hashes(rootfs, &sources);
    assert_eq!(hashes.len(), sources.len());
    for ((path, pyc), hash) in headers.iter().zip(&hashes) {
        let at = path.display();
        assert!(pyc.len() > 16, "{at}: {} bytes", pyc.len());
        assert_eq!(&pyc[..4], python.magic.as_slice(), "{at}: magic number");
        let flags = u32::from_le_bytes(pyc[4..8].try_into().unwrap());
        assert!(
            flags == 0b01 || flags == 0b11,
            "{at}: flags {flags:#b}, not hash-based"
        );
        assert_eq!(&pyc[8..16], hash.as_slice(), "{at}: source hash");
    }
    sources
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
    // With bytecode, compiled by the base's interpreter in each build.
    assert_eq!(a["bytecode"]["status"], "compiled", "{a}");
    assert!(a["bytecode"]["modules"].as_u64().unwrap() > 1, "{a}");
    assert_eq!(
        a["bytecode"]["modules"], a["bytecode"]["compiled_now"],
        "{a}"
    );
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
    // The dependency and code layers carry the bytecode of their sources,
    // hash-based and made for the base's interpreter.
    let python = base_python(&rootfs);
    let mut pycs = 0;
    for (role, digest) in layers(&a).iter().filter(|l| l.0 != "base") {
        let found = check_layer_bytecode(out1.path(), digest, &rootfs, &python);
        let want = match role.as_str() {
            "dependencies" => "/opt/hoist/site-packages/six.py",
            "code" => "/opt/hoist/function/user_function.py",
            other => panic!("unexpected {other} layer"),
        };
        assert!(found.iter().any(|p| p == want), "{role}: {found:?}");
        pycs += found.len();
    }
    assert_eq!(Some(pycs as u64), a["bytecode"]["modules"].as_u64(), "{a}");

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
    assert_eq!(again["bytecode"]["compiled_now"], 0, "{again}");
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
    assert_eq!(
        code["bytecode"]["compiled_now"], 1,
        "only the function is compiled: {code}"
    );
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

/// `hoist invoke` of `image` with Python's import messages on; returns
/// stderr, which holds them.
fn invoke_verbose(image: &str, cache: &Path) -> String {
    let inputs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(inputs.path(), "{}").unwrap();
    let out = hoist(&[
        "-v",
        "invoke",
        image,
        "--inputs",
        inputs.path().to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--env",
        "PYTHONVERBOSE=1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn invocations_import_bytecode_and_compile_nothing() {
    let base = testkit::python_base().expect("python base image");
    let f = function_dir(
        "import six\n\ndef handler(inputs):\n    return {\"six\": six.__version__}\n",
        Some("six==1.17.0\n"),
    );
    let run_cache = tempfile::tempdir().unwrap();
    let image = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let layout = format!("oci:{}:fn", dir.path().display());
        let mut args = vec!["--output", layout.as_str()];
        args.extend_from_slice(extra);
        let record = build(
            f.path(),
            &base.oci_ref(),
            "127.0.0.1:1/fn/pyc:v1",
            &cache_dir(),
            &args,
        );
        (dir, layout, record)
    };

    // Python prints `code object from '<.pyc>'` for bytecode it loads and
    // `code object from <.py>` (unquoted) for source it compiles.
    let (_dir, layout, record) = image(&[]);
    assert_eq!(record["stdlib_bytecode"], true, "{record}");
    let stderr = invoke_verbose(&layout, run_cache.path());
    for loaded in [
        "/opt/hoist/function/__pycache__/user_function.cpython-311.pyc",
        "/opt/hoist/site-packages/__pycache__/six.cpython-311.pyc",
        "/usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc",
    ] {
        assert!(
            stderr.contains(&format!("code object from '{loaded}'")),
            "{loaded} not loaded:\n{stderr}"
        );
    }
    let compiled: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("# code object from /"))
        .collect();
    assert!(compiled.is_empty(), "compiled at start: {compiled:?}");

    // Without bytecode the same start compiles the function and six.
    let (_dir, layout, record) = image(&["--no-bytecode"]);
    assert_eq!(record["bytecode"]["status"], "skipped", "{record}");
    let stderr = invoke_verbose(&layout, run_cache.path());
    for source in [
        "/opt/hoist/function/user_function.py",
        "/opt/hoist/site-packages/six.py",
    ] {
        assert!(
            stderr.contains(&format!("# code object from {source}\n")),
            "{source} not compiled:\n{stderr}"
        );
    }
}

#[test]
fn a_base_without_stdlib_bytecode_is_reported() {
    let python = testkit::python_base().expect("python base image");
    let dir = tempfile::tempdir().unwrap();
    let mut w = oci_layer::LayerWriter::new(oci_layer::WriteOptions::default());
    w.add_bytes("usr/lib/python3.11/.wh.__pycache__", 0o644, Vec::new())
        .unwrap();
    let bare = testkit::stack_layers(&python, dir.path(), "bare", [w]).unwrap();
    let f = function_dir(ECHO, None);
    let cache = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let output = format!("oci:{}:fn", out_dir.path().display());
    let run = |base: &str| {
        let out = hoist(&[
            "--json",
            "build",
            f.path().to_str().unwrap(),
            "--base",
            base,
            "--tag",
            "127.0.0.1:1/fn/bare:v1",
            "--output",
            &output,
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record: Value = serde_json::from_slice(&out.stdout).unwrap();
        (record, String::from_utf8(out.stderr).unwrap())
    };
    let (record, stderr) = run(&bare.oci_ref());
    assert_eq!(record["stdlib_bytecode"], false, "{record}");
    assert!(
        stderr.contains("ships no bytecode for the standard library of /usr/bin/python3.11"),
        "{stderr}"
    );
    let (record, stderr) = run(&python.oci_ref());
    assert_eq!(record["stdlib_bytecode"], true, "{record}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
