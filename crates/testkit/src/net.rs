//! Plumbing shared by the in-process HTTP servers: free ports, the accept
//! loop, a one-shot HTTP/1.1 client and the boxed body type.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

use crate::{Result, io_err};

/// Errors a response body may end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body every in-process server answers with.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// A free loopback port, for a process that must be told its address up
/// front. Another process may grab it before ours binds; callers that can
/// see that failure retry with a new port.
pub(crate) fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("bind 127.0.0.1:0"))?;
    l.local_addr().map_err(io_err("local_addr"))
}

/// Binds a listener on a fresh loopback port, ready for [`serve`].
pub(crate) fn bind() -> Result<(std::net::TcpListener, SocketAddr)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("bind 127.0.0.1:0"))?;
    l.set_nonblocking(true)
        .map_err(io_err("set listener non-blocking"))?;
    let addr = l.local_addr().map_err(io_err("local_addr"))?;
    Ok((l, addr))
}

/// The runtime the in-process servers run on. It is their own, not the
/// test's: a `#[tokio::test]` runtime has one thread, and a test that
/// blocks it (waiting on a CLI run through `std::process`) would starve a
/// token server or proxy that the CLI is talking to.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testkit-server")
            .enable_all()
            .build()
            .expect("a tokio runtime starts")
    })
}

/// Aborts a background task when dropped, so a server stops with its
/// handle.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves HTTP/1.1 on `listener` with `handler`, on the servers' own
/// runtime, until the returned guard is dropped. Connection tasks live in a `JoinSet` owned by the accept
/// task, so aborting it closes every open connection too.
pub(crate) fn serve<F, Fut>(listener: std::net::TcpListener, handler: F) -> AbortOnDrop
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    AbortOnDrop(runtime().spawn(async move {
        let Ok(listener) = TcpListener::from_std(listener) else {
            // Registering with the reactor only fails when the process is
            // out of resources; clients then see connection refused.
            return;
        };
        let mut conns = JoinSet::new();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            while conns.try_join_next().is_some() {}
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            conns.spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                // A client going away mid-response is normal in fault tests.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

/// Sends `req` to `addr` over a fresh connection. The connection task runs
/// until the response body is consumed or dropped.
pub(crate) async fn send<B>(
    addr: SocketAddr,
    req: Request<B>,
) -> Result<Response<Incoming>, BoxError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// The status of `GET path` on `addr`, or `None` when nothing answers
/// within a second.
pub(crate) async fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    let req = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(1), send(addr, req))
        .await
        .ok()?
        .ok()?;
    Some(resp.status().as_u16())
}
