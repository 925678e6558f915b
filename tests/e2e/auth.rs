//! Basic and bearer-token auth against the real registry, with
//! credentials from a Docker config file; secrets never printed.

use std::time::Duration;

use base64::Engine as _;
use registry_client::{CredentialStore, Credentials};
use testkit::{Registry, RegistryAuth};

use super::*;

fn authfile(dir: &Path, host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    path.display().to_string()
}

async fn check_auth(auth: RegistryAuth) -> Registry {
    let reg = Registry::start_with(auth).await.unwrap();
    let (dir, image, oci) = fixture(&[50_000], 10, false);
    let dst = format!("{}/private/app:v1", reg.host());

    // Without credentials: one clear line, exit 1.
    let err = hoist_err(&["copy", &oci, &dst]);
    assert!(err.contains(&reg.host()), "{err}");
    assert!(
        err.contains("401") || err.contains("authentication"),
        "{err}"
    );

    // Wrong password: refused, and the password is not echoed.
    let bad = authfile(dir.path(), &reg.host(), "alice", "wrong-Secret-123");
    let err = hoist_err(&["copy", "--authfile", &bad, &oci, &dst]);
    assert!(!err.contains("wrong-Secret-123"), "{err}");

    let (user, password) = reg.credentials().unwrap();
    let good = authfile(dir.path(), &reg.host(), user, password);
    let out = hoist_ok(&["copy", "--authfile", &good, &oci, &dst]);
    assert!(out.contains(&image.manifest_digest.to_string()));
    assert_eq!(
        hoist_ok(&["digest", "--authfile", &good, &dst]).trim(),
        image.manifest_digest.to_string()
    );
    let tags = hoist_ok(&[
        "tags",
        "--authfile",
        &good,
        &format!("{}/private/app", reg.host()),
    ]);
    assert_eq!(tags.trim(), "v1");
    reg
}

#[tokio::test]
async fn basic_auth_with_an_authfile() {
    check_auth(RegistryAuth::Basic {
        user: "alice".into(),
        password: "pa55-basic".into(),
    })
    .await;
}

#[tokio::test]
async fn bearer_tokens_with_scopes() {
    let reg = check_auth(RegistryAuth::Token {
        user: "alice".into(),
        password: "pa55-token".into(),
        token_ttl: Duration::from_secs(300),
    })
    .await;
    let scopes = reg.token_server().unwrap().scopes();
    assert!(
        scopes
            .iter()
            .any(|s| s == "repository:private/app:pull,push"),
        "{scopes:?}"
    );
}

#[tokio::test]
async fn tokens_are_reused_and_refreshed_when_they_expire() {
    let reg = Registry::start_with(RegistryAuth::Token {
        user: "bob".into(),
        password: "pw".into(),
        token_ttl: Duration::from_secs(2),
    })
    .await
    .unwrap();
    let mut store = CredentialStore::empty();
    store.insert(
        &reg.host(),
        Credentials::Basic {
            username: "bob".into(),
            password: "pw".into(),
        },
    );
    let client = Client::builder().credentials(store).build().unwrap();
    let (_dir, _image, oci) = fixture(&[10_000, 10_000, 10_000, 10_000], 11, false);
    let dst = format!("{}/reuse/app:v1", reg.host());
    copy(&client, &oci, &dst).await.unwrap();
    let server = reg.token_server().unwrap();
    let issued = server.tokens_issued();
    // One push scope for the whole copy, not one per request.
    assert!(
        issued <= 2,
        "{issued} tokens for one copy: {:?}",
        server.scopes()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = copy(&client, &oci, &format!("{}/reuse/app:v2", reg.host()))
        .await
        .unwrap();
    assert_eq!(again.blobs_existed, 5);
    assert!(
        server.tokens_issued() > issued,
        "an expired token was reused"
    );
}
