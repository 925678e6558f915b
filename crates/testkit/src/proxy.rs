//! A fault-injecting HTTP/1.1 reverse proxy: forwards to one upstream,
//! streaming bodies both ways, and breaks the requests its rules match.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::json;

use crate::Result;
use crate::net::{self, AbortOnDrop, Body, BoxError};

/// What the proxy does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers with this status without contacting the upstream, with a
    /// distribution-style body
    /// `{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}`.
    Status(u16),
    /// Answers 429 with `Retry-After` and a `TOOMANYREQUESTS` error body,
    /// without contacting the upstream.
    TooManyRequests {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// Forwards, but flips one byte of the response body (same length).
    CorruptBody,
    /// Forwards, but declares a `Content-Length` one byte larger than the
    /// body, so the response ends early and the connection closes.
    WrongContentLength,
    /// Sends the headers and the first `after_bytes` bytes of the body,
    /// sends nothing for `stall`, then the rest.
    StallBody {
        /// Body bytes sent before stalling.
        after_bytes: u64,
        /// How long to stall.
        stall: Duration,
    },
    /// Sends the headers and the first `after_bytes` bytes of the body,
    /// then aborts the connection.
    DropConnection {
        /// Body bytes sent before the abort.
        after_bytes: u64,
    },
    /// Waits this long, then forwards normally.
    Delay(Duration),
}

/// Which requests get a [`Fault`], and how many times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Only requests with this method; `None` for any.
    pub method: Option<Method>,
    /// Only requests whose target (path and query) contains this.
    pub path_contains: String,
    /// What to do.
    pub fault: Fault,
    /// How many matching requests get the fault; `None` for all of them.
    pub times: Option<usize>,
}

impl Rule {
    /// Every request whose target contains `path_contains` gets `fault`.
    pub fn new(path_contains: impl Into<String>, fault: Fault) -> Self {
        Self {
            method: None,
            path_contains: path_contains.into(),
            fault,
            times: None,
        }
    }

    /// Only requests with `method`.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Only the next `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, method: &Method, target: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && target.contains(&self.path_contains)
            && self.times != Some(0)
    }
}

/// One request the proxy answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// The status sent back (502 when the upstream could not be reached).
    pub status: u16,
}

/// A reverse proxy on `127.0.0.1:PORT` in front of one upstream, stopped
/// when dropped.
///
/// Bodies stream through in both directions and are never held whole, so
/// multi-gigabyte blobs pass with flat memory. `Location` headers that
/// point at the upstream are rewritten to point at the proxy, since a
/// registry answers uploads with absolute URLs. Rules are tried in the
/// order added; the first that matches (and has uses left) applies.
#[derive(Debug)]
pub struct FaultProxy {
    state: Arc<State>,
    _task: AbortOnDrop,
}

#[derive(Debug)]
struct State {
    addr: SocketAddr,
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<LoggedRequest>>,
}

impl FaultProxy {
    /// Starts proxying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let (listener, addr) = net::bind()?;
        let state = Arc::new(State {
            addr,
            upstream,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let handler_state = state.clone();
        let task = net::serve(listener, move |req| handle(handler_state.clone(), req));
        Ok(Self { state, _task: task })
    }

    /// `127.0.0.1:PORT`, for image references.
    pub fn host(&self) -> String {
        self.state.addr.to_string()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// The upstream it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.state.upstream
    }

    /// Adds a rule after the existing ones.
    pub fn add(&self, rule: Rule) {
        self.state.rules.lock().expect("rules lock").push(rule);
    }

    /// Removes every rule: from now on everything passes through.
    pub fn clear(&self) {
        self.state.rules.lock().expect("rules lock").clear();
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.log.lock().expect("log lock").clone()
    }

    /// How many logged requests had `method` (any case) and a target
    /// containing `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.state
            .log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_contains))
            .count()
    }

    /// Forgets the logged requests.
    pub fn reset_log(&self) {
        self.state.log.lock().expect("log lock").clear();
    }
}

impl State {
    /// The fault for this request, using up one of its rule's times.
    fn take_fault(&self, method: &Method, target: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("rules lock");
        let rule = rules.iter_mut().find(|r| r.matches(method, target))?;
        if let Some(n) = &mut rule.times {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }

    fn record(&self, method: &Method, target: &str, status: StatusCode) {
        self.log.lock().expect("log lock").push(LoggedRequest {
            method: method.to_string(),
            path: target.to_owned(),
            status: status.as_u16(),
        });
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let fault = state.take_fault(&method, &target);
    let resp = match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            canned(req, status, "UNAVAILABLE", None).await
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            canned(
                req,
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                Some(retry_after_secs),
            )
            .await
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(&state, req, None).await
        }
        body_fault => forward(&state, req, body_fault).await,
    };
    state.record(&method, &target, resp.status());
    resp
}

/// An error answer made up by the proxy. The request body is read and
/// thrown away first: answering mid-upload would make the client see a
/// reset while sending instead of the status.
async fn canned(
    req: Request<Incoming>,
    status: StatusCode,
    code: &str,
    retry_after: Option<u64>,
) -> Response<Body> {
    let mut body = req.into_body();
    while let Some(Ok(_)) = body.frame().await {}
    let mut resp = Response::new(net::full(
        json!({"errors": [{"code": code, "message": "injected", "detail": null}]}).to_string(),
    ));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

async fn forward(state: &State, req: Request<Incoming>, fault: Option<Fault>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Ok(host) = HeaderValue::from_str(&state.upstream.to_string()) {
        parts.headers.insert(header::HOST, host);
    }
    let upstream = match net::send(state.upstream, Request::from_parts(parts, body)).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = Response::new(net::full(
                json!({"errors": [{"code": "UNAVAILABLE", "message": format!("proxy: upstream {}: {e}", state.upstream)}]})
                    .to_string(),
            ));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            return resp;
        }
    };
    let (mut parts, body) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    rewrite_location(&mut parts.headers, state);
    if fault == Some(Fault::WrongContentLength) {
        // One byte more than will come; without a length, any length.
        let declared = content_length(&parts.headers).map_or(1 << 30, |n| n + 1);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
    }
    Response::from_parts(parts, faulty_body(body, fault))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // hyper frames each message itself from the Content-Length header or
    // the body, so framing and connection headers must not be copied.
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn rewrite_location(headers: &mut HeaderMap, state: &State) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    for scheme in ["http://", "https://"] {
        let from = format!("{scheme}{}", state.upstream);
        if let Some(rest) = location.strip_prefix(&from)
            && let Ok(v) = HeaderValue::from_str(&format!("http://{}{rest}", state.addr))
        {
            headers.insert(header::LOCATION, v);
            return;
        }
    }
}

/// How long a broken body waits before ending, so hyper flushes the bytes
/// before it closes the connection.
const FLUSH_GRACE: Duration = Duration::from_millis(100);

/// How far a body fault has got.
struct BodyState {
    frames: BodyStream<Incoming>,
    fault: Option<Fault>,
    sent: u64,
    // Data split off a frame at the fault point, sent on the next poll.
    pending: Option<Bytes>,
    // Set once the one-time part of the fault has happened.
    done: bool,
}

/// The response body with `fault` applied, as a stream so hyper frames it
/// by the `Content-Length` header rather than by what the body reports.
fn faulty_body(body: Incoming, fault: Option<Fault>) -> Body {
    let state = BodyState {
        frames: BodyStream::new(body),
        fault,
        sent: 0,
        pending: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let item = next_frame(&mut s).await?;
        Some((item, s))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

async fn next_frame(s: &mut BodyState) -> Option<Result<Frame<Bytes>, BoxError>> {
    let data = match s.pending.take() {
        Some(rest) => {
            if let Some(Fault::StallBody { stall, .. }) = s.fault {
                tokio::time::sleep(stall).await;
            }
            if let Some(Fault::DropConnection { .. }) = s.fault {
                // Give hyper a moment to flush what was sent before the
                // abort, so the client really gets `after_bytes` bytes.
                tokio::time::sleep(FLUSH_GRACE).await;
                return Some(Err("testkit: connection dropped by fault".into()));
            }
            rest
        }
        None => match s.frames.next().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => return Some(Ok(frame)),
            },
            Some(Err(e)) => return Some(Err(e.into())),
            None => {
                if s.fault == Some(Fault::WrongContentLength) {
                    // hyper drops the connection, unflushed bytes included,
                    // as soon as it sees the body end short.
                    tokio::time::sleep(FLUSH_GRACE).await;
                }
                return None;
            }
        },
    };
    let data = match (&s.fault, s.done) {
        (Some(Fault::CorruptBody), false) if !data.is_empty() => {
            s.done = true;
            let mut bytes = BytesMut::from(data);
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            bytes.freeze()
        }
        (
            Some(Fault::StallBody { after_bytes, .. } | Fault::DropConnection { after_bytes }),
            false,
        ) if s.sent + data.len() as u64 > *after_bytes => {
            s.done = true;
            let head_len = usize::try_from(after_bytes - s.sent).expect("less than a frame");
            let mut head = data;
            s.pending = Some(head.split_off(head_len));
            if head.is_empty() {
                // The fault point is at the start of this frame.
                return Box::pin(next_frame(s)).await;
            }
            head
        }
        _ => data,
    };
    s.sent += data.len() as u64;
    Some(Ok(Frame::data(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_use_up_their_times() {
        let state = State {
            addr: "127.0.0.1:2".parse().unwrap(),
            upstream: "127.0.0.1:1".parse().unwrap(),
            rules: Mutex::new(vec![
                Rule::new("/blobs/", Fault::Status(503))
                    .method(Method::GET)
                    .times(1),
                Rule::new("/blobs/", Fault::CorruptBody),
            ]),
            log: Mutex::new(Vec::new()),
        };
        let take = |m: Method, p: &str| state.take_fault(&m, p);
        assert_eq!(
            take(Method::HEAD, "/v2/a/blobs/x"),
            Some(Fault::CorruptBody)
        );
        assert_eq!(take(Method::GET, "/v2/a/blobs/x"), Some(Fault::Status(503)));
        assert_eq!(take(Method::GET, "/v2/a/blobs/x"), Some(Fault::CorruptBody));
        assert_eq!(take(Method::GET, "/v2/a/manifests/x"), None);
    }

    #[test]
    fn location_is_rewritten() {
        let state = State {
            addr: "127.0.0.1:2".parse().unwrap(),
            upstream: "127.0.0.1:1".parse().unwrap(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("http://127.0.0.1:1/v2/a/blobs/uploads/u?_state=s"),
        );
        rewrite_location(&mut h, &state);
        assert_eq!(
            h[header::LOCATION],
            "http://127.0.0.1:2/v2/a/blobs/uploads/u?_state=s"
        );
        h.insert(header::LOCATION, HeaderValue::from_static("/v2/relative"));
        rewrite_location(&mut h, &state);
        assert_eq!(h[header::LOCATION], "/v2/relative");
    }
}
