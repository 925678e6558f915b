//! The fault proxy between hoist and a real registry: hoist retries what
//! is temporary, resumes broken transfers, and never keeps or pushes bytes
//! whose digest does not match.

use std::time::{Duration, Instant};

use http::Method;
use testkit::{Fault, FaultProxy, Registry, Rule};

use super::*;

/// A registry holding a two-layer image, a proxy in front of it, and the
/// image's digest.
async fn source() -> (Registry, FaultProxy, FixtureImage) {
    let reg = Registry::start().await.unwrap();
    let (_dir, image, oci) = fixture(&[400_000, 300_000], 20, false);
    copy(&fast_client(), &oci, &format!("{}/src/app:v1", reg.host()))
        .await
        .unwrap();
    let proxy = FaultProxy::start(reg.addr()).await.unwrap();
    (reg, proxy, image)
}

fn layer_path(image: &FixtureImage) -> String {
    format!("/blobs/{}", image.layers[1].digest)
}

/// Copies from the proxy into a fresh layout; returns the result and the
/// layout directory.
async fn pull(proxy: &FaultProxy) -> (oci_push::Result<oci_push::CopyReport>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}:v1", dir.path().join("out").display());
    let r = copy(
        &fast_client(),
        &format!("{}/src/app:v1", proxy.host()),
        &dst,
    )
    .await;
    (r, dir)
}

#[tokio::test]
async fn transient_faults_are_survived() {
    let (_reg, proxy, image) = source().await;
    let layer = layer_path(&image);
    let cases = [
        Fault::CorruptBody,
        Fault::WrongContentLength,
        Fault::Status(500),
        Fault::Status(503),
        Fault::DropConnection {
            after_bytes: 100_000,
        },
        Fault::StallBody {
            after_bytes: 50_000,
            stall: Duration::from_secs(5),
        },
    ];
    for fault in cases {
        proxy.clear();
        proxy.reset_log();
        proxy.add(
            Rule::new(layer.clone(), fault.clone())
                .method(Method::GET)
                .times(1),
        );
        let (result, dir) = pull(&proxy).await;
        let report = result.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(
            report.digest.as_ref(),
            Some(&image.manifest_digest),
            "{fault:?}"
        );
        let out = oci_model::Layout::open(dir.path().join("out")).unwrap();
        let blob = out.read_blob(&image.layers[1].digest, 10 << 20).unwrap();
        assert_eq!(blob.len() as u64, image.layers[1].size, "{fault:?}");
        assert!(proxy.count("GET", &layer) >= 2, "{fault:?}: no retry seen");
        assert!(temp_files(dir.path()).is_empty(), "{fault:?}");
    }
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let (_reg, proxy, image) = source().await;
    proxy.add(
        Rule::new(
            layer_path(&image),
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
        )
        .method(Method::GET)
        .times(1),
    );
    let start = Instant::now();
    let (result, _dir) = pull(&proxy).await;
    result.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After ignored"
    );
}

#[tokio::test]
async fn persistent_corruption_is_refused_and_nothing_is_kept() {
    let (_reg, proxy, image) = source().await;
    proxy.add(Rule::new(layer_path(&image), Fault::CorruptBody).method(Method::GET));
    let (result, dir) = pull(&proxy).await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    let out = dir.path().join("out");
    let layout = oci_model::Layout::open(&out).unwrap();
    assert!(!layout.has_blob(&image.layers[1].digest, None));
    assert!(!layout.has_blob(&image.manifest_digest, None));
    assert!(layout.manifests().unwrap().is_empty());
    assert!(temp_files(dir.path()).is_empty());

    // Registry to registry: the destination never gets the blob or the
    // manifest.
    let dst_reg = Registry::start().await.unwrap();
    let dst = format!("{}/dst/app:v1", dst_reg.host());
    let err = copy(
        &fast_client(),
        &format!("{}/src/app:v1", proxy.host()),
        &dst,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    let client = fast_client();
    let dst_ref: oci_model::Reference = dst.parse().unwrap();
    assert_eq!(
        client
            .head_blob(&dst_ref, &image.layers[1].digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(client.head_manifest(&dst_ref).await.unwrap(), None);
}

#[tokio::test]
async fn persistent_server_errors_fail_cleanly() {
    let (_reg, proxy, _image) = source().await;
    proxy.add(Rule::new("/manifests/", Fault::Status(500)));
    let start = Instant::now();
    let (result, _dir) = pull(&proxy).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(err.contains(&proxy.host()), "{err}");
    assert_eq!(proxy.count("GET", "/manifests/"), 4, "attempts");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn interrupted_chunked_upload_resumes_from_the_registry_range() {
    let dst_reg = Registry::start().await.unwrap();
    let proxy = FaultProxy::start(dst_reg.addr()).await.unwrap();
    let (_dir, image, oci) = fixture(&[600_000], 21, false);
    proxy.add(
        Rule::new("/blobs/uploads/", Fault::Status(503))
            .method(Method::PATCH)
            .times(1),
    );
    let client = Client::builder()
        .chunk_size(Some(128 * 1024))
        .retry(RetryPolicy::default().with_base_delay(Duration::from_millis(10)))
        .build()
        .unwrap();
    let dst = format!("{}/chunks/app:v1", proxy.host());
    let report = copy(&client, &oci, &dst).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&image.manifest_digest));
    // The session was asked where it stood, then the upload went on: one
    // POST for the layer, not a fresh upload.
    assert!(
        proxy.count("GET", "/blobs/uploads/") >= 1,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(
        skopeo_digest(&format!("docker://{}/chunks/app:v1", dst_reg.host())).await,
        image.manifest_digest.to_string()
    );
}

#[tokio::test]
async fn unreachable_registry_is_named() {
    let proxy_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = hoist_err(&[
        "digest",
        "--registry-timeout",
        "2",
        &format!("127.0.0.1:{proxy_port}/gone/app:v1"),
    ]);
    assert!(err.contains(&format!("127.0.0.1:{proxy_port}")), "{err}");
    assert!(err.contains("gone/app"), "{err}");
}

#[tokio::test]
async fn refused_mount_falls_back_to_upload() {
    let (_reg, proxy, image) = source().await;
    proxy.add(Rule::new("mount=", Fault::Status(403)).method(Method::POST));
    let client = fast_client();
    let report = copy(
        &client,
        &format!("{}/src/app:v1", proxy.host()),
        &format!("{}/other/app:v1", proxy.host()),
    )
    .await
    .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&image.manifest_digest));
    assert_eq!(report.blobs_mounted, 0, "{report:?}");
    assert_eq!(report.blobs_copied, 3, "{report:?}");
    assert_eq!(proxy.count("POST", "mount="), 3);
}
