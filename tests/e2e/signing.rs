//! `hoist key generate`, `hoist sign`, `hoist verify` against a real
//! registry, and both directions of interop with the real skopeo: skopeo
//! signs with a key hoist generated, and skopeo's `sigstoreSigned` policy
//! accepts what hoist signed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::Registry;

use super::{copy, fast_client, fixture};

const PASSWORD: &str = "correct horse";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `hoist ARGS` with COSIGN_PASSWORD set.
fn hoist_pw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env("HOME", "/nonexistent-home-for-tests")
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .expect("run hoist")
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `hoist key generate --out DIR/NAME`: the two paths.
fn generate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    ok(
        hoist_pw(&["key", "generate", "--out", prefix.to_str().unwrap()]),
        "key generate",
    );
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

fn verify(key: &Path, image: &str, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "--json", "--key", key.to_str().unwrap(), image];
    args.extend_from_slice(extra);
    hoist_pw(&args)
}

/// A failed verify's JSON `reason`.
fn refused(key: &Path, image: &str) -> String {
    let out = verify(key, image, &[]);
    assert_eq!(out.status.code(), Some(1), "{image}: {}", text(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["reason"].as_str().expect("a reason").to_owned()
}

/// Pushes a fixture image to `registry/repo:v1`; its digest.
async fn push(registry: &Registry, repo: &str, seed: u64) -> String {
    let (_dir, image, oci) = fixture(&[4096], seed, false);
    copy(
        &fast_client(),
        &oci,
        &format!("{}/{repo}:v1", registry.host()),
    )
    .await
    .expect("push fixture");
    image.manifest_digest.to_string()
}

#[tokio::test]
async fn sign_then_verify_and_each_refusal() {
    let registry = Registry::start().await.expect("registry");
    let host = registry.host();
    let keys = tempfile::tempdir().unwrap();
    let (a_key, a_pub) = generate(keys.path(), "a");
    let (b_key, b_pub) = generate(keys.path(), "b");
    let (_, c_pub) = generate(keys.path(), "c");

    // The private key is 0600 and neither file is ever overwritten.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&a_key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&a_key).unwrap();
    let again = hoist_pw(&[
        "key",
        "generate",
        "--out",
        keys.path().join("a").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(&a_key).unwrap(), before);

    let digest = push(&registry, "app", 1).await;
    let image = format!("{host}/app:v1");
    let by_digest = format!("{host}/app@{digest}");

    // An unsigned image.
    assert_eq!(refused(&a_pub, &image), "unsigned");

    // Signing a tag signs its digest; the signature tag is printed.
    let tag = ok(
        hoist_pw(&[
            "sign",
            "--key",
            a_key.to_str().unwrap(),
            &image,
            "-a",
            "env=test",
        ]),
        "sign",
    );
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(tag.trim(), format!("{host}/app:sha256-{hex}.sig"));
    let out = ok(verify(&a_pub, &by_digest, &[]), "verify a");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let payload = &v["verified"][0]["payload"];
    assert_eq!(payload["manifest_digest"], digest.as_str());
    assert_eq!(payload["docker_reference"], format!("{host}/app"));
    assert_eq!(payload["annotations"]["env"], "test");

    // A wrong password names itself and writes nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["sign", "--key", b_key.to_str().unwrap(), &image])
        .env("COSIGN_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("wrong password"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(refused(&b_pub, &image), "wrong_key");

    // A second signer is appended, never replacing the first.
    ok(
        hoist_pw(&["sign", "--key", b_key.to_str().unwrap(), &image]),
        "sign b",
    );
    ok(verify(&a_pub, &image, &[]), "verify a after b");
    ok(verify(&b_pub, &image, &[]), "verify b");
    // Signing again with the same key adds nothing (ECDSA here is
    // deterministic, RFC 6979).
    ok(
        hoist_pw(&[
            "sign",
            "--key",
            a_key.to_str().unwrap(),
            &image,
            "-a",
            "env=test",
        ]),
        "sign a again",
    );
    let sig = fast_client()
        .get_manifest(&tag.trim().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(sig.layers().len(), 2);
    assert_eq!(refused(&c_pub, &image), "wrong_key");

    // The same content pushed elsewhere: its identity names `app`.
    let other = format!("{host}/elsewhere:v1");
    copy(&fast_client(), &image, &other).await.unwrap();
    copy(
        &fast_client(),
        tag.trim(),
        &format!("{host}/elsewhere:sha256-{hex}.sig"),
    )
    .await
    .unwrap();
    assert_eq!(refused(&a_pub, &other), "wrong_identity");
    ok(verify(&a_pub, &other, &["--any-identity"]), "any identity");

    // A signature manifest moved onto another image: its payload signs
    // another digest.
    let second = push(&registry, "second", 2).await;
    let second_hex = second.strip_prefix("sha256:").unwrap();
    copy(
        &fast_client(),
        tag.trim(),
        &format!("{host}/app:sha256-{second_hex}.sig"),
    )
    .await
    .unwrap();
    copy(
        &fast_client(),
        &format!("{host}/second:v1"),
        &format!("{host}/app:second"),
    )
    .await
    .unwrap();
    assert_eq!(
        refused(&a_pub, &format!("{host}/app:second")),
        "wrong_digest"
    );

    // A payload blob changed on the registry's disk.
    let payload_digest = sig.layers()[0].digest.clone();
    let blob = registry
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&payload_digest.hex()[..2])
        .join(payload_digest.hex())
        .join("data");
    let mut bytes = std::fs::read(&blob).expect("payload blob on disk");
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    assert_eq!(refused(&a_pub, &image), "tampered");
}

/// A `registries.d` directory turning on sigstore attachments for every
/// registry, and a policy with `requirement` for docker images.
fn skopeo_config(dir: &Path, requirement: serde_json::Value) -> (PathBuf, PathBuf) {
    let regd = dir.join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("default.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .unwrap();
    let policy = dir.join("policy.json");
    let doc = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {"": [requirement]},
            "oci": {"": [{"type": "insecureAcceptAnything"}]},
            "dir": {"": [{"type": "insecureAcceptAnything"}]},
        }
    });
    std::fs::write(&policy, doc.to_string()).unwrap();
    (regd, policy)
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo")
}

/// What Debian's skopeo 1.9.3 (containers/image 5.23.1 with Debian's
/// `disable-sigstore.patch`) answers to any sigstore signing or
/// verification. When this assertion breaks, skopeo can sign and verify:
/// the two directions of interop are then the commands below, expected to
/// succeed.
const SIGSTORE_DISABLED: &str = "Debian-local change: sigstore disabled";

#[tokio::test]
async fn skopeo_on_this_machine_and_hoist_signatures() {
    let registry = Registry::start().await.expect("registry");
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = generate(dir.path(), "cosign");
    let (_, other_pub) = generate(dir.path(), "other");
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, format!("{PASSWORD}\n")).unwrap();

    // skopeo signing with a key hoist generated.
    let (regd, policy) = skopeo_config(
        &dir.path().join("sign"),
        serde_json::json!({"type": "insecureAcceptAnything"}),
    );
    let (_fixture, _, oci) = fixture(&[4096], 7, false);
    let out = skopeo(&[
        "--policy",
        policy.to_str().unwrap(),
        "--registries.d",
        regd.to_str().unwrap(),
        "copy",
        "--dest-tls-verify=false",
        "--sign-by-sigstore-private-key",
        key.to_str().unwrap(),
        "--sign-passphrase-file",
        passphrase.to_str().unwrap(),
        &oci,
        &format!("docker://{host}/skopeo-signed:v1"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(SIGSTORE_DISABLED),
        "{}",
        text(&out.stderr)
    );

    // skopeo's sigstoreSigned policy on what hoist signed.
    let digest = push(&registry, "signed", 3).await;
    let tag = ok(
        hoist_pw(&[
            "sign",
            "--key",
            key.to_str().unwrap(),
            &format!("{host}/signed:v1"),
        ]),
        "sign",
    );
    let pull = |public: &Path, name: &str| {
        let sub = dir.path().join(name);
        let (regd, policy) = skopeo_config(
            &sub,
            serde_json::json!({
                "type": "sigstoreSigned",
                "keyPath": public,
                "signedIdentity": {"type": "matchRepository"},
            }),
        );
        skopeo(&[
            "--policy",
            policy.to_str().unwrap(),
            "--registries.d",
            regd.to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{host}/signed@{digest}"),
            &format!("dir:{}", sub.join("out").display()),
        ])
    };
    for (public, name) in [(&public, "right"), (&other_pub, "wrong")] {
        let out = pull(public, name);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains(SIGSTORE_DISABLED),
            "{}",
            text(&out.stderr)
        );
    }

    // What skopeo can do: copy the signature manifest as an image, byte
    // for byte, to another registry, where hoist verifies it (the
    // identity names the first registry).
    let mirror = Registry::start().await.expect("mirror");
    let hex = digest.strip_prefix("sha256:").unwrap();
    let out = skopeo(&[
        "--insecure-policy",
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{host}/signed@{digest}"),
        &format!("docker://{}/signed:v1", mirror.host()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = skopeo(&[
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}", tag.trim()),
        &format!("docker://{}/signed:sha256-{hex}.sig", mirror.host()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let copied = format!("{}/signed:v1", mirror.host());
    assert_eq!(refused(&public, &copied), "wrong_identity");
    ok(
        verify(&public, &copied, &["--any-identity"]),
        "verify the mirror",
    );
}

/// Submits `code` as function `name` on `api` and waits for its build;
/// the function's id and its pushed image (`name@sha256:…`).
async fn built(api: &super::service::Client, name: &str, code: &str) -> (String, String) {
    let (status, created) = api
        .post(
            "/v1/functions",
            serde_json::json!({"name": name, "version": "1.0.0", "code": code}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let build = created["build_id"].as_str().unwrap();
    let done = api
        .build_done(build, std::time::Duration::from_secs(300))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    (
        created["function_id"].as_str().unwrap().to_owned(),
        done["image_url"].as_str().unwrap().to_owned(),
    )
}

/// Invokes `function` and waits for its task to end; the task record.
async fn invoke(api: &super::service::Client, function: &str) -> serde_json::Value {
    let (status, task) = api
        .post(
            &format!("/v1/functions/{function}/invoke?cache=false"),
            serde_json::json!({"inputs": {"name": "signed"}}),
        )
        .await;
    assert!(status < 300, "{task}");
    let id = task["task_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (_, t) = api.get(&format!("/v1/tasks/{id}")).await;
        if t["status"] == "completed" || t["status"] == "failed" {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "task {id}: {t}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_runs_signed_images_only() {
    let registry = Registry::start().await.expect("registry");
    // The proxy counts the worker's reads of signatures.
    let proxy = testkit::FaultProxy::start(registry.addr())
        .await
        .expect("proxy");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = generate(keys.path(), "cosign");
    let (other_key, _) = generate(keys.path(), "other");
    let serve = super::service::Serve::start(&[
        "--registry",
        &format!("{}/functions", proxy.host()),
        "--require-signature",
        public.to_str().unwrap(),
    ]);
    let api = &serve.client;
    let code = "def handler(inputs):\n    return {'greeting': 'hello ' + inputs['name']}\n";

    let (signed, image) = built(api, "signed", code).await;
    ok(
        hoist_pw(&["sign", "--key", key.to_str().unwrap(), &image]),
        "sign",
    );
    let hex = image.rsplit("sha256:").next().unwrap().to_owned();
    let signature_reads = || {
        let path = format!("manifests/sha256-{hex}.sig");
        proxy
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&path))
            .count()
    };
    let before = signature_reads();
    for _ in 0..3 {
        let t = invoke(api, &signed).await;
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["output"]["greeting"], "hello signed", "{t}");
    }
    // Verified once: later calls start warm or from the verdict kept.
    assert_eq!(signature_reads() - before, 1);

    let (unsigned, _) = built(api, "unsigned", &code.replace("hello", "hi")).await;
    let t = invoke(api, &unsigned).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["type"], "SignatureRejected", "{t}");
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not signed"),
        "{t}"
    );

    let (by_other, image) = built(api, "by-other", &code.replace("hello", "hey")).await;
    ok(
        hoist_pw(&["sign", "--key", other_key.to_str().unwrap(), &image]),
        "sign",
    );
    let t = invoke(api, &by_other).await;
    assert_eq!(t["error"]["type"], "SignatureRejected", "{t}");

    let (_, metrics) = api.as_key("").get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_owned();
    for line in [
        "hoist_signature_failures_total{reason=\"unsigned\"} 1",
        "hoist_signature_failures_total{reason=\"wrong_key\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn run_requires_a_signature_when_asked() {
    let registry = Registry::start().await.expect("registry");
    let base = testkit::busybox_base().expect("busybox base image");
    let image = testkit::push_base(&base, &registry, "tools/busybox:1")
        .await
        .expect("push busybox")
        .to_string();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = generate(keys.path(), "cosign");
    let cache = tempfile::tempdir().unwrap();
    let run = |image: &str| {
        hoist_pw(&[
            "run",
            "--require-signature",
            public.to_str().unwrap(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
            image,
            "--",
            "echo",
            "ran",
        ])
    };
    let out = run(&image);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not signed"),
        "{}",
        text(&out.stderr)
    );
    ok(
        hoist_pw(&["sign", "--key", key.to_str().unwrap(), &image]),
        "sign",
    );
    assert_eq!(ok(run(&image), "run signed").trim(), "ran");
}

/// `tests/signing/cosign_formats.py`: cosign's formats written
/// independently with `cryptography` and PyNaCl.
fn python_cosign(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/signing/cosign_formats.py");
    Command::new("python3")
        .arg(script)
        .args(args)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .expect("run python3")
}

/// No cosign binary exists here and Debian's skopeo has sigstore disabled:
/// an independent implementation of cosign's formats (Python's
/// `cryptography`, libsodium's secretbox, hashlib's scrypt) reads hoist's
/// keys and signatures, and hoist reads its keys.
#[tokio::test]
async fn cosign_formats_cross_checked_by_an_independent_implementation() {
    let registry = Registry::start().await.expect("registry");
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = generate(dir.path(), "hoist");

    // hoist's key pair: the envelope decrypts and the key is the .pub's.
    let out = python_cosign(&["decrypt", key.to_str().unwrap(), public.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // hoist's signature verifies with a standard ECDSA implementation.
    let digest = push(&registry, "app", 7).await;
    let image = format!("{host}/app:v1");
    ok(
        hoist_pw(&["sign", "--key", key.to_str().unwrap(), &image]),
        "sign",
    );
    let hex = digest.strip_prefix("sha256:").unwrap();
    let sig_manifest: serde_json::Value = serde_json::from_str(&ok(
        hoist_pw(&["inspect", &format!("{host}/app:sha256-{hex}.sig")]),
        "inspect .sig",
    ))
    .unwrap();
    let layer = &sig_manifest["layers"][0];
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    let payload = reqwest::get(format!(
        "{}/v2/app/blobs/{}",
        registry.url(),
        layer["digest"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        parsed["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    let payload_file = dir.path().join("payload.json");
    std::fs::write(&payload_file, &payload).unwrap();
    let out = python_cosign(&[
        "verify",
        public.to_str().unwrap(),
        payload_file.to_str().unwrap(),
        signature,
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The same check fails with another key: it can fail.
    let (_, other) = generate(dir.path(), "other");
    let out = python_cosign(&[
        "verify",
        other.to_str().unwrap(),
        payload_file.to_str().unwrap(),
        signature,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // A key pair written by the independent implementation signs with
    // hoist, and hoist verifies with its public key.
    let prefix = dir.path().join("python");
    let out = python_cosign(&["generate", prefix.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let py_key = dir.path().join("python.key");
    let py_pub = dir.path().join("python.pub");
    ok(
        hoist_pw(&["sign", "--key", py_key.to_str().unwrap(), &image]),
        "sign with the python key",
    );
    ok(verify(&py_pub, &image, &[]), "verify with the python key");
    assert_eq!(refused(&other, &image), "wrong_key");
}
