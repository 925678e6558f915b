//! A throwaway PostgreSQL cluster on a loopback port, in a temporary
//! directory, for tests of code that stores records in PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;

use crate::service::{Supervised, chown, tail, unprivileged_user};
use crate::{Error, Result, find_program, io_err, net};

/// Attempts with a fresh port when another process took the one we picked.
const PORT_ATTEMPTS: usize = 3;

/// Starts the cluster in `$2/data` on port `$3`, prints `ready`, and
/// once stdin closes stops it (`immediate`: the data goes anyway) and
/// removes `$2`. Settings trade durability for speed: nothing here
/// outlives the test run.
const SCRIPT: &str = r#"
bin=$1 dir=$2 port=$3
if ! "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -s -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB" start; then
    echo "pg_ctl start failed"
    exit 1
fi
echo ready
read -r _ || true
"$bin/pg_ctl" -D "$dir/data" -m immediate -w -s stop
rm -rf "$dir"
"#;

/// A running PostgreSQL server on `127.0.0.1`, stopped and its files
/// removed on drop (or when the test process exits, whichever is first).
///
/// The superuser is `postgres`, trusted without a password on loopback.
/// When the tests run as root the server runs as the `postgres` user (or
/// `nobody`), as PostgreSQL refuses root. Programs come from
/// `$HOIST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else
/// `PATH`.
///
/// ```no_run
/// # async fn demo() -> testkit::Result<()> {
/// let pg = testkit::Postgres::shared().await?;
/// let url = pg.create_database().await?; // postgres://postgres@127.0.0.1:PORT/test_N
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Postgres {
    // Held for its `Drop`, which stops the server; declared first so it
    // goes before anything else.
    _server: Supervised,
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
}

impl Postgres {
    /// Makes a cluster (`initdb`) and starts it. Takes a few seconds;
    /// tests that can share a server use [`Postgres::shared`] and a
    /// database each.
    pub async fn start() -> Result<Self> {
        tokio::task::spawn_blocking(start_blocking)
            .await
            .map_err(|e| Error::ServiceStart {
                service: "postgres".into(),
                reason: e.to_string(),
                log_tail: String::new(),
            })?
    }

    /// One server for the whole test process, started on first use and
    /// stopped when the process exits.
    pub async fn shared() -> Result<&'static Self> {
        static SHARED: OnceCell<Postgres> = OnceCell::const_new();
        SHARED.get_or_try_init(Self::start).await
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `name` on this server.
    pub fn url_for(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The directory of its files (data directory, log, socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a new, empty database with a unique name and returns its
    /// URL, so tests sharing the server do not see each other's tables.
    pub async fn create_database(&self) -> Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let createdb = self.bin.join("createdb");
        let out = tokio::process::Command::new(&createdb)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", &name])
            .output()
            .await
            .map_err(io_err(format!("run {}", createdb.display())))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("createdb {name}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(self.url_for(&name))
    }

    /// Runs `sql` with `psql` on the database at `url` (one of this
    /// server's) and returns what it prints: rows one a line, columns
    /// separated by `|`, no headers.
    pub async fn psql(&self, url: &str, sql: &str) -> Result<String> {
        let psql = self.bin.join("psql");
        let out = tokio::process::Command::new(&psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .await
            .map_err(io_err(format!("run {}", psql.display())))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("psql -c {sql:?}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("postgres.log"), lines)
    }
}

/// The directory holding `initdb`, `pg_ctl` and `createdb`.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HOIST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let initdb = find_program("HOIST_PG_BIN", &[], "initdb")?;
    Ok(initdb
        .parent()
        .map_or_else(|| PathBuf::from("/usr/bin"), Path::to_path_buf))
}

fn start_blocking() -> Result<Postgres> {
    let bin = bin_dir()?;
    let user = unprivileged_user();
    let dir = tempfile::Builder::new()
        .prefix("hoist-postgres-")
        .tempdir()
        .map_err(io_err("create postgres temp dir"))?
        .keep();
    let started = (|| {
        chown(&dir, user)?;
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--no-instructions", "--locale=C"]);
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt as _;
            initdb.uid(uid).gid(gid);
        }
        let out = initdb
            .output()
            .map_err(io_err(format!("run {}/initdb", bin.display())))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: "initdb".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let bin_s = bin.to_string_lossy();
        let dir_s = dir.to_string_lossy();
        let log = dir.join("postgres.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = net::free_addr()?.port();
            match Supervised::start(
                "postgres",
                SCRIPT,
                &[&bin_s, &dir_s, &port.to_string()],
                user,
                &log,
            ) {
                Ok(server) => {
                    return Ok(Postgres {
                        _server: server,
                        port,
                        bin: bin.clone(),
                        dir: dir.clone(),
                    });
                }
                Err(e) if attempt < PORT_ATTEMPTS && tail(&log, 20).contains("could not bind") => {
                    drop(e);
                }
                Err(e) => return Err(e),
            }
        }
    })();
    if started.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    started
}
