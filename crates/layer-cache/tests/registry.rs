//! The cache against a real registry on loopback, through a proxy that
//! counts requests.

use std::sync::Arc;

use layer_cache::{Cache, CacheConfig};
use oci_model::Reference;
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
    assert!(
        images.iter().any(|i| i.downloaded),
        "a first pull downloads"
    );
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
    assert!(!again.downloaded);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    // By tag, one manifest request resolves it; no blob is fetched.
    assert!(!cache.pull(&reference, &*fetch).await.unwrap().downloaded);
    assert_eq!(proxy.count("GET", "/blobs/"), 0);
    assert_eq!(proxy.count("GET", "/manifests/v1"), 1);
    assert!(cache.verify().await.unwrap().corrupt.is_empty());
}
