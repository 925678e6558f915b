//! Registry operations on top of `oci-push` and `registry-client`:
//!
//! - [`mirror`]: copy a list of images (the most used ones, from the
//!   service's usage records) from a primary registry to a secondary one,
//!   digests unchanged, skipping what the secondary already has with one
//!   `HEAD`, carrying on past failures, with a [`MirrorReport`].
//! - [`gc`]: retention by [`Policy`] — function images kept a number of
//!   days after their last use and at most the newest N versions, images
//!   of deleted functions removed, `latest` tags expired, base images
//!   never deleted. [`gc::plan`] decides (pure), [`gc::apply`] deletes
//!   exactly the plan, so a dry run lists what the real run deletes.
//! - Immutable base images: [`IMMUTABLE_ANNOTATION`] on a manifest, and
//!   [`check_overwrite`] that refuses to replace such an image under its
//!   tag.
//! - [`Daily`]: the pure part of the daily schedules (which run is due).
//!
//! The crate reads no database: usage and function records come in as
//! plain values, so the binaries (and tests) decide where they live.
//!
//! ```no_run
//! # async fn demo() -> Result<(), registry_ops::Error> {
//! let client = registry_client::Client::builder().build()?;
//! let mirror = registry_ops::Mirror::new(client, "127.0.0.1:5000", "127.0.0.1:5001")?;
//! let images = registry_ops::parse_list("acme/app:v1\n# comment\nacme/api:v2\n")?;
//! let report = mirror.run(&images, false).await;
//! print!("{}", report.text());
//! # Ok(()) }
//! ```

pub mod gc;
mod immutable;
pub mod mirror;
mod policy;
mod schedule;

pub use gc::{GcReport, Plan};
pub use immutable::{IMMUTABLE_ANNOTATION, check_overwrite, is_immutable};
pub use mirror::{Mirror, MirrorReport, parse_list};
pub use policy::{MAX_POLICY_BYTES, Policy};
pub use schedule::{Daily, Slot, due as schedule_due};

use oci_model::Digest;

/// Everything that can go wrong in these operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The destination tag holds an immutable image and the new one
    /// differs.
    #[error(
        "{reference} holds an immutable image ({existing}); replacing it with {new} needs --force"
    )]
    Immutable {
        /// The destination.
        reference: String,
        /// What it holds.
        existing: Digest,
        /// What would have replaced it.
        new: Digest,
    },
    /// A line of an image list is not a reference.
    #[error("image list line {line}: {reason}")]
    ListLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An image list longer than [`mirror::MAX_LIST`].
    #[error("image list has more than {limit} images")]
    ListTooLong {
        /// The limit.
        limit: usize,
    },
    /// The retention policy is not valid.
    #[error("retention policy: {0}")]
    Policy(String),
    /// A schedule time that is not `HH:MM`.
    #[error("schedule time `{0}`: expected HH:MM (UTC, 00:00 to 23:59)")]
    ScheduleTime(String),
    /// A registry host that cannot name a registry.
    #[error("registry `{host}`: {reason}")]
    Host {
        /// The host given.
        host: String,
        /// Why it is refused.
        reason: String,
    },
    /// An image's manifest or config is not what an image's should be.
    #[error("{what}: {reason}")]
    Image {
        /// Which document.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
    /// A copy failed.
    #[error(transparent)]
    Copy(#[from] oci_push::Error),
    /// A reference problem.
    #[error(transparent)]
    Model(#[from] oci_model::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error's message with its sources, on one line (reports show it).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `HOST[:PORT]` checked as a registry host, through a reference on it.
pub(crate) fn registry_host(host: &str) -> Result<String> {
    let bad = |reason: String| Error::Host {
        host: host.to_owned(),
        reason,
    };
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(bad("expected HOST[:PORT]".into()));
    }
    let r =
        oci_model::Reference::parse(&format!("{host}/probe")).map_err(|e| bad(e.to_string()))?;
    Ok(r.registry().to_owned())
}
