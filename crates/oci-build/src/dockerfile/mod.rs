//! Dockerfile builds without a daemon ([`Builder::build_dockerfile`]).
//!
//! The Dockerfile is parsed by `parse-dockerfile` (spans, heredocs, parser
//! directives); every instruction is then applied in order to a build
//! state — the image config being made and the layers so far — with
//! variables expanded as Docker expands them (`expand.rs`: build
//! arguments in scope and the environment) and the context read through
//! its `.dockerignore` (`ignore.rs`).
//!
//! What this front end does today: `FROM` (an image from a registry or an
//! OCI layout, an earlier stage, or `scratch`; `--platform` checked;
//! `AS name`; `--target`), `ARG` before and after `FROM` with
//! `--build-arg`, `ENV`, `LABEL`, `MAINTAINER`, `WORKDIR`, `USER` (numbers
//! or names), `CMD`, `ENTRYPOINT` (exec and shell form, through `SHELL`),
//! `EXPOSE`, `VOLUME`, `STOPSIGNAL`, `HEALTHCHECK`, `ONBUILD` (recorded),
//! `SHELL`, `COPY`/`ADD` of context files (globs, directories by content,
//! `--chown` with numbers or names, `--chmod`; links inside the context
//! kept as links; nothing outside the context is ever read), `ADD` of a
//! local archive (`archive.rs`: a tar, plain or gzip/bzip2/xz/zstd,
//! recognised by content and unpacked into the destination through
//! `oci_layer::unpack`'s rules; `--chown` applies to its entries),
//! heredocs as `BuildKit` reads them (`dockerfile_syntax::heredoc`: `RUN
//! <<EOF` runs the body with the stage's shell, or a `#!` body as a script
//! its interpreter reads from the run's private `/io`; several heredocs on
//! one `RUN` line are handed to the shell after the line; `COPY <<A <<B
//! /dir/` makes files, expanded unless the delimiter is quoted), and `RUN`
//! (shell and exec form) in the sandbox over the stage's layers with
//! Docker's default capabilities but `MKNOD`, its changes captured as a
//! layer with whiteouts and with the owners and modes (setuid included)
//! the command left (`run.rs`), with `--mount=type=cache` directories kept
//! between builds (`mounts.rs`).
//!
//! Users and groups (`USER`, `--chown`) are numbers or names; names are
//! read from the stage's own `/etc/passwd` and `/etc/group` through the
//! merged view of its layers (`user.rs`); a name that is not there is an
//! error naming it. `USER` without a group runs with the user's primary
//! group; `--chown` without a group uses the user's number, as Docker
//! does.
//!
//! Each `COPY`/`ADD`/`RUN` becomes one reproducible layer (sorted entries,
//! the build epoch as every time); the same Dockerfile and context give
//! the same digest, and a `RUN` whose inputs are unchanged is taken from
//! the cache without running, as is a `COPY`/`ADD` whose inputs — down to
//! the content of every file it reads — are unchanged (`steps.rs`,
//! `hashes.rs`). `COPY --from` reads an earlier stage (or an image)
//! through the merged view of its unpacked layers (`from.rs`,
//! `union.rs`), patterns included. What this front end cannot carry out
//! (`ADD` of a URL, `--mount` types but `cache`, every other `RUN` flag)
//! fails the build with an error naming the instruction and its line.

mod apply;
mod archive;
mod fetch;
mod from;
mod hashes;
mod mounts;
mod run;
mod steps;
mod union;
mod user;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dockerfile_syntax::parse_dockerfile::{self, Instruction};
use oci_model::{Descriptor, Digest, Endpoint, Image, Layout, Platform, Reference, SourceImage};
use serde_json::{Value, json};

use crate::{Builder, Error, Result, io_at};
use dockerfile_syntax::expand::{self, Vars};
use dockerfile_syntax::heredoc::{self, Heredoc};
use dockerfile_syntax::ignore::Ignore;
use dockerfile_syntax::{describe, position};

/// What a Dockerfile build reports as it goes (see
/// [`DockerfileSpec::on_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DockerfileEvent {
    /// Step `index` (from 1) of `total` begins: `FROM` or the instruction
    /// as written.
    Step {
        /// This step's number, from 1.
        index: usize,
        /// The steps of the stages built.
        total: usize,
        /// The instruction.
        text: String,
    },
    /// A line a `RUN` wrote, as it is written (both streams, in the order
    /// read; a note where lines were dropped because the build's reader
    /// fell behind, or where the step's log reached [`RUN_LOG_BYTES`]),
    /// or the note that the step came from the cache.
    Output(String),
}

/// The most bytes of one `RUN`'s output told and kept in the build's log
/// (as `BuildKit`'s default step log limit); the rest is left out after a
/// note saying so.
pub const RUN_LOG_BYTES: usize = 2 << 20;

/// A callback taking a build's events.
pub type DockerfileProgress = Arc<dyn Fn(&DockerfileEvent) + Send + Sync>;

/// What to build from a Dockerfile.
///
/// ```
/// let mut spec = oci_build::DockerfileSpec::new("Dockerfile", ".", "registry.example/app:1.0".parse()?);
/// assert!(spec.build_args.is_empty());
/// spec.on_event(|event| eprintln!("{event:?}"));
/// # Ok::<(), oci_model::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DockerfileSpec {
    /// The Dockerfile.
    pub dockerfile: PathBuf,
    /// The build context: the only directory `COPY` and `ADD` read.
    pub context: PathBuf,
    /// The name the image is meant to be pushed as.
    pub name: Reference,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (default: the last).
    pub target: Option<String>,
    /// Whether `RUN` may use the host's network (default: no network).
    pub network: bool,
    /// Limits of each `RUN` (default: the sandbox's, with a one-hour
    /// timeout as the seeds' build limit).
    pub limits: sandbox_run::Limits,
    /// The most bytes one `RUN` may write to the image (its overlay's
    /// upper layer, a tmpfs: counted as the `RUN`'s memory too; default
    /// 1 GiB). Over it, the command's writes fail with `ENOSPC`.
    pub run_disk: u64,
    /// Told of every step as it starts and of each line a `RUN` writes.
    pub progress: Option<DockerfileProgress>,
}

impl std::fmt::Debug for DockerfileSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerfileSpec")
            .field("dockerfile", &self.dockerfile)
            .field("context", &self.context)
            .field("name", &self.name)
            .field("build_args", &self.build_args)
            .field("target", &self.target)
            .field("network", &self.network)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl DockerfileSpec {
    /// A build of `dockerfile` in `context`, named `name`.
    pub fn new(
        dockerfile: impl Into<PathBuf>,
        context: impl Into<PathBuf>,
        name: Reference,
    ) -> Self {
        Self {
            dockerfile: dockerfile.into(),
            context: context.into(),
            name,
            build_args: BTreeMap::new(),
            target: None,
            network: false,
            limits: {
                let mut limits = sandbox_run::Limits::default();
                limits.timeout = std::time::Duration::from_secs(3600);
                limits
            },
            run_disk: 1 << 30,
            progress: None,
        }
    }

    /// Calls `f` with every [`DockerfileEvent`] of the build, as it
    /// happens (from the build's task: `f` should be quick; while it is
    /// slow, a `RUN`'s lines are dropped with a note rather than held).
    pub fn on_event(&mut self, f: impl Fn(&DockerfileEvent) + Send + Sync + 'static) {
        self.progress = Some(Arc::new(f));
    }
}

/// The build's step log, kept for [`DockerfileOutput::steps`] and told to
/// the spec's callback as it grows.
struct StepLog<'a> {
    lines: Vec<String>,
    progress: Option<&'a DockerfileProgress>,
    /// Output bytes of the current step so far.
    step_bytes: usize,
}

impl StepLog<'_> {
    fn step(&mut self, index: usize, total: usize, text: &str) {
        self.step_bytes = 0;
        self.lines.push(format!("STEP {index}/{total}: {text}"));
        if let Some(f) = self.progress {
            f(&DockerfileEvent::Step {
                index,
                total,
                text: text.to_owned(),
            });
        }
    }

    /// One line of the current step's output, unless the step's log is
    /// full ([`RUN_LOG_BYTES`]).
    fn line(&mut self, line: &str) {
        let before = self.step_bytes;
        self.step_bytes = before.saturating_add(line.len() + 1);
        if self.step_bytes > RUN_LOG_BYTES {
            if before <= RUN_LOG_BYTES {
                self.emit(&format!(
                    "[output clipped, log limit {} MiB reached]",
                    RUN_LOG_BYTES >> 20
                ));
            }
            return;
        }
        self.emit(line);
    }

    fn emit(&mut self, line: &str) {
        self.lines.push(format!("  {line}"));
        if let Some(f) = self.progress {
            f(&DockerfileEvent::Output(line.to_owned()));
        }
    }
}

/// What a Dockerfile build made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DockerfileOutput {
    /// The image, read from the build store.
    pub image: SourceImage<Layout>,
    /// The build store.
    pub store: PathBuf,
    /// The image's tag in the store.
    pub store_tag: String,
    /// The name the image is meant to be pushed as.
    pub reference: Reference,
    /// The manifest digest.
    pub manifest_digest: Digest,
    /// The config digest.
    pub config_digest: Digest,
    /// The digests of the layers the build added, in order.
    pub added_layers: Vec<Digest>,
    /// Each instruction of the built stages as it was applied (`STEP n/m:
    /// TEXT`), each `RUN`'s output after it (indented, at most
    /// [`RUN_LOG_BYTES`] a step), for logs.
    pub steps: Vec<String>,
}

/// The build state of one stage.
struct Stage {
    name: Option<String>,
    /// The image config JSON (base's, changed by the instructions).
    config: Value,
    /// Layers of the base, then added ones: descriptor and diff-id.
    layers: Vec<(Descriptor, Digest)>,
    added: Vec<Digest>,
    /// A registry base's reference and layers, for cross-repository mounts.
    mount_from: Option<(Reference, Vec<Digest>)>,
    /// Build arguments declared in this stage, with their values.
    args: BTreeMap<String, String>,
    family: oci_model::media_type::Family,
}

/// The variables an instruction sees: the stage's declared arguments,
/// then its environment (which wins, as in Docker).
struct Scope<'a> {
    args: &'a BTreeMap<String, String>,
    env: Vec<(String, String)>,
}

impl Vars for Scope<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.args.get(name).map(String::as_str))
    }
}

/// Arguments every build has without an `ARG` (Docker's predefined proxy
/// arguments are left out: they would reach the image's history).
fn predefined(platform: &Platform) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    let p = platform.to_string();
    for (k, v) in [
        ("TARGETPLATFORM", p.as_str()),
        ("TARGETOS", platform.os.as_str()),
        ("TARGETARCH", platform.architecture.as_str()),
        ("BUILDPLATFORM", p.as_str()),
        ("BUILDOS", platform.os.as_str()),
        ("BUILDARCH", platform.architecture.as_str()),
    ] {
        args.insert(k.to_owned(), v.to_owned());
    }
    args.insert(
        "TARGETVARIANT".to_owned(),
        platform.variant.clone().unwrap_or_default(),
    );
    args
}

/// An error at byte `offset` of the Dockerfile.
fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> Error {
    let (line, column) = position(text, offset);
    Error::Dockerfile {
        path: path.to_owned(),
        line,
        column,
        message: message.into(),
    }
}

impl Builder {
    /// Builds `spec` into the build store (see the module documentation of
    /// `dockerfile` for what is supported); push the result with
    /// `oci_push::Copier::push`.
    pub async fn build_dockerfile(&self, spec: &DockerfileSpec) -> Result<DockerfileOutput> {
        if self.cache_dir.as_os_str().is_empty() {
            return Err(Error::NoCacheDir);
        }
        let path = &spec.dockerfile;
        let text = fs_err::read_to_string(path).map_err(io_at(path))?;
        // Heredoc bodies out of the parser's way, offsets unchanged: the
        // original text stays the one errors and logs quote.
        let prepared =
            heredoc::prepare(&text).map_err(|e| at(path, &text, e.offset(), e.to_string()))?;
        let parsed = parse_dockerfile::parse(&prepared.text).map_err(|e| Error::Dockerfile {
            path: path.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let escape = parsed
            .parser_directives
            .escape
            .as_ref()
            .map_or('\\', |d| d.value.value);
        let context = spec.context.clone();
        let ignore = match fs_err::read_to_string(context.join(".dockerignore")) {
            Ok(t) => Ignore::parse(&t).map_err(|e| Error::Dockerfile {
                path: context.join(".dockerignore"),
                line: 0,
                column: 0,
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ignore::parse("").map_err(|e| Error::Dockerfile {
                    path: context.join(".dockerignore"),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                })?
            }
            Err(e) => return Err(io_at(&context)(e)),
        };

        // Global arguments: declared before the first FROM, usable in FROM.
        let mut global = predefined(&self.platform);
        for arg in parsed.global_args() {
            for (name, default) in arg_pairs(&arg.arguments.value) {
                let value = spec.build_args.get(&name).cloned().or_else(|| {
                    default.and_then(|d| {
                        let scope = Scope {
                            args: &global,
                            env: Vec::new(),
                        };
                        expand::process_word(&d, &scope, escape).ok()
                    })
                });
                global.insert(name, value.unwrap_or_default());
            }
        }

        let stages: Vec<_> = parsed.stages().collect();
        let last = match &spec.target {
            None => stages.len() - 1,
            Some(t) => stages
                .iter()
                .position(|s| {
                    s.from
                        .as_
                        .as_ref()
                        .is_some_and(|(_, n)| n.value.eq_ignore_ascii_case(t))
                })
                .ok_or_else(|| Error::Dockerfile {
                    path: path.clone(),
                    line: 0,
                    column: 0,
                    message: format!("no stage named {t:?} (--target)"),
                })?,
        };
        let store = Layout::create(self.store_path())?;
        let hashes = std::sync::Mutex::new(hashes::ContentHashes::open(
            &self.cache_dir.join("dockerfile-copy").join("hashes"),
            &context,
        ));
        let mut built: Vec<Stage> = Vec::with_capacity(last + 1);
        let mut steps = StepLog {
            lines: Vec::new(),
            progress: spec.progress.as_ref(),
            step_bytes: 0,
        };
        let mut step = 0;
        let total: usize = stages[..=last]
            .iter()
            .map(|s| s.instructions.len() + 1)
            .sum();
        for stage in &stages[..=last] {
            let from = stage.from;
            let global_scope = Scope {
                args: &global,
                env: Vec::new(),
            };
            let image = expand::process_word(&from.image.value, &global_scope, escape)
                .map_err(|e| at(path, &text, from.image.span.start, e.to_string()))?;
            for flag in &from.options {
                let name = flag.name.value.as_ref();
                let value = flag.value.as_ref().map(|v| v.value.as_ref()).unwrap_or("");
                let value = expand::process_word(value, &global_scope, escape)
                    .map_err(|e| at(path, &text, flag.name.span.start, e.to_string()))?;
                match name {
                    "platform" => {
                        let wanted: Platform = value.parse().map_err(|e: oci_model::Error| {
                            at(path, &text, flag.name.span.start, e.to_string())
                        })?;
                        if !wanted.matches(&self.platform) && !self.platform.matches(&wanted) {
                            return Err(at(
                                path,
                                &text,
                                flag.name.span.start,
                                format!(
                                    "FROM --platform={wanted}: this build is for {} (pass --platform)",
                                    self.platform
                                ),
                            ));
                        }
                    }
                    other => {
                        return Err(at(
                            path,
                            &text,
                            flag.name.span.start,
                            format!("FROM --{other} is not a FROM flag"),
                        ));
                    }
                }
            }
            step += 1;
            steps.step(step, total, &format!("FROM {image}"));
            let mut state = if let Some(i) = built.iter().position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&image))
            }) {
                let prior = &built[i];
                Stage {
                    name: None,
                    config: prior.config.clone(),
                    layers: prior.layers.clone(),
                    added: prior.added.clone(),
                    mount_from: prior.mount_from.clone(),
                    args: BTreeMap::new(),
                    family: prior.family,
                }
            } else if image == "scratch" {
                Stage {
                    name: None,
                    config: json!({
                        "architecture": self.platform.architecture,
                        "os": self.platform.os,
                        "config": {},
                        "rootfs": {"type": "layers", "diff_ids": []},
                        "history": [],
                    }),
                    layers: Vec::new(),
                    added: Vec::new(),
                    mount_from: None,
                    args: BTreeMap::new(),
                    family: oci_model::media_type::Family::Oci,
                }
            } else {
                let endpoint: Endpoint = image.parse().map_err(|e: oci_model::Error| {
                    at(path, &text, from.image.span.start, e.to_string())
                })?;
                self.load_stage_base(&endpoint, &store).await?
            };
            state.name = from.as_.as_ref().map(|(_, n)| n.value.to_string());
            for instruction in stage.instructions {
                let (offset, line_text) = describe(instruction, &text);
                step += 1;
                steps.step(step, total, &line_text);
                let mut ctx = Ctx {
                    owner: None,
                    path,
                    text: &text,
                    offset,
                    heredocs: prepared.heredocs.get(&offset).map_or(&[], Vec::as_slice),
                    escape,
                    global: &global,
                    build_args: &spec.build_args,
                    context: &context,
                    ignore: &ignore,
                    store: &store,
                    network: spec.network,
                    limits: &spec.limits,
                    run_disk: spec.run_disk,
                    fetched: BTreeMap::new(),
                    hashes: &hashes,
                };
                if let Instruction::Add(add) = instruction {
                    ctx.fetched = self.fetch_urls(&state, &ctx, add).await?;
                }
                let options = match instruction {
                    Instruction::Copy(c) => &c.options[..],
                    Instruction::Add(a) => &a.options[..],
                    _ => &[],
                };
                if let Some(flag) = options.iter().find(|f| f.name.value == "chown") {
                    let raw = flag.value.as_ref().map_or("", |v| v.value.as_ref());
                    let scope = Scope {
                        args: &state.args,
                        env: apply::env_pairs(&state.config),
                    };
                    let spec = expand::process_word(raw, &scope, escape)
                        .map_err(|e| ctx.error(e.to_string()))?;
                    let owner = self
                        .resolve_user(&state, &ctx, &spec, user::NoGroup::SameAsUser, "--chown")
                        .await?;
                    ctx.owner = Some(owner);
                }
                if let Instruction::Run(run) = instruction {
                    self.run_step(&mut state, &ctx, run, &line_text, &mut steps)
                        .await?;
                } else if let Instruction::Copy(copy) = instruction
                    && let Some(flag) = copy.options.iter().find(|f| f.name.value == "from")
                {
                    let raw = flag.value.as_ref().map_or("", |v| v.value.as_ref());
                    let scope = Scope {
                        args: &state.args,
                        env: apply::env_pairs(&state.config),
                    };
                    let name = expand::process_word(raw, &scope, escape)
                        .map_err(|e| ctx.error(e.to_string()))?;
                    let by_name = built.iter().position(|s| {
                        s.name
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                    });
                    let by_index = name.parse::<usize>().ok().filter(|i| *i < built.len());
                    let loaded;
                    let source = match by_name.or(by_index) {
                        Some(i) => &built[i],
                        None => {
                            let endpoint: Endpoint =
                                name.parse().map_err(|e: oci_model::Error| {
                                    ctx.error(format!(
                                        "COPY --from={name}: not a stage or an image: {e}"
                                    ))
                                })?;
                            loaded = self.load_stage_base(&endpoint, &store).await?;
                            &loaded
                        }
                    };
                    let log = self
                        .copy_from_step(&mut state, source, &ctx, copy, &line_text)
                        .await?;
                    log.lines().for_each(|l| steps.line(l));
                } else {
                    let log = self.apply(&mut state, instruction, &ctx)?;
                    log.lines().for_each(|l| steps.line(l));
                    if let Instruction::Workdir(_) = instruction {
                        self.make_workdir(&mut state, &ctx, &line_text).await?;
                    }
                }
            }
            built.push(state);
        }
        let state = built.swap_remove(last);
        let hashes = hashes.into_inner().unwrap_or_else(|e| e.into_inner());
        let memo = self.cache_dir.join("dockerfile-copy").join("hashes");
        hashes.save().map_err(io_at(&memo))?;
        self.finish_dockerfile(spec, state, &store, steps.lines)
    }

    /// Downloads the http(s) sources of an `ADD`, which only a build
    /// allowed the network may do; `--checksum` needs exactly one.
    async fn fetch_urls(
        &self,
        state: &Stage,
        ctx: &Ctx<'_>,
        add: &parse_dockerfile::AddInstruction<'_>,
    ) -> Result<BTreeMap<String, fetch::Fetched>> {
        let scope = Scope {
            args: &state.args,
            env: apply::env_pairs(&state.config),
        };
        let word = |raw: &str| {
            expand::process_word(raw, &scope, ctx.escape).map_err(|e| ctx.error(e.to_string()))
        };
        let mut urls = Vec::new();
        for source in &add.src {
            if let parse_dockerfile::Source::Path(p) = source {
                let src = word(&p.value)?;
                if fetch::is_http(&src) {
                    urls.push(src);
                }
            }
        }
        let checksum = match add.options.iter().find(|f| f.name.value == "checksum") {
            Some(flag) => {
                let raw = word(flag.value.as_ref().map_or("", |v| v.value.as_ref()))?;
                let digest: Digest = raw
                    .parse()
                    .map_err(|e: oci_model::Error| ctx.error(format!("--checksum={raw}: {e}")))?;
                if urls.len() != 1 || add.src.len() != 1 {
                    return Err(ctx.error("--checksum needs exactly one source, an http(s) URL"));
                }
                Some(digest)
            }
            None => None,
        };
        let mut fetched = BTreeMap::new();
        for url in urls {
            if !ctx.network {
                return Err(ctx.error(format!(
                    "ADD {url}: fetching a URL needs the network; build with --network host"
                )));
            }
            let file = fetch::fetch(&url, checksum.as_ref(), &self.cache_dir, fetch::MAX_FETCH)
                .await
                .map_err(|e| ctx.error(format!("ADD: {e}")))?;
            fetched.insert(url, file);
        }
        Ok(fetched)
    }

    /// The uid and gid `spec` (`USER[:GROUP]`, numbers or names) stands
    /// for in `state`, names read from its merged `/etc/passwd` and
    /// `/etc/group`; `what` names the instruction in errors.
    async fn resolve_user(
        &self,
        state: &Stage,
        ctx: &Ctx<'_>,
        spec: &str,
        no_group: user::NoGroup,
        what: &str,
    ) -> Result<(u32, u32)> {
        let (passwd, group) = if user::needs_files(spec, no_group) {
            let image = self.materialize(state, ctx).await?;
            let union = union::Union::new(image.lower_dirs());
            let read = |rel| user::read_merged(&union, rel).map_err(|e| ctx.error(e));
            let files = (read("etc/passwd")?, read("etc/group")?);
            drop(image);
            files
        } else {
            (String::new(), String::new())
        };
        user::resolve(spec, &passwd, &group, no_group)
            .map_err(|e| ctx.error(format!("{what} {spec}: {e}")))
    }

    /// Reads a `FROM` image into the store.
    async fn load_stage_base(&self, endpoint: &Endpoint, store: &Layout) -> Result<Stage> {
        let (image, mount) =
            crate::base::resolve_into_store(&self.client, endpoint, &self.platform, store).await?;
        let config: Value = serde_json::from_slice(image.config_bytes()).map_err(|e| {
            oci_model::Error::MalformedManifest {
                reason: format!("config of {endpoint}: {e}"),
            }
        })?;
        let diff_ids: Vec<Digest> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        let manifest = image.manifest();
        if diff_ids.len() != manifest.layers().len() {
            return Err(oci_model::Error::MalformedManifest {
                reason: format!(
                    "{endpoint}: {} layers but {} diff-ids in the config",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            }
            .into());
        }
        let layers: Vec<(Descriptor, Digest)> =
            manifest.layers().iter().cloned().zip(diff_ids).collect();
        let mount_from = mount.map(|r| (r, layers.iter().map(|(d, _)| d.digest.clone()).collect()));
        Ok(Stage {
            name: None,
            config,
            layers,
            added: Vec::new(),
            mount_from,
            args: BTreeMap::new(),
            family: manifest.family(),
        })
    }
}

/// What applying one instruction needs besides the state.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    /// Where the instruction starts.
    offset: usize,
    /// The owner its `--chown` names, resolved.
    owner: Option<(u32, u32)>,
    /// The instruction's heredocs, in the order of their markers.
    heredocs: &'a [Heredoc],
    escape: char,
    global: &'a BTreeMap<String, String>,
    build_args: &'a BTreeMap<String, String>,
    context: &'a Path,
    ignore: &'a Ignore,
    store: &'a Layout,
    network: bool,
    limits: &'a sandbox_run::Limits,
    /// The most one `RUN` may write ([`DockerfileSpec::run_disk`]).
    run_disk: u64,
    /// The files an `ADD`'s URLs downloaded, by URL as expanded.
    fetched: BTreeMap<String, fetch::Fetched>,
    /// The remembered hashes of context files (`hashes.rs`).
    hashes: &'a std::sync::Mutex<hashes::ContentHashes>,
}

impl Ctx<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        at(self.path, self.text, self.offset, message)
    }
}

/// `NAME[=default]` pairs of an `ARG`.
fn arg_pairs(raw: &str) -> Vec<(String, Option<String>)> {
    raw.split_whitespace()
        .map(|word| match word.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.trim_matches('"').to_owned())),
            None => (word.to_owned(), None),
        })
        .collect()
}
