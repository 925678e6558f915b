//! Hostile and broken servers against the client: token services that
//! answer absurd lifetimes, endless or oversized bodies, non-JSON or no
//! token (behind the real registry), and registries whose error bodies,
//! tag lists and `Link` headers are oversized, endless or point elsewhere.
//! Each ends in a clear error or a working client, never a panic or
//! unbounded memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_model::Reference;
use registry_client::{Client, CredentialStore, Credentials, Error, RetryPolicy};
use testkit::{Registry, RegistryAuth, TokenReply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: &str = "is larger than the 4194304-byte limit";

/// A client that does not retry and gives up on a stalled read after
/// `read_timeout`.
fn client(creds: Option<(&str, &str, &str)>, read_timeout: Duration) -> Client {
    let mut store = CredentialStore::empty();
    if let Some((host, username, password)) = creds {
        store.insert(
            host,
            Credentials::Basic {
                username: username.into(),
                password: password.into(),
            },
        );
    }
    Client::builder()
        .credentials(store)
        .retry(RetryPolicy::none())
        .read_timeout(read_timeout)
        .build()
        .expect("client")
}

fn reference(host: &str, path: &str) -> Reference {
    format!("{host}/{path}").parse().expect("reference")
}

async fn token_registry() -> Registry {
    Registry::start_with(RegistryAuth::Token {
        user: "tess".into(),
        password: "pw-token".into(),
        token_ttl: Duration::from_secs(300),
    })
    .await
    .expect("registry with a token server")
}

/// Asks `reg` about a missing manifest through a fresh client: `Ok(None)`
/// means a token was fetched and the registry accepted it.
async fn ask(reg: &Registry, read_timeout: Duration) -> Result<Option<()>, Error> {
    let client = client(Some((&reg.host(), "tess", "pw-token")), read_timeout);
    let r = reference(&reg.host(), "team/app:v1");
    let first = client.head_manifest(&r).await?;
    assert!(first.is_none());
    // Again: the token is reused, not fetched anew.
    Ok(client.head_manifest(&r).await?.map(|_| ()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_token_lifetimes_give_working_tokens() {
    let reg = token_registry().await;
    let server = reg.token_server().expect("token server");
    for expires_in in [
        "18446744073709551615",
        "18446744073709551616",
        "1e18",
        "1.7e308",
        "-1",
        "-9223372036854775808",
        "0",
        "300.5",
        "\"300\"",
        "null",
        "{}",
    ] {
        server.set_reply(TokenReply::ExpiresIn(expires_in.into()));
        let issued = server.tokens_issued();
        let answer = ask(&reg, Duration::from_secs(5)).await;
        assert!(
            matches!(answer, Ok(None)),
            "expires_in {expires_in}: {answer:?}"
        );
        // One token for both requests: every one of these lifetimes is at
        // least a minute once read.
        assert_eq!(
            server.tokens_issued(),
            issued + 1,
            "expires_in {expires_in}"
        );
    }
    // Beyond what a 64-bit float holds: the reply does not parse.
    server.set_reply(TokenReply::ExpiresIn("1e400".into()));
    let err = ask(&reg, Duration::from_secs(5)).await.unwrap_err();
    assert!(err.to_string().contains("token reply is not JSON"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_token_replies_are_clear_errors() {
    let reg = token_registry().await;
    let server = reg.token_server().expect("token server");
    let cases: Vec<(TokenReply, &str)> = vec![
        (
            TokenReply::Body(b"<html>sign in</html>".to_vec()),
            "token reply is not JSON",
        ),
        (
            TokenReply::Body(br#"{"expires_in":300}"#.to_vec()),
            "token reply has no token",
        ),
        (
            TokenReply::Body(br#"{"token":"","access_token":""}"#.to_vec()),
            "token reply has no token",
        ),
        (
            TokenReply::Body(br#"{"token":"a\r\nX-Injected: 1"}"#.to_vec()),
            "not printable ASCII",
        ),
        (TokenReply::Body(vec![b' '; 5 << 20]), LIMIT),
        // Refused on the announced length alone: waiting for the body
        // would end in the read timeout instead.
        (TokenReply::AnnouncedLength(1 << 40), LIMIT),
        (TokenReply::Endless, LIMIT),
    ];
    for (reply, want) in cases {
        server.set_reply(reply.clone());
        let started = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(30), ask(&reg, Duration::from_secs(10)))
                .await
                .unwrap_or_else(|_| panic!("{reply:?}: no answer in 30 s"));
        let err = answer.expect_err("a hostile token reply was accepted");
        let text = err.to_string();
        assert!(text.contains(want), "{reply:?}: {text}");
        assert!(text.contains(&reg.host()), "{reply:?}: {text}");
        assert!(!text.contains("pw-token"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{reply:?}: took {:?}",
            started.elapsed()
        );
    }
}

/// What the hostile registry sends for one request.
enum Reply {
    /// These bytes, then the connection closes.
    Raw(Vec<u8>),
    /// This status line and headers, then a chunked body that never ends.
    Endless(String),
}

fn http(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    Reply::Raw(out)
}

fn endless(status: &str, content_type: &str) -> Reply {
    Reply::Endless(format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ))
}

/// How the hostile registry answers a request target.
type Answer = dyn Fn(&str) -> Reply + Send + Sync;

/// A registry on loopback that answers each request with `answer(target)`
/// and logs the targets. Stops with the test's runtime.
async fn hostile_registry(
    answer: impl Fn(&str) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (answer, seen) = (Arc::new(answer), log.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (answer, seen) = (answer.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push(target.clone());
                match answer(&target) {
                    Reply::Raw(bytes) => {
                        let _ = conn.write_all(&bytes).await;
                    }
                    Reply::Endless(head) => {
                        if conn.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
                        chunk.extend(std::iter::repeat_n(b'x', 64 * 1024));
                        chunk.extend_from_slice(b"\r\n");
                        // Until the client hangs up.
                        while conn.write_all(&chunk).await.is_ok() {}
                    }
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    (host, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_error_bodies_are_summarised() {
    for reply in [
        || http("404 Not Found", &[], &vec![b'x'; 8 << 20]),
        || endless("500 Internal Server Error", "text/html"),
    ] {
        let (host, _) = hostile_registry(move |_| reply()).await;
        let client = client(None, Duration::from_secs(5));
        let r = reference(&host, "team/app:v1");
        let err = tokio::time::timeout(Duration::from_secs(30), client.get_manifest(&r))
            .await
            .expect("an answer in 30 s")
            .unwrap_err();
        let Error::Status { message, .. } = &err else {
            panic!("not a status error: {err}");
        };
        assert!(
            message.starts_with("xxx") && message.ends_with('…'),
            "{err}"
        );
        assert!(message.chars().count() <= 201, "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_manifests_are_refused() {
    let (host, _) =
        hostile_registry(|_| endless("200 OK", oci_model::media_type::OCI_MANIFEST)).await;
    let client = client(None, Duration::from_secs(5));
    let err = client
        .get_manifest(&reference(&host, "team/app:v1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(LIMIT), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tag_lists_are_refused() {
    let json = "application/json";
    let mut big = br#"{"name":"team/app","tags":["#.to_vec();
    while big.len() <= 5 << 20 {
        big.extend_from_slice(br#""v1.2.3","#);
    }
    big.extend_from_slice(br#""last"]}"#);
    let big = Arc::new(big);
    let cases: Vec<(Box<Answer>, &str)> = vec![
        (
            Box::new(move |_: &str| http("200 OK", &[("Content-Type", json)], &big)),
            "the page of tags is larger than the 4194304-byte limit",
        ),
        (
            Box::new(move |_: &str| endless("200 OK", json)),
            "the page of tags is larger than the 4194304-byte limit",
        ),
        (
            // 100,000 tags a page, each page linking to itself.
            Box::new(move |_: &str| {
                let mut page = br#"{"tags":["#.to_vec();
                page.extend(std::iter::repeat_n(&br#""t","#[..], 99_999).flatten());
                page.extend_from_slice(br#""t"]}"#);
                http(
                    "200 OK",
                    &[
                        ("Content-Type", json),
                        ("Link", r#"</v2/team/app/tags/list?n=1000>; rel="next""#),
                    ],
                    &page,
                )
            }),
            "more than 1000000 tags",
        ),
    ];
    for (answer, want) in cases {
        let (host, _) = hostile_registry(answer).await;
        let client = client(None, Duration::from_secs(5));
        let err = tokio::time::timeout(
            Duration::from_secs(60),
            client.list_tags(&reference(&host, "team/app")),
        )
        .await
        .expect("an answer in 60 s")
        .unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_pages_are_followed_only_within_the_registry() {
    let (elsewhere, elsewhere_log) =
        hostile_registry(|_| http("200 OK", &[], br#"{"tags":["stolen"]}"#)).await;
    let link = format!(r#"<http://{elsewhere}/v2/team/app/tags/list?last=a>; rel="next""#);
    let (host, log) = hostile_registry(move |target| {
        if target.contains("last=") {
            http("200 OK", &[], br#"{"tags":["b"]}"#)
        } else if target.contains("other") {
            http("200 OK", &[("Link", &link)], br#"{"tags":["a"]}"#)
        } else {
            // Relative to the page: the same registry.
            http(
                "200 OK",
                &[("Link", r#"<list?n=1000&last=a>; rel="next""#)],
                br#"{"tags":["a"]}"#,
            )
        }
    })
    .await;
    let client = client(None, Duration::from_secs(5));
    let tags = client
        .list_tags(&reference(&host, "team/app"))
        .await
        .unwrap();
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(
        log.lock().unwrap().last().map(String::as_str),
        Some("/v2/team/app/tags/list?n=1000&last=a")
    );

    let err = client
        .list_tags(&reference(&host, "team/other"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("on another server"), "{err}");
    assert!(elsewhere_log.lock().unwrap().is_empty());
}
