//! Test support for hoist's integration tests: real registries on loopback,
//! a Docker token server, a fault-injecting proxy and fixture images.
//!
//! Every piece is real: [`Registry`] runs the CNCF distribution registry
//! (`docker-registry`) in a temporary directory, [`TokenServer`] signs JWTs
//! that registry verifies, [`FaultProxy`] sits between a client and a
//! registry and breaks chosen requests, and [`write_image`] writes OCI image
//! layouts that skopeo and umoci read ([`push_layout`] seeds a registry
//! without them). Each value cleans up after itself on drop, so tests stay
//! independent and can run in parallel.
//! [`python_base`] and [`busybox_base`] build real Debian-based images
//! once per machine, without an image registry.
//!
//! For the services: [`Postgres`] (a throwaway cluster made with `initdb`,
//! run with `pg_ctl` as an unprivileged user when the tests run as root),
//! [`Redis`] (`redis-server`) and [`S3`] (SeaweedFS's `weed mini` with a
//! bucket and a key). Each runs under a small `sh` supervisor that stops
//! the server and removes its files when the value is dropped or when the
//! test process dies, so even [`Postgres::shared`], which lives as long as
//! the process, leaves nothing behind.
//!
//! The token server and the proxy run on a runtime of their own, so they
//! keep answering while a `#[tokio::test]` thread blocks on a CLI run.
//! Programs are found at `/usr/bin` or in `PATH`, or where
//! `HOIST_DOCKER_REGISTRY`, `HOIST_HTPASSWD`, `HOIST_SKOPEO`,
//! `HOIST_UMOCI`, `HOIST_PG_BIN` (a directory), `HOIST_REDIS_SERVER` and
//! `HOIST_WEED` say.
//!
//! ```no_run
//! use testkit::{Fault, FaultProxy, ImageSpec, Registry, Rule, skopeo, write_image};
//!
//! # async fn demo() -> testkit::Result<()> {
//! let registry = Registry::start().await?;
//! let dir = tempfile::tempdir()?;
//! let spec = ImageSpec { layers: vec![1 << 20], seed: 7, docker_media_types: false };
//! let image = write_image(dir.path(), "v1", &spec)?;
//! let src = format!("oci:{}:v1", dir.path().display());
//! let dst = format!("docker://{}/demo:v1", registry.host());
//! skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]).await?;
//!
//! // A client pointed at the proxy sees its first two blob fetches fail.
//! let proxy = FaultProxy::start(registry.addr()).await?;
//! proxy.add(Rule::new("/blobs/sha256:", Fault::Status(503)).times(2));
//! let url = format!("http://{}/v2/demo/blobs/{}", proxy.host(), image.layers[0].digest);
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

mod base;
mod fixture;
mod net;
mod postgres;
mod proxy;
mod push;
mod redis;
mod registry;
mod s3;
mod service;
mod token;

use std::path::PathBuf;

pub use base::{BaseImage, FORMAT_VERSION, busybox_base, push_base, python_base, stack_layers};
pub use fixture::{
    FixtureImage, FixtureIndex, ImageSpec, RandomReader, skopeo, umoci, write_image, write_index,
    write_platform_image,
};
pub use postgres::Postgres;
pub use proxy::{Fault, FaultProxy, LoggedRequest, Rule};
pub use push::push_layout;
pub use redis::Redis;
pub use registry::{Registry, RegistryAuth};
pub use s3::S3;
pub use token::{TokenReply, TokenServer};

/// Everything that can go wrong while setting up a fixture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program the fixtures run is not installed.
    #[error("`{program}` not found ({detail}): run scripts/install-test-deps")]
    MissingProgram {
        /// The program looked for.
        program: String,
        /// Where it was looked for.
        detail: String,
    },
    /// The registry process exited or did not answer `GET /v2/` in time.
    #[error(
        "docker-registry on {addr} did not start: {reason}\n--- registry log tail ---\n{log_tail}"
    )]
    RegistryStart {
        /// The address it was told to listen on.
        addr: std::net::SocketAddr,
        /// Why it is considered failed.
        reason: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A server process (PostgreSQL, Redis, SeaweedFS) did not start.
    #[error("{service} did not start: {reason}\n--- log tail ---\n{log_tail}")]
    ServiceStart {
        /// Which server.
        service: String,
        /// Why it is considered failed.
        reason: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// An external command exited with a failure.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// [`push_layout`] got an answer it did not expect.
    #[error("push: {0}")]
    Push(String),
    /// Key or certificate generation, or signing, failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// Writing a fixture image into a layout failed.
    #[error(transparent)]
    Layout(#[from] oci_model::Error),
    /// Writing a base image's layer failed.
    #[error(transparent)]
    Layer(#[from] oci_layer::Error),
    /// A base image could not be assembled from its packages.
    #[error("base image {image}: {reason}")]
    BaseImage {
        /// The image or package concerned.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result of testkit operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done (often a path) to an I/O error.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Io {
            context: "I/O".into(),
            source,
        }
    }
}

/// The path of a program: `env` when set, else the first of `candidates`
/// that exists, else a lookup in `PATH`.
pub(crate) fn find_program(env: &str, candidates: &[&str], name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let in_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .collect()
        })
        .unwrap_or_default();
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(in_path)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingProgram {
            program: name.into(),
            detail: format!("looked at ${env}, {candidates:?} and PATH"),
        })
}
