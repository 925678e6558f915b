//! `RUN`: the command runs in `sandbox-run` over an overlay of the stage's
//! layers; what it changed (the overlay's upper layer, deletions as
//! whiteouts) becomes the next layer.
//!
//! The stage so far is written to the build store as an image (config and
//! manifest blobs, untagged) and pulled through a `layer-cache` under the
//! cache directory (`rootfs/`, shared with bytecode compiles), which
//! unpacks each layer once; the command then runs with the stage's
//! environment (build arguments included, as Docker does), user (a number
//! or a name of the stage's `/etc/passwd`, root by default) and working
//! directory, Docker's default capabilities but `MKNOD` (seccomp and no
//! new privileges kept), no network unless the build allows it, and the
//! build's limits. The layer records the owners and permission bits the
//! command left, setuid included, as Docker does. A layer is cached by everything that
//! decides it — the stage's layers, the command, environment, user,
//! directory, network and platform — so a repeated build runs nothing.
//! Its output goes to the build's log line by line as it is written
//! (`sandbox_run::Detached::recv_output`), each line bounded, the step's
//! log bounded by [`super::RUN_LOG_BYTES`]; a failure quotes its last
//! lines.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use dockerfile_syntax::parse_dockerfile::{Command, RunInstruction};
use layer_cache::{Cache, CacheConfig};
use oci_layer::{LayerWriter, WriteOptions};
use oci_model::{Descriptor, Digest};
use sandbox_run::{Capture, Io, LiveOutput, Network, Outcome, Output, RootFs, RunSpec, Sandbox};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::apply::{absolute, command_line};
use super::{Ctx, Scope, Stage, StepLog};
use crate::image::{self, LayerDesc};
use crate::{Builder, Result, io_at};
use dockerfile_syntax::heredoc;

/// Version of the cached `RUN` layer entries and of their key's recipe.
const FORMAT: &str = "hoist-dockerfile-run-v2";
/// Lines of a failed `RUN`'s output its error quotes.
const TAIL_LINES: usize = 30;
/// How long the build's task waits for a `RUN`'s next lines before it
/// looks whether the step ended.
const TICK: Duration = Duration::from_millis(250);

#[derive(Serialize, Deserialize)]
struct CachedLayer {
    format: String,
    digest: Digest,
    size: u64,
    diff_id: Digest,
}

impl Builder {
    /// Runs one `RUN` (or takes its layer from the cache) and adds its
    /// layer to `state`; its output goes to `log` as it is written.
    pub(super) async fn run_step(
        &self,
        state: &mut Stage,
        ctx: &Ctx<'_>,
        run: &RunInstruction<'_>,
        line: &str,
        log: &mut StepLog<'_>,
    ) -> Result<()> {
        let Some(sandbox) = self.sandbox.clone() else {
            return Err(ctx.error("RUN needs the sandbox (run hoist as root)"));
        };
        let args_scope = state.args.clone();
        let scope = Scope {
            args: &args_scope,
            env: super::apply::env_pairs(&state.config),
        };
        let workdir = super::apply::working_dir_of(&state.config);
        let mut mounts = Vec::new();
        for flag in &run.options {
            let raw = flag.value.as_ref().map_or("", |v| v.value.as_ref());
            match flag.name.value.as_ref() {
                "mount" => {
                    let value = dockerfile_syntax::expand::process_word(raw, &scope, ctx.escape)
                        .map_err(|e| ctx.error(e.to_string()))?;
                    mounts.push(super::mounts::parse(&value, &workdir).map_err(|e| ctx.error(e))?);
                }
                other => return Err(ctx.error(format!("RUN --{other} is not supported"))),
            }
        }
        let mut script = None;
        let args = match &run.arguments {
            Command::Exec(e) => e.value.iter().map(|s| s.value.to_string()).collect(),
            Command::Shell(s) if !ctx.heredocs.is_empty() => {
                let raw = &ctx.text[s.span.clone()];
                let (args, file) = heredoc_command(ctx, raw, &state.config)?;
                script = file;
                args
            }
            Command::Shell(_) => command_line(&run.arguments, &state.config),
            _ => return Err(ctx.error("RUN of an unknown form")),
        };
        if args.is_empty() {
            return Err(ctx.error("RUN needs a command"));
        }
        // The environment: build arguments, then the image's (which win).
        let mut env: BTreeMap<String, String> = state.args.clone();
        for (k, v) in &scope.env {
            env.insert(k.clone(), v.clone());
        }
        let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let user = state.config["config"]["User"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let (uid, gid) = self
            .resolve_user(state, ctx, &user, super::user::NoGroup::Primary, "USER")
            .await?;
        let cwd = absolute(
            state.config["config"]["WorkingDir"]
                .as_str()
                .filter(|d| !d.is_empty())
                .unwrap_or("/"),
            ".",
        );
        let network = ctx.network;
        let diff_ids: Vec<String> = state.layers.iter().map(|(_, d)| d.to_string()).collect();
        let key_text = serde_json::json!({
            "format": FORMAT,
            "layers": diff_ids,
            "args": args,
            "env": env,
            "uid": uid,
            "gid": gid,
            "cwd": cwd,
            "network": network,
            "mounts": mounts,
            "heredocs": ctx.heredocs.iter().map(|d| (&d.name, &d.content, d.chomp)).collect::<Vec<_>>(),
            "platform": self.platform.to_string(),
            "epoch": self.epoch,
        })
        .to_string();
        let key = Digest::of(key_text.as_bytes()).hex().to_owned();
        let entry_path = self
            .cache_dir
            .join("dockerfile-run")
            .join(format!("{key}.json"));
        let cached = std::fs::read(&entry_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CachedLayer>(&b).ok())
            .filter(|c| c.format == FORMAT && ctx.store.has_blob(&c.digest, Some(c.size)));
        let layer = match cached {
            Some(c) => {
                log.line(&format!("(cached {})", short(&key)));
                c
            }
            None => {
                let layer = self
                    .run_fresh(
                        state,
                        ctx,
                        sandbox,
                        log,
                        Job {
                            args,
                            env,
                            uid,
                            gid,
                            cwd,
                            network,
                            script,
                            mounts,
                        },
                    )
                    .await?;
                let bytes = serde_json::to_vec(&layer).expect("an entry serializes");
                let dir = self.cache_dir.join("dockerfile-run");
                std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
                let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_at(&dir))?;
                std::fs::write(tmp.path(), bytes).map_err(io_at(tmp.path()))?;
                tmp.persist(&entry_path)
                    .map_err(|e| io_at(&entry_path)(e.error))?;
                layer
            }
        };
        let types = image::types(state.family);
        state.layers.push((
            Descriptor {
                media_type: types.layer.to_owned(),
                digest: layer.digest.clone(),
                size: layer.size,
                platform: None,
            },
            layer.diff_id.clone(),
        ));
        state.added.push(layer.digest);
        if let Some(ids) = state.config["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(Value::String(layer.diff_id.to_string()));
        }
        super::apply::push_history(&mut state.config, &self.created(), line, false);
        Ok(())
    }

    async fn run_fresh(
        &self,
        state: &Stage,
        ctx: &Ctx<'_>,
        sandbox: sandbox_run::SandboxConfig,
        log: &mut StepLog<'_>,
        job: Job,
    ) -> Result<CachedLayer> {
        let Job {
            args,
            env,
            uid,
            gid,
            cwd,
            network,
            script,
            mounts,
        } = job;
        let image = self.materialize(state, ctx).await?;
        let tmp = self.cache_dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        let kept = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&tmp)
            .map_err(io_at(&tmp))?;
        // `scratch`: an empty root of its own, removed with its guard.
        let empty = tempfile::Builder::new()
            .prefix("run-root-")
            .tempdir_in(&tmp)
            .map_err(io_at(&tmp))?;
        let lower = if image.lower_dirs().is_empty() {
            vec![empty.path().to_owned()]
        } else {
            image.lower_dirs()
        };
        let mut spec = RunSpec::new(RootFs::Overlay { lower }, args);
        spec.env = env;
        spec.uid = uid;
        spec.gid = gid;
        spec.cwd = cwd;
        spec.readonly_root = false;
        // What Docker gives a RUN: root may chown, install setuid files...
        spec.capabilities = sandbox_run::Capability::DOCKER_DEFAULT.to_vec();
        spec.limits = ctx.limits.clone();
        spec.network = if network {
            Network::Host
        } else {
            Network::None
        };
        // The output is followed live (below); none is kept twice.
        spec.output = Output::Capture { max_bytes: 0 };
        let mut capture = Capture::new(kept.path());
        capture.max_bytes = ctx.run_disk;
        spec.capture = Some(capture);
        // A `#!` heredoc: the script in the run's own `/io`, read by its
        // interpreter, never part of the layer.
        let inputs = tempfile::Builder::new()
            .prefix("run-io-")
            .tempdir_in(&tmp)
            .map_err(io_at(&tmp))?;
        if let Some((name, data)) = &script {
            let file = inputs.path().join(name);
            std::fs::write(&file, data).map_err(io_at(&file))?;
            let mut io = Io::new(inputs.path());
            io.inputs = vec![name.clone()];
            io.size_bytes = io.size_bytes.max(data.len() as u64 * 2);
            spec.io = Some(io);
        }
        let root = self.cache_dir.join("dockerfile-cache");
        let mut locks = Vec::new();
        for m in &mounts {
            let (dir, lock) = m.directory(&root).map_err(io_at(&root))?;
            spec.binds
                .push(sandbox_run::Bind::new(dir, m.target.clone()));
            if m.exclusive {
                locks.push(lock);
            }
        }
        // Detached, so that dropping this future (a cancelled build) kills
        // the command instead of letting it run to its time limit.
        let (mut running, held) = crate::blocking("starting a RUN step", move || {
            // `locked`/`private` caches: one RUN at a time, held while it runs.
            let mut held = Vec::new();
            for lock in &locks {
                let file = std::fs::File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(lock)
                    .map_err(io_at(lock))?;
                rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
                    .map_err(|e| io_at(lock)(e.into()))?;
                held.push(file);
            }
            let sandbox = Sandbox::new(sandbox)?;
            Ok((
                sandbox.start_detached_live(&spec, LiveOutput::default())?,
                held,
            ))
        })
        .await?;
        // Lines as they come (the sandbox drops what this task is too slow
        // to take, with a note), until the output ends and the step with it.
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        loop {
            let (back, events, ended) = crate::blocking("running a RUN step", move || {
                let events = running.recv_output(TICK);
                let ended = events.is_none() && running.wait(TICK);
                Ok((running, events.unwrap_or_default(), ended))
            })
            .await?;
            running = back;
            for event in events {
                let line = event.to_string();
                log.line(&line);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            if ended {
                break;
            }
        }
        let result = crate::blocking("ending a RUN step", move || Ok(running.stop()?)).await?;
        drop(held);
        drop(image);
        let tail = || Vec::from(tail.clone()).join("\n");
        match &result.outcome {
            Outcome::Exited(0) => {}
            Outcome::Exited(code) => {
                return Err(ctx.error(format!("RUN exited with status {code}:\n{}", tail())));
            }
            other => return Err(ctx.error(format!("RUN ended: {other:?}\n{}", tail()))),
        }
        match &result.captured {
            Some(Ok(_)) => {}
            Some(Err(refusal)) => {
                return Err(ctx.error(format!("what RUN wrote cannot be a layer: {refusal}")));
            }
            None => return Err(ctx.error("RUN left nothing to capture")),
        }
        // Owners and modes as the RUN left them, as Docker records them.
        let mut w = LayerWriter::new(WriteOptions {
            mtime: self.epoch,
            keep_host_metadata: true,
            ..WriteOptions::default()
        });
        w.add_tree(kept.path(), "")?;
        let blob_path = kept.path().with_extension("layer");
        let file = std::fs::File::create(&blob_path).map_err(io_at(&blob_path))?;
        let info = w.finish(std::io::BufWriter::new(file))?;
        let result = store_layer(ctx, &blob_path, &info.digest);
        let _ = std::fs::remove_file(&blob_path);
        result?;
        Ok(CachedLayer {
            format: FORMAT.to_owned(),
            digest: info.digest,
            size: info.size,
            diff_id: info.diff_id,
        })
    }
}

impl Builder {
    /// The stage so far, written to the store as an (untagged) image and
    /// unpacked by the `rootfs/` layer cache: its layer directories.
    pub(super) async fn materialize(
        &self,
        state: &Stage,
        ctx: &Ctx<'_>,
    ) -> Result<layer_cache::CachedImage> {
        let config =
            serde_json::to_vec(&state.config).map_err(|e| oci_model::Error::MalformedManifest {
                reason: format!("the stage's config: {e}"),
            })?;
        let types = image::types(state.family);
        let config_digest = ctx.store.write_blob(&config)?;
        let config_desc = Descriptor {
            media_type: types.config.to_owned(),
            digest: config_digest,
            size: config.len() as u64,
            platform: None,
        };
        let layers: Vec<LayerDesc> = state
            .layers
            .iter()
            .map(|(d, _)| LayerDesc {
                media_type: d.media_type.clone(),
                digest: d.digest.clone(),
                size: d.size,
                urls: None,
                annotations: None,
            })
            .collect();
        let manifest = image::manifest_bytes(state.family, &config_desc, layers, &BTreeMap::new());
        let manifest_digest = ctx.store.write_blob(&manifest)?;
        let mut cache_config = CacheConfig::new(self.cache_dir.join("rootfs"));
        cache_config.platform = self.platform.clone();
        let cache = Cache::open(cache_config).await?;
        let reference = ctx.store.reference(None)?.with_digest(manifest_digest);
        // The cache is closed at once; the image's pins keep its layers.
        Ok(cache.pull(&reference, ctx.store).await?)
    }
}

/// Moves the layer blob at `path` into the store, checked against
/// `digest` as it is copied.
fn store_layer(ctx: &Ctx<'_>, path: &Path, digest: &Digest) -> Result<()> {
    if ctx.store.has_blob(digest, None) {
        return Ok(());
    }
    let mut src = std::fs::File::open(path).map_err(io_at(path))?;
    let mut w = ctx.store.verified_blob_writer()?;
    std::io::copy(&mut src, &mut w).map_err(io_at(ctx.store.root()))?;
    w.commit(Some(digest))?;
    Ok(())
}

/// A `#!` heredoc's file name and contents, for the run's `/io`.
type Script = (String, String);

/// What one `RUN` runs, as it runs.
struct Job {
    args: Vec<String>,
    env: Vec<String>,
    uid: u32,
    gid: u32,
    cwd: String,
    network: bool,
    /// A `#!` heredoc's file name and contents, put in `/io`.
    script: Option<Script>,
    /// `--mount=type=cache` directories.
    mounts: Vec<super::mounts::CacheMount>,
}

/// The command of a shell-form `RUN` with heredocs, as `BuildKit` makes
/// it: a `RUN <<EOF` alone runs the body with the stage's shell, or, when
/// the body starts with `#!`, as a script file run by that interpreter
/// (returned with the file to provide); any other line goes to the shell
/// with the heredocs written back after it, for the shell to read.
fn heredoc_command(
    ctx: &Ctx<'_>,
    raw: &str,
    config: &Value,
) -> Result<(Vec<String>, Option<Script>)> {
    let mut line = String::with_capacity(raw.len());
    let mut rest = raw;
    // Line continuations out, as the parser joins the lines.
    while let Some(i) = rest.find(ctx.escape) {
        line.push_str(&rest[..i]);
        let after = &rest[i + ctx.escape.len_utf8()..];
        let blank = after.len() - after.trim_start_matches([' ', '\t', '\r']).len();
        if after[blank..].starts_with('\n') {
            rest = &after[blank + 1..];
        } else {
            line.push(ctx.escape);
            rest = after;
        }
    }
    line.push_str(rest);
    let line = line.trim();
    let docs = ctx.heredocs;
    let shell = |body: String| {
        let mut args = shell_of(config);
        args.push(body);
        args
    };
    if let [doc] = docs
        && heredoc::parse_marker(line).is_some()
    {
        let data = doc.data();
        let Some(first) = data.strip_prefix("#!").and_then(|d| d.lines().next()) else {
            return Ok((shell(data), None));
        };
        // As the kernel reads a `#!` line: the interpreter, then at most
        // one argument, then the script's path.
        let first = first.trim();
        let (interpreter, arg) = match first.split_once([' ', '\t']) {
            Some((i, a)) => (i, Some(a.trim())),
            None => (first, None),
        };
        if interpreter.is_empty() {
            return Err(ctx.error(format!("heredoc {}: `#!` without an interpreter", doc.name)));
        }
        let plain = !doc.name.is_empty()
            && doc.name != "."
            && doc.name != ".."
            && !doc.name.contains(['/', '\0']);
        let name = if plain {
            doc.name.clone()
        } else {
            "heredoc".to_owned()
        };
        let mut args = vec![interpreter.to_owned()];
        args.extend(arg.filter(|a| !a.is_empty()).map(str::to_owned));
        args.push(format!("/io/{name}"));
        return Ok((args, Some((name, data))));
    }
    let mut full = line.to_owned();
    for doc in docs {
        full.push('\n');
        full.push_str(&doc.content);
        full.push_str(&doc.name);
    }
    Ok((shell(full), None))
}

/// The stage's `SHELL` (default `/bin/sh -c`).
fn shell_of(config: &Value) -> Vec<String> {
    config["config"]["Shell"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// The first hex digits of a cache key, for the log.
fn short(key: &str) -> &str {
    &key[..12.min(key.len())]
}
