//! A Docker registry token server: checks HTTP basic credentials and hands
//! out ES256 JWTs the distribution registry verifies against a self-signed
//! certificate, or plays a broken or hostile token service
//! ([`TokenReply`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;

use crate::net::{self, AbortOnDrop, Body, BoxError};
use crate::{Error, Result};

/// The `service` the registry names in its challenges and expects as `aud`.
pub const SERVICE: &str = "hoist-testkit-registry";
/// The `iss` of issued tokens, which the registry is told to trust.
pub const ISSUER: &str = "hoist-testkit-token-server";

/// How a [`TokenServer`] answers a token request with the right
/// credentials: honestly (the default), or as a broken or hostile token
/// service would. Set with [`TokenServer::set_reply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenReply {
    /// A signed token valid for the server's TTL, `expires_in` saying so.
    #[default]
    Honest,
    /// A signed token valid for the server's TTL, whose `expires_in` is
    /// this JSON text verbatim: `18446744073709551615`, `1e18`, `-1`,
    /// `2.5`, `"300"`, `null`.
    ExpiresIn(String),
    /// 200 with exactly this body (and its `Content-Length`).
    Body(Vec<u8>),
    /// 200 announcing a `Content-Length` of this many bytes, then sending
    /// none of them: a client that waits for the body stalls.
    AnnouncedLength(u64),
    /// 200 with a chunked body that never ends: `{"token":"aaaa…`.
    Endless,
}

/// A token server on `127.0.0.1:PORT/token` for one user.
///
/// `GET /token?service=…&scope=repository:NAME:pull,push&scope=…` with
/// basic credentials answers `{"token", "access_token", "expires_in",
/// "issued_at"}`, granting every requested action. Missing or wrong
/// credentials get 401: anonymous pulls are refused, as on a private
/// registry. Stops when dropped.
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    cert_pem: String,
    state: Arc<State>,
    _task: AbortOnDrop,
}

struct State {
    user: String,
    password: String,
    ttl: Duration,
    key: EcdsaKeyPair,
    // The signing certificate, DER in standard base64, for the `x5c` header.
    x5c: String,
    rng: SystemRandom,
    issued: AtomicUsize,
    next_jti: AtomicU64,
    scopes: Mutex<Vec<String>>,
    reply: Mutex<TokenReply>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("user", &self.user)
            .field("ttl", &self.ttl)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// Generates a P-256 key and self-signed certificate and starts
    /// serving tokens valid for `token_ttl` to `user`:`password`.
    pub async fn start(user: &str, password: &str, token_ttl: Duration) -> Result<Self> {
        let crypto = |e: &dyn std::fmt::Display| Error::Crypto(e.to_string());
        let key_pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| crypto(&e))?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| crypto(&e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ISSUER);
        let cert = params.self_signed(&key_pair).map_err(|e| crypto(&e))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .map_err(|e| crypto(&e))?;
        let state = Arc::new(State {
            user: user.to_owned(),
            password: password.to_owned(),
            ttl: token_ttl,
            key,
            x5c: STANDARD.encode(cert.der()),
            rng,
            issued: AtomicUsize::new(0),
            next_jti: AtomicU64::new(1),
            scopes: Mutex::new(Vec::new()),
            reply: Mutex::new(TokenReply::Honest),
        });
        let (listener, addr) = net::bind()?;
        let handler_state = state.clone();
        let task = net::serve(listener, move |req| {
            let state = handler_state.clone();
            async move { handle(&state, &req) }
        });
        Ok(Self {
            addr,
            cert_pem: cert.pem(),
            state,
            _task: task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token endpoint, for the registry's `auth.token.realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The `service` it issues tokens for (the registry's
    /// `auth.token.service`, the tokens' `aud`).
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The tokens' `iss` (the registry's `auth.token.issuer`).
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The signing certificate in PEM, for the registry's
    /// `auth.token.rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// How many tokens it has issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Every `scope` parameter of successful token requests, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.state.scopes.lock().expect("scopes lock").clone()
    }

    /// How to answer token requests from now on. Unauthorized requests
    /// are refused with 401 whatever this says.
    pub fn set_reply(&self, reply: TokenReply) {
        *self.state.reply.lock().expect("reply lock") = reply;
    }
}

fn handle(state: &State, req: &Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/token" {
        return reply(StatusCode::NOT_FOUND, json!({"details": "not found"}));
    }
    if !authorized(state, req) {
        let mut resp = reply(
            StatusCode::UNAUTHORIZED,
            json!({"details": "incorrect username or password"}),
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"hoist-testkit\""),
        );
        return resp;
    }
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in form_urlencoded(req.uri().query().unwrap_or("")) {
        match k.as_str() {
            "service" => service = Some(v),
            // A client may pack several scopes into one parameter.
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned)),
            _ => {}
        }
    }
    if service.as_deref().is_some_and(|s| s != SERVICE) {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"details": format!("unknown service {service:?}")}),
        );
    }
    let expires_in = match state.reply.lock().expect("reply lock").clone() {
        TokenReply::Honest => state.ttl.as_secs().to_string(),
        TokenReply::ExpiresIn(text) => text,
        TokenReply::Body(body) => return raw_reply(net::full(body), None),
        TokenReply::AnnouncedLength(length) => {
            let nothing = futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>();
            return raw_reply(BodyExt::boxed(StreamBody::new(nothing)), Some(length));
        }
        TokenReply::Endless => {
            let filler = Bytes::from(vec![b'a'; 64 * 1024]);
            let endless = futures_util::stream::once(std::future::ready(Bytes::from_static(
                br#"{"token":""#,
            )))
            .chain(futures_util::stream::repeat(filler))
            .map(|b| Ok::<_, BoxError>(Frame::data(b)));
            return raw_reply(BodyExt::boxed(StreamBody::new(endless)), None);
        }
    };
    match issue(state, &scopes) {
        Ok((token, issued_at)) => {
            state.issued.fetch_add(1, Ordering::SeqCst);
            state
                .scopes
                .lock()
                .expect("scopes lock")
                .extend(scopes.iter().cloned());
            // Written by hand so that `expires_in` goes out exactly as
            // given, whatever JSON number (or non-number) it is.
            let body = format!(
                r#"{{"token":{token},"access_token":{token},"expires_in":{expires_in},"issued_at":{issued_at}}}"#,
                token = json!(token),
                issued_at = json!(issued_at),
            );
            raw_reply(net::full(body), None)
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"details": e.to_string()}),
        ),
    }
}

fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(value) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", state.user, state.password);
    decoded == expected.as_bytes()
}

/// Signs a token granting `scopes`; returns it with its RFC 3339 issue
/// time.
fn issue(state: &State, scopes: &[String]) -> Result<(String, String)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let access: Vec<_> = scopes.iter().filter_map(|s| parse_scope(s)).collect();
    let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [state.x5c]});
    let claims = json!({
        "iss": ISSUER,
        "sub": state.user,
        "aud": SERVICE,
        "exp": now + state.ttl.as_secs(),
        // Backdated a little so a registry clock a second behind accepts it.
        "nbf": now.saturating_sub(5),
        "iat": now,
        "jti": format!("testkit-{}", state.next_jti.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = state
        .key
        .sign(&state.rng, signing_input.as_bytes())
        .map_err(|e| Error::Crypto(e.to_string()))?;
    Ok((
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
        oci_model::rfc3339(now),
    ))
}

/// `TYPE:NAME:ACTIONS` as an `access` claim entry. The name may itself hold
/// colons (a repository with a port is not valid, but `registry:catalog:*`
/// style scopes are), so the type ends at the first colon and the actions
/// start after the last.
fn parse_scope(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(json!({"type": kind, "name": name, "actions": actions}))
}

/// A 200 `application/json` reply with `body`, announcing `length` instead
/// of the body's own length when given.
fn raw_reply(body: Body, length: Option<u64>) -> Response<Body> {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(length) = length {
        resp.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(length),
        );
    }
    resp
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(net::full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Decodes `a=b&c=d` with `+` and `%XX` escapes.
fn form_urlencoded(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_queries() {
        assert_eq!(
            parse_scope("repository:team/app:pull,push").unwrap(),
            json!({"type": "repository", "name": "team/app", "actions": ["pull", "push"]})
        );
        assert_eq!(
            parse_scope("registry:catalog:*").unwrap()["name"],
            "catalog"
        );
        assert!(parse_scope("nonsense").is_none());
        assert_eq!(
            form_urlencoded("service=s&scope=repository%3Aa%2Fb%3Apull&scope=x+y"),
            vec![
                ("service".into(), "s".into()),
                ("scope".into(), "repository:a/b:pull".into()),
                ("scope".into(), "x y".into()),
            ]
        );
    }
}
