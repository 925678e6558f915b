//! Running an image with other tools only — skopeo, umoci and runc — to
//! prove an image works without any of hoist's code on the path.

use std::path::Path;
use std::process::Output;

use tempfile::TempDir;

/// What a peer run of a function image left behind.
pub struct PeerRun {
    /// runc's exit status and output.
    pub output: Output,
    /// `/io/output.json`, if the runner wrote it.
    pub result: Option<serde_json::Value>,
    _dir: TempDir,
}

/// `skopeo copy` of `image` (a registry reference) to a layout, `umoci
/// unpack` into a bundle, then `runc run` of the image's own command as
/// the image's user, read-only root, no network, with `/io` bind-mounted
/// and holding `inputs`.
pub async fn run_function(image: &str, inputs: &serde_json::Value) -> PeerRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().join("layout");
    let bundle = dir.path().join("bundle");
    testkit::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:run", layout.display()),
    ])
    .await
    .expect("skopeo copy");
    testkit::umoci(&[
        "unpack",
        "--image",
        &format!("{}:run", layout.display()),
        &bundle.display().to_string(),
    ])
    .await
    .expect("umoci unpack");

    let io = dir.path().join("io");
    std::fs::create_dir(&io).unwrap();
    std::fs::write(io.join("inputs.json"), inputs.to_string()).unwrap();
    // The function runs as uid 1000 and writes its output next to the inputs.
    chown_1000(&io);

    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["root"]["readonly"] = true.into();
    config["process"]["terminal"] = false.into();
    config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(serde_json::json!({
            "destination": "/io", "type": "bind",
            "source": io.display().to_string(), "options": ["rbind", "rw"]
        }));
    assert_eq!(
        config["process"]["user"]["uid"], 1000,
        "the image runs as uid 1000"
    );
    std::fs::write(&config_path, config.to_string()).unwrap();

    let id = format!(
        "hoist-peer-{}-{}",
        std::process::id(),
        dir.path().file_name().unwrap().to_string_lossy()
    );
    let output = tokio::process::Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run runc");
    let result = std::fs::read(io.join("output.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("output.json is JSON"));
    PeerRun {
        output,
        result,
        _dir: dir,
    }
}

fn chown_1000(path: &Path) {
    let status = std::process::Command::new("chown")
        .args(["1000:1000"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success());
}

/// A function directory with `user_function.py` and, if given,
/// `requirements.txt`.
pub fn function_dir(code: &str, requirements: Option<&str>) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("user_function.py"), code).unwrap();
    if let Some(r) = requirements {
        std::fs::write(dir.path().join("requirements.txt"), r).unwrap();
    }
    dir
}
