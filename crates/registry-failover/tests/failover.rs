//! Failover against two real registries on loopback, with a fault proxy
//! in front of each: stopped, stalling, corrupting, failing and cutting
//! primaries; secondaries that lack or differ from the image.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use oci_model::Source;
use oci_model::{Descriptor, Digest, Manifest, Reference};
use registry_failover::{BreakerState, Error, ErrorKind, Failover, FailoverConfig};
use testkit::{
    Fault, FaultProxy, FixtureImage, ImageSpec, Registry, Rule, push_layout, write_image,
};

/// Two registries holding the same image, each behind its own proxy.
struct Pair {
    a: Registry,
    b: Registry,
    pa: FaultProxy,
    pb: FaultProxy,
    image: FixtureImage,
    _dir: tempfile::TempDir,
}

/// A config quick enough for tests: short timeouts, one extra round.
fn quick() -> FailoverConfig {
    quick_with(|_| {})
}

/// [`quick`] with changes.
fn quick_with(change: impl FnOnce(&mut FailoverConfig)) -> FailoverConfig {
    let mut c = FailoverConfig::default();
    c.connect_timeout = Duration::from_secs(1);
    c.first_byte_timeout = Duration::from_millis(500);
    c.blob_timeout = Duration::from_secs(20);
    c.breaker_failures = 3;
    c.breaker_cool_down = Duration::from_secs(30);
    c.rounds = 1;
    c.round_backoff = Duration::from_millis(10);
    c.round_backoff_max = Duration::from_millis(20);
    change(&mut c);
    c
}

impl Pair {
    async fn start() -> Self {
        Self::start_with_b(true).await
    }

    /// With `same` false, B gets a different image under the same tag.
    async fn start_with_b(same: bool) -> Self {
        let (a, b) = tokio::join!(Registry::start(), Registry::start());
        let (a, b) = (a.unwrap(), b.unwrap());
        let dir = tempfile::tempdir().unwrap();
        // A small config, a 2 MiB layer (many chunks) and a 64 KiB one.
        let spec = ImageSpec {
            layers: vec![2 << 20, 64 << 10],
            seed: 11,
            docker_media_types: false,
        };
        let image = write_image(dir.path(), "v1", &spec).unwrap();
        push_layout(dir.path(), "v1", &format!("{}/team/fn:v1", a.host()), None)
            .await
            .unwrap();
        if same {
            push_layout(dir.path(), "v1", &format!("{}/team/fn:v1", b.host()), None)
                .await
                .unwrap();
        } else {
            let other_dir = tempfile::tempdir().unwrap();
            let other = ImageSpec {
                layers: vec![32 << 10],
                seed: 99,
                docker_media_types: false,
            };
            write_image(other_dir.path(), "v1", &other).unwrap();
            push_layout(
                other_dir.path(),
                "v1",
                &format!("{}/team/fn:v1", b.host()),
                None,
            )
            .await
            .unwrap();
        }
        let pa = FaultProxy::start(a.addr()).await.unwrap();
        let pb = FaultProxy::start(b.addr()).await.unwrap();
        Self {
            a,
            b,
            pa,
            pb,
            image,
            _dir: dir,
        }
    }

    /// A failover through both proxies.
    fn failover(&self, config: FailoverConfig) -> Failover {
        Failover::from_client_builder(
            registry_client::Client::builder(),
            [self.pa.host(), self.pb.host()],
            config,
        )
        .unwrap()
    }

    /// The image's reference on the primary (the proxy in front of A).
    fn reference(&self) -> Reference {
        format!("{}/team/fn:v1", self.pa.host()).parse().unwrap()
    }
}

/// Reads a whole blob through the `Source` trait.
async fn read<F: Source>(f: &F, r: &Reference, desc: &Descriptor) -> Result<Vec<u8>, F::Error> {
    let mut stream = f.blob(r, desc).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Resolves through `Source` and reads every blob, checking each digest.
async fn pull_all<F: Source>(f: &F, r: &Reference) -> Result<Manifest, F::Error> {
    let manifest = f.manifest(r).await?;
    let pinned = r.with_digest(manifest.digest().clone());
    let blobs: Vec<Descriptor> = manifest
        .config()
        .into_iter()
        .chain(manifest.layers())
        .cloned()
        .collect();
    for desc in &blobs {
        let bytes = read(f, &pinned, desc).await?;
        assert_eq!(bytes.len() as u64, desc.size);
        assert_eq!(Digest::of(&bytes), desc.digest);
    }
    Ok(manifest)
}

fn errors(f: &Failover, registry: &str, kind: ErrorKind) -> u64 {
    f.metrics()
        .registry(registry)
        .unwrap()
        .errors
        .get(&kind)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_primary_serves_everything() {
    let p = Pair::start().await;
    let f = p.failover(quick());
    let (pinned, manifest) = f.resolve(&p.reference()).await.unwrap();
    assert_eq!(manifest.digest(), &p.image.manifest_digest);
    assert_eq!(pinned.digest(), Some(&p.image.manifest_digest));
    assert_eq!(pinned.registry(), p.pa.host());
    pull_all(&f, &p.reference()).await.unwrap();
    assert!(p.pb.requests().is_empty(), "{:?}", p.pb.requests());
    let m = f.metrics();
    let a = m.registry(&p.pa.host()).unwrap();
    assert_eq!(a.manifest_pulls, 2);
    assert_eq!(a.blob_pulls, 3);
    assert_eq!(
        a.blob_bytes,
        p.image.config_size + p.image.layers.iter().map(|l| l.size).sum::<u64>()
    );
    assert_eq!(a.pull_duration.count, 5);
    assert!(a.errors.is_empty());
    assert!(m.failovers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_primary_fails_over_to_the_secondary() {
    let mut p = Pair::start().await;
    // Straight to A, so that a stopped A refuses connections.
    let f = Failover::from_client_builder(
        registry_client::Client::builder(),
        [p.a.host(), p.pb.host()],
        quick(),
    )
    .unwrap();
    p.a.stop();
    let r: Reference = format!("{}/team/fn:v1", p.a.host()).parse().unwrap();
    let started = Instant::now();
    let manifest = pull_all(&f, &r).await.unwrap();
    assert_eq!(manifest.digest(), &p.image.manifest_digest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let m = f.metrics();
    assert_eq!(m.registry(&p.pb.host()).unwrap().blob_pulls, 3);
    assert_eq!(errors(&f, &p.a.host(), ErrorKind::Connection), 3);
    // Three failures open A's breaker: the last blob skipped it.
    assert_eq!(m.registry(&p.a.host()).unwrap().breaker, BreakerState::Open);
    assert_eq!(m.registry(&p.a.host()).unwrap().skipped, 1);
    assert_eq!(m.failovers(&p.a.host(), &p.pb.host()), 4);
    let text = m.to_prometheus();
    let line = format!(
        "hoist_registry_failover_total{{from=\"{}\",to=\"{}\"}} 4",
        p.a.host(),
        p.pb.host()
    );
    assert!(text.lines().any(|l| l == line), "{text}");
    let line = format!(
        "hoist_registry_pull_errors_total{{registry=\"{}\",error_type=\"connection\"}} 3",
        p.a.host()
    );
    assert!(text.lines().any(|l| l == line), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_primary_times_out_on_first_byte() {
    let p = Pair::start().await;
    let f = p.failover(quick());
    p.pa.add(Rule::new(
        "/manifests/",
        Fault::Delay(Duration::from_secs(10)),
    ));
    let started = Instant::now();
    let (_, manifest) = f.resolve(&p.reference()).await.unwrap();
    assert_eq!(manifest.digest(), &p.image.manifest_digest);
    // connect (1 s) + first byte (0.5 s) at most, not the 10 s stall.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(errors(&f, &p.pa.host(), ErrorKind::Timeout), 1);
    assert_eq!(
        f.metrics().registry(&p.pb.host()).unwrap().manifest_pulls,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_blob_resumes_on_the_secondary_from_the_checkpoint() {
    let p = Pair::start().await;
    let f = p.failover(quick());
    let layer = &p.image.layers[0];
    let cut = 300_000;
    p.pa.add(Rule::new(
        format!("/blobs/{}", layer.digest),
        Fault::StallBody {
            after_bytes: cut,
            stall: Duration::from_secs(10),
        },
    ));
    let started = Instant::now();
    let bytes = read(&f, &p.reference(), layer).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(Digest::of(&bytes), layer.digest);
    let m = f.metrics();
    // Each byte came once: the first `cut` from A, the rest from B.
    assert_eq!(m.registry(&p.pa.host()).unwrap().blob_bytes, cut);
    assert_eq!(
        m.registry(&p.pb.host()).unwrap().blob_bytes,
        layer.size - cut
    );
    assert_eq!(errors(&f, &p.pa.host(), ErrorKind::Timeout), 1);
    let on_b: Vec<_> = p.pb.requests();
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!(on_b[0].status, 206, "a Range request: {on_b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_blob_resumes_where_it_broke() {
    let p = Pair::start().await;
    let layer = p.image.layers[0].clone();
    let path = format!("/blobs/{}", layer.digest);
    let cut = 200_000;

    // A healthy breaker: the resume goes back to the primary.
    let f = p.failover(quick());
    p.pa.add(Rule::new(&path, Fault::DropConnection { after_bytes: cut }).times(1));
    let bytes = read(&f, &p.reference(), &layer).await.unwrap();
    assert_eq!(Digest::of(&bytes), layer.digest);
    let gets: Vec<u16> =
        p.pa.requests()
            .iter()
            .filter(|r| r.path.contains(&path))
            .map(|r| r.status)
            .collect();
    assert_eq!(gets, [200, 206]);
    assert_eq!(
        f.metrics().registry(&p.pa.host()).unwrap().blob_bytes,
        layer.size
    );
    assert!(p.pb.requests().is_empty());

    // A breaker that opens at the first failure: the resume goes on to B.
    p.pa.reset_log();
    let f = p.failover(quick_with(|c| {
        c.breaker_failures = 1;
    }));
    p.pa.add(Rule::new(&path, Fault::DropConnection { after_bytes: cut }).times(1));
    let bytes = read(&f, &p.reference(), &layer).await.unwrap();
    assert_eq!(Digest::of(&bytes), layer.digest);
    let m = f.metrics();
    let from_a = m.registry(&p.pa.host()).unwrap().blob_bytes;
    // hyper may flush a little less than `after_bytes` before the abort.
    assert!(from_a > 0 && from_a <= cut, "{from_a}");
    assert_eq!(
        m.registry(&p.pb.host()).unwrap().blob_bytes,
        layer.size - from_a
    );
    assert_eq!(p.pb.requests().len(), 1);
    assert_eq!(p.pb.requests()[0].status, 206);
    assert_eq!(m.failovers(&p.pa.host(), &p.pb.host()), 1);

    // A primary that cuts every response: resumed there until its breaker
    // opens (three failures), then finished on B.
    p.pa.reset_log();
    p.pb.reset_log();
    let f = p.failover(quick());
    p.pa.add(Rule::new(&path, Fault::DropConnection { after_bytes: cut }));
    let bytes = read(&f, &p.reference(), &layer).await.unwrap();
    assert_eq!(Digest::of(&bytes), layer.digest);
    let m = f.metrics();
    let a = m.registry(&p.pa.host()).unwrap();
    assert_eq!(a.breaker, BreakerState::Open);
    assert_eq!(p.pa.count("GET", &path), 3);
    assert_eq!(
        a.blob_bytes + m.registry(&p.pb.host()).unwrap().blob_bytes,
        layer.size
    );
    assert_eq!(p.pb.requests().len(), 1);
    assert_eq!(p.pb.requests()[0].status, 206);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_content_on_the_primary_is_never_kept() {
    let p = Pair::start().await;
    let f = p.failover(quick());
    p.pa.add(Rule::new("/manifests/", Fault::CorruptBody).times(1));
    let config_path = format!("/blobs/{}", p.image.config_digest);
    p.pa.add(Rule::new(&config_path, Fault::CorruptBody).times(1));
    // The manifest and the config (one chunk each) come from B instead.
    let (_, manifest) = f.resolve(&p.reference()).await.unwrap();
    assert_eq!(manifest.digest(), &p.image.manifest_digest);
    let config = manifest.config().unwrap().clone();
    let bytes = read(&f, &p.reference(), &config).await.unwrap();
    assert_eq!(Digest::of(&bytes), p.image.config_digest);
    assert_eq!(errors(&f, &p.pa.host(), ErrorKind::DigestMismatch), 2);
    assert_eq!(f.metrics().failovers(&p.pa.host(), &p.pb.host()), 2);

    // A 2 MiB layer is handed on chunk by chunk before its digest can be
    // checked: the stream ends with an error rather than mixing sources.
    let layer = p.image.layers[0].clone();
    // The primary keeps serving it corrupt.
    p.pa.add(Rule::new(
        format!("/blobs/{}", layer.digest),
        Fault::CorruptBody,
    ));
    let err = read(&f, &p.reference(), &layer).await.unwrap_err();
    assert!(
        matches!(&err, Error::CorruptBlob { digest, offset, .. } if *digest == layer.digest && *offset > 0),
        "{err}"
    );
    // Asked again, it comes whole: the registry that served it wrong is
    // asked last, so the secondary serves it.
    p.pa.reset_log();
    let bytes = read(&f, &p.reference(), &layer).await.unwrap();
    assert_eq!(Digest::of(&bytes), layer.digest);
    assert_eq!(p.pa.count("GET", &layer.digest.to_string()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_on_server_errors_and_half_opens_after_cool_down() {
    let p = Pair::start().await;
    let cool_down = Duration::from_millis(800);
    let f = p.failover(quick_with(|c| {
        c.breaker_failures = 2;
        c.breaker_cool_down = cool_down;
    }));
    p.pa.add(Rule::new("/v2/", Fault::Status(500)));
    pull_all(&f, &p.reference()).await.unwrap();
    let m = f.metrics();
    let a = m.registry(&p.pa.host()).unwrap();
    assert_eq!(a.errors.get(&ErrorKind::Status5xx), Some(&2));
    assert_eq!(a.breaker, BreakerState::Open);
    // Manifest and config failed on A; the two layers skipped it.
    assert_eq!(a.skipped, 2);
    assert_eq!(p.pa.requests().len(), 2);
    assert_eq!(m.registry(&p.pb.host()).unwrap().blob_pulls, 3);

    // After the cool-down one probe goes to A; it is healthy again.
    p.pa.clear();
    tokio::time::sleep(cool_down).await;
    assert_eq!(
        f.metrics().registry(&p.pa.host()).unwrap().breaker,
        BreakerState::HalfOpen
    );
    let (_, manifest) = f.resolve(&p.reference()).await.unwrap();
    assert_eq!(manifest.digest(), &p.image.manifest_digest);
    let a = f.metrics().registry(&p.pa.host()).unwrap().clone();
    assert_eq!(a.breaker, BreakerState::Closed);
    assert_eq!(a.manifest_pulls, 1);

    // A probe that fails opens it again at once.
    p.pa.add(Rule::new("/v2/", Fault::Status(503)));
    f.resolve(&p.reference()).await.unwrap();
    f.resolve(&p.reference()).await.unwrap();
    assert_eq!(
        f.metrics().registry(&p.pa.host()).unwrap().breaker,
        BreakerState::Open
    );
    tokio::time::sleep(cool_down).await;
    f.resolve(&p.reference()).await.unwrap();
    assert_eq!(
        f.metrics().registry(&p.pa.host()).unwrap().breaker,
        BreakerState::Open
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_with_other_content_under_the_tag_is_never_substituted() {
    let p = Pair::start_with_b(false).await;
    let f = p.failover(quick_with(|c| {
        c.breaker_failures = 1;
    }));
    let (pinned, _) = f.resolve(&p.reference()).await.unwrap();
    assert_eq!(pinned.digest(), Some(&p.image.manifest_digest));

    // The primary fails; B is asked for the pinned digest, which it lacks.
    p.pa.add(Rule::new("/v2/", Fault::Status(502)));
    for _ in 0..3 {
        let err = f.resolve(&p.reference()).await.unwrap_err();
        let Error::AllFailed { failures, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(failures.len(), 2, "{err}");
        assert_eq!(failures[1].kind, Some(ErrorKind::Status4xx), "{err}");
    }
    let asked = format!("/manifests/{}", p.image.manifest_digest);
    assert!(
        p.pb.requests().iter().all(|r| r.path.contains(&asked)),
        "{:?}",
        p.pb.requests()
    );
    // A 404 says nothing about B's health.
    let m = f.metrics();
    let b = m.registry(&p.pb.host()).unwrap();
    assert_eq!(b.breaker, BreakerState::Closed);
    assert_eq!(b.manifest_pulls, 0);

    // Asked by digest directly, the same holds.
    let err = f.resolve(&pinned).await.unwrap_err();
    assert!(matches!(err, Error::AllFailed { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_down_names_both() {
    let mut p = Pair::start().await;
    let (ha, hb) = (p.a.host(), p.b.host());
    let f = Failover::from_client_builder(registry_client::Client::builder(), [&ha, &hb], quick())
        .unwrap();
    p.a.stop();
    p.b.stop();
    let r: Reference = format!("{ha}/team/fn:v1").parse().unwrap();
    let err = f.resolve(&r).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("all registries failed for {r}: {ha}: ")),
        "{text}"
    );
    assert!(text.contains(&format!("; {hb}: ")), "{text}");
    assert!(
        text.contains("onnection refused") || text.contains("connect"),
        "{text}"
    );
    // Two rounds over both.
    assert_eq!(errors(&f, &ha, ErrorKind::Connection), 2);
    assert_eq!(errors(&f, &hb, ErrorKind::Connection), 2);

    let layer = p.image.layers[1].clone();
    let err = read(&f, &r, &layer).await.unwrap_err();
    assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_the_primary_image_to_the_secondary() {
    let (a, b) = tokio::join!(Registry::start(), Registry::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path(), "v2", &ImageSpec::default()).unwrap();
    push_layout(dir.path(), "v2", &format!("{}/team/fn:v2", a.host()), None)
        .await
        .unwrap();
    let f = Failover::from_client_builder(
        registry_client::Client::builder(),
        [a.host(), b.host()],
        quick(),
    )
    .unwrap();
    let r: Reference = format!("{}/team/fn:v2", a.host()).parse().unwrap();
    let reports = f.mirror(&r).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, b.host());
    assert_eq!(reports[0].1.digest.as_ref(), Some(&image.manifest_digest));
    let client = registry_client::Client::builder().build().unwrap();
    let on_b = client
        .get_manifest(&r.with_registry(&b.host()).unwrap())
        .await
        .unwrap();
    assert_eq!(on_b.digest(), &image.manifest_digest);

    // An image the primary lacks is a clear error naming it.
    let missing: Reference = format!("{}/team/none:v1", a.host()).parse().unwrap();
    let err = f.mirror(&missing).await.unwrap_err();
    assert!(
        matches!(&err, Error::Mirror { registry, .. } if *registry == a.host()),
        "{err}"
    );
}
