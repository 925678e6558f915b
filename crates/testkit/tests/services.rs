//! Proves the server fixtures against their real programs: PostgreSQL,
//! redis-server and SeaweedFS's S3 gateway start, answer, and leave
//! nothing behind.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use testkit::{Postgres, Redis, S3};

/// Whether something accepts connections on `port`.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits up to 5 s for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[tokio::test]
async fn postgres_serves_separate_databases_and_goes_away() {
    let pg = Postgres::start().await.unwrap();
    let (port, dir) = (pg.port(), pg.dir().to_path_buf());
    assert!(listening(port));
    let a = pg.create_database().await.unwrap();
    let b = pg.create_database().await.unwrap();
    assert_ne!(a, b);
    pg.psql(&a, "CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1)")
        .await
        .unwrap();
    assert_eq!(pg.psql(&a, "SELECT sum(x) FROM t").await.unwrap(), "42");
    let err = pg.psql(&b, "SELECT * FROM t").await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let data = pg
        .psql(&a, "SELECT current_setting('data_directory')")
        .await
        .unwrap();
    assert_eq!(data, dir.join("data").to_string_lossy());
    // PostgreSQL refuses root, so under root the files are someone else's.
    let owner = std::fs::metadata(dir.join("data")).unwrap().uid();
    let me = std::fs::metadata(tempfile::tempdir().unwrap().path())
        .unwrap()
        .uid();
    assert!(me != 0 || owner != 0, "the server runs as root");
    drop(pg);
    assert!(!listening(port));
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[tokio::test]
async fn postgres_shared_is_one_server() {
    let a = Postgres::shared().await.unwrap();
    let b = Postgres::shared().await.unwrap();
    assert_eq!(a.port(), b.port());
    let url = a.create_database().await.unwrap();
    assert_eq!(a.psql(&url, "SELECT 1").await.unwrap(), "1");
}

#[tokio::test]
async fn redis_answers_and_goes_away() {
    let mut redis = Redis::start().await.unwrap();
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(redis.command("PING").unwrap(), "+PONG");
    assert_eq!(redis.command("SET k v").unwrap(), "+OK");
    assert_eq!(redis.command("DBSIZE").unwrap(), ":1");
    let port = redis.addr().port();
    redis.stop();
    assert!(eventually(|| !listening(port)));
    assert!(redis.command("PING").is_err());
}

#[tokio::test]
async fn s3_stores_objects_for_signed_requests_only() {
    let s3 = S3::start_with_bucket("testkit-bucket").await.unwrap();
    assert_eq!(s3.bucket(), "testkit-bucket");
    assert_eq!(s3.region(), "us-east-1");
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    assert!(
        !format!("{s3:?}").contains(s3.secret_access_key()),
        "secret in Debug"
    );

    assert_eq!(s3.get_object("a/b.json").await.unwrap(), None);
    let body = br#"{"x": 1}"#.to_vec();
    s3.put_object("a/b.json", body.clone()).await.unwrap();
    assert_eq!(s3.get_object("a/b.json").await.unwrap(), Some(body));

    // Anonymous requests are refused.
    let mut conn = TcpStream::connect(s3.addr()).unwrap();
    let request = format!(
        "GET /{}/a/b.json HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s3.bucket(),
        s3.addr()
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");

    let (port, dir) = (s3.addr().port(), s3.dir().to_path_buf());
    drop(s3);
    assert!(!listening(port));
    assert!(!dir.exists(), "{} left behind", dir.display());
}
