//! Warm sandboxes kept between tasks of the same function image
//! ([`function_run::WarmFunction`]), within bounds.
//!
//! Reuse policy: a sandbox serves only tasks of the function and image it
//! was started for, one task at a time; every task runs in a fresh fork of
//! the function's server with an empty `/tmp` and a `/io` holding only its
//! inputs, and nothing it starts outlives it. Between tasks a sandbox is
//! *idle*: at most [`WarmPolicy::max_idle`] idle sandboxes are kept, with
//! at most [`WarmPolicy::max_idle_memory`] bytes of memory together
//! (measured by their cgroups when they come back), each for at most
//! [`WarmPolicy::idle_timeout`]; beyond a bound the least recently used
//! goes. A sandbox whose task timed out, or whose server broke, is never
//! kept. An idle sandbox keeps its image's layers pinned in the cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use function_run::WarmFunction;
use layer_cache::CachedImage;

/// Bounds of the sandboxes a worker keeps warm.
///
/// ```
/// let policy = service::worker::WarmPolicy::default();
/// assert_eq!(policy.max_idle, 8);
/// assert_eq!(policy.idle_timeout, std::time::Duration::from_secs(300));
/// assert_eq!(policy.max_idle_memory, 1 << 30);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmPolicy {
    /// Idle sandboxes kept at most (default 8; 0 turns warm sandboxes
    /// off: every task gets a container of its own).
    pub max_idle: usize,
    /// How long a sandbox stays idle before it is stopped (default 300 s).
    pub idle_timeout: Duration,
    /// Memory the idle sandboxes may hold together (default 1 GiB).
    pub max_idle_memory: u64,
}

impl Default for WarmPolicy {
    fn default() -> Self {
        Self {
            max_idle: 8,
            idle_timeout: Duration::from_secs(300),
            max_idle_memory: 1 << 30,
        }
    }
}

/// A warm sandbox and the image it runs (pinned while it lives).
pub(crate) struct Sandbox {
    pub(crate) function: WarmFunction,
    pub(crate) image: CachedImage,
}

struct Idle {
    key: String,
    sandbox: Sandbox,
    since: Instant,
    memory: u64,
}

#[derive(Default)]
struct Counters {
    starts: u64,
    reuses: u64,
    stopped_idle: u64,
    stopped_bounds: u64,
}

/// The idle sandboxes, least recently used first.
pub(crate) struct Pool {
    policy: WarmPolicy,
    idle: Mutex<(Vec<Idle>, Counters)>,
}

impl Pool {
    pub(crate) fn new(policy: WarmPolicy) -> Self {
        Self {
            policy,
            idle: Mutex::new((Vec::new(), Counters::default())),
        }
    }

    /// Whether sandboxes are kept at all.
    pub(crate) fn enabled(&self) -> bool {
        self.policy.max_idle > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Idle>, Counters)> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle sandbox for `key`, the most recently used one.
    pub(crate) fn take(&self, key: &str) -> Option<Sandbox> {
        let mut guard = self.lock();
        let (idle, counters) = &mut *guard;
        let at = idle.iter().rposition(|i| i.key == key)?;
        counters.reuses += 1;
        Some(idle.remove(at).sandbox)
    }

    /// Counts a sandbox started for a task.
    pub(crate) fn started(&self) {
        self.lock().1.starts += 1;
    }

    /// Keeps `sandbox` for the next task of `key` if it can take one and
    /// the bounds allow; what no longer fits is stopped (outside the
    /// lock: a sandbox stops in the background when dropped).
    pub(crate) fn give_back(&self, key: String, sandbox: Sandbox) {
        if !self.enabled() || !sandbox.function.is_alive() {
            return;
        }
        let memory = sandbox.function.memory_bytes().unwrap_or(0);
        let stopped = {
            let mut guard = self.lock();
            let (idle, counters) = &mut *guard;
            idle.push(Idle {
                key,
                sandbox,
                since: Instant::now(),
                memory,
            });
            let mut stopped = Vec::new();
            while idle.len() > self.policy.max_idle
                || idle.iter().map(|i| i.memory).sum::<u64>() > self.policy.max_idle_memory
            {
                stopped.push(idle.remove(0));
                counters.stopped_bounds += 1;
            }
            stopped
        };
        drop(stopped);
    }

    /// Stops the sandboxes idle for longer than the policy allows.
    pub(crate) fn expire(&self) {
        let stopped: Vec<Idle> = {
            let mut guard = self.lock();
            let (idle, counters) = &mut *guard;
            let timeout = self.policy.idle_timeout;
            let (old, kept): (Vec<Idle>, Vec<Idle>) =
                idle.drain(..).partition(|i| i.since.elapsed() >= timeout);
            *idle = kept;
            counters.stopped_idle += old.len() as u64;
            old
        };
        drop(stopped);
    }

    /// Stops every idle sandbox and waits until each is removed.
    pub(crate) fn close(&self) {
        let all: Vec<Idle> = self.lock().0.drain(..).collect();
        for idle in all {
            if let Err(e) = idle.sandbox.function.close() {
                tracing::warn!(error = %e, "stopping a warm sandbox");
            }
        }
    }

    /// The pool's gauges and counters in the Prometheus text format.
    pub(crate) fn prometheus(&self) -> String {
        let guard = self.lock();
        let (idle, c) = &*guard;
        let memory: u64 = idle.iter().map(|i| i.memory).sum();
        format!(
            "# HELP hoist_warm_sandboxes Idle warm sandboxes kept.\n# TYPE hoist_warm_sandboxes gauge\nhoist_warm_sandboxes {}\n\
             # HELP hoist_warm_sandbox_memory_bytes Memory the idle warm sandboxes hold.\n# TYPE hoist_warm_sandbox_memory_bytes gauge\nhoist_warm_sandbox_memory_bytes {memory}\n\
             # HELP hoist_warm_starts_total Warm sandboxes started for a task.\n# TYPE hoist_warm_starts_total counter\nhoist_warm_starts_total {}\n\
             # HELP hoist_warm_reuses_total Tasks run in a sandbox kept warm.\n# TYPE hoist_warm_reuses_total counter\nhoist_warm_reuses_total {}\n\
             # HELP hoist_warm_stops_total Idle warm sandboxes stopped, by reason.\n# TYPE hoist_warm_stops_total counter\nhoist_warm_stops_total{{reason=\"idle\"}} {}\nhoist_warm_stops_total{{reason=\"bounds\"}} {}\n",
            idle.len(),
            c.starts,
            c.reuses,
            c.stopped_idle,
            c.stopped_bounds
        )
    }
}
