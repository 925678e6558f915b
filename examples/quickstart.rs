//! The README's first command: the main job end to end on the embedded
//! defaults — no registry, no daemon, no server to start.
//!
//! 1. a Python 3.11 base image is made from Debian packages (testkit;
//!    cached per machine after the first run);
//! 2. a function is validated and built on it with `oci-build` (base
//!    layers reused, one code layer, user 1000, reproducible digest) and
//!    copied into an OCI layout with `oci-push`;
//! 3. the layout is pulled into a `layer-cache` and `function-run` invokes
//!    the handler in a `sandbox-run` container (no network, read-only
//!    root, uid 1000, a private `/io` holding `inputs.json`); its output is
//!    printed.
//!
//! Run: `scripts/quickstart [DIR]`, or `cargo run --example quickstart
//! [DIR]` once libseccomp-dev is installed (default `target/quickstart`).
//! Step 3 needs root (namespaces, cgroups, overlayfs).

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use function_run::Reply;
use layer_cache::{Cache, CacheConfig};
use oci_build::{Builder, FunctionSpec};
use oci_model::Layout;
use oci_push::{Copier, Endpoint};
use sandbox_run::{Launcher, RootFs, Sandbox, SandboxConfig};

const LAUNCHER_ARG: &str = "__sandbox-launch";

const CODE: &str = r#"import json

def handler(inputs):
    words = inputs["text"].split()
    return {"words": len(words), "longest": max(words, key=len)}
"#;

fn main() -> Result<()> {
    // The sandbox starts containers from this very binary, re-executed,
    // before any thread exists.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == LAUNCHER_ARG)
    {
        sandbox_run::launcher_main();
    }
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/quickstart"), PathBuf::from);
    std::fs::create_dir_all(&root)?;
    let root = std::path::absolute(&root)?;
    tokio::runtime::Runtime::new()?.block_on(quickstart(&root))
}

async fn quickstart(root: &Path) -> Result<()> {
    std::fs::remove_dir_all(root)?;
    let function = root.join("function");
    std::fs::create_dir_all(&function)?;
    std::fs::write(function.join("user_function.py"), CODE)?;

    // 1. The base: Debian's python3.11-minimal and friends as an OCI layout.
    println!("making the Python base image from Debian packages (cached after the first run)...");
    let base = tokio::task::spawn_blocking(testkit::python_base)
        .await?
        .context("make the Python base image")?;

    // 2. Validate and build; the result lands in the build store, then in
    //    an OCI layout of its own.
    let client = registry_client::Client::builder().build()?;
    let builder = Builder::new(client.clone())?.cache_dir(root.join("build-cache"));
    let mut spec = FunctionSpec::new(
        function.clone(),
        base.oci_ref().parse()?,
        "registry.example/acme/functions/user-1-func-words:v1".parse()?,
    );
    spec.user = Some("1".into());
    spec.function = Some("words".into());
    spec.version = Some("1".into());
    let built = builder.build(&spec).await.context("build the function")?;
    let image_dir = root.join("image");
    let image = Endpoint::Layout {
        dir: image_dir.clone(),
        tag: Some("v1".into()),
    };
    Copier::new(client).push(&built.image, &image).await?;
    println!("built {image}@{}", built.manifest_digest);
    for layer in &built.layers {
        println!(
            "  {:<12} {} {:>9} bytes",
            format!("{:?}", layer.role),
            layer.digest,
            layer.size
        );
    }
    for (phase, took) in &built.phases {
        println!("  {phase:<9} {:>7.1} ms", took.as_secs_f64() * 1e3);
    }

    // 3. Pull it into a layer cache and run it in a sandbox.
    if !is_root() {
        bail!(
            "the build is in {}; running it in a sandbox needs root",
            image_dir.display()
        );
    }
    let cache = Cache::open(CacheConfig::new(root.join("layer-cache"))).await?;
    let layout = Layout::open(&image_dir)?;
    let cached = cache.pull(&layout.reference(Some("v1"))?, &layout).await?;
    let rootfs = RootFs::Overlay {
        lower: cached.lower_dirs(),
    };
    let inputs =
        serde_json::json!({"text": "a daemonless OCI toolkit that talks directly to registries"});
    let launcher = Launcher::new(std::env::current_exe()?).with_args([LAUNCHER_ARG]);
    let mut config = SandboxConfig::new(launcher);
    config.state_root = root.join("sandbox");
    config.cgroup_parent = "hoist-quickstart".into();
    let image_config = cached.config.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<function_run::Invocation> {
        let sandbox = Sandbox::new(config)?;
        sandbox.sweep()?;
        Ok(function_run::invoke(
            &sandbox,
            rootfs,
            &image_config,
            &inputs,
            &function_run::Options::default(),
        )?)
    })
    .await??;
    println!(
        "ran in {:.1} ms: {:?}",
        done.duration.as_secs_f64() * 1e3,
        done.outcome
    );
    match done.reply {
        Reply::Output(output) => println!("output: {}", serde_json::Value::Object(output)),
        other => bail!(
            "no output: {}; stderr: {}",
            other.to_json()["error"],
            String::from_utf8_lossy(&done.stderr)
        ),
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
