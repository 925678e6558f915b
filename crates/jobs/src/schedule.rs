//! Claims of scheduled runs: the worker that inserts a job's row for a
//! slot runs it; every other worker (and the same worker restarted) finds
//! the row and does not.

use crate::Jobs;
use crate::db::{is_unique_violation, now_us};
use crate::error::{Result, db};

impl Jobs {
    /// Claims `job`'s run for `slot` (e.g. `2026-11-30`) for `worker`:
    /// true for exactly one caller per `(job, slot)`, across processes and
    /// machines sharing the database.
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// if jobs.claim_scheduled_run("gc", "2026-11-30", "worker-1").await? {
    ///     // this worker runs today's gc
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn claim_scheduled_run(&self, job: &str, slot: &str, worker: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO scheduled_runs (job, slot, worker, claimed_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(job)
        .bind(slot)
        .bind(worker)
        .bind(now_us())
        .execute(&self.inner.db.pool)
        .await;
        match done {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(db("claim a scheduled run")(e)),
        }
    }
}
