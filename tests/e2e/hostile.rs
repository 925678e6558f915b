//! Hostile input: malformed references, and a registry that serves
//! oversized, malformed or mislabelled manifests. Each is a clear error.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A one-route HTTP server that answers every request with `response`.
async fn hostile_registry(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let response = Arc::new(response);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(&response).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    host
}

fn http(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_manifests_are_refused_with_clear_errors() {
    let good = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;
    let oci = (
        "Content-Type",
        oci_model::media_type::OCI_MANIFEST.to_owned(),
    );
    let huge = vec![b' '; 5 << 20];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (http("200 OK", std::slice::from_ref(&oci), &huge), "larger than the 4194304-byte limit"),
        (http("200 OK", std::slice::from_ref(&oci), b"{not json"), "malformed manifest"),
        (
            http("200 OK", &[("Content-Type", "text/html".into())], br#"{"schemaVersion":2,"mediaType":"text/html"}"#),
            "unsupported media type `text/html`",
        ),
        (
            http("200 OK", std::slice::from_ref(&oci), br#"{"schemaVersion":1,"name":"x"}"#),
            "schema 1",
        ),
        (
            http(
                "200 OK",
                &[oci.clone(), ("Docker-Content-Digest", oci_model::Digest::of(b"other").to_string())],
                good,
            ),
            "digest mismatch",
        ),
        (
            http("404 Not Found", &[], br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
            "HTTP 404 MANIFEST_UNKNOWN: manifest unknown",
        ),
        (
            http("403 Forbidden", &[], br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#),
            "HTTP 403 DENIED",
        ),
    ];
    for (response, want) in cases {
        let host = hostile_registry(response).await;
        let err = hoist_err(&["inspect", &format!("{host}/evil/app:v1")]);
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(err.contains(&host), "{err}");
    }
    // The good manifest, served honestly, is read.
    let host = hostile_registry(http("200 OK", &[oci], good)).await;
    hoist_ok(&["inspect", &format!("{host}/evil/app:v1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_digest_must_match() {
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let host = hostile_registry(http(
        "200 OK",
        &[("Content-Type", oci_model::media_type::OCI_INDEX.to_owned())],
        body,
    ))
    .await;
    let wrong = oci_model::Digest::of(b"what I asked for");
    let err = hoist_err(&["inspect", &format!("{host}/evil/app@{wrong}")]);
    assert!(err.contains("digest mismatch"), "{err}");
    let right = oci_model::Digest::of(body);
    hoist_ok(&["inspect", &format!("{host}/evil/app@{right}")]);
}

#[test]
fn malformed_references_are_one_line_errors() {
    let cases = [
        ("UPPER/case:v1", "lowercase"),
        ("host:99999999/app", "invalid port"),
        ("app:bad tag", "whitespace"),
        ("app@sha256:1234", "64 hex"),
        ("app@md5:1234", "unsupported digest algorithm"),
        ("oci:", "needs a directory"),
    ];
    for (input, want) in cases {
        let out = hoist(&["digest", input]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{input}: clap usage error expected"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{input}: {err}");
    }
}

/// A layout whose `nested` tag is an index listing, for linux/amd64,
/// another index: every command that picks a platform refuses it clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_inside_an_index_is_a_clear_error_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ImageSpec {
        layers: vec![1024],
        seed: 31,
        docker_media_types: false,
    };
    let inner = testkit::write_index(dir.path(), "inner", &spec).unwrap();
    let outer = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci_model::media_type::OCI_INDEX,
        "manifests": [{
            "mediaType": inner.media_type, "digest": inner.digest, "size": inner.size,
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    });
    let layout = oci_model::Layout::open(dir.path()).unwrap();
    let bytes = serde_json::to_vec(&outer).unwrap();
    let digest = layout.write_blob(&bytes).unwrap();
    let desc = oci_model::Descriptor {
        media_type: oci_model::media_type::OCI_INDEX.into(),
        digest,
        size: bytes.len() as u64,
        platform: None,
    };
    layout.add_manifest(&desc, Some("nested")).unwrap();
    let src = format!("oci:{}:nested", dir.path().display());
    let out = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}:x", out.path().display());
    let cache = tempfile::tempdir().unwrap();
    let function = super::peer::function_dir("def handler(inputs):\n    return {}\n", None);
    let nested = "nested indexes are not supported";
    let commands: Vec<Vec<&str>> = vec![
        vec!["inspect", "--platform", "linux/amd64", &src],
        vec!["inspect", "--config", &src],
        vec!["digest", "--platform", "linux/amd64", &src],
        vec!["copy", "--platform", "linux/amd64", &src, &dst],
        vec![
            "build",
            function.path().to_str().unwrap(),
            "--base",
            &src,
            "--tag",
            "127.0.0.1:1/fn/x:v1",
            "--output",
            &dst,
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ],
        vec![
            "run",
            &src,
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--",
            "true",
        ],
    ];
    for args in &commands {
        let err = hoist_err(args);
        assert!(err.contains(nested), "{args:?}: {err}");
    }
    // The whole index copies as it is (no platform picked), and the same
    // refusal comes from a registry.
    let registry = testkit::Registry::start().await.unwrap();
    let remote = format!("{}/nested/app:v1", registry.host());
    hoist_ok(&["copy", &src, &remote]);
    let err = hoist_err(&["inspect", "--platform", "linux/amd64", &remote]);
    assert!(err.contains(nested), "{err}");
}
