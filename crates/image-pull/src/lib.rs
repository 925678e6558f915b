//! Pulls images into the layer cache from wherever they are.
//!
//! A [`Puller`] holds an open [`layer_cache::Cache`] and decides where an
//! image comes from:
//!
//! - a digest the cache holds complete is answered from disk, with no
//!   registry asked and no HTTP client even built (loading TLS roots costs
//!   milliseconds);
//! - a registry reference is pulled through a [`registry_failover::Failover`]
//!   over the image's own registry first, then each mirror, the same
//!   repository path on each — one failover per primary registry, kept for
//!   the puller's life so that circuit breakers, tag pins and metrics
//!   outlive a single pull;
//! - an OCI layout directory (`oci:DIR[:TAG]`) is read directly.
//!
//! `hoist run`, `hoist invoke` and the worker all pull through it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use image_pull::{PullConfig, Puller};
//! use layer_cache::{Cache, CacheConfig};
//! let cache = Cache::open(CacheConfig::new("/var/cache/hoist/layers")).await?;
//! let mut config = PullConfig::default();
//! config.mirrors = vec!["mirror.example:5000".into()];
//! let puller = Puller::new(cache, registry_client::Client::builder(), config);
//! let image = puller.pull(&"registry.example/fn/hello:v1".parse()?).await?;
//! println!("{} layers at {:?}", image.layers.len(), image.lower_dirs());
//! # Ok(()) }
//! ```
//!
//! Cancel safety: as [`layer_cache::Cache::pull`]'s.

use std::collections::HashMap;
use std::sync::Mutex;

use layer_cache::{Cache, CachedImage};
use oci_model::{Endpoint, Layout};
use registry_client::ClientBuilder;
use registry_failover::{Failover, FailoverConfig};

/// Where images may come from besides their own registry, and how long a
/// registry may take.
///
/// ```
/// let config = image_pull::PullConfig::default();
/// assert!(config.mirrors.is_empty());
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PullConfig {
    /// Registries tried in order after an image's own, with its
    /// repository path.
    pub mirrors: Vec<String>,
    /// Timeouts, breakers and rounds of each failover.
    pub failover: FailoverConfig,
}

/// Pulls images into a cache; see the crate documentation. Cheap to
/// share by reference; every method takes `&self`.
pub struct Puller {
    cache: Cache,
    builder: ClientBuilder,
    config: PullConfig,
    /// One failover per primary registry, made at its first pull.
    failovers: Mutex<HashMap<String, Failover>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("cache", &self.cache)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Everything that can go wrong in a pull.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Mirrors were given for an image that is not in a registry.
    #[error("mirrors apply to registry images, not to {image}")]
    MirrorsForLayout {
        /// The image.
        image: String,
    },
    /// The registry list could not be made (a bad mirror name).
    #[error(transparent)]
    Failover(#[from] registry_failover::Error),
    /// A layout that cannot be read, a reference that does not parse.
    #[error(transparent)]
    Model(#[from] oci_model::Error),
    /// The cache failed, or the source it pulled from did.
    #[error("pull {image}: {source}")]
    Cache {
        /// The image.
        image: String,
        /// The cache's error (naming the registry and request).
        source: layer_cache::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Puller {
    /// A puller into `cache`, building registry clients from `builder`
    /// (its credentials and plain-HTTP hosts) when a registry is first
    /// needed.
    pub fn new(cache: Cache, builder: ClientBuilder, config: PullConfig) -> Self {
        Self {
            cache,
            builder,
            config,
            failovers: Mutex::default(),
        }
    }

    /// The cache images are pulled into.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Pulls `image` and returns it pinned in the cache.
    pub async fn pull(&self, image: &Endpoint) -> Result<CachedImage> {
        let failed = |source| Error::Cache {
            image: image.to_string(),
            source,
        };
        match image {
            Endpoint::Registry(reference) => {
                if reference.digest().is_some()
                    && let Some(found) = self.cache.get(reference).await.map_err(failed)?
                {
                    return Ok(found);
                }
                let failover = self.failover(reference.registry())?;
                self.cache.pull(reference, &failover).await.map_err(failed)
            }
            Endpoint::Layout { dir, tag } => {
                if !self.config.mirrors.is_empty() {
                    return Err(Error::MirrorsForLayout {
                        image: image.to_string(),
                    });
                }
                let layout = Layout::open(dir)?;
                let reference = layout.reference(tag.as_deref())?;
                self.cache.pull(&reference, &layout).await.map_err(failed)
            }
        }
    }

    /// Every failover made so far (one per primary registry), for their
    /// metrics.
    pub fn failovers(&self) -> Vec<Failover> {
        let failovers = self.failovers.lock().unwrap_or_else(|e| e.into_inner());
        failovers.values().cloned().collect()
    }

    /// The failover whose primary is `registry`, made on first use.
    pub fn failover(&self, registry: &str) -> Result<Failover> {
        let mut failovers = self.failovers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = failovers.get(registry) {
            return Ok(f.clone());
        }
        let mut registries = vec![registry.to_owned()];
        registries.extend(self.config.mirrors.iter().cloned());
        let failover = Failover::from_client_builder(
            self.builder.clone(),
            registries,
            self.config.failover.clone(),
        )?;
        failovers.insert(registry.to_owned(), failover.clone());
        Ok(failover)
    }
}
