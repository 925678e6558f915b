//! The new image's config and manifest, serialised from typed structures
//! (fields in declaration order, maps sorted) so their bytes depend only
//! on the build's inputs.

use std::collections::BTreeMap;

use oci_model::media_type::{self, Family};
use oci_model::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use crate::base::{BaseConfig, History, RootFs};

/// Environment variables the image sets, replacing the base's.
pub(crate) const ENV: &[(&str, &str)] = &[
    ("PYTHONPATH", "/opt/hoist/site-packages:/opt/hoist/function"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("PYTHONUNBUFFERED", "1"),
    ("HOME", "/tmp"),
];
/// The runner's path in the image.
pub(crate) const RUNNER: &str = "/opt/hoist/runner.py";
/// The function's directory in the image.
pub(crate) const FUNCTION_DIR: &str = "/opt/hoist/function";
/// The user functions run as.
pub(crate) const USER: &str = "1000:1000";

#[derive(Serialize)]
struct Config<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'a str,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    config: RunConfig<'a>,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig<'a> {
    user: &'a str,
    env: Vec<String>,
    cmd: Vec<&'a str>,
    working_dir: &'a str,
    labels: &'a BTreeMap<String, String>,
}

/// What the config adds to the base.
pub(crate) struct ConfigInput<'a> {
    pub(crate) base: &'a BaseConfig,
    pub(crate) base_diff_ids: &'a [Digest],
    pub(crate) created: &'a str,
    pub(crate) interpreter: &'a str,
    pub(crate) labels: &'a BTreeMap<String, String>,
    /// Our layers' diff-ids with their history line.
    pub(crate) layers: Vec<(Digest, String)>,
}

/// The config JSON bytes.
pub(crate) fn config_bytes(input: &ConfigInput<'_>) -> Vec<u8> {
    let mut env: Vec<String> = input
        .base
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            let key = e.split('=').next().unwrap_or("");
            !ENV.iter().any(|(k, _)| *k == key)
        })
        .collect();
    env.extend(ENV.iter().map(|(k, v)| format!("{k}={v}")));
    let mut diff_ids = input.base_diff_ids.to_vec();
    let mut history = input.base.history.clone();
    for (diff_id, line) in &input.layers {
        diff_ids.push(diff_id.clone());
        history.push(History {
            created: Some(input.created.to_owned()),
            created_by: Some(line.clone()),
            ..History::default()
        });
    }
    let config = Config {
        created: input.created,
        architecture: &input.base.architecture,
        os: &input.base.os,
        os_version: input.base.os_version.as_deref(),
        variant: input.base.variant.as_deref(),
        config: RunConfig {
            user: USER,
            env,
            cmd: vec![input.interpreter, RUNNER],
            working_dir: FUNCTION_DIR,
            labels: input.labels,
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        history,
    };
    serde_json::to_vec(&config).expect("a config serializes")
}

/// A layer descriptor as a manifest lists it; base layers keep their
/// `urls` and `annotations`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LayerDesc {
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct BaseLayers {
    #[serde(default)]
    layers: Vec<LayerDesc>,
}

/// The layer descriptors of a base manifest, as written there.
pub(crate) fn base_layers(manifest_bytes: &[u8]) -> Vec<LayerDesc> {
    serde_json::from_slice::<BaseLayers>(manifest_bytes)
        .map(|b| b.layers)
        .unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: LayerDesc,
    layers: Vec<LayerDesc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a BTreeMap<String, String>>,
}

/// Media types for the family of the base manifest: a Docker base gives a
/// Docker schema 2 image (Docker layer and config types, no annotations,
/// which that schema does not define), so the image stays in one family.
pub(crate) struct Types {
    pub(crate) manifest: &'static str,
    pub(crate) config: &'static str,
    pub(crate) layer: &'static str,
}

pub(crate) fn types(family: Family) -> Types {
    match family {
        Family::Oci => Types {
            manifest: media_type::OCI_MANIFEST,
            config: media_type::OCI_CONFIG,
            layer: media_type::OCI_LAYER_GZIP,
        },
        Family::Docker => Types {
            manifest: media_type::DOCKER_MANIFEST,
            config: media_type::DOCKER_CONFIG,
            layer: media_type::DOCKER_LAYER_GZIP,
        },
    }
}

/// The manifest JSON bytes.
pub(crate) fn manifest_bytes(
    family: Family,
    config: &Descriptor,
    layers: Vec<LayerDesc>,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let t = types(family);
    let m = ManifestOut {
        schema_version: 2,
        media_type: t.manifest,
        config: LayerDesc {
            media_type: t.config.to_owned(),
            digest: config.digest.clone(),
            size: config.size,
            urls: None,
            annotations: None,
        },
        layers,
        annotations: (family == Family::Oci).then_some(annotations),
    };
    serde_json::to_vec(&m).expect("a manifest serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_replaces_env_and_appends_layers() {
        let base: BaseConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","HOME=/root"],"Entrypoint":["/bin/sh"]},
               "rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"base"}]}"#,
        )
        .unwrap();
        let labels = BTreeMap::from([
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ]);
        let d = Digest::of(b"layer");
        let bytes = config_bytes(&ConfigInput {
            base: &base,
            base_diff_ids: &[],
            created: "1970-01-01T00:00:00Z",
            interpreter: "/usr/bin/python3.11",
            labels: &labels,
            layers: vec![(d.clone(), "code".into())],
        });
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let env: Vec<&str> = v["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(env.contains(&"PATH=/usr/bin") && env.contains(&"HOME=/tmp"));
        assert!(!env.contains(&"HOME=/root"));
        assert!(v["config"].get("Entrypoint").is_none());
        assert_eq!(v["config"]["User"], "1000:1000");
        assert_eq!(v["config"]["Cmd"][1], RUNNER);
        assert_eq!(v["rootfs"]["diff_ids"][0], d.as_str());
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
    }
}
