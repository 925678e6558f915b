//! A throwaway `redis-server` on a loopback port.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::service::{Supervised, tail};
use crate::{Error, Result, find_program, io_err, net};

/// Attempts with a fresh port when another process took the one we picked.
const PORT_ATTEMPTS: usize = 3;

/// Starts `redis-server` on port `$3` with its files in `$2` (no
/// snapshots, no append-only file), waits until it answers `PING`,
/// prints `ready`, and once stdin closes kills it and removes `$2`.
const SCRIPT: &str = r#"
bin=$1 dir=$2 port=$3
"$bin" --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
    --daemonize no --logfile "$dir/redis.log" --protected-mode yes &
pid=$!
i=0
until [ -s "$dir/redis.log" ] && grep -q "Ready to accept connections" "$dir/redis.log"; do
    if ! kill -0 $pid 2>/dev/null; then echo "redis-server exited"; exit 1; fi
    i=$((i + 1))
    if [ $i -gt 500 ]; then echo "redis-server not ready in 10 s"; kill -9 $pid; exit 1; fi
    sleep 0.02
done
echo ready
read -r _ || true
kill -9 $pid
wait $pid 2>/dev/null
rm -rf "$dir"
"#;

/// A running `redis-server` on `127.0.0.1`, killed and its directory
/// removed on drop (or when the test process exits).
///
/// Nothing is persisted: a restart would start empty. The program comes
/// from `$HOIST_REDIS_SERVER`, else `/usr/bin/redis-server`, else `PATH`.
///
/// ```no_run
/// # async fn demo() -> testkit::Result<()> {
/// let redis = testkit::Redis::start().await?;
/// let url = redis.url(); // redis://127.0.0.1:PORT
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Redis {
    server: Option<Supervised>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Redis {
    /// Starts a server; returns once it accepts connections.
    pub async fn start() -> Result<Self> {
        tokio::task::spawn_blocking(start_blocking)
            .await
            .map_err(|e| Error::ServiceStart {
                service: "redis-server".into(),
                reason: e.to_string(),
                log_tail: String::new(),
            })?
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server now, for "Redis is down" tests.
    pub fn stop(&mut self) {
        self.server = None;
    }

    /// Sends one inline command (`PING`, `DBSIZE`, …) and returns the
    /// first line of the reply, for checks that need no client library.
    pub fn command(&self, line: &str) -> Result<String> {
        let mut conn = TcpStream::connect(self.addr).map_err(io_err("connect to redis"))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io_err("set a read timeout"))?;
        conn.write_all(format!("{line}\r\n").as_bytes())
            .map_err(io_err("send to redis"))?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            if conn.read(&mut byte).map_err(io_err("read from redis"))? == 0 {
                break;
            }
            reply.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("redis.log"), lines)
    }
}

fn start_blocking() -> Result<Redis> {
    let bin = find_program(
        "HOIST_REDIS_SERVER",
        &["/usr/bin/redis-server"],
        "redis-server",
    )?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let dir = tempfile::Builder::new()
            .prefix("hoist-redis-")
            .tempdir()
            .map_err(io_err("create redis temp dir"))?
            .keep();
        let addr = net::free_addr()?;
        let log = dir.join("redis.log");
        let started = Supervised::start(
            "redis-server",
            SCRIPT,
            &[
                &bin.to_string_lossy(),
                &dir.to_string_lossy(),
                &addr.port().to_string(),
            ],
            None,
            &log,
        );
        match started {
            Ok(server) => {
                let redis = Redis {
                    server: Some(server),
                    addr,
                    dir,
                };
                wait_for_pong(&redis)?;
                return Ok(redis);
            }
            Err(e) => {
                let in_use = tail(&log, 20).contains("Address already in use");
                let _ = std::fs::remove_dir_all(&dir);
                if !in_use || attempt == PORT_ATTEMPTS {
                    return Err(e);
                }
            }
        }
    }
}

/// "Ready to accept connections" comes just before the listener answers
/// on some versions; make sure it does.
fn wait_for_pong(redis: &Redis) -> Result<()> {
    let started = Instant::now();
    loop {
        match redis.command("PING") {
            Ok(reply) if reply == "+PONG" => return Ok(()),
            _ if started.elapsed() > Duration::from_secs(10) => {
                return Err(Error::ServiceStart {
                    service: "redis-server".into(),
                    reason: "no PONG within 10 s".into(),
                    log_tail: redis.log_tail(20),
                });
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
