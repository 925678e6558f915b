//! Proves each testkit piece against the real tools: docker-registry,
//! skopeo and umoci.

use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use oci_model::{Digest, Digester, Layout};
use testkit::{
    Fault, FaultProxy, ImageSpec, RandomReader, Registry, RegistryAuth, Rule, push_layout, skopeo,
    umoci, write_image, write_index,
};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

fn oci_ref(dir: &std::path::Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// The manifest digest skopeo sees at `docker://REF`.
async fn inspect_digest(reference: &str, creds: Option<&str>) -> String {
    let mut args = vec!["inspect", "--tls-verify=false", "--raw"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(reference);
    let raw = skopeo(&args).await.expect("skopeo inspect");
    Digest::of(raw.as_bytes()).to_string()
}

#[tokio::test]
async fn registry_starts_answers_and_stops() {
    let mut registry = Registry::start().await.unwrap();
    assert!(registry.data_dir().is_dir());
    assert!(registry.host().starts_with("127.0.0.1:"));
    let resp = client()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(registry.is_running());
    registry.stop();
    assert!(!registry.is_running());
    let err = client().get(format!("{}/v2/", registry.url())).send().await;
    assert!(err.is_err(), "a stopped registry still answers: {err:?}");
}

#[tokio::test]
async fn basic_auth_refuses_without_credentials() {
    let registry = Registry::start_with(RegistryAuth::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    })
    .await
    .unwrap();
    let url = format!("{}/v2/", registry.url());
    let anonymous = client().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = client()
        .get(&url)
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client()
        .get(&url)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);

    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path(), "v1", &ImageSpec::default()).unwrap();
    let dst = format!("docker://{}/basic/app:v1", registry.host());
    let creds = registry.creds_arg().unwrap();
    let refused = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &oci_ref(dir.path(), "v1"),
        &dst,
    ])
    .await;
    assert!(refused.is_err(), "anonymous push accepted");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &oci_ref(dir.path(), "v1"),
        &dst,
    ])
    .await
    .unwrap();
    assert_eq!(
        inspect_digest(&dst, Some(&creds)).await,
        image.manifest_digest.to_string()
    );
    let target = format!("{}/basic/pushed:v1", registry.host());
    assert!(push_layout(dir.path(), "v1", &target, None).await.is_err());
    push_layout(dir.path(), "v1", &target, registry.credentials())
        .await
        .unwrap();
    assert_eq!(
        inspect_digest(&format!("docker://{target}"), Some(&creds)).await,
        image.manifest_digest.to_string()
    );
}

#[tokio::test]
async fn token_auth_issues_tokens_the_registry_accepts() {
    let registry = Registry::start_with(RegistryAuth::Token {
        user: "bob".into(),
        password: "hunter2".into(),
        token_ttl: Duration::from_secs(300),
    })
    .await
    .unwrap();
    let tokens = registry.token_server().expect("a token registry has one");
    let http = client();

    let challenge = http
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains(&format!("realm=\"{}\"", tokens.realm())),
        "{www}"
    );
    assert!(www.contains(tokens.service()), "{www}");

    let token_url = |scope: &str| {
        format!(
            "{}?service={}&scope={scope}",
            tokens.realm(),
            tokens.service()
        )
    };
    let url = token_url("repository:demo/app:pull,push");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let wrong = http
        .get(&url)
        .basic_auth("bob", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(tokens.tokens_issued(), 0);

    let get_token = |scope: &str| {
        let req = http
            .get(token_url(scope))
            .basic_auth("bob", Some("hunter2"));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let body: serde_json::Value =
                serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            assert_eq!(body["expires_in"], 300);
            assert_eq!(body["token"], body["access_token"]);
            assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let token = get_token("repository:demo/app:pull,push").await;
    assert_eq!(tokens.tokens_issued(), 1);
    assert_eq!(tokens.scopes(), vec!["repository:demo/app:pull,push"]);

    let with = |path: &str, token: &str| {
        http.get(format!("{}{path}", registry.url()))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(with("/v2/", &token).await.unwrap().status(), 200);
    // Access to the granted repository (which does not exist yet) …
    assert_eq!(
        with("/v2/demo/app/tags/list", &token)
            .await
            .unwrap()
            .status(),
        404
    );
    // … but not to another one.
    let other = get_token("repository:other/app:pull").await;
    assert_eq!(
        with("/v2/demo/app/tags/list", &other)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(with("/v2/", "garbage").await.unwrap().status(), 401);

    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path(), "v1", &ImageSpec::default()).unwrap();
    let dst = format!("docker://{}/demo/app:v1", registry.host());
    let creds = registry.creds_arg().unwrap();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &oci_ref(dir.path(), "v1"),
        &dst,
    ])
    .await
    .unwrap();
    assert_eq!(
        inspect_digest(&dst, Some(&creds)).await,
        image.manifest_digest.to_string()
    );
    assert!(tokens.tokens_issued() > 2);
    assert!(
        tokens
            .scopes()
            .iter()
            .any(|s| s.contains("demo/app") && s.contains("push")),
        "{:?}",
        tokens.scopes()
    );
    let anonymous = skopeo(&["inspect", "--tls-verify=false", &dst]).await;
    assert!(anonymous.is_err(), "anonymous pull accepted");
}

/// Copies the image and the index tagged `v1` and `multi` in `dir` to
/// `repo` with skopeo (OCI media types) or `push_layout` (Docker media
/// types, which skopeo 1.9 does not read from a layout).
async fn publish(dir: &std::path::Path, registry: &Registry, repo: &str, docker: bool) {
    for tag in ["v1", "multi"] {
        let dst = format!("{}/{repo}:{tag}", registry.host());
        if docker {
            push_layout(dir, tag, &dst, None).await.unwrap();
        } else {
            let dst = format!("docker://{dst}");
            skopeo(&[
                "copy",
                "--all",
                "--dest-tls-verify=false",
                &oci_ref(dir, tag),
                &dst,
            ])
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn fixture_images_and_indexes_reach_a_registry_unchanged() {
    let registry = Registry::start().await.unwrap();
    for docker_media_types in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let spec = ImageSpec {
            layers: vec![1000, 300_000],
            seed: 11,
            docker_media_types,
        };
        let image = write_image(dir.path(), "v1", &spec).unwrap();
        let index = write_index(dir.path(), "multi", &spec).unwrap();
        assert_eq!(index.images.len(), 2);
        assert_ne!(
            index.images[0].1.manifest_digest,
            index.images[1].1.manifest_digest
        );
        let repo = format!("fx/docker-{docker_media_types}");
        publish(dir.path(), &registry, &repo, docker_media_types).await;

        let dst = format!("docker://{}/{repo}", registry.host());
        assert_eq!(
            inspect_digest(&format!("{dst}:v1"), None).await,
            image.manifest_digest.to_string()
        );
        assert_eq!(
            inspect_digest(&format!("{dst}:multi"), None).await,
            index.digest.to_string()
        );
        let arm = skopeo(&[
            "--override-arch",
            "arm64",
            "inspect",
            "--tls-verify=false",
            &format!("{dst}:multi"),
        ])
        .await
        .unwrap();
        let arm: serde_json::Value = serde_json::from_str(&arm).unwrap();
        assert_eq!(arm["Architecture"], "arm64");
        // `Digest` names the index; the layers show the arm64 child was chosen.
        assert_eq!(arm["Digest"], index.digest.to_string());
        assert_eq!(
            arm["Layers"][1],
            index.images[1].1.layers[1].digest.to_string()
        );
    }
}

#[tokio::test]
async fn fixture_layers_are_valid_and_deterministic() {
    let spec = ImageSpec {
        layers: vec![0, 100_000, 6 << 20],
        seed: 3,
        docker_media_types: false,
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let image = write_image(a.path(), "t", &spec).unwrap();
    assert_eq!(write_image(b.path(), "t", &spec).unwrap(), image);
    let other = write_image(
        b.path(),
        "u",
        &ImageSpec {
            seed: 4,
            ..spec.clone()
        },
    )
    .unwrap();
    assert_ne!(other.layers[1].digest, image.layers[1].digest);

    let layout = Layout::open(a.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&layout.read_blob(&image.config_digest, 1 << 20).unwrap()).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    for (i, (layer, diff_id)) in image.layers.iter().zip(&image.diff_ids).enumerate() {
        assert_eq!(config["rootfs"]["diff_ids"][i], diff_id.to_string());
        let file = std::fs::File::open(layout.blob_path(&layer.digest)).unwrap();
        assert_eq!(file.metadata().unwrap().len(), layer.size);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(&Digest::of(&tar_bytes), diff_id);
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let payload: u64 = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().size().unwrap())
            .sum();
        assert_eq!(payload, spec.layers[i]);
    }
    assert_eq!(
        image.total_bytes,
        image.manifest_size + image.config_size + image.layers.iter().map(|l| l.size).sum::<u64>()
    );

    // umoci reads the layout and unpacks the layers.
    let bundle = a.path().join("bundle");
    let image_arg = format!("{}:t", a.path().display());
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &image_arg,
        bundle.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let big = bundle.join("rootfs/layer-2/file-0001");
    assert_eq!(std::fs::metadata(big).unwrap().len(), 2 << 20);
}

/// A registry holding a fixture image pushed through a proxy in front of
/// it (which exercises the proxy's upload path and `Location` rewriting).
async fn proxied_image() -> (
    Registry,
    FaultProxy,
    testkit::FixtureImage,
    tempfile::TempDir,
) {
    let registry = Registry::start().await.unwrap();
    let proxy = FaultProxy::start(registry.addr()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ImageSpec {
        layers: vec![1 << 20],
        seed: 5,
        docker_media_types: false,
    };
    let image = write_image(dir.path(), "v1", &spec).unwrap();
    let dst = format!("docker://{}/px/app:v1", proxy.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &oci_ref(dir.path(), "v1"),
        &dst,
    ])
    .await
    .unwrap();
    assert!(proxy.count("PUT", "/blobs/uploads/") >= 1);
    assert!(proxy.count("PUT", "/manifests/v1") == 1);
    (registry, proxy, image, dir)
}

fn blob_url(proxy: &FaultProxy, digest: &Digest) -> String {
    format!("http://{}/v2/px/app/blobs/{digest}", proxy.host())
}

/// Reads a body chunk by chunk: the bytes that arrived and whether it
/// ended cleanly.
async fn read_all(mut resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test]
async fn proxy_body_faults() {
    let (_registry, proxy, image, _dir) = proxied_image().await;
    let layer = &image.layers[0];
    let url = blob_url(&proxy, &layer.digest);
    let http = client();

    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        layer.size.to_string().as_str()
    );
    let (body, clean) = read_all(http.get(&url).send().await.unwrap()).await;
    assert!(clean);
    assert_eq!(Digest::of(&body), layer.digest);

    proxy.add(Rule::new(layer.digest.as_str(), Fault::CorruptBody).times(1));
    let (body, clean) = read_all(http.get(&url).send().await.unwrap()).await;
    assert!(clean);
    assert_eq!(body.len() as u64, layer.size);
    assert_ne!(Digest::of(&body), layer.digest);

    proxy.add(
        Rule::new(
            layer.digest.as_str(),
            Fault::DropConnection { after_bytes: 1000 },
        )
        .times(1),
    );
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (body, clean) = read_all(resp).await;
    assert!(!clean);
    assert_eq!(body.len(), 1000);

    proxy.add(Rule::new(layer.digest.as_str(), Fault::WrongContentLength).times(1));
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(
        resp.headers()["content-length"],
        (layer.size + 1).to_string().as_str()
    );
    let (body, clean) = read_all(resp).await;
    assert!(!clean);
    assert_eq!(body.len() as u64, layer.size, "the whole real body arrives");

    let stall = Duration::from_millis(600);
    proxy.add(
        Rule::new(
            layer.digest.as_str(),
            Fault::StallBody {
                after_bytes: 4096,
                stall,
            },
        )
        .times(1),
    );
    let started = Instant::now();
    let resp = http.get(&url).send().await.unwrap();
    let first = Instant::now();
    let (body, clean) = read_all(resp).await;
    assert!(clean);
    assert_eq!(Digest::of(&body), layer.digest);
    assert!(started.elapsed() >= stall);
    assert!(
        first.duration_since(started) < stall,
        "headers were held back"
    );

    // Every rule was used up: a plain fetch is clean again.
    let (body, clean) = read_all(http.get(&url).send().await.unwrap()).await;
    assert!(clean);
    assert_eq!(Digest::of(&body), layer.digest);
}

#[tokio::test]
async fn proxy_status_faults_and_log() {
    let (mut registry, proxy, image, _dir) = proxied_image().await;
    let url = blob_url(&proxy, &image.layers[0].digest);
    let http = client();
    proxy.reset_log();
    assert!(proxy.requests().is_empty());

    proxy.add(
        Rule::new("/blobs/", Fault::Status(503))
            .method(Method::GET)
            .times(2),
    );
    for _ in 0..2 {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    }
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(proxy.count("GET", image.layers[0].digest.as_str()), 3);
    let statuses: Vec<u16> = proxy.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);

    proxy.add(Rule::new("/blobs/", Fault::Status(500)).method(Method::HEAD));
    assert_eq!(http.head(&url).send().await.unwrap().status(), 500);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    proxy.clear();
    assert_eq!(http.head(&url).send().await.unwrap().status(), 200);

    proxy.add(
        Rule::new(
            "/manifests/",
            Fault::TooManyRequests {
                retry_after_secs: 7,
            },
        )
        .times(1),
    );
    let manifest_url = format!("http://{}/v2/px/app/manifests/v1", proxy.host());
    let resp = http.get(&manifest_url).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert!(resp.text().await.unwrap().contains("TOOMANYREQUESTS"));

    // An injected status on an upload still reads the request body, so the
    // client sees the status rather than a reset.
    proxy.add(Rule::new("/blobs/uploads/", Fault::Status(503)).times(1));
    let resp = http
        .post(format!("http://{}/v2/px/app/blobs/uploads/", proxy.host()))
        .body(vec![0u8; 4 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);

    let delay = Duration::from_millis(300);
    proxy.add(Rule::new("/manifests/", Fault::Delay(delay)).times(1));
    let started = Instant::now();
    let resp = http
        .get(&manifest_url)
        .header("accept", image.manifest_media_type.as_str())
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= delay);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        Digest::of(&resp.bytes().await.unwrap()),
        image.manifest_digest
    );

    registry.stop();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 502);
    assert_eq!(proxy.requests().last().unwrap().status, 502);
}

/// Peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A deterministic pseudo-random body of `len` bytes, in 1 MiB chunks.
fn random_stream(len: u64) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(RandomReader::new(42, len), |mut random| async move {
        let mut chunk = vec![0u8; usize::try_from(random.remaining().min(1 << 20)).unwrap()];
        if chunk.is_empty() {
            return None;
        }
        let read = random.read_exact(&mut chunk);
        Some((read.map(|()| Bytes::from(chunk)), random))
    })
}

/// Streams a big blob up and down through the proxy and checks memory
/// stays flat. `HOIST_TESTKIT_BIG_MIB` sets the size (default 128 MiB, to
/// keep debug-build hashing short; 1024 proves the 1 GiB case).
#[tokio::test]
async fn proxy_streams_big_blobs_with_flat_memory() {
    use futures_util::StreamExt as _;
    let mib: u64 = std::env::var("HOIST_TESTKIT_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let len = mib << 20;
    let mut digester = Digester::new();
    let mut chunks = Box::pin(random_stream(len));
    while let Some(chunk) = chunks.next().await {
        digester.update(&chunk.unwrap());
    }
    let digest = digester.finish();

    let registry = Registry::start().await.unwrap();
    let proxy = FaultProxy::start(registry.addr()).await.unwrap();
    let http = client();
    let before = peak_rss();

    let start = http
        .post(format!(
            "http://{}/v2/big/blob/blobs/uploads/",
            proxy.host()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("http://{}/", proxy.host())),
        "{location}"
    );
    let put = http
        .put(format!("{location}&digest={digest}"))
        .body(reqwest::Body::wrap_stream(random_stream(len)))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text().await);

    let resp = http
        .get(format!(
            "http://{}/v2/big/blob/blobs/{digest}",
            proxy.host()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut digester = Digester::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        digester.update(&chunk);
    }
    assert_eq!(digester.bytes(), len);
    assert_eq!(digester.finish(), digest);

    let grown = peak_rss().saturating_sub(before);
    // Buffering the body anywhere would grow the peak by about `len`.
    assert!(grown < 48 << 20, "peak RSS grew by {} MiB", grown >> 20);
}

/// The token server and the proxy keep answering while the test's
/// single-threaded runtime is blocked, e.g. waiting on a CLI through
/// `std::process` (a push through the proxy to a token-auth registry).
#[tokio::test]
async fn servers_answer_while_the_test_thread_blocks() {
    let registry = Registry::start_with(RegistryAuth::Token {
        user: "carol".into(),
        password: "pw".into(),
        token_ttl: Duration::from_secs(60),
    })
    .await
    .unwrap();
    let proxy = FaultProxy::start(registry.addr()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_image(dir.path(), "v1", &ImageSpec::default()).unwrap();
    let out = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "carol:pw",
            &oci_ref(dir.path(), "v1"),
            &format!("docker://{}/blocking/app:v1", proxy.host()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(registry.token_server().unwrap().tokens_issued() > 0);
    assert_eq!(proxy.count("PUT", "/manifests/v1"), 1);
}
