//! Records and the work queue between hoist's API and its workers:
//! functions, build jobs with their live events, tasks, API keys and
//! image usage, in SQLite or PostgreSQL, with the queue in the same
//! database or in Redis Streams.
//!
//! Moving parts:
//!
//! - **Records** live in one database: SQLite (a file, nothing to run:
//!   the default) or PostgreSQL. The same queries run on both through
//!   `sqlx::Any`; the schema comes from migrations embedded in the crate
//!   and applied by [`Jobs::open`].
//! - **The queue** hands builds and tasks to workers under leases
//!   ([`Jobs::take`], [`Jobs::renew`], [`Jobs::ack`], [`Jobs::release`]).
//!   Embedded (a table of the database, taken with `FOR UPDATE SKIP
//!   LOCKED` on PostgreSQL) or Redis Streams with a consumer group. See
//!   the `queue` module docs on [`Lease`] for the guarantees: at least
//!   once, acknowledged after the result is stored, never run again once
//!   it has a result, one final result per id.
//! - **Events** of a build (progress, log lines, cancel requests, the
//!   final one) are stored with a number each and announced: in-process,
//!   through PostgreSQL `LISTEN/NOTIFY`, or Redis pub/sub.
//!   [`Jobs::subscribe`] returns the stored backlog and a live stream
//!   that continues exactly after it.
//!
//! Crash safety of queueing: with the embedded queue, a record and its
//! queue entry are written in one transaction. With Redis, the record is
//! committed first and queued right after; unfinished work that Redis
//! does not know (the process died in between, Redis lost its data) is
//! queued again by a recovery that runs at open and once per lease.
//!
//! Cancel safety: dropping any future of this crate leaves the database
//! consistent (every change is one transaction). A dropped
//! [`Jobs::take`] may leave an entry leased to nobody until its lease
//! runs out.
//!
//! ```
//! use std::time::Duration;
//! use jobs::{BuildEvent, BuildKind, BuildResult, Jobs, JobsConfig, NewBuild, Work};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("jobs.db");
//! // The API side: record a build, which queues it.
//! let jobs = Jobs::open(JobsConfig::new(format!("sqlite://{}", path.display()), "database")).await?;
//! let build = jobs.create_build(NewBuild::new(BuildKind::Release, serde_json::json!({"tag": "v1"}))).await?;
//!
//! // A worker: take it, log, store the result, then acknowledge.
//! let lease = jobs.take("worker-1", Duration::from_secs(5)).await?.expect("queued");
//! assert_eq!(lease.work, Work::Build(build.id));
//! jobs.log_build(build.id, "building…").await?;
//! let result = BuildResult::Completed {
//!     image_url: "registry.example/app:v1".into(),
//!     image_digest: "sha256:0123".into(),
//!     size_bytes: 1234,
//! };
//! assert!(jobs.finish_build(build.id, result).await?);
//! jobs.ack(lease).await?;
//!
//! // A late WebSocket client: everything is in the backlog.
//! let stream = jobs.subscribe(build.id).await?;
//! assert!(matches!(stream.backlog.as_slice(), [BuildEvent::Log { .. }, BuildEvent::Complete { .. }]));
//! # Ok::<(), jobs::Error>(())
//! # }).unwrap();
//! //! ```

mod builds;
mod bus;
mod db;
mod error;
mod events;
mod functions;
mod keys;
mod model;
mod queue;
mod schedule;
mod tasks;
mod usage;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Any, Transaction};

pub use builds::{MAX_LINE_BYTES, MAX_LOG_LINES};
pub use error::{Error, Result};
pub use events::{BuildStream, LiveEvents};
pub use model::{
    ApiKey, Build, BuildEvent, BuildFilter, BuildKind, BuildResult, BuildStatus, BuildUpdate,
    Function, Listed, LogLine, NewBuild, NewFunction, NewTask, Page, Task, TaskResult, TaskStatus,
    UsageKind,
};
pub use queue::{Lease, Work};

use bus::{Bus, Signal};
use db::Db;
use queue::redis::RedisQueue;

/// How long [`Jobs::health`] waits for each answer.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where [`Jobs`] keeps its records and queue, and how its leases work.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobsConfig {
    /// `sqlite://PATH` (the file is created when missing) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`.
    pub database: String,
    /// `database` (or `sqlite`): the embedded queue in the database;
    /// `redis://HOST:PORT[/DB]` (or `rediss://`): Redis Streams.
    pub queue: String,
    /// How long a taken piece of work stays with its worker without
    /// [`Jobs::renew`]. Default 60 s.
    pub lease: Duration,
    /// Deliveries after which work that never got a result is failed.
    /// Default 5.
    pub max_attempts: u32,
}

impl JobsConfig {
    /// Records in `database`, queue in `queue`, default lease and
    /// attempts.
    pub fn new(database: impl Into<String>, queue: impl Into<String>) -> Self {
        Self {
            database: database.into(),
            queue: queue.into(),
            ..Self::default()
        }
    }

    /// With this lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// With this many deliveries before giving up.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }
}

impl Default for JobsConfig {
    /// `sqlite://hoist-jobs.db` in the working directory, its embedded
    /// queue, 60 s leases, 5 attempts.
    fn default() -> Self {
        Self {
            database: "sqlite://hoist-jobs.db".into(),
            queue: "database".into(),
            lease: Duration::from_secs(60),
            max_attempts: 5,
        }
    }
}

impl fmt::Debug for JobsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobsConfig")
            .field("database", &db::redact(&self.database))
            .field("queue", &db::redact(&self.queue))
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// What [`Jobs::health`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Whether the database answers, or why not.
    pub database: Result<(), String>,
    /// Whether the queue answers, or why not.
    pub queue: Result<(), String>,
}

impl Health {
    /// Both answer.
    pub fn is_ok(&self) -> bool {
        self.database.is_ok() && self.queue.is_ok()
    }
}

/// The records and the queue. Cheap to clone: clones share connections.
/// Background listeners stop when the last clone is dropped.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    queue: QueueBackend,
    bus: Bus,
    config: JobsConfig,
}

/// Where the queue is.
pub(crate) enum QueueBackend {
    Database,
    // Boxed: it holds its scripts, and lives once per `Jobs`.
    Redis(Box<RedisQueue>),
}

impl fmt::Debug for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// Connects to the database (creating a SQLite file), applies the
    /// migrations it lacks, connects the queue and starts listening for
    /// other instances' signals. With a Redis queue it also starts the
    /// recovery that queues unfinished work Redis does not know.
    ///
    /// ```no_run
    /// # async fn demo() -> jobs::Result<()> {
    /// use jobs::{Jobs, JobsConfig};
    /// let config = JobsConfig::new("postgres://hoist@db.internal/hoist", "redis://queue.internal:6379");
    /// let jobs = Jobs::open(config).await?;
    /// assert!(jobs.health().await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(config: JobsConfig) -> Result<Jobs> {
        if config.lease < Duration::from_millis(10) {
            return Err(Error::Config {
                reason: format!("lease {:?} is too short", config.lease),
            });
        }
        if config.max_attempts == 0 {
            return Err(Error::Config {
                reason: "max_attempts must be at least 1".into(),
            });
        }
        let db = Db::open(&config.database).await?;
        let queue = match config.queue.as_str() {
            "database" | "sqlite" | "postgres" => QueueBackend::Database,
            q if q.starts_with("redis://") || q.starts_with("rediss://") => {
                QueueBackend::Redis(Box::new(RedisQueue::open(q).await?))
            }
            q => {
                return Err(Error::Config {
                    reason: format!(
                        "queue {:?}: expected \"database\" or redis://HOST:PORT",
                        db::redact(q)
                    ),
                });
            }
        };
        let mut bus = match (&queue, db.dialect) {
            (QueueBackend::Redis(q), _) => Bus::redis(q.client.clone(), q.conn.clone()).await?,
            (QueueBackend::Database, db::Dialect::Postgres) => {
                Bus::postgres(&config.database).await?
            }
            (QueueBackend::Database, db::Dialect::Sqlite) => Bus::in_process(),
        };
        if let QueueBackend::Redis(q) = &queue {
            let (q, db, every) = (RedisQueue::clone(q), db.clone(), config.lease);
            bus.adopt(tokio::spawn(recover_forever(q, db, every)).abort_handle());
        }
        Ok(Jobs {
            inner: Arc::new(Inner {
                db,
                queue,
                bus,
                config,
            }),
        })
    }

    /// Whether the database and the queue answer, each within
    /// [`HEALTH_TIMEOUT`].
    pub async fn health(&self) -> Health {
        let timed_out = || format!("no answer within {HEALTH_TIMEOUT:?}");
        let database = tokio::time::timeout(
            HEALTH_TIMEOUT,
            sqlx::query("SELECT 1").execute(&self.inner.db.pool),
        )
        .await
        .map_err(|_| timed_out())
        .and_then(|r| r.map(drop).map_err(|e| format!("database: {e}")));
        let queue = match &self.inner.queue {
            QueueBackend::Database => database.clone(),
            QueueBackend::Redis(q) => tokio::time::timeout(HEALTH_TIMEOUT, q.ping())
                .await
                .map_err(|_| timed_out())
                .and_then(|r| r.map_err(|e| e.to_string())),
        };
        Health { database, queue }
    }

    /// Queues unfinished builds and tasks that the Redis queue does not
    /// hold, now rather than at the next periodic run; returns how many.
    /// A no-op (0) with the embedded queue, which cannot lose work, or
    /// while another instance is recovering.
    pub async fn recover(&self) -> Result<usize> {
        match &self.inner.queue {
            QueueBackend::Database => Ok(0),
            QueueBackend::Redis(q) => Ok(q
                .recover(&self.inner.db, self.inner.config.lease)
                .await?
                .unwrap_or(0)),
        }
    }

    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>> {
        self.inner
            .db
            .pool
            .begin()
            .await
            .map_err(error::db("begin a transaction"))
    }

    /// Commits `tx` with `signals` announced: inside it through
    /// PostgreSQL `NOTIFY`, after it elsewhere.
    pub(crate) async fn commit(
        &self,
        mut tx: Transaction<'static, Any>,
        signals: Vec<Signal>,
    ) -> Result<()> {
        self.inner.bus.in_transaction(&mut tx, &signals).await?;
        tx.commit().await.map_err(error::db("commit"))?;
        self.inner.bus.committed(signals).await;
        Ok(())
    }

    /// Queues `work` in `tx` (embedded queue), or returns it to queue
    /// after the commit (Redis).
    pub(crate) async fn enqueue_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        work: Work,
        now: i64,
        signals: &mut Vec<Signal>,
    ) -> Result<Option<Work>> {
        match &self.inner.queue {
            QueueBackend::Database => {
                queue::embedded::enqueue(tx, work, now).await?;
                signals.push(Signal::Queue);
                Ok(None)
            }
            QueueBackend::Redis(_) => Ok(Some(work)),
        }
    }

    /// Queues in Redis what [`Jobs::enqueue_in`] left for after the
    /// commit. A failure is logged, not returned: the record is stored and
    /// the recovery queues it.
    pub(crate) async fn enqueue_after(&self, work: Option<Work>) {
        if let (Some(work), QueueBackend::Redis(q)) = (work, &self.inner.queue)
            && let Err(e) = q.enqueue(work).await
        {
            tracing::warn!(%work, error = %e, "jobs: queueing in redis failed; recovery will queue it");
        }
    }
}

/// Runs the Redis recovery now and then once per `every`.
async fn recover_forever(q: RedisQueue, db: Db, every: Duration) {
    loop {
        match q.recover(&db, every).await {
            Ok(Some(n)) if n > 0 => tracing::info!(queued = n, "jobs: recovery queued work"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "jobs: queue recovery failed"),
        }
        tokio::time::sleep(every.max(Duration::from_secs(1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let config = JobsConfig::new(
            "postgres://hoist:s3cret-db@db.internal:5432/hoist",
            "redis://:s3cret-queue@queue.internal:6379/0",
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("db.internal") && shown.contains("queue.internal"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_use() {
        for (database, queue) in [
            ("mysql://u:s3cret@h/db", "database"),
            ("sqlite::memory:", "database"),
            ("sqlite://", "database"),
        ] {
            let err = Jobs::open(JobsConfig::new(database, queue))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{database}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("j.db").display());
        let err = Jobs::open(JobsConfig::new(&sqlite, "amqp://u:s3cret@h"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = Jobs::open(JobsConfig::new(&sqlite, "database").max_attempts(0))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
    }
}
