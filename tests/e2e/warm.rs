//! Warm sandboxes of real function images (`function_run::WarmFunction`):
//! one sandbox serves many invocations, and none of them sees what the one
//! before left — memory, `/io`, `/tmp`, processes — while a timeout, a
//! broken server or a hostile output ends or fails only what it should.

use std::path::PathBuf;
use std::time::Duration;

use function_run::{Failure, Options, Reply, WarmFunction};
use image_pull::{PullConfig, Puller};
use layer_cache::{Cache, CacheConfig, CachedImage};
use sandbox_run::{Launcher, RootFs, Sandbox, SandboxConfig};
use serde_json::{Value, json};

use super::functions;

/// The function every test keeps warm; what it does depends on its inputs.
const CODE: &str = r#"
import os
import signal
import time

CALLS = [0]
LOADED = time.time()

def handler(inputs):
    CALLS[0] += 1
    seen = {"tmp": sorted(os.listdir("/tmp")), "io": sorted(os.listdir("/io"))}
    with open("/tmp/left-by-%d" % inputs["n"], "w") as f:
        f.write("x")
    with open("/io/extra-%d" % inputs["n"], "w") as f:
        f.write("x")
    print("task %d" % inputs["n"])
    if inputs.get("stray"):
        if os.fork() == 0:
            time.sleep(1000)
            os._exit(0)
    if inputs.get("sleep"):
        time.sleep(inputs["sleep"])
    if inputs.get("link"):
        os.symlink(inputs["link"], "/io/output.json")
        os._exit(0)
    if inputs.get("interrupt_server"):
        os.kill(1, signal.SIGINT)
        time.sleep(0.5)
    if inputs.get("fail"):
        raise ValueError("asked to fail")
    return {"calls": CALLS[0], "loaded": LOADED, "pid": os.getpid(), **seen}
"#;

/// A sandbox of its own (state root, cgroup parent) whose launcher is the
/// hoist binary, and the warm function image pulled into a layer cache.
struct Fixture {
    sandbox: Sandbox,
    state: tempfile::TempDir,
    parent: String,
    image: CachedImage,
    _layout: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let (layout_dir, layout) = functions::build(CODE);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(CacheConfig::new(cache_dir.path()))
            .await
            .unwrap();
        let builder = registry_client::ClientBuilder::default();
        let image = Puller::new(cache, builder, PullConfig::default())
            .pull(&layout.parse::<oci_model::Endpoint>().unwrap())
            .await
            .unwrap();
        let state = tempfile::tempdir().unwrap();
        let parent = format!("hoist-test-warm-{name}-{}", std::process::id());
        let launcher = Launcher::new(env!("CARGO_BIN_EXE_hoist")).with_args(["__sandbox-launch"]);
        let sandbox = Sandbox::new(
            SandboxConfig::new(launcher)
                .with_state_root(state.path())
                .with_cgroup_parent(&parent),
        )
        .unwrap();
        Self {
            sandbox,
            state,
            parent,
            image,
            _layout: layout_dir,
            _cache: cache_dir,
        }
    }

    fn start(&self, options: &Options) -> WarmFunction {
        let rootfs = RootFs::Overlay {
            lower: self.image.lower_dirs(),
        };
        WarmFunction::start(&self.sandbox, rootfs, &self.image.config, options).unwrap()
    }

    /// No bundle, container state or cgroup is left.
    fn assert_clean(&self) {
        for dir in ["bundles", "containers"] {
            let left: Vec<PathBuf> = std::fs::read_dir(self.state.path().join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(left.is_empty(), "{dir} left: {left:?}");
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let parent = hierarchy.path().join(&self.parent);
            if let Ok(entries) = std::fs::read_dir(&parent) {
                let children: Vec<_> = entries.flatten().filter(|e| e.path().is_dir()).collect();
                assert!(children.is_empty(), "{}: {children:?}", parent.display());
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.parent));
        }
    }
}

fn output(reply: &Reply) -> &serde_json::Map<String, Value> {
    match reply {
        Reply::Output(o) => o,
        other => panic!("no output: {}", other.to_json()),
    }
}

fn options() -> Options {
    let mut options = Options::default();
    options.limits.timeout = Duration::from_secs(20);
    options
}

#[tokio::test(flavor = "multi_thread")]
async fn each_invocation_starts_clean_in_one_kept_sandbox() {
    let fixture = Fixture::new("clean").await;
    assert!(WarmFunction::supported(&fixture.image.config));
    let f = &fixture;
    let (replies, warm) = tokio::task::spawn_blocking({
        let mut warm = f.start(&options());
        move || {
            let mut replies = Vec::new();
            for inputs in [
                json!({"n": 1, "stray": true}),
                json!({"n": 2}),
                json!({"n": 3, "fail": true}),
                json!({"n": 4}),
            ] {
                replies.push(warm.invoke(&inputs).unwrap());
            }
            (replies, warm)
        }
    })
    .await
    .unwrap();
    assert!(warm.is_alive());
    let first = output(&replies[0].reply);
    for (i, done) in replies.iter().enumerate() {
        let n = i + 1;
        // Each invocation's logs are its own.
        assert_eq!(
            String::from_utf8_lossy(&done.stdout),
            format!("task {n}\n"),
            "stdout of task {n}"
        );
        if n == 3 {
            match &done.reply {
                Reply::Error(e) => assert_eq!(e.kind, "ValueError"),
                other => panic!("task 3: {}", other.to_json()),
            }
            continue;
        }
        let o = output(&done.reply);
        // A fork of the server: the module was loaded once, and what the
        // previous invocation changed in memory is not seen.
        assert_eq!(o["calls"], 1, "task {n}: {o:?}");
        assert_eq!(o["loaded"], first["loaded"], "task {n}");
        // /tmp is empty and /io holds only the inputs, whatever the last
        // invocation left (and its stray process is gone, or the sandbox
        // would not have taken another task).
        assert_eq!(o["tmp"], json!([]), "task {n}");
        assert_eq!(o["io"], json!(["inputs.json"]), "task {n}");
    }
    tokio::task::spawn_blocking(move || warm.close().unwrap())
        .await
        .unwrap();
    fixture.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_output_fails_its_invocation_only() {
    let fixture = Fixture::new("hostile").await;
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "HOST-SECRET-warm").unwrap();
    let mut warm = fixture.start(&options());
    let link = secret.to_str().unwrap().to_owned();
    let (refused, next, warm) = tokio::task::spawn_blocking(move || {
        let refused = warm.invoke(&json!({"n": 1, "link": link})).unwrap();
        let next = warm.invoke(&json!({"n": 2})).unwrap();
        (refused, next, warm)
    })
    .await
    .unwrap();
    match &refused.reply {
        Reply::Failed(Failure::OutputRefused { .. }) => {}
        other => panic!("a link as output: {}", other.to_json()),
    }
    assert!(!refused.reply.to_json().to_string().contains("HOST-SECRET"));
    assert_eq!(output(&next.reply)["io"], json!(["inputs.json"]));
    assert!(warm.is_alive());
    drop(warm);
    wait_clean(&fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_or_a_broken_server_ends_the_sandbox() {
    let fixture = Fixture::new("ends").await;
    let mut short = options();
    short.limits.timeout = Duration::from_secs(2);
    let mut warm = fixture.start(&short);
    let mut broken = fixture.start(&options());
    let (slow, after, interrupted, warm, broken) = tokio::task::spawn_blocking(move || {
        let slow = warm.invoke(&json!({"n": 1, "sleep": 60})).unwrap();
        let after = warm.invoke(&json!({"n": 2}));
        let interrupted = broken.invoke(&json!({"n": 1, "interrupt_server": true}));
        (slow, after, interrupted, warm, broken)
    })
    .await
    .unwrap();
    match &slow.reply {
        Reply::Failed(Failure::TimedOut { .. }) => {}
        other => panic!("a sleeping function: {}", other.to_json()),
    }
    assert!(
        slow.duration < Duration::from_secs(20),
        "{:?}",
        slow.duration
    );
    assert!(!warm.is_alive());
    let err = after.unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
    // The server died under the task: the invocation gives an answer and
    // the sandbox takes no more.
    interrupted.unwrap();
    assert!(!broken.is_alive());
    drop((warm, broken));
    wait_clean(&fixture).await;
}

/// Waits for dropped sandboxes to be removed in the background.
async fn wait_clean(fixture: &Fixture) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = ["bundles", "containers"].iter().any(|d| {
            std::fs::read_dir(fixture.state.path().join(d))
                .map(|mut e| e.next().is_some())
                .unwrap_or(false)
        });
        if !left || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fixture.assert_clean();
}
