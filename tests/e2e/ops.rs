//! Registry operations against real registries: `hoist mirror` (top N
//! from usage records, lists, skips, failures), `hoist gc` (every rule,
//! dry run == real run), immutable base images, and one scheduled run
//! in a real worker.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use oci_model::{Digest, Layout};
use serde_json::{Value, json};
use testkit::Registry;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

/// A small image — one tiny random layer, a config `created` `age` ago,
/// optionally marked immutable — pushed to `target` (`HOST/REPO:TAG`).
async fn push_image(target: &str, seed: u64, age: Duration, immutable: bool) -> Digest {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut body = vec![0u8; 512];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in &mut body {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "data", &body[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let layer_digest = layout.write_blob(&layer).unwrap();
    let created = SystemTime::now() - age;
    let secs = created
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let config = json!({
        "created": oci_model::rfc3339(secs),
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.as_str()]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = layout.write_blob(&config).unwrap();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.as_str(), "size": layer.len()}],
    });
    if immutable {
        manifest["annotations"] = json!({ registry_ops::IMMUTABLE_ANNOTATION: "true" });
    }
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let desc = oci_model::Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: layout.write_blob(&manifest).unwrap(),
        size: manifest.len() as u64,
        platform: None,
    };
    layout.add_manifest(&desc, Some("t")).unwrap();
    let client = Client::builder().build().unwrap();
    copy(&client, &format!("oci:{}:t", dir.path().display()), target)
        .await
        .unwrap();
    desc.digest
}

async fn records(dir: &Path) -> (jobs::Jobs, String) {
    let url = format!("sqlite://{}", dir.join("hoist.db").display());
    let jobs = jobs::Jobs::open(jobs::JobsConfig::new(&url, "database"))
        .await
        .unwrap();
    (jobs, url)
}

async fn digest_at(host: &str, name: &str) -> Option<Digest> {
    let client = Client::builder().build().unwrap();
    client
        .head_manifest(&format!("{host}/{name}").parse().unwrap())
        .await
        .unwrap()
        .map(|d| d.digest)
}

#[tokio::test]
async fn mirror_top_n_skips_present_reports_failures() {
    let primary = Registry::start().await.unwrap();
    let secondary = Registry::start().await.unwrap();
    let p = primary.host();
    let dir = tempfile::tempdir().unwrap();
    let (jobs, url) = records(dir.path()).await;
    // 30 images; image i is used 30 - i times this week, and image 29
    // also 100 times a month ago (outside --since).
    let mut digests = Vec::new();
    for i in 0..30u64 {
        let name = format!("acme/functions/user-u-func-f{i}:v1");
        let d = push_image(&format!("{p}/{name}"), i, DAY, false).await;
        for _ in 0..(30 - i) {
            jobs.record_usage(&format!("{p}/{name}"), "w", jobs::UsageKind::Run)
                .await
                .unwrap();
        }
        digests.push(d);
    }
    for _ in 0..100 {
        jobs.record_usage_at(
            &format!("{p}/acme/functions/user-u-func-f29:v1"),
            "w",
            jobs::UsageKind::Pull,
            SystemTime::now() - 30 * DAY,
        )
        .await
        .unwrap();
    }
    // Image 2 is already on the secondary: skipped without moving blobs.
    hoist_ok(&[
        "copy",
        &format!("{p}/acme/functions/user-u-func-f2:v1"),
        &format!("{}/acme/functions/user-u-func-f2:v1", secondary.host()),
    ]);
    // A name used but missing from the primary: reported, the rest go on.
    for _ in 0..50 {
        jobs.record_usage(&format!("{p}/acme/gone:v9"), "w", jobs::UsageKind::Run)
            .await
            .unwrap();
    }
    let args = [
        "mirror",
        "--from",
        &p,
        "--to",
        &secondary.host(),
        "--top",
        "6",
        "--since",
        "7d",
        "--database",
        &url,
        "--json",
    ];
    let dry = hoist(&[&args[..], &["--dry-run"]].concat());
    assert_eq!(dry.status.code(), Some(1));
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["mirrored"].as_array().unwrap().len(), 4);
    assert!(
        digest_at(&secondary.host(), "acme/functions/user-u-func-f0:v1")
            .await
            .is_none()
    );

    let out = hoist(&args);
    assert_eq!(out.status.code(), Some(1), "a failure exits 1");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = |key: &str| -> BTreeSet<String> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["source"].as_str().unwrap().to_owned())
            .collect()
    };
    let want = |is: &[u64]| -> BTreeSet<String> {
        is.iter()
            .map(|i| format!("{p}/acme/functions/user-u-func-f{i}:v1"))
            .collect()
    };
    assert_eq!(names("mirrored"), want(&[0, 1, 3, 4]));
    assert_eq!(names("skipped"), want(&[2]));
    assert_eq!(names("failed"), [format!("{p}/acme/gone:v9")].into());
    assert!(report["bytes"].as_u64().unwrap() > 4 * 512);
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v["mirrored"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["source"].to_string(), m["digest"].to_string()))
            .collect()
    };
    assert_eq!(
        pairs(&report),
        pairs(&dry),
        "the dry run named what the run copied"
    );
    for i in [0u64, 1, 3, 4] {
        assert_eq!(
            digest_at(
                &secondary.host(),
                &format!("acme/functions/user-u-func-f{i}:v1")
            )
            .await,
            Some(digests[i as usize].clone()),
            "digests unchanged"
        );
    }
    assert!(
        digest_at(&secondary.host(), "acme/functions/user-u-func-f5:v1")
            .await
            .is_none()
    );

    // Again: everything there is skipped; text report.
    let again = hoist(&args[..args.len() - 1]);
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(text.contains("Skipped (already mirrored): 5"), "{text}");
    assert!(text.contains("Failed: 1"), "{text}");
    assert!(text.contains("acme/gone:v9 ("), "{text}");
}

#[tokio::test]
async fn mirror_from_a_list() {
    let primary = Registry::start().await.unwrap();
    let secondary = Registry::start().await.unwrap();
    let d = push_image(&format!("{}/a/b:v1", primary.host()), 7, DAY, false).await;
    let dir = tempfile::tempdir().unwrap();
    // An SBOM attached on the primary travels with the image.
    let sbom = dir.path().join("sbom.json");
    std::fs::write(&sbom, br#"{"spdxVersion": "SPDX-2.3"}"#).unwrap();
    hoist_ok(&[
        "attach",
        &format!("{}/a/b:v1", primary.host()),
        sbom.to_str().unwrap(),
        "--artifact-type",
        "application/spdx+json",
    ]);
    let list = dir.path().join("list");
    std::fs::write(&list, "# DR set\na/b:v1   # the API\n\n").unwrap();
    let out = hoist_ok(&[
        "mirror",
        "--from",
        &primary.host(),
        "--to",
        &secondary.host(),
        "--list",
        list.to_str().unwrap(),
    ]);
    assert!(out.contains("Mirrored: 1"), "{out}");
    assert_eq!(digest_at(&secondary.host(), "a/b:v1").await, Some(d));
    let listed: Value = serde_json::from_str(&hoist_ok(&[
        "referrers",
        &format!("{}/a/b:v1", secondary.host()),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        listed["referrers"][0]["artifactType"], "application/spdx+json",
        "{listed}"
    );
    std::fs::write(&list, "a/b:v1\nNot A Ref\n").unwrap();
    let err = hoist_err(&[
        "mirror",
        "--from",
        &primary.host(),
        "--to",
        &secondary.host(),
        "--list",
        list.to_str().unwrap(),
    ]);
    assert!(err.contains("line 2"), "{err}");
}

/// Every gc rule on one registry; the dry run's list is the real run's.
#[tokio::test]
async fn gc_applies_every_rule_and_dry_run_matches() {
    let reg = Registry::start().await.unwrap();
    let h = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let (jobs, url) = records(dir.path()).await;
    let f = "acme/functions/user-u-func-f";
    // 14 versions of f, created 1..=14 days ago: the 4 oldest go (10 rule).
    let mut fv = Vec::new();
    for i in 1..=14u64 {
        fv.push(push_image(&format!("{h}/{f}:v{i}"), 100 + i, DAY * i as u32, false).await);
    }
    // g: v1 created 200 days ago and never used (90-day rule), v2 created
    // 200 days ago but used 3 days ago, v3 used 100 days ago.
    let g = "acme/functions/user-u-func-g";
    let g1 = push_image(&format!("{h}/{g}:v1"), 201, 200 * DAY, false).await;
    let g2 = push_image(&format!("{h}/{g}:v2"), 202, 200 * DAY, false).await;
    let g3 = push_image(&format!("{h}/{g}:v3"), 203, 200 * DAY, false).await;
    jobs.record_usage_at(
        &format!("{h}/{g}@{g2}"),
        "w",
        jobs::UsageKind::Run,
        SystemTime::now() - 3 * DAY,
    )
    .await
    .unwrap();
    jobs.record_usage_at(
        &format!("{h}/{g}:v3"),
        "w",
        jobs::UsageKind::Pull,
        SystemTime::now() - 100 * DAY,
    )
    .await
    .unwrap();
    // A deleted function's images go, however new.
    let x = "acme/functions/user-u-func-x";
    let x1 = push_image(&format!("{h}/{x}:v1"), 301, DAY, false).await;
    // `latest`: unused for 40 days goes, used yesterday stays.
    let old_latest = push_image(&format!("{h}/acme/app:latest"), 401, 40 * DAY, false).await;
    let new_latest = push_image(&format!("{h}/acme/api:latest"), 402, 40 * DAY, false).await;
    jobs.record_usage(&format!("{h}/acme/api:latest"), "w", jobs::UsageKind::Pull)
        .await
        .unwrap();
    // Base images: ancient, unused, in function-like and latest places —
    // never deleted.
    let base = push_image(
        &format!("{h}/acme/base/debian:latest"),
        501,
        900 * DAY,
        true,
    )
    .await;
    push_image(
        &format!("{h}/acme/functions/user-u-func-x:base"),
        502,
        900 * DAY,
        true,
    )
    .await;
    for (name, live) in [("f", true), ("g", true), ("x", false)] {
        let created = jobs
            .create_function(jobs::NewFunction {
                owner: "u".into(),
                name: name.into(),
                version: "1".into(),
                code_hash: "sha256:00".into(),
                requirements: String::new(),
                base: None,
            })
            .await
            .unwrap();
        if !live {
            jobs.delete_function(created.id).await.unwrap();
        }
    }
    let policy = dir.path().join("policy.toml");
    std::fs::File::create(&policy)
        .unwrap()
        .write_all(b"[functions]\nkeep_days = 90\nkeep_versions = 10\n[latest]\nkeep_days = 30\n")
        .unwrap();
    let args = [
        "gc",
        "--registry",
        &h,
        "--policy",
        policy.to_str().unwrap(),
        "--database",
        &url,
        "--json",
    ];
    let listed = |v: &Value| -> BTreeSet<(String, String)> {
        v["deletions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["repository"].as_str().unwrap().to_owned(),
                    d["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let dry: Value =
        serde_json::from_str(&hoist_ok(&[&args[..], &["--dry-run"]].concat())).unwrap();
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for d in &fv[10..] {
        want.insert((f.into(), d.to_string()));
    }
    want.insert((g.into(), g1.to_string()));
    want.insert((g.into(), g3.to_string()));
    want.insert((x.into(), x1.to_string()));
    want.insert(("acme/app".into(), old_latest.to_string()));
    assert_eq!(listed(&dry), want);
    assert_eq!(dry["dry_run"], true);
    // Nothing deleted yet.
    assert!(digest_at(&h, &format!("{f}:v14")).await.is_some());

    let real: Value = serde_json::from_str(&hoist_ok(&args)).unwrap();
    assert_eq!(
        listed(&real),
        listed(&dry),
        "the dry run lists what the run deletes"
    );
    assert!(real["failed"].as_array().unwrap().is_empty());
    assert_eq!(real["bytes_freed"], dry["bytes_freed"]);
    assert!(real["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(real["kept"]["immutable"], 2);
    for (name, gone) in [
        (format!("{f}:v14"), true),
        (format!("{f}:v11"), true),
        (format!("{f}:v10"), false),
        (format!("{g}:v1"), true),
        (format!("{g}:v2"), false),
        (format!("{g}:v3"), true),
        (format!("{x}:v1"), true),
        (format!("{x}:base"), false),
        ("acme/app:latest".to_owned(), true),
        ("acme/api:latest".to_owned(), false),
        ("acme/base/debian:latest".to_owned(), false),
    ] {
        assert_eq!(digest_at(&h, &name).await.is_none(), gone, "{name}");
    }
    assert_eq!(digest_at(&h, "acme/base/debian:latest").await, Some(base));
    assert_eq!(digest_at(&h, "acme/api:latest").await, Some(new_latest));
    // A second run finds nothing more to do.
    let again: Value = serde_json::from_str(&hoist_ok(&args)).unwrap();
    assert!(again["deletions"].as_array().unwrap().is_empty(), "{again}");

    // A bad policy is refused before anything is read.
    std::fs::write(&policy, "[functions]\nkeep_versions = 0\n").unwrap();
    let err = hoist_err(&args);
    assert!(err.contains("keep_versions must be at least 1"), "{err}");
}

#[tokio::test]
async fn immutable_images_are_not_overwritten_unless_forced() {
    let reg = Registry::start().await.unwrap();
    let h = reg.host();
    let base = push_image(&format!("{h}/base/debian:bookworm"), 1, DAY, true).await;
    let other = push_image(&format!("{h}/scratch/other:v1"), 2, DAY, false).await;
    let dst = format!("{h}/base/debian:bookworm");
    let err = hoist_err(&["copy", &format!("{h}/scratch/other:v1"), &dst]);
    assert!(
        err.contains("immutable") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        digest_at(&h, "base/debian:bookworm").await,
        Some(base.clone())
    );
    // The same image again is no overwrite.
    hoist_ok(&["copy", &format!("{h}/base/debian@{base}"), &dst]);
    hoist_ok(&["copy", "--force", &format!("{h}/scratch/other:v1"), &dst]);
    assert_eq!(
        digest_at(&h, "base/debian:bookworm").await,
        Some(other.clone())
    );
    // An ordinary image under the tag now: replaced without --force.
    hoist_ok(&["copy", &format!("{h}/base/debian@{base}"), &dst]);
    assert_eq!(digest_at(&h, "base/debian:bookworm").await, Some(base));
}

/// A real worker with a mirror due (its time already past today): it runs
/// once, shows in the metrics, and a second worker on the same records
/// does not run it again.
#[tokio::test]
async fn worker_runs_the_scheduled_mirror_once() {
    let primary = Registry::start().await.unwrap();
    let secondary = Registry::start().await.unwrap();
    let p = primary.host();
    let dir = tempfile::tempdir().unwrap();
    let (jobs, url) = records(dir.path()).await;
    let d = push_image(&format!("{p}/acme/app:v1"), 9, DAY, false).await;
    jobs.record_usage(&format!("{p}/acme/app:v1"), "w", jobs::UsageKind::Run)
        .await
        .unwrap();
    let at = "00:00";
    let start = |n: u32| {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_hoist-worker"))
            .args([
                "--database",
                &url,
                "--objects",
                &format!("file://{}", dir.path().join("objects").display()),
                "--registry",
                &format!("{p}/acme"),
                "--cache-dir",
                dir.path().join(format!("w{n}")).to_str().unwrap(),
                "--prewarm",
                "0",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--mirror-to",
                &secondary.host(),
                "--mirror-at",
                at,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (Kill(child), port)
    };
    let metrics = |port: u16| async move {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let (_w1, port1) = start(1);
    let ran = "hoist_scheduled_runs_total{job=\"mirror\",result=\"ok\"} 1";
    let mut text = String::new();
    for _ in 0..300 {
        text = metrics(port1).await.unwrap_or_default();
        if text.contains(ran) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains(ran), "{text}");
    assert!(
        text.contains("hoist_mirror_images_total{result=\"mirrored\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("hoist_scheduled_last_run_timestamp_seconds{job=\"mirror\"}"),
        "{text}"
    );
    assert_eq!(digest_at(&secondary.host(), "acme/app:v1").await, Some(d));
    // Today's run is claimed: a second worker starts, and does not run it.
    let (_w2, port2) = start(2);
    let mut up = String::new();
    for _ in 0..300 {
        up = metrics(port2).await.unwrap_or_default();
        if !up.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let up = metrics(port2).await.unwrap_or(up);
    assert!(up.contains("hoist_mirror_bytes_total 0"), "{up}");
    assert!(!up.contains("hoist_scheduled_runs_total{"), "{up}");
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
