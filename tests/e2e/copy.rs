//! Copies in every direction, checked by skopeo and umoci.

use testkit::{ImageSpec, Registry, skopeo, umoci, write_index};

use super::*;

#[tokio::test]
async fn copies_in_every_direction_with_identical_digests() {
    let a = Registry::start().await.unwrap();
    let b = Registry::start().await.unwrap();
    let (_src, image, oci) = fixture(&[300_000, 1_000_000, 50_000], 1, false);
    let want = image.manifest_digest.to_string();

    // layout → registry A
    let out = hoist_ok(&["copy", &oci, &format!("{}/team/app:v1", a.host())]);
    assert_eq!(out.trim(), format!("{}/team/app@{want}", a.host()));
    // registry A → registry B, read back by skopeo
    hoist_ok(&[
        "copy",
        &format!("{}/team/app:v1", a.host()),
        &format!("{}/mirror/app:v1", b.host()),
    ]);
    assert_eq!(
        skopeo_digest(&format!("docker://{}/mirror/app:v1", b.host())).await,
        want
    );
    // registry B → layout, unpacked by umoci
    let out_dir = tempfile::tempdir().unwrap();
    let layout = out_dir.path().join("layout");
    hoist_ok(&[
        "copy",
        &format!("{}/mirror/app:v1", b.host()),
        &format!("oci:{}:v1", layout.display()),
    ]);
    let bundle = out_dir.path().join("bundle");
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:v1", layout.display()),
        bundle.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert!(bundle.join("rootfs").read_dir().unwrap().count() > 0);
    // layout → layout, then skopeo copies the result on to a registry
    let again = out_dir.path().join("again");
    hoist_ok(&[
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:v2", again.display()),
    ]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v2", again.display()),
        &format!("docker://{}/from-skopeo/app:v2", a.host()),
    ])
    .await
    .unwrap();
    assert_eq!(
        skopeo_digest(&format!("docker://{}/from-skopeo/app:v2", a.host())).await,
        want
    );
    assert_eq!(
        hoist_ok(&["digest", &format!("oci:{}:v2", again.display())]).trim(),
        want
    );
    assert!(temp_files(out_dir.path()).is_empty());
}

#[tokio::test]
async fn reads_docker_schema2_images_pushed_by_skopeo() {
    let a = Registry::start().await.unwrap();
    let b = Registry::start().await.unwrap();
    let (src_dir, image, _) = fixture(&[200_000], 2, true);
    let src = format!("{}/docker/app:v1", a.host());
    // skopeo's oci: transport refuses Docker media types in a layout, so
    // testkit pushes it with plain HTTP requests of its own.
    testkit::push_layout(src_dir.path(), "v1", &src, None)
        .await
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&hoist_ok(&["inspect", &src])).unwrap();
    assert_eq!(
        manifest["mediaType"],
        oci_model::media_type::DOCKER_MANIFEST
    );
    let config: serde_json::Value =
        serde_json::from_str(&hoist_ok(&["inspect", "--config", &src])).unwrap();
    assert_eq!(config["architecture"], "amd64");
    let dst = format!("{}/copy/app:v1", b.host());
    hoist_ok(&["copy", &src, &dst]);
    // The media-type family stays Docker, and the digest does not move.
    let copied = hoist_ok(&["digest", &dst]);
    assert_eq!(copied.trim(), image.manifest_digest.to_string());
    assert_eq!(
        skopeo_digest(&format!("docker://{dst}")).await,
        image.manifest_digest.to_string()
    );
}

#[tokio::test]
async fn second_copy_is_a_no_op_and_mounts_within_a_registry() {
    let a = Registry::start().await.unwrap();
    let (_src, image, oci) = fixture(&[100_000, 100_000], 3, false);
    let client = fast_client();
    let first = copy(&client, &oci, &format!("{}/one/app:v1", a.host()))
        .await
        .unwrap();
    assert_eq!(first.blobs_copied, 3);
    // HEAD answers carry the sizes (their bodies are empty).
    let one: oci_model::Reference = format!("{}/one/app:v1", a.host()).parse().unwrap();
    let layer = &image.layers[0];
    assert_eq!(
        client.head_blob(&one, &layer.digest).await.unwrap(),
        Some(layer.size)
    );
    let head = client
        .head_manifest(&one)
        .await
        .unwrap()
        .expect("a manifest");
    assert_eq!(head.size, image.manifest_size);
    let again = copy(&client, &oci, &format!("{}/one/app:v1", a.host()))
        .await
        .unwrap();
    assert!(again.unchanged);
    assert_eq!(again.blobs_copied, 0);
    let other_repo = copy(
        &client,
        &format!("{}/one/app:v1", a.host()),
        &format!("{}/two/app:v9", a.host()),
    )
    .await
    .unwrap();
    assert_eq!(other_repo.blobs_mounted, 3, "{other_repo:?}");
    assert_eq!(other_repo.blobs_copied, 0);
}

#[tokio::test]
async fn copies_whole_indexes_or_one_platform() {
    let a = Registry::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let index = write_index(
        dir.path(),
        "multi",
        &ImageSpec {
            layers: vec![10_000],
            seed: 4,
            docker_media_types: false,
        },
    )
    .unwrap();
    let oci = format!("oci:{}:multi", dir.path().display());
    let whole = format!("{}/multi/app:all", a.host());
    hoist_ok(&["copy", &oci, &whole]);
    assert_eq!(
        hoist_ok(&["digest", &whole]).trim(),
        index.digest.to_string()
    );

    let arm = format!("{}/multi/app:arm", a.host());
    hoist_ok(&["copy", "--platform", "linux/arm64", &oci, &arm]);
    let (_, arm_image) = index
        .images
        .iter()
        .find(|(p, _)| p.architecture == "arm64")
        .unwrap();
    assert_eq!(
        hoist_ok(&["digest", &arm]).trim(),
        arm_image.manifest_digest.to_string()
    );
    // digest of an index by platform, without copying
    assert_eq!(
        hoist_ok(&["digest", "--platform", "linux/arm64", &whole]).trim(),
        arm_image.manifest_digest.to_string()
    );
    let err = hoist_err(&["inspect", "--platform", "linux/s390x", &whole]);
    assert!(err.contains("no image for platform linux/s390x"), "{err}");
}

#[tokio::test]
async fn chunked_uploads_work() {
    let a = Registry::start().await.unwrap();
    let (_src, image, oci) = fixture(&[700_000], 5, false);
    let dst = format!("{}/chunked/app:v1", a.host());
    hoist_ok(&["copy", "--chunk-size", "65536", &oci, &dst]);
    assert_eq!(
        hoist_ok(&["digest", &dst]).trim(),
        image.manifest_digest.to_string()
    );
    assert_eq!(
        skopeo_digest(&format!("docker://{dst}")).await,
        image.manifest_digest.to_string()
    );
}
