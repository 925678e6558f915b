//! Detached containers: started, left running, stopped by the caller. A
//! server under test (a smoke test) is such a container.

use std::io::PipeReader;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::Child;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::launcher::Report;
use crate::live::{Lines, LiveOutput, OutputEvent, Queue, Stream};
use crate::sandbox::{Sandbox, read_capped_with, reap_in_background};
use crate::spec::{Output, RunResult, RunSpec};
use crate::{Error, Result, cgroup, message, oci};

/// How long a launcher may take to enter the container's network
/// namespace after it got its request.
const NAMESPACE_PATIENCE: Duration = Duration::from_secs(10);
/// How often a stopping container's cgroup is killed again while waiting
/// for its launcher's report.
const STOP_TICK: Duration = Duration::from_millis(50);

/// A container running in the background. Made by
/// [`Sandbox::start_detached`].
///
/// Its command runs as with [`Sandbox::run`] (same isolation and limits,
/// the spec's timeout included) while the caller does something else,
/// such as probing a server it started through
/// [`Detached::network_namespace`]. [`Detached::stop`] kills it and
/// returns how it ended with its captured output; it is never left
/// behind: dropping a `Detached` kills it too (from a thread that keeps
/// killing it until its launcher reports), and its launcher removes
/// its cgroups, bundle and state (a crashed launcher's leftovers are
/// removed by the caller's side as soon as it is gone).
///
/// ```no_run
/// use std::time::Duration;
/// use sandbox_run::{Launcher, RootFs, RunSpec, Sandbox, SandboxConfig};
///
/// # fn main() -> sandbox_run::Result<()> {
/// let sandbox = Sandbox::new(SandboxConfig::new(Launcher::new("/usr/libexec/sandbox-launcher")))?;
/// let rootfs = RootFs::Overlay { lower: vec!["/var/cache/hoist/layers/top".into()] };
/// let spec = RunSpec::new(rootfs, vec!["python3".into(), "-m".into(), "http.server".into()]);
/// let mut server = sandbox.start_detached(&spec)?;
/// // Connect to 127.0.0.1:8000 from a thread that entered
/// // `server.network_namespace()`...
/// if !server.wait(Duration::from_secs(1)) {
///     println!("still serving");
/// }
/// let ended = server.stop()?;
/// println!("{:?}: {}", ended.outcome, String::from_utf8_lossy(&ended.stderr));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Detached {
    id: String,
    cgroup_parent: String,
    netns: Option<OwnedFd>,
    /// The supervising thread's result, once, when the container ended.
    done: Receiver<Result<RunResult>>,
    ended: Option<Result<RunResult>>,
    /// Lines waiting for [`Detached::recv_output`], when started live.
    live: Option<Arc<Queue>>,
}

impl Sandbox {
    /// Starts `spec`'s command in a container of its own and returns at
    /// once (as soon as its network namespace exists), leaving it
    /// running under a background thread until it ends, its timeout
    /// passes or [`Detached::stop`] is called.
    ///
    /// The spec's output must be captured ([`Output::Capture`]): it is
    /// returned by [`Detached::stop`].
    pub fn start_detached(&self, spec: &RunSpec) -> Result<Detached> {
        self.detach(spec, None)
    }

    /// [`Sandbox::start_detached`], with the output also handed over line
    /// by line as it is written ([`Detached::recv_output`]), for logs that
    /// follow a long command. Lines wait in a queue of
    /// [`LiveOutput::max_queued_bytes`]; while it is full, lines are
    /// dropped and counted ([`OutputEvent::Dropped`]) rather than leaving
    /// the container blocked on a full pipe. The output captured for
    /// [`Detached::stop`] is the same as without live output.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sandbox_run::{Launcher, LiveOutput, RootFs, RunSpec, Sandbox, SandboxConfig};
    ///
    /// # fn main() -> sandbox_run::Result<()> {
    /// let sandbox = Sandbox::new(SandboxConfig::new(Launcher::new("/usr/libexec/sandbox-launcher")))?;
    /// let rootfs = RootFs::Dir("/srv/rootfs".into());
    /// let spec = RunSpec::new(rootfs, vec!["sh".into(), "-c".into(), "echo a; sleep 5; echo b >&2".into()]);
    /// let running = sandbox.start_detached_live(&spec, LiveOutput::default())?;
    /// // `a` is printed at once, `b` five seconds later.
    /// while let Some(events) = running.recv_output(Duration::from_millis(250)) {
    ///     for event in events {
    ///         println!("{event}");
    ///     }
    /// }
    /// let ended = running.stop()?;
    /// println!("{:?}", ended.outcome);
    /// # Ok(())
    /// # }
    /// ```
    pub fn start_detached_live(&self, spec: &RunSpec, live: LiveOutput) -> Result<Detached> {
        live.validate()?;
        self.detach(spec, Some(live))
    }

    fn detach(&self, spec: &RunSpec, live: Option<LiveOutput>) -> Result<Detached> {
        let started = Instant::now();
        oci::validate(spec)?;
        let Output::Capture { max_bytes } = spec.output else {
            return Err(Error::InvalidSpec {
                reason: "a detached container's output is captured".into(),
            });
        };
        let id = self.next_id();
        let request = self.request(spec, &id, false);
        let pipe = || std::io::pipe().map_err(|e| Error::io("create", "pipe", e));
        let ((out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?);
        let (child, socket) = self.spawn_launcher(out_w.into(), err_w.into())?;
        let netns = message::send(&socket, &request, &[])
            .map_err(|e| self.launcher_failed(&id, format!("send request: {e}")))
            .and_then(|()| match spec.network {
                crate::Network::None => network_namespace(&child, &socket, &id).map(Some),
                crate::Network::Host => Ok(None),
            });
        let (tx, done) = std::sync::mpsc::channel();
        let live = live.map(|l| (l.max_line_bytes, Arc::new(Queue::new(l.max_queued_bytes))));
        let supervisor = Supervisor {
            sandbox: self.handle(),
            id: id.clone(),
            child,
            socket,
            stdout: out_r,
            stderr: err_r,
            max_bytes,
            live: live.clone(),
            started,
            deadline: started + spec.limits.timeout,
        };
        let netns = match netns {
            Ok(netns) => netns,
            Err(e) => {
                // Nothing may outlive a failed start.
                let _ = supervisor.sandbox.finish(supervisor.child, &id);
                return Err(e);
            }
        };
        std::thread::Builder::new()
            .name("sandbox-detached".into())
            .spawn(move || {
                let _ = tx.send(supervisor.run());
            })
            .map_err(|e| Error::io("start", "a supervising thread", e))?;
        Ok(Detached {
            id,
            cgroup_parent: self.config().cgroup_parent.clone(),
            netns,
            done,
            ended: None,
            live: live.map(|(_, queue)| queue),
        })
    }
}

impl Detached {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's network namespace (its launcher's, which the
    /// container shares), `None` with [`crate::Network::Host`]. A thread
    /// that enters it with `setns(fd, CLONE_NEWNET)` reaches the
    /// container's servers on `127.0.0.1`; it stays valid, holding only
    /// the namespace with its `lo`, after the container is gone.
    pub fn network_namespace(&self) -> Option<BorrowedFd<'_>> {
        self.netns.as_ref().map(AsFd::as_fd)
    }

    /// Waits up to `timeout` for the container to end on its own; says
    /// whether it has.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        if self.ended.is_none() {
            match self.done.recv_timeout(timeout) {
                Ok(result) => self.ended = Some(result),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.ended = Some(Err(Error::Launcher {
                        id: self.id.clone(),
                        detail: "the supervising thread is gone".into(),
                    }));
                }
            }
        }
        self.ended.is_some()
    }

    /// Waits up to `timeout` for output of a container started with
    /// [`Sandbox::start_detached_live`] and takes all that is waiting: each
    /// stream's lines in the order written (the two streams interleaved as
    /// they were read), then a note per stream of what was dropped since
    /// the last call. Empty when nothing came in time; `None` once both
    /// streams ended (the container is gone) and everything was taken, or
    /// at once for a container started without live output.
    pub fn recv_output(&self, timeout: Duration) -> Option<Vec<OutputEvent>> {
        self.live.as_ref()?.take(timeout)
    }

    /// Kills the container unless it already ended, and returns how it
    /// ended ([`Outcome::Signaled`] when killed here) with its output,
    /// once its launcher removed everything.
    pub fn stop(mut self) -> Result<RunResult> {
        while !self.wait(Duration::ZERO) {
            // Killed again at every tick: a container still being created
            // gets its cgroup only later.
            let dirs = cgroup::container_dirs(&self.cgroup_parent, &self.id)?;
            cgroup::kill_all(&dirs)?;
            self.wait(STOP_TICK);
        }
        self.ended.take().expect("set by wait")
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if self.ended.is_some() {
            return;
        }
        // Killed until its launcher reports, from a thread of its own: a
        // container still being created gets its cgroup only later, and
        // the one dropping this (a cancelled build) does not wait.
        let (_, closed) = std::sync::mpsc::channel();
        let done = std::mem::replace(&mut self.done, closed);
        let (parent, id) = (self.cgroup_parent.clone(), self.id.clone());
        let _ = std::thread::Builder::new()
            .name("sandbox-stop".into())
            .spawn(move || {
                loop {
                    if let Ok(dirs) = cgroup::container_dirs(&parent, &id) {
                        let _ = cgroup::kill_all(&dirs);
                    }
                    if !matches!(done.recv_timeout(STOP_TICK), Err(RecvTimeoutError::Timeout)) {
                        break;
                    }
                }
            });
    }
}

/// Opens the network namespace the launcher `child` made for its
/// container: its `/proc/PID/ns/net` once it differs from this process's
/// (the launcher unshares right after reading its request; before that,
/// the file names the host's namespace). The launcher is not reaped
/// before this returns, so its pid names it all along.
fn network_namespace(child: &Child, socket: &OwnedFd, id: &str) -> Result<OwnedFd> {
    let ours = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| Error::io("stat", "/proc/self/ns/net", e))?;
    let path = format!("/proc/{}/ns/net", child.id());
    let failed = |detail: String| Error::Launcher {
        id: id.to_owned(),
        detail,
    };
    let patience = Instant::now() + NAMESPACE_PATIENCE;
    loop {
        // A launcher that already reported failed before any container.
        if message::wait(&[socket], Some(Instant::now()))
            .map_err(|e| failed(format!("wait for the launcher: {e}")))?[0]
        {
            let detail = match message::recv(socket) {
                Ok(Some((answer, _))) => match serde_json::from_slice(&answer) {
                    Ok(Report::Failed(detail)) => detail,
                    _ => "the launcher answered before the container started".into(),
                },
                _ => "the launcher ended before the container started".into(),
            };
            return Err(failed(detail));
        }
        // An exiting launcher's file is gone: its report says why, above.
        let opened = std::fs::File::open(&path).and_then(|f| Ok((f.metadata()?, f)));
        if let Ok((meta, file)) = opened
            && (meta.dev(), meta.ino()) != (ours.dev(), ours.ino())
        {
            return Ok(file.into());
        }
        if Instant::now() >= patience {
            return Err(failed("the launcher made no network namespace".into()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What the background thread of a detached container holds.
struct Supervisor {
    sandbox: Sandbox,
    id: String,
    child: Child,
    socket: OwnedFd,
    stdout: PipeReader,
    stderr: PipeReader,
    max_bytes: usize,
    /// The line bound and the queue of live output.
    live: Option<(usize, Arc<Queue>)>,
    started: Instant,
    deadline: Instant,
}

impl Supervisor {
    /// Reads the output, waits for the launcher's report (killing the
    /// container at the deadline), and removes whatever the launcher
    /// could not, as [`Sandbox::run`] does after it sent its request.
    fn run(self) -> Result<RunResult> {
        let Self {
            sandbox,
            id,
            child,
            socket,
            stdout,
            stderr,
            max_bytes,
            live,
            started,
            deadline,
        } = self;
        let read = |pipe: PipeReader, stream: Stream| {
            let live = live.clone();
            move || match live {
                None => read_capped_with(pipe, max_bytes, |_| {}),
                Some((max_line, queue)) => {
                    let mut lines = Lines::new(max_line);
                    let mut emit = |line| queue.push(stream, line);
                    let read = read_capped_with(pipe, max_bytes, |chunk| {
                        lines.feed(chunk, &mut emit);
                    });
                    lines.finish(&mut emit);
                    queue.close();
                    read
                }
            }
        };
        std::thread::scope(|scope| {
            let out = scope.spawn(read(stdout, Stream::Stdout));
            let err = scope.spawn(read(stderr, Stream::Stderr));
            let exchanged = sandbox.exchange(&socket, deadline, &id);
            let finished = match &exchanged {
                Ok((Report::Done(..), false)) => {
                    reap_in_background(child);
                    Ok(())
                }
                _ => sandbox.finish(child, &id),
            };
            let stdout = out.join().expect("output reader does not panic");
            let stderr = err.join().expect("output reader does not panic");
            let exchanged = exchanged?;
            finished?;
            sandbox.result(id, exchanged, stdout, stderr, started)
        })
    }
}
