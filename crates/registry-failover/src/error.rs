//! The crate's error type and how a registry's failure is classified: its
//! kind (for metrics), whether it counts against the registry's circuit
//! breaker, and whether another registry is worth asking.

use std::fmt;

use oci_model::Digest;
use registry_client::Action;

/// What kind of failure a registry had, as the metrics label it
/// (`error_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A connect, first-byte, stall or whole-blob timeout.
    Timeout,
    /// The registry could not be reached, or the connection broke.
    Connection,
    /// A 5xx answer.
    #[serde(rename = "status_5xx")]
    Status5xx,
    /// A 4xx answer (404 of an image a secondary lacks, 401, 429…).
    #[serde(rename = "status_4xx")]
    Status4xx,
    /// Content that is not what its digest or size says.
    DigestMismatch,
    /// Anything else: protocol violations, bad auth, local errors.
    Other,
}

impl ErrorKind {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Status5xx => "status_5xx",
            Self::Status4xx => "status_4xx",
            Self::DigestMismatch => "digest_mismatch",
            Self::Other => "other",
        }
    }

    /// Every kind, in label order.
    pub const ALL: [ErrorKind; 6] = [
        Self::Timeout,
        Self::Connection,
        Self::Status5xx,
        Self::Status4xx,
        Self::DigestMismatch,
        Self::Other,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one registry could not serve a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryFailure {
    /// The registry host.
    pub registry: String,
    /// The kind of failure; `None` when the registry was not asked at all
    /// because its circuit breaker was open.
    pub kind: Option<ErrorKind>,
    /// What happened, for people.
    pub reason: String,
}

impl fmt::Display for RegistryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.registry, self.reason)
    }
}

/// Everything that can go wrong pulling through the registry list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A failover needs at least one registry.
    #[error("no registries given")]
    NoRegistries,
    /// A registry host that does not parse, or is listed twice.
    #[error("invalid registry `{registry}`: {reason}")]
    InvalidRegistry {
        /// The host as given.
        registry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A reference naming a registry that is not in the list.
    #[error("{reference} names registry {registry}, which is not one of {registries}")]
    ForeignRegistry {
        /// The reference asked for.
        reference: String,
        /// The registry it names.
        registry: String,
        /// The configured registries, comma-separated.
        registries: String,
    },
    /// Every registry failed, in every round; each is named with the last
    /// reason it failed.
    #[error("all registries failed for {reference}: {}", join(failures))]
    AllFailed {
        /// What was asked for (a reference, or `name@digest` for a blob).
        reference: String,
        /// The last failure of each registry, in the configured order.
        failures: Vec<RegistryFailure>,
    },
    /// A registry said the request itself is wrong
    /// ([`Action::GiveUp`]): no other registry is asked.
    #[error("{reference}: {source}")]
    Refused {
        /// What was asked for.
        reference: String,
        /// The registry's answer.
        source: Box<registry_client::Error>,
    },
    /// A blob whose bytes turned out wrong after some of them had already
    /// been handed on: the download cannot be resumed, only restarted.
    #[error(
        "blob {digest} from {registry}: content does not match after {offset} bytes were handed on: {source}"
    )]
    CorruptBlob {
        /// The registry that served it.
        registry: String,
        /// The blob.
        digest: Digest,
        /// How many bytes the consumer already has.
        offset: u64,
        /// The verification error.
        source: Box<registry_client::Error>,
    },
    /// Building the registry client failed.
    #[error("building the registry client: {0}")]
    Client(#[source] Box<registry_client::Error>),
    /// Copying an image to a secondary registry failed.
    #[error("mirroring {reference} to {registry}: {source}")]
    Mirror {
        /// The image copied.
        reference: String,
        /// The secondary registry.
        registry: String,
        /// The copy's error.
        source: Box<oci_push::Error>,
    },
}

fn join(failures: &[RegistryFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a failed attempt on one registry is treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) kind: ErrorKind,
    /// Whether the failure says the registry is unhealthy (counts against
    /// its circuit breaker).
    pub(crate) unhealthy: bool,
    /// Whether no registry can serve the request.
    pub(crate) give_up: bool,
}

/// Classifies a client error. Unhealthy: connection errors and timeouts,
/// 5xx, content that does not match its digest or size, protocol
/// violations, a failing token service. Not unhealthy: 4xx answers (a
/// secondary that lacks an image answers 404, one that does not know our
/// credentials 401/403, a throttled one 429) — the next registry is asked
/// but the breaker is left alone.
pub(crate) fn classify(e: &registry_client::Error) -> Verdict {
    use registry_client::Error as E;
    let kind = match e {
        E::Connection { timeout: true, .. } => ErrorKind::Timeout,
        E::Connection { .. } => ErrorKind::Connection,
        E::Status { status, .. } if *status >= 500 => ErrorKind::Status5xx,
        E::Status { status, .. } if *status >= 400 => ErrorKind::Status4xx,
        E::DigestMismatch { .. } => ErrorKind::DigestMismatch,
        E::Model {
            source: oci_model::Error::DigestMismatch { .. },
            ..
        } => ErrorKind::DigestMismatch,
        // Short content is a broken transfer; long content is wrong content.
        E::SizeMismatch {
            expected, actual, ..
        } if actual < expected => ErrorKind::Connection,
        E::SizeMismatch { .. } => ErrorKind::DigestMismatch,
        _ => ErrorKind::Other,
    };
    let unhealthy = match e {
        E::Status { status, .. } => *status >= 500,
        E::Auth { temporary, .. } => *temporary,
        E::Credentials { .. } | E::Io(_) => false,
        _ => e.action() != Action::GiveUp,
    };
    Verdict {
        kind,
        unhealthy,
        give_up: e.action() == Action::GiveUp,
    }
}

/// A registry's message without the `registry HOST: ` prefix, since the
/// failure list names the registry already.
pub(crate) fn reason(registry: &str, e: &registry_client::Error) -> String {
    let text = e.to_string();
    match text.strip_prefix(&format!("registry {registry}: ")) {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> registry_client::Error {
        registry_client::Error::Status {
            registry: "r:1".into(),
            what: "GET manifest a:v1".into(),
            status,
            code: None,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn classifies_failures() {
        let conn = |timeout| registry_client::Error::Connection {
            registry: "r:1".into(),
            what: "GET".into(),
            reason: "connection refused".into(),
            timeout,
        };
        let size = |actual| registry_client::Error::SizeMismatch {
            registry: "r:1".into(),
            what: "GET".into(),
            expected: 10,
            actual,
        };
        let cases = [
            (status(500), ErrorKind::Status5xx, true, false),
            (status(503), ErrorKind::Status5xx, true, false),
            (status(404), ErrorKind::Status4xx, false, false),
            (status(401), ErrorKind::Status4xx, false, false),
            (status(429), ErrorKind::Status4xx, false, false),
            (status(400), ErrorKind::Status4xx, false, true),
            (conn(false), ErrorKind::Connection, true, false),
            (conn(true), ErrorKind::Timeout, true, false),
            (size(4), ErrorKind::Connection, true, false),
            (size(11), ErrorKind::DigestMismatch, true, false),
            (
                registry_client::Error::DigestMismatch {
                    registry: "r:1".into(),
                    what: "GET".into(),
                    expected: Digest::of(b"a"),
                    actual: Digest::of(b"b"),
                },
                ErrorKind::DigestMismatch,
                true,
                false,
            ),
        ];
        for (e, kind, unhealthy, give_up) in cases {
            assert_eq!(
                classify(&e),
                Verdict {
                    kind,
                    unhealthy,
                    give_up
                },
                "{e}"
            );
        }
    }

    #[test]
    fn failure_list_names_every_registry() {
        let e = Error::AllFailed {
            reference: "127.0.0.1:5000/fn:v1".into(),
            failures: vec![
                RegistryFailure {
                    registry: "127.0.0.1:5000".into(),
                    kind: Some(ErrorKind::Connection),
                    reason: "connection refused".into(),
                },
                RegistryFailure {
                    registry: "127.0.0.1:5001".into(),
                    kind: Some(ErrorKind::Status5xx),
                    reason: reason("127.0.0.1:5001", &{
                        let mut e = status(500);
                        if let registry_client::Error::Status { registry, .. } = &mut e {
                            *registry = "127.0.0.1:5001".into();
                        }
                        e
                    }),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "all registries failed for 127.0.0.1:5000/fn:v1: 127.0.0.1:5000: connection refused; \
             127.0.0.1:5001: GET manifest a:v1: HTTP 500"
        );
    }
}
