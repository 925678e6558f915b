//! What to run ([`RunSpec`]) and what came of it ([`RunResult`]).

use std::path::PathBuf;
use std::time::Duration;

use oci_model::oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

/// `PATH` given to a container whose environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root filesystem of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootFs {
    /// An unpacked root directory, used in place. Mount points missing in it
    /// (`/tmp`, `/io`, `/proc`...) are created in it before the root is made
    /// read-only, so it must be writable by the caller.
    Dir(PathBuf),
    /// Layers stacked with overlayfs, with a per-container writable layer in
    /// memory (discarded after the run unless [`RunSpec::capture`] keeps
    /// it). Lower directories may hold overlay whiteouts (0/0 character
    /// devices, `trusted.overlay.opaque`).
    Overlay {
        /// Layer directories, top-most first (as overlayfs' `lowerdir=`).
        lower: Vec<PathBuf>,
    },
}

/// Resource limits of one run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Memory limit, swap included (default 2 GiB).
    pub memory_bytes: u64,
    /// CPU bandwidth in CPUs (default 2.0), as a CFS quota per 100 ms period.
    pub cpus: f64,
    /// Maximum number of processes and threads (default 256).
    pub pids: u64,
    /// Size of the tmpfs on `/tmp` (default 512 MiB).
    pub tmp_bytes: u64,
    /// Wall-clock limit from the start of the run (default 300 s).
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 2 << 30,
            cpus: 2.0,
            pids: 256,
            tmp_bytes: 512 << 20,
            timeout: Duration::from_secs(300),
        }
    }
}

/// The network a container sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A new network namespace with only `lo`, up (the default).
    #[default]
    None,
    /// The host's network namespace: an explicit opt-out of isolation.
    Host,
}

/// Where a container's standard output and error go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Captured into [`RunResult`]: the first `max_bytes` of each stream are
    /// kept, the rest is read and dropped (and reported as truncated).
    Capture {
        /// Bytes kept per stream.
        max_bytes: usize,
    },
    /// Written straight to the caller's standard output and error.
    Inherit,
}

impl Default for Output {
    fn default() -> Self {
        Self::Capture { max_bytes: 1 << 20 }
    }
}

/// A private `/io` for one run: a tmpfs of its own (size-limited, its
/// pages counted in the container's memory), filled before the start with
/// input files from a host directory the caller owns, and emptied after
/// the end into that directory, which the container never sees.
///
/// Outputs are collected by the launcher after every process of the
/// container is gone, each opened without following links, relative to
/// the `/io` directory handle, without blocking (a FIFO cannot hang the
/// reader), and kept only when it is a regular file with a single link
/// and at most [`Io::max_output_bytes`] long; anything else is a
/// [`Refusal`] naming the cause, and no byte of it reaches the host.
///
/// ```
/// let mut io = sandbox_run::Io::new("/var/lib/hoist/tasks/42");
/// io.inputs = vec!["inputs.json".into()];
/// io.outputs = vec!["output.json".into()];
/// assert_eq!(io.size_bytes, 64 << 20);
/// assert_eq!(io.max_output_bytes, 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Io {
    /// The host directory inputs are read from and outputs written to.
    /// It must exist; outputs must not exist in it yet.
    pub dir: PathBuf,
    /// Size of the tmpfs on `/io` (default 64 MiB).
    pub size_bytes: u64,
    /// Files of `dir` copied into `/io` before the start (plain names).
    pub inputs: Vec<String>,
    /// Files of `/io` collected into `dir` after the end (plain names).
    pub outputs: Vec<String>,
    /// The largest output kept (default 16 MiB).
    pub max_output_bytes: u64,
}

impl Io {
    /// An `/io` of the default size exchanging files with `dir`, with no
    /// inputs or outputs named yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            size_bytes: 64 << 20,
            inputs: Vec::new(),
            outputs: Vec::new(),
            max_output_bytes: 16 << 20,
        }
    }
}

/// Why an output of `/io` was not collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The container left no file of that name.
    #[error("missing")]
    Missing,
    /// A symbolic link (never followed).
    #[error("a symbolic link, not a regular file")]
    Symlink,
    /// A directory.
    #[error("a directory, not a regular file")]
    Directory,
    /// A named pipe (never read).
    #[error("a FIFO, not a regular file")]
    Fifo,
    /// A socket.
    #[error("a socket, not a regular file")]
    Socket,
    /// A character or block device node.
    #[error("a device node, not a regular file")]
    Device,
    /// A regular file with other names too.
    #[error("a hard link ({links} names for one file)")]
    HardLink {
        /// Its link count.
        links: u64,
    },
    /// Over [`Io::max_output_bytes`].
    #[error("{size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// It could not be read or written out.
    #[error("unreadable: {reason}")]
    Unreadable {
        /// The system's message.
        reason: String,
    },
}

/// What became of one output of [`Io::outputs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collected {
    /// Its name.
    pub name: String,
    /// Its size once copied to `Io::dir`, or why it was not.
    pub result: std::result::Result<u64, Refusal>,
}

/// What a run wrote to its root filesystem, kept as a new layer would hold
/// it: the overlay's upper layer, copied after the end into a host
/// directory the caller owns and the container never sees.
///
/// It needs an overlay root ([`RootFs::Overlay`]) that is writable
/// ([`RunSpec::readonly_root`] false). The upper layer lives in a tmpfs of
/// [`Capture::max_bytes`] bytes and [`Capture::max_entries`] inodes, so a
/// command that writes more fails with `ENOSPC` rather than filling a
/// disk. Mount points the sandbox needs (`/proc`, `/dev`, `/sys`, `/tmp`,
/// `/io`) come from a layer of their own, so they are not captured, and
/// what is written under a mount (`/tmp`, `/io`) is not either.
///
/// The launcher copies the upper layer once every process of the
/// container is gone, without following a link: directories are opened
/// with `O_NOFOLLOW` relative to their parent's handle, regular files are
/// opened `O_NOFOLLOW | O_NONBLOCK`, checked by `fstat` and copied with a
/// bound, symbolic links are recreated (never read through), and each
/// entry counts against the bounds again. The copy is in the form of an
/// OCI layer: a deleted path becomes an empty file `.wh.<name>`, a
/// directory that hides what lower layers had there gets an empty
/// `.wh..wh..opq`. Files, directories and links keep their owner and
/// permission bits (setuid, setgid and sticky included) in the caller's
/// directory, which should not be reachable by other users. A FIFO, socket or
/// device node, or a name of the form `.wh.*`, refuses the capture
/// ([`CaptureRefusal`]); what was copied before stays in the directory.
///
/// ```
/// let capture = sandbox_run::Capture::new("/var/lib/hoist/build/run-1");
/// assert_eq!(capture.max_bytes, 1 << 30);
/// assert_eq!(capture.max_entries, 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capture {
    /// The host directory the upper layer is copied into. It must exist
    /// and be empty.
    pub dir: PathBuf,
    /// The most bytes the command may write to the root (default 1 GiB).
    pub max_bytes: u64,
    /// The most files, directories and links it may leave there (default
    /// 2^20).
    pub max_entries: u64,
}

impl Capture {
    /// A capture into `dir` with the default bounds.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 1 << 30,
            max_entries: 1 << 20,
        }
    }
}

/// What a [`Capture`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// Files, directories, links and whiteouts.
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

/// Why a [`Capture`] stopped: what the command left cannot be a layer, or
/// is over a bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureRefusal {
    /// An entry that is not a directory, regular file, symbolic link or
    /// whiteout, or that could not be read.
    #[error("{}: {refusal}", .path.display())]
    Entry {
        /// Its path relative to the root.
        path: PathBuf,
        /// What it is.
        refusal: Refusal,
    },
    /// A name layers reserve for whiteouts.
    #[error("{}: `.wh.` names are reserved for whiteouts", .path.display())]
    ReservedName {
        /// Its path relative to the root.
        path: PathBuf,
    },
    /// More entries than [`Capture::max_entries`].
    #[error("more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// More bytes than [`Capture::max_bytes`].
    #[error("more than {limit} bytes")]
    TooManyBytes {
        /// The limit.
        limit: u64,
    },
    /// Directories nested deeper than the copy goes.
    #[error("{}: directories nested deeper than {limit}", .path.display())]
    TooDeep {
        /// The first directory too deep.
        path: PathBuf,
        /// The most levels copied.
        limit: usize,
    },
}

/// A Linux capability a container's process may keep. Only those Docker
/// grants a container by default can be named: nothing here gives a way
/// out of the sandbox's namespaces, cgroup or seccomp filter.
///
/// ```
/// use sandbox_run::Capability;
/// assert!(Capability::DOCKER_DEFAULT.contains(&Capability::Chown));
/// assert_eq!(Capability::SysChroot.name(), "CAP_SYS_CHROOT");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `CAP_CHOWN`: change owners.
    Chown,
    /// `CAP_DAC_OVERRIDE`: ignore permission bits.
    DacOverride,
    /// `CAP_FOWNER`: act as the owner of any file.
    Fowner,
    /// `CAP_FSETID`: keep setuid/setgid bits on changes.
    Fsetid,
    /// `CAP_KILL`: signal any process (of the container).
    Kill,
    /// `CAP_SETGID`: change group ids.
    Setgid,
    /// `CAP_SETUID`: change user ids.
    Setuid,
    /// `CAP_SETPCAP`: drop capabilities from the bounding set.
    Setpcap,
    /// `CAP_NET_BIND_SERVICE`: bind ports below 1024.
    NetBindService,
    /// `CAP_SYS_CHROOT`: `chroot` (allowed by the seccomp filter with it).
    SysChroot,
    /// `CAP_AUDIT_WRITE`: write the audit log.
    AuditWrite,
    /// `CAP_SETFCAP`: set file capabilities.
    Setfcap,
}

impl Capability {
    /// What Docker gives a container's root by default, except `MKNOD`: a
    /// device node cannot be part of a captured layer, so making one only
    /// fails later.
    pub const DOCKER_DEFAULT: &'static [Capability] = &[
        Self::Chown,
        Self::DacOverride,
        Self::Fowner,
        Self::Fsetid,
        Self::Kill,
        Self::Setgid,
        Self::Setuid,
        Self::Setpcap,
        Self::NetBindService,
        Self::SysChroot,
        Self::AuditWrite,
        Self::Setfcap,
    ];

    /// The kernel's name, as a runtime spec lists it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Chown => "CAP_CHOWN",
            Self::DacOverride => "CAP_DAC_OVERRIDE",
            Self::Fowner => "CAP_FOWNER",
            Self::Fsetid => "CAP_FSETID",
            Self::Kill => "CAP_KILL",
            Self::Setgid => "CAP_SETGID",
            Self::Setuid => "CAP_SETUID",
            Self::Setpcap => "CAP_SETPCAP",
            Self::NetBindService => "CAP_NET_BIND_SERVICE",
            Self::SysChroot => "CAP_SYS_CHROOT",
            Self::AuditWrite => "CAP_AUDIT_WRITE",
            Self::Setfcap => "CAP_SETFCAP",
        }
    }
}

/// A host directory bound read-write into the container at `target` (a
/// build's cache mount). Its mount point is made in a layer of its own,
/// with the owners and modes the lower layers give its parents, so that
/// a [`Capture`] holds neither the mount point nor what is written under
/// it.
///
/// ```
/// let bind = sandbox_run::Bind::new("/var/cache/hoist/pip", "/root/.cache/pip");
/// assert_eq!(bind.target, "/root/.cache/pip");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bind {
    /// The host directory (absolute).
    pub source: PathBuf,
    /// Where it appears in the container (absolute, without `.` or `..`;
    /// not under `/proc`, `/dev`, `/sys` or `/io`).
    pub target: String,
}

impl Bind {
    /// `source` bound at `target`.
    pub fn new(source: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
        }
    }
}

/// Everything needed to run one command in a sandbox.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunSpec {
    /// The root filesystem.
    pub rootfs: RootFs,
    /// The command and its arguments; the command is looked up in `PATH`.
    pub args: Vec<String>,
    /// `NAME=value` pairs; a default `PATH` is added when none is given.
    pub env: Vec<String>,
    /// Absolute working directory (default `/`).
    pub cwd: String,
    /// User id (default 1000).
    pub uid: u32,
    /// Group id (default 1000).
    pub gid: u32,
    /// A private `/io` and the files it exchanges.
    pub io: Option<Io>,
    /// Keep what the command wrote to the (overlay) root.
    pub capture: Option<Capture>,
    /// Resource limits.
    pub limits: Limits,
    /// Network isolation.
    pub network: Network,
    /// Whether the root filesystem is read-only (default true).
    pub readonly_root: bool,
    /// Where output goes.
    pub output: Output,
    /// The container's host name (default `sandbox`).
    pub hostname: String,
    /// Capabilities the process keeps (bounding, permitted and effective
    /// sets; none inheritable or ambient, so, as in Docker, a non-root
    /// user's programs start without them). Default none.
    pub capabilities: Vec<Capability>,
    /// Host directories bound into the container. Default none.
    pub binds: Vec<Bind>,
}

impl RunSpec {
    /// A spec with the platform's defaults, running `args` in `rootfs`.
    pub fn new(rootfs: RootFs, args: Vec<String>) -> Self {
        Self {
            rootfs,
            args,
            env: vec![DEFAULT_PATH.to_owned()],
            cwd: "/".to_owned(),
            uid: 1000,
            gid: 1000,
            io: None,
            capture: None,
            limits: Limits::default(),
            network: Network::None,
            readonly_root: true,
            output: Output::default(),
            hostname: "sandbox".to_owned(),
            capabilities: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// A spec with the platform's defaults, taking the environment, working
    /// directory and command (entrypoint followed by cmd, or `args_override`)
    /// from an image configuration. The image's `User` is not used: the run
    /// stays uid/gid 1000 unless the caller sets [`RunSpec::uid`] and
    /// [`RunSpec::gid`].
    pub fn from_image_config(
        rootfs: RootFs,
        config: &ImageConfiguration,
        args_override: Option<Vec<String>>,
    ) -> Self {
        let image = config.config().as_ref();
        let args = args_override.unwrap_or_else(|| {
            let mut args = image
                .and_then(|c| c.entrypoint().clone())
                .unwrap_or_default();
            args.extend(image.and_then(|c| c.cmd().clone()).unwrap_or_default());
            args
        });
        let mut spec = Self::new(rootfs, args);
        if let Some(env) = image.and_then(|c| c.env().clone()) {
            spec.env = env;
        }
        if let Some(cwd) = image
            .and_then(|c| c.working_dir().clone())
            .filter(|d| !d.is_empty())
        {
            spec.cwd = cwd;
        }
        spec
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The command exited with this code.
    Exited(i32),
    /// The command was killed by this signal.
    Signaled(i32),
    /// The kernel's OOM killer killed a process of the container (whatever
    /// the command's own exit status was).
    OomKilled,
    /// The wall-clock timeout expired; every process was killed.
    TimedOut,
    /// The container could not be started (missing command, bad working
    /// directory...); the text says why.
    FailedToStart(String),
}

impl Outcome {
    /// The exit code a shell would report: `Exited(n)` → n, `Signaled(s)` →
    /// 128+s, `OomKilled` → 137, `TimedOut` → 124, `FailedToStart` → 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Exited(code) => *code,
            Self::Signaled(signal) => 128 + signal,
            Self::OomKilled => 137,
            Self::TimedOut => 124,
            Self::FailedToStart(_) => 125,
        }
    }
}

/// The result of [`Sandbox::run`](crate::Sandbox::run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// How the run ended.
    pub outcome: Outcome,
    /// Captured standard output (empty with [`Output::Inherit`]).
    pub stdout: Vec<u8>,
    /// Captured standard error (empty with [`Output::Inherit`]).
    pub stderr: Vec<u8>,
    /// Whether standard output was longer than the capture limit.
    pub stdout_truncated: bool,
    /// Whether standard error was longer than the capture limit.
    pub stderr_truncated: bool,
    /// The outputs of [`RunSpec::io`], in the order named.
    pub outputs: Vec<Collected>,
    /// What [`RunSpec::capture`] copied, or why it stopped (`None` without
    /// a capture).
    pub captured: Option<std::result::Result<Captured, CaptureRefusal>>,
    /// Wall-clock time of the whole run, setup and clean-up included.
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_shell_conventions() {
        assert_eq!(Outcome::Exited(3).exit_code(), 3);
        assert_eq!(Outcome::Signaled(9).exit_code(), 137);
        assert_eq!(Outcome::OomKilled.exit_code(), 137);
        assert_eq!(Outcome::TimedOut.exit_code(), 124);
        assert_eq!(Outcome::FailedToStart("x".into()).exit_code(), 125);
    }

    #[test]
    fn image_config_gives_env_cwd_and_command() {
        let config: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"User":"0","Env":["PATH=/x","A=b"],"Entrypoint":["/bin/sh","-c"],
                          "Cmd":["echo hi"],"WorkingDir":"/app"}}"#,
        )
        .unwrap();
        let root = RootFs::Dir("/r".into());
        let spec = RunSpec::from_image_config(root.clone(), &config, None);
        assert_eq!(spec.args, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(spec.env, ["PATH=/x", "A=b"]);
        assert_eq!(spec.cwd, "/app");
        assert_eq!((spec.uid, spec.gid), (1000, 1000));
        let spec = RunSpec::from_image_config(root, &config, Some(vec!["true".into()]));
        assert_eq!(spec.args, ["true"]);
    }
}
