//! The web console: a static single-page app at `/`, its files compiled
//! into the binary (no CDN, nothing fetched at run time). It is a client
//! of the `/v1` API like any other: it keeps the API key in the browser's
//! session storage and sends it as a bearer token, never in a URL.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `(name, content type, bytes)` of every file the console serves.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("console/api.js"),
    ),
    (
        "monitor.js",
        "text/javascript; charset=utf-8",
        include_str!("console/monitor.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("console/style.css"),
    ),
];

const INDEX: &str = include_str!("console/index.html");

/// Only the console's own files run and load; the API and its WebSocket
/// are the only places it talks to; no page may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary: revalidate, never serve stale code.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `/`: the console's page.
pub(crate) async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `/console/{file}`: one of its scripts or its style sheet.
pub(crate) async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => page(content_type, body),
        None => (StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_files_that_exist() {
        for reference in INDEX.split('"').filter_map(|s| s.strip_prefix("/console/")) {
            assert!(
                FILES.iter().any(|(n, _, _)| *n == reference),
                "index.html loads /console/{reference}, which is not served"
            );
        }
        // Every module a script imports is served too.
        for (_, _, body) in FILES {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line.split('\'').nth(1).unwrap();
                let name = target.strip_prefix("./").unwrap();
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == name),
                    "{line}: not served"
                );
            }
        }
    }
}
