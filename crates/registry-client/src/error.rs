//! The client's error type. Each error answers [`Error::action`]: retry
//! the same registry, try another one, or give up — so retries and
//! failover ask the error instead of parsing messages.

use std::time::Duration;

use oci_model::Digest;
use serde::Deserialize;

/// What a caller should do after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Temporary: the same request to the same registry may succeed (after
    /// a backoff); another registry may too.
    Retry,
    /// This registry cannot serve the request, another one may.
    TryNextRegistry,
    /// The request itself is wrong; no registry will accept it.
    GiveUp,
}

/// Error codes of the distribution spec, as the registry sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`
    BlobUploadUnknown,
    /// `DIGEST_INVALID`
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`
    ManifestUnknown,
    /// `NAME_INVALID`
    NameInvalid,
    /// `NAME_UNKNOWN`
    NameUnknown,
    /// `SIZE_INVALID`
    SizeInvalid,
    /// `UNAUTHORIZED`
    Unauthorized,
    /// `DENIED`
    Denied,
    /// `UNSUPPORTED`
    Unsupported,
    /// `TOOMANYREQUESTS`
    TooManyRequests,
    /// `UNAVAILABLE` (distribution's read-only mode and proxies)
    Unavailable,
    /// Anything else, as sent (on one line, at most 64 characters).
    Other(String),
}

impl ErrorCode {
    fn parse(code: &str) -> Self {
        match code {
            "BLOB_UNKNOWN" => Self::BlobUnknown,
            "BLOB_UPLOAD_INVALID" => Self::BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => Self::BlobUploadUnknown,
            "DIGEST_INVALID" => Self::DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => Self::ManifestBlobUnknown,
            "MANIFEST_INVALID" => Self::ManifestInvalid,
            "MANIFEST_UNKNOWN" => Self::ManifestUnknown,
            "NAME_INVALID" => Self::NameInvalid,
            "NAME_UNKNOWN" => Self::NameUnknown,
            "SIZE_INVALID" => Self::SizeInvalid,
            "UNAUTHORIZED" => Self::Unauthorized,
            "DENIED" => Self::Denied,
            "UNSUPPORTED" => Self::Unsupported,
            "TOOMANYREQUESTS" => Self::TooManyRequests,
            "UNAVAILABLE" => Self::Unavailable,
            other => Self::Other(other.to_owned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Unavailable => "UNAVAILABLE",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong talking to a registry. Every variant names
/// the registry; none carries a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry answered with an error status.
    #[error("registry {registry}: {what}: HTTP {status}{}{}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// The registry host.
        registry: String,
        /// The operation, e.g. `GET manifest team/app:v1`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The first error code in the body.
        code: Option<ErrorCode>,
        /// The registry's message, truncated.
        message: String,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// The registry could not be reached or the connection broke.
    #[error("registry {registry}: {what}: {reason}")]
    Connection {
        /// The registry host.
        registry: String,
        /// The operation.
        what: String,
        /// What happened, without URLs.
        reason: String,
        /// Whether it was a timeout (connect, first byte, or a stall).
        timeout: bool,
    },
    /// Content whose digest is not the one asked for.
    #[error("registry {registry}: {what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The registry host.
        registry: String,
        /// The operation.
        what: String,
        /// What was asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content longer or shorter than announced.
    #[error("registry {registry}: {what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The registry host.
        registry: String,
        /// The operation.
        what: String,
        /// What the descriptor says.
        expected: u64,
        /// What arrived (at least).
        actual: u64,
    },
    /// A response body larger than this client reads for its kind (a
    /// token reply, a page of tags): refused, never truncated.
    #[error("registry {registry}: {what}: the {content} is larger than the {limit}-byte limit")]
    TooLarge {
        /// The registry host.
        registry: String,
        /// The operation.
        what: String,
        /// What the body holds, e.g. `token reply`.
        content: &'static str,
        /// The most bytes read for it.
        limit: u64,
    },
    /// A response that breaks the protocol (missing header, bad JSON…).
    #[error("registry {registry}: {what}: {reason}")]
    Protocol {
        /// The registry host.
        registry: String,
        /// The operation.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// Authentication failed: bad credentials, or the token service failed.
    #[error("registry {registry}: authentication failed: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// Why; never includes a secret.
        reason: String,
        /// Whether the token service itself was unreachable or failing.
        temporary: bool,
    },
    /// Credentials could not be read.
    #[error("credentials from {source_name}: {reason}")]
    Credentials {
        /// The config file or helper program.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A manifest or digest that did not parse.
    #[error("registry {registry}: {what}: {source}")]
    Model {
        /// The registry host.
        registry: String,
        /// The operation.
        what: String,
        /// The model's error.
        source: oci_model::Error,
    },
    /// Local file I/O during a transfer.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// What to do next.
    pub fn action(&self) -> Action {
        match self {
            Self::Status { status, code, .. } => match (status, code) {
                (429, _) | (500..=599, _) | (_, Some(ErrorCode::TooManyRequests)) => Action::Retry,
                (_, Some(ErrorCode::Unavailable)) => Action::Retry,
                (408, _) => Action::Retry,
                // Another registry may have it, or may let us in.
                (401 | 403 | 404, _) => Action::TryNextRegistry,
                _ => Action::GiveUp,
            },
            Self::Connection { .. } | Self::SizeMismatch { .. } => Action::Retry,
            // Corruption on the wire or a broken mirror: fetch again, from
            // here or elsewhere, but never keep the bytes.
            Self::DigestMismatch { .. } => Action::Retry,
            Self::Protocol { .. } | Self::TooLarge { .. } => Action::TryNextRegistry,
            Self::Auth { temporary, .. } => {
                if *temporary {
                    Action::Retry
                } else {
                    Action::TryNextRegistry
                }
            }
            Self::Model { source, .. } => match source {
                oci_model::Error::ManifestTooLarge { .. }
                | oci_model::Error::MalformedManifest { .. }
                | oci_model::Error::DigestMismatch { .. } => Action::TryNextRegistry,
                _ => Action::GiveUp,
            },
            Self::Credentials { .. } | Self::Io(_) => Action::GiveUp,
        }
    }

    /// The registry's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The registry error code, for errors that have one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Status { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// Whether the thing asked for does not exist (404, `*_UNKNOWN`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
            || matches!(
                self.code(),
                Some(ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown)
            )
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The longest registry message kept in an error, in characters.
const MAX_MESSAGE: usize = 200;
/// The longest error code kept, in characters; the spec's are under 25.
const MAX_CODE: usize = 64;

/// Parses a distribution error body: the first code and a short message.
/// Both end up on one line of a terminal, so control characters are
/// dropped (whitespace ones become spaces) and both are shortened.
pub fn parse_error_body(body: &[u8]) -> (Option<ErrorCode>, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.errors.is_empty() => {
            let first = &b.errors[0];
            let code = printable(&first.code, MAX_CODE);
            let code = (!code.is_empty()).then(|| ErrorCode::parse(&code));
            (code, printable(&first.message, MAX_MESSAGE))
        }
        // Non-JSON bodies (proxies' HTML pages) are summarised, not echoed
        // whole.
        _ => (None, printable(&String::from_utf8_lossy(body), MAX_MESSAGE)),
    }
}

/// `s` on one line, trimmed, cut to `max` characters (and an ellipsis).
fn printable(s: &str, max: usize) -> String {
    let line: String = s
        .chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    let line = line.trim();
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", line[..i].trim_end()),
        None => line.to_owned(),
    }
}

/// Reads `Retry-After` in its seconds form (the HTTP-date form is rare for
/// registries; it falls back to our own backoff).
pub(crate) fn parse_retry_after(value: Option<&http::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<ErrorCode>) -> Error {
        Error::Status {
            registry: "r".into(),
            what: "GET".into(),
            status,
            code,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn classifies_statuses() {
        let cases = [
            (status(500, None), Action::Retry),
            (status(503, None), Action::Retry),
            (status(429, None), Action::Retry),
            (status(400, Some(ErrorCode::TooManyRequests)), Action::Retry),
            (
                status(404, Some(ErrorCode::ManifestUnknown)),
                Action::TryNextRegistry,
            ),
            (
                status(401, Some(ErrorCode::Unauthorized)),
                Action::TryNextRegistry,
            ),
            (
                status(403, Some(ErrorCode::Denied)),
                Action::TryNextRegistry,
            ),
            (
                status(400, Some(ErrorCode::ManifestInvalid)),
                Action::GiveUp,
            ),
            (status(400, Some(ErrorCode::DigestInvalid)), Action::GiveUp),
        ];
        for (err, want) in cases {
            assert_eq!(err.action(), want, "{err}");
        }
    }

    #[test]
    fn parses_error_bodies() {
        let (code, msg) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(code, Some(ErrorCode::ManifestUnknown));
        assert_eq!(msg, "manifest unknown");
        let (code, msg) = parse_error_body(b"<html>\n<b>Bad gateway</b></html>");
        assert_eq!(code, None);
        assert!(msg.starts_with("<html>"), "{msg}");
        let long = "x".repeat(1000);
        assert!(parse_error_body(long.as_bytes()).1.len() < 300);
        // One line on a terminal: no escape sequences, no line breaks.
        let (code, msg) = parse_error_body(
            br#"{"errors":[{"code":"EVIL\u001b[2J","message":" a\nb\u001b]0;title\u0007 "}]}"#,
        );
        assert_eq!(code, Some(ErrorCode::Other("EVIL[2J".into())));
        assert_eq!(msg, "a b]0;title");
        let (code, _) =
            parse_error_body(format!(r#"{{"errors":[{{"code":"{long}"}}]}}"#).as_bytes());
        assert_eq!(code.unwrap().to_string().chars().count(), MAX_CODE + 1);
        assert_eq!(
            parse_retry_after(Some(&http::HeaderValue::from_static("7"))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(Some(&http::HeaderValue::from_static("soon"))),
            None
        );
    }
}
