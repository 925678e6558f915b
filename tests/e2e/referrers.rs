//! Attachments (OCI 1.1 referrers) on a registry without the referrers API
//! (distribution 2.8): attached, listed through the fallback tag, copied
//! along with cosign-style tags with their digests unchanged, and hostile
//! referrers indexes refused with named errors.

use std::sync::Arc;

use oci_model::{
    Digest, Manifest, Reference, Referrer, media_type, referrers_index, referrers_tag,
};
use testkit::{ImageSpec, Registry, write_index};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Attaches `body` to `image`; returns the artifact's digest.
fn attach(image: &str, artifact_type: &str, body: &[u8], extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attachment.json");
    std::fs::write(&file, body).unwrap();
    let mut args = vec![
        "attach",
        image,
        file.to_str().unwrap(),
        "--artifact-type",
        artifact_type,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = json(&hoist_ok(&args));
    assert_eq!(out["via"], "fallback-tag", "{out}");
    out["referrer"]["digest"].as_str().unwrap().to_owned()
}

fn referrer_digests(image: &str, artifact_type: Option<&str>) -> Vec<String> {
    let mut args = vec!["referrers", image, "--json"];
    if let Some(t) = artifact_type {
        args.extend(["--artifact-type", t]);
    }
    let out = json(&hoist_ok(&args));
    let mut list: Vec<String> = out["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap().to_owned())
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn attachments_are_listed_through_the_fallback_tag() {
    let a = Registry::start().await.unwrap();
    let (_dir, image, oci) = fixture(&[20_000], 31, false);
    let app = format!("{}/team/app:v1", a.host());
    hoist_ok(&["copy", &oci, &app]);

    let sbom = attach(
        &app,
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#,
        &["--annotation", "org.example.tool=test"],
    );
    let report = attach(&app, "application/vnd.example.report+json", b"{}", &[]);
    let mut both = vec![sbom.clone(), report.clone()];
    both.sort();
    assert_eq!(referrer_digests(&app, None), both);
    assert_eq!(
        referrer_digests(&app, Some("application/spdx+json")),
        vec![sbom.clone()]
    );
    assert!(referrer_digests(&app, Some("text/nothing")).is_empty());

    // The fallback index lives at the tag derived from the image digest.
    let tags = hoist_ok(&["tags", &format!("{}/team/app", a.host())]);
    assert!(
        tags.lines()
            .any(|t| t == referrers_tag(&image.manifest_digest)),
        "{tags}"
    );
    // The artifact keeps its annotations, type and subject byte for byte.
    let manifest = json(&hoist_ok(&[
        "inspect",
        &format!("{}/team/app@{sbom}", a.host()),
    ]));
    assert_eq!(manifest["artifactType"], "application/spdx+json");
    assert_eq!(manifest["config"]["mediaType"], media_type::OCI_EMPTY);
    assert_eq!(
        manifest["subject"]["digest"],
        image.manifest_digest.to_string()
    );
    assert_eq!(manifest["annotations"]["org.example.tool"], "test");
    // The table: digest, type, size, created.
    let table = hoist_ok(&["referrers", &app]);
    assert!(table.starts_with("DIGEST"), "{table}");
    let row = table.lines().find(|l| l.starts_with(&sbom)).unwrap();
    assert!(row.contains("application/spdx+json"), "{row}");
    assert!(row.trim_end().ends_with('Z'), "{row}");

    // Bad input leaves nothing behind.
    let err = hoist_err(&[
        "attach",
        &app,
        "/nonexistent/file",
        "--artifact-type",
        "x/y",
    ]);
    assert!(err.contains("not a regular file"), "{err}");
    let err = hoist_err(&[
        "attach",
        &format!("{}/team/app:missing", a.host()),
        "/etc/hostname",
        "--artifact-type",
        "x/y",
    ]);
    assert!(err.contains("404"), "{err}");
    assert_eq!(referrer_digests(&app, None), both);
}

#[tokio::test]
async fn copy_brings_referrers_and_signature_tags_with_their_digests() {
    let a = Registry::start().await.unwrap();
    let b = Registry::start().await.unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let spec = ImageSpec {
        layers: vec![10_000],
        seed: 32,
        docker_media_types: false,
    };
    let index = write_index(src_dir.path(), "v1", &spec).unwrap();
    let src = format!("{}/multi/app:v1", a.host());
    hoist_ok(&[
        "copy",
        &format!("oci:{}:v1", src_dir.path().display()),
        &src,
    ]);
    let child = index.images[1].1.manifest_digest.clone();
    let child_ref = format!("{}/multi/app@{child}", a.host());

    let sbom = attach(&src, "application/spdx+json", b"{\"a\":1}", &[]);
    let child_report = attach(
        &child_ref,
        "application/vnd.example.report+json",
        b"{}",
        &[],
    );
    // An attachment of an attachment: a signature of the SBOM.
    let sbom_sig = attach(
        &format!("{}/multi/app@{sbom}", a.host()),
        "application/vnd.example.signature",
        b"sig",
        &[],
    );
    // A cosign-style signature: a manifest tagged sha256-<hex>.sig.
    let (_sig_dir, sig_image, sig_oci) = fixture(&[1_000], 33, false);
    let sig_tag = format!("{}.sig", referrers_tag(&index.digest));
    hoist_ok(&[
        "copy",
        &sig_oci,
        &format!("{}/multi/app:{sig_tag}", a.host()),
    ]);

    let dst = format!("{}/mirror/app:v1", b.host());
    let out = json(&hoist_ok(&["copy", "--referrers", &src, &dst, "--json"]));
    assert_eq!(out["report"]["referrers"], 4, "{out}");
    assert_eq!(out["report"]["digest"], index.digest.to_string());
    assert_eq!(referrer_digests(&dst, None), vec![sbom.clone()]);
    assert_eq!(
        referrer_digests(&format!("{}/mirror/app@{child}", b.host()), None),
        vec![child_report.clone()]
    );
    assert_eq!(
        referrer_digests(&format!("{}/mirror/app@{sbom}", b.host()), None),
        vec![sbom_sig.clone()]
    );
    assert_eq!(
        hoist_ok(&["digest", &format!("{}/mirror/app:{sig_tag}", b.host())]).trim(),
        sig_image.manifest_digest.to_string()
    );
    let tags = hoist_ok(&["tags", &format!("{}/mirror/app", b.host())]);
    assert!(
        tags.lines().any(|t| t == referrers_tag(&index.digest)),
        "{tags}"
    );
    // Copying again brings nothing new and breaks nothing.
    let again = json(&hoist_ok(&["copy", "--referrers", &src, &dst, "--json"]));
    assert_eq!(again["report"]["unchanged"], true);
    assert_eq!(referrer_digests(&dst, None), vec![sbom.clone()]);

    // Registry → layout → registry keeps them too.
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", out_dir.path().join("l").display());
    hoist_ok(&["copy", "--referrers", &dst, &layout]);
    assert_eq!(referrer_digests(&layout, None), vec![sbom.clone()]);
    let back = format!("{}/back/app:v1", a.host());
    let out = json(&hoist_ok(&[
        "copy",
        "--referrers",
        &layout,
        &back,
        "--json",
    ]));
    assert_eq!(out["report"]["referrers"], 4, "{out}");
    assert_eq!(referrer_digests(&back, None), vec![sbom]);
    assert_eq!(
        referrer_digests(&format!("{}/back/app@{child}", a.host()), None),
        vec![child_report]
    );
    assert_eq!(
        hoist_ok(&["digest", &format!("{}/back/app:{sig_tag}", a.host())]).trim(),
        sig_image.manifest_digest.to_string()
    );
}

/// Writes `list` as the fallback index of `subject` in `repo`.
async fn put_fallback(repo: &str, subject: &Digest, list: &[Referrer]) {
    let r = Reference::parse(repo)
        .unwrap()
        .with_tag(&referrers_tag(subject))
        .unwrap();
    let m = Manifest::from_bytes(referrers_index(list), Some(media_type::OCI_INDEX)).unwrap();
    fast_client().put_manifest(&r, &m).await.unwrap();
}

#[tokio::test]
async fn cyclic_and_mismatched_referrers_are_bounded_and_named() {
    let a = Registry::start().await.unwrap();
    let b = Registry::start().await.unwrap();
    let (_dir, image, oci) = fixture(&[5_000], 34, false);
    let app = format!("{}/cycle/app:v1", a.host());
    hoist_ok(&["copy", &oci, &app]);
    let art = attach(&app, "x/artifact", b"1", &[]);
    // The artifact's fallback index lists the image: a cycle image → art → image.
    let as_referrer = |d: &Digest, size| Referrer::new(media_type::OCI_MANIFEST, d.clone(), size);
    put_fallback(
        &format!("{}/cycle/app", a.host()),
        &Digest::parse(&art).unwrap(),
        &[as_referrer(&image.manifest_digest, image.manifest_size)],
    )
    .await;
    let out = json(&hoist_ok(&[
        "copy",
        "--referrers",
        &app,
        &format!("{}/cycle/app:v1", b.host()),
        "--json",
    ]));
    assert_eq!(out["report"]["referrers"], 1, "{out}");

    // A fallback index naming a manifest whose subject is not the image.
    let other = format!("{}/mismatch/app:v1", a.host());
    hoist_ok(&["copy", &oci, &other]);
    let (_d2, stranger, stranger_oci) = fixture(&[5_000], 35, false);
    hoist_ok(&[
        "copy",
        &stranger_oci,
        &format!("{}/mismatch/app:v2", a.host()),
    ]);
    put_fallback(
        &format!("{}/mismatch/app", a.host()),
        &image.manifest_digest,
        &[as_referrer(
            &stranger.manifest_digest,
            stranger.manifest_size,
        )],
    )
    .await;
    let err = hoist_err(&[
        "copy",
        "--referrers",
        &other,
        &format!("{}/mismatch/app:v1", b.host()),
    ]);
    assert!(
        err.contains(&format!(
            "{} is listed as a referrer of {}, but its subject is missing",
            stranger.manifest_digest, image.manifest_digest
        )),
        "{err}"
    );
}

/// A server that answers every request with `status` and `body` as an OCI
/// index.
async fn hostile_referrers(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let header = format!(
                    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                    media_type::OCI_INDEX,
                    body.len()
                );
                let _ = conn.write_all(header.as_bytes()).await;
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_referrers_indexes_are_refused() {
    let subject = Digest::of(b"subject");
    let many: Vec<Referrer> = (0..=oci_model::MAX_REFERRERS as u64)
        .map(|i| Referrer::new(media_type::OCI_MANIFEST, Digest::of(&i.to_le_bytes()), 1))
        .collect();
    let entry = Referrer::new(media_type::OCI_MANIFEST, subject.clone(), 1);
    let twice = referrers_index(&[entry.clone(), entry]);
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            vec![b' '; 5 << 20],
            "the referrers index is larger than the 4194304-byte limit".into(),
        ),
        (
            referrers_index(&many),
            "lists 10001 entries: more than 10000 referrers".into(),
        ),
        (twice, format!("{subject} is listed twice")),
        (
            b"{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"sha256:zz\"}]}".to_vec(),
            "malformed referrers index".into(),
        ),
    ];
    // A well-formed answer of the referrers API is listed as it comes,
    // filtered by artifact type even when the registry does not filter.
    let listed = referrers_index(&[
        Referrer::new(media_type::OCI_MANIFEST, Digest::of(b"one"), 5).artifact_type("a/b"),
        Referrer::new(media_type::OCI_MANIFEST, Digest::of(b"two"), 6).artifact_type("c/d"),
    ]);
    let host = hostile_referrers(listed).await;
    let out = json(&hoist_ok(&[
        "referrers",
        &format!("{host}/app@{subject}"),
        "--artifact-type",
        "c/d",
        "--json",
    ]));
    assert_eq!(out["via"], "api", "{out}");
    assert_eq!(out["referrers"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(
        out["referrers"][0]["digest"],
        Digest::of(b"two").to_string()
    );

    for (body, want) in cases {
        let host = hostile_referrers(body).await;
        let err = hoist_err(&["referrers", &format!("{host}/app@{subject}")]);
        assert!(err.contains(&want), "{want}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbom_attach_pushes_the_sbom_as_a_referrer() {
    let a = Registry::start().await.unwrap();
    let (_dir, _image, oci) = fixture(&[3_000], 36, false);
    let app = format!("{}/sbom/app:v1", a.host());
    hoist_ok(&["copy", &oci, &app]);
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap();
    let out = hoist_ok(&[
        "sbom",
        &app,
        "--attach",
        "--format",
        "cyclonedx",
        "--cache-dir",
        cache,
    ]);
    let digest = out.trim().rsplit('@').next().unwrap().to_owned();
    assert_eq!(
        referrer_digests(&app, Some("application/vnd.cyclonedx+json")),
        vec![digest.clone()]
    );
    let manifest = json(&hoist_ok(&[
        "inspect",
        &format!("{}/sbom/app@{digest}", a.host()),
    ]));
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.cyclonedx+json"
    );
    let err = hoist_err(&["sbom", &app, "--attach", "--list", "--cache-dir", cache]);
    assert!(
        err.contains("--attach needs --format spdx or cyclonedx"),
        "{err}"
    );
    let err = hoist_err(&["sbom", &oci, "--attach", "--cache-dir", cache]);
    assert!(err.contains("not a layout"), "{err}");
}
