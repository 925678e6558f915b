//! The worker's daily registry jobs: mirroring the most used images to a
//! disaster-recovery registry and retention (gc). Each day's run is
//! claimed in the records ([`jobs::Jobs::claim_scheduled_run`]), so among
//! workers sharing a database exactly one runs it, and a worker that was
//! down at the hour runs the missed day's job once when it comes back
//! (which run is due: [`registry_ops::Daily`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use registry_client::Client;
use registry_ops::{Daily, Mirror, Policy};
use tokio_util::sync::CancellationToken;

use crate::Metrics;

/// A registry job the worker can run.
#[derive(Clone, Debug)]
pub enum RegistryJob {
    /// `hoist mirror --from FROM --to TO --top TOP --since SINCE`.
    Mirror {
        /// The primary registry host.
        from: String,
        /// The secondary.
        to: String,
        /// How many of the most used images.
        top: u32,
        /// Over which past period.
        since: Duration,
    },
    /// `hoist gc --registry REGISTRY --policy …`.
    Gc {
        /// The registry host.
        registry: String,
        /// The policy.
        policy: Policy,
    },
}

impl RegistryJob {
    /// `mirror` or `gc`: its name in claims and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mirror { .. } => "mirror",
            Self::Gc { .. } => "gc",
        }
    }

    /// Runs the job once now; records its metrics and returns its summary
    /// (an error when it could not run, or when some image failed).
    ///
    /// ```no_run
    /// # async fn demo(jobs: jobs::Jobs) -> Result<(), String> {
    /// let job = service::schedule::RegistryJob::Gc {
    ///     registry: "127.0.0.1:5000".into(),
    ///     policy: registry_ops::Policy::default(),
    /// };
    /// let client = registry_client::Client::builder().build().map_err(|e| e.to_string())?;
    /// let summary = job.run(&jobs, &client, &service::Metrics::default()).await?;
    /// println!("{summary}");
    /// # Ok(()) }
    /// ```
    pub async fn run(
        &self,
        jobs: &jobs::Jobs,
        client: &Client,
        metrics: &Metrics,
    ) -> Result<String, String> {
        match self {
            Self::Mirror {
                from,
                to,
                top,
                since,
            } => {
                let mirror = Mirror::new(client.clone(), from, to).map_err(|e| e.to_string())?;
                let since = SystemTime::now() - *since;
                let used = jobs
                    .most_used_images(since, *top)
                    .await
                    .map_err(|e| format!("read the usage records: {e}"))?;
                let (images, bad) = mirror.top(&used);
                let mut report = mirror.run(&images, false).await;
                report.failed.extend(bad);
                metrics.mirror_finished(
                    report.mirrored.len() as u64,
                    report.skipped.len() as u64,
                    report.failed.len() as u64,
                    report.bytes,
                );
                let text = report.text();
                if report.failed.is_empty() {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Self::Gc { registry, policy } => {
                let inventory = registry_ops::gc::inventory(client, registry, 8)
                    .await
                    .map_err(|e| format!("read {registry}: {e}"))?;
                let usage = jobs
                    .last_used_images()
                    .await
                    .map_err(|e| format!("read the usage records: {e}"))?;
                let functions = jobs
                    .function_names()
                    .await
                    .map_err(|e| format!("read the function records: {e}"))?;
                let records = registry_ops::gc::Records::new(&usage, &functions);
                let plan = registry_ops::gc::plan(&inventory, &records, policy, Utc::now());
                let report = registry_ops::gc::apply(client, registry, plan)
                    .await
                    .map_err(|e| e.to_string())?;
                let deleted = report.plan.deletions.len() - report.failed.len();
                let freed = if report.failed.is_empty() {
                    report.plan.bytes_freed
                } else {
                    0
                };
                metrics.gc_finished(deleted as u64, freed);
                // What the kept images take; while deletions failed, what
                // they would have freed is still there.
                let used = report.plan.bytes_kept
                    + if report.failed.is_empty() {
                        0
                    } else {
                        report.plan.bytes_freed
                    };
                metrics.registry_storage(registry, used);
                let text = report.text();
                if report.failed.is_empty() {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
        }
    }
}

/// Runs `job` every day at `at` (UTC) until `stop`: at each due slot the
/// worker `worker` claims it and, if the claim is its, runs it. Looks at
/// the clock at least once a minute, so a changed system clock is
/// noticed.
pub async fn run_daily(
    job: RegistryJob,
    at: Daily,
    jobs: jobs::Jobs,
    client: Client,
    metrics: Arc<Metrics>,
    worker: String,
    stop: CancellationToken,
) {
    let name = job.name();
    let mut last_tried: Option<String> = None;
    loop {
        let now = Utc::now();
        if let Some(slot) = registry_ops::schedule_due(&at, now, last_tried.as_deref()) {
            match jobs.claim_scheduled_run(name, &slot.id, &worker).await {
                Ok(true) => {
                    last_tried = Some(slot.id.clone());
                    tracing::info!(job = name, slot = %slot.id, "scheduled run starts");
                    let outcome = job.run(&jobs, &client, &metrics).await;
                    let ended = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    metrics.scheduled_run(name, outcome.is_ok(), ended);
                    match outcome {
                        Ok(summary) => tracing::info!(job = name, slot = %slot.id, "{summary}"),
                        Err(summary) => {
                            tracing::warn!(job = name, slot = %slot.id, "failed: {summary}")
                        }
                    }
                }
                Ok(false) => last_tried = Some(slot.id.clone()),
                // The records are unreachable: try the claim again at the
                // next look.
                Err(e) => tracing::warn!(job = name, "claim the scheduled run: {e}"),
            }
        }
        let now = Utc::now();
        let wait = (at.next_after(now) - now)
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}
