//! The OCI distribution protocol over HTTP, as crane, skopeo and regclient
//! speak it: manifests (OCI and Docker schema 2, indexes), blobs (HEAD,
//! verified GET with `Range` resume, monolithic and chunked upload,
//! cross-repository mount), tags and deletion.
//!
//! Moving parts:
//! - [`Client`] holds one connection pool and the auth state: anonymous,
//!   basic, or the bearer-token challenge flow with per-repository scopes,
//!   tokens reused until shortly before expiry. Credentials come from a
//!   [`CredentialStore`] (explicit, or Docker's `config.json` with
//!   credential helpers) and never appear in logs or errors.
//! - Every byte read is verified: [`VerifiedStream`] refuses content longer
//!   than its descriptor and checks the digest before the last bytes are
//!   handed on; manifests are checked against the digest asked for and the
//!   registry's `Docker-Content-Digest`, and capped at 4 MiB.
//! - Errors are one [`Error`] enum whose [`Error::action`] says whether to
//!   retry, try another registry, or give up; [`RetryPolicy`] retries with
//!   backoff, jitter and `Retry-After`.
//! - Plain HTTP is used for loopback hosts and hosts named by the caller;
//!   everything else is HTTPS.
//!
//! Cancel safety: dropping any future of this crate aborts its requests;
//! an upload dropped midway leaves an unfinished upload session on the
//! registry (which the registry expires), never a blob under a digest.
//!
//! ```no_run
//! # async fn demo() -> Result<(), registry_client::Error> {
//! use registry_client::{Client, CredentialStore};
//! let client = Client::builder()
//!     .credentials(CredentialStore::from_docker_config(None)?)
//!     .build()?;
//! let r = "127.0.0.1:5000/team/app:v1".parse().unwrap();
//! for tag in client.list_tags(&r).await? {
//!     println!("{tag}");
//! }
//! # Ok(()) }
//! ```

mod auth;
mod blobs;
mod catalog;
mod client;
mod credentials;
mod error;
mod manifests;
mod referrers;
mod retry;
mod source;
mod upload;

pub use blobs::{ByteStream, Checkpoint, CheckpointHandle, VerifiedStream};
pub use catalog::CatalogPage;
pub use client::{Client, ClientBuilder};
pub use credentials::{CredentialStore, Credentials};
pub use error::{Action, Error, ErrorCode};
pub use referrers::{Referrers, ReferrersVia};
pub use retry::RetryPolicy;
pub use upload::{BlobSource, PushOutcome};

/// The parsers of untrusted registry input, for the fuzz targets in
/// `fuzz/`. Not a stable API.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::auth::{Challenge, MAX_TOKEN_LIFETIME, parse_challenge, parse_token_reply};
    pub use crate::error::parse_error_body;
    pub use crate::manifests::next_tags_page;
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
