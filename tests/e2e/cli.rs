//! The CLI contract: output formats, exit codes, tags and delete.

use testkit::Registry;

use super::*;

#[tokio::test]
async fn json_output_tags_and_delete() {
    let reg = Registry::start().await.unwrap();
    let (_dir, image, oci) = fixture(&[20_000], 30, false);
    let repo = format!("{}/cli/app", reg.host());
    for tag in ["v1", "v2", "v3"] {
        hoist_ok(&["copy", "--quiet", &oci, &format!("{repo}:{tag}")]);
    }
    let report: serde_json::Value =
        serde_json::from_str(&hoist_ok(&["copy", "--json", &oci, &format!("{repo}:v1")])).unwrap();
    assert_eq!(report["report"]["unchanged"], true);
    assert_eq!(
        report["report"]["digest"],
        image.manifest_digest.to_string()
    );

    let tags: Vec<String> = serde_json::from_str(&hoist_ok(&["tags", "--json", &repo])).unwrap();
    assert_eq!(tags, ["v1", "v2", "v3"]);
    let digest: serde_json::Value =
        serde_json::from_str(&hoist_ok(&["digest", "--json", &format!("{repo}:v2")])).unwrap();
    assert_eq!(digest["digest"], image.manifest_digest.to_string());

    let out = hoist_ok(&["delete", &format!("{repo}:v2")]);
    assert!(out.contains(&image.manifest_digest.to_string()), "{out}");
    // All three tags pointed at one manifest: it is gone for all.
    let err = hoist_err(&["digest", &format!("{repo}:v1")]);
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");
    assert!(hoist_ok(&["copy", "--quiet", &oci, &format!("{repo}:v1")]).is_empty());
}
