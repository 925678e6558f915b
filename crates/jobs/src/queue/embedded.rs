//! The embedded queue: the `queue` table of the jobs database.
//!
//! An entry is visible from `visible_at` on. Taking it is one statement
//! that picks the oldest visible entry, bumps its delivery count, and
//! hides it until the lease ends under a fresh token (on PostgreSQL the
//! pick is `FOR UPDATE SKIP LOCKED`, so concurrent takers never wait on
//! each other or get the same entry; SQLite runs one writer at a time).
//! Renewing pushes `visible_at` further; acknowledging deletes the row;
//! both only with the token, so a worker whose lease ran out cannot touch
//! the entry its successor holds. Entries are inserted in the transaction
//! that creates their record, so a record is never without its entry.

use std::time::Duration;

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{Lease, Token, Work};
use crate::Jobs;
use crate::bus::Signal;
use crate::db::{Cols, Db, micros, now_us};
use crate::error::{Result, db};

/// Queues `work` as part of the transaction on `conn`.
pub(crate) async fn enqueue(conn: &mut AnyConnection, work: Work, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO queue (work, work_id, attempts, visible_at, created_at) \
         VALUES ($1, $2, 0, $3, $3)",
    )
    .bind(work.kind())
    .bind(work.id().to_string())
    .bind(now)
    .execute(conn)
    .await
    .map_err(db("queue work"))?;
    Ok(())
}

/// Takes the oldest visible entry for `worker`, if any.
pub(crate) async fn take(store: &Db, worker: &str, lease: Duration) -> Result<Option<Lease>> {
    let now = now_us();
    let token = Uuid::new_v4().to_string();
    let sql = format!(
        "UPDATE queue SET attempts = attempts + 1, visible_at = $1, worker = $2, token = $3 \
         WHERE id = (SELECT id FROM queue WHERE visible_at <= $4 ORDER BY id LIMIT 1{}) \
         RETURNING id, work, work_id, attempts",
        store.skip_locked()
    );
    let row = sqlx::query(&sql)
        .bind(now.saturating_add(micros(lease)))
        .bind(worker)
        .bind(&token)
        .bind(now)
        .fetch_optional(&store.pool)
        .await
        .map_err(db("take from the queue"))?;
    let Some(row) = row else { return Ok(None) };
    let c = Cols(&row);
    Ok(Some(Lease {
        work: Work::parse(&c.text("work")?, &c.text("work_id")?)?,
        attempt: c.count("attempts")?,
        worker: worker.to_owned(),
        token: Token::Db {
            entry: c.int("id")?,
            token,
        },
    }))
}

/// Extends the lease on `entry`; false when the token no longer holds it.
pub(crate) async fn renew(store: &Db, entry: i64, token: &str, lease: Duration) -> Result<bool> {
    let done = sqlx::query("UPDATE queue SET visible_at = $1 WHERE id = $2 AND token = $3")
        .bind(now_us().saturating_add(micros(lease)))
        .bind(entry)
        .bind(token)
        .execute(&store.pool)
        .await
        .map_err(db("renew a lease"))?;
    Ok(done.rows_affected() == 1)
}

/// Deletes `entry` if `token` still holds it.
pub(crate) async fn ack(store: &Db, entry: i64, token: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM queue WHERE id = $1 AND token = $2")
        .bind(entry)
        .bind(token)
        .execute(&store.pool)
        .await
        .map_err(db("acknowledge work"))?;
    Ok(done.rows_affected() == 1)
}

/// Makes `entry` visible again now, undoing its delivery count.
pub(crate) async fn release(jobs: &Jobs, entry: i64, token: &str) -> Result<bool> {
    let mut tx = jobs.begin().await?;
    let done = sqlx::query(
        "UPDATE queue SET visible_at = $1, worker = NULL, token = NULL, \
         attempts = attempts - 1 WHERE id = $2 AND token = $3",
    )
    .bind(now_us())
    .bind(entry)
    .bind(token)
    .execute(&mut *tx)
    .await
    .map_err(db("release work"))?;
    let released = done.rows_affected() == 1;
    jobs.commit(
        tx,
        if released {
            vec![Signal::Queue]
        } else {
            vec![]
        },
    )
    .await?;
    Ok(released)
}

/// Entries not yet acknowledged.
pub(crate) async fn depth(store: &Db) -> Result<u64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM queue")
        .fetch_one(&store.pool)
        .await
        .map_err(db("count the queue"))?;
    let n: i64 = row.try_get("n").map_err(db("count the queue"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Drops the entry of a build cancelled before it started. A worker that
/// took it a moment ago finds the build final and its ack a no-op.
pub(crate) async fn drop_entry(conn: &mut AnyConnection, work: Work) -> Result<()> {
    sqlx::query("DELETE FROM queue WHERE work = $1 AND work_id = $2")
        .bind(work.kind())
        .bind(work.id().to_string())
        .execute(conn)
        .await
        .map_err(db("drop a cancelled build from the queue"))?;
    Ok(())
}
