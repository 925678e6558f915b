//! The service's Prometheus metrics: builds by status and duration, tasks
//! by outcome and duration, result-cache hits, HTTP requests, written in
//! the text exposition format with what other parts report at scrape time
//! (queue depth, layer cache, registry failovers).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the duration histograms' buckets: tasks run
/// from milliseconds to the 300 s limit, builds to minutes.
pub const BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if s <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                self.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct State {
    builds: BTreeMap<String, u64>,
    build_duration: Histogram,
    tasks: BTreeMap<String, u64>,
    task_duration: Histogram,
    result_cache: BTreeMap<&'static str, u64>,
    requests: BTreeMap<(String, u16), u64>,
    image_pulls: BTreeMap<(String, &'static str), Histogram>,
    image_pull_errors: BTreeMap<(String, &'static str), u64>,
    image_cache_hits: BTreeMap<&'static str, u64>,
    scans: BTreeMap<String, u64>,
    signature_failures: BTreeMap<&'static str, u64>,
    ops: Ops,
}

/// Registry operations: mirror and gc runs, by hand or scheduled.
#[derive(Default)]
struct Ops {
    mirror_images: BTreeMap<&'static str, u64>,
    mirror_bytes: u64,
    gc_deleted: u64,
    gc_bytes_freed: u64,
    runs: BTreeMap<(String, &'static str), u64>,
    last_run: BTreeMap<String, f64>,
    storage: BTreeMap<String, u64>,
}

/// Counters kept by the API and the worker of one process.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A build ended with `status` after `took`.
    pub fn build_finished(&self, status: &str, took: Duration) {
        let mut s = self.state();
        *s.builds.entry(status.to_owned()).or_default() += 1;
        s.build_duration.observe(took);
    }

    /// A task ended with `outcome` after `took`.
    pub fn task_finished(&self, outcome: &str, took: Duration) {
        let mut s = self.state();
        *s.tasks.entry(outcome.to_owned()).or_default() += 1;
        s.task_duration.observe(took);
    }

    /// The build gate scanned an image and decided `decision` (`pass`,
    /// `warn`, `reject`).
    pub fn scan_finished(&self, decision: &str) {
        *self.state().scans.entry(decision.to_owned()).or_default() += 1;
    }

    /// An invocation was answered from the result cache (`hit`) or not.
    pub fn result_cache(&self, hit: bool) {
        *self
            .state()
            .result_cache
            .entry(if hit { "hit" } else { "miss" })
            .or_default() += 1;
    }

    /// An HTTP request to `route` was answered with `status`.
    pub fn request(&self, route: &str, status: u16) {
        *self
            .state()
            .requests
            .entry((route.to_owned(), status))
            .or_default() += 1;
    }

    /// An image of `image_type` (`function`) was pulled from `registry`:
    /// downloaded (a cache miss) in `took`, or found complete in the cache
    /// or a warm sandbox (`took` is `None`: a cache hit).
    pub fn image_pulled(&self, registry: &str, image_type: &'static str, took: Option<Duration>) {
        let mut s = self.state();
        match took {
            Some(took) => s
                .image_pulls
                .entry((registry.to_owned(), image_type))
                .or_default()
                .observe(took),
            None => *s.image_cache_hits.entry(image_type).or_default() += 1,
        }
    }

    /// Pulling an image from `registry` failed with `error_type`.
    pub fn image_pull_failed(&self, registry: &str, error_type: &'static str) {
        *self
            .state()
            .image_pull_errors
            .entry((registry.to_owned(), error_type))
            .or_default() += 1;
    }

    /// An image was refused (or could not be checked) under
    /// `--require-signature`, for `reason` (`image_sign::Error::reason`).
    pub fn signature_failure(&self, reason: &'static str) {
        *self.state().signature_failures.entry(reason).or_default() += 1;
    }

    /// A mirror run ended: images `mirrored`, `skipped`, `failed`, and
    /// the bytes it copied.
    pub fn mirror_finished(&self, mirrored: u64, skipped: u64, failed: u64, bytes: u64) {
        let ops = &mut self.state().ops;
        for (result, n) in [
            ("mirrored", mirrored),
            ("skipped", skipped),
            ("failed", failed),
        ] {
            *ops.mirror_images.entry(result).or_default() += n;
        }
        ops.mirror_bytes += bytes;
    }

    /// A gc run deleted `deleted` images, freeing `bytes`.
    pub fn gc_finished(&self, deleted: u64, bytes: u64) {
        let ops = &mut self.state().ops;
        ops.gc_deleted += deleted;
        ops.gc_bytes_freed += bytes;
    }

    /// A gc run measured `registry`'s storage in use: `bytes` of tagged
    /// manifests and blobs, each counted once.
    pub fn registry_storage(&self, registry: &str, bytes: u64) {
        self.state().ops.storage.insert(registry.to_owned(), bytes);
    }

    /// A scheduled `job` ran (ok or not), ending at `unix_secs`.
    pub fn scheduled_run(&self, job: &str, ok: bool, unix_secs: f64) {
        let ops = &mut self.state().ops;
        let result = if ok { "ok" } else { "error" };
        *ops.runs.entry((job.to_owned(), result)).or_default() += 1;
        ops.last_run.insert(job.to_owned(), unix_secs);
    }

    /// The text exposition of these counters, followed by `extra` (gauges
    /// and counters other parts report).
    pub fn to_prometheus(&self, extra: &str) -> String {
        let s = self.state();
        let mut out = String::new();
        out.push_str("# HELP hoist_builds_total Builds finished, by final status.\n# TYPE hoist_builds_total counter\n");
        for (status, n) in &s.builds {
            let _ = writeln!(out, "hoist_builds_total{{status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP hoist_build_duration_seconds Time from a build's start to its end.\n# TYPE hoist_build_duration_seconds histogram\n");
        s.build_duration
            .write(&mut out, "hoist_build_duration_seconds", "");
        out.push_str("# HELP hoist_tasks_total Tasks finished, by outcome.\n# TYPE hoist_tasks_total counter\n");
        for (outcome, n) in &s.tasks {
            let _ = writeln!(out, "hoist_tasks_total{{outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP hoist_task_duration_seconds Time a worker spent on a task, pull and run included.\n# TYPE hoist_task_duration_seconds histogram\n");
        s.task_duration
            .write(&mut out, "hoist_task_duration_seconds", "");
        out.push_str("# HELP hoist_result_cache_total Invocations looked up in the result cache.\n# TYPE hoist_result_cache_total counter\n");
        for (result, n) in &s.result_cache {
            let _ = writeln!(out, "hoist_result_cache_total{{result=\"{result}\"}} {n}");
        }
        out.push_str("# HELP hoist_http_requests_total HTTP requests, by route and status.\n# TYPE hoist_http_requests_total counter\n");
        for ((route, status), n) in &s.requests {
            let _ = writeln!(
                out,
                "hoist_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP hoist_image_pull_duration_seconds Image pulls that downloaded something, by the image's registry and type.\n# TYPE hoist_image_pull_duration_seconds histogram\n");
        for ((registry, image_type), h) in &s.image_pulls {
            let labels = format!("registry=\"{registry}\",image_type=\"{image_type}\"");
            h.write(&mut out, "hoist_image_pull_duration_seconds", &labels);
        }
        out.push_str("# HELP hoist_image_pull_errors_total Image pulls that failed, by the image's registry and the kind of error.\n# TYPE hoist_image_pull_errors_total counter\n");
        for ((registry, error_type), n) in &s.image_pull_errors {
            let _ = writeln!(
                out,
                "hoist_image_pull_errors_total{{registry=\"{registry}\",error_type=\"{error_type}\"}} {n}"
            );
        }
        out.push_str("# HELP hoist_image_cache_hits_total Images ready without a download: complete in the layer cache or kept in a warm sandbox.\n# TYPE hoist_image_cache_hits_total counter\n");
        for (image_type, n) in &s.image_cache_hits {
            let _ = writeln!(
                out,
                "hoist_image_cache_hits_total{{image_type=\"{image_type}\"}} {n}"
            );
        }
        out.push_str("# HELP hoist_scans_total Images the build gate scanned, by decision.\n# TYPE hoist_scans_total counter\n");
        for (decision, n) in &s.scans {
            let _ = writeln!(out, "hoist_scans_total{{decision=\"{decision}\"}} {n}");
        }
        out.push_str("# HELP hoist_scan_rejections_total Builds the vulnerability gate rejected (never pushed).\n# TYPE hoist_scan_rejections_total counter\n");
        let rejected = s.scans.get("reject").copied().unwrap_or(0);
        let _ = writeln!(out, "hoist_scan_rejections_total {rejected}");
        out.push_str("# HELP hoist_signature_failures_total Images refused by the signature policy, by reason.\n# TYPE hoist_signature_failures_total counter\n");
        for (reason, n) in &s.signature_failures {
            let _ = writeln!(
                out,
                "hoist_signature_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        write_ops(&mut out, &s.ops);
        out.push_str(extra);
        out
    }
}

fn write_ops(out: &mut String, ops: &Ops) {
    out.push_str("# HELP hoist_mirror_images_total Images processed by mirror runs, by result.\n# TYPE hoist_mirror_images_total counter\n");
    for (result, n) in &ops.mirror_images {
        let _ = writeln!(out, "hoist_mirror_images_total{{result=\"{result}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP hoist_mirror_bytes_total Bytes of blobs mirror runs copied.\n# TYPE hoist_mirror_bytes_total counter\nhoist_mirror_bytes_total {}",
        ops.mirror_bytes
    );
    let _ = writeln!(
        out,
        "# HELP hoist_gc_deleted_total Images gc runs deleted.\n# TYPE hoist_gc_deleted_total counter\nhoist_gc_deleted_total {}",
        ops.gc_deleted
    );
    let _ = writeln!(
        out,
        "# HELP hoist_gc_bytes_freed_total Bytes gc runs freed (once the registry collects its garbage).\n# TYPE hoist_gc_bytes_freed_total counter\nhoist_gc_bytes_freed_total {}",
        ops.gc_bytes_freed
    );
    out.push_str("# HELP hoist_scheduled_runs_total Scheduled registry jobs run by this worker, by job and result.\n# TYPE hoist_scheduled_runs_total counter\n");
    for ((job, result), n) in &ops.runs {
        let _ = writeln!(
            out,
            "hoist_scheduled_runs_total{{job=\"{job}\",result=\"{result}\"}} {n}"
        );
    }
    out.push_str("# HELP hoist_registry_storage_bytes Storage the registry's tagged images use, measured by the last gc run.\n# TYPE hoist_registry_storage_bytes gauge\n");
    for (registry, bytes) in &ops.storage {
        let _ = writeln!(
            out,
            "hoist_registry_storage_bytes{{registry=\"{registry}\"}} {bytes}"
        );
    }
    out.push_str("# HELP hoist_scheduled_last_run_timestamp_seconds When this worker last finished a scheduled job.\n# TYPE hoist_scheduled_last_run_timestamp_seconds gauge\n");
    for (job, at) in &ops.last_run {
        let _ = writeln!(
            out,
            "hoist_scheduled_last_run_timestamp_seconds{{job=\"{job}\"}} {at}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_and_histograms() {
        let m = Metrics::default();
        m.build_finished("completed", Duration::from_millis(40));
        m.task_finished("completed", Duration::from_millis(30));
        m.task_finished("failed", Duration::from_secs(2));
        m.result_cache(true);
        m.request("/v1/functions", 202);
        m.image_pulled("r:5000", "function", Some(Duration::from_secs(3)));
        m.image_pulled("r:5000", "function", None);
        m.image_pull_failed("r:5000", "registry");
        m.scan_finished("reject");
        m.scan_finished("warn");
        m.scan_finished("reject");
        m.signature_failure("unsigned");
        m.mirror_finished(3, 2, 1, 4096);
        m.gc_finished(5, 1000);
        m.scheduled_run("mirror", true, 1_700_000_000.0);
        m.registry_storage("r:5000", 123_456);
        let text = m.to_prometheus("hoist_queue_depth 3\n");
        for line in [
            "hoist_builds_total{status=\"completed\"} 1",
            "hoist_tasks_total{outcome=\"failed\"} 1",
            "hoist_task_duration_seconds_bucket{le=\"0.05\"} 1",
            "hoist_task_duration_seconds_bucket{le=\"+Inf\"} 2",
            "hoist_task_duration_seconds_count 2",
            "hoist_result_cache_total{result=\"hit\"} 1",
            "hoist_http_requests_total{route=\"/v1/functions\",status=\"202\"} 1",
            "hoist_signature_failures_total{reason=\"unsigned\"} 1",
            "hoist_queue_depth 3",
            "hoist_image_pull_duration_seconds_bucket{registry=\"r:5000\",image_type=\"function\",le=\"2.5\"} 0",
            "hoist_image_pull_duration_seconds_bucket{registry=\"r:5000\",image_type=\"function\",le=\"5\"} 1",
            "hoist_image_pull_duration_seconds_count{registry=\"r:5000\",image_type=\"function\"} 1",
            "hoist_image_pull_errors_total{registry=\"r:5000\",error_type=\"registry\"} 1",
            "hoist_image_cache_hits_total{image_type=\"function\"} 1",
            "hoist_scans_total{decision=\"reject\"} 2",
            "hoist_scans_total{decision=\"warn\"} 1",
            "hoist_scan_rejections_total 2",
            "hoist_mirror_images_total{result=\"failed\"} 1",
            "hoist_mirror_bytes_total 4096",
            "hoist_gc_deleted_total 5",
            "hoist_gc_bytes_freed_total 1000",
            "hoist_registry_storage_bytes{registry=\"r:5000\"} 123456",
            "hoist_scheduled_runs_total{job=\"mirror\",result=\"ok\"} 1",
            "hoist_scheduled_last_run_timestamp_seconds{job=\"mirror\"} 1700000000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
