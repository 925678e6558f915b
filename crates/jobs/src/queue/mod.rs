//! The queue between the API and the workers: builds and tasks to run,
//! handed out under leases.
//!
//! Two backends behind one API. The embedded queue is a table in the
//! database (SQLite or PostgreSQL with `FOR UPDATE SKIP LOCKED`), written
//! in the same transaction as the record it queues. The Redis queue is a
//! stream with a consumer group, for many workers on many machines (see
//! [`redis`]).
//!
//! Delivery is at least once: a lease that is not renewed within
//! [`JobsConfig::lease`](crate::JobsConfig::lease) runs out and the work
//! goes to another worker. Before handing work out, [`Jobs::take`] looks
//! at its record: work that already has its final result (a task
//! re-delivered after its worker stored the result and died before
//! acknowledging, a build cancelled while queued) is dropped from the
//! queue instead, and work delivered more than
//! [`JobsConfig::max_attempts`](crate::JobsConfig::max_attempts) times is
//! failed and dropped, so that one poisonous task cannot kill workers
//! forever.

pub(crate) mod embedded;
pub(crate) mod redis;

use std::fmt;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{BuildResult, TaskResult};
use crate::{Jobs, QueueBackend};

/// What a queue entry asks a worker to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Run the build with this id.
    Build(Uuid),
    /// Run the task with this id.
    Task(Uuid),
}

impl Work {
    /// `build` or `task`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Build(_) => "build",
            Self::Task(_) => "task",
        }
    }

    /// The record's id.
    pub fn id(self) -> Uuid {
        match self {
            Self::Build(id) | Self::Task(id) => id,
        }
    }

    pub(crate) fn parse(kind: &str, id: &str) -> Result<Self> {
        let id = crate::db::parse_uuid(id)?;
        match kind {
            "build" => Ok(Self::Build(id)),
            "task" => Ok(Self::Task(id)),
            _ => Err(Error::Corrupt {
                what: "queue entry",
                reason: format!("unknown work kind {kind:?}"),
            }),
        }
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

/// A worker's hold on one piece of work, from [`Jobs::take`] until
/// [`Jobs::ack`] or [`Jobs::release`]. Renew it with [`Jobs::renew`]
/// more often than the configured lease, or another worker gets the work.
#[derive(Debug)]
#[non_exhaustive]
pub struct Lease {
    /// What to do.
    pub work: Work,
    /// Which delivery this is, from 1; more than 1 means an earlier
    /// worker died or gave up without acknowledging.
    pub attempt: u32,
    /// The worker holding it.
    pub worker: String,
    pub(crate) token: Token,
}

/// The backend's handle on a lease.
#[derive(Debug)]
pub(crate) enum Token {
    /// Row `entry` of the queue table, taken with `token`.
    Db { entry: i64, token: String },
    /// Stream entry `entry`, delivered `deliveries` times to this
    /// consumer; `base` deliveries happened before it was re-added.
    Redis {
        entry: String,
        deliveries: u64,
        base: u64,
    },
}

impl Jobs {
    /// Takes the next piece of work for `worker`, waiting up to `wait`
    /// for one to be queued. Returns `None` when there is none by then.
    ///
    /// Wakes as soon as work is queued (in this process, through
    /// PostgreSQL `NOTIFY` or Redis pub/sub) and otherwise looks again
    /// every quarter lease (at most every second), which is also how
    /// leases that ran out are noticed.
    ///
    /// Cancel safety: dropping the future may leave an entry taken by
    /// nobody; it is handed out again when its lease runs out.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// use std::time::Duration;
    /// use jobs::{TaskResult, Work};
    ///
    /// if let Some(lease) = jobs.take("worker-1", Duration::from_secs(30)).await? {
    ///     if let Work::Task(id) = lease.work {
    ///         if let Some(task) = jobs.start_task(id, "worker-1").await? {
    ///             // run task.image with task.inputs_key, store the output, then:
    ///             let result = TaskResult::Completed { output_key: format!("out/{}", task.id), duration_ms: 12 };
    ///             jobs.finish_task(id, result).await?;
    ///         }
    ///     }
    ///     jobs.ack(lease).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn take(&self, worker: &str, wait: Duration) -> Result<Option<Lease>> {
        let deadline = Instant::now() + wait;
        let look_again =
            (self.inner.config.lease / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            // Registered before looking, so a signal sent while we look
            // is not lost.
            let notified = self.inner.bus.queue_notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = match &self.inner.queue {
                QueueBackend::Database => {
                    embedded::take(&self.inner.db, worker, self.inner.config.lease).await?
                }
                QueueBackend::Redis(q) => q.take(worker, self.inner.config.lease).await?,
            };
            if let Some(lease) = taken {
                if self.deliverable(&lease).await? {
                    return Ok(Some(lease));
                }
                self.ack(lease).await?;
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep((deadline - now).min(look_again)) => {}
            }
        }
    }

    /// Whether `lease`'s work should run: not when its record is gone or
    /// final, nor past the attempt limit (then it is failed here).
    async fn deliverable(&self, lease: &Lease) -> Result<bool> {
        let max = self.inner.config.max_attempts;
        match lease.work {
            Work::Task(id) => match self.task(id).await? {
                None => {
                    tracing::warn!(%id, "jobs: queued task has no record; dropped");
                    Ok(false)
                }
                Some(t) if t.status.is_final() => Ok(false),
                Some(_) if lease.attempt > max => {
                    let error = json!({
                        "type": "AttemptsExhausted",
                        "message": format!(
                            "delivered {} times without a result: each worker died or gave up",
                            lease.attempt - 1
                        ),
                    });
                    let result = TaskResult::Failed {
                        error,
                        output_key: None,
                        duration_ms: None,
                    };
                    self.finish_task(id, result).await?;
                    Ok(false)
                }
                Some(_) => Ok(true),
            },
            Work::Build(id) => match self.build(id).await? {
                None => {
                    tracing::warn!(%id, "jobs: queued build has no record; dropped");
                    Ok(false)
                }
                Some(b) if b.status.is_final() => Ok(false),
                Some(b) if lease.attempt > max => {
                    let result = BuildResult::Failed {
                        error: format!(
                            "delivered {} times without a result: each worker died or gave up",
                            lease.attempt - 1
                        ),
                        step: b.current_step,
                    };
                    self.finish_build(id, result).await?;
                    Ok(false)
                }
                Some(_) => Ok(true),
            },
        }
    }

    /// Extends `lease` by the configured lease from now.
    ///
    /// Fails with [`Error::LeaseLost`] when it ran out and the work went
    /// to another worker (which then also runs it; results stay one per
    /// id, the first stored wins).
    pub async fn renew(&self, lease: &Lease) -> Result<()> {
        let renewed = match (&self.inner.queue, &lease.token) {
            (QueueBackend::Database, Token::Db { entry, token }) => {
                embedded::renew(&self.inner.db, *entry, token, self.inner.config.lease).await?
            }
            (QueueBackend::Redis(q), Token::Redis { .. }) => q.renew(lease).await?,
            _ => false,
        };
        if renewed {
            Ok(())
        } else {
            Err(Error::LeaseLost { work: lease.work })
        }
    }

    /// Removes the work from the queue: call it once its result is
    /// stored ([`Jobs::finish_task`], [`Jobs::finish_build`]), or when
    /// [`Jobs::start_task`] said it has one. If the lease had run out and
    /// another worker holds the work now, the entry stays theirs; that
    /// worker finds the stored result and does not run it again.
    ///
    /// Acknowledging work that has no final result does not drop it: the
    /// Redis queue's recovery queues unfinished work again. To give up on
    /// work, finish it as failed.
    pub async fn ack(&self, lease: Lease) -> Result<()> {
        let done = match (&self.inner.queue, &lease.token) {
            (QueueBackend::Database, Token::Db { entry, token }) => {
                embedded::ack(&self.inner.db, *entry, token).await?
            }
            (QueueBackend::Redis(q), Token::Redis { .. }) => q.ack(&lease).await?,
            _ => false,
        };
        if !done {
            tracing::debug!(work = %lease.work, "jobs: ack of a lease that ran out; left to its new holder");
        }
        Ok(())
    }

    /// Gives the work back at once, for another worker (a worker shutting
    /// down). The delivery does not count as an attempt. On the embedded
    /// queue it keeps its place; on Redis it goes to the back.
    pub async fn release(&self, lease: Lease) -> Result<()> {
        match (&self.inner.queue, &lease.token) {
            (QueueBackend::Database, Token::Db { entry, token }) => {
                embedded::release(self, *entry, token).await?;
            }
            (QueueBackend::Redis(q), Token::Redis { .. }) => {
                q.release(&lease).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// How many builds and tasks are queued and not yet acknowledged,
    /// including those under a lease.
    pub async fn queue_depth(&self) -> Result<u64> {
        match &self.inner.queue {
            QueueBackend::Database => embedded::depth(&self.inner.db).await,
            QueueBackend::Redis(q) => q.depth().await,
        }
    }
}
