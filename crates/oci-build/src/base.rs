//! Reading the base image: manifest (platform picked from an index),
//! config, and layers streamed into the build store and scanned for
//! [`BaseFacts`](crate::BaseFacts).
//!
//! The base is resolved with [`oci_model::resolve`] through [`StoreFirst`]:
//! manifests by digest and blobs the build store already holds are read
//! from it, so a registry base named by tag costs one manifest request.
//! The facts are cached in `bases/<manifest hex>.json`; on a hit, and when
//! the store already holds the layers, a rebuild reads no layer at all.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use oci_layer::Compression;
use oci_model::{
    BlobStream, Descriptor, Digest, Image, Layout, Manifest, Platform, Reference, Source,
    SourceImage,
};
use oci_push::Endpoint;
use registry_client::Client;
use serde::{Deserialize, Serialize};

use crate::facts::{BaseFacts, Libc, Scanner};
use crate::{Error, Result, blocking, io_at};

/// Version of the facts cache entries.
const FACTS_FORMAT: &str = "hoist-base-facts-v2";

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
    /// Whether the scan found the interpreter (rather than its path being
    /// assumed from the Python version given).
    pub(crate) interpreter_found: bool,
}

#[derive(Serialize, Deserialize)]
struct FactsEntry {
    format: String,
    python: Option<(String, String)>,
    libc: Option<Libc>,
    /// Whether the found interpreter's standard library ships bytecode.
    stdlib_bytecode: bool,
}

/// A source read through the build store: what the store holds (a
/// manifest named by digest, a blob) comes from it; the rest from the
/// source.
struct StoreFirst<'a, S> {
    store: &'a Layout,
    source: S,
}

impl<S: Source> Source for StoreFirst<'_, S> {
    type Error = oci_model::Error;

    async fn manifest(&self, reference: &Reference) -> oci_model::Result<Manifest> {
        if let Some(digest) = reference.digest()
            && self.store.has_blob(digest, None)
        {
            return self.store.manifest(reference).await;
        }
        let m = self
            .source
            .manifest(reference)
            .await
            .map_err(|e| oci_model::Error::source(format!("manifest of {reference}"), e))?;
        self.store.write_blob(m.bytes())?;
        Ok(m)
    }

    async fn blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> oci_model::Result<BlobStream<oci_model::Error>> {
        if self.store.has_blob(&desc.digest, Some(desc.size)) {
            return self.store.blob(reference, desc).await;
        }
        let what = format!("blob {} of {reference}", desc.digest);
        let stream = self
            .source
            .blob(reference, desc)
            .await
            .map_err(|e| oci_model::Error::source(what.clone(), e))?;
        Ok(Box::pin(stream.map(move |item| {
            item.map_err(|e| oci_model::Error::source(what.clone(), e))
        })))
    }

    fn verifies_blobs(&self) -> bool {
        // Blobs from the store are checked when they are read back.
        false
    }
}

/// Copies a blob of `image` into the store unless it is there; true if it
/// was. Bytes are hashed on the way and renamed into place only when they
/// match.
async fn blob_to_store<I: Image>(image: &I, store: &Layout, desc: &Descriptor) -> Result<bool>
where
    Error: From<I::Error>,
{
    if store.has_blob(&desc.digest, Some(desc.size)) {
        return Ok(true);
    }
    let mut stream = image.blob(desc).await?;
    let mut w = store.blob_writer()?;
    while let Some(chunk) = stream.next().await {
        w.write_all(&chunk?).map_err(io_at(store.root()))?;
    }
    if w.written() != desc.size {
        return Err(oci_model::Error::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: w.written(),
        }
        .into());
    }
    w.commit(Some(&desc.digest))?;
    Ok(false)
}

/// Resolves `endpoint` for `platform` and copies its manifest, config and
/// layers into `store`; returns the image and, for a registry image, its
/// reference pinned by digest (a source to mount its layers from).
pub(crate) async fn resolve_into_store(
    client: &Client,
    endpoint: &Endpoint,
    platform: &Platform,
    store: &Layout,
) -> Result<(SourceImage<Layout>, Option<Reference>)> {
    let (resolved, config, pinned) = match endpoint {
        Endpoint::Registry(r) => {
            let source = StoreFirst {
                store,
                source: client.clone(),
            };
            let image = oci_model::resolve(source, r, platform).await?;
            copy_layers(&image, store).await?;
            let pinned = image.reference().clone();
            let (resolved, config) = parts(&image);
            (resolved, config, Some(pinned))
        }
        Endpoint::Layout { dir, tag } => {
            let layout = Layout::open(dir)?;
            let r = layout.reference(tag.as_deref())?;
            let source = StoreFirst {
                store,
                source: layout,
            };
            let image = oci_model::resolve(source, &r, platform).await?;
            copy_layers(&image, store).await?;
            let (resolved, config) = parts(&image);
            (resolved, config, None)
        }
    };
    store.write_blob(&config)?;
    Ok((
        SourceImage::with_config(store.clone(), resolved, config)?,
        pinned,
    ))
}

/// What names `image` and its config bytes, to read it again elsewhere.
fn parts<S: Source>(image: &SourceImage<S>) -> (oci_model::Resolved, Vec<u8>) {
    let resolved = oci_model::Resolved {
        reference: image.reference().clone(),
        manifest: image.manifest().clone(),
        index: image.index().cloned(),
    };
    (resolved, image.config_bytes().to_vec())
}

/// Copies every layer of `image` into `store`.
async fn copy_layers<S: Source>(
    image: &SourceImage<StoreFirst<'_, S>>,
    store: &Layout,
) -> Result<()> {
    for desc in image.manifest().layers() {
        blob_to_store(image, store, desc).await?;
    }
    Ok(())
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
    let facts = Facts {
        endpoint,
        platform,
        store,
        cache_dir,
        python_override,
    };
    match endpoint {
        Endpoint::Registry(r) => {
            let source = StoreFirst {
                store,
                source: client.clone(),
            };
            let image = oci_model::resolve(source, r, platform).await?;
            let pinned = image.reference().clone();
            facts.learn(&image, Some(pinned)).await
        }
        Endpoint::Layout { dir, tag } => {
            let layout = Layout::open(dir)?;
            let r = layout.reference(tag.as_deref())?;
            let source = StoreFirst {
                store,
                source: layout,
            };
            facts
                .learn(&oci_model::resolve(source, &r, platform).await?, None)
                .await
        }
    }
}

/// What learning a base's facts needs besides the image.
struct Facts<'a> {
    endpoint: &'a Endpoint,
    platform: &'a Platform,
    store: &'a Layout,
    cache_dir: &'a Path,
    python_override: Option<&'a str>,
}

impl Facts<'_> {
    async fn learn<S: Source>(
        &self,
        image: &SourceImage<StoreFirst<'_, S>>,
        reference: Option<Reference>,
    ) -> Result<Base> {
        let Self {
            endpoint,
            platform,
            store,
            cache_dir,
            python_override,
        } = *self;
        let manifest = image.manifest().clone();
        let config_desc = image.config_descriptor().clone();
        if !store.has_blob(&config_desc.digest, Some(config_desc.size)) {
            store.write_blob(image.config_bytes())?;
        }
        let config: BaseConfig = serde_json::from_slice(image.config_bytes()).map_err(|e| {
            oci_model::Error::MalformedManifest {
                reason: format!("base config {}: {e}", config_desc.digest),
            }
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
            let had = blob_to_store(image, store, desc).await?;
            if let Some(s) = scanner.take() {
                let path = store.blob_path(&desc.digest);
                let compression =
                    Compression::from_media_type(&desc.media_type).ok_or_else(|| {
                        Error::UnsupportedLayer {
                            digest: desc.digest.clone(),
                            media_type: desc.media_type.clone(),
                        }
                    })?;
                scanner = Some(
                    blocking("scanning a base layer", move || {
                        scan_blob(s, &path, compression)
                    })
                    .await?,
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
                let scanner = scanner.unwrap_or_default();
                let (python, libc) = scanner.finish(hint.as_deref());
                let stdlib_bytecode = python
                    .as_ref()
                    .is_some_and(|(_, interpreter)| scanner.stdlib_bytecode(interpreter));
                let e = FactsEntry {
                    format: FACTS_FORMAT.into(),
                    python,
                    libc,
                    stdlib_bytecode,
                };
                crate::write_atomic(&facts_path, &serde_json::to_vec(&e).expect("serializable"))?;
                e
            }
        };
        let interpreter_found = entry.python.is_some();
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
                stdlib_bytecode: entry.stdlib_bytecode,
            },
            manifest,
            config,
            reference,
            name,
            layers,
            interpreter_found,
        })
    }
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
