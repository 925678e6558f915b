//! What `hoist-api`, `hoist-worker` and `hoist serve` share: the seeds'
//! function platform, daemonless.
//!
//! Users POST a function (code and requirements) to the [`api`]; it is
//! validated, recorded with the `jobs` crate and queued as a build job. A
//! [`worker`] takes the job, builds the image with `oci-build`, pushes it
//! with `oci-push` (to a registry, or to an OCI layout on the embedded
//! defaults) and records it. An invocation is queued as a task; a worker
//! pulls the image through the layer cache with failover (`image-pull`),
//! runs the handler in the sandbox (`function-run`), stores the output and
//! logs in the object store ([`Objects`]) and records the result. Nothing
//! is acknowledged before its result is stored, so a worker killed
//! mid-task loses nothing.
//!
//! The binaries are wiring: a Rust program can embed the same pieces.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let jobs = jobs::Jobs::open(jobs::JobsConfig::new("sqlite:///var/lib/hoist/hoist.db", "database")).await?;
//! let objects = service::Objects::open("file:///var/lib/hoist/objects")?;
//! let metrics = Arc::new(service::Metrics::default());
//! let api = service::api::Api::new(jobs, objects, metrics, service::api::ApiConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, api.router()).await?;
//! # Ok(()) }
//! ```

pub mod api;
mod metrics;
mod objects;
mod results;
pub mod schedule;
pub mod worker;

use std::path::PathBuf;

pub use metrics::Metrics;
pub use objects::Objects;
pub use results::ResultCache;

/// Where built images go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageTarget {
    /// `HOST/NAMESPACE` of a registry: images are pushed as
    /// `HOST/NAMESPACE/functions/user-{user}-func-{function}:v{version}-{sha8}`.
    Registry {
        /// The registry host (with port).
        host: String,
        /// The namespace under it.
        namespace: String,
    },
    /// An OCI image layout directory (no registry server needed).
    Layout(PathBuf),
}

impl std::str::FromStr for ImageTarget {
    type Err = Error;

    /// `HOST/NAMESPACE` or `oci:DIR`.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(dir) = s.strip_prefix("oci:") {
            if dir.is_empty() {
                return Err(Error::Config {
                    what: "image target",
                    reason: "`oci:` needs a directory".into(),
                });
            }
            return Ok(Self::Layout(PathBuf::from(dir)));
        }
        match s.split_once('/') {
            Some((host, namespace)) if !host.is_empty() && !namespace.is_empty() => {
                Ok(Self::Registry {
                    host: host.to_owned(),
                    namespace: namespace.trim_end_matches('/').to_owned(),
                })
            }
            _ => Err(Error::Config {
                what: "image target",
                reason: format!("`{s}` is neither HOST/NAMESPACE nor oci:DIR"),
            }),
        }
    }
}

impl std::fmt::Display for ImageTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Registry { host, namespace } => write!(f, "{host}/{namespace}"),
            Self::Layout(dir) => write!(f, "oci:{}", dir.display()),
        }
    }
}

/// Everything that can go wrong in the service's own machinery (an API
/// request's errors are [`api::ApiError`]s; a build's or a task's end up
/// in their records).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting that cannot be used.
    #[error("{what}: {reason}")]
    Config {
        /// Which setting.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The records or the queue failed.
    #[error(transparent)]
    Jobs(#[from] jobs::Error),
    /// The object store failed.
    #[error("object {key}: {reason}")]
    Objects {
        /// The object's key.
        key: String,
        /// The store's message.
        reason: String,
    },
    /// Something read was over its limit.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A request body could not be read to its end.
    #[error("the request body: {0}")]
    Body(String),
    /// The result cache's Redis failed.
    #[error("result cache: {0}")]
    ResultCache(String),
    /// Local file I/O.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The sandbox could not be set up.
    #[error(transparent)]
    Sandbox(#[from] sandbox_run::Error),
    /// The layer cache could not be opened.
    #[error(transparent)]
    Cache(#[from] layer_cache::Error),
    /// The image builder could not be set up.
    #[error(transparent)]
    Build(#[from] oci_build::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Object keys, in one place.
pub(crate) mod keys {
    use uuid::Uuid;

    /// A function's code.
    pub fn code(function: Uuid) -> String {
        format!("functions/{function}/user_function.py")
    }

    /// A task's inputs, as the API received them.
    pub fn inputs(task: Uuid) -> String {
        format!("tasks/{task}/inputs.json")
    }

    /// A task's output (or error) JSON.
    pub fn output(task: Uuid) -> String {
        format!("tasks/{task}/output.json")
    }

    /// A task's captured standard output.
    pub fn stdout(task: Uuid) -> String {
        format!("tasks/{task}/stdout.log")
    }

    /// A task's captured standard error.
    pub fn stderr(task: Uuid) -> String {
        format!("tasks/{task}/stderr.log")
    }

    /// An uploaded artifact's bytes.
    pub fn artifact(artifact: Uuid) -> String {
        format!("artifacts/{artifact}/data")
    }

    /// An uploaded artifact's record (name, size, digest, owner), written
    /// after its bytes: an artifact without one does not exist.
    pub fn artifact_record(artifact: Uuid) -> String {
        format!("artifacts/{artifact}/artifact.json")
    }

    /// A release build's Dockerfile.
    pub fn dockerfile(build: Uuid) -> String {
        format!("releases/{build}/Dockerfile")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_targets_parse() {
        assert_eq!(
            "127.0.0.1:5000/acme".parse::<ImageTarget>().unwrap(),
            ImageTarget::Registry {
                host: "127.0.0.1:5000".into(),
                namespace: "acme".into()
            }
        );
        assert_eq!(
            "oci:/var/lib/hoist/images".parse::<ImageTarget>().unwrap(),
            ImageTarget::Layout("/var/lib/hoist/images".into())
        );
        for bad in ["", "oci:", "host", "/ns"] {
            assert!(bad.parse::<ImageTarget>().is_err(), "{bad}");
        }
    }
}
