//! The cache against a real registry on loopback, through a proxy that
//! counts requests.

use std::sync::Arc;
use std::time::Instant;

use layer_cache::{Cache, CacheConfig};
use oci_model::{Reference, Source};
use registry_client::Client;
use testkit::{FaultProxy, ImageSpec, Registry, push_layout, write_image};

/// Pushes a fixture image to `registry` as `fn/app:v1`.
async fn seed(registry: &Registry, spec: &ImageSpec) -> testkit::FixtureImage {
    let layout = tempfile::tempdir().unwrap();
    let image = write_image(layout.path(), "v1", spec).unwrap();
    let target = format!("{}/fn/app:v1", registry.host());
    push_layout(layout.path(), "v1", &target, None)
        .await
        .unwrap();
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_pulls_fetch_each_blob_once() {
    let registry = Registry::start().await.unwrap();
    let spec = ImageSpec {
        layers: vec![300 << 10, 200 << 10, 100 << 10],
        seed: 3,
        docker_media_types: false,
    };
    let fixture = seed(&registry, &spec).await;
    let proxy = FaultProxy::start(registry.addr()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(CacheConfig::new(dir.path())).await.unwrap();
    let fetch = Arc::new(Client::builder().build().unwrap());
    let reference: Reference = format!("{}/fn/app:v1", proxy.host()).parse().unwrap();

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, fetch, reference) = (cache.clone(), fetch.clone(), reference.clone());
            tokio::spawn(async move { cache.pull(&reference, &*fetch).await })
        })
        .collect();
    let mut images = Vec::new();
    for task in tasks {
        images.push(task.await.unwrap().unwrap());
    }

    for layer in &fixture.layers {
        let path = format!("/blobs/{}", layer.digest);
        assert_eq!(proxy.count("GET", &path), 1, "{path}");
    }
    let config_path = format!("/blobs/{}", fixture.config_digest);
    assert_eq!(proxy.count("GET", &config_path), 1);
    assert_eq!(proxy.count("GET", "/blobs/"), 4);
    let stats = cache.stats();
    assert_eq!((stats.downloads, stats.unpacks), (3, 3));
    for image in &images {
        assert_eq!(image.digest, fixture.manifest_digest);
        assert_eq!(image.layers, images[0].layers);
        assert!(image.layers.iter().all(|l| l.is_dir()));
    }
    let diff_ids: Vec<String> = images[0].config.rootfs().diff_ids().to_vec();
    let want: Vec<String> = fixture.diff_ids.iter().map(|d| d.to_string()).collect();
    assert_eq!(diff_ids, want);
    drop(images);

    // By digest, the cache answers without the registry.
    proxy.reset_log();
    let pinned = reference.with_digest(fixture.manifest_digest.clone());
    let again = cache.pull(&pinned, &*fetch).await.unwrap();
    assert_eq!(again.digest, fixture.manifest_digest);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    // By tag, one manifest request resolves it; no blob is fetched.
    drop(cache.pull(&reference, &*fetch).await.unwrap());
    assert_eq!(proxy.count("GET", "/blobs/"), 0);
    assert_eq!(proxy.count("GET", "/manifests/v1"), 1);
    assert!(cache.verify().await.unwrap().corrupt.is_empty());
}

/// Cold pull and unpack of a ~200 MiB, five-layer image from a loopback
/// registry, then warm lookups. Prints timings; run with
/// `cargo test --release -p layer-cache --test registry -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing run: builds a 200 MiB image"]
#[allow(clippy::print_stdout)]
async fn timing_cold_pull_of_200_mib() {
    let registry = Registry::start().await.unwrap();
    let spec = ImageSpec {
        layers: vec![40 << 20; 5],
        seed: 11,
        docker_media_types: false,
    };
    let fixture = seed(&registry, &spec).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(CacheConfig::new(dir.path())).await.unwrap();
    let fetch = Client::builder().build().unwrap();
    let reference: Reference = format!("{}/fn/app:v1", registry.host()).parse().unwrap();

    let start = Instant::now();
    let image = cache.pull(&reference, &fetch).await.unwrap();
    let cold = start.elapsed();
    drop(image);
    let start = Instant::now();
    let image = cache
        .get(&reference.with_digest(fixture.manifest_digest.clone()))
        .await
        .unwrap()
        .unwrap();
    let warm_get = start.elapsed();
    drop(image);
    let start = Instant::now();
    drop(cache.pull(&reference, &fetch).await.unwrap());
    let warm_tag = start.elapsed();
    let start = Instant::now();
    let report = cache.verify().await.unwrap();
    let verify = start.elapsed();
    // Where the time goes: the downloads alone (the client verifies each
    // blob too), then the unpacks alone, each five in parallel.
    let start = Instant::now();
    let downloads = fixture.layers.iter().map(|desc| async {
        let mut stream = fetch.blob(&reference, desc).await.unwrap();
        let mut n = 0;
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            n += chunk.unwrap().len();
        }
        n
    });
    let fetched: usize = futures_util::future::join_all(downloads).await.iter().sum();
    let download_only = start.elapsed();
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
    println!(
        "alone: downloads {download_only:?} ({} MiB), unpacks {unpack_only:?}",
        fetched >> 20
    );
    let mib = fixture.total_bytes as f64 / f64::from(1 << 20);
    println!(
        "cold pull + unpack of {mib:.0} MiB in 5 layers: {cold:?} ({:.0} MiB/s)",
        mib / cold.as_secs_f64()
    );
    println!("warm get by digest: {warm_get:?}; warm pull by tag: {warm_tag:?}");
    println!(
        "verify ({} MiB hashed): {verify:?}",
        report.hashed_bytes >> 20
    );
    assert!(report.corrupt.is_empty());
}
