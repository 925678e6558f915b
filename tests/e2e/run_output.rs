//! A Dockerfile `RUN`'s output as it is written: on `hoist build -f`'s
//! terminal and on a release build's WebSocket, both streams, before the
//! step ends; and output too big or too fast for its readers, which stays
//! bounded and never stalls the build.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::service::Serve;

/// A RUN that writes a line on stdout, then one on stderr four seconds
/// later.
const SLOW: &str = "RUN echo first-line; sleep 4; echo second-line >&2";

/// What a `hoist build -f` wrote on stderr (each line with the time it
/// was read), how it ended, and its peak memory.
struct Watched {
    lines: Vec<(Instant, String)>,
    success: bool,
    peak_rss_kib: u64,
}

impl Watched {
    fn text(&self) -> String {
        let lines: Vec<&str> = self.lines.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }

    /// When the line `wanted` was read.
    fn when(&self, wanted: &str) -> Instant {
        self.lines
            .iter()
            .find(|(_, l)| l == wanted)
            .unwrap_or_else(|| panic!("{wanted:?} not in:\n{}", self.text()))
            .0
    }
}

/// The last few KiB of `text`.
fn end_of(text: &str) -> &str {
    let mut at = text.len().saturating_sub(4000);
    while !text.is_char_boundary(at) {
        at += 1;
    }
    &text[at..]
}

/// The largest resident set `pid` had so far, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Builds `dockerfile` (`FROM ${BASE}` first, BusyBox as the base) with a
/// cache of its own, reading its stderr as it comes; killed after two
/// minutes.
fn watch_build(dockerfile: &str) -> Watched {
    let ctx = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("ARG BASE\nFROM ${{BASE}}\n{dockerfile}\n"),
    )
    .unwrap();
    let base = testkit::busybox_base().expect("busybox base image");
    let layout = format!("oci:{}:1", ctx.path().join("out").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("build")
        .arg("-f")
        .arg(ctx.path().join("Dockerfile"))
        .arg(ctx.path())
        .args(["--build-arg", &format!("BASE={}", base.oci_ref())])
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["--tag", "127.0.0.1:1/acme/live:1", "--output", &layout])
        .env_remove("DOCKER_CONFIG")
        .env("HOME", "/nonexistent-home-for-tests")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hoist");
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).split(b'\n') {
            let line = line.unwrap();
            lines.push((Instant::now(), String::from_utf8_lossy(&line).into_owned()));
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the build hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Watched {
        lines: reader.join().unwrap(),
        success: status.success(),
        peak_rss_kib: peak,
    }
}

#[test]
fn run_output_reaches_the_terminal_as_it_is_written() {
    let built = watch_build(SLOW);
    assert!(built.success, "{}", built.text());
    let (first, second) = (built.when("  first-line"), built.when("  second-line"));
    assert!(
        second.duration_since(first) >= Duration::from_secs(2),
        "first-line came {:?} before second-line:\n{}",
        second.duration_since(first),
        built.text()
    );
}

#[test]
fn floods_of_output_stay_bounded_and_end_as_the_command_does() {
    // A baseline: the same build with a line of output.
    let quiet = watch_build("RUN echo quiet");
    assert!(quiet.success, "{}", quiet.text());

    // 50 MiB without a newline, then 15 MB of lines as fast as they come.
    for run in [
        "RUN head -c 52428800 /dev/zero | tr '\\0' x; echo done-now >&2",
        "RUN seq 2000000; echo done-now >&2",
    ] {
        let built = watch_build(run);
        let text = built.text();
        assert!(built.success, "{run}: {}", end_of(&text));
        // Clipped at the step's limit, or thinned out by a reader that
        // could not keep up: never all of it.
        assert!(
            text.contains("[output clipped, log limit 2 MiB reached]")
                || text.contains(" bytes dropped ("),
            "{run}"
        );
        // The step's log is bounded, and so is the process.
        let bytes: usize = built.lines.iter().map(|(_, l)| l.len() + 1).sum();
        assert!(bytes < 3 << 20, "{run}: {bytes} bytes of log");
        assert!(
            built.peak_rss_kib < quiet.peak_rss_kib + 64 * 1024,
            "{run}: {} KiB at peak, {} KiB for a quiet build",
            built.peak_rss_kib,
            quiet.peak_rss_kib
        );
    }

    // A failing flood fails, quoting its last lines (stderr's after a
    // pause the reader catches up in).
    let failed = watch_build("RUN seq 1000000; sleep 1; echo last-words >&2; exit 7");
    assert!(!failed.success);
    let text = failed.text();
    let at = text
        .find("RUN exited with status 7")
        .unwrap_or_else(|| panic!("no error in {}", end_of(&text)));
    assert!(text[at..].contains("last-words"), "{}", &text[at..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_build_streams_run_output_over_its_websocket() {
    let registry = testkit::Registry::start().await.unwrap();
    let host = registry.host();
    let serve = Serve::start(&["--release-registry", &host]);
    let api = &serve.client;
    let base = testkit::busybox_base().expect("busybox base").oci_ref();
    let dockerfile = format!("ARG BASE\nFROM ${{BASE}}\n{SLOW}\n");
    let (status, created) = api
        .post(
            "/v1/releases/build",
            json!({
                "dockerfile": base64::engine::general_purpose::STANDARD.encode(dockerfile),
                "target_registry": host,
                "image_name": "acme/live",
                "image_tag": "1",
                "build_args": {"BASE": base},
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let job = created["job_id"].as_str().unwrap();

    // Every log line with the time it arrived (lines of the backlog when
    // the stream opened).
    let ws = format!(
        "{}/v1/builds/{job}/stream",
        api.url.replacen("http", "ws", 1)
    );
    let mut request = ws.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", api.key).parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut logs: Vec<(Instant, String)> = Vec::new();
    let mut last = Value::Null;
    let read = async {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            let now = Instant::now();
            let messages = match value["type"].as_str() {
                Some("backlog") => value["messages"].as_array().cloned().unwrap_or_default(),
                _ => vec![value],
            };
            for m in messages {
                if m["type"] == "log" {
                    logs.push((now, m["line"].as_str().unwrap_or_default().to_owned()));
                }
                last = m;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), read)
        .await
        .expect("the stream closes after the build");
    assert_eq!(last["type"], "complete", "{last}\n{logs:#?}");
    let when = |needle: &str| {
        logs.iter()
            .find(|(_, l)| l == needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {logs:#?}"))
            .0
    };
    // stdout's line, then stderr's, four seconds apart: the first was
    // sent while the step ran.
    let gap = when("second-line").duration_since(when("first-line"));
    assert!(gap >= Duration::from_secs(2), "{gap:?}: {logs:#?}");
}
