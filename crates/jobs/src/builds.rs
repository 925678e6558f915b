//! Build jobs: their records (the seed's `build_jobs`), their events and
//! logs, finishing and cancelling.
//!
//! Every change of a build is one transaction that bumps the build's
//! `event_seq`, stores the event under that number and announces it. The
//! row lock on the build orders concurrent changes, so numbers follow
//! commit order. A build's log keeps its last [`MAX_LOG_LINES`] lines,
//! each cut to [`MAX_LINE_BYTES`]: older lines are deleted as new ones
//! come (their numbers then leave gaps in the stored events).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::bus::Signal;
use crate::db::{Cols, i64_of, is_unique_violation, now_us, time};
use crate::error::{Error, Result, db};
use crate::model::{
    Build, BuildEvent, BuildFilter, BuildResult, BuildStatus, BuildUpdate, Listed, LogLine,
    NewBuild, Page,
};
use crate::queue::Work;
use crate::{Jobs, QueueBackend, queue};

/// Log lines kept per build.
pub const MAX_LOG_LINES: u64 = 10_000;
/// Longest log line kept, in bytes; longer ones are cut at a character
/// boundary.
pub const MAX_LINE_BYTES: usize = 8192;

const COLUMNS: &str = "id, kind, function_id, status, progress, current_step, image_url, \
                       image_digest, size_bytes, error_message, error_step, spec, started_at, \
                       completed_at, created_at, created_by, cancel_requested, vulnerabilities";

/// `status NOT IN (final)`, as SQL.
const OPEN: &str = "status NOT IN ('completed', 'failed', 'cancelled')";

fn build(row: &AnyRow) -> Result<Build> {
    let c = Cols(row);
    Ok(Build {
        id: c.uuid("id")?,
        kind: c.text("kind")?.parse()?,
        function_id: c.opt_uuid("function_id")?,
        status: c.text("status")?.parse()?,
        progress: c.count::<u8>("progress")?.min(100),
        current_step: c.opt_text("current_step")?,
        image_url: c.opt_text("image_url")?,
        image_digest: c.opt_text("image_digest")?,
        size_bytes: c.opt_count("size_bytes")?,
        error_message: c.opt_text("error_message")?,
        error_step: c.opt_text("error_step")?,
        spec: c.json("spec")?,
        started_at: c.opt_time("started_at")?,
        completed_at: c.opt_time("completed_at")?,
        created_at: c.time("created_at")?,
        created_by: c.opt_text("created_by")?,
        cancel_requested: c.flag("cancel_requested")?,
        vulnerabilities: c.opt_json("vulnerabilities")?,
    })
}

/// Stores `event` of build `id` in the transaction on `conn`.
async fn store_event(conn: &mut AnyConnection, id: Uuid, event: &BuildEvent) -> Result<()> {
    let body = serde_json::to_string(event).expect("events serialize");
    sqlx::query(
        "INSERT INTO build_events (build_id, seq, kind, at, body) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(i64_of(event.seq()))
    .bind(event.kind())
    .bind(event.timestamp().timestamp_micros())
    .bind(body)
    .execute(conn)
    .await
    .map_err(db("store a build event"))?;
    Ok(())
}

/// The signal announcing `event` of build `id`.
fn signal(id: Uuid, event: BuildEvent) -> Signal {
    Signal::Build {
        id,
        seq: event.seq(),
        event: Some(event),
    }
}

/// Reads an event's stored body.
pub(crate) fn parse_event(body: &str) -> Result<BuildEvent> {
    serde_json::from_str(body).map_err(|e| Error::Corrupt {
        what: "build event",
        reason: e.to_string(),
    })
}

fn seq_of(row: &AnyRow) -> Result<u64> {
    Cols(row).count("event_seq")
}

/// `line` without its line ending, at most [`MAX_LINE_BYTES`] long.
fn clip(line: &str) -> &str {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut end = MAX_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

impl Jobs {
    /// Records a build as pending and queues it, atomically with the
    /// embedded queue (see the crate docs for Redis). A function build
    /// becomes its function's latest build.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs, function_id: uuid::Uuid) -> jobs::Result<()> {
    /// use jobs::{BuildKind, NewBuild};
    /// let mut new = NewBuild::new(BuildKind::Function, serde_json::json!({"base": "python:3.11"}));
    /// new.function_id = Some(function_id);
    /// new.created_by = Some("ci-key".into());
    /// let build = jobs.create_build(new).await?;
    /// assert_eq!(build.status, jobs::BuildStatus::Pending);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_build(&self, new: NewBuild) -> Result<Build> {
        let now = now_us();
        let id = new.id.unwrap_or_else(Uuid::now_v7);
        let b = Build {
            id,
            kind: new.kind,
            function_id: new.function_id,
            status: BuildStatus::Pending,
            progress: 0,
            current_step: None,
            image_url: None,
            image_digest: None,
            size_bytes: None,
            error_message: None,
            error_step: None,
            spec: new.spec,
            started_at: None,
            completed_at: None,
            created_at: time(now)?,
            created_by: new.created_by,
            cancel_requested: false,
            vulnerabilities: None,
        };
        let mut tx = self.begin().await?;
        // First, so that a missing function is NotFound rather than a
        // foreign-key error.
        if let Some(function_id) = b.function_id {
            let done = sqlx::query("UPDATE functions SET build_id = $1 WHERE id = $2")
                .bind(id.to_string())
                .bind(function_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db("link a build to its function"))?;
            if done.rows_affected() == 0 {
                return Err(Error::NotFound {
                    kind: "function",
                    id: function_id,
                });
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO builds (id, kind, function_id, status, spec, created_at, created_by) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(b.kind.as_str())
        .bind(b.function_id.map(|f| f.to_string()))
        .bind(b.spec.to_string())
        .bind(now)
        .bind(b.created_by.as_deref())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(Error::Exists { kind: "build", id }),
            Err(e) => return Err(db("create a build")(e)),
            Ok(_) => {}
        }
        let mut signals = Vec::new();
        let later = self
            .enqueue_in(&mut tx, Work::Build(id), now, &mut signals)
            .await?;
        self.commit(tx, signals).await?;
        self.enqueue_after(later).await;
        Ok(b)
    }

    /// Records the vulnerability gate's summary of build `id`'s image
    /// (before its push, or its failure). Not an event of its own: the
    /// worker logs the decision, which is.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs, id: uuid::Uuid) -> jobs::Result<()> {
    /// let summary = serde_json::json!({"critical": 0, "high": 1,
    ///     "warnings": ["numpy 1.24.0 has HIGH CVE-2024-0001"]});
    /// jobs.set_build_vulnerabilities(id, &summary).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_build_vulnerabilities(
        &self,
        id: Uuid,
        summary: &serde_json::Value,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE builds SET vulnerabilities = $1 WHERE id = $2")
            .bind(summary.to_string())
            .bind(id.to_string())
            .execute(&self.inner.db.pool)
            .await
            .map_err(db("record a build's vulnerabilities"))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound { kind: "build", id });
        }
        Ok(())
    }

    /// The build with this id.
    pub async fn build(&self, id: Uuid) -> Result<Option<Build>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM builds WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.inner.db.pool)
            .await
            .map_err(db("read a build"))?
            .as_ref()
            .map(build)
            .transpose()
    }

    /// Builds matching `filter`, newest first.
    pub async fn builds(&self, filter: BuildFilter, page: Page) -> Result<Listed<Build>> {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        if let Some(status) = filter.status {
            values.push(status.as_str().to_owned());
            conditions.push(format!("status = ${}", values.len()));
        }
        if let Some(function_id) = filter.function_id {
            values.push(function_id.to_string());
            conditions.push(format!("function_id = ${}", values.len()));
        }
        if let Some(created_by) = filter.created_by {
            values.push(created_by);
            conditions.push(format!("created_by = ${}", values.len()));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let n = values.len();
        let select = format!(
            "SELECT {COLUMNS} FROM builds{filter} ORDER BY created_at DESC, id DESC \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count = format!("SELECT COUNT(*) AS n FROM builds{filter}");
        let mut q = sqlx::query(&select);
        let mut c = sqlx::query(&count);
        for v in &values {
            q = q.bind(v.as_str());
            c = c.bind(v.as_str());
        }
        let rows = q
            .bind(i64::from(page.limit))
            .bind(i64_of(page.offset))
            .fetch_all(&self.inner.db.pool)
            .await
            .map_err(db("list builds"))?;
        let total: i64 = c
            .fetch_one(&self.inner.db.pool)
            .await
            .map_err(db("count builds"))?
            .try_get("n")
            .map_err(db("count builds"))?;
        Ok(Listed {
            items: rows.iter().map(build).collect::<Result<_>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// Why build `id` took no change: it is final, or not there.
    async fn unchanged(&self, id: Uuid) -> Error {
        match self.build(id).await {
            Ok(Some(b)) => Error::Finished {
                id,
                status: b.status.as_str(),
            },
            Ok(None) => Error::NotFound { kind: "build", id },
            Err(e) => e,
        }
    }

    /// Records a worker's progress and announces it as
    /// [`BuildEvent::Progress`]. The first update sets `started_at`.
    /// Fails with [`Error::Finished`] once the build is final (for
    /// instance cancelled while it was queued).
    pub async fn update_build(&self, id: Uuid, update: BuildUpdate) -> Result<()> {
        if let Some(status) = update.status
            && (status.is_final() || status == BuildStatus::Pending)
        {
            return Err(Error::InvalidUpdate {
                id,
                reason: format!("status {status} is not set by an update"),
            });
        }
        if let Some(p) = update.progress
            && p > 100
        {
            return Err(Error::InvalidUpdate {
                id,
                reason: format!("progress {p} is over 100"),
            });
        }
        let now = now_us();
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE builds SET status = COALESCE($1, status), \
             progress = COALESCE($2, progress), current_step = COALESCE($3, current_step), \
             started_at = COALESCE(started_at, $4), event_seq = event_seq + 1 \
             WHERE id = $5 AND {OPEN} RETURNING event_seq, status, progress, current_step"
        ))
        .bind(update.status.map(BuildStatus::as_str))
        .bind(update.progress.map(i64::from))
        .bind(update.current_step.as_deref())
        .bind(now)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("update a build"))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.unchanged(id).await);
        };
        let c = Cols(&row);
        let event = BuildEvent::Progress {
            seq: seq_of(&row)?,
            timestamp: time(now)?,
            status: c.text("status")?.parse()?,
            progress: c.count::<u8>("progress")?.min(100),
            message: c.opt_text("current_step")?,
        };
        store_event(&mut tx, id, &event).await?;
        self.commit(tx, vec![signal(id, event)]).await
    }

    /// Stores a log line of a running build and announces it as
    /// [`BuildEvent::Log`]. Keeps the last [`MAX_LOG_LINES`] lines, each
    /// cut to [`MAX_LINE_BYTES`]. Fails with [`Error::Finished`] once the
    /// build is final.
    pub async fn log_build(&self, id: Uuid, line: &str) -> Result<()> {
        let line = clip(line);
        let now = now_us();
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE builds SET event_seq = event_seq + 1, log_lines = log_lines + 1 \
             WHERE id = $1 AND {OPEN} RETURNING event_seq, log_lines"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("log a build line"))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.unchanged(id).await);
        };
        let event = BuildEvent::Log {
            seq: seq_of(&row)?,
            timestamp: time(now)?,
            line: line.to_owned(),
        };
        store_event(&mut tx, id, &event).await?;
        if Cols(&row).count::<u64>("log_lines")? > MAX_LOG_LINES {
            sqlx::query(
                "DELETE FROM build_events WHERE build_id = $1 AND kind = 'log' AND seq = \
                 (SELECT MIN(seq) FROM build_events WHERE build_id = $1 AND kind = 'log')",
            )
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db("drop the oldest log line"))?;
        }
        self.commit(tx, vec![signal(id, event)]).await
    }

    /// The stored log lines of a build, oldest first.
    pub async fn build_log(&self, id: Uuid) -> Result<Vec<LogLine>> {
        if self.build(id).await?.is_none() {
            return Err(Error::NotFound { kind: "build", id });
        }
        let rows = sqlx::query(
            "SELECT body FROM build_events WHERE build_id = $1 AND kind = 'log' ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.inner.db.pool)
        .await
        .map_err(db("read a build log"))?;
        rows.iter()
            .filter_map(
                |row| match Cols(row).text("body").and_then(|b| parse_event(&b)) {
                    Ok(BuildEvent::Log {
                        seq,
                        timestamp,
                        line,
                    }) => Some(Ok(LogLine {
                        seq,
                        at: timestamp,
                        line,
                    })),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                },
            )
            .collect()
    }

    /// Gives the build its final status and announces it
    /// ([`BuildEvent::Complete`], or [`BuildEvent::Error`] for failed and
    /// cancelled). True only for the call that made it final: of several
    /// concurrent calls exactly one wins, the others change nothing.
    ///
    /// A completed function build also points its function at the image
    /// (`image_url@image_digest`), in the same transaction.
    pub async fn finish_build(&self, id: Uuid, result: BuildResult) -> Result<bool> {
        let now = now_us();
        let (status, image_url, image_digest, size, error, step) = match &result {
            BuildResult::Completed {
                image_url,
                image_digest,
                size_bytes,
            } => (
                BuildStatus::Completed,
                Some(image_url.as_str()),
                Some(image_digest.as_str()),
                Some(i64_of(*size_bytes)),
                None,
                None,
            ),
            BuildResult::Failed { error, step } => (
                BuildStatus::Failed,
                None,
                None,
                None,
                Some(error.as_str()),
                step.as_deref(),
            ),
            BuildResult::Cancelled => (
                BuildStatus::Cancelled,
                None,
                None,
                None,
                Some("cancelled"),
                None,
            ),
        };
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE builds SET status = $1, \
             progress = CASE WHEN $1 = 'completed' THEN 100 ELSE progress END, \
             image_url = $2, image_digest = $3, size_bytes = $4, error_message = $5, \
             error_step = COALESCE($6, current_step), completed_at = $7, \
             event_seq = event_seq + 1 \
             WHERE id = $8 AND {OPEN} RETURNING event_seq, function_id, error_step"
        ))
        .bind(status.as_str())
        .bind(image_url)
        .bind(image_digest)
        .bind(size)
        .bind(error)
        .bind(step)
        .bind(now)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("finish a build"))?;
        let Some(row) = row else {
            drop(tx);
            return match self.build(id).await? {
                Some(_) => Ok(false),
                None => Err(Error::NotFound { kind: "build", id }),
            };
        };
        let c = Cols(&row);
        let seq = seq_of(&row)?;
        let timestamp = time(now)?;
        let event = match result {
            BuildResult::Completed {
                image_url,
                image_digest,
                size_bytes,
            } => {
                if let Some(function_id) = c.opt_uuid("function_id")? {
                    // Pinned by digest, except in a layout (`oci:DIR:TAG`),
                    // whose references take no digest.
                    let image = if image_url.contains('@') || image_url.starts_with("oci:") {
                        image_url.clone()
                    } else {
                        format!("{image_url}@{image_digest}")
                    };
                    sqlx::query("UPDATE functions SET image = $1, image_digest = $2 WHERE id = $3")
                        .bind(image)
                        .bind(&image_digest)
                        .bind(function_id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(db("set a function's image"))?;
                }
                BuildEvent::Complete {
                    seq,
                    timestamp,
                    status,
                    image_url,
                    image_digest,
                    size_bytes,
                }
            }
            BuildResult::Failed { error, .. } => BuildEvent::Error {
                seq,
                timestamp,
                status,
                error,
                step: c.opt_text("error_step")?,
            },
            BuildResult::Cancelled => BuildEvent::Error {
                seq,
                timestamp,
                status,
                error: "cancelled".into(),
                step: c.opt_text("error_step")?,
            },
        };
        store_event(&mut tx, id, &event).await?;
        self.commit(tx, vec![signal(id, event)]).await?;
        Ok(true)
    }

    /// Cancels a build: a pending one becomes cancelled at once and never
    /// starts; a running one gets `cancel_requested` and a
    /// [`BuildEvent::CancelRequested`], and its worker finishes it as
    /// cancelled; a final one stays as it is. Returns the status after
    /// the call, or `None` when there is no such build.
    pub async fn cancel_build(&self, id: Uuid) -> Result<Option<BuildStatus>> {
        let now = now_us();
        let mut tx = self.begin().await?;
        let pending = sqlx::query(
            "UPDATE builds SET status = 'cancelled', error_message = 'cancelled', \
             completed_at = $1, event_seq = event_seq + 1 \
             WHERE id = $2 AND status = 'pending' RETURNING event_seq",
        )
        .bind(now)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("cancel a build"))?;
        if let Some(row) = pending {
            let event = BuildEvent::Error {
                seq: seq_of(&row)?,
                timestamp: time(now)?,
                status: BuildStatus::Cancelled,
                error: "cancelled".into(),
                step: None,
            };
            store_event(&mut tx, id, &event).await?;
            if let QueueBackend::Database = self.inner.queue {
                queue::embedded::drop_entry(&mut tx, Work::Build(id)).await?;
            }
            self.commit(tx, vec![signal(id, event)]).await?;
            return Ok(Some(BuildStatus::Cancelled));
        }
        let running = sqlx::query(&format!(
            "UPDATE builds SET cancel_requested = 1, event_seq = event_seq + 1 \
             WHERE id = $1 AND {OPEN} AND cancel_requested = 0 RETURNING event_seq, status"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("request a build's cancellation"))?;
        if let Some(row) = running {
            let event = BuildEvent::CancelRequested {
                seq: seq_of(&row)?,
                timestamp: time(now)?,
            };
            let status = Cols(&row).text("status")?.parse()?;
            store_event(&mut tx, id, &event).await?;
            self.commit(tx, vec![signal(id, event)]).await?;
            return Ok(Some(status));
        }
        drop(tx);
        Ok(self.build(id).await?.map(|b| b.status))
    }
}
