//! One health probe: a plain HTTP/1.1 `GET` over loopback, every step
//! bounded in time and bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use crate::status::{MAX_STATUS_LINE, StatusLine, StatusLineError, parse_status_line};

/// The longest path probed.
pub const MAX_PATH: usize = 2048;

/// What a probe asks for: `http://127.0.0.1:PORT/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    port: u16,
    path: String,
}

/// Why a [`Target`] or a probe cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Port 0 cannot be connected to.
    #[error("port 0 cannot be probed")]
    Port,
    /// The path is not an absolute request path of visible ASCII.
    #[error(
        "path {path:?} must start with `/` and hold at most {MAX_PATH} visible ASCII characters, without `#`"
    )]
    Path {
        /// The path given.
        path: String,
    },
    /// The probing thread could not enter the network namespace.
    #[error("cannot enter the network namespace: {0}")]
    Namespace(#[source] std::io::Error),
    /// The probing thread could not be started.
    #[error("cannot start the probing thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl Target {
    /// Checks `port` and `path`: the path goes into the request line
    /// as it is, so it must not hold spaces, control characters (a CR or
    /// LF would smuggle headers in) or a fragment.
    ///
    /// ```
    /// let target = http_probe::Target::new(8000, "/health?full=1").unwrap();
    /// assert_eq!(target.to_string(), "http://127.0.0.1:8000/health?full=1");
    /// assert!(http_probe::Target::new(8000, "/x\r\nHost: evil").is_err());
    /// assert!(http_probe::Target::new(0, "/").is_err());
    /// ```
    pub fn new(port: u16, path: &str) -> Result<Self, Error> {
        if port == 0 {
            return Err(Error::Port);
        }
        let visible = path.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !path.starts_with('/') || path.len() > MAX_PATH || !visible {
            return Err(Error::Path { path: path.into() });
        }
        Ok(Self {
            port,
            path: path.into(),
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://127.0.0.1:{}{}", self.port, self.path)
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The server answered with this status line.
    Answered(StatusLine),
    /// Nothing listens on the port.
    Refused,
    /// The connection was made but no status line came within the time.
    NoAnswer,
    /// The server closed (or reset) the connection without an answer.
    Closed,
    /// The server answered something that is not an HTTP/1.x status line.
    Malformed(StatusLineError),
    /// Any other network failure (loopback down, no route...).
    Unreachable(String),
}

impl Probe {
    /// Whether this is a `200` answer.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Answered(line) if line.code == 200)
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answered(line) if line.reason.is_empty() => {
                write!(f, "answered {}", line.code)
            }
            Self::Answered(line) => {
                // A reason phrase from the server, shortened for a log line.
                let reason: String = line.reason.chars().take(80).collect();
                write!(f, "answered {} {reason}", line.code)
            }
            Self::Refused => f.write_str("connection refused: nothing listens on the port"),
            Self::NoAnswer => f.write_str("connected, but no answer in time"),
            Self::Closed => f.write_str("the connection was closed without an answer"),
            Self::Malformed(e) => write!(f, "answered garbage: {e}"),
            Self::Unreachable(e) => write!(f, "unreachable: {e}"),
        }
    }
}

/// Probes `target` on this thread's network namespace, giving up after
/// `timeout` (connecting, sending and reading the status line together).
///
/// Reads at most [`MAX_STATUS_LINE`] bytes and then closes the
/// connection: the headers and body are never read, so a huge or endless
/// answer costs nothing.
///
/// ```no_run
/// use std::time::Duration;
///
/// let target = http_probe::Target::new(8000, "/health").unwrap();
/// let probe = http_probe::probe(&target, Duration::from_secs(2));
/// println!("{target}: {probe}");
/// ```
pub fn probe(target: &Target, timeout: Duration) -> Probe {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, target.port));
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: hoist-smoke\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.port
    );
    if let Err(e) = left(deadline)
        .and_then(|t| stream.set_write_timeout(Some(t)))
        .and_then(|()| stream.write_all(request.as_bytes()))
    {
        return failure(e);
    }
    let mut head = [0u8; MAX_STATUS_LINE];
    let mut got = 0;
    loop {
        let read = left(deadline)
            .and_then(|t| stream.set_read_timeout(Some(t)))
            .and_then(|()| stream.read(&mut head[got..]));
        match read {
            Ok(0) if got == 0 => return Probe::Closed,
            Ok(0) => return Probe::Malformed(StatusLineError::Unterminated),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return failure(e),
        }
        match parse_status_line(&head[..got]) {
            Ok(Some((line, _))) => return Probe::Answered(line),
            Ok(None) => {}
            Err(e) => return Probe::Malformed(e),
        }
    }
}

/// Probes `target` from inside the network namespace `netns` (an open
/// `/proc/PID/ns/net` or a bind mount of one), on a thread of its own
/// that enters it: the caller's thread and the rest of the process stay
/// where they are. Needs `CAP_SYS_ADMIN`.
///
/// ```no_run
/// use std::time::Duration;
///
/// let netns = std::fs::File::open("/proc/4242/ns/net").unwrap();
/// let target = http_probe::Target::new(8000, "/health").unwrap();
/// let probe = http_probe::probe_in(&netns, &target, Duration::from_secs(2)).unwrap();
/// assert!(probe.is_ok(), "{probe}");
/// ```
pub fn probe_in(netns: impl AsFd, target: &Target, timeout: Duration) -> Result<Probe, Error> {
    let netns: OwnedFd = netns
        .as_fd()
        .try_clone_to_owned()
        .map_err(Error::Namespace)?;
    let target = target.clone();
    // The thread ends with the probe: a thread that changed namespace is
    // never reused for anything else.
    let thread = std::thread::Builder::new()
        .name("http-probe".into())
        .spawn(move || {
            setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Namespace(e.into()))?;
            Ok(probe(&target, timeout))
        })
        .map_err(Error::Thread)?;
    thread.join().expect("the probing thread does not panic")
}

/// The time left before `deadline`, or a timeout error when none is.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    Ok(left)
}

fn failure(e: std::io::Error) -> Probe {
    match e.kind() {
        ErrorKind::ConnectionRefused => Probe::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Probe::NoAnswer,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Probe::Closed
        }
        _ => Probe::Unreachable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A loopback server that answers one connection with `answer`, or
    /// holds it open without a word when `answer` is `None`.
    fn serve_once(answer: Option<Vec<u8>>) -> (Target, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            match answer {
                Some(bytes) => {
                    let _ = conn.write_all(&bytes);
                }
                None => std::thread::sleep(Duration::from_millis(500)),
            }
        });
        (Target::new(port, "/health").unwrap(), server)
    }

    #[test]
    fn answers_are_read_up_to_the_status_line() {
        let (target, server) = serve_once(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ));
        let got = probe(&target, Duration::from_secs(5));
        assert!(got.is_ok(), "{got}");
        server.join().unwrap();

        let (target, server) = serve_once(Some(b"HTTP/1.0 503 Starting\r\n\r\n".to_vec()));
        let got = probe(&target, Duration::from_secs(5));
        assert!(!got.is_ok());
        assert_eq!(got.to_string(), "answered 503 Starting");
        server.join().unwrap();
    }

    #[test]
    fn silence_closing_and_garbage_are_named() {
        let (target, server) = serve_once(None);
        let started = Instant::now();
        assert_eq!(probe(&target, Duration::from_millis(200)), Probe::NoAnswer);
        assert!(started.elapsed() < Duration::from_millis(450));
        server.join().unwrap();

        let (target, server) = serve_once(Some(Vec::new()));
        assert_eq!(probe(&target, Duration::from_secs(5)), Probe::Closed);
        server.join().unwrap();

        let (target, server) = serve_once(Some(vec![b'x'; 3 * MAX_STATUS_LINE]));
        assert_eq!(
            probe(&target, Duration::from_secs(5)),
            Probe::Malformed(StatusLineError::Version)
        );
        server.join().unwrap();

        let mut long = b"HTTP/1.1 200 ".to_vec();
        long.resize(3 * MAX_STATUS_LINE, b'a');
        let (target, server) = serve_once(Some(long));
        assert_eq!(
            probe(&target, Duration::from_secs(5)),
            Probe::Malformed(StatusLineError::TooLong {
                limit: MAX_STATUS_LINE
            })
        );
        server.join().unwrap();

        let (target, server) = serve_once(Some(b"HTTP/1.1 20".to_vec()));
        assert_eq!(
            probe(&target, Duration::from_secs(5)),
            Probe::Malformed(StatusLineError::Unterminated)
        );
        server.join().unwrap();

        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Target::new(port, "/").unwrap();
        assert_eq!(probe(&target, Duration::from_secs(5)), Probe::Refused);
    }

    #[test]
    fn targets_refuse_what_would_break_the_request() {
        for bad in [
            "",
            "health",
            "/a b",
            "/a\r\nX: y",
            "/a#frag",
            "/\u{e9}",
            "/\t",
        ] {
            assert!(
                matches!(Target::new(80, bad), Err(Error::Path { .. })),
                "{bad:?}"
            );
        }
        assert!(Target::new(80, &format!("/{}", "a".repeat(MAX_PATH))).is_err());
        assert!(Target::new(80, &format!("/{}", "a".repeat(MAX_PATH - 1))).is_ok());
        assert!(matches!(Target::new(0, "/"), Err(Error::Port)));
    }

    #[test]
    fn probing_in_this_threads_namespace_works_as_a_plain_probe() {
        // Entering one's own namespace needs CAP_SYS_ADMIN too: as root only.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (target, server) = serve_once(Some(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()));
        let own = std::fs::File::open("/proc/self/ns/net").unwrap();
        assert!(
            probe_in(&own, &target, Duration::from_secs(5))
                .unwrap()
                .is_ok()
        );
        server.join().unwrap();
    }
}
