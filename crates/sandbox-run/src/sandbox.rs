//! The caller's side: [`Sandbox::run`] and [`Sandbox::sweep`].

use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::mount::{MntFlags, umount2};

use crate::launcher::{Launcher, Report, Request};
use crate::spec::{Outcome, Output, RootFs, RunResult, RunSpec};
use crate::{Error, Result, cgroup, message, oci};

/// How long a launcher may take to clean up after its container was killed.
const LAUNCHER_GRACE: Duration = Duration::from_secs(10);
/// How often a timed-out container's cgroup is killed again while waiting
/// for its launcher's report.
const KILL_TICK: Duration = Duration::from_millis(100);

/// Where a [`Sandbox`] keeps its state and cgroups, and how it starts its
/// launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// Directory for bundles and container state (default
    /// `/run/hoist/sandbox`). Owned by the sandbox: a sweep empties it.
    pub state_root: PathBuf,
    /// Cgroup under which every container gets `/<cgroup_parent>/<id>`
    /// (default `hoist`). Owned by the sandbox: a sweep empties it.
    pub cgroup_parent: String,
    /// How to start the launcher process.
    pub launcher: Launcher,
}

impl SandboxConfig {
    /// The default locations with the given launcher.
    pub fn new(launcher: Launcher) -> Self {
        Self {
            state_root: PathBuf::from("/run/hoist/sandbox"),
            cgroup_parent: "hoist".to_owned(),
            launcher,
        }
    }

    /// The same with another state root.
    pub fn with_state_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_root = dir.into();
        self
    }

    /// The same with another cgroup parent.
    pub fn with_cgroup_parent(mut self, name: impl Into<String>) -> Self {
        self.cgroup_parent = name.into();
        self
    }
}

/// What [`Sandbox::sweep`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Processes killed.
    pub processes_killed: usize,
    /// Cgroup directories removed (one per hierarchy per container).
    pub cgroups_removed: usize,
    /// Mounts found under the state root and detached.
    pub mounts_removed: usize,
    /// Bundle and state directories removed.
    pub state_dirs_removed: usize,
}

/// Runs containers. Cheap to share: `run` takes `&self` and may be called
/// from several threads at once.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    counter: AtomicU64,
}

impl Sandbox {
    /// Checks the configuration and creates the state directories.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        let parent = &config.cgroup_parent;
        if parent.is_empty() || parent.contains('/') || parent == "." || parent == ".." {
            return Err(Error::InvalidSpec {
                reason: format!("cgroup parent {parent:?} must be one path component"),
            });
        }
        if !config.state_root.is_absolute() {
            return Err(Error::InvalidSpec {
                reason: format!("state root {} is not absolute", config.state_root.display()),
            });
        }
        for dir in [
            config.state_root.join("bundles"),
            config.state_root.join("containers"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        }
        Ok(Self {
            config,
            counter: AtomicU64::new(0),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Another handle on the same state root and cgroup parent, for a
    /// container that outlives the call that started it. Ids stay unique:
    /// they are made by the original only.
    pub(crate) fn handle(&self) -> Self {
        Self {
            config: self.config.clone(),
            counter: AtomicU64::new(0),
        }
    }

    fn bundles(&self) -> PathBuf {
        self.config.state_root.join("bundles")
    }

    fn states(&self) -> PathBuf {
        self.config.state_root.join("containers")
    }

    /// Removes what processes that are gone left behind: kills the
    /// processes of their container cgroups under the parent, removes those
    /// cgroups, detaches their mounts under the state root and deletes their
    /// bundle and state directories. Runs of other live processes sharing
    /// the state root are left alone; this process's own runs are not, so
    /// call it at start-up, before any `run`.
    ///
    /// Cheap when there is nothing to remove: a container's bundle
    /// directory is made before its cgroups and mounts and removed after
    /// them, so without a leftover bundle or state directory the cgroup
    /// hierarchies and the mount table are not searched.
    pub fn sweep(&self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let mut leftovers = Vec::new();
        for root in [self.bundles(), self.states()] {
            let entries = std::fs::read_dir(&root).map_err(|e| Error::io("read", &root, e))?;
            leftovers.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| is_leftover(p)),
            );
        }
        if leftovers.is_empty() {
            return Ok(report);
        }
        let dirs: Vec<PathBuf> = cgroup::children(&self.config.cgroup_parent)?
            .into_iter()
            .filter(|d| is_leftover(d))
            .collect();
        report.processes_killed = cgroup::remove(&dirs)?;
        report.cgroups_removed = dirs.len();
        report.mounts_removed = detach_mounts_under(&self.config.state_root)?;
        for path in &leftovers {
            std::fs::remove_dir_all(path).map_err(|e| Error::io("remove", path, e))?;
            report.state_dirs_removed += 1;
        }
        Ok(report)
    }

    /// Runs `spec` to its end and removes the container. The launcher
    /// process may still be exiting when this returns; it is reaped on a
    /// background thread.
    ///
    /// Returns `Err` only when the sandbox machinery fails; a command that
    /// cannot start is [`Outcome::FailedToStart`]. Blocks for up to the
    /// spec's timeout (plus clean-up): async callers use `spawn_blocking`.
    pub fn run(&self, spec: &RunSpec) -> Result<RunResult> {
        let started = Instant::now();
        oci::validate(spec)?;
        let id = self.next_id();
        let request = self.request(spec, &id, false);
        let (stdout, stderr, capture) = match spec.output {
            Output::Capture { max_bytes } => {
                let (out_r, out_w) = std::io::pipe().map_err(|e| Error::io("create", "pipe", e))?;
                let (err_r, err_w) = std::io::pipe().map_err(|e| Error::io("create", "pipe", e))?;
                (out_w.into(), err_w.into(), Some((out_r, err_r, max_bytes)))
            }
            Output::Inherit => (Stdio::inherit(), Stdio::inherit(), None),
        };
        // The pipes' write ends go to the launcher only (the command holding
        // them is gone when this returns), or the readers below would never
        // see the end of the output.
        let (child, socket) = self.spawn_launcher(stdout, stderr)?;

        std::thread::scope(|scope| {
            let readers = capture.map(|(out, err, max)| {
                (
                    scope.spawn(move || read_capped(out, max)),
                    scope.spawn(move || read_capped(err, max)),
                )
            });
            let deadline = started + spec.limits.timeout;
            let exchanged = message::send(&socket, &request, &[])
                .map_err(|e| self.launcher_failed(&id, format!("send request: {e}")))
                .and_then(|()| self.exchange(&socket, deadline, &id));
            let finished = match &exchanged {
                // The launcher removed everything before this report (a
                // failed clean-up is a `Failed` report) and closed its
                // output; tearing down its namespaces as it exits takes
                // milliseconds nobody needs to wait for.
                Ok((Report::Done(..), false)) => {
                    reap_in_background(child);
                    Ok(())
                }
                _ => self.finish(child, &id),
            };
            let (stdout, stderr) = match readers {
                Some((out, err)) => (
                    out.join().expect("output reader does not panic"),
                    err.join().expect("output reader does not panic"),
                ),
                None => Default::default(),
            };
            let exchanged = exchanged?;
            finished?;
            self.result(id, exchanged, stdout, stderr, started)
        })
    }

    /// A run's result from the launcher's last report (and whether the
    /// deadline passed) and the output read.
    pub(crate) fn result(
        &self,
        id: String,
        (report, timed_out): (Report, bool),
        stdout: (Vec<u8>, bool),
        stderr: (Vec<u8>, bool),
        started: Instant,
    ) -> Result<RunResult> {
        let (outcome, outputs, captured) = match report {
            Report::Done(_, outputs, captured) if timed_out => {
                (Outcome::TimedOut, outputs, captured)
            }
            Report::Failed(_) if timed_out => (Outcome::TimedOut, Vec::new(), None),
            Report::Done(outcome, outputs, captured) => (outcome, outputs, captured),
            Report::Failed(detail) => return Err(Error::Launcher { id, detail }),
            other => {
                return Err(self.launcher_failed(&id, format!("unexpected report {other:?}")));
            }
        };
        Ok(RunResult {
            outcome,
            stdout: stdout.0,
            stderr: stderr.0,
            stdout_truncated: stdout.1,
            stderr_truncated: stderr.1,
            outputs,
            captured,
            duration: started.elapsed(),
        })
    }

    /// The launcher's request for `spec`, as container `id`.
    pub(crate) fn request(&self, spec: &RunSpec, id: &str, warm: bool) -> Vec<u8> {
        let bundle = self.bundles().join(id);
        let root_path = match &spec.rootfs {
            RootFs::Dir(dir) => dir.clone(),
            RootFs::Overlay { .. } => bundle.join("rootfs"),
        };
        let cgroups_path = format!("/{}/{id}", self.config.cgroup_parent);
        let tmp = warm.then(|| bundle.join("tmp"));
        let request = Request {
            id: id.to_owned(),
            state: self.states(),
            cgroup_parent: self.config.cgroup_parent.clone(),
            rootfs: spec.rootfs.clone(),
            isolate_network: spec.network == crate::Network::None,
            scratch_bytes: spec.limits.tmp_bytes,
            io: spec.io.clone(),
            capture: spec.capture.clone(),
            uid: spec.uid,
            gid: spec.gid,
            config: oci::config(
                spec,
                &root_path,
                &cgroups_path,
                &bundle.join("io"),
                tmp.as_deref(),
            ),
            bundle,
            warm,
        };
        serde_json::to_vec(&request).expect("requests serialize")
    }

    /// Starts a launcher with `stdout` and `stderr`; returns it and the
    /// caller's end of its socket.
    pub(crate) fn spawn_launcher(&self, stdout: Stdio, stderr: Stdio) -> Result<(Child, OwnedFd)> {
        let (socket, launcher_end) =
            message::pair().map_err(|e| Error::io("create", "socket pair", e))?;
        let mut command = Command::new(&self.config.launcher.program);
        command
            .args(&self.config.launcher.args)
            .env_clear()
            .stdin(Stdio::from(launcher_end))
            .stdout(stdout)
            .stderr(stderr);
        let child = command.spawn().map_err(|source| Error::LauncherSpawn {
            program: self.config.launcher.program.clone(),
            source,
        })?;
        Ok((child, socket))
    }

    pub(crate) fn launcher_failed(&self, id: &str, detail: String) -> Error {
        Error::Launcher {
            id: id.to_owned(),
            detail,
        }
    }

    pub(crate) fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!(
            "{:x}-{n:x}-{:x}",
            std::process::id(),
            nanos & 0xffff_ffff_ffff
        )
    }

    /// Waits for the launcher's next report; at `deadline`, kills the
    /// container and waits (bounded) for the launcher to report anyway.
    /// Says whether the deadline passed.
    pub(crate) fn exchange(
        &self,
        socket: &OwnedFd,
        deadline: Instant,
        id: &str,
    ) -> Result<(Report, bool)> {
        let failed = |detail: String| self.launcher_failed(id, detail);
        let mut timed_out = false;
        let mut grace_end = None;
        loop {
            let wake = match grace_end {
                Some(_) => Instant::now() + KILL_TICK,
                None => deadline,
            };
            let ready = message::wait(&[socket], Some(wake))
                .map_err(|e| failed(format!("wait for the report: {e}")))?;
            if ready[0] {
                let answer = match message::recv(socket) {
                    Ok(Some((answer, _))) => answer,
                    Ok(None) => return Err(failed("the launcher ended without a report".into())),
                    Err(e) => return Err(failed(format!("read report: {e}"))),
                };
                let report = serde_json::from_slice(&answer)
                    .map_err(|e| failed(format!("the launcher sent no valid report ({e})")))?;
                return Ok((report, timed_out));
            }
            if grace_end.is_some_and(|end| Instant::now() >= end) {
                return Err(failed("no report after the container was killed".into()));
            }
            if !timed_out {
                timed_out = true;
                grace_end = Some(Instant::now() + LAUNCHER_GRACE);
            }
            // Killed again at every tick of the grace period: a container
            // still being created at the deadline gets its cgroup only
            // later.
            let dirs = cgroup::container_dirs(&self.config.cgroup_parent, id)?;
            cgroup::kill_all(&dirs)?;
        }
    }

    /// Reaps the launcher (killing it if it lingers) and removes whatever it
    /// could not: cgroups, bundle and state directories.
    pub(crate) fn finish(&self, mut child: Child, id: &str) -> Result<()> {
        let waited = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if waited.elapsed() < LAUNCHER_GRACE => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        let dirs = cgroup::container_dirs(&self.config.cgroup_parent, id)?;
        cgroup::remove(&dirs)?;
        for dir in [self.bundles().join(id), self.states().join(id)] {
            if dir.exists() {
                // A crashed launcher's mounts died with its namespace; a
                // plain directory tree is left.
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
            }
        }
        Ok(())
    }
}

/// Waits for an exiting launcher on a thread of its own, so that it does
/// not stay a zombie in a long-lived caller.
pub(crate) fn reap_in_background(mut child: Child) {
    // Without a thread the launcher stays a zombie until this process ends
    // (then init reaps it): nothing else is held.
    let _ = std::thread::Builder::new()
        .name("sandbox-reap".into())
        .spawn(move || child.wait());
}

/// Reads a stream to its end, keeping the first `max` bytes.
pub(crate) fn read_capped(stream: impl Read, max: usize) -> (Vec<u8>, bool) {
    read_capped_with(stream, max, |_| {})
}

/// [`read_capped`], handing every chunk read to `each` as well.
pub(crate) fn read_capped_with(
    mut stream: impl Read,
    max: usize,
    mut each: impl FnMut(&[u8]),
) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                each(&chunk[..n]);
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
                truncated |= n > room;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (kept, truncated)
}

/// Detaches every mount at or below `root` (deepest first).
/// Whether the container named by the last component of `path` belongs to
/// a process that is gone (or to this one, whose pid an earlier process may
/// have had): ids start with the owning process's pid in hex. Runs of other
/// live processes sharing the state root and cgroup parent (several `hoist
/// run`s at once) are left alone.
fn is_leftover(path: &Path) -> bool {
    let owner = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|pid| u32::from_str_radix(pid, 16).ok());
    match owner {
        Some(pid) if pid != std::process::id() => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => true,
    }
}

fn detach_mounts_under(root: &Path) -> Result<usize> {
    let path = "/proc/self/mountinfo";
    let info = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let mut targets: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(cgroup::unescape(m)))
        .filter(|m| {
            // STATE_ROOT/{bundles,containers}/ID/...: only leftovers' mounts.
            m.strip_prefix(root)
                .ok()
                .and_then(|rel| rel.components().nth(1))
                .is_some_and(|id| is_leftover(Path::new(id.as_os_str())))
        })
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    targets.dedup();
    for target in &targets {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
    Ok(targets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_first_bytes_and_reports_truncation() {
        let data = vec![7u8; 200_000];
        assert_eq!(read_capped(&data[..], 1000), (vec![7u8; 1000], true));
        assert_eq!(read_capped(&data[..10], 1000), (vec![7u8; 10], false));
        assert_eq!(read_capped(&data[..1000], 1000), (vec![7u8; 1000], false));
    }

    #[test]
    fn bad_configs_are_refused() {
        let launcher = Launcher::new("/nonexistent");
        for parent in ["", "a/b", ".."] {
            let config = SandboxConfig {
                cgroup_parent: parent.into(),
                ..SandboxConfig::new(launcher.clone())
            };
            assert!(
                matches!(Sandbox::new(config), Err(Error::InvalidSpec { .. })),
                "{parent:?}"
            );
        }
        let config = SandboxConfig {
            state_root: "rel".into(),
            ..SandboxConfig::new(launcher)
        };
        assert!(matches!(
            Sandbox::new(config),
            Err(Error::InvalidSpec { .. })
        ));
    }
}
