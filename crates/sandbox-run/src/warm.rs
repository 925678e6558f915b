//! Warm containers: one container kept between tasks, as function
//! platforms keep their sandboxes warm, with a fresh `/io` and `/tmp` for
//! every task.

use std::io::{ErrorKind, PipeReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::launcher::{Report, WarmTask};
use crate::sandbox::Sandbox;
use crate::spec::{Io, Outcome, Output, RunResult, RunSpec};
use crate::{Error, Result, cgroup, message, oci};

/// How long the output of a finished task is still read: everything its
/// processes wrote is in the pipes by then.
const DRAIN: Duration = Duration::from_millis(100);

/// A container kept running between tasks. Made by
/// [`Sandbox::start_warm`].
///
/// The spec's command is a *server*: its standard input is a
/// `SOCK_SEQPACKET` socket on which it sends `ready` once it can take
/// tasks; for each `run` message it receives (with two descriptors: the
/// task's standard output and error) it runs the task in a child process
/// with those as its output, then kills every other process of the
/// container (`kill(-1, SIGKILL)`: it is pid 1 of the container's pid
/// namespace), reaps them and answers `exit CODE` or `signal NUMBER`.
/// hoist's function runner is such a server (`runner.py --serve`).
///
/// Every task gets a fresh `/io` (holding only its inputs) and an empty
/// `/tmp`: the launcher empties both before each task, after checking that
/// the server is the container's only process. The container keeps its
/// limits for its whole life: memory (tmpfs pages included), CPUs and
/// pids are shared by the server and the task. A task's timeout kills the
/// whole container; so does anything unexpected (the server dies, says
/// something else, or leaves other processes): [`Warm::is_alive`] turns
/// false and further tasks are refused with [`Error::WarmGone`].
///
/// Dropping a `Warm` stops its container; its launcher removes everything
/// and is reaped on a background thread ([`Warm::close`] waits instead).
///
/// ```no_run
/// use sandbox_run::{Io, Launcher, RootFs, RunSpec, Sandbox, SandboxConfig};
///
/// # fn main() -> sandbox_run::Result<()> {
/// let sandbox = Sandbox::new(SandboxConfig::new(Launcher::new("/usr/libexec/sandbox-launcher")))?;
/// let rootfs = RootFs::Overlay { lower: vec!["/var/cache/hoist/layers/top".into()] };
/// let mut spec = RunSpec::new(rootfs, vec!["python3".into(), "/opt/hoist/runner.py".into(), "--serve".into()]);
/// spec.io = Some(Io::new("/var/lib/hoist/unused"));
/// let mut warm = sandbox.start_warm(&spec)?;
/// for task in ["/var/lib/hoist/tasks/1", "/var/lib/hoist/tasks/2"] {
///     let mut io = Io::new(task);
///     io.inputs = vec!["inputs.json".into()];
///     io.outputs = vec!["output.json".into()];
///     let done = warm.run(&io, std::time::Duration::from_secs(30))?;
///     println!("{:?} in {:?}", done.outcome, done.duration);
/// }
/// warm.close()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Warm {
    sandbox: Sandbox,
    id: String,
    child: Option<Child>,
    socket: Option<OwnedFd>,
    alive: bool,
    io_bytes: u64,
    max_log_bytes: usize,
}

impl Sandbox {
    /// Starts `spec`'s command as a warm container's server (see
    /// [`Warm`]) and waits, up to the spec's timeout, until it is ready.
    ///
    /// The spec needs an [`Io`] (its size is every task's `/io` size; its
    /// files are not used) and captured output (the bound applies to each
    /// task's logs), and no [`crate::Capture`].
    pub fn start_warm(&self, spec: &RunSpec) -> Result<Warm> {
        oci::validate(spec)?;
        let invalid = |reason: &str| {
            Err(Error::InvalidSpec {
                reason: reason.into(),
            })
        };
        let Some(io) = &spec.io else {
            return invalid("a warm container needs an /io");
        };
        let Output::Capture { max_bytes } = spec.output else {
            return invalid("a warm container's output is captured per task");
        };
        if spec.capture.is_some() {
            return invalid("a warm container's root changes cannot be captured");
        }
        let started = Instant::now();
        let id = self.next_id();
        let request = self.request(spec, &id, true);
        let (child, socket) = self.spawn_launcher(Stdio::null(), Stdio::null())?;
        let mut warm = Warm {
            sandbox: self.handle(),
            id,
            child: Some(child),
            socket: Some(socket),
            alive: false,
            io_bytes: io.size_bytes,
            max_log_bytes: max_bytes,
        };
        let socket = warm.socket.as_ref().expect("just set");
        message::send(socket, &request, &[])
            .map_err(|e| self.launcher_failed(&warm.id, format!("send request: {e}")))?;
        let deadline = started + spec.limits.timeout;
        match self.exchange(socket, deadline, &warm.id)? {
            (Report::Started, _) => {
                warm.alive = true;
                Ok(warm)
            }
            (_, true) => Err(Error::WarmNotReady {
                id: warm.id.clone(),
                outcome: Outcome::TimedOut,
            }),
            (Report::Done(outcome, ..), false) => Err(Error::WarmNotReady {
                id: warm.id.clone(),
                outcome,
            }),
            (Report::Failed(detail), false) => Err(self.launcher_failed(&warm.id, detail)),
            (other, false) => {
                Err(self.launcher_failed(&warm.id, format!("unexpected report {other:?}")))
            }
        }
    }
}

impl Warm {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the container can take another task.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Memory the container uses now (its cgroup's, tmpfs pages included),
    /// when the memory controller says.
    pub fn memory_bytes(&self) -> Option<u64> {
        let dirs = cgroup::container_dirs(&self.sandbox.config().cgroup_parent, &self.id).ok()?;
        cgroup::memory_bytes(&dirs)
    }

    /// Runs one task with `io` (its inputs copied into the fresh `/io`,
    /// its outputs collected from it; [`Io::size_bytes`] is the
    /// container's) and kills the whole container at `timeout`.
    ///
    /// Returns `Err` when the task could not be handed over or the sandbox
    /// machinery failed; the container is then gone. A task that ran and
    /// failed is an [`Outcome`], as with [`Sandbox::run`].
    pub fn run(&mut self, io: &Io, timeout: Duration) -> Result<RunResult> {
        let started = Instant::now();
        if !self.alive {
            return Err(Error::WarmGone {
                id: self.id.clone(),
            });
        }
        let mut io = io.clone();
        io.size_bytes = self.io_bytes;
        oci::validate_io(&io)?;
        // Unusable unless the task's report says otherwise.
        self.alive = false;
        let pipe = || std::io::pipe().map_err(|e| Error::io("create", "pipe", e));
        let ((out_r, out_w), (err_r, err_w), (stop_r, stop_w)) = (pipe()?, pipe()?, pipe()?);
        let task = serde_json::to_vec(&WarmTask { io }).expect("tasks serialize");
        let socket = self.socket.as_ref().ok_or_else(|| Error::WarmGone {
            id: self.id.clone(),
        })?;
        message::send(socket, &task, &[out_w.as_fd(), err_w.as_fd()]).map_err(|e| {
            self.sandbox
                .launcher_failed(&self.id, format!("send the task: {e}"))
        })?;
        // Only the task may keep its output open.
        drop((out_w, err_w));
        let max = self.max_log_bytes;
        let (exchanged, [stdout, stderr]) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || read_until_stopped(out_r, err_r, stop_r, max));
            let exchanged = self.sandbox.exchange(socket, started + timeout, &self.id);
            drop(stop_w);
            (
                exchanged,
                reader.join().expect("output reader does not panic"),
            )
        });
        let (report, timed_out) = exchanged?;
        let (outcome, outputs) = match report {
            Report::Task(outcome, outputs, alive) => {
                self.alive = alive && !timed_out;
                (outcome, outputs)
            }
            Report::Failed(_) if timed_out => (Outcome::TimedOut, Vec::new()),
            Report::Failed(detail) => return Err(self.sandbox.launcher_failed(&self.id, detail)),
            other => {
                return Err(self
                    .sandbox
                    .launcher_failed(&self.id, format!("unexpected report {other:?}")));
            }
        };
        Ok(RunResult {
            outcome: if timed_out {
                Outcome::TimedOut
            } else {
                outcome
            },
            stdout: stdout.kept,
            stderr: stderr.kept,
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
            outputs,
            captured: None,
            duration: started.elapsed(),
        })
    }

    /// Stops the container and waits until its launcher removed
    /// everything.
    pub fn close(mut self) -> Result<()> {
        self.alive = false;
        drop(self.socket.take());
        match self.child.take() {
            Some(child) => self.sandbox.finish(child, &self.id),
            None => Ok(()),
        }
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        // Closing the socket tells the launcher to stop the container and
        // remove it; whatever it leaves is removed once it is gone.
        drop(self.socket.take());
        if let Some(child) = self.child.take() {
            let sandbox = self.sandbox.handle();
            let id = std::mem::take(&mut self.id);
            let _ = std::thread::Builder::new()
                .name("sandbox-warm-stop".into())
                .spawn(move || sandbox.finish(child, &id));
        }
    }
}

/// The first bytes of a stream, and whether there were more.
#[derive(Debug, Default)]
struct Capped {
    kept: Vec<u8>,
    truncated: bool,
}

impl Capped {
    fn push(&mut self, bytes: &[u8], max: usize) {
        let room = max.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.truncated |= bytes.len() > room;
    }
}

/// Reads both streams, keeping the first `max` bytes of each, until both
/// end, or until `stop` is readable (its writer closed) and what is left
/// in them was read: a server that kept a stream open cannot hold the
/// caller.
fn read_until_stopped(
    out: PipeReader,
    err: PipeReader,
    stop: PipeReader,
    max: usize,
) -> [Capped; 2] {
    let mut streams = [Some(out), Some(err)];
    let mut kept = [Capped::default(), Capped::default()];
    let mut chunk = vec![0u8; 64 * 1024];
    let mut drain_until: Option<Instant> = None;
    loop {
        let open: Vec<usize> = (0..2).filter(|i| streams[*i].is_some()).collect();
        if open.is_empty() {
            return kept;
        }
        let mut fds: Vec<&dyn AsFd> = open
            .iter()
            .map(|i| streams[*i].as_ref().expect("open") as &dyn AsFd)
            .collect();
        if drain_until.is_none() {
            fds.push(&stop);
        }
        let ready = match drain_until {
            // Whatever is already there, without waiting.
            Some(_) => message::wait(&fds, Some(Instant::now())),
            None => message::wait(&fds, None),
        };
        let Ok(ready) = ready else { return kept };
        if drain_until.is_none() && ready[open.len()] {
            drain_until = Some(Instant::now() + DRAIN);
        }
        let mut read_any = false;
        for (slot, i) in open.iter().enumerate() {
            if !ready[slot] {
                continue;
            }
            let stream = streams[*i].as_mut().expect("open");
            match stream.read(&mut chunk) {
                Ok(0) => streams[*i] = None,
                Ok(n) => {
                    kept[*i].push(&chunk[..n], max);
                    read_any = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => streams[*i] = None,
            }
        }
        if drain_until.is_some_and(|end| !read_any || Instant::now() >= end) {
            return kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn output_is_read_to_its_end_or_until_stopped() {
        // Both ends: everything is kept, up to the bound.
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, mut err_w) = std::io::pipe().unwrap();
        let (stop_r, _stop_w) = std::io::pipe().unwrap();
        out_w.write_all(b"hello").unwrap();
        err_w.write_all(&[b'e'; 300]).unwrap();
        drop((out_w, err_w));
        let [out, err] = read_until_stopped(out_r, err_r, stop_r, 100);
        assert_eq!(out.kept, b"hello");
        assert!(!out.truncated);
        assert_eq!(err.kept.len(), 100);
        assert!(err.truncated);

        // A writer that never closes: what it wrote is read once stopped.
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, _err_w) = std::io::pipe().unwrap();
        let (stop_r, stop_w) = std::io::pipe().unwrap();
        out_w.write_all(b"kept open").unwrap();
        let reader = std::thread::spawn(move || read_until_stopped(out_r, err_r, stop_r, 100));
        std::thread::sleep(Duration::from_millis(20));
        drop(stop_w);
        let [out, err] = reader.join().unwrap();
        assert_eq!(out.kept, b"kept open");
        assert!(err.kept.is_empty());
        drop(out_w);
    }
}
