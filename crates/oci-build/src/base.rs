//! Reading the base image: manifest (platform picked from an index),
//! config, and layers streamed into the build store and scanned for
//! [`BaseFacts`](crate::BaseFacts).
//!
//! The facts are cached in `bases/<manifest hex>.json`; on a hit, and when
//! the store already holds the layers, a rebuild reads no layer at all.
//! Manifests by digest and configs are read from the store when present,
//! so a registry base named by tag costs one manifest request.

use std::io::Write;
use std::path::Path;

use oci_layer::Compression;
use oci_model::media_type::ManifestKind;
use oci_model::{Descriptor, Digest, Layout, Manifest, Platform, Reference};
use oci_push::Endpoint;
use registry_client::{Checkpoint, Client};
use serde::{Deserialize, Serialize};

use crate::facts::{BaseFacts, Libc, Scanner};
use crate::{Error, Result, io_at};

/// The largest base config read.
const MAX_CONFIG: u64 = 8 << 20;
/// Version of the facts cache entries.
const FACTS_FORMAT: &str = "hoist-base-facts-v1";

/// The parts of a base config the build uses.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct BaseConfig {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
    #[serde(rename = "os.version", default)]
    pub(crate) os_version: Option<String>,
    #[serde(default)]
    pub(crate) config: Option<BaseRunConfig>,
    #[serde(default)]
    pub(crate) rootfs: Option<RootFs>,
    #[serde(default)]
    pub(crate) history: Vec<History>,
}

/// The `config` object of a base config.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct BaseRunConfig {
    #[serde(rename = "Env", default)]
    pub(crate) env: Option<Vec<String>>,
}

/// `rootfs`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) diff_ids: Vec<Digest>,
}

/// One `history` entry, kept as the base wrote it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) empty_layer: Option<bool>,
}

/// The base as the build uses it.
pub(crate) struct Base {
    /// The platform image manifest.
    pub(crate) manifest: Manifest,
    pub(crate) config: BaseConfig,
    pub(crate) facts: BaseFacts,
    /// For a registry base: the reference, pinned to the manifest digest.
    pub(crate) reference: Option<Reference>,
    /// How the base is named in labels: the reference as given (registry
    /// bases only; a layout path would make the image depend on the
    /// machine).
    pub(crate) name: Option<String>,
    /// Each layer and whether the store had it before this build.
    pub(crate) layers: Vec<(Descriptor, bool)>,
}

#[derive(Serialize, Deserialize)]
struct FactsEntry {
    format: String,
    python: Option<(String, String)>,
    libc: Option<Libc>,
}

enum Source<'a> {
    Registry(&'a Client, &'a Reference),
    Layout(Layout),
}

impl Source<'_> {
    async fn manifest_by_digest(&self, store: &Layout, desc: &Descriptor) -> Result<Manifest> {
        if store.has_blob(&desc.digest, Some(desc.size)) {
            let bytes = store.read_blob(&desc.digest, oci_model::MAX_MANIFEST_BYTES as u64)?;
            return Ok(Manifest::from_bytes(bytes, Some(&desc.media_type))?);
        }
        let m = match self {
            Self::Registry(client, r) => {
                client
                    .get_manifest(&r.with_digest(desc.digest.clone()))
                    .await?
            }
            Self::Layout(l) => {
                let bytes = l.read_blob(&desc.digest, oci_model::MAX_MANIFEST_BYTES as u64)?;
                Manifest::from_bytes(bytes, Some(&desc.media_type))?
            }
        };
        store.write_blob(m.bytes())?;
        Ok(m)
    }

    /// Copies a blob into the store unless it is there; true if it was.
    async fn blob_to_store(&self, store: &Layout, desc: &Descriptor) -> Result<bool> {
        if store.has_blob(&desc.digest, Some(desc.size)) {
            return Ok(true);
        }
        match self {
            Self::Registry(client, r) => {
                use futures_util::StreamExt;
                // The stream checks size and digest before its last bytes.
                let mut stream = client.get_blob(r, desc, Checkpoint::default()).await?;
                let mut w = store.verified_blob_writer()?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    w.write_all(&chunk).map_err(io_at(store.root()))?;
                }
                w.commit(Some(&desc.digest))?;
            }
            Self::Layout(l) => {
                let src = l.blob_path(&desc.digest);
                let store = store.clone();
                let digest = desc.digest.clone();
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let mut file =
                        std::fs::File::open(&src).map_err(|_| oci_model::Error::BlobNotFound {
                            path: src.clone(),
                            digest: digest.clone(),
                        })?;
                    let mut w = store.blob_writer()?;
                    std::io::copy(&mut file, &mut w).map_err(io_at(&src))?;
                    w.commit(Some(&digest))?;
                    Ok(())
                })
                .await
                .expect("copy does not panic")?;
            }
        }
        Ok(false)
    }
}

/// Reads the base, stores its layers and config, and learns its facts.
pub(crate) async fn load(
    client: &Client,
    endpoint: &Endpoint,
    platform: &Platform,
    store: &Layout,
    cache_dir: &Path,
    python_override: Option<&str>,
) -> Result<Base> {
    let (source, root) = match endpoint {
        Endpoint::Registry(r) => (Source::Registry(client, r), client.get_manifest(r).await?),
        Endpoint::Layout { dir, tag } => {
            let l = Layout::open(dir)?;
            let desc = l.resolve(tag.as_deref())?;
            let bytes = l.read_blob(&desc.digest, oci_model::MAX_MANIFEST_BYTES as u64)?;
            let m = Manifest::from_bytes(bytes, Some(&desc.media_type))?;
            (Source::Layout(l), m)
        }
    };
    let manifest = match root.kind() {
        ManifestKind::Image => root,
        ManifestKind::Index => {
            let desc = root.select_platform(platform)?.clone();
            source.manifest_by_digest(store, &desc).await?
        }
    };
    let config_desc = manifest
        .config()
        .cloned()
        .expect("an image manifest has a config");
    if config_desc.size > MAX_CONFIG {
        return Err(oci_model::Error::BlobTooLarge {
            digest: config_desc.digest,
            size: config_desc.size,
            limit: MAX_CONFIG,
        }
        .into());
    }
    source.blob_to_store(store, &config_desc).await?;
    let config_bytes = store.read_blob(&config_desc.digest, MAX_CONFIG)?;
    let config: BaseConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| oci_model::Error::MalformedManifest {
            reason: format!("base config {}: {e}", config_desc.digest),
        })?;
    let base_text = endpoint.to_string();
    let wanted = platform.to_string();
    let actual = Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    };
    if !platform.matches(&actual) {
        return Err(Error::PlatformMismatch {
            base: base_text,
            actual: actual.to_string(),
            wanted,
        });
    }
    let arch = match config.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => {
            return Err(Error::UnsupportedArchitecture {
                arch: other.to_owned(),
            });
        }
    };

    let facts_path = cache_dir
        .join("bases")
        .join(format!("{}.json", manifest.digest().hex()));
    let cached: Option<FactsEntry> = std::fs::read(&facts_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<FactsEntry>(&b).ok())
        .filter(|e| e.format == FACTS_FORMAT);
    let mut layers = Vec::with_capacity(manifest.layers().len());
    let mut scanner = cached.is_none().then(Scanner::default);
    for desc in manifest.layers() {
        let had = source.blob_to_store(store, desc).await?;
        if let Some(s) = scanner.take() {
            let path = store.blob_path(&desc.digest);
            let compression = Compression::from_media_type(&desc.media_type).ok_or_else(|| {
                Error::UnsupportedLayer {
                    digest: desc.digest.clone(),
                    media_type: desc.media_type.clone(),
                }
            })?;
            scanner = Some(
                tokio::task::spawn_blocking(move || scan_blob(s, &path, compression))
                    .await
                    .expect("scanning does not panic")?,
            );
        }
        layers.push((desc.clone(), had));
    }
    let hint = config
        .config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PYTHON_VERSION=")))
        .map(str::to_owned);
    let entry = match cached {
        Some(e) => e,
        None => {
            // Without a cache entry every layer went through the scanner.
            let (python, libc) = scanner.unwrap_or_default().finish(hint.as_deref());
            let e = FactsEntry {
                format: FACTS_FORMAT.into(),
                python,
                libc,
            };
            crate::write_atomic(&facts_path, &serde_json::to_vec(&e).expect("serializable"))?;
            e
        }
    };
    let (python_version, interpreter) = match (entry.python, python_override) {
        (Some(found), _) => found,
        (None, Some(v)) => {
            let v = python_x_y(v)?;
            // Images that build their own Python (and say so in
            // PYTHON_VERSION) install it in /usr/local.
            let dir = if hint.is_some() {
                "/usr/local/bin"
            } else {
                "/usr/bin"
            };
            let interpreter = format!("{dir}/python{v}");
            (v, interpreter)
        }
        (None, None) => return Err(Error::NoPython { base: base_text }),
    };
    let reference = match endpoint {
        Endpoint::Registry(r) => Some(r.with_digest(manifest.digest().clone())),
        Endpoint::Layout { .. } => None,
    };
    let name = match endpoint {
        Endpoint::Registry(r) => Some(match (r.tag(), r.digest()) {
            (Some(t), _) => format!("{}:{t}", r.name()),
            (None, Some(d)) => format!("{}@{d}", r.name()),
            (None, None) => r.name(),
        }),
        Endpoint::Layout { .. } => None,
    };
    Ok(Base {
        facts: BaseFacts {
            python_version,
            interpreter,
            arch: arch.to_owned(),
            libc: entry.libc,
        },
        manifest,
        config,
        reference,
        name,
        layers,
    })
}

/// `3.11.4` or `3.11` → `3.11`.
fn python_x_y(v: &str) -> Result<String> {
    let mut parts = v.trim().split('.');
    match (parts.next(), parts.next()) {
        (Some("3"), Some(minor))
            if !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(format!("3.{minor}"))
        }
        _ => Err(Error::InvalidPythonVersion {
            value: v.to_owned(),
        }),
    }
}

fn scan_blob(mut scanner: Scanner, path: &Path, compression: Compression) -> Result<Scanner> {
    let file = std::fs::File::open(path).map_err(io_at(path))?;
    let reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let tar = compression.decoder(reader).map_err(io_at(path))?;
    scanner
        .scan_tar(tar)
        .map_err(|e| oci_layer::Error::CorruptStream { source: e })?;
    Ok(scanner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_versions() {
        assert_eq!(python_x_y("3.11.4").unwrap(), "3.11");
        assert_eq!(python_x_y("3.12").unwrap(), "3.12");
        for bad in ["2.7", "3", "3.x", ""] {
            assert!(matches!(
                python_x_y(bad),
                Err(Error::InvalidPythonVersion { .. })
            ));
        }
    }
}
