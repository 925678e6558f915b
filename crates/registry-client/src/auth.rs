//! The registry auth dance: `WWW-Authenticate` challenges, basic auth, and
//! bearer tokens per registry and scope, reused until shortly before they
//! expire.
//!
//! A token service's `expires_in` is a hint, read leniently: docker
//! (distribution's client) and containers/image decode it into a Go `int`,
//! so a float or an out-of-range number fails the whole login there, and
//! raise anything under 60 s to 60 s. hoist accepts any JSON number up to
//! a float's range (`300`, `300.0`, `1e18`, `18446744073709551615`; past
//! 1.8e308 serde_json refuses the reply): whole seconds are kept, capped at
//! [`MAX_TOKEN_LIFETIME`]; zero, negative, sub-second and non-numeric
//! values count as unsaid, [`DEFAULT_TOKEN_LIFETIME`]; short positive
//! lifetimes are honoured as given. A lifetime that turns out too long
//! costs one refused request: the registry's 401 makes the client fetch a
//! new token. The reply itself is read up to [`MAX_TOKEN_REPLY_BYTES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::client::{ReadError, read_body};
use crate::credentials::{CredentialStore, Credentials};
use crate::{Error, Result};

/// A token is refreshed this long before the registry says it expires, so
/// that a request never leaves with a token about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(20);
/// Docker's default when a token service does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a token is kept, whatever its service says: a day.
/// Registries issue tokens for minutes to an hour; a service claiming more
/// is broken or hostile.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest token reply read, the manifests' limit: a JWT with many
/// scopes is a few KiB.
const MAX_TOKEN_REPLY_BYTES: usize = oci_model::MAX_MANIFEST_BYTES;

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// A bearer token from the token service at `realm`.
    Bearer {
        /// The token service's URL, as sent.
        realm: String,
        /// The `service` to ask the token for.
        service: Option<String>,
        /// The scope the registry named, if any.
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`;
/// `None` for other schemes and for a bearer challenge without a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k="v", k2=v2` with quoted values that may hold commas (scopes do).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

#[derive(Clone)]
struct Token {
    value: String,
    refresh_at: Instant,
}

/// Auth state shared by every request of a client.
pub(crate) struct Authenticator {
    credentials: CredentialStore,
    challenges: Mutex<HashMap<String, Challenge>>,
    // One slot per (registry, scope), locked while a token is fetched so
    // that parallel uploads wait for one token instead of each asking.
    tokens: Mutex<HashMap<(String, String), TokenSlot>>,
    resolved: tokio::sync::Mutex<HashMap<String, Option<Credentials>>>,
}

#[derive(Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
    // Any JSON value: see the module docs for how it is read.
    #[serde(default)]
    expires_in: serde_json::Value,
}

/// Reads a token service's JSON reply: the token (`token`, else
/// `access_token`) and how long it may be used (see the module docs). The
/// error is the reason, without the body.
pub fn parse_token_reply(body: &[u8]) -> std::result::Result<(String, Duration), String> {
    let reply: TokenReply =
        serde_json::from_slice(body).map_err(|e| format!("token reply is not JSON: {e}"))?;
    let value = reply
        .token
        .filter(|t| !t.is_empty())
        .or(reply.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "token reply has no token".to_owned())?;
    // It goes into an `Authorization` header.
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token in the reply is not printable ASCII".into());
    }
    Ok((value, token_lifetime(&reply.expires_in)))
}

/// `expires_in` as a lifetime, see the module docs.
fn token_lifetime(expires_in: &serde_json::Value) -> Duration {
    match expires_in.as_f64() {
        // `as` saturates, and truncates to whole seconds.
        Some(secs) if secs >= 1.0 => {
            Duration::from_secs(secs.min(MAX_TOKEN_LIFETIME.as_secs() as f64) as u64)
        }
        _ => DEFAULT_TOKEN_LIFETIME,
    }
}

impl Authenticator {
    pub(crate) fn new(credentials: CredentialStore) -> Self {
        Self {
            credentials,
            challenges: Mutex::default(),
            tokens: Mutex::default(),
            resolved: tokio::sync::Mutex::default(),
        }
    }

    /// Credentials for a registry, looked up (and helpers run) once.
    async fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let mut resolved = self.resolved.lock().await;
        if let Some(c) = resolved.get(registry) {
            return Ok(c.clone());
        }
        let c = self.credentials.get(registry).await?;
        resolved.insert(registry.to_owned(), c.clone());
        Ok(c)
    }

    /// Remembers what a registry asked for.
    pub(crate) fn learn(&self, registry: &str, challenge: Challenge) {
        self.challenges
            .lock()
            .expect("auth lock")
            .insert(registry.to_owned(), challenge);
    }

    /// Forgets a token the registry refused.
    pub(crate) fn forget(&self, registry: &str, scope: &str) {
        let slot = self
            .tokens
            .lock()
            .expect("auth lock")
            .get(&(registry.to_owned(), scope.to_owned()))
            .cloned();
        if let Some(slot) = slot
            && let Ok(mut token) = slot.try_lock()
        {
            *token = None;
        }
    }

    /// The `Authorization` header value for a request, if the registry is
    /// known to want one. Fetches a token when needed.
    pub(crate) async fn header(
        &self,
        http: &reqwest::Client,
        registry: &str,
        cred_key: &str,
        scope: &str,
    ) -> Result<Option<String>> {
        let challenge = self
            .challenges
            .lock()
            .expect("auth lock")
            .get(registry)
            .cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self
                .credentials(cred_key)
                .await?
                .and_then(|c| basic_header(&c))),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = (registry.to_owned(), scope.to_owned());
                let slot = self
                    .tokens
                    .lock()
                    .expect("auth lock")
                    .entry(key)
                    .or_default()
                    .clone();
                let mut token = slot.lock().await;
                if let Some(t) = token.as_ref()
                    && Instant::now() < t.refresh_at
                {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let fresh = self
                    .fetch_token(http, registry, cred_key, &realm, service.as_deref(), scope)
                    .await?;
                let header = format!("Bearer {}", fresh.value);
                *token = Some(fresh);
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        registry: &str,
        cred_key: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token> {
        let fail = |reason: String, temporary: bool| Error::Auth {
            registry: registry.to_owned(),
            reason,
            temporary,
        };
        let mut url = url::Url::parse(realm)
            .map_err(|e| fail(format!("token realm `{realm}` is not a URL: {e}"), false))?;
        let creds = self.credentials(cred_key).await?;
        let request = match &creds {
            Some(Credentials::IdentityToken(refresh)) => {
                // OAuth2 refresh-token grant, as docker does for identity
                // tokens.
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "hoist".to_owned()),
                    ("scope", scope.to_owned()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_owned()));
                }
                http.post(url).form(&form)
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scope.split(' ').filter(|s| !s.is_empty()) {
                        q.append_pair("scope", s);
                    }
                }
                let r = http.get(url);
                match &creds {
                    Some(Credentials::Basic { username, password }) => {
                        r.basic_auth(username, Some(password))
                    }
                    _ => r,
                }
            }
        };
        let response = request.send().await.map_err(|e| {
            fail(
                format!("token service unreachable: {}", e.without_url()),
                true,
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            let temporary = status.is_server_error() || status.as_u16() == 429;
            let why = if status.as_u16() == 401 || status.as_u16() == 403 {
                if creds.is_some() {
                    "the token service refused the credentials".to_owned()
                } else {
                    "the token service refused anonymous access (no credentials found)".to_owned()
                }
            } else {
                format!("the token service answered HTTP {status}")
            };
            return Err(fail(why, temporary));
        }
        let body = read_body(response, MAX_TOKEN_REPLY_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::Transport(e) => {
                    fail(format!("reading token: {}", e.without_url()), true)
                }
                ReadError::TooLarge { .. } => Error::TooLarge {
                    registry: registry.to_owned(),
                    what: "fetching a token".into(),
                    content: "token reply",
                    limit: MAX_TOKEN_REPLY_BYTES as u64,
                },
            })?;
        let (value, lifetime) = parse_token_reply(&body).map_err(|reason| fail(reason, false))?;
        // Short-lived tokens keep half their life, long ones lose the
        // margin. The lifetime is capped, so the sum cannot overflow; if it
        // somehow did, the token is refreshed at its next use.
        let now = Instant::now();
        Ok(Token {
            value,
            refresh_at: now
                .checked_add(lifetime - EXPIRY_MARGIN.min(lifetime / 2))
                .unwrap_or(now),
        })
    }
}

fn basic_header(c: &Credentials) -> Option<String> {
    match c {
        Credentials::Basic { username, password } => Some(format!(
            "Basic {}",
            STANDARD.encode(format!("{username}:{password}"))
        )),
        Credentials::IdentityToken(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:9/t, service=x"#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/t".into(),
                service: Some("x".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(
            parse_challenge(r#"Bearer realm="a\"b""#),
            Some(Challenge::Bearer {
                realm: "a\"b".into(),
                service: None,
                scope: None
            })
        );
    }

    #[test]
    fn reads_token_replies() {
        let day = MAX_TOKEN_LIFETIME;
        let lifetimes = [
            ("300", Duration::from_secs(300)),
            ("2", Duration::from_secs(2)),
            ("2.9", Duration::from_secs(2)),
            ("300.0", Duration::from_secs(300)),
            ("86400", day),
            ("86401", day),
            ("18446744073709551615", day),
            ("18446744073709551616", day),
            ("1e18", day),
            ("1.7e308", day),
            ("0", DEFAULT_TOKEN_LIFETIME),
            ("0.5", DEFAULT_TOKEN_LIFETIME),
            ("-1", DEFAULT_TOKEN_LIFETIME),
            ("-1e300", DEFAULT_TOKEN_LIFETIME),
            ("\"300\"", DEFAULT_TOKEN_LIFETIME),
            ("null", DEFAULT_TOKEN_LIFETIME),
            ("[1]", DEFAULT_TOKEN_LIFETIME),
        ];
        for (expires_in, want) in lifetimes {
            let body = format!(r#"{{"token":"t","expires_in":{expires_in}}}"#);
            assert_eq!(
                parse_token_reply(body.as_bytes()),
                Ok(("t".to_owned(), want)),
                "{expires_in}"
            );
        }
        assert_eq!(
            parse_token_reply(br#"{"access_token":"a"}"#),
            Ok(("a".to_owned(), DEFAULT_TOKEN_LIFETIME))
        );
        assert_eq!(
            parse_token_reply(br#"{"token":"","access_token":"a"}"#),
            Ok(("a".to_owned(), DEFAULT_TOKEN_LIFETIME))
        );
        let errors = [
            (&br#"{"token":"t","expires_in":1e400}"#[..], "not JSON"),
            (b"<html>", "not JSON"),
            (b"", "not JSON"),
            (br#"{"token":5}"#, "not JSON"),
            (br#"{"expires_in":300}"#, "no token"),
            (br#"{"token":null,"access_token":""}"#, "no token"),
            (br#"{"token":"a b"}"#, "not printable ASCII"),
            (br#"{"token":"a\nb"}"#, "not printable ASCII"),
            ("{\"token\":\"\u{e9}\"}".as_bytes(), "not printable ASCII"),
        ];
        for (body, want) in errors {
            let err = parse_token_reply(body).unwrap_err();
            assert!(
                err.contains(want),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
