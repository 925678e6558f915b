//! Bytecode at build time, through a real sandbox (run as root): the
//! Debian-built Python base compiles the dependency and code layers
//! reproducibly and once, and a hostile base's "interpreter" gets nothing
//! past the capture.
//!
//! No libtest harness: this binary is its own sandbox launcher, which must
//! take over before any thread starts, so `main` checks for the launcher
//! argument first and then runs the tests one by one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use oci_build::{BuildOutput, Builder, Bytecode, Error, FunctionSpec, NoBytecode, Role};
use oci_layer::{LayerWriter, UnpackOptions, WriteOptions};
use oci_model::{Digest, Layout};
use oci_push::Endpoint;
use sandbox_run::{Launcher, Limits, Sandbox, SandboxConfig};

const LAUNCHER_ARG: &str = "__sandbox-launch";
/// A test: its name and body.
type Test = (&'static str, fn(&Env));
const USES_DEPS: &str = "import attrs\nimport six\n\n\ndef handler(inputs):\n    return {\"six\": six.__version__, \"attrs\": attrs.__version__}\n";

#[expect(clippy::print_stdout, reason = "a test runner reports on stdout")]
fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == LAUNCHER_ARG)
    {
        sandbox_run::launcher_main();
    }
    let tests: [Test; 3] = [
        (
            "bytecode_is_reproducible_and_compiled_once",
            bytecode_is_reproducible_and_compiled_once,
        ),
        (
            "without_a_sandbox_there_is_no_bytecode",
            without_a_sandbox_there_is_no_bytecode,
        ),
        (
            "a_hostile_interpreter_gets_nothing_past_the_capture",
            a_hostile_interpreter_gets_nothing_past_the_capture,
        ),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let env = Env::new();
    let mut failed = Vec::new();
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&env))).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(name);
        }
    }
    drop(env);
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// The sandbox the tests share: its own state root and cgroup parent,
/// removed at the end.
struct Env {
    config: SandboxConfig,
    _state: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        assert!(
            nix_is_root(),
            "these tests run the base image's interpreter in a sandbox and need root"
        );
        let state = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let config = SandboxConfig::new(Launcher::new(exe).with_args([LAUNCHER_ARG]))
            .with_state_root(state.path())
            .with_cgroup_parent(format!("hoist-test-bytecode-{}", std::process::id()));
        Sandbox::new(config.clone()).unwrap().sweep().unwrap();
        Self {
            config,
            _state: state,
        }
    }

    fn builder(&self, cache: &Path) -> Builder {
        let client = registry_client::Client::builder().build().unwrap();
        Builder::new(client)
            .unwrap()
            .cache_dir(cache)
            .epoch(0)
            .sandbox(self.config.clone())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.config.cgroup_parent));
        }
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

fn function(dir: &Path, code: &str, requirements: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("user_function.py"), code).unwrap();
    if let Some(r) = requirements {
        std::fs::write(dir.join("requirements.txt"), r).unwrap();
    }
    dir.to_owned()
}

fn spec(dir: &Path, base: &Endpoint) -> FunctionSpec {
    FunctionSpec::new(
        dir.to_owned(),
        base.clone(),
        "127.0.0.1:5000/fn/bytecode:v1".parse().unwrap(),
    )
}

fn python_base() -> Endpoint {
    testkit::python_base().unwrap().oci_ref().parse().unwrap()
}

fn layer(out: &BuildOutput, role: Role) -> Digest {
    out.layers
        .iter()
        .find(|l| l.role == role)
        .map(|l| l.digest.clone())
        .unwrap()
}

/// Unpacks a layer of the image and returns the directory.
fn unpack(out: &BuildOutput, digest: &Digest, into: &Path) -> PathBuf {
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

fn compiled(out: &BuildOutput) -> (u64, u64) {
    match out.bytecode {
        Bytecode::Compiled {
            modules,
            compiled_now,
            ..
        } => (modules, compiled_now),
        ref other => panic!("no bytecode: {other:?}"),
    }
}

/// Hash-based, unchecked bytecode: flags 0b01 after the magic number.
fn assert_unchecked_hash_pyc(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 16, "{}", path.display());
    assert_eq!(&bytes[2..4], b"\r\n", "{}: magic", path.display());
    assert_eq!(&bytes[4..8], &[1, 0, 0, 0], "{}: flags", path.display());
}

fn bytecode_is_reproducible_and_compiled_once(env: &Env) {
    let tmp = tempfile::tempdir().unwrap();
    let base = python_base();
    let dir = function(
        &tmp.path().join("f"),
        USES_DEPS,
        Some("six==1.17.0\nattrs==25.3.0\n"),
    );
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("lib/helper.py"), "X = {'b', 'a', 'c'}\n").unwrap();
    let a = block_on(env.builder(&tmp.path().join("a")).build(&spec(&dir, &base))).unwrap();
    let b = block_on(env.builder(&tmp.path().join("b")).build(&spec(&dir, &base))).unwrap();
    assert_eq!(
        a.manifest_digest, b.manifest_digest,
        "fresh caches, one image"
    );
    let (modules, now) = compiled(&a);
    assert_eq!(modules, now, "a fresh cache compiles everything");
    assert!(modules > 20, "{:?}", a.bytecode);

    let deps = unpack(&a, &layer(&a, Role::Dependencies), tmp.path());
    let site = deps.join("opt/hoist/site-packages");
    assert_unchecked_hash_pyc(&site.join("__pycache__/six.cpython-311.pyc"));
    assert_unchecked_hash_pyc(&site.join("attrs/__pycache__/__init__.cpython-311.pyc"));
    let code = unpack(&a, &layer(&a, Role::Code), tmp.path());
    let function = code.join("opt/hoist/function");
    assert_unchecked_hash_pyc(&function.join("__pycache__/user_function.cpython-311.pyc"));
    assert_unchecked_hash_pyc(&function.join("lib/__pycache__/helper.cpython-311.pyc"));
    // Nothing else the compile wrote reaches a layer.
    let stray: Vec<String> = walk(&code)
        .into_iter()
        .chain(walk(&deps))
        .filter(|p| p.to_string_lossy().contains("__pycache__"))
        .filter(|p| !p.to_string_lossy().ends_with(".cpython-311.pyc"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // The same inputs again: nothing is compiled, nothing changes.
    let again = block_on(env.builder(&tmp.path().join("a")).build(&spec(&dir, &base))).unwrap();
    assert_eq!(again.manifest_digest, a.manifest_digest);
    assert_eq!(compiled(&again), (modules, 0));

    // A code-only change compiles that file alone; the dependency layer
    // stays.
    std::fs::write(dir.join("user_function.py"), format!("{USES_DEPS}# v2\n")).unwrap();
    let c = block_on(env.builder(&tmp.path().join("a")).build(&spec(&dir, &base))).unwrap();
    assert_eq!(compiled(&c), (modules, 1));
    assert_eq!(layer(&c, Role::Dependencies), layer(&a, Role::Dependencies));
    assert_ne!(layer(&c, Role::Code), layer(&a, Role::Code));

    // Another epoch moves every mtime: the cached layer is not reused.
    let e = block_on(
        env.builder(&tmp.path().join("a"))
            .epoch(1_700_000_000)
            .build(&spec(&dir, &base)),
    )
    .unwrap();
    assert_ne!(layer(&e, Role::Dependencies), layer(&c, Role::Dependencies));
    assert_eq!(compiled(&e).0, modules);
}

fn without_a_sandbox_there_is_no_bytecode(_env: &Env) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = function(
        &tmp.path().join("f"),
        USES_DEPS,
        Some("six==1.17.0\nattrs==25.3.0\n"),
    );
    let client = registry_client::Client::builder().build().unwrap();
    let out = block_on(
        Builder::new(client)
            .unwrap()
            .cache_dir(tmp.path().join("c"))
            .build(&spec(&dir, &python_base())),
    )
    .unwrap();
    assert_eq!(
        out.bytecode,
        Bytecode::Skipped {
            reason: NoBytecode::NoSandbox
        }
    );
    let code = unpack(&out, &layer(&out, Role::Code), tmp.path());
    assert!(!code.join("opt/hoist/function/__pycache__").exists());
}

/// A BusyBox base whose `python3.11` is a shell script running `script`.
fn hostile_base(dir: &Path, script: &str) -> Endpoint {
    let busybox = testkit::busybox_base().unwrap();
    let mut w = LayerWriter::new(WriteOptions::default());
    w.add_bytes(
        "usr/bin/python3.11",
        0o755,
        format!("#!/bin/sh\n{script}\n").into_bytes(),
    )
    .unwrap();
    let image = testkit::stack_layers(&busybox, dir, "hostile", [w]).unwrap();
    image.oci_ref().parse().unwrap()
}

fn a_hostile_interpreter_gets_nothing_past_the_capture(env: &Env) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = function(
        &tmp.path().join("f"),
        "def handler(i):\n    return {}\n",
        None,
    );
    let pycache = "/opt/hoist/function/__pycache__";
    let pyc = format!("{pycache}/user_function.cpython-311.pyc");
    let cases = [
        (
            format!("mkdir -p {pycache} && ln -s /etc/shadow {pyc}"),
            "not a regular file",
        ),
        (format!("mkdir -p {pycache} && mkfifo {pyc}"), "a FIFO"),
        (format!("mkdir -p {pyc}"), "not a regular file"),
        ("echo broken >&2; exit 3".to_owned(), "broken"),
        (
            format!("mkdir -p {pycache} && head -c 20000000 /dev/zero > {pyc}"),
            "over 16 MiB",
        ),
        ("sleep 60".to_owned(), "timed out"),
    ];
    let mut limits = Limits::default();
    limits.timeout = Duration::from_secs(3);
    for (i, (script, want)) in cases.into_iter().enumerate() {
        let base = hostile_base(&tmp.path().join(format!("base-{i}")), &script);
        let cache = tmp.path().join(format!("c-{i}"));
        let err = block_on(
            env.builder(&cache)
                .bytecode_limits(limits.clone())
                .build(&spec(&dir, &base)),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Compile { .. } | Error::BadBytecode { .. }),
            "{script}: {err}"
        );
        assert!(err.to_string().contains(want), "{script}: {err}");
        // Nothing of it was cached as the function's bytecode.
        let cached = cache.join("bytecode");
        assert!(
            !cached.exists() || std::fs::read_dir(&cached).unwrap().count() == 0,
            "{script}"
        );
    }
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
