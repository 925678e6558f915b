//! The daily registry jobs' flags, shared by `hoist-worker` and
//! `hoist-serve` (included with `#[path]`); the logic is in
//! `service::schedule`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use registry_ops::Daily;
use service::schedule::{RegistryJob, run_daily};
use tokio_util::sync::CancellationToken;

/// Daily mirror and gc, each claimed by one worker per day.
#[derive(Args, Clone, Debug)]
pub struct ScheduleArgs {
    /// Mirror the most used images to this registry (HOST[:PORT]) daily.
    #[arg(long, value_name = "HOST")]
    pub mirror_to: Option<String>,
    /// The registry mirrored from (default: --registry's host).
    #[arg(long, value_name = "HOST", requires = "mirror_to")]
    pub mirror_from: Option<String>,
    /// When the mirror runs, HH:MM UTC.
    #[arg(long, default_value = "02:00", value_name = "HH:MM")]
    pub mirror_at: Daily,
    /// How many of the most used images are mirrored.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub mirror_top: u32,
    /// The period usage is counted over: 7d, 12h…
    #[arg(long, default_value = "7d", value_name = "AGE", value_parser = registry_ops::mirror::parse_age)]
    pub mirror_since: Duration,
    /// Run gc daily with this retention policy (TOML).
    #[arg(long, value_name = "FILE")]
    pub gc_policy: Option<PathBuf>,
    /// The registry gc cleans (default: --registry's host).
    #[arg(long, value_name = "HOST", requires = "gc_policy")]
    pub gc_registry: Option<String>,
    /// When gc runs, HH:MM UTC.
    #[arg(long, default_value = "03:00", value_name = "HH:MM")]
    pub gc_at: Daily,
}

impl ScheduleArgs {
    /// Starts the scheduled jobs asked for, until `stop`; `images` is
    /// the worker's `--registry`.
    pub fn spawn(
        &self,
        images: Option<&service::ImageTarget>,
        jobs: &jobs::Jobs,
        client: registry_client::Client,
        metrics: &Arc<service::Metrics>,
        stop: &CancellationToken,
    ) -> Result<()> {
        let default_host = match images {
            Some(service::ImageTarget::Registry { host, .. }) => Some(host.clone()),
            _ => None,
        };
        let worker = format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "worker".into()),
            std::process::id()
        );
        let mut planned = Vec::new();
        if let Some(to) = &self.mirror_to {
            let Some(from) = self.mirror_from.clone().or(default_host.clone()) else {
                bail!("--mirror-to needs --mirror-from (or --registry HOST/NAMESPACE)");
            };
            // The same checks as a run's, now rather than at 02:00.
            registry_ops::Mirror::new(client.clone(), &from, to)?;
            planned.push((
                RegistryJob::Mirror {
                    from,
                    to: to.clone(),
                    top: self.mirror_top,
                    since: self.mirror_since,
                },
                self.mirror_at,
            ));
        }
        if let Some(file) = &self.gc_policy {
            let Some(registry) = self.gc_registry.clone().or(default_host) else {
                bail!("--gc-policy needs --gc-registry (or --registry HOST/NAMESPACE)");
            };
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read {}", file.display()))?;
            let policy = registry_ops::Policy::from_toml(&text)
                .with_context(|| format!("{}", file.display()))?;
            planned.push((RegistryJob::Gc { registry, policy }, self.gc_at));
        }
        for (job, at) in planned {
            eprintln!("{}: daily at {at} UTC", job.name());
            tokio::spawn(run_daily(
                job,
                at,
                jobs.clone(),
                client.clone(),
                metrics.clone(),
                worker.clone(),
                stop.clone(),
            ));
        }
        Ok(())
    }
}
