//! The host side of hoist's function contract.
//!
//! A function image (built by `oci-build`) runs a small runner that reads
//! `/io/inputs.json`, calls `handler(inputs)` and writes `/io/output.json`:
//! the handler's result (a JSON object), or `{"error": {"type",
//! "message", "traceback"}}` with exit status 1. [`invoke`] is the other
//! half: it checks the inputs, gives the container a private `/io` (a
//! size-limited tmpfs, see [`sandbox_run::Io`]) holding them, runs the
//! image's command in the sandbox, and reads the reply back without
//! trusting anything the function left: `output.json` is taken only as a
//! regular, single-link file under the size cap, never through a link,
//! never from a FIFO, and must be JSON.
//!
//! What comes back is an [`Invocation`]: the [`Reply`] (the output, the
//! handler's error, or why there is neither), the sandbox's outcome, and
//! the captured logs. Errors of this crate's own ([`Error`]) are the
//! host's: bad inputs, a sandbox that could not run at all.
//!
//! Isolation comes from the sandbox; the deny list of `function-check`
//! is a courtesy that fails early.
//!
//! ```no_run
//! use function_run::{Options, Reply, invoke};
//! use sandbox_run::{Launcher, RootFs, Sandbox, SandboxConfig};
//!
//! # fn demo(config: &oci_model::oci_spec::image::ImageConfiguration) -> Result<(), Box<dyn std::error::Error>> {
//! let sandbox = Sandbox::new(SandboxConfig::new(Launcher::new("/usr/libexec/hoist-launcher")))?;
//! let rootfs = RootFs::Overlay { lower: vec!["/var/cache/hoist/layers/top".into()] };
//! let inputs = serde_json::json!({"text": "hello world"});
//! let done = invoke(&sandbox, rootfs, config, &inputs, &Options::default())?;
//! match &done.reply {
//!     Reply::Output(output) => println!("{}", serde_json::Value::Object(output.clone())),
//!     Reply::Error(e) => eprintln!("{}: {}\n{}", e.kind, e.message, e.traceback),
//!     Reply::Failed(why) => eprintln!("no reply: {why}"),
//! }
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use oci_model::oci_spec::image::ImageConfiguration;
use sandbox_run::{Io, Limits, Network, Outcome, Output, Refusal, RootFs, RunSpec, Sandbox};
use serde::Serialize;
use serde_json::{Map, Value};

/// The inputs file the runner reads, in `/io`.
pub const INPUTS: &str = "inputs.json";
/// The reply file the runner writes, in `/io`.
pub const OUTPUT: &str = "output.json";

/// How an invocation runs: the sandbox's limits and the `/io` bounds.
///
/// ```
/// let mut options = function_run::Options::default();
/// options.limits.timeout = std::time::Duration::from_secs(30);
/// assert_eq!(options.io_bytes, 64 << 20);
/// assert_eq!(options.max_output_bytes, 16 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Memory, CPUs, pids, `/tmp` and wall clock (the seeds' defaults:
    /// 2 GiB, 2 CPUs, 256, 512 MiB, 300 s).
    pub limits: Limits,
    /// Size of the `/io` tmpfs, counted in the memory limit (64 MiB).
    pub io_bytes: u64,
    /// The largest `output.json` read back (16 MiB).
    pub max_output_bytes: u64,
    /// Standard output and error kept, per stream (1 MiB).
    pub max_log_bytes: usize,
    /// The network (a namespace with loopback only by default).
    pub network: Network,
    /// Extra `NAME=value` environment entries.
    pub env: Vec<String>,
    /// Where each invocation's host directory is made (the system's
    /// temporary directory by default).
    pub stage_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            io_bytes: 64 << 20,
            max_output_bytes: 16 << 20,
            max_log_bytes: 1 << 20,
            network: Network::None,
            env: Vec::new(),
            stage_dir: None,
        }
    }
}

/// What an invocation gave back.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The handler returned this object.
    Output(Map<String, Value>),
    /// The handler (or the runner around it) raised.
    Error(HandlerError),
    /// The function produced no usable reply.
    Failed(Failure),
}

impl Reply {
    /// Whether the handler returned an output.
    pub fn is_output(&self) -> bool {
        matches!(self, Self::Output(_))
    }

    /// The reply as the API and `hoist invoke` show it: `{"status":
    /// "completed", "output": {...}}` or `{"status": "failed", "error":
    /// {"type", "message", "traceback"}}`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Output(o) => serde_json::json!({"status": "completed", "output": o}),
            Self::Error(e) => serde_json::json!({"status": "failed", "error": e}),
            Self::Failed(f) => serde_json::json!({"status": "failed", "error": {
                "type": f.kind(), "message": f.to_string(), "traceback": null,
            }}),
        }
    }
}

/// An error the handler raised, as the runner reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandlerError {
    /// The exception's type name (`ValueError`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its message.
    pub message: String,
    /// The Python traceback.
    pub traceback: String,
}

/// Why a function produced no usable reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The wall-clock limit expired.
    #[error("timed out after {seconds:.1} s")]
    TimedOut {
        /// The limit.
        seconds: f64,
    },
    /// The kernel killed it at the memory limit.
    #[error("out of memory at the {limit}-byte limit")]
    OomKilled {
        /// The limit.
        limit: u64,
    },
    /// A signal killed it.
    #[error("killed by signal {signal}")]
    Killed {
        /// The signal.
        signal: i32,
    },
    /// The image's command could not start.
    #[error("did not start: {reason}")]
    FailedToStart {
        /// Why.
        reason: String,
    },
    /// It ended without writing `output.json`.
    #[error("exited with status {code} without writing {OUTPUT}")]
    NoOutput {
        /// Its exit status.
        code: i32,
    },
    /// `output.json` was there but not taken (a link, a FIFO, too big...).
    #[error("{OUTPUT} refused: {refusal}")]
    OutputRefused {
        /// Why.
        refusal: Refusal,
    },
    /// `output.json` is not what the runner writes.
    #[error("{OUTPUT} is not a reply: {reason}")]
    BadOutput {
        /// What is wrong.
        reason: String,
    },
}

impl Failure {
    /// A short name for the kind of failure, as error `type`s are named.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TimedOut { .. } => "TimedOut",
            Self::OomKilled { .. } => "OutOfMemory",
            Self::Killed { .. } => "Killed",
            Self::FailedToStart { .. } => "FailedToStart",
            Self::NoOutput { .. } => "NoOutput",
            Self::OutputRefused { .. } => "OutputRefused",
            Self::BadOutput { .. } => "BadOutput",
        }
    }
}

/// One run of a function.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// What the function gave back.
    pub reply: Reply,
    /// How the sandbox saw it end.
    pub outcome: Outcome,
    /// Its standard output (at most [`Options::max_log_bytes`]).
    pub stdout: Vec<u8>,
    /// Its standard error (at most [`Options::max_log_bytes`]).
    pub stderr: Vec<u8>,
    /// Whether either log was cut at the limit.
    pub logs_truncated: bool,
    /// Wall-clock time of the run, setup and clean-up included.
    pub duration: Duration,
}

/// What went wrong on the host's side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs that are not a JSON object.
    #[error("the inputs must be a JSON object, not {found}")]
    InputsNotAnObject {
        /// What they are.
        found: &'static str,
    },
    /// Inputs that do not fit in `/io`.
    #[error("the inputs are {size} bytes; /io holds {limit}")]
    InputsTooLarge {
        /// Their size as JSON.
        size: u64,
        /// The `/io` size.
        limit: u64,
    },
    /// The invocation's host directory.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The sandbox could not run the function at all.
    #[error(transparent)]
    Sandbox(#[from] sandbox_run::Error),
    /// The image's runner cannot serve a warm sandbox (built before
    /// hoist's runner could, or not by hoist).
    #[error(
        "the image has no {SERVE_LABEL}={SERVE_PROTOCOL} label: its runner cannot be kept warm"
    )]
    NotServable,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the function image whose root is `rootfs` and whose config is
/// `config` on `inputs`, and reads its reply. Blocks for up to the
/// timeout: async callers use `spawn_blocking`.
pub fn invoke(
    sandbox: &Sandbox,
    rootfs: RootFs,
    config: &ImageConfiguration,
    inputs: &Value,
    options: &Options,
) -> Result<Invocation> {
    let stage = stage(inputs, options)?;
    let mut spec = spec(rootfs, config, options, None);
    spec.io = Some(io(stage.path(), options));
    let result = sandbox.run(&spec)?;
    Ok(invocation(result, stage.path(), options))
}

/// The label whose value [`SERVE_PROTOCOL`] says that an image's runner
/// can serve a warm sandbox (`runner.py --serve`, see [`WarmFunction`]).
pub const SERVE_LABEL: &str = "dev.hoist.runner";
/// The version of the warm sandbox's protocol this crate speaks.
pub const SERVE_PROTOCOL: &str = "serve-1";

/// A function kept warm: one sandbox whose runner imported the function
/// once and runs each invocation in a child process of its own, with a
/// fresh `/io` and an empty `/tmp` (see [`sandbox_run::Warm`]). The image
/// must say it can ([`WarmFunction::supported`]).
///
/// Reuse policy, as other function platforms have it: the function's
/// module-level code runs once per sandbox; each invocation starts from
/// the state it left (a fork), and what an invocation changes in memory,
/// in `/io` or in `/tmp`, or any process it starts, is gone before the
/// next one. Only invocations of the same image share a sandbox; the
/// caller decides how many to keep and for how long.
///
/// ```no_run
/// use function_run::{Options, WarmFunction};
/// use sandbox_run::{Launcher, RootFs, Sandbox, SandboxConfig};
///
/// # fn demo(config: &oci_model::oci_spec::image::ImageConfiguration) -> Result<(), Box<dyn std::error::Error>> {
/// let sandbox = Sandbox::new(SandboxConfig::new(Launcher::new("/usr/libexec/hoist-launcher")))?;
/// let rootfs = RootFs::Overlay { lower: vec!["/var/cache/hoist/layers/top".into()] };
/// let mut warm = WarmFunction::start(&sandbox, rootfs, config, &Options::default())?;
/// for n in 0..3 {
///     let done = warm.invoke(&serde_json::json!({"n": n}))?;
///     println!("{} in {:?}", done.reply.to_json(), done.duration);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WarmFunction {
    warm: sandbox_run::Warm,
    options: Options,
}

impl WarmFunction {
    /// Whether the image's runner can serve a warm sandbox.
    pub fn supported(config: &ImageConfiguration) -> bool {
        config
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref())
            .and_then(|l| l.get(SERVE_LABEL))
            .is_some_and(|v| v == SERVE_PROTOCOL)
    }

    /// Starts the image's runner as a warm sandbox's server and waits until
    /// it is ready (the function's own import happens after, during the
    /// first invocation's time).
    pub fn start(
        sandbox: &Sandbox,
        rootfs: RootFs,
        config: &ImageConfiguration,
        options: &Options,
    ) -> Result<Self> {
        if !Self::supported(config) {
            return Err(Error::NotServable);
        }
        let mut spec = spec(rootfs, config, options, Some("--serve"));
        // Only the sizes count: each invocation brings its own directory.
        let idle = options.stage_dir.clone().unwrap_or_else(std::env::temp_dir);
        let mut sizes = io(&idle, options);
        sizes.inputs.clear();
        sizes.outputs.clear();
        spec.io = Some(sizes);
        let warm = sandbox.start_warm(&spec)?;
        Ok(Self {
            warm,
            options: options.clone(),
        })
    }

    /// Runs the function on `inputs` and reads its reply, as [`invoke`]
    /// does. `Err` means the invocation was not run or its sandbox broke:
    /// the sandbox is then gone ([`WarmFunction::is_alive`]).
    pub fn invoke(&mut self, inputs: &Value) -> Result<Invocation> {
        let stage = stage(inputs, &self.options)?;
        let io = io(stage.path(), &self.options);
        let result = self.warm.run(&io, self.options.limits.timeout)?;
        Ok(invocation(result, stage.path(), &self.options))
    }

    /// Whether the sandbox can take another invocation (a timeout, an
    /// out-of-memory kill of the server, or anything unexpected ends it).
    pub fn is_alive(&self) -> bool {
        self.warm.is_alive()
    }

    /// Memory the sandbox holds now, when the kernel says.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.warm.memory_bytes()
    }

    /// Stops the sandbox and waits until everything is removed.
    pub fn close(self) -> Result<()> {
        Ok(self.warm.close()?)
    }
}

/// Checks `inputs` and writes them into a new host directory for `/io`.
fn stage(inputs: &Value, options: &Options) -> Result<tempfile::TempDir> {
    let found = match inputs {
        Value::Object(_) => None,
        Value::Null => Some("null"),
        Value::Bool(_) => Some("a boolean"),
        Value::Number(_) => Some("a number"),
        Value::String(_) => Some("a string"),
        Value::Array(_) => Some("an array"),
    };
    if let Some(found) = found {
        return Err(Error::InputsNotAnObject { found });
    }
    let text = serde_json::to_vec(inputs).map_err(|e| Error::Io {
        path: INPUTS.into(),
        source: e.into(),
    })?;
    // A tmpfs page of slack for the runner's own temporary file.
    if text.len() as u64 + 4096 > options.io_bytes {
        return Err(Error::InputsTooLarge {
            size: text.len() as u64,
            limit: options.io_bytes,
        });
    }
    let stage = match &options.stage_dir {
        Some(dir) => tempfile::Builder::new().prefix("io-").tempdir_in(dir),
        None => tempfile::Builder::new().prefix("hoist-io-").tempdir(),
    }
    .map_err(|source| Error::Io {
        path: options.stage_dir.clone().unwrap_or_else(std::env::temp_dir),
        source,
    })?;
    let inputs_path = stage.path().join(INPUTS);
    std::fs::write(&inputs_path, &text).map_err(|source| Error::Io {
        path: inputs_path,
        source,
    })?;
    Ok(stage)
}

/// The sandbox spec of the image's command (with `extra` appended) under
/// `options`.
fn spec(
    rootfs: RootFs,
    config: &ImageConfiguration,
    options: &Options,
    extra: Option<&str>,
) -> RunSpec {
    let mut spec = RunSpec::from_image_config(rootfs, config, None);
    spec.args.extend(extra.map(str::to_owned));
    spec.limits = options.limits.clone();
    spec.network = options.network;
    spec.env.extend(options.env.iter().cloned());
    spec.output = Output::Capture {
        max_bytes: options.max_log_bytes,
    };
    spec
}

/// The `/io` of one invocation staged in `dir`.
fn io(dir: &std::path::Path, options: &Options) -> Io {
    let mut io = Io::new(dir);
    io.size_bytes = options.io_bytes;
    io.max_output_bytes = options.max_output_bytes;
    io.inputs = vec![INPUTS.to_owned()];
    io.outputs = vec![OUTPUT.to_owned()];
    io
}

/// The invocation a run gave, its reply read from `stage`.
fn invocation(
    result: sandbox_run::RunResult,
    stage: &std::path::Path,
    options: &Options,
) -> Invocation {
    let collected = result
        .outputs
        .iter()
        .find(|c| c.name == OUTPUT)
        .map(|c| c.result.clone())
        .unwrap_or(Err(Refusal::Missing));
    let reply = reply(&result.outcome, collected, stage, options);
    Invocation {
        reply,
        outcome: result.outcome,
        stdout: result.stdout,
        stderr: result.stderr,
        logs_truncated: result.stdout_truncated || result.stderr_truncated,
        duration: result.duration,
    }
}

/// The reply, from how the run ended and what became of `output.json`.
fn reply(
    outcome: &Outcome,
    collected: std::result::Result<u64, Refusal>,
    stage: &std::path::Path,
    options: &Options,
) -> Reply {
    let code = match outcome {
        Outcome::TimedOut => {
            return Reply::Failed(Failure::TimedOut {
                seconds: options.limits.timeout.as_secs_f64(),
            });
        }
        Outcome::OomKilled => {
            return Reply::Failed(Failure::OomKilled {
                limit: options.limits.memory_bytes,
            });
        }
        Outcome::Signaled(signal) => return Reply::Failed(Failure::Killed { signal: *signal }),
        Outcome::FailedToStart(reason) => {
            return Reply::Failed(Failure::FailedToStart {
                reason: reason.clone(),
            });
        }
        Outcome::Exited(code) => *code,
    };
    let size = match collected {
        Ok(size) => size,
        Err(Refusal::Missing) => return Reply::Failed(Failure::NoOutput { code }),
        Err(refusal) => return Reply::Failed(Failure::OutputRefused { refusal }),
    };
    let bad = |reason: String| Reply::Failed(Failure::BadOutput { reason });
    // Written by the launcher from a checked file: bounded all the same.
    let path = stage.join(OUTPUT);
    let mut bytes = Vec::with_capacity(size as usize);
    let read = std::fs::File::open(&path)
        .and_then(|f| f.take(options.max_output_bytes).read_to_end(&mut bytes));
    if let Err(e) = read {
        return bad(format!("cannot read it back: {e}"));
    }
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad(format!("not JSON ({e})")),
    };
    let Value::Object(mut object) = value else {
        return bad("not a JSON object".into());
    };
    if code == 0 {
        return Reply::Output(object);
    }
    // The runner reports a raised error this way, with status 1.
    match object.remove("error") {
        Some(Value::Object(e)) => {
            let text = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Reply::Error(HandlerError {
                kind: text("type"),
                message: text("message"),
                traceback: text("traceback"),
            })
        }
        _ => bad(format!("exit status {code} without an error record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replied(outcome: Outcome, output: Option<&str>) -> Reply {
        let stage = tempfile::tempdir().unwrap();
        let collected = match output {
            Some(text) => {
                std::fs::write(stage.path().join(OUTPUT), text).unwrap();
                Ok(text.len() as u64)
            }
            None => Err(Refusal::Missing),
        };
        reply(&outcome, collected, stage.path(), &Options::default())
    }

    #[test]
    fn replies_follow_the_runner_s_contract() {
        let cases: Vec<(Outcome, Option<&str>, &str)> = vec![
            (Outcome::Exited(0), Some(r#"{"a": 1}"#), "completed"),
            // A handler may return a dict with an "error" key: status 0
            // says it is an output.
            (Outcome::Exited(0), Some(r#"{"error": "x"}"#), "completed"),
            (
                Outcome::Exited(1),
                Some(r#"{"error": {"type": "ValueError", "message": "no", "traceback": "T"}}"#),
                "ValueError",
            ),
            (Outcome::Exited(1), None, "NoOutput"),
            (Outcome::Exited(0), Some("not json"), "BadOutput"),
            (Outcome::Exited(0), Some("[1, 2]"), "BadOutput"),
            (Outcome::Exited(3), Some(r#"{"a": 1}"#), "BadOutput"),
            (Outcome::TimedOut, Some(r#"{"a": 1}"#), "TimedOut"),
            (Outcome::OomKilled, None, "OutOfMemory"),
            (Outcome::Signaled(9), None, "Killed"),
            (Outcome::FailedToStart("x".into()), None, "FailedToStart"),
        ];
        for (outcome, output, want) in cases {
            let r = replied(outcome.clone(), output);
            let json = r.to_json();
            let got = match &r {
                Reply::Output(_) => "completed".to_owned(),
                _ => json["error"]["type"].as_str().unwrap().to_owned(),
            };
            assert_eq!(got, want, "{outcome:?} {output:?}: {json}");
        }
    }

    #[test]
    fn inputs_must_be_an_object_that_fits() {
        // Refused before any sandbox work, so no launcher is needed.
        let state = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(
            sandbox_run::SandboxConfig::new(sandbox_run::Launcher::new("/nonexistent"))
                .with_state_root(state.path()),
        )
        .unwrap();
        let config: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let root = || RootFs::Dir("/nonexistent".into());
        let err = invoke(
            &sandbox,
            root(),
            &config,
            &serde_json::json!([1]),
            &Options::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::InputsNotAnObject { found: "an array" }),
            "{err}"
        );
        let small = Options {
            io_bytes: 8192,
            ..Options::default()
        };
        let big = serde_json::json!({"x": "y".repeat(10_000)});
        let err = invoke(&sandbox, root(), &config, &big, &small).unwrap_err();
        assert!(matches!(err, Error::InputsTooLarge { .. }), "{err}");
    }
}
