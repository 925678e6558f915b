//! Cold pull and unpack of a ~200 MiB, five-layer image from a loopback
//! `docker-registry`, then warm lookups and `verify`, and where a cold
//! pull's time goes: the downloads alone and the unpacks alone.
//!
//! `cargo bench -p layer-cache --bench pull` (`HOIST_BENCH_RUNS`, default 3:
//! the median of that many cold pulls, each into a fresh cache).

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use layer_cache::{Cache, CacheConfig};
use oci_model::{Reference, Source};
use registry_client::Client;
use testkit::{ImageSpec, Registry, push_layout, write_image};

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("HOIST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let registry = Registry::start().await.unwrap();
    let spec = ImageSpec {
        layers: vec![40 << 20; 5],
        seed: 11,
        docker_media_types: false,
    };
    let layout = tempfile::tempdir().unwrap();
    let fixture = write_image(layout.path(), "v1", &spec).unwrap();
    let reference: Reference = format!("{}/fn/app:v1", registry.host()).parse().unwrap();
    push_layout(layout.path(), "v1", &reference.to_string(), None)
        .await
        .unwrap();
    let fetch = Client::builder().build().unwrap();

    let mut cold = Vec::new();
    let mut kept = None;
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(CacheConfig::new(dir.path())).await.unwrap();
        let start = Instant::now();
        drop(cache.pull(&reference, &fetch).await.unwrap());
        cold.push(start.elapsed());
        kept = Some((dir, cache));
    }
    let (dir, cache) = kept.expect("at least one run");

    let pinned = reference.with_digest(fixture.manifest_digest.clone());
    let start = Instant::now();
    drop(cache.get(&pinned).await.unwrap().unwrap());
    let warm_get = start.elapsed();
    let start = Instant::now();
    drop(cache.pull(&reference, &fetch).await.unwrap());
    let warm_tag = start.elapsed();
    let start = Instant::now();
    let report = cache.verify().await.unwrap();
    let verify = start.elapsed();
    assert!(report.corrupt.is_empty());

    // The downloads alone (the client verifies each blob), five at once.
    let start = Instant::now();
    let downloads = fixture.layers.iter().map(|desc| async {
        let mut stream = fetch.blob(&reference, desc).await.unwrap();
        let mut n = 0;
        while let Some(chunk) = stream.next().await {
            n += chunk.unwrap().len();
        }
        n
    });
    let fetched: usize = futures_util::future::join_all(downloads).await.iter().sum();
    let download_only = start.elapsed();
    // The unpacks alone, five at once, from the cache's blobs.
    let start = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let unpacks: Vec<_> = fixture
        .layers
        .iter()
        .enumerate()
        .map(|(i, desc)| {
            let blob = dir.path().join("v1/blobs/sha256").join(desc.digest.hex());
            let dest = scratch.path().join(i.to_string());
            tokio::task::spawn_blocking(move || {
                let file = std::io::BufReader::new(std::fs::File::open(blob).unwrap());
                oci_layer::unpack(
                    file,
                    oci_layer::Compression::Gzip,
                    &dest,
                    &oci_layer::UnpackOptions::default(),
                )
                .unwrap()
            })
        })
        .collect();
    for u in unpacks {
        u.await.unwrap();
    }
    let unpack_only = start.elapsed();

    let mib = fixture.total_bytes as f64 / f64::from(1 << 20);
    let cold = median(cold);
    println!("| what | time |");
    println!("|---|---|");
    println!(
        "| cold pull + unpack, {mib:.0} MiB in 5 layers (median of {runs}) | {cold:.2?} ({:.0} MiB/s) |",
        mib / cold.as_secs_f64()
    );
    println!(
        "| downloads alone ({} MiB, verified) | {download_only:.2?} |",
        fetched >> 20
    );
    println!("| unpacks alone | {unpack_only:.2?} |");
    println!("| warm get by digest | {warm_get:.2?} |");
    println!("| warm pull by tag | {warm_tag:.2?} |");
    println!(
        "| verify ({} MiB hashed) | {verify:.2?} |",
        report.hashed_bytes >> 20
    );
}
