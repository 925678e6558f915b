//! The base-image fixtures run: unpacked with umoci, their shells and
//! Python answer in a chroot; pushed to a real registry, they come back
//! with the same digests.

use std::path::Path;
use std::process::Command;

use registry_client::Client;
use testkit::{BaseImage, Registry, busybox_base, push_base, python_base, umoci};

/// Unpacks `image` with umoci into a fresh directory.
async fn unpack(image: &BaseImage) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let src = format!("{}:{}", image.layout.display(), image.tag);
    umoci(&["raw", "unpack", "--image", &src, rootfs.to_str().unwrap()])
        .await
        .unwrap();
    dir
}

/// Runs ARGS in a chroot of `rootfs` as root and returns stdout.
fn chroot(rootfs: &Path, args: &[&str]) -> String {
    let out = Command::new("chroot")
        .arg(rootfs)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn python_base_runs_python_and_sh() {
    let image = tokio::task::spawn_blocking(python_base)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image.layers.len(), 3);
    let dir = unpack(&image).await;
    let rootfs = dir.path().join("rootfs");
    let imports = "import json, ssl, sqlite3, ctypes, zlib, hashlib, uuid, decimal, datetime, \
                   tempfile, bz2, lzma, mimetypes; print(ssl.OPENSSL_VERSION.split()[0], \
                   mimetypes.guess_type('a.json')[0])";
    let out = chroot(&rootfs, &["/usr/bin/python3.11", "-c", imports]);
    assert_eq!(out, "OpenSSL application/json\n");
    let out = chroot(
        &rootfs,
        &["python3", "-c", "import sys; print(sys.version_info[:2])"],
    );
    assert_eq!(out, "(3, 11)\n");
    assert_eq!(chroot(&rootfs, &["/bin/sh", "-c", "echo ok"]), "ok\n");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("\napp:x:1000:1000:app:/tmp:"), "{passwd}");
    assert!(rootfs.join("tmp").is_dir());
    assert!(!rootfs.join("io").exists());
    assert!(
        rootfs
            .join("usr/lib/x86_64-linux-gnu/libstdc++.so.6")
            .exists()
    );
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: python3.11-minimal\nStatus: install ok installed\n"));
}

#[tokio::test]
async fn busybox_base_runs_sh() {
    let image = tokio::task::spawn_blocking(busybox_base)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image.layers.len(), 1);
    let dir = unpack(&image).await;
    let rootfs = dir.path().join("rootfs");
    assert_eq!(
        chroot(&rootfs, &["/bin/sh", "-c", "echo ok; id -u"]),
        "ok\n0\n"
    );
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.contains("app:x:1000:"), "{group}");
}

#[tokio::test]
async fn pushed_base_comes_back_with_its_digests() {
    let image = tokio::task::spawn_blocking(python_base)
        .await
        .unwrap()
        .unwrap();
    assert!(image.oci_ref().starts_with("oci:"));
    assert!(image.oci_ref().ends_with(":python3.11"));
    let registry = Registry::start().await.unwrap();
    let reference = push_base(&image, &registry, "base/python:3.11")
        .await
        .unwrap();
    assert_eq!(
        reference.to_string(),
        format!("{}/base/python:3.11", registry.host())
    );
    let client = Client::builder()
        .plain_http_host(registry.host())
        .build()
        .unwrap();
    let manifest = client.get_manifest(&reference).await.unwrap();
    assert_eq!(manifest.digest(), &image.manifest_digest);
    assert_eq!(manifest.layers(), image.layers.as_slice());
    assert_eq!(manifest.config().unwrap().digest, image.config_digest);
    // The Content-Length header itself: reqwest reports a HEAD response's
    // length as its (empty) body's.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for layer in &image.layers {
        let url = format!("{}/v2/base/python/blobs/{}", registry.url(), layer.digest);
        let resp = http.head(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        let len = resp.headers()[reqwest::header::CONTENT_LENGTH]
            .to_str()
            .unwrap();
        assert_eq!(len.parse::<u64>().unwrap(), layer.size, "{url}");
    }
}

#[tokio::test]
async fn push_base_refuses_a_target_without_a_tag() {
    let image = tokio::task::spawn_blocking(busybox_base)
        .await
        .unwrap()
        .unwrap();
    let registry = Registry::start().await.unwrap();
    let err = push_base(&image, &registry, "base/busybox")
        .await
        .unwrap_err();
    assert!(matches!(err, testkit::Error::Push(_)), "{err}");
}
