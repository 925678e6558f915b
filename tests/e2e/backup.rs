//! `hoist backup`: a registry's metadata written to SeaweedFS (S3) and to a
//! directory, then checked against the registry after a tag is deleted.

use testkit::{Registry, S3};

use super::*;

/// Runs hoist with extra environment variables.
fn hoist_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DOCKER_CONFIG")
        .env("HOME", "/nonexistent-home-for-tests")
        .output()
        .expect("run hoist")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_s3_and_a_directory_then_check_after_a_delete() {
    let reg = Registry::start().await.unwrap();
    let s3 = S3::start().await.unwrap();
    let host = reg.host();
    let (_d1, one, oci1) = fixture(&[4_000], 41, false);
    let (_d2, two, oci2) = fixture(&[4_000], 42, false);
    hoist_ok(&["copy", &oci1, &format!("{host}/team/app:v1")]);
    hoist_ok(&["copy", &oci2, &format!("{host}/team/app:v2")]);
    hoist_ok(&["copy", &oci1, &format!("{host}/other/tool:latest")]);
    let sbom = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(sbom.path(), b"{}").unwrap();
    let attached = hoist_ok(&[
        "attach",
        &format!("{host}/team/app:v1"),
        sbom.path().to_str().unwrap(),
        "--artifact-type",
        "application/spdx+json",
    ]);
    let attached = attached.trim().rsplit('@').next().unwrap().to_owned();

    // To a directory, only `team/`.
    let dir = tempfile::tempdir().unwrap();
    let to = format!("file://{}/backups", dir.path().display());
    let out: serde_json::Value = serde_json::from_str(&hoist_ok(&[
        "backup",
        "--registry",
        &host,
        "--repository",
        "team/",
        "--to",
        &to,
        "--json",
    ]))
    .unwrap();
    assert_eq!(out["repositories"], 1, "{out}");
    // v1, v2 and the fallback referrers tag of v1.
    assert_eq!(out["tags"], 3, "{out}");
    let file_url = out["backup"].as_str().unwrap().to_owned();
    let path = url::Url::parse(&file_url).unwrap().to_file_path().unwrap();
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "no temporary object left: {names:?}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["format"], "hoist-registry-backup/1");
    let repo = &doc["repositories"][0];
    assert_eq!(repo["name"], "team/app");
    let v1 = repo["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "v1")
        .unwrap();
    assert_eq!(v1["digest"], one.manifest_digest.to_string());
    assert_eq!(v1["size"], one.manifest_size);
    assert_eq!(v1["referrers"][0]["digest"], attached);
    assert_eq!(v1["referrers"][0]["artifactType"], "application/spdx+json");

    // To SeaweedFS, everything.
    let env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key()),
    ];
    let to_s3 = format!(
        "s3://{}/nightly?endpoint={}&region={}",
        s3.bucket(),
        s3.endpoint(),
        s3.region()
    );
    let out: serde_json::Value = serde_json::from_str(&ok(&hoist_env(
        &["backup", "--registry", &host, "--to", &to_s3, "--json"],
        &env,
    )))
    .unwrap();
    assert_eq!(out["repositories"], 2, "{out}");
    let s3_url = out["backup"].as_str().unwrap().to_owned();
    assert!(s3_url.contains("/nightly/registry-backup-"), "{s3_url}");

    // Both match the registry as it is.
    assert_eq!(
        ok(&hoist_env(
            &["backup", "--check", &s3_url, "--registry", &host],
            &env
        )),
        ""
    );
    assert_eq!(
        hoist_ok(&["backup", "--check", &file_url, "--registry", &host]),
        ""
    );

    // A deleted tag (and its manifest) is reported, exit 1.
    hoist_ok(&["delete", &format!("{host}/team/app:v2")]);
    for (url, env) in [(&s3_url, &env[..]), (&file_url, &[][..])] {
        let out = hoist_env(&["backup", "--check", url, "--registry", &host], env);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.trim(),
            format!("missing tag team/app:v2 (was {})", two.manifest_digest),
        );
    }
    // A backup that is not one, or is missing: one-line errors.
    let err = hoist_err(&[
        "backup",
        "--check",
        &format!("{file_url}.nope"),
        "--registry",
        &host,
    ]);
    assert!(err.contains("no such backup"), "{err}");
    let err = hoist_err(&["backup", "--registry", &host, "--to", "ftp://x/y"]);
    assert!(err.contains("unsupported scheme"), "{err}");
}
