//! The crate's error type.

use std::path::PathBuf;

/// A failure of the sandbox machinery itself.
///
/// A container that runs and fails is not an error: it is an
/// [`Outcome`](crate::Outcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The run specification cannot be turned into a container.
    #[error("invalid run spec: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },
    /// A file or directory of the sandbox could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The launcher process could not be started.
    #[error("cannot start launcher {program}: {source}")]
    LauncherSpawn {
        /// The launcher program.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The launcher ended without a valid report (it crashed or was killed).
    #[error("launcher for container {id} failed: {detail}")]
    Launcher {
        /// The container id.
        id: String,
        /// What went wrong.
        detail: String,
    },
    /// A warm container ended before its server was ready.
    #[error("warm container {id} ended before it was ready: {outcome:?}")]
    WarmNotReady {
        /// The container id.
        id: String,
        /// How it ended.
        outcome: crate::Outcome,
    },
    /// A warm container that cannot take tasks any more was given one.
    #[error("warm container {id} is gone")]
    WarmGone {
        /// The container id.
        id: String,
    },
    /// Processes of a container survived every attempt to kill them.
    #[error("cannot empty cgroup {path}: {remaining} processes left")]
    CgroupNotEmpty {
        /// The cgroup directory.
        path: PathBuf,
        /// How many processes were still in it.
        remaining: usize,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
