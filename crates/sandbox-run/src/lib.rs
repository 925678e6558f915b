//! Runs commands from unpacked images in libcontainer sandboxes.
//!
//! This is the only crate of hoist that links youki's `libcontainer`. Its API
//! is synchronous: async callers use `spawn_blocking`.
//!
//! # Moving parts
//!
//! - [`RunSpec`] says what to run and under which limits; its defaults are the
//!   platform's: a network namespace with loopback only, a read-only root, a
//!   512 MiB tmpfs on `/tmp`, 2 GiB of memory (swap included), 2 CPUs, 256
//!   pids, every capability dropped, uid/gid 1000, no-new-privileges, Docker's
//!   default seccomp allow-list, masked and read-only `/proc` paths and a
//!   300 s wall-clock timeout.
//! - [`Sandbox::run`] starts a small single-threaded *launcher* process (see
//!   [`Launcher`] and [`launcher_main`]) for every container: `libcontainer`
//!   forks with `clone3` and changes the working directory, which is unsafe
//!   in a multi-threaded caller. The launcher gets a cleared environment and
//!   no file descriptor but its standard three; it sets up a private mount
//!   namespace (where an overlay root is mounted, so that the mount vanishes
//!   with the launcher even after a crash), runs the container, removes it
//!   and reports the outcome.
//! - A run over an overlay root may keep what it wrote ([`Capture`]): the
//!   upper layer lives in a bounded tmpfs, and the launcher copies it, after
//!   the container is gone and without following a link, into a directory
//!   of the caller's in the form of an OCI layer (whiteouts as `.wh.`
//!   files). A build step (`RUN`, byte-compiling) is such a run.
//! - A [`Warm`] container ([`Sandbox::start_warm`]) is kept between tasks:
//!   its command is a server that runs each task in a child process, its
//!   launcher stays and gives every task a fresh `/io` and `/tmp`. A
//!   function platform answers in milliseconds that way instead of
//!   creating a container per call.
//! - A [`Detached`] container ([`Sandbox::start_detached`]) runs in the
//!   background until the caller stops it, which gets its outcome and
//!   output then; its network namespace is open to the caller meanwhile,
//!   so that a server in it can be probed on its loopback (a smoke test).
//!   Started with [`Sandbox::start_detached_live`], its output is also
//!   handed over line by line as it is written ([`Detached::recv_output`],
//!   a build step's log): bounded per line and in what waits for the
//!   caller, and dropped with a count, never blocking the container, when
//!   the caller falls behind.
//! - The caller's side enforces the timeout: it kills every process in the
//!   container's cgroup (frozen first, so that a fork bomb cannot outrun it).
//! - [`Sandbox::sweep`] removes what a crashed process left behind.
//!
//! # Where things live
//!
//! Per container `ID` (`<pid>-<counter>-<nanos>` of the calling process):
//! `STATE_ROOT/bundles/ID` (the OCI bundle: `config.json` and the `rootfs`
//! mount point), `STATE_ROOT/containers/ID` (libcontainer's state), and the
//! cgroup `/<cgroup_parent>/ID` in every cgroup hierarchy. Everything under
//! `STATE_ROOT` and under `/<cgroup_parent>` belongs to the sandbox: a sweep
//! removes all of it, so give each independent user its own pair.
//!
//! # Example
//!
//! ```no_run
//! use sandbox_run::{Launcher, Outcome, RootFs, RunSpec, Sandbox, SandboxConfig};
//!
//! # fn main() -> sandbox_run::Result<()> {
//! let sandbox = Sandbox::new(SandboxConfig::new(Launcher::new("/usr/libexec/sandbox-launcher")))?;
//! sandbox.sweep()?;
//! let spec = RunSpec::new(RootFs::Dir("/srv/rootfs".into()), vec!["echo".into(), "hi".into()]);
//! let result = sandbox.run(&spec)?;
//! assert_eq!(result.outcome, Outcome::Exited(0));
//! assert_eq!(result.stdout, b"hi\n");
//! # Ok(())
//! # }
//! ```

mod capture;
mod cgroup;
mod detached;
mod error;
mod io;
mod launcher;
mod live;
mod message;
mod oci;
mod sandbox;
mod seccomp;
mod serve;
mod spec;
mod warm;

pub use detached::Detached;
pub use error::{Error, Result};
pub use launcher::{Launcher, launcher_main};
pub use live::{LiveOutput, OutputEvent, Stream};
pub use sandbox::{Sandbox, SandboxConfig, SweepReport};
pub use spec::{
    Bind, Capability, Capture, CaptureRefusal, Captured, Collected, Io, Limits, Network, Outcome,
    Output, Refusal, RootFs, RunResult, RunSpec,
};
pub use warm::Warm;
