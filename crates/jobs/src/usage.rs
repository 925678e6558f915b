//! Image usage records: which worker pulled or ran which image when, the
//! input of mirroring and retention.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::Jobs;
use crate::db::{Cols, now_us};
use crate::error::{Result, db};
use crate::model::UsageKind;

impl Jobs {
    /// Records that `worker` pulled or ran `image` now.
    pub async fn record_usage(&self, image: &str, worker: &str, kind: UsageKind) -> Result<()> {
        self.insert_usage(image, worker, kind, now_us()).await
    }

    /// Records a use that happened at `at`: usage imported from another
    /// system's logs (or history written by a test).
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// use std::time::{Duration, SystemTime};
    /// let month_ago = SystemTime::now() - Duration::from_secs(30 * 86_400);
    /// jobs.record_usage_at("r.example/app@sha256:…", "w1", jobs::UsageKind::Pull, month_ago)
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn record_usage_at(
        &self,
        image: &str,
        worker: &str,
        kind: UsageKind,
        at: SystemTime,
    ) -> Result<()> {
        let at = DateTime::<Utc>::from(at).timestamp_micros();
        self.insert_usage(image, worker, kind, at).await
    }

    async fn insert_usage(
        &self,
        image: &str,
        worker: &str,
        kind: UsageKind,
        at: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO image_usage (image, worker, kind, at) VALUES ($1, $2, $3, $4)")
            .bind(image)
            .bind(worker)
            .bind(kind.as_str())
            .bind(at)
            .execute(&self.inner.db.pool)
            .await
            .map_err(db("record image usage"))?;
        Ok(())
    }

    /// The `limit` images used most (pulls and runs together) since
    /// `since`, with their counts, most used first (ties by name).
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// use std::time::{Duration, SystemTime};
    /// let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    /// for (image, uses) in jobs.most_used_images(day_ago, 10).await? {
    ///     println!("{uses:>6} {image}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn most_used_images(
        &self,
        since: SystemTime,
        limit: u32,
    ) -> Result<Vec<(String, u64)>> {
        let since = DateTime::<Utc>::from(since).timestamp_micros();
        let rows = sqlx::query(
            "SELECT image, COUNT(*) AS uses FROM image_usage WHERE at >= $1 \
             GROUP BY image ORDER BY uses DESC, image LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.db.pool)
        .await
        .map_err(db("count image usage"))?;
        rows.iter()
            .map(|row| {
                let c = Cols(row);
                Ok((c.text("image")?, c.count("uses")?))
            })
            .collect()
    }

    /// Every image ever used, with the time of its last use: what
    /// retention reads (registries do not report pulls).
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> jobs::Result<()> {
    /// for (image, at) in jobs.last_used_images().await? {
    ///     println!("{at} {image}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn last_used_images(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query("SELECT image, MAX(at) AS last FROM image_usage GROUP BY image")
            .fetch_all(&self.inner.db.pool)
            .await
            .map_err(db("read image usage"))?;
        rows.iter()
            .map(|row| {
                let c = Cols(row);
                Ok((c.text("image")?, c.time("last")?))
            })
            .collect()
    }
}
