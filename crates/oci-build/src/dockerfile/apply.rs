//! Applying one instruction to a stage's build state, and writing the
//! final config and manifest.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use dockerfile_syntax::parse_dockerfile::{
    Command, HealthcheckArguments, Instruction, JsonOrStringArray, Source,
};
use oci_layer::{LayerInfo, LayerWriter, WriteOptions};
use oci_model::{Descriptor, Digest, Layout, Manifest, Resolved, SourceImage};
use serde_json::{Map, Value, json};

use super::archive;
use super::hashes::{ContentHashes, Stat, Verified};
use super::steps::StepKey;
use super::{Ctx, DockerfileOutput, DockerfileSpec, Scope, Stage};
use crate::image::{self, LayerDesc};
use crate::{Builder, Result, io_at};
use dockerfile_syntax::expand;
use dockerfile_syntax::heredoc::Heredoc;

/// The most entries one `COPY` walks: a context is a directory tree, not a
/// disk.
const MAX_ENTRIES: usize = 1 << 20;

impl Builder {
    /// Applies `instruction` to `state`; returns the step's log (a cached
    /// `COPY`/`ADD` says so).
    pub(super) fn apply(
        &self,
        state: &mut Stage,
        instruction: &Instruction<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<String> {
        // What the instruction sees is the state before it.
        let args = state.args.clone();
        let scope = Scope {
            args: &args,
            env: env_pairs(&state.config),
        };
        let word = |raw: &str| {
            expand::process_word(raw, &scope, ctx.escape).map_err(|e| ctx.error(e.to_string()))
        };
        let words = |raw: &str| {
            expand::process_words(raw, &scope, ctx.escape).map_err(|e| ctx.error(e.to_string()))
        };
        let (_, line) = dockerfile_syntax::describe(instruction, ctx.text);
        let mut empty_layer = true;
        let mut log = String::new();
        match instruction {
            Instruction::Arg(arg) => {
                for w in words(&arg.arguments.value)? {
                    let (name, default) = match w.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (w.clone(), None),
                    };
                    let value = ctx
                        .build_args
                        .get(&name)
                        .cloned()
                        .or(default)
                        .or_else(|| ctx.global.get(&name).cloned())
                        .unwrap_or_default();
                    state.args.insert(name, value);
                }
            }
            Instruction::Env(env) => {
                for (k, v) in pairs(&env.arguments.value, &words, &word, ctx)? {
                    set_env(&mut state.config, &k, &v);
                }
            }
            Instruction::Label(label) => {
                for (k, v) in pairs(&label.arguments.value, &words, &word, ctx)? {
                    run_config(&mut state.config)
                        .entry("Labels")
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                        .map(|l| l.insert(k, Value::String(v)));
                }
            }
            Instruction::Maintainer(m) => {
                state.config["author"] = Value::String(word(&m.name.value)?);
            }
            Instruction::Workdir(w) => {
                let dir = word(&w.arguments.value)?;
                let joined = absolute(&working_dir(&state.config), &dir);
                run_config(&mut state.config).insert("WorkingDir".into(), Value::String(joined));
            }
            Instruction::User(u) => {
                let user = word(&u.arguments.value)?;
                run_config(&mut state.config).insert("User".into(), Value::String(user));
            }
            Instruction::Cmd(c) => {
                let args = command_line(&c.arguments, &state.config);
                run_config(&mut state.config).insert("Cmd".into(), json!(args));
            }
            Instruction::Entrypoint(e) => {
                let args = command_line(&e.arguments, &state.config);
                let config = run_config(&mut state.config);
                config.insert("Entrypoint".into(), json!(args));
                // As Docker does: a new entrypoint drops an inherited command.
                config.insert("Cmd".into(), Value::Null);
            }
            Instruction::Expose(e) => {
                for a in &e.arguments {
                    for port in words(&a.value)? {
                        let port = if port.contains('/') {
                            port.to_ascii_lowercase()
                        } else {
                            format!("{port}/tcp")
                        };
                        let number = port.split('/').next().unwrap_or("");
                        let valid = number
                            .split('-')
                            .all(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
                        if !valid {
                            return Err(ctx.error(format!("EXPOSE {port}: not a port")));
                        }
                        insert_set(&mut state.config, "ExposedPorts", port);
                    }
                }
            }
            Instruction::Volume(v) => {
                let raw: Vec<&str> = match &v.arguments {
                    JsonOrStringArray::Json(j) => {
                        j.value.iter().map(|s| s.value.as_ref()).collect()
                    }
                    JsonOrStringArray::String(s) => s.iter().map(|s| s.value.as_ref()).collect(),
                };
                for r in raw {
                    let path = word(r)?;
                    if path.is_empty() {
                        return Err(ctx.error("VOLUME needs a path"));
                    }
                    insert_set(&mut state.config, "Volumes", path);
                }
            }
            Instruction::Stopsignal(s) => {
                let signal = word(&s.arguments.value)?;
                run_config(&mut state.config).insert("StopSignal".into(), Value::String(signal));
            }
            Instruction::Shell(s) => {
                let shell: Vec<String> = s.arguments.iter().map(|a| a.value.to_string()).collect();
                if shell.is_empty() {
                    return Err(ctx.error("SHELL needs a command"));
                }
                run_config(&mut state.config).insert("Shell".into(), json!(shell));
            }
            Instruction::Onbuild(o) => {
                let (_, inner) = dockerfile_syntax::describe(&o.instruction, ctx.text);
                if let Some(list) = run_config(&mut state.config)
                    .entry("OnBuild")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                {
                    list.push(Value::String(inner));
                }
            }
            Instruction::Healthcheck(h) => {
                if let Some(flag) = h.options.first() {
                    return Err(ctx.error(format!(
                        "HEALTHCHECK --{} is not supported yet",
                        flag.name.value
                    )));
                }
                let test = match &h.arguments {
                    HealthcheckArguments::None { .. } => json!(["NONE"]),
                    HealthcheckArguments::Cmd { arguments, .. } => match arguments {
                        Command::Exec(e) => {
                            let mut t = vec!["CMD".to_owned()];
                            t.extend(e.value.iter().map(|s| s.value.to_string()));
                            json!(t)
                        }
                        Command::Shell(s) => json!(["CMD-SHELL", s.value]),
                        _ => return Err(ctx.error("HEALTHCHECK of an unknown form")),
                    },
                    _ => return Err(ctx.error("HEALTHCHECK of an unknown form")),
                };
                run_config(&mut state.config).insert("Healthcheck".into(), json!({"Test": test}));
            }
            Instruction::Copy(c) => {
                if c.options.iter().any(|f| f.name.value == "from") {
                    return Err(ctx.error("COPY --from is applied by copy_from_step"));
                }
                log = self.copy(
                    state,
                    ctx,
                    &scope,
                    &scope_args(&c.options),
                    &c.src,
                    &c.dest.value,
                    false,
                    &word,
                    &line,
                )?;
                empty_layer = false;
            }
            Instruction::Add(a) => {
                let mut flags = scope_args(&a.options);
                if flags.iter().any(|(name, _)| name == "from") {
                    return Err(ctx.error("ADD --from: only COPY takes --from"));
                }
                // Checked and used by the fetch, before this step.
                flags.retain(|(name, _)| name != "checksum");
                log = self.copy(
                    state,
                    ctx,
                    &scope,
                    &flags,
                    &a.src,
                    &a.dest.value,
                    true,
                    &word,
                    &line,
                )?;
                empty_layer = false;
            }
            Instruction::Run(_) => return Err(ctx.error("RUN is applied by run_step")),
            Instruction::From(_) => return Err(ctx.error("FROM inside a stage")),
            _ => return Err(ctx.error(format!("{line}: not a supported instruction"))),
        }
        if empty_layer {
            push_history(&mut state.config, &self.created(), &line, true);
        }
        Ok(log)
    }

    /// `COPY`/`ADD` of context files into one new layer, or the layer a
    /// build of the same inputs made before (see `steps.rs`); returns the
    /// step's log.
    #[allow(clippy::too_many_arguments, reason = "the parts of one instruction")]
    fn copy(
        &self,
        state: &mut Stage,
        ctx: &Ctx<'_>,
        scope: &Scope<'_>,
        flags: &[(String, String)],
        sources: &[Source<'_>],
        dest: &str,
        add: bool,
        word: &dyn Fn(&str) -> Result<String>,
        line: &str,
    ) -> Result<String> {
        let (owner, chmod) = copy_flags(ctx, flags, word)?;
        let mut paths = Vec::with_capacity(sources.len());
        let mut inline = Vec::new();
        for source in sources {
            match source {
                Source::Path(p) => match heredoc_at(ctx, &p.span) {
                    Some(doc) => inline.push(heredoc_file(ctx, doc, scope)?),
                    None => paths.push(word(&p.value)?),
                },
                _ => return Err(ctx.error("a heredoc the front end did not find")),
            }
        }
        if paths.is_empty() && inline.is_empty() {
            return Err(ctx.error("nothing to copy"));
        }
        let dest = word(dest)?;
        let dest_is_dir = dest.ends_with('/') || paths.len() + inline.len() > 1;
        let dest = absolute(&working_dir(&state.config), &dest);
        // What the layer will hold, in the order it is added, each file
        // with its sha256: the cache key is made of it.
        let mut plan = Vec::new();
        for (name, data) in inline {
            let target = if dest_is_dir {
                Path::new(&dest).join(&name)
            } else {
                PathBuf::from(&dest)
            };
            let in_image = target.strip_prefix("/").unwrap_or(&target).to_owned();
            plan.push(Planned::Bytes {
                at: in_image,
                mode: chmod.unwrap_or(0o644),
                data,
            });
        }
        let mut hashes = ctx.hashes.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = 0usize;
        for src in &paths {
            if add && let Some(file) = ctx.fetched.get(src) {
                // As docker: a URL's file is never unpacked.
                let target = match (&file.name, dest_is_dir) {
                    (Some(name), true) => Path::new(&dest).join(name),
                    (None, true) => {
                        return Err(ctx.error(format!(
                            "ADD {src}: the URL names no file; give the destination a file name"
                        )));
                    }
                    (_, false) => PathBuf::from(&dest),
                };
                let meta = std::fs::symlink_metadata(&file.path).map_err(io_at(&file.path))?;
                plan.push(Planned::File {
                    at: target.strip_prefix("/").unwrap_or(&target).to_owned(),
                    mode: chmod.unwrap_or(0o644),
                    host: file.path.clone(),
                    stat: Stat::of(&meta),
                    size: file.size,
                    sha256: file.digest.clone(),
                });
                continue;
            }
            if add && src.contains("://") {
                return Err(ctx.error(format!("ADD {src}: only http and https URLs are fetched")));
            }
            let matches = context_matches(ctx, src)?;
            if matches.is_empty() {
                return Err(ctx.error(format!("{src}: no such file in the context")));
            }
            let several = matches.len() > 1 || dest_is_dir;
            for rel in matches {
                let host = ctx.context.join(&rel);
                let meta = std::fs::symlink_metadata(&host).map_err(io_at(&host))?;
                if add
                    && meta.is_file()
                    && let Some(format) = archive::detect(&host).map_err(io_at(&host))?
                {
                    let sha256 = hashes.sha256(&rel, &host, &meta).map_err(io_at(&host))?;
                    plan.push(Planned::Archive {
                        at: dest.trim_start_matches('/').to_owned(),
                        rel,
                        host,
                        format,
                        stat: Stat::of(&meta),
                        sha256,
                    });
                    continue;
                }
                let name = rel.file_name().map(PathBuf::from).unwrap_or_default();
                let target = if meta.is_dir() || several {
                    let base = PathBuf::from(&dest);
                    if meta.is_dir() {
                        base
                    } else {
                        base.join(&name)
                    }
                } else {
                    PathBuf::from(&dest)
                };
                plan_entry(
                    ctx,
                    &mut hashes,
                    &mut plan,
                    &rel,
                    &target,
                    chmod,
                    &mut entries,
                )?;
            }
        }
        drop(hashes);
        let mut key = StepKey::new(if add { "add" } else { "copy" }, state, self.epoch);
        key.number(owner.0);
        key.number(owner.1);
        key.number(chmod.map_or(u64::MAX, u64::from));
        key.field(dest.as_bytes());
        for p in &plan {
            p.hash_into(&mut key);
        }
        let key = key.finish();
        if let Some(log) = self.take_cached_step(state, ctx, &key, line) {
            return Ok(log);
        }
        let mut w = LayerWriter::new(WriteOptions {
            mtime: self.epoch,
            uid: owner.0,
            gid: owner.1,
            ..WriteOptions::default()
        });
        // Unpacked archives, read when the layer is written.
        let mut unpacked = Vec::new();
        for p in plan {
            match p {
                Planned::Dir(at) => {
                    w.add_dir(&at)?;
                }
                Planned::Symlink(at, target) => {
                    w.add_symlink(&at, target)?;
                }
                Planned::Bytes { at, mode, data } => {
                    w.add_bytes(at, mode, data)?;
                }
                Planned::File {
                    at,
                    mode,
                    host,
                    stat,
                    size,
                    sha256,
                } => {
                    w.add_file(&at, mode, size, Verified::new(host, stat, sha256))?;
                }
                Planned::Archive {
                    at,
                    rel,
                    host,
                    format,
                    stat,
                    ..
                } => {
                    let guard = self.unpack_archive(ctx, &rel, &host, format)?;
                    // The archive read is the one the key hashed.
                    let now = std::fs::symlink_metadata(&host).map_err(io_at(&host))?;
                    if Stat::of(&now) != stat {
                        return Err(ctx.error(format!(
                            "ADD {}: changed while the build read it",
                            rel.display()
                        )));
                    }
                    w.add_tree(guard.path().join("tree"), &at)?;
                    unpacked.push(guard);
                }
            }
        }
        let info = self.finish_layer(state, ctx, w, line)?;
        drop(unpacked);
        self.remember_step(&key, &info)?;
        Ok(String::new())
    }

    /// Unpacks the context's archive `rel` into a fresh directory of the
    /// build's (`tree` inside the returned one).
    fn unpack_archive(
        &self,
        ctx: &Ctx<'_>,
        rel: &Path,
        host: &Path,
        format: archive::Format,
    ) -> Result<tempfile::TempDir> {
        let tmp = self.cache_dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        let guard = tempfile::Builder::new()
            .prefix("add-")
            .tempdir_in(&tmp)
            .map_err(io_at(&tmp))?;
        let name = rel.display();
        let stats = archive::extract(host, format, &guard.path().join("tree"))
            .map_err(|e| ctx.error(format!("ADD {name}: {e}")))?;
        if let Some(w) = stats.whiteouts.first().or(stats.opaque_dirs.first()) {
            return Err(ctx.error(format!(
                "ADD {name}: {}: a `.wh.` entry, which a layer would read as a deletion",
                w.display()
            )));
        }
        Ok(guard)
    }

    /// Streams the layer `w` into the store (a blob the store has is not
    /// written again) and adds it to `state`.
    pub(super) fn finish_layer(
        &self,
        state: &mut Stage,
        ctx: &Ctx<'_>,
        w: LayerWriter<'_>,
        line: &str,
    ) -> Result<LayerInfo> {
        let (info, _) = crate::build::stream_layer(ctx.store, w)?;
        self.add_layer(
            state,
            info.digest.clone(),
            info.size,
            info.diff_id.clone(),
            line,
        );
        Ok(info)
    }

    pub(super) fn created(&self) -> String {
        oci_model::rfc3339(self.epoch)
    }

    /// Writes the config and manifest of the final stage into the store.
    pub(super) fn finish_dockerfile(
        &self,
        spec: &DockerfileSpec,
        mut state: Stage,
        store: &Layout,
        steps: Vec<String>,
    ) -> Result<DockerfileOutput> {
        let created = self.created();
        state.config["created"] = Value::String(created.clone());
        let config =
            serde_json::to_vec(&state.config).map_err(|e| oci_model::Error::MalformedManifest {
                reason: format!("the built config: {e}"),
            })?;
        let types = image::types(state.family);
        let config_digest = store.write_blob(&config)?;
        let config_desc = Descriptor {
            media_type: types.config.to_owned(),
            digest: config_digest.clone(),
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
        let annotations =
            BTreeMap::from([("org.opencontainers.image.created".to_owned(), created)]);
        let manifest = image::manifest_bytes(state.family, &config_desc, layers, &annotations);
        let manifest_digest = store.write_blob(&manifest)?;
        let store_tag = crate::build::store_tag(&spec.name);
        store.add_manifest(
            &Descriptor {
                media_type: types.manifest.to_owned(),
                digest: manifest_digest.clone(),
                size: manifest.len() as u64,
                platform: None,
            },
            Some(&store_tag),
        )?;
        let resolved = Resolved {
            reference: spec.name.with_digest(manifest_digest.clone()),
            manifest: Manifest::from_bytes(manifest, Some(types.manifest))?,
            index: None,
        };
        let mut image = SourceImage::with_config(store.clone(), resolved, config)?;
        if let Some((reference, digests)) = state.mount_from {
            image = image.with_mount_source(reference, digests);
        }
        Ok(DockerfileOutput {
            image,
            store: store.root().to_owned(),
            store_tag,
            reference: spec.name.clone(),
            manifest_digest,
            config_digest,
            added_layers: state.added,
            steps,
        })
    }
}

/// The owner (`--chown`, resolved before) and mode (`--chmod`, octal) of a
/// `COPY`'s entries; any other flag but `--from` is an error.
pub(super) fn copy_flags(
    ctx: &Ctx<'_>,
    flags: &[(String, String)],
    word: &dyn Fn(&str) -> Result<String>,
) -> Result<((u64, u64), Option<u32>)> {
    let mut owner = (0u64, 0u64);
    let mut chmod = None;
    for (name, value) in flags {
        let value = word(value)?;
        match name.as_str() {
            "chown" => {
                let (uid, gid) = ctx
                    .owner
                    .ok_or_else(|| ctx.error(format!("--chown={value}: not resolved")))?;
                owner = (u64::from(uid), u64::from(gid));
            }
            "chmod" => {
                chmod = Some(
                    u32::from_str_radix(&value, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| ctx.error(format!("--chmod={value}: not an octal mode")))?,
                )
            }
            "from" => {}
            "checksum" => return Err(ctx.error("--checksum: only ADD of a URL takes it")),
            other => return Err(ctx.error(format!("--{other} is not supported yet"))),
        }
    }
    Ok((owner, chmod))
}

/// `--name=value` flags as pairs.
pub(super) fn scope_args(
    flags: &[dockerfile_syntax::parse_dockerfile::Flag<'_>],
) -> Vec<(String, String)> {
    flags
        .iter()
        .map(|f| {
            (
                f.name.value.to_string(),
                f.value
                    .as_ref()
                    .map(|v| v.value.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// `KEY=VALUE ...` pairs of `ENV` and `LABEL`, or the legacy `KEY VALUE`.
fn pairs(
    raw: &str,
    words: &dyn Fn(&str) -> Result<Vec<String>>,
    word: &dyn Fn(&str) -> Result<String>,
    ctx: &Ctx<'_>,
) -> Result<Vec<(String, String)>> {
    let all = words(raw)?;
    let Some(first) = all.first() else {
        return Err(ctx.error("needs KEY=VALUE"));
    };
    if !first.contains('=') {
        // The legacy form: the first word is the key, the rest the value.
        let trimmed = raw.trim_start();
        let split = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        let key = trimmed[..split].to_owned();
        let value = word(trimmed[split..].trim())?;
        return Ok(vec![(key, value)]);
    }
    all.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(ctx.error(format!("{w:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// The image config's `config` object, made if missing.
fn run_config(config: &mut Value) -> &mut Map<String, Value> {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    config["config"]
        .as_object_mut()
        .expect("just made an object")
}

/// The environment of the config as pairs.
pub(super) fn env_pairs(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str()?.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn set_env(config: &mut Value, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    let env = run_config(config).entry("Env").or_insert_with(|| json!([]));
    if !env.is_array() {
        *env = json!([]);
    }
    let list = env.as_array_mut().expect("an array");
    match list.iter().position(|e| {
        e.as_str()
            .and_then(|e| e.split_once('='))
            .is_some_and(|(k, _)| k == key)
    }) {
        Some(i) => list[i] = Value::String(entry),
        None => list.push(Value::String(entry)),
    }
}

fn insert_set(config: &mut Value, field: &str, key: String) {
    let set = run_config(config).entry(field).or_insert_with(|| json!({}));
    if !set.is_object() {
        *set = json!({});
    }
    set.as_object_mut().map(|s| s.insert(key, json!({})));
}

/// The stage's working directory (`/` when unset).
pub(super) fn working_dir_of(config: &Value) -> String {
    working_dir(config)
}

fn working_dir(config: &Value) -> String {
    config["config"]["WorkingDir"]
        .as_str()
        .filter(|d| !d.is_empty())
        .unwrap_or("/")
        .to_owned()
}

/// `path` made absolute against `cwd`, `.` and `..` resolved lexically (a
/// `..` at the root stays at the root, as in a container).
pub(super) fn absolute(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(cwd).join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if path.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

/// The command of a `CMD` or `ENTRYPOINT`: the exec form as written, the
/// shell form through the stage's `SHELL` (default `/bin/sh -c`).
pub(super) fn command_line(c: &Command<'_>, config: &Value) -> Vec<String> {
    match c {
        Command::Exec(e) => e.value.iter().map(|s| s.value.to_string()).collect(),
        Command::Shell(s) => {
            let mut shell: Vec<String> = config["config"]["Shell"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .filter(|v: &Vec<String>| !v.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            shell.push(s.value.to_owned());
            shell
        }
        _ => Vec::new(),
    }
}

pub(super) fn push_history(config: &mut Value, created: &str, line: &str, empty: bool) {
    if !config["history"].is_array() {
        config["history"] = json!([]);
    }
    let mut entry = json!({"created": created, "created_by": line, "comment": "hoist"});
    if empty {
        entry["empty_layer"] = Value::Bool(true);
    }
    if let Some(h) = config["history"].as_array_mut() {
        h.push(entry);
    }
}

/// The heredoc whose marker is the source word at `span`, if any.
pub(super) fn heredoc_at<'a>(ctx: &Ctx<'a>, span: &std::ops::Range<usize>) -> Option<&'a Heredoc> {
    ctx.heredocs.iter().find(|d| span.contains(&d.marker))
}

/// A `COPY`/`ADD` heredoc as the file it makes: its name and contents,
/// tabs chomped for `<<-`, expanded as `BuildKit` does when its delimiter
/// was unquoted.
fn heredoc_file(ctx: &Ctx<'_>, doc: &Heredoc, scope: &Scope<'_>) -> Result<(String, Vec<u8>)> {
    if doc.name.contains('/') || doc.name == "." || doc.name == ".." {
        return Err(ctx.error(format!("heredoc {:?}: not a file name", doc.name)));
    }
    let data = doc.data();
    let data = if doc.expand {
        expand::process_heredoc(&data, scope).map_err(|e| ctx.error(e.to_string()))?
    } else {
        data
    };
    Ok((doc.name.clone(), data.into_bytes()))
}

/// The context paths (relative, `/`-separated) a `COPY` source names:
/// the path itself, or every entry its glob matches. A source that climbs
/// out of the context is an error.
fn context_matches(ctx: &Ctx<'_>, src: &str) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<&str> = Vec::new();
    for part in src.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ctx.error(format!("{src}: outside the build context")));
                }
            }
            p => parts.push(p),
        }
    }
    let is_glob = |p: &str| p.contains(['*', '?', '[']);
    // No component but the last may be a link: its target is outside the
    // context's control (`link -> /etc`).
    let through_link = |rel: &Path| {
        let mut here = ctx.context.to_path_buf();
        let n = rel.iter().count();
        rel.iter().take(n.saturating_sub(1)).any(|part| {
            here.push(part);
            std::fs::symlink_metadata(&here).is_ok_and(|m| !m.is_dir())
        })
    };
    if !parts.iter().any(|p| is_glob(p)) {
        let rel: PathBuf = parts.iter().collect();
        if through_link(&rel) {
            return Err(ctx.error(format!(
                "{src}: goes through a link; copy the link's target instead"
            )));
        }
        let host = ctx.context.join(&rel);
        let rel_text = parts.join("/");
        return Ok(match std::fs::symlink_metadata(&host) {
            Ok(_) if rel_text.is_empty() || !ctx.ignore.excludes(&rel_text) => vec![rel],
            _ => Vec::new(),
        });
    }
    // Globs match one level each, from the context's root, descending only
    // into real directories.
    let mut found = vec![PathBuf::new()];
    for part in parts {
        let mut next = Vec::new();
        for dir in &found {
            let real_dir = dir.as_os_str().is_empty()
                || std::fs::symlink_metadata(ctx.context.join(dir)).is_ok_and(|m| m.is_dir());
            if !real_dir {
                continue;
            }
            if !is_glob(part) {
                let p = dir.join(part);
                if std::fs::symlink_metadata(ctx.context.join(&p)).is_ok() {
                    next.push(p);
                }
                continue;
            }
            let host = ctx.context.join(dir);
            let Ok(entries) = std::fs::read_dir(&host) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if glob(part, &name) {
                    next.push(dir.join(name));
                }
            }
        }
        found = next;
    }
    found.retain(|p| !ctx.ignore.excludes(&p.to_string_lossy()));
    found.sort();
    Ok(found)
}

/// `*`, `?` and `[...]` matching of one path component.
pub(super) fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('!' | '^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let Some(c) = n.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some(ch) => n.first() == Some(ch) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// One entry of a `COPY`/`ADD` layer, planned before the layer is
/// written.
enum Planned {
    Dir(PathBuf),
    Symlink(PathBuf, PathBuf),
    /// A heredoc's file.
    Bytes {
        at: PathBuf,
        mode: u32,
        data: Vec<u8>,
    },
    File {
        at: PathBuf,
        mode: u32,
        host: PathBuf,
        stat: Stat,
        size: u64,
        sha256: Digest,
    },
    /// A local archive `ADD` unpacks at `at`.
    Archive {
        at: String,
        rel: PathBuf,
        host: PathBuf,
        format: archive::Format,
        stat: Stat,
        sha256: Digest,
    },
}

impl Planned {
    /// Adds what decides this entry's part of the layer to `key`.
    fn hash_into(&self, key: &mut StepKey) {
        use std::os::unix::ffi::OsStrExt;
        match self {
            Planned::Dir(at) => {
                key.field(b"dir");
                key.field(at.as_os_str().as_bytes());
            }
            Planned::Symlink(at, target) => {
                key.field(b"symlink");
                key.field(at.as_os_str().as_bytes());
                key.field(target.as_os_str().as_bytes());
            }
            Planned::Bytes { at, mode, data } => {
                key.field(b"bytes");
                key.field(at.as_os_str().as_bytes());
                key.number(u64::from(*mode));
                key.field(data);
            }
            Planned::File {
                at,
                mode,
                size,
                sha256,
                ..
            } => {
                key.field(b"file");
                key.field(at.as_os_str().as_bytes());
                key.number(u64::from(*mode));
                key.number(*size);
                key.field(sha256.as_str().as_bytes());
            }
            Planned::Archive { at, sha256, .. } => {
                key.field(b"archive");
                key.field(at.as_bytes());
                key.field(sha256.as_str().as_bytes());
            }
        }
    }
}

/// Plans the context entry `rel` at `target` in the image: a file (its
/// sha256 from `hashes`), a link (kept as a link), or a directory's
/// contents, each directory's entries in name order; `.dockerignore`d
/// entries are left out.
fn plan_entry(
    ctx: &Ctx<'_>,
    hashes: &mut ContentHashes,
    plan: &mut Vec<Planned>,
    rel: &Path,
    target: &Path,
    chmod: Option<u32>,
    entries: &mut usize,
) -> Result<()> {
    let mut stack = vec![(rel.to_owned(), target.to_owned())];
    while let Some((rel, target)) = stack.pop() {
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return Err(ctx.error(format!("more than {MAX_ENTRIES} entries to copy")));
        }
        let host = ctx.context.join(&rel);
        let meta = std::fs::symlink_metadata(&host).map_err(io_at(&host))?;
        let in_image = target.strip_prefix("/").unwrap_or(&target).to_owned();
        let kind = meta.file_type();
        if kind.is_dir() {
            if !in_image.as_os_str().is_empty() {
                plan.push(Planned::Dir(in_image));
            }
            let mut children = Vec::new();
            for e in std::fs::read_dir(&host).map_err(io_at(&host))? {
                let e = e.map_err(io_at(&host))?;
                let child = rel.join(e.file_name());
                let text = child.to_string_lossy();
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                if ctx.ignore.excludes(&text) && !(is_dir && ctx.ignore.may_include_below(&text)) {
                    continue;
                }
                children.push(e.file_name());
            }
            // Reversed onto the stack: taken off in name order.
            children.sort_unstable_by(|a, b| b.cmp(a));
            for name in children {
                stack.push((rel.join(&name), target.join(&name)));
            }
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&host).map_err(io_at(&host))?;
            plan.push(Planned::Symlink(in_image, link));
        } else if kind.is_file() {
            let sha256 = hashes.sha256(&rel, &host, &meta).map_err(io_at(&host))?;
            plan.push(Planned::File {
                at: in_image,
                mode: chmod.unwrap_or(meta.mode() & 0o7777),
                host,
                stat: Stat::of(&meta),
                size: meta.len(),
                sha256,
            });
        } else {
            return Err(ctx.error(format!("{}: not a file, directory or link", rel.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_working_directory() {
        assert_eq!(absolute("/", "app"), "/app");
        assert_eq!(absolute("/srv", "app/"), "/srv/app/");
        assert_eq!(absolute("/srv", "/opt/x"), "/opt/x");
        assert_eq!(absolute("/srv", "../../.."), "/");
        assert_eq!(absolute("/a/b", "./c/../d"), "/a/b/d");
    }

    #[test]
    fn globs_match_one_component() {
        assert!(glob("*.py", "app.py"));
        assert!(!glob("*.py", "app.pyc"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[!a-c]x", "bx"));
        assert!(glob("*", ""));
    }
}
