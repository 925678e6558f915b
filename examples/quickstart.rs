//! The README's first command: build a one-layer image with `oci-layer`
//! into an OCI layout, copy it to a second layout with `oci-push`, and show
//! what hoist sees — no registry or daemon needed.
//!
//! Run: `cargo run --example quickstart [DIR]` (default `target/quickstart`).

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::Result;
use oci_layer::{LayerWriter, WriteOptions};
use oci_model::media_type::{OCI_CONFIG, OCI_MANIFEST};
use oci_model::{Layout, Manifest};
use oci_push::{Copier, Endpoint};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/quickstart"), PathBuf::from);
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let src_dir = root.join("built");

    // 1. An image assembled directly as a layer: no Dockerfile, no daemon.
    let layout = Layout::create(&src_dir)?;
    let mut blob = layout.blob_writer()?;
    let mut layer = LayerWriter::new(WriteOptions::default());
    layer.add_bytes("app/hello.txt", 0o644, "hello from hoist\n")?;
    let info = layer.finish(&mut blob)?;
    blob.commit(Some(&info.digest))?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["cat", "/app/hello.txt"], "User": "1000" },
        "rootfs": { "type": "layers", "diff_ids": [info.diff_id] },
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = layout.write_blob(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len() },
        "layers": [info.descriptor()],
    });
    let manifest = Manifest::from_bytes(serde_json::to_vec(&manifest)?, None)?;
    layout.write_blob(manifest.bytes())?;
    layout.add_manifest(&manifest.descriptor(), Some("v1"))?;
    println!(
        "built    oci:{}:v1  {}",
        src_dir.display(),
        manifest.digest()
    );

    // 2. The same copy `hoist copy oci:built:v1 oci:copied:v1` makes.
    let client = registry_client::Client::builder().build()?;
    let src: Endpoint = format!("oci:{}:v1", src_dir.display()).parse()?;
    let dst: Endpoint = format!("oci:{}:v1", root.join("copied").display()).parse()?;
    let report = Copier::new(client.clone()).copy(&src, &dst).await?;
    println!(
        "copied   {dst}  {}  ({} blobs, {} bytes)",
        report.digest.expect("a digest"),
        report.blobs_copied,
        report.bytes_copied
    );

    // 3. Read it back as `hoist inspect --config` would.
    let config = oci_push::config(&client, &dst, None).await?;
    let config: serde_json::Value = serde_json::from_slice(&config)?;
    println!(
        "config   cmd={} user={}",
        config["config"]["Cmd"], config["config"]["User"]
    );
    println!("\nnext:    target/debug/hoist inspect {dst}");
    Ok(())
}
