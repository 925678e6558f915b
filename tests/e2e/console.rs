//! The web console in a real browser: `tests/console/console.test.mjs`
//! (playwright-core driving Debian's Chromium) against `hoist serve` with
//! a registry for release builds. Screenshots of every page are kept in
//! `target/console-screenshots/`.

use std::path::Path;
use std::process::Command;

use super::service::Serve;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_submits_watches_cancels_and_invokes() {
    let registry = testkit::Registry::start().await.unwrap();
    let host = registry.host();
    let busybox = testkit::busybox_base().expect("busybox base image");
    let serve = Serve::start(&["--release-registry", &host]);

    // The page itself: served from the binary, with a policy that lets
    // only its own files run.
    let response = reqwest::get(format!("{}/", serve.client.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(response.text().await.unwrap().contains("/console/app.js"));
    let missing = reqwest::get(format!("{}/console/../hoist.db", serve.client.url))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new("node")
        .arg(root.join("tests/console/console.test.mjs"))
        .current_dir(root.join("tests/console"))
        .env("HOIST_URL", &serve.client.url)
        .env("HOIST_KEY", &serve.client.key)
        .env("HOIST_REGISTRY", &host)
        .env("HOIST_RELEASE_BASE", busybox.oci_ref())
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("run node (scripts/install-test-deps installs it with playwright-core)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("console: all checks passed"),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    let pngs = std::fs::read_dir(&shots).unwrap().count();
    assert!(pngs >= 12, "{pngs} screenshots");
}
