//! The launcher: a short-lived, single-threaded process that runs one
//! container through libcontainer and reports how it ended.
//!
//! Protocol: the launcher's standard input is a `SOCK_SEQPACKET` Unix
//! socket. The caller sends one JSON [`Request`]; the launcher answers with
//! one JSON [`Report`] message on the same socket and exits. The
//! container's standard output and error are the launcher's.
//!
//! A warm request ([`Request::warm`]) keeps the launcher: it answers
//! [`Report::Started`] once the container's server is up, then one
//! [`Report::Task`] per [`WarmTask`] message until the caller closes the
//! socket or the container is gone (see [`crate::Warm`]).

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::network::link::LinkClient;
use libcontainer::network::wrapper::create_network_client;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup;
use crate::spec::{Capture, CaptureRefusal, Captured, Collected, Io, Outcome, RootFs};

/// How to start the launcher process.
///
/// A binary that embeds the launcher (such as `hoist`, with a hidden first
/// argument) calls [`launcher_main`] first thing in `main`, before any thread
/// or async runtime starts:
///
/// ```no_run
/// use sandbox_run::{Launcher, SandboxConfig};
///
/// const LAUNCHER_ARG: &str = "__sandbox-launcher";
///
/// fn main() {
///     if std::env::args_os().nth(1).is_some_and(|arg| arg == LAUNCHER_ARG) {
///         sandbox_run::launcher_main();
///     }
///     // Threads and the async runtime start only after this point.
///     let launcher = Launcher::new(std::env::current_exe().unwrap()).with_args([LAUNCHER_ARG]);
///     let config = SandboxConfig::new(launcher);
///     # drop(config);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    /// The program to execute.
    pub program: PathBuf,
    /// Arguments that make `program` call [`launcher_main`].
    pub args: Vec<OsString>,
}

impl Launcher {
    /// A launcher started as `program` with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// The same launcher started with `args`.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
}

/// What the launcher is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub id: String,
    /// The OCI bundle directory to create.
    pub bundle: PathBuf,
    /// libcontainer's state root.
    pub state: PathBuf,
    pub cgroup_parent: String,
    pub rootfs: RootFs,
    /// Whether to run in a new network namespace with `lo` up.
    pub isolate_network: bool,
    /// Size of the in-memory upper layer of an overlay root.
    pub scratch_bytes: u64,
    /// The private `/io`, mounted at `bundle/io`.
    pub io: Option<Io>,
    /// Where to copy the overlay's upper layer after the run.
    pub capture: Option<Capture>,
    /// The container's user and group, who own `/io`.
    pub uid: u32,
    pub gid: u32,
    /// The runtime spec; its `root.path` is already final.
    pub config: serde_json::Value,
    /// Keep the container and serve tasks (see [`crate::Warm`]).
    pub warm: bool,
}

/// One task of a warm container: its `/io`. The message carries the
/// task's standard output and error as two descriptors.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WarmTask {
    pub io: Io,
}

/// What the launcher answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The container ran (or could not start) and was removed; its `/io`
    /// outputs were collected and its root's changes captured.
    Done(
        Outcome,
        Vec<Collected>,
        Option<Result<Captured, CaptureRefusal>>,
    ),
    /// The sandbox machinery failed.
    Failed(String),
    /// A warm container's server is ready for tasks.
    Started,
    /// A warm container's task ended: its outcome, its collected `/io`
    /// outputs, and whether the container can take another task.
    Task(Outcome, Vec<Collected>, bool),
}

/// The body of the launcher process: reads a request on standard input, runs
/// the container, removes it, reports and exits. Never returns.
///
/// Call it first thing in `main` of the program named by [`Launcher`], before
/// any other thread starts: libcontainer forks, which is only safe in a
/// single-threaded process.
#[expect(
    clippy::disallowed_methods,
    reason = "the launcher must end its process here, never return into the embedding program's main"
)]
pub fn launcher_main() -> ! {
    close_inherited_fds();
    let report = match read_request() {
        Ok(request) if request.warm => {
            crate::serve::serve(&request);
            std::process::exit(0)
        }
        Ok(request) => run(&request),
        Err(e) => Report::Failed(format!("bad request: {e}")),
    };
    // The caller may stop waiting once it has the report: it must already
    // see the end of the output it captures.
    close_output();
    let code = match send_report(&report) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code)
}

/// Closes every descriptor but the standard three, so that nothing the
/// caller leaked reaches a container.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // The directory's own descriptor is already closed: EBADF is fine.
        let _ = nix::unistd::close(fd);
    }
}

/// Points standard output and error at `/dev/null`. Every process of the
/// container is gone by now, so this closes the caller's pipes.
fn close_output() {
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
}

fn read_request() -> Result<Request, String> {
    match crate::message::recv(std::io::stdin().as_fd()) {
        Ok(Some((text, _))) => serde_json::from_slice(&text).map_err(|e| e.to_string()),
        Ok(None) => Err("the caller sent nothing".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends `report` to the caller over standard input.
pub(crate) fn send_report(report: &Report) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(report)?;
    crate::message::send(std::io::stdin().as_fd(), &bytes, &[])
}

/// The message of an error and of all its sources.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn run(request: &Request) -> Report {
    debug_assert!(!request.warm);
    if let Err(e) = isolate(request.isolate_network) {
        return Report::Failed(e);
    }
    let report = match prepare_bundle(request) {
        Ok(()) => {
            let outcome = run_container(request);
            match collect_io(request).and_then(|o| Ok((o, capture(request)?))) {
                Ok((outputs, captured)) => Report::Done(outcome, outputs, captured),
                Err(e) => Report::Failed(e),
            }
        }
        Err(e) => Report::Failed(e),
    };
    let cleanup = clean_up(request);
    match (report, cleanup) {
        (Report::Done(..), Err(e)) => Report::Failed(e),
        (report, _) => report,
    }
}

/// Gives the launcher a private mount namespace (mounts made here vanish
/// with it) and, when asked, a network namespace with `lo` up, which the
/// container then shares.
pub(crate) fn isolate(network: bool) -> Result<(), String> {
    let mut flags = CloneFlags::CLONE_NEWNS;
    if network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make mounts private: {e}"))?;
    if network {
        let mut links =
            LinkClient::new(create_network_client()).map_err(|e| format!("netlink: {e}"))?;
        let lo = links
            .get_by_name("lo")
            .map_err(|e| format!("find lo: {e}"))?;
        links
            .set_up(lo.header.index)
            .map_err(|e| format!("bring lo up: {e}"))?;
    }
    Ok(())
}

pub(crate) fn prepare_bundle(request: &Request) -> Result<(), String> {
    let io = |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
    std::fs::create_dir_all(&request.bundle).map_err(|e| io("create", &request.bundle, e))?;
    if let RootFs::Overlay { lower } = &request.rootfs {
        let scratch = request.bundle.join("scratch");
        let rootfs = request.bundle.join("rootfs");
        for dir in [&scratch, &rootfs] {
            std::fs::create_dir(dir).map_err(|e| io("create", dir, e))?;
        }
        // A kept upper layer is bounded by its tmpfs: bytes and inodes.
        let options = match &request.capture {
            Some(c) => format!(
                "size={},nr_inodes={},mode=0700",
                c.max_bytes,
                c.max_entries.saturating_add(SCRATCH_INODES)
            ),
            None => format!("size={},mode=0700", request.scratch_bytes),
        };
        mount(
            Some("tmpfs"),
            &scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| format!("mount scratch tmpfs: {e}"))?;
        match &request.capture {
            Some(c) => {
                crate::capture::check_empty(&c.dir)?;
                let points = request.bundle.join("mount-points");
                make_mount_points(&points, &request.config, lower)?;
                let lower: Vec<PathBuf> = std::iter::once(points).chain(lower.clone()).collect();
                mount_overlay(&request.bundle, &lower, &rootfs, CAPTURED_OVERLAY)?;
            }
            None => mount_overlay(&request.bundle, lower, &rootfs, "")?,
        }
    }
    if let Some(io) = &request.io {
        crate::io::prepare(io, &request.bundle.join("io"), request.uid, request.gid)?;
    }
    if request.warm {
        // A warm container's `/tmp` is the launcher's, so that it can be
        // emptied between tasks.
        crate::io::mount_tmp(&request.bundle.join("tmp"), request.scratch_bytes)?;
    }
    let config = request.bundle.join("config.json");
    let bytes = serde_json::to_vec(&request.config).map_err(|e| e.to_string())?;
    std::fs::write(&config, bytes).map_err(|e| io("write", &config, e))
}

/// Inodes of the scratch tmpfs beyond a capture's entries: the upper and
/// work directories and what overlayfs keeps in the work directory.
const SCRATCH_INODES: u64 = 64;
/// Overlay options of a captured root: a renamed lower directory is copied
/// up whole and a changed lower file's data with it, so that the upper
/// layer alone says what changed (no redirect or metacopy xattrs
/// pointing into lower layers).
const CAPTURED_OVERLAY: &str = ",redirect_dir=off,metacopy=off";

/// Makes `dir` a layer holding the directory of every mount of the
/// runtime spec `config` (`proc`, `dev`, `sys`, `tmp`, `io`...), so that
/// the runtime finds its mount points in a lower layer and creates none
/// in the upper one. Each directory on the way takes the owner and mode
/// the top-most lower layer gives it, so that the layer changes nothing
/// the container sees but the mount points themselves.
fn make_mount_points(
    dir: &Path,
    config: &serde_json::Value,
    lower: &[PathBuf],
) -> Result<(), String> {
    let create =
        |d: &Path| std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()));
    create(dir)?;
    let mounts = config["mounts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for destination in mounts.iter().filter_map(|m| m["destination"].as_str()) {
        let mut rel = PathBuf::new();
        for part in Path::new(destination).components() {
            let std::path::Component::Normal(name) = part else {
                continue;
            };
            rel.push(name);
            let made = dir.join(&rel);
            if made.is_dir() {
                continue;
            }
            create(&made)?;
            like_lower(&made, &rel, lower)?;
        }
    }
    Ok(())
}

/// Gives `made` the owner and mode of `rel` in the top-most lower layer
/// that has it, when that is a directory (never following a link).
fn like_lower(made: &Path, rel: &Path, lower: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(meta) = lower
        .iter()
        .find_map(|l| std::fs::symlink_metadata(l.join(rel)).ok())
    else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    let fail = |e: std::io::Error| format!("set {}: {e}", made.display());
    std::os::unix::fs::chown(made, Some(meta.uid()), Some(meta.gid())).map_err(fail)?;
    std::fs::set_permissions(made, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(fail)
}

/// Mounts `lower` (top-most first) as an overlay on `rootfs`, with the
/// upper and work directories in `bundle/scratch`, a tmpfs already there,
/// and `extra` appended to the options.
///
/// The options name each layer by a short symlink, `bundle/lower/0`, `1`,
/// ..., relative to that directory as the working directory (containerd
/// shortens its options with a chdir too): full cache paths would pass the
/// kernel's one-page limit on mount options near fifty layers, and a path
/// holding `:` or `,` would be split there. 500 layers, the most overlayfs
/// stacks, take under 2 KiB. Changing the working directory is safe in
/// this single-threaded process, which changes it back at once.
fn mount_overlay(
    bundle: &Path,
    lower: &[PathBuf],
    rootfs: &Path,
    extra: &str,
) -> Result<(), String> {
    use std::os::fd::AsRawFd;

    let create = |dir: PathBuf| {
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))
    };
    create(bundle.join("scratch/upper"))?;
    create(bundle.join("scratch/work"))?;
    let links = bundle.join("lower");
    create(links.clone())?;
    let mut names = Vec::with_capacity(lower.len());
    for (i, layer) in lower.iter().enumerate() {
        let name = i.to_string();
        std::os::unix::fs::symlink(layer, links.join(&name))
            .map_err(|e| format!("link layer {}: {e}", layer.display()))?;
        names.push(name);
    }
    let options = format!(
        "lowerdir={},upperdir=../scratch/upper,workdir=../scratch/work{extra}",
        names.join(":")
    );
    let back = File::open(".").map_err(|e| format!("open the working directory: {e}"))?;
    std::env::set_current_dir(&links).map_err(|e| format!("chdir {}: {e}", links.display()))?;
    let mounted = mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    );
    nix::unistd::fchdir(back.as_raw_fd())
        .map_err(|e| format!("return to the working directory: {e}"))?;
    mounted.map_err(|e| format!("mount overlay root of {} layers: {e}", lower.len()))
}

fn run_container(request: &Request) -> Outcome {
    let dev_null = match File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => return Outcome::FailedToStart(format!("open /dev/null: {e}")),
    };
    match start_container(request, dev_null.into()) {
        Ok(pid) => wait_container(request, pid),
        Err(outcome) => outcome,
    }
}

/// Creates and starts the container with `stdin` as its standard input;
/// returns its init's pid, or the outcome of a container that did not
/// start (and was deleted).
pub(crate) fn start_container(request: &Request, stdin: OwnedFd) -> Result<Pid, Outcome> {
    let sigpipe = DefaultSigpipe::set();
    let built = ContainerBuilder::new(request.id.clone(), SyscallType::default())
        .with_root_path(&request.state)
        .map(|b| {
            b.with_stdin(stdin)
                .as_init(&request.bundle)
                .with_systemd(false)
                .build()
        });
    drop(sigpipe);
    let mut container = match built {
        Ok(Ok(container)) => container,
        Ok(Err(e)) | Err(e) => return Err(Outcome::FailedToStart(chain(&e))),
    };
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(Outcome::FailedToStart(chain(&e)));
    }
    match container.pid() {
        Some(pid) => Ok(pid),
        None => {
            let _ = container.delete(true);
            Err(Outcome::FailedToStart(
                "container has no init process".into(),
            ))
        }
    }
}

/// Waits for the container's init `pid` to end and says how it did.
pub(crate) fn wait_container(request: &Request, pid: Pid) -> Outcome {
    let status = loop {
        match waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    // The init is reaped and its pid namespace gone; `clean_up` removes the
    // cgroups and state (faster than libcontainer's delete, which retries
    // with sleeps).
    let dirs = cgroup::container_dirs(&request.cgroup_parent, &request.id).unwrap_or_default();
    let oom_kills = cgroup::oom_kills(&dirs);
    match status {
        _ if oom_kills > 0 => Outcome::OomKilled,
        Ok(WaitStatus::Exited(_, code)) => Outcome::Exited(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => Outcome::Signaled(signal as i32),
        Ok(other) => Outcome::FailedToStart(format!("unexpected wait status {other:?}")),
        Err(e) => Outcome::FailedToStart(format!("wait for container init: {e}")),
    }
}

/// Collects the `/io` outputs once no process of the container is left
/// (the init is reaped; its pid namespace's other processes are killed
/// with it, and the cgroup is killed again here for good measure).
fn collect_io(request: &Request) -> Result<Vec<Collected>, String> {
    let Some(io) = &request.io else {
        return Ok(Vec::new());
    };
    let dirs =
        cgroup::container_dirs(&request.cgroup_parent, &request.id).map_err(|e| e.to_string())?;
    cgroup::kill_all(&dirs).map_err(|e| e.to_string())?;
    crate::io::collect(io, &request.bundle.join("io"))
}

/// Copies the overlay's upper layer into the capture directory once no
/// process of the container is left (see [`collect_io`]).
fn capture(request: &Request) -> Result<Option<Result<Captured, CaptureRefusal>>, String> {
    let Some(capture) = &request.capture else {
        return Ok(None);
    };
    let dirs =
        cgroup::container_dirs(&request.cgroup_parent, &request.id).map_err(|e| e.to_string())?;
    cgroup::kill_all(&dirs).map_err(|e| e.to_string())?;
    crate::capture::copy_upper(&request.bundle.join("scratch/upper"), capture).map(Some)
}

/// Removes the cgroups, state and bundle of the container, whatever
/// libcontainer left.
pub(crate) fn clean_up(request: &Request) -> Result<(), String> {
    let dirs =
        cgroup::container_dirs(&request.cgroup_parent, &request.id).map_err(|e| e.to_string())?;
    cgroup::remove(&dirs).map_err(|e| e.to_string())?;
    if matches!(request.rootfs, RootFs::Overlay { .. }) {
        for dir in ["rootfs", "scratch"] {
            let _ = umount2(&request.bundle.join(dir), MntFlags::MNT_DETACH);
        }
    }
    if request.io.is_some() {
        let _ = umount2(&request.bundle.join("io"), MntFlags::MNT_DETACH);
    }
    if request.warm {
        let _ = umount2(&request.bundle.join("tmp"), MntFlags::MNT_DETACH);
    }
    for dir in [request.state.join(&request.id), request.bundle.clone()] {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("remove {}: {e}", dir.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// SIGPIPE at its default for as long as it lives. Rust starts every
/// binary with SIGPIPE ignored, and an ignored signal stays ignored across
/// `exec`: a container forked while it is ignored never dies of a broken
/// pipe (`yes | head -n 1` runs on until its timeout). The container's
/// init is forked while this lives; the launcher's own disposition comes
/// back after, so that it sees `EPIPE` rather than dying of it.
struct DefaultSigpipe(Option<nix::sys::signal::SigHandler>);

impl DefaultSigpipe {
    #[allow(unsafe_code, reason = "sigaction; no handler is installed")]
    fn set() -> Self {
        use nix::sys::signal::{SigHandler, Signal, signal};
        // SAFETY: SIG_DFL installs no handler, so no code runs in signal
        // context; the disposition is process-wide, and the launcher's
        // other threads only write to pipes whose reader outlives them.
        Self(unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.ok())
    }
}

impl Drop for DefaultSigpipe {
    #[allow(unsafe_code, reason = "sigaction of a disposition read before")]
    fn drop(&mut self) {
        if let Some(previous) = self.0 {
            // SAFETY: restores what `set` replaced (SIG_IGN as Rust set it).
            let _ =
                unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, previous) };
        }
    }
}
