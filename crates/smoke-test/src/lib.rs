//! Smoke tests of server images, as a CI pipeline runs them before it
//! publishes an image: start the image's own command in a sandbox, poll
//! `http://127.0.0.1:PORT/PATH` until it answers `200` or the time is up,
//! and remove the container whatever happened.
//!
//! The container keeps the sandbox's isolation: a network namespace of
//! its own with only `lo`, so nothing outside can reach it or be reached.
//! The probes are made from inside that namespace, by a thread that
//! enters it ([`http_probe::probe_in`]); they read only the status line
//! of each answer, with a bound, so a server that never answers, answers
//! gigabytes or answers garbage cannot hang or flood the test.
//!
//! A container that ends before it answers `200` fails the test at once,
//! without waiting for the timeout. [`smoke`] always stops the container
//! and waits until its launcher removed it before returning, so its
//! [`Report`] carries the container's captured output (bounded by the
//! spec's [`sandbox_run::Output::Capture`]), for the logs of a failure.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//! use sandbox_run::{Launcher, RootFs, RunSpec, Sandbox, SandboxConfig};
//! use smoke_test::{Check, smoke};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sandbox = Sandbox::new(SandboxConfig::new(Launcher::new("/usr/libexec/sandbox-launcher")))?;
//! let rootfs = RootFs::Overlay { lower: vec!["/var/cache/hoist/layers/top".into()] };
//! let spec = RunSpec::new(rootfs, vec!["python3".into(), "-m".into(), "http.server".into()]);
//! let mut check = Check::new(http_probe::Target::new(8000, "/")?);
//! check.timeout = Duration::from_secs(20);
//! let report = smoke(&sandbox, &spec, &check, &AtomicBool::new(false))?;
//! if !report.passed() {
//!     eprintln!("{}\n{}", report.reason(), String::from_utf8_lossy(&report.run.stderr));
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_probe::{Probe, Target};
use sandbox_run::{Detached, Outcome, RunResult, RunSpec, Sandbox};

/// How long the container may outlive the polling before its own
/// timeout kills it: the polling stops it long before, this is a bound
/// should the caller's process stall.
const CONTAINER_GRACE: Duration = Duration::from_secs(30);

/// What to poll and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The health endpoint.
    pub target: Target,
    /// How long the server has to answer `200` (default 20 s).
    pub timeout: Duration,
    /// The pause between two probes (default 250 ms).
    pub interval: Duration,
    /// The longest one probe may take (default 2 s): a server that
    /// accepts and never answers costs this much per attempt.
    pub attempt_timeout: Duration,
}

impl Check {
    /// A check of `target` with the default times.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            timeout: Duration::from_secs(20),
            interval: Duration::from_millis(250),
            attempt_timeout: Duration::from_secs(2),
        }
    }
}

/// How a smoke test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The server answered `200`.
    Passed,
    /// No `200` before the timeout; [`Report::last`] says what was seen.
    TimedOut,
    /// The container ended before answering `200`; the report's
    /// [`RunResult::outcome`] says how.
    Ended,
    /// The caller cancelled the test.
    Cancelled,
}

/// What a smoke test found.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it ended.
    pub verdict: Verdict,
    /// The last probe that did not pass, if any was made.
    pub last: Option<Probe>,
    /// Probes made.
    pub attempts: u32,
    /// From the start of the container to the verdict.
    pub elapsed: Duration,
    /// The container's run: how it ended (killed by the test unless it
    /// ended on its own) and its captured output.
    pub run: RunResult,
    /// The probed endpoint.
    pub target: Target,
    /// The timeout of the check.
    pub timeout: Duration,
}

impl Report {
    /// Whether the server answered `200`.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }

    /// One line saying why the test passed or failed.
    pub fn reason(&self) -> String {
        let target = &self.target;
        let last = self
            .last
            .as_ref()
            .map_or_else(String::new, |p| format!("; last probe: {p}"));
        match self.verdict {
            Verdict::Passed => format!(
                "{target} answered 200 after {} attempt{} in {} ms",
                self.attempts,
                if self.attempts == 1 { "" } else { "s" },
                self.elapsed.as_millis()
            ),
            Verdict::TimedOut => format!(
                "no 200 from {target} within {} ms{last}",
                self.timeout.as_millis()
            ),
            Verdict::Ended => {
                let how = match &self.run.outcome {
                    Outcome::Exited(code) => format!("exited with status {code}"),
                    Outcome::Signaled(signal) => format!("was killed by signal {signal}"),
                    Outcome::OomKilled => "ran out of memory".to_owned(),
                    Outcome::TimedOut => "reached its time limit".to_owned(),
                    Outcome::FailedToStart(why) => format!("did not start: {why}"),
                };
                format!("the container {how} before {target} answered 200{last}")
            }
            Verdict::Cancelled => format!("cancelled before {target} answered 200{last}"),
        }
    }
}

/// Why a smoke test could not be carried out (a server that fails it is a
/// [`Report`], not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sandbox could not start, watch or remove the container.
    #[error(transparent)]
    Sandbox(#[from] sandbox_run::Error),
    /// A probe could not be made (entering the namespace failed).
    #[error(transparent)]
    Probe(#[from] http_probe::Error),
}

/// Runs `spec` (the image's command, in a sandbox) and polls `check`'s
/// endpoint from inside its network namespace until it answers `200`,
/// the container ends, `check.timeout` passes or `cancel` turns true
/// (checked between probes). The container is then stopped and removed
/// before this returns, in every case, errors included.
///
/// The spec's output must be captured; its timeout is replaced by the
/// check's plus a margin.
pub fn smoke(
    sandbox: &Sandbox,
    spec: &RunSpec,
    check: &Check,
    cancel: &AtomicBool,
) -> Result<Report, Error> {
    let mut spec = spec.clone();
    spec.limits.timeout = check.timeout.saturating_add(CONTAINER_GRACE);
    let started = Instant::now();
    let mut container = sandbox.start_detached(&spec)?;
    let polled = poll(&mut container, check, started + check.timeout, cancel);
    let elapsed = started.elapsed();
    // Stopped whatever the polling found, before any error is returned.
    let run = container.stop()?;
    let (verdict, last, attempts) = polled?;
    Ok(Report {
        verdict,
        last,
        attempts,
        elapsed,
        run,
        target: check.target.clone(),
        timeout: check.timeout,
    })
}

/// Probes until a verdict; returns it, the last failed probe and the
/// number of probes.
fn poll(
    container: &mut Detached,
    check: &Check,
    deadline: Instant,
    cancel: &AtomicBool,
) -> Result<(Verdict, Option<Probe>, u32), Error> {
    let mut last = None;
    let mut attempts = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok((Verdict::Cancelled, last, attempts));
        }
        if container.wait(Duration::ZERO) {
            return Ok((Verdict::Ended, last, attempts));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((Verdict::TimedOut, last, attempts));
        }
        let budget = left.min(check.attempt_timeout);
        let probe = match container.network_namespace() {
            Some(netns) => http_probe::probe_in(netns, &check.target, budget)?,
            None => http_probe::probe(&check.target, budget),
        };
        attempts += 1;
        if probe.is_ok() {
            return Ok((Verdict::Passed, None, attempts));
        }
        last = Some(probe);
        // The pause ends early when the container does.
        let pause = deadline
            .saturating_duration_since(Instant::now())
            .min(check.interval);
        container.wait(pause);
    }
}
