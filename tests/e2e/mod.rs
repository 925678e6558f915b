//! Test modules and shared helpers.

mod auth;
mod backup;
mod base;
mod build;
mod cli;
mod console;
mod copy;
mod db;
mod dockerfile;
mod dockerfile_cache;
mod faults;
mod functions;
mod hostile;
mod interop;
mod monitoring;
mod ops;
mod peer;
mod referrers;
mod releases;
mod run;
mod run_output;
mod sbom;
mod scan;
mod service;
mod signing;
mod smoke;
mod warm;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use oci_push::{Copier, Endpoint};
use registry_client::{Client, RetryPolicy};
use tempfile::TempDir;
use testkit::{FixtureImage, ImageSpec, write_image};

/// Runs the hoist binary.
pub fn hoist(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env("HOME", "/nonexistent-home-for-tests")
        .output()
        .expect("run hoist")
}

/// stdout of a successful run; panics with stderr otherwise.
pub fn hoist_ok(args: &[&str]) -> String {
    let out = hoist(args);
    assert!(
        out.status.success(),
        "hoist {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// stderr of a failed run, which must be exactly one line.
pub fn hoist_err(args: &[&str]) -> String {
    let out = hoist(args);
    assert!(!out.status.success(), "hoist {args:?} should have failed");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).expect("utf-8 output");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("hoist: "), "{err}");
    err
}

/// A fixture image in a fresh layout directory, and its `oci:DIR:TAG`.
pub fn fixture(layers: &[u64], seed: u64, docker: bool) -> (TempDir, FixtureImage, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = ImageSpec {
        layers: layers.to_vec(),
        seed,
        docker_media_types: docker,
    };
    let image = write_image(dir.path(), "v1", &spec).expect("fixture image");
    let oci = format!("oci:{}:v1", dir.path().display());
    (dir, image, oci)
}

/// A client with fast retries and short timeouts, for fault tests.
pub fn fast_client() -> Client {
    Client::builder()
        .retry(
            RetryPolicy::default()
                .with_max_attempts(4)
                .with_base_delay(Duration::from_millis(20)),
        )
        .read_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// Copies with the library.
pub async fn copy(client: &Client, src: &str, dst: &str) -> oci_push::Result<oci_push::CopyReport> {
    let src: Endpoint = src.parse()?;
    let dst: Endpoint = dst.parse()?;
    Copier::new(client.clone()).copy(&src, &dst).await
}

/// Files under `dir` whose names start with `.tmp` (partial writes).
pub fn temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with(".tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// skopeo's view of an image's manifest digest.
pub async fn skopeo_digest(image: &str) -> String {
    let out = testkit::skopeo(&["inspect", "--tls-verify=false", image])
        .await
        .expect("skopeo inspect");
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo JSON");
    v["Digest"].as_str().expect("a digest").to_owned()
}
