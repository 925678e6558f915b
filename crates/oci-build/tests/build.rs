//! Builds against real tools: uv resolving from the package index, a real
//! registry for registry bases, and the Debian-built Python base run with
//! umoci and chroot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_build::{BuildOutput, Builder, Error, FunctionSpec, Phase, ResolverSettings, Role};
use oci_layer::{LayerWriter, UnpackOptions, WriteOptions};
use oci_model::{Descriptor, Digest, Layout, Manifest, media_type};
use oci_push::Endpoint;
use serde_json::{Value, json};

const HELLO: &str =
    "def handler(inputs):\n    return {\"hello\": inputs.get(\"name\", \"world\")}\n";
const USES_DEPS: &str = "import attrs\nimport six\n\n\ndef handler(inputs):\n    return {\"sum\": inputs[\"a\"] + inputs[\"b\"], \"six\": six.__version__, \"attrs\": attrs.__version__}\n";
const RAISES: &str = "def handler(inputs):\n    raise ValueError(\"bad input: %r\" % (inputs,))\n";

const DPKG_STATUS: &str =
    "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n\n";

/// A small base: a dpkg status naming libc6 2.36 and a (fake)
/// `usr/bin/python3.11`, in two layers, OCI or Docker media types.
fn fake_base(dir: &Path, docker: bool) -> Endpoint {
    let layout = Layout::create(dir).unwrap();
    let mut layers = Vec::new();
    let mut w = LayerWriter::new(WriteOptions::default());
    w.add_bytes(
        "var/lib/dpkg/status",
        0o644,
        DPKG_STATUS.as_bytes().to_vec(),
    )
    .unwrap();
    w.add_dir("tmp").unwrap();
    layers.push(w);
    let mut w = LayerWriter::new(WriteOptions::default());
    w.add_bytes("usr/bin/python3.11", 0o755, b"not really python".to_vec())
        .unwrap();
    w.add_symlink("usr/bin/python3", "python3.11").unwrap();
    layers.push(w);
    let types = if docker {
        (
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP,
        )
    } else {
        (
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER_GZIP,
        )
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for w in layers {
        let mut blob = Vec::new();
        let info = w.finish(&mut blob).unwrap();
        layout.write_blob(&blob).unwrap();
        descs.push(json!({"mediaType": types.2, "digest": info.digest, "size": info.size}));
        diff_ids.push(info.diff_id);
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin", "HOME=/root"], "Cmd": ["/usr/bin/python3.11"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "status"}, {"created_by": "python"}],
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = layout.write_blob(&config).unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": types.0,
        "config": {"mediaType": types.1, "digest": config_digest, "size": config.len()},
        "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = layout.write_blob(&manifest).unwrap();
    let desc = Descriptor {
        media_type: types.0.into(),
        digest,
        size: manifest.len() as u64,
        platform: None,
    };
    layout.add_manifest(&desc, Some("base")).unwrap();
    format!("oci:{}:base", dir.display()).parse().unwrap()
}

fn function(dir: &Path, code: &str, requirements: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("user_function.py"), code).unwrap();
    let reqs = dir.join("requirements.txt");
    match requirements {
        Some(r) => std::fs::write(&reqs, r).unwrap(),
        None => {
            let _ = std::fs::remove_file(&reqs);
        }
    }
    dir.to_owned()
}

fn builder(cache: &Path) -> Builder {
    let client = registry_client::Client::builder().build().unwrap();
    Builder::new(client).unwrap().cache_dir(cache).epoch(0)
}

fn spec(dir: &Path, base: &Endpoint) -> FunctionSpec {
    let mut spec = FunctionSpec::new(
        dir.to_owned(),
        base.clone(),
        "127.0.0.1:5000/acme/functions/user-alice-func-hello:v1-0000abcd"
            .parse()
            .unwrap(),
    );
    spec.user = Some("alice".into());
    spec.function = Some("hello".into());
    spec.version = Some("1".into());
    spec
}

fn read_json(out: &BuildOutput, digest: &Digest) -> Value {
    let layout = Layout::open(&out.store).unwrap();
    serde_json::from_slice(&layout.read_blob(digest, 1 << 22).unwrap()).unwrap()
}

fn config(out: &BuildOutput) -> Value {
    read_json(out, &out.config_digest)
}

/// Unpacks one of the image's layers and returns the directory.
fn unpack_layer(out: &BuildOutput, digest: &Digest, into: &Path) -> PathBuf {
    let layout = Layout::open(&out.store).unwrap();
    let file = std::fs::File::open(layout.blob_path(digest)).unwrap();
    let dest = into.join(digest.short(12));
    oci_layer::unpack(
        file,
        oci_layer::Compression::Gzip,
        &dest,
        &UnpackOptions::default(),
    )
    .unwrap();
    dest
}

fn layers_of(out: &BuildOutput, role: Role) -> Vec<Digest> {
    out.layers
        .iter()
        .filter(|l| l.role == role)
        .map(|l| l.digest.clone())
        .collect()
}

#[tokio::test]
async fn invalid_function_fails_before_the_base_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = function(
        &tmp.path().join("f"),
        "import subprocess\n\ndef handler(i):\n    return {}\n",
        None,
    );
    let base: Endpoint = "oci:/nonexistent/layout:base".parse().unwrap();
    let err = builder(&tmp.path().join("cache"))
        .build(&spec(&dir, &base))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Invalid { .. }), "{text}");
    assert!(text.contains("user_function.py:1:"), "{text}");
    assert!(!tmp.path().join("cache/store").exists());
}

/// A name is where an image goes, not what it is: two tags, or another
/// repository, give one digest; the version label is what changes it.
#[tokio::test]
async fn tags_point_at_one_image() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fake_base(&tmp.path().join("base"), false);
    let dir = function(&tmp.path().join("f"), HELLO, None);
    let b = builder(&tmp.path().join("cache"));
    let named = |name: &str, version: Option<&str>| {
        let mut s = FunctionSpec::new(dir.clone(), base.clone(), name.parse().unwrap());
        s.version = version.map(str::to_owned);
        s
    };
    let a = b.build(&named("127.0.0.1:5000/app:a", None)).await.unwrap();
    let other_tag = b.build(&named("127.0.0.1:5000/app:b", None)).await.unwrap();
    let other_repo = b
        .build(&named("127.0.0.1:5001/team/other:v9", None))
        .await
        .unwrap();
    assert_eq!(a.manifest_digest, other_tag.manifest_digest);
    assert_eq!(a.manifest_digest, other_repo.manifest_digest);
    let labels = |out: &BuildOutput| read_json(out, &out.config_digest)["config"]["Labels"].clone();
    assert!(
        labels(&a).get("dev.hoist.function.version").is_none(),
        "{}",
        labels(&a)
    );
    let v1 = b
        .build(&named("127.0.0.1:5000/app:a", Some("1")))
        .await
        .unwrap();
    let v2 = b
        .build(&named("127.0.0.1:5000/app:a", Some("2")))
        .await
        .unwrap();
    assert_ne!(v1.manifest_digest, v2.manifest_digest);
    assert_eq!(labels(&v1)["dev.hoist.function.version"], "1");
}

#[tokio::test]
async fn code_only_image_is_reproducible_and_minimal() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fake_base(&tmp.path().join("base"), false);
    let dir = function(&tmp.path().join("f"), HELLO, None);
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("lib/helper.py"), "X = 1\n").unwrap();
    let a = builder(&tmp.path().join("a"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    let b = builder(&tmp.path().join("b"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.manifest_media_type, media_type::OCI_MANIFEST);
    // No requirements: base layers and the code layer, nothing else.
    let roles: Vec<Role> = a.layers.iter().map(|l| l.role).collect();
    assert_eq!(roles, [Role::Base, Role::Base, Role::Code]);
    assert!(a.packages.is_empty());
    assert!(a.layers.iter().all(|l| !l.reused));
    assert_eq!(a.facts.interpreter, "/usr/bin/python3.11");
    assert_eq!(a.facts.python_version, "3.11");
    assert_eq!(a.base, None);
    let phases: Vec<Phase> = a.phases.iter().map(|p| p.0).collect();
    assert_eq!(
        phases,
        [
            Phase::Validate,
            Phase::Base,
            Phase::Resolve,
            Phase::Wheels,
            Phase::Install,
            Phase::Code,
            Phase::Bytecode,
            Phase::Config
        ]
    );
    // No sandbox given: no bytecode, and the build says so.
    assert_eq!(
        a.bytecode,
        oci_build::Bytecode::Skipped {
            reason: oci_build::NoBytecode::NoSandbox
        }
    );

    let c = config(&a);
    assert_eq!(c["config"]["User"], "1000:1000");
    assert_eq!(c["config"]["WorkingDir"], "/opt/hoist/function");
    assert_eq!(
        c["config"]["Cmd"],
        json!(["/usr/bin/python3.11", "/opt/hoist/runner.py"])
    );
    assert!(c["config"].get("Entrypoint").is_none());
    let env: Vec<&str> = c["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in [
        "PATH=/usr/bin:/bin",
        "HOME=/tmp",
        "PYTHONPATH=/opt/hoist/site-packages:/opt/hoist/function",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
    ] {
        assert!(env.contains(&want), "{want} in {env:?}");
    }
    let labels = &c["config"]["Labels"];
    assert_eq!(labels["dev.hoist.function.id"], "alice/hello");
    assert_eq!(labels["dev.hoist.function.version"], "1");
    assert_eq!(labels["dev.hoist.function.created"], "1970-01-01T00:00:00Z");
    assert_eq!(c["created"], "1970-01-01T00:00:00Z");
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(c["history"].as_array().unwrap().len(), 3);
    let m = read_json(&a, &a.manifest_digest);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"],
        a.base_digest.as_str()
    );

    let code = unpack_layer(&a, &layers_of(&a, Role::Code)[0], tmp.path());
    assert_eq!(
        std::fs::read_to_string(code.join("opt/hoist/function/user_function.py")).unwrap(),
        HELLO
    );
    assert!(code.join("opt/hoist/function/lib/helper.py").is_file());
    assert!(code.join("opt/hoist/runner.py").is_file());
    assert!(!code.join("opt/hoist/function/requirements.txt").exists());

    // Only the code changes: base layers are reused, code, config and
    // manifest change.
    std::fs::write(dir.join("user_function.py"), format!("{HELLO}# v2\n")).unwrap();
    let a2 = builder(&tmp.path().join("a"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    assert_eq!(layers_of(&a, Role::Base), layers_of(&a2, Role::Base));
    assert!(
        a2.layers
            .iter()
            .filter(|l| l.role == Role::Base)
            .all(|l| l.reused)
    );
    assert_ne!(layers_of(&a, Role::Code), layers_of(&a2, Role::Code));
    assert_ne!(a.config_digest, a2.config_digest);
    assert_ne!(a.manifest_digest, a2.manifest_digest);
    // The store names the latest build of this reference.
    let store = Layout::open(&a2.store).unwrap();
    assert_eq!(
        store.resolve(Some(&a2.store_tag)).unwrap().digest,
        a2.manifest_digest
    );
    // Another epoch moves every time stamp, and so the digest.
    let e = builder(&tmp.path().join("a"))
        .epoch(1_700_000_000)
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    assert_ne!(e.manifest_digest, a2.manifest_digest);
    assert_eq!(config(&e)["created"], "2023-11-14T22:13:20Z");
}

#[tokio::test]
async fn docker_base_gives_a_docker_image() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fake_base(&tmp.path().join("base"), true);
    let dir = function(&tmp.path().join("f"), HELLO, None);
    let out = builder(&tmp.path().join("c"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    assert_eq!(out.manifest_media_type, media_type::DOCKER_MANIFEST);
    let m = read_json(&out, &out.manifest_digest);
    assert_eq!(m["config"]["mediaType"], media_type::DOCKER_CONFIG);
    assert!(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["mediaType"] == media_type::DOCKER_LAYER_GZIP)
    );
    assert!(m.get("annotations").is_none());
    let bytes = Layout::open(&out.store)
        .unwrap()
        .read_blob(&out.manifest_digest, 1 << 20)
        .unwrap();
    Manifest::from_bytes(bytes, None).unwrap();
}

#[tokio::test]
async fn base_without_python_needs_a_version() {
    let tmp = tempfile::tempdir().unwrap();
    let layout_dir = tmp.path().join("base");
    let fixture = testkit::write_image(
        &layout_dir,
        "v1",
        &testkit::ImageSpec {
            layers: vec![1024],
            seed: 1,
            docker_media_types: false,
        },
    )
    .unwrap();
    let base: Endpoint = format!("oci:{}:v1", layout_dir.display()).parse().unwrap();
    let dir = function(&tmp.path().join("f"), HELLO, None);
    let b = builder(&tmp.path().join("c"));
    let err = b.build(&spec(&dir, &base)).await.unwrap_err();
    assert!(matches!(err, Error::NoPython { .. }), "{err}");
    let mut s = spec(&dir, &base);
    s.python_version = Some("3.12".into());
    let out = b.build(&s).await.unwrap();
    assert_eq!(out.facts.interpreter, "/usr/bin/python3.12");
    assert_eq!(out.base_digest, fixture.manifest_digest);
    // Requirements need a C library the scan can name.
    function(&dir, HELLO, Some("six\n"));
    let err = b.build(&s).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedLibc { .. }), "{err}");
}

#[tokio::test]
async fn registry_base_is_pinned_and_its_layers_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let layout_dir = tmp.path().join("base");
    fake_base(&layout_dir, false);
    let registry = testkit::Registry::start().await.unwrap();
    let target = format!("{}/base/python:3.11", registry.host());
    testkit::push_layout(&layout_dir, "base", &target, None)
        .await
        .unwrap();
    let base: Endpoint = target.parse().unwrap();
    let dir = function(&tmp.path().join("f"), HELLO, None);
    let b = builder(&tmp.path().join("c"));
    let out = b.build(&spec(&dir, &base)).await.unwrap();
    let pinned = out.base.clone().unwrap();
    assert_eq!(pinned.digest(), Some(&out.base_digest));
    let store = Layout::open(&out.store).unwrap();
    for l in &out.layers {
        assert!(store.has_blob(&l.digest, Some(l.size)), "{}", l.digest);
    }
    let m = read_json(&out, &out.manifest_digest);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.name"],
        target.as_str()
    );
    let again = b.build(&spec(&dir, &base)).await.unwrap();
    assert_eq!(again.manifest_digest, out.manifest_digest);
    assert!(again.layers.iter().all(|l| l.reused));
}

#[tokio::test]
async fn requirements_make_a_cached_dependency_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fake_base(&tmp.path().join("base"), false);
    let dir = function(&tmp.path().join("f"), USES_DEPS, Some("six\nattrs>=23\n"));
    let a = builder(&tmp.path().join("a"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    let names: Vec<&str> = a.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["attrs", "six"]);
    let roles: Vec<Role> = a.layers.iter().map(|l| l.role).collect();
    assert_eq!(
        roles,
        [Role::Base, Role::Base, Role::Dependencies, Role::Code]
    );
    let deps = unpack_layer(&a, &layers_of(&a, Role::Dependencies)[0], tmp.path());
    let site = deps.join("opt/hoist/site-packages");
    assert!(site.join("six.py").is_file());
    assert!(site.join("attrs/__init__.py").is_file());
    let six_info = site.join(format!("six-{}.dist-info", a.packages[1].version));
    assert_eq!(
        std::fs::read(six_info.join("INSTALLER")).unwrap(),
        b"hoist\n"
    );
    let pyc = walk(&deps)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pyc"))
        .count();
    assert_eq!(pyc, 0);

    // Another machine (fresh cache) builds the same image.
    let b = builder(&tmp.path().join("b"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    assert_eq!(a.manifest_digest, b.manifest_digest);

    // A code-only change reuses the lock and the layer: uv is not even
    // started (the program given does not exist).
    std::fs::write(dir.join("user_function.py"), format!("{USES_DEPS}# v2\n")).unwrap();
    let mut no_uv = ResolverSettings::from_env();
    no_uv.uv = PathBuf::from("/nonexistent/uv");
    let c = builder(&tmp.path().join("a"))
        .resolver(no_uv.clone())
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    assert_eq!(
        layers_of(&a, Role::Dependencies),
        layers_of(&c, Role::Dependencies)
    );
    assert!(
        c.layers
            .iter()
            .filter(|l| l.role != Role::Code)
            .all(|l| l.reused)
    );
    assert_ne!(a.manifest_digest, c.manifest_digest);

    // Changed requirements resolve again and give another layer.
    function(&dir, USES_DEPS, Some("six\n"));
    let err = builder(&tmp.path().join("a"))
        .resolver(no_uv)
        .build(&spec(&dir, &base))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UvNotFound { .. }), "{err}");
    let d = builder(&tmp.path().join("a"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    assert_ne!(
        layers_of(&a, Role::Dependencies),
        layers_of(&d, Role::Dependencies)
    );
    assert_eq!(d.packages.len(), 1);
}

#[tokio::test]
async fn unbuildable_requirements_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fake_base(&tmp.path().join("base"), false);
    let cache = tmp.path().join("c");
    let dir = function(&tmp.path().join("f"), HELLO, Some("pycrypto\n"));
    let err = builder(&cache).build(&spec(&dir, &base)).await.unwrap_err();
    assert!(
        matches!(&err, Error::NoWheel { package, .. } if package == "pycrypto"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "pycrypto: no wheel for cp311 x86_64-manylinux_2_36; sdist-only packages are not built"
    );
    let zero = "0".repeat(64);
    function(
        &dir,
        HELLO,
        Some(&format!("six==1.17.0 --hash=sha256:{zero}\n")),
    );
    let err = builder(&cache).build(&spec(&dir, &base)).await.unwrap_err();
    assert!(
        matches!(&err, Error::HashMismatch { package, .. } if package == "six"),
        "{err}"
    );
    function(&dir, HELLO, Some("no-such-package-hoist-test-zz\n"));
    let err = builder(&cache).build(&spec(&dir, &base)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Resolve { message } if message.contains("no-such-package-hoist-test-zz")),
        "{err}"
    );
    // Nothing was cached for the failures.
    let locks = cache.join("locks");
    assert!(!locks.exists() || std::fs::read_dir(&locks).unwrap().count() == 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Unpacks the image with umoci and runs the runner as uid 1000 in a
/// chroot with `inputs`; returns the exit code and output.json.
fn run_image(out: &BuildOutput, work: &Path, inputs: &str) -> (i32, Value, String) {
    let bundle = work.join(format!("bundle-{}", out.manifest_digest.short(12)));
    if !bundle.exists() {
        let image = format!("{}:{}", out.store.display(), out.store_tag);
        let status = Command::new("umoci")
            .args(["raw", "unpack", "--image", &image])
            .arg(&bundle)
            .status()
            .unwrap();
        assert!(status.success(), "umoci raw unpack {image}");
    }
    let io = bundle.join("io");
    std::fs::create_dir_all(&io).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&io, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(io.join("inputs.json"), inputs).unwrap();
    let _ = std::fs::remove_file(io.join("output.json"));
    let c = config(out);
    let env: BTreeMap<String, String> = c["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let cmd: Vec<String> = c["config"]["Cmd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let result = Command::new("chroot")
        .arg("--userspec=1000:1000")
        .arg(&bundle)
        .args(&cmd)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let output = std::fs::read(io.join("output.json")).unwrap_or_default();
    let value = serde_json::from_slice(&output).unwrap_or(Value::Null);
    (
        result.status.code().unwrap_or(-1),
        value,
        String::from_utf8_lossy(&result.stderr).into_owned(),
    )
}

#[tokio::test]
async fn image_runs_on_the_python_base() {
    let base = tokio::task::spawn_blocking(testkit::python_base)
        .await
        .unwrap()
        .unwrap();
    let base: Endpoint = base.oci_ref().parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    let dir = function(&tmp.path().join("f"), USES_DEPS, Some("six\nattrs\n"));
    let out = builder(&cache).build(&spec(&dir, &base)).await.unwrap();
    assert_eq!(out.facts.interpreter, "/usr/bin/python3.11");
    assert_eq!(
        out.facts.libc,
        Some(oci_build::Libc::Glibc {
            major: 2,
            minor: 36
        })
    );
    let (code, output, stderr) = run_image(&out, tmp.path(), r#"{"a": 2, "b": 3}"#);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(output["sum"], 5);
    assert_eq!(output["six"], out.packages[1].version.as_str());

    // Bad inputs: a structured error, exit 1.
    let (code, output, stderr) = run_image(&out, tmp.path(), "not json");
    assert_eq!(code, 1);
    assert_eq!(output["error"]["type"], "JSONDecodeError");
    assert!(stderr.contains("JSONDecodeError"), "{stderr}");

    function(&dir, RAISES, None);
    let out = builder(&cache).build(&spec(&dir, &base)).await.unwrap();
    let (code, output, _) = run_image(&out, tmp.path(), r#"{"x": 1}"#);
    assert_eq!(code, 1);
    assert_eq!(output["error"]["type"], "ValueError");
    assert!(
        output["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad input"),
        "{output}"
    );
    assert!(
        output["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("user_function.py"),
        "{output}"
    );

    let returns_list = "def handler(inputs):\n    return [1]\n";
    function(&dir, returns_list, None);
    let out = builder(&cache).build(&spec(&dir, &base)).await.unwrap();
    let (code, output, _) = run_image(&out, tmp.path(), "{}");
    assert_eq!(code, 1);
    assert_eq!(output["error"]["type"], "TypeError");
}

/// Phase timings of a code-only rebuild and of a build whose lock and
/// dependency layer are not cached (wheels and uv's cache warm).
#[tokio::test]
#[allow(clippy::print_stderr)]
async fn phase_timings() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tokio::task::spawn_blocking(testkit::python_base)
        .await
        .unwrap()
        .unwrap();
    let base: Endpoint = base.oci_ref().parse().unwrap();
    let cache = tmp.path().join("c");
    let dir = function(&tmp.path().join("f"), USES_DEPS, Some("six\nattrs\n"));
    let b = builder(&cache);
    let first = b.build(&spec(&dir, &base)).await.unwrap();
    let show = |what: &str, out: &BuildOutput| {
        let total: std::time::Duration = out.phases.iter().map(|p| p.1).sum();
        let parts: Vec<String> = out
            .phases
            .iter()
            .map(|(p, d)| format!("{p} {:.1}", d.as_secs_f64() * 1e3))
            .collect();
        eprintln!(
            "{what}: total {:.1} ms ({})",
            total.as_secs_f64() * 1e3,
            parts.join(", ")
        );
        total
    };
    show("first build", &first);
    std::fs::write(dir.join("user_function.py"), format!("{USES_DEPS}# edit\n")).unwrap();
    let code_only = b.build(&spec(&dir, &base)).await.unwrap();
    let t = show("code-only rebuild", &code_only);
    assert!(t.as_millis() < 2000, "{t:?}");
    std::fs::remove_dir_all(cache.join("locks")).unwrap();
    std::fs::remove_dir_all(cache.join("layers")).unwrap();
    let cold = b.build(&spec(&dir, &base)).await.unwrap();
    show("cold deps (wheels cached)", &cold);
    assert_eq!(cold.manifest_digest, code_only.manifest_digest);
}

/// A binary wheel with vendored shared libraries (`numpy.libs`) installs
/// and imports on the Debian base.
#[tokio::test]
async fn numpy_runs_on_the_python_base() {
    let base = tokio::task::spawn_blocking(testkit::python_base)
        .await
        .unwrap()
        .unwrap();
    let base: Endpoint = base.oci_ref().parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let code = "import numpy\n\n\ndef handler(inputs):\n    return {\"total\": int(numpy.arange(inputs[\"n\"]).sum()), \"version\": numpy.__version__}\n";
    let dir = function(&tmp.path().join("f"), code, Some("numpy<3\n"));
    let out = builder(&tmp.path().join("c"))
        .build(&spec(&dir, &base))
        .await
        .unwrap();
    let numpy = &out.packages[0];
    assert_eq!(numpy.name, "numpy");
    assert!(numpy.filename.contains("cp311") && numpy.filename.contains("manylinux"));
    let (code, output, stderr) = run_image(&out, tmp.path(), r#"{"n": 10}"#);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(output["total"], 45);
    assert_eq!(output["version"], numpy.version.as_str());
}
