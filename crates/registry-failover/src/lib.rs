//! Pulls through an ordered list of registries — a primary, then
//! secondaries — with per-registry timeouts, a circuit breaker per
//! registry, digest pinning, resumable blob downloads and metrics.
//!
//! Moving parts:
//! - [`Failover`] resolves manifests ([`Failover::resolve`]) and streams
//!   blobs ([`Failover::blob`]), and implements [`oci_model::Source`] so
//!   a worker's layer cache (or a copy) pulls through it. Every byte is verified by
//!   `registry-client` against the digest asked for; a registry serving
//!   other content fails and the next one is asked.
//! - [`FailoverConfig`] holds the timeouts (connect, first byte, whole
//!   blob), the breaker's threshold and cool-down, and the retry rounds.
//! - [`MetricsSnapshot`] is what [`Failover::metrics`] returns: pulls,
//!   errors by kind, failovers and durations per registry, also in the
//!   Prometheus text format ([`MetricsSnapshot::to_prometheus`]).
//! - [`Failover::mirror`] copies an image from the primary to each
//!   secondary, so the secondaries hold what workers may need.
//!
//! Which failures count against a registry's breaker is decided from
//! `registry_client::Error`: connection errors, timeouts, 5xx answers and
//! content that does not match its digest do; 4xx answers (a secondary
//! that lacks an image answers 404) only move on to the next registry; an
//! answer whose [`registry_client::Action`] is `GiveUp` (a malformed
//! request) ends the pull at once with [`Error::Refused`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), registry_failover::Error> {
//! use futures_util::StreamExt as _;
//! use registry_failover::{Failover, FailoverConfig};
//! let failover = Failover::from_client_builder(
//!     registry_client::Client::builder(),
//!     ["127.0.0.1:5000", "127.0.0.1:5001"],
//!     FailoverConfig::default(),
//! )?;
//! let r = "127.0.0.1:5000/functions/fn:v1".parse().unwrap();
//! let (pinned, manifest) = failover.resolve(&r).await?;
//! for layer in manifest.layers() {
//!     let mut blob = failover.blob(&pinned, layer).await?;
//!     while let Some(chunk) = blob.next().await {
//!         let _bytes = chunk?;
//!     }
//! }
//! # Ok(()) }
//! ```

mod breaker;
mod config;
mod error;
mod failover;
mod metrics;

pub use breaker::BreakerState;
pub use config::FailoverConfig;
pub use error::{Error, ErrorKind, RegistryFailure};
pub use failover::Failover;
pub use metrics::{
    DURATION_BUCKETS, FailoverCount, Histogram, MetricsSnapshot, PullKind, RegistryMetrics,
};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
