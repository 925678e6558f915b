//! Counters a failover keeps per registry, read as a [`MetricsSnapshot`]
//! and written in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::breaker::BreakerState;
use crate::error::ErrorKind;

/// Upper bounds (seconds) of the pull duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// What was pulled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullKind {
    /// A manifest or index (a tag resolution or a fetch by digest).
    Manifest,
    /// A whole blob.
    Blob,
}

/// A histogram of durations.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Histogram {
    /// Observations at or below each of [`DURATION_BUCKETS`], cumulative.
    pub buckets: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; DURATION_BUCKETS.len()];
        }
        let secs = d.as_secs_f64();
        for (bucket, le) in self.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if secs <= le {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += secs;
    }
}

/// One registry's numbers.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RegistryMetrics {
    /// The registry host.
    pub registry: String,
    /// Successful manifest pulls served.
    pub manifest_pulls: u64,
    /// Successful blob pulls finished here (a resumed blob counts where it
    /// finished).
    pub blob_pulls: u64,
    /// Blob bytes received from this registry and handed on.
    pub blob_bytes: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Requests not sent because the circuit breaker was open.
    pub skipped: u64,
    /// Durations of successful pulls (a blob's from its request here to its
    /// last byte).
    pub pull_duration: Histogram,
    /// The circuit breaker's state when the snapshot was taken.
    pub breaker: BreakerState,
}

/// Pulls that moved from one registry to the next one in the list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FailoverCount {
    /// The registry that failed or was skipped.
    pub from: String,
    /// The registry asked next.
    pub to: String,
    /// How many times.
    pub count: u64,
}

/// The failover's metrics at one moment. Registries are in the configured
/// order (primary first).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Per-registry numbers.
    pub registries: Vec<RegistryMetrics>,
    /// Failovers, ordered by `from` then `to`.
    pub failovers: Vec<FailoverCount>,
}

impl MetricsSnapshot {
    /// The numbers for `registry`, if it is configured.
    pub fn registry(&self, registry: &str) -> Option<&RegistryMetrics> {
        self.registries.iter().find(|r| r.registry == registry)
    }

    /// How many pulls moved from `from` to `to`.
    pub fn failovers(&self, from: &str, to: &str) -> u64 {
        self.failovers
            .iter()
            .find(|f| f.from == from && f.to == to)
            .map_or(0, |f| f.count)
    }

    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4), every series named `hoist_registry_*`.
    ///
    /// ```
    /// # async fn demo() -> Result<(), registry_failover::Error> {
    /// use registry_failover::{Failover, FailoverConfig};
    /// let client = registry_client::Client::builder().build().unwrap();
    /// let f = Failover::new(client, ["127.0.0.1:5000"], FailoverConfig::default())?;
    /// let text = f.metrics().to_prometheus();
    /// assert!(text.contains(r#"hoist_registry_pulls_total{registry="127.0.0.1:5000",kind="blob"} 0"#));
    /// # Ok(()) }
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let regs = || self.registries.iter().map(|r| (label(&r.registry), r));
        family(
            &mut out,
            "hoist_registry_pulls_total",
            "counter",
            "Successful manifest and blob pulls by registry.",
            regs().flat_map(|(reg, r)| {
                [
                    format!(
                        "{{registry=\"{reg}\",kind=\"manifest\"}} {}",
                        r.manifest_pulls
                    ),
                    format!("{{registry=\"{reg}\",kind=\"blob\"}} {}", r.blob_pulls),
                ]
            }),
        );
        family(
            &mut out,
            "hoist_registry_pull_bytes_total",
            "counter",
            "Blob bytes received by registry.",
            regs().map(|(reg, r)| format!("{{registry=\"{reg}\"}} {}", r.blob_bytes)),
        );
        family(
            &mut out,
            "hoist_registry_pull_errors_total",
            "counter",
            "Failed registry requests by registry and error type.",
            regs().flat_map(|(reg, r)| {
                ErrorKind::ALL.map(|kind| {
                    let n = r.errors.get(&kind).copied().unwrap_or(0);
                    format!("{{registry=\"{reg}\",error_type=\"{kind}\"}} {n}")
                })
            }),
        );
        family(
            &mut out,
            "hoist_registry_skipped_total",
            "counter",
            "Requests not sent because the registry's circuit breaker was open.",
            regs().map(|(reg, r)| format!("{{registry=\"{reg}\"}} {}", r.skipped)),
        );
        family(
            &mut out,
            "hoist_registry_failover_total",
            "counter",
            "Pulls that moved from one registry to the next.",
            self.failovers.iter().map(|f| {
                format!(
                    "{{from=\"{}\",to=\"{}\"}} {}",
                    label(&f.from),
                    label(&f.to),
                    f.count
                )
            }),
        );
        family(
            &mut out,
            "hoist_registry_circuit_state",
            "gauge",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
            regs().map(|(reg, r)| format!("{{registry=\"{reg}\"}} {}", r.breaker.gauge())),
        );
        family(
            &mut out,
            "hoist_registry_pull_duration_seconds",
            "histogram",
            "Durations of successful pulls by registry.",
            regs().flat_map(|(reg, r)| {
                let h = &r.pull_duration;
                let buckets = DURATION_BUCKETS
                    .iter()
                    .enumerate()
                    .map(move |(i, le)| (le.to_string(), h.buckets.get(i).copied().unwrap_or(0)));
                buckets
                    .chain([("+Inf".to_owned(), h.count)])
                    .map(|(le, n)| format!("_bucket{{registry=\"{reg}\",le=\"{le}\"}} {n}"))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .chain([
                        format!("_sum{{registry=\"{reg}\"}} {}", h.sum_seconds),
                        format!("_count{{registry=\"{reg}\"}} {}", h.count),
                    ])
            }),
        );
        out
    }
}

/// Writes one metric family: its help and type lines, then each series
/// (`suffix{labels} value`) prefixed with the family's name.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    series: impl IntoIterator<Item = String>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for s in series {
        let _ = writeln!(out, "{name}{s}");
    }
}

/// Escapes a label value as the text format asks.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The live counters behind the snapshots.
#[derive(Debug)]
pub(crate) struct Metrics {
    registries: Vec<String>,
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    per: Vec<PerRegistry>,
    failovers: BTreeMap<(usize, usize), u64>,
}

#[derive(Debug, Default)]
struct PerRegistry {
    manifest_pulls: u64,
    blob_pulls: u64,
    blob_bytes: u64,
    errors: BTreeMap<ErrorKind, u64>,
    skipped: u64,
    duration: Histogram,
}

impl Metrics {
    pub(crate) fn new(registries: Vec<String>) -> Self {
        let per = registries.iter().map(|_| PerRegistry::default()).collect();
        Self {
            registries,
            inner: Mutex::new(Counters {
                per,
                failovers: BTreeMap::new(),
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.inner.lock().expect("metrics lock"))
    }

    pub(crate) fn pulled(&self, registry: usize, kind: PullKind, took: Duration) {
        self.with(|c| {
            let r = &mut c.per[registry];
            match kind {
                PullKind::Manifest => r.manifest_pulls += 1,
                PullKind::Blob => r.blob_pulls += 1,
            }
            r.duration.observe(took);
        });
    }

    pub(crate) fn bytes(&self, registry: usize, n: u64) {
        self.with(|c| c.per[registry].blob_bytes += n);
    }

    pub(crate) fn error(&self, registry: usize, kind: ErrorKind) {
        self.with(|c| *c.per[registry].errors.entry(kind).or_default() += 1);
    }

    pub(crate) fn skipped(&self, registry: usize) {
        self.with(|c| c.per[registry].skipped += 1);
    }

    pub(crate) fn failover(&self, from: usize, to: usize) {
        self.with(|c| *c.failovers.entry((from, to)).or_default() += 1);
    }

    pub(crate) fn snapshot(&self, breakers: impl Fn(usize) -> BreakerState) -> MetricsSnapshot {
        self.with(|c| MetricsSnapshot {
            registries: c
                .per
                .iter()
                .enumerate()
                .map(|(i, r)| RegistryMetrics {
                    registry: self.registries[i].clone(),
                    manifest_pulls: r.manifest_pulls,
                    blob_pulls: r.blob_pulls,
                    blob_bytes: r.blob_bytes,
                    errors: r.errors.clone(),
                    skipped: r.skipped,
                    pull_duration: Histogram {
                        buckets: if r.duration.buckets.is_empty() {
                            vec![0; DURATION_BUCKETS.len()]
                        } else {
                            r.duration.buckets.clone()
                        },
                        ..r.duration.clone()
                    },
                    breaker: breakers(i),
                })
                .collect(),
            failovers: c
                .failovers
                .iter()
                .map(|(&(from, to), &count)| FailoverCount {
                    from: self.registries[from].clone(),
                    to: self.registries[to].clone(),
                    count,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_family() {
        let m = Metrics::new(vec!["a:1".into(), "b:2".into()]);
        m.pulled(1, PullKind::Blob, Duration::from_millis(300));
        m.pulled(1, PullKind::Manifest, Duration::from_millis(20));
        m.error(0, ErrorKind::Status5xx);
        m.error(0, ErrorKind::Status5xx);
        m.failover(0, 1);
        m.bytes(1, 42);
        let snap = m.snapshot(|i| {
            if i == 0 {
                BreakerState::Open
            } else {
                BreakerState::Closed
            }
        });
        assert_eq!(snap.failovers("a:1", "b:2"), 1);
        let b = snap.registry("b:2").unwrap();
        assert_eq!(b.pull_duration.count, 2);
        assert_eq!(b.pull_duration.buckets[0], 1, "20 ms is under 50 ms");
        assert_eq!(b.pull_duration.buckets[3], 2, "both under 500 ms");
        let text = snap.to_prometheus();
        for line in [
            r#"hoist_registry_pulls_total{registry="b:2",kind="blob"} 1"#,
            r#"hoist_registry_pull_errors_total{registry="a:1",error_type="status_5xx"} 2"#,
            r#"hoist_registry_pull_errors_total{registry="a:1",error_type="timeout"} 0"#,
            r#"hoist_registry_failover_total{from="a:1",to="b:2"} 1"#,
            r#"hoist_registry_circuit_state{registry="a:1"} 1"#,
            r#"hoist_registry_pull_bytes_total{registry="b:2"} 42"#,
            r#"hoist_registry_pull_duration_seconds_bucket{registry="b:2",le="0.05"} 1"#,
            r#"hoist_registry_pull_duration_seconds_bucket{registry="b:2",le="+Inf"} 2"#,
            r#"hoist_registry_pull_duration_seconds_count{registry="b:2"} 2"#,
            "# TYPE hoist_registry_pull_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        let sum = text
            .lines()
            .find(|l| l.starts_with("hoist_registry_pull_duration_seconds_sum{registry=\"b:2\"}"))
            .unwrap();
        let v: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((v - 0.32).abs() < 1e-9, "{sum}");
        assert_eq!(label("a\"b\\c"), r#"a\"b\\c"#);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["registries"][0]["errors"]["status_5xx"], 2);
        assert_eq!(json["registries"][0]["breaker"], "open");
        assert_eq!(json["failovers"][0]["to"], "b:2");
    }
}
