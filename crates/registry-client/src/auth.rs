//! The registry auth dance: `WWW-Authenticate` challenges, basic auth, and
//! bearer tokens per registry and scope, reused until shortly before they
//! expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::credentials::{CredentialStore, Credentials};
use crate::{Error, Result};

/// A token is refreshed this long before the registry says it expires, so
/// that a request never leaves with a token about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(20);
/// Docker's default when a token service does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
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
    expires_in: Option<u64>,
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
        let body = response
            .bytes()
            .await
            .map_err(|e| fail(format!("reading token: {}", e.without_url()), true))?;
        let reply: TokenReply = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("token reply is not JSON: {e}"), false))?;
        let value = reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("token reply has no token".into(), false))?;
        let lifetime = reply
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Token {
            value,
            // Short-lived tokens keep half their life, long ones lose the
            // margin.
            refresh_at: Instant::now() + lifetime - EXPIRY_MARGIN.min(lifetime / 2),
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
}
