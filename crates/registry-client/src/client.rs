//! The [`Client`]: one HTTP connection pool and auth state, shared by
//! every request; requests carry the right `Authorization` and go through
//! the challenge flow when the registry asks.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode, header};
use oci_model::Reference;

use crate::auth::{Authenticator, Challenge, parse_challenge};
use crate::credentials::CredentialStore;
use crate::error::{parse_error_body, parse_retry_after};
use crate::{Error, Result, RetryPolicy};

/// Largest error body read from a registry.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A registry client. Cheap to clone; clones share connections and tokens.
///
/// ```no_run
/// # async fn demo() -> Result<(), registry_client::Error> {
/// use registry_client::Client;
/// let client = Client::builder().build()?;
/// let r = "127.0.0.1:5000/team/app:v1".parse().unwrap();
/// let manifest = client.get_manifest(&r).await?;
/// println!("{} {}", manifest.digest(), manifest.media_type());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    auth: Authenticator,
    plain_http_hosts: Vec<String>,
    plain_http_all: bool,
    pub(crate) retry: RetryPolicy,
    pub(crate) chunk_size: Option<u64>,
}

/// Builds a [`Client`]. Cloning it lets one configuration make several
/// clients (each with its own timeouts).
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    credentials: CredentialStore,
    plain_http_hosts: Vec<String>,
    plain_http_all: bool,
    retry: RetryPolicy,
    chunk_size: Option<u64>,
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: String,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            credentials: CredentialStore::empty(),
            plain_http_hosts: Vec::new(),
            plain_http_all: false,
            retry: RetryPolicy::default(),
            chunk_size: None,
            // The seeds' per-registry timeout.
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            user_agent: concat!("hoist/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl ClientBuilder {
    /// Where credentials come from (default: none, anonymous).
    pub fn credentials(mut self, store: CredentialStore) -> Self {
        self.credentials = store;
        self
    }

    /// Talks plain HTTP to `host` (`host[:port]`). Loopback hosts always
    /// use plain HTTP, as docker does.
    pub fn plain_http_host(mut self, host: impl Into<String>) -> Self {
        self.plain_http_hosts.push(host.into().to_ascii_lowercase());
        self
    }

    /// Talks plain HTTP to every registry.
    pub fn plain_http_all(mut self, all: bool) -> Self {
        self.plain_http_all = all;
        self
    }

    /// The retry policy for requests and blob transfers.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Uploads blobs in chunks of this many bytes (PATCH with
    /// `Content-Range`) instead of one request; `None` (the default) is
    /// monolithic. Chunks are held in memory so that one can be resent.
    pub fn chunk_size(mut self, bytes: Option<u64>) -> Self {
        self.chunk_size = bytes.map(|b| b.max(1));
        self
    }

    /// Connection timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The longest wait for any read (first byte, or the next bytes of a
    /// body): a stalled registry fails after this.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(self.user_agent)
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Connection {
                registry: String::new(),
                what: "building the HTTP client".into(),
                reason: e.to_string(),
                timeout: false,
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                auth: Authenticator::new(self.credentials),
                plain_http_hosts: self.plain_http_hosts,
                plain_http_all: self.plain_http_all,
                retry: self.retry,
                chunk_size: self.chunk_size,
            }),
        })
    }
}

/// The permission a request needs on a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Pull,
    Push,
    Delete,
}

/// A token scope for one repository (and, for mounts, a second one).
pub(crate) fn scope(repository: &str, access: Access) -> String {
    let actions = match access {
        Access::Pull => "pull",
        Access::Push => "pull,push",
        Access::Delete => "delete",
    };
    format!("repository:{repository}:{actions}")
}

impl Client {
    /// A builder with defaults: anonymous, HTTPS except for loopback,
    /// monolithic uploads, 30 s timeouts, 5 attempts.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// `http` or `https` for a registry host.
    pub fn scheme(&self, host: &str) -> &'static str {
        let host = host.to_ascii_lowercase();
        if self.inner.plain_http_all
            || self.inner.plain_http_hosts.contains(&host)
            || is_loopback(&host)
        {
            "http"
        } else {
            "https"
        }
    }

    /// `scheme://host/v2/repository`.
    pub(crate) fn repo_url(&self, r: &Reference) -> String {
        let host = r.api_host();
        format!("{}://{host}/v2/{}", self.scheme(host), r.repository())
    }

    /// Sends a request built by `make`, authenticating as the registry
    /// asks. `make` may be called twice (before and after a challenge), so
    /// it must not consume a streaming body; callers that stream make sure
    /// the auth state is warm first.
    pub(crate) async fn send(
        &self,
        r: &Reference,
        scope: &str,
        what: &str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let registry = r.api_host();
        let cred_key = r.registry();
        for round in 0..2 {
            let auth = self
                .inner
                .auth
                .header(&self.inner.http, registry, cred_key, scope)
                .await?;
            let mut req = make(&self.inner.http);
            if let Some(a) = &auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let response = req
                .send()
                .await
                .map_err(|e| connection_error(registry, what, &e))?;
            if response.status() != StatusCode::UNAUTHORIZED || round == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(parse_challenge)
                // Prefer bearer when a registry offers both.
                .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
            let Some(challenge) = challenge else {
                return Ok(response);
            };
            if auth.is_some() {
                // The header we sent was refused: a stale token.
                self.inner.auth.forget(registry, scope);
            }
            self.inner.auth.learn(registry, challenge);
        }
        unreachable!("the loop returns on its second round")
    }

    /// Makes sure the auth state for `scope` is ready, so that a following
    /// streaming request carries a valid header on its only try.
    pub(crate) async fn auth_header(&self, r: &Reference, scope: &str) -> Result<Option<String>> {
        self.inner
            .auth
            .header(&self.inner.http, r.api_host(), r.registry(), scope)
            .await
    }

    /// Turns an unexpected status into [`Error::Status`], reading a bounded
    /// part of the body for the registry's error code.
    pub(crate) async fn fail(r: &Reference, what: &str, response: reqwest::Response) -> Error {
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(response.headers().get(header::RETRY_AFTER));
        // Bounded by truncation, not refusal: the status is the error, and
        // the start of the body is enough to find the registry's code.
        let body = read_prefix(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let (code, mut message) = parse_error_body(&body);
        if status == 401 && message.is_empty() {
            message = "authentication required".into();
        }
        Error::Status {
            registry: r.api_host().to_owned(),
            what: what.to_owned(),
            status,
            code,
            message,
            retry_after,
        }
    }
}

/// Reads at most `limit` bytes of a body and drops the rest unread: for
/// error bodies, where a prefix is enough to find the registry's code.
pub(crate) async fn read_prefix(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Why [`read_body`] stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed or stalled.
    Transport(reqwest::Error),
    /// The body is longer than the limit.
    TooLarge {
        /// The `Content-Length`, when that is how we know; `None` when the
        /// body ran past the limit while it was read.
        announced: Option<u64>,
    },
}

/// Reads a whole body of at most `limit` bytes. A larger `Content-Length`
/// is refused before any of the body is read; without one (a chunked
/// body), reading stops as soon as the body runs past the limit, so an
/// endless body costs at most `limit` bytes of memory.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, ReadError> {
    let announced = response.content_length();
    if let Some(len) = announced
        && len > limit as u64
    {
        return Err(ReadError::TooLarge {
            announced: Some(len),
        });
    }
    // The announced length is at most `limit` here, and only a hint.
    let mut out = Vec::with_capacity(announced.map_or(0, |len| len as usize));
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if chunk.len() > limit - out.len() {
            return Err(ReadError::TooLarge { announced: None });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub(crate) fn connection_error(registry: &str, what: &str, e: &reqwest::Error) -> Error {
    // The URL is left out: upload URLs carry long state tokens.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    let reason = reason.replace(
        &format!(" for url ({})", e.url().map_or("", |u| u.as_str())),
        "",
    );
    Error::Connection {
        registry: registry.to_owned(),
        what: what.to_owned(),
        reason,
        timeout: e.is_timeout(),
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `Content-Length` header as sent. A HEAD reply has no body, so
/// reqwest's `content_length()` says 0 there; the header tells the size.
pub(crate) fn header_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

fn is_loopback(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_for_loopback_and_named_hosts() {
        let c = Client::builder()
            .plain_http_host("Insecure.Example:5000")
            .build()
            .unwrap();
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert_eq!(c.scheme(h), "http", "{h}");
        }
        assert_eq!(c.scheme("insecure.example:5000"), "http");
        for h in [
            "ghcr.io",
            "10.0.0.1:5000",
            "insecure.example",
            "[::2]:5000",
            "localhost.evil.com",
        ] {
            assert_eq!(c.scheme(h), "https", "{h}");
        }
        let all = Client::builder().plain_http_all(true).build().unwrap();
        assert_eq!(all.scheme("ghcr.io"), "http");
    }
}
