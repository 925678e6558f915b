//! The backends every check runs against, and the macro that makes one
//! test per backend out of one check.

use std::time::Duration;

use jobs::{Jobs, JobsConfig};
use tempfile::TempDir;
use testkit::{Postgres, Redis};

/// A database and a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file with its embedded queue.
    Sqlite,
    /// PostgreSQL with its embedded queue (`SKIP LOCKED`, `NOTIFY`).
    Postgres,
    /// A SQLite file with a Redis queue (and Redis pub/sub).
    SqliteRedis,
    /// PostgreSQL with a Redis queue (and Redis pub/sub).
    PostgresRedis,
}

impl Backend {
    pub fn named(name: &str) -> Self {
        match name {
            "sqlite" => Self::Sqlite,
            "postgres" => Self::Postgres,
            "sqlite_redis" => Self::SqliteRedis,
            "postgres_redis" => Self::PostgresRedis,
            _ => panic!("no backend {name}"),
        }
    }

    pub fn redis(self) -> bool {
        matches!(self, Self::SqliteRedis | Self::PostgresRedis)
    }

    pub fn postgres(self) -> bool {
        matches!(self, Self::Postgres | Self::PostgresRedis)
    }
}

/// One backend's database and queue, and a [`Jobs`] open on them.
pub struct Env {
    pub backend: Backend,
    pub jobs: Jobs,
    pub database: String,
    pub queue: String,
    pub redis: Option<Redis>,
    lease: Duration,
    max_attempts: u32,
    _dir: TempDir,
}

impl Env {
    /// Default lease and attempts.
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, Duration::from_secs(60), 5).await
    }

    pub async fn with(backend: Backend, lease: Duration, max_attempts: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = if backend.postgres() {
            Postgres::shared()
                .await
                .expect("postgres starts")
                .create_database()
                .await
                .expect("createdb")
        } else {
            format!("sqlite://{}", dir.path().join("jobs.db").display())
        };
        let redis = if backend.redis() {
            Some(Redis::start().await.expect("redis starts"))
        } else {
            None
        };
        let queue = redis.as_ref().map_or("database".to_owned(), Redis::url);
        let config = JobsConfig::new(&database, &queue)
            .lease(lease)
            .max_attempts(max_attempts);
        let jobs = Jobs::open(config).await.expect("jobs open");
        Self {
            backend,
            jobs,
            database,
            queue,
            redis,
            lease,
            max_attempts,
            _dir: dir,
        }
    }

    /// Another instance on the same database and queue, as a worker on
    /// another machine would open (on SQLite: another process on the same
    /// machine).
    pub async fn second(&self) -> Jobs {
        let config = JobsConfig::new(&self.database, &self.queue)
            .lease(self.lease)
            .max_attempts(self.max_attempts);
        Jobs::open(config).await.expect("second instance opens")
    }
}

/// `on!(check, [sqlite, postgres, …])` makes module `check` with one test
/// per backend, each running `check(Env)`. `on!(check(lease_ms, attempts),
/// […])` opens the backends with that lease and attempt limit.
#[macro_export]
macro_rules! on {
    ($check:ident, [$($backend:ident),+ $(,)?]) => {
        mod $check {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend() {
                    let backend = $crate::harness::Backend::named(stringify!($backend));
                    super::$check($crate::harness::Env::new(backend).await).await;
                }
            )+
        }
    };
    ($check:ident($lease_ms:expr, $attempts:expr), [$($backend:ident),+ $(,)?]) => {
        mod $check {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend() {
                    let backend = $crate::harness::Backend::named(stringify!($backend));
                    let lease = std::time::Duration::from_millis($lease_ms);
                    super::$check($crate::harness::Env::with(backend, lease, $attempts).await).await;
                }
            )+
        }
    };
}
