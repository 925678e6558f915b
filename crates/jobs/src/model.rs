//! The records [`Jobs`](crate::Jobs) stores and returns, their statuses and
//! the inputs that create them. Records serialize as the API returns them:
//! times as RFC 3339 strings, statuses as the seeds' lowercase names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A user's function: its code and requirements by hash, and the image
/// its latest successful build produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Function {
    /// Its id.
    pub id: Uuid,
    /// Who owns it (an API key's owner).
    pub owner: String,
    /// Its name, chosen by the owner.
    pub name: String,
    /// Its version, chosen by the owner.
    pub version: String,
    /// The hash of its code (`sha256:…` of `user_function.py`).
    pub code_hash: String,
    /// Its `requirements.txt`.
    pub requirements: String,
    /// The base image it builds on, when not the default.
    pub base: Option<String>,
    /// Its image as `name@sha256:…`, once built.
    pub image: Option<String>,
    /// The image's manifest digest, once built.
    pub image_digest: Option<String>,
    /// Its latest build.
    pub build_id: Option<Uuid>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was deleted; deleted functions are kept for the records.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What [`Jobs::create_function`](crate::Jobs::create_function) needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewFunction {
    /// Who owns it.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The hash of its code.
    pub code_hash: String,
    /// Its `requirements.txt` (may be empty).
    pub requirements: String,
    /// The base image, when not the default.
    pub base: Option<String>,
}

/// What a build makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildKind {
    /// A function image (base + dependencies + code).
    Function,
    /// A release image from a Dockerfile.
    Release,
}

/// Where a build is. The first four move forward as the worker goes; the
/// last three are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    /// Queued, not started.
    Pending,
    /// Fetching what the build needs.
    DownloadingArtifacts,
    /// Building.
    Building,
    /// Pushing the image.
    Pushing,
    /// Done: the image is pushed.
    Completed,
    /// Given up, with an error.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Queued, not started.
    Pending,
    /// A worker runs it.
    Running,
    /// The function returned; its output is stored.
    Completed,
    /// The function or the platform failed; the error is stored.
    Failed,
}

/// How a worker used an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    /// Pulled into its cache.
    Pull,
    /// Ran a container from it.
    Run,
}

/// Text form of the enums, as stored and serialized.
macro_rules! names {
    ($ty:ident, $what:literal, $($variant:ident = $name:literal),+ $(,)?) => {
        impl $ty {
            /// Its lowercase name, as stored and serialized.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            pub(crate) fn parse(s: &str) -> Result<Self> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(Error::Corrupt { what: $what, reason: format!("unknown value {s:?}") }),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }
    };
}

names!(
    BuildKind,
    "build kind",
    Function = "function",
    Release = "release"
);
names!(
    BuildStatus,
    "build status",
    Pending = "pending",
    DownloadingArtifacts = "downloading_artifacts",
    Building = "building",
    Pushing = "pushing",
    Completed = "completed",
    Failed = "failed",
    Cancelled = "cancelled",
);
names!(
    TaskStatus,
    "task status",
    Pending = "pending",
    Running = "running",
    Completed = "completed",
    Failed = "failed",
);
names!(UsageKind, "usage kind", Pull = "pull", Run = "run");

impl BuildStatus {
    /// Completed, failed or cancelled: nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl TaskStatus {
    /// Completed or failed: the task has its one result.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// A build job, with the seed's `build_jobs` columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Build {
    /// Its id.
    pub id: Uuid,
    /// What it makes.
    pub kind: BuildKind,
    /// The function it builds, for [`BuildKind::Function`].
    pub function_id: Option<Uuid>,
    /// Where it is.
    pub status: BuildStatus,
    /// 0 to 100.
    pub progress: u8,
    /// What the worker does now, in words.
    pub current_step: Option<String>,
    /// The pushed image, once completed.
    pub image_url: Option<String>,
    /// The pushed image's digest, once completed.
    pub image_digest: Option<String>,
    /// The pushed image's size, once completed.
    pub size_bytes: Option<u64>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The step it failed in.
    pub error_step: Option<String>,
    /// What to build, as the API received it.
    pub spec: serde_json::Value,
    /// When a worker first reported progress.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final status.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// Who submitted it (an API key's name).
    pub created_by: Option<String>,
    /// A user asked to cancel it while it ran; the worker stops and
    /// finishes it as cancelled.
    pub cancel_requested: bool,
    /// The vulnerability gate's summary of its image (`{"critical": N,
    /// "high": N, "warnings": [...]}`), when the worker scanned it.
    pub vulnerabilities: Option<serde_json::Value>,
}

/// What [`Jobs::create_build`](crate::Jobs::create_build) needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBuild {
    /// Its id; a new one when `None`. Lets the caller name files after
    /// the build before it exists.
    pub id: Option<Uuid>,
    /// What it makes.
    pub kind: BuildKind,
    /// The function it builds; becomes the function's latest build.
    pub function_id: Option<Uuid>,
    /// What to build, for the worker.
    pub spec: serde_json::Value,
    /// Who submitted it.
    pub created_by: Option<String>,
}

impl NewBuild {
    /// A build of `kind` from `spec`, with a new id, for no function.
    pub fn new(kind: BuildKind, spec: serde_json::Value) -> Self {
        Self {
            id: None,
            kind,
            function_id: None,
            spec,
            created_by: None,
        }
    }
}

/// Which builds [`Jobs::builds`](crate::Jobs::builds) lists; every field
/// set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildFilter {
    /// Only builds with this status.
    pub status: Option<BuildStatus>,
    /// Only builds of this function.
    pub function_id: Option<Uuid>,
    /// Only builds submitted by this key name.
    pub created_by: Option<String>,
}

/// A worker's report of progress; fields left `None` keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildUpdate {
    /// The new status; not a final one (see
    /// [`Jobs::finish_build`](crate::Jobs::finish_build)) and not
    /// `pending`.
    pub status: Option<BuildStatus>,
    /// 0 to 100.
    pub progress: Option<u8>,
    /// What the worker does now.
    pub current_step: Option<String>,
}

/// How a build ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildResult {
    /// The image is pushed.
    Completed {
        /// Where (`registry/repo:tag`).
        image_url: String,
        /// Its manifest digest.
        image_digest: String,
        /// Its size.
        size_bytes: u64,
    },
    /// It failed.
    Failed {
        /// Why, for the user.
        error: String,
        /// In which step.
        step: Option<String>,
    },
    /// The worker stopped it after a cancel request.
    Cancelled,
}

/// A stored log line of a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Its place among the build's events.
    pub seq: u64,
    /// When it was logged.
    pub at: DateTime<Utc>,
    /// The line, without its newline.
    pub line: String,
}

/// One event of a build, as stored and as the WebSocket sends it (the
/// seed's `progress`, `log`, `complete` and `error` messages, plus
/// `cancel_requested`). `seq` numbers a build's events from 1 in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildEvent {
    /// Status, progress or step changed.
    Progress {
        /// Its number.
        seq: u64,
        /// When.
        timestamp: DateTime<Utc>,
        /// The status now.
        status: BuildStatus,
        /// 0 to 100.
        progress: u8,
        /// The current step.
        message: Option<String>,
    },
    /// A log line.
    Log {
        /// Its number.
        seq: u64,
        /// When.
        timestamp: DateTime<Utc>,
        /// The line.
        line: String,
    },
    /// A user asked to cancel the running build.
    CancelRequested {
        /// Its number.
        seq: u64,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// Final: the image is pushed.
    Complete {
        /// Its number.
        seq: u64,
        /// When.
        timestamp: DateTime<Utc>,
        /// Always `completed`.
        status: BuildStatus,
        /// Where.
        image_url: String,
        /// Its digest.
        image_digest: String,
        /// Its size.
        size_bytes: u64,
    },
    /// Final: failed, or cancelled (`status` says which).
    Error {
        /// Its number.
        seq: u64,
        /// When.
        timestamp: DateTime<Utc>,
        /// `failed` or `cancelled`.
        status: BuildStatus,
        /// Why.
        error: String,
        /// In which step, when known.
        step: Option<String>,
    },
}

impl BuildEvent {
    /// Its number among the build's events.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Progress { seq, .. }
            | Self::Log { seq, .. }
            | Self::CancelRequested { seq, .. }
            | Self::Complete { seq, .. }
            | Self::Error { seq, .. } => *seq,
        }
    }

    /// When it happened.
    pub fn timestamp(&self) -> DateTime<Utc> {
        match self {
            Self::Progress { timestamp, .. }
            | Self::Log { timestamp, .. }
            | Self::CancelRequested { timestamp, .. }
            | Self::Complete { timestamp, .. }
            | Self::Error { timestamp, .. } => *timestamp,
        }
    }

    /// Whether it is the build's last event.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Complete { .. } | Self::Error { .. })
    }

    /// The stored `kind` column.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Progress { .. } => "progress",
            Self::Log { .. } => "log",
            Self::CancelRequested { .. } => "cancel_requested",
            Self::Complete { .. } => "complete",
            Self::Error { .. } => "error",
        }
    }
}

/// A function invocation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Task {
    /// Its id.
    pub id: Uuid,
    /// The function it runs.
    pub function_id: Uuid,
    /// The image it runs (`name@sha256:…`).
    pub image: String,
    /// Where its inputs are in the object store.
    pub inputs_key: String,
    /// Where it is.
    pub status: TaskStatus,
    /// Where its output is in the object store, once stored.
    pub output_key: Option<String>,
    /// The structured error of a failed task.
    pub error: Option<serde_json::Value>,
    /// How many times a worker started it.
    pub attempts: u32,
    /// The worker that started it last.
    pub worker: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When a worker last started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it got its result.
    pub completed_at: Option<DateTime<Utc>>,
    /// How long the function ran.
    pub duration_ms: Option<u64>,
    /// Who submitted it.
    pub created_by: Option<String>,
}

/// What [`Jobs::create_task`](crate::Jobs::create_task) needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewTask {
    /// Its id; a new one when `None`, so the caller can store the inputs
    /// under a key made from the id first.
    pub id: Option<Uuid>,
    /// The function it runs.
    pub function_id: Uuid,
    /// The image to run (`name@sha256:…`).
    pub image: String,
    /// Where the inputs are.
    pub inputs_key: String,
    /// Who submitted it.
    pub created_by: Option<String>,
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskResult {
    /// The handler returned; its output is stored at `output_key`.
    Completed {
        /// Where the output is.
        output_key: String,
        /// How long it ran.
        duration_ms: u64,
    },
    /// The handler or the platform failed.
    Failed {
        /// The structured error (`{"type", "message", …}`).
        error: serde_json::Value,
        /// Where whatever output there was is stored.
        output_key: Option<String>,
        /// How long it ran.
        duration_ms: Option<u64>,
    },
}

/// An API key, without its secret (only a hash of it is stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ApiKey {
    /// Its id.
    pub id: Uuid,
    /// Its name (goes into `created_by`).
    pub name: String,
    /// Whose it is.
    pub owner: String,
    /// The public start of the secret (`hoist_0123abcd…`), to recognise
    /// a key in listings.
    pub prefix: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A page of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// At most this many items (1 to [`Page::MAX_LIMIT`]).
    pub limit: u32,
    /// Skipping this many.
    pub offset: u64,
}

impl Page {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 1000;

    /// `limit` items after `offset` (limit clamped to 1..=1000).
    pub fn new(limit: u32, offset: u64) -> Self {
        Self {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            offset,
        }
    }
}

impl Default for Page {
    /// The first 50.
    fn default() -> Self {
        Self::new(50, 0)
    }
}

/// A page of records and how many match in all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listed<T> {
    /// This page.
    pub items: Vec<T>,
    /// All matching records.
    pub total: u64,
}
