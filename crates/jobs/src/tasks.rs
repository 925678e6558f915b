//! Tasks: function invocations, started by workers, with exactly one
//! final result each.
//!
//! Starting and finishing are conditional updates on the task's status,
//! so the database settles every race: a task with a result is never
//! started again, and of concurrent results the first committed wins.

use std::time::Duration;

use sqlx::any::AnyRow;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Jobs;
use crate::bus::Signal;
use crate::db::{Cols, i64_of, is_unique_violation, now_us, time};
use crate::error::{Error, Result, db};
use crate::model::{NewTask, Task, TaskResult, TaskStatus};
use crate::queue::Work;

const COLUMNS: &str = "id, function_id, image, inputs_key, status, output_key, error, attempts, \
                       worker, created_at, started_at, completed_at, duration_ms, created_by";

/// How long [`Jobs::wait_task`] waits for news before it looks in the
/// database itself (announcements can be lost on a reconnection).
const LOOK_AGAIN: Duration = Duration::from_secs(2);

fn task(row: &AnyRow) -> Result<Task> {
    let c = Cols(row);
    Ok(Task {
        id: c.uuid("id")?,
        function_id: c.uuid("function_id")?,
        image: c.text("image")?,
        inputs_key: c.text("inputs_key")?,
        status: c.text("status")?.parse()?,
        output_key: c.opt_text("output_key")?,
        error: c.opt_json("error")?,
        attempts: c.count("attempts")?,
        worker: c.opt_text("worker")?,
        created_at: c.time("created_at")?,
        started_at: c.opt_time("started_at")?,
        completed_at: c.opt_time("completed_at")?,
        duration_ms: c.opt_count("duration_ms")?,
        created_by: c.opt_text("created_by")?,
    })
}

impl Jobs {
    /// Records a task as pending and queues it, as
    /// [`Jobs::create_build`] does builds.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs, function_id: uuid::Uuid) -> jobs::Result<()> {
    /// use std::time::Duration;
    /// use jobs::NewTask;
    /// let id = uuid::Uuid::now_v7();
    /// // store the inputs under a key made from the id, then:
    /// let task = jobs
    ///     .create_task(NewTask {
    ///         id: Some(id),
    ///         function_id,
    ///         image: "registry.example/fn@sha256:…".into(),
    ///         inputs_key: format!("inputs/{id}.json"),
    ///         created_by: Some("app-key".into()),
    ///     })
    ///     .await?;
    /// if let Some(done) = jobs.wait_task(task.id, Duration::from_secs(30)).await? {
    ///     println!("{:?} {:?}", done.status, done.output_key);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_task(&self, new: NewTask) -> Result<Task> {
        let now = now_us();
        let id = new.id.unwrap_or_else(Uuid::now_v7);
        let t = Task {
            id,
            function_id: new.function_id,
            image: new.image,
            inputs_key: new.inputs_key,
            status: TaskStatus::Pending,
            output_key: None,
            error: None,
            attempts: 0,
            worker: None,
            created_at: time(now)?,
            started_at: None,
            completed_at: None,
            duration_ms: None,
            created_by: new.created_by,
        };
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tasks (id, function_id, image, inputs_key, status, created_at, \
             created_by) VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
        )
        .bind(id.to_string())
        .bind(t.function_id.to_string())
        .bind(&t.image)
        .bind(&t.inputs_key)
        .bind(now)
        .bind(t.created_by.as_deref())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(Error::Exists { kind: "task", id }),
            Err(e) => return Err(db("create a task")(e)),
            Ok(_) => {}
        }
        let mut signals = Vec::new();
        let later = self
            .enqueue_in(&mut tx, Work::Task(id), now, &mut signals)
            .await?;
        self.commit(tx, signals).await?;
        self.enqueue_after(later).await;
        Ok(t)
    }

    /// The task with this id.
    pub async fn task(&self, id: Uuid) -> Result<Option<Task>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.inner.db.pool)
            .await
            .map_err(db("read a task"))?
            .as_ref()
            .map(task)
            .transpose()
    }

    /// Marks the task running on `worker` and counts the attempt, unless
    /// it already has its final result: then `None`, and the worker must
    /// not run it again (acknowledge its lease instead).
    pub async fn start_task(&self, id: Uuid, worker: &str) -> Result<Option<Task>> {
        let row = sqlx::query(&format!(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, worker = $1, \
             started_at = $2 WHERE id = $3 AND status IN ('pending', 'running') \
             RETURNING {COLUMNS}"
        ))
        .bind(worker)
        .bind(now_us())
        .bind(id.to_string())
        .fetch_optional(&self.inner.db.pool)
        .await
        .map_err(db("start a task"))?;
        match row {
            Some(row) => task(&row).map(Some),
            None if self.task(id).await?.is_some() => Ok(None),
            None => Err(Error::NotFound { kind: "task", id }),
        }
    }

    /// Stores the task's result. True only for the call that stored it:
    /// a task has exactly one final result, the first one committed;
    /// later calls change nothing and return false.
    pub async fn finish_task(&self, id: Uuid, result: TaskResult) -> Result<bool> {
        let (status, output_key, error, duration) = match &result {
            TaskResult::Completed {
                output_key,
                duration_ms,
            } => (
                TaskStatus::Completed,
                Some(output_key.as_str()),
                None,
                Some(*duration_ms),
            ),
            TaskResult::Failed {
                error,
                output_key,
                duration_ms,
            } => (
                TaskStatus::Failed,
                output_key.as_deref(),
                Some(error.to_string()),
                *duration_ms,
            ),
        };
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, output_key = $2, error = $3, duration_ms = $4, \
             completed_at = $5 WHERE id = $6 AND status IN ('pending', 'running')",
        )
        .bind(status.as_str())
        .bind(output_key)
        .bind(error)
        .bind(duration.map(i64_of))
        .bind(now_us())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db("finish a task"))?;
        if done.rows_affected() == 0 {
            drop(tx);
            return match self.task(id).await? {
                Some(_) => Ok(false),
                None => Err(Error::NotFound { kind: "task", id }),
            };
        }
        self.commit(tx, vec![Signal::TaskDone(id)]).await?;
        Ok(true)
    }

    /// Waits until the task has its final result and returns it, or
    /// `None` after `timeout`. Woken by the announcement of the result
    /// (in-process, `NOTIFY` or Redis pub/sub), not by polling; it looks
    /// in the database only every few seconds without news, in case an
    /// announcement was lost.
    pub async fn wait_task(&self, id: Uuid, timeout: Duration) -> Result<Option<Task>> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.inner.bus.subscribe();
        loop {
            match self.task(id).await? {
                None => return Err(Error::NotFound { kind: "task", id }),
                Some(t) if t.status.is_final() => return Ok(Some(t)),
                Some(_) => {}
            }
            let look = (Instant::now() + LOOK_AGAIN).min(deadline);
            loop {
                match tokio::time::timeout_at(look, rx.recv()).await {
                    Ok(Ok(Signal::TaskDone(done))) if done == id => break,
                    Ok(Ok(Signal::Resync) | Err(RecvError::Lagged(_))) | Err(_) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(RecvError::Closed)) => {
                        tokio::time::sleep_until(look).await;
                        break;
                    }
                }
            }
            if Instant::now() >= deadline {
                return Ok(self.task(id).await?.filter(|t| t.status.is_final()));
            }
        }
    }
}
