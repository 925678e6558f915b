//! `COPY --from=STAGE|IMAGE`: files of an earlier stage (or of an image)
//! through the merged view of its unpacked layers (`union.rs`).

use std::path::{Path, PathBuf};

use dockerfile_syntax::parse_dockerfile::{CopyInstruction, Source};
use oci_layer::{LayerWriter, WriteOptions};

use super::apply::{absolute, copy_flags, glob, scope_args, working_dir_of};
use super::steps::StepKey;
use super::union::{Entry, Union};
use super::{Ctx, Scope, Stage};
use crate::{Builder, Result, io_at};
use dockerfile_syntax::expand;

/// The most entries one `COPY --from` copies.
const MAX_ENTRIES: usize = 1 << 20;

impl Builder {
    /// Copies what `copy` names from `source` into a new layer of `state`
    /// (or takes the layer a build of the same inputs made); returns the
    /// step's log.
    pub(super) async fn copy_from_step(
        &self,
        state: &mut Stage,
        source: &Stage,
        ctx: &Ctx<'_>,
        copy: &CopyInstruction<'_>,
        line: &str,
    ) -> Result<String> {
        let args = state.args.clone();
        let scope = Scope {
            args: &args,
            env: super::apply::env_pairs(&state.config),
        };
        let word = |raw: &str| {
            expand::process_word(raw, &scope, ctx.escape).map_err(|e| ctx.error(e.to_string()))
        };
        let (owner, chmod) = copy_flags(ctx, &scope_args(&copy.options), &word)?;
        let mut paths = Vec::with_capacity(copy.src.len());
        for s in &copy.src {
            match s {
                Source::Path(p) if super::apply::heredoc_at(ctx, &p.span).is_none() => {
                    paths.push(word(&p.value)?)
                }
                _ => return Err(ctx.error("COPY --from copies files of a stage, not heredocs")),
            }
        }
        let dest = word(&copy.dest.value)?;
        let dest_is_dir = dest.ends_with('/') || paths.len() > 1;
        let dest = absolute(&working_dir_of(&state.config), &dest);
        // The source stage's layers name every file it can copy.
        let mut key = StepKey::new("copy-from", state, self.epoch);
        key.layers(source);
        key.number(owner.0);
        key.number(owner.1);
        key.number(chmod.map_or(u64::MAX, u64::from));
        key.field(dest.as_bytes());
        key.number(u64::from(dest_is_dir));
        for p in &paths {
            key.field(p.as_bytes());
        }
        let key = key.finish();
        if let Some(log) = self.take_cached_step(state, ctx, &key, line) {
            return Ok(log);
        }
        let image = self.materialize(source, ctx).await?;
        let union = Union::new(image.lower_dirs());
        let mut w = LayerWriter::new(WriteOptions {
            mtime: self.epoch,
            uid: owner.0,
            gid: owner.1,
            ..WriteOptions::default()
        });
        let mut entries = 0usize;
        for src in &paths {
            let rel = absolute("/", src);
            let rel = rel.trim_start_matches('/');
            let matches = if rel.split('/').any(is_pattern) {
                let found = stage_matches(&union, rel);
                if found.is_empty() {
                    return Err(
                        ctx.error(format!("{src}: nothing in the stage matches the pattern"))
                    );
                }
                found
            } else {
                let rel = PathBuf::from(rel);
                let Some(entry) = union.lookup(&rel) else {
                    return Err(ctx.error(format!("{src}: no such file in the stage")));
                };
                vec![(rel, entry)]
            };
            let several = matches.len() > 1 || dest_is_dir;
            for (rel, entry) in matches {
                let target = match (&entry, several) {
                    (Entry::Dir, _) => PathBuf::from(&dest),
                    (_, true) => Path::new(&dest).join(rel.file_name().unwrap_or_default()),
                    (_, false) => PathBuf::from(&dest),
                };
                add(
                    ctx,
                    &union,
                    &mut w,
                    &rel,
                    entry,
                    &target,
                    chmod,
                    &mut entries,
                )?;
            }
        }
        let info = self.finish_layer(state, ctx, w, line);
        drop(image);
        self.remember_step(&key, &info?)?;
        Ok(String::new())
    }
}

/// Whether a path component is a pattern (`*`, `?`, `[...]`).
fn is_pattern(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// The merged entries the pattern `rel` (relative, `/`-separated, `.` and
/// `..` resolved) matches, one component at a time from the stage's root,
/// in path order. Only real directories are descended into: a link on the
/// way is never followed, so nothing outside the stage's root is reached.
fn stage_matches(union: &Union, rel: &str) -> Vec<(PathBuf, Entry)> {
    let mut found = vec![(PathBuf::new(), Entry::Dir)];
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for (dir, entry) in &found {
            if *entry != Entry::Dir {
                continue;
            }
            if !is_pattern(part) {
                let p = dir.join(part);
                if let Some(e) = union.lookup(&p) {
                    next.push((p, e));
                }
                continue;
            }
            for (name, child) in union.read_dir(dir) {
                if glob(part, &name) {
                    next.push((dir.join(name), child));
                }
            }
        }
        found = next;
    }
    found
}

impl Builder {
    /// Makes the stage's working directory, as Docker does, when the
    /// stage's files lack it: one layer holding the directory (and its
    /// missing parents, 0755 root). A file in its place is an error.
    pub(super) async fn make_workdir(
        &self,
        state: &mut Stage,
        ctx: &Ctx<'_>,
        line: &str,
    ) -> Result<()> {
        let dir = working_dir_of(&state.config);
        let rel = PathBuf::from(dir.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        let image = self.materialize(state, ctx).await?;
        let found = Union::new(image.lower_dirs()).lookup(&rel);
        drop(image);
        match found {
            Some(Entry::Dir) => Ok(()),
            Some(_) => Err(ctx.error(format!("WORKDIR {dir}: not a directory in the image"))),
            None => {
                let mut w = LayerWriter::new(WriteOptions {
                    mtime: self.epoch,
                    ..WriteOptions::default()
                });
                w.add_dir(&rel)?;
                self.finish_layer(state, ctx, w, line)?;
                // The WORKDIR's history entry was written as an empty
                // layer; it has one now.
                if let Some(history) = state.config["history"].as_array_mut() {
                    let n = history.len();
                    if n >= 2 {
                        history.remove(n - 2);
                    }
                }
                Ok(())
            }
        }
    }
}

/// Adds the merged `entry` at `rel` as `target`, directories with their
/// merged contents.
#[allow(clippy::too_many_arguments, reason = "one walk's state")]
fn add(
    ctx: &Ctx<'_>,
    union: &Union,
    w: &mut LayerWriter<'_>,
    rel: &Path,
    entry: Entry,
    target: &Path,
    chmod: Option<u32>,
    entries: &mut usize,
) -> Result<()> {
    let mut stack = vec![(rel.to_owned(), entry, target.to_owned())];
    while let Some((rel, entry, target)) = stack.pop() {
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return Err(ctx.error(format!("more than {MAX_ENTRIES} entries to copy")));
        }
        let in_image = target.strip_prefix("/").unwrap_or(&target).to_owned();
        match entry {
            Entry::Dir => {
                if !in_image.as_os_str().is_empty() {
                    w.add_dir(&in_image)?;
                }
                for (name, child) in union.read_dir(&rel) {
                    stack.push((rel.join(&name), child, target.join(&name)));
                }
            }
            Entry::Symlink(host) => {
                let link = std::fs::read_link(&host).map_err(io_at(&host))?;
                w.add_symlink(&in_image, link)?;
            }
            Entry::File(host) => {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::symlink_metadata(&host).map_err(io_at(&host))?;
                let mode = chmod.unwrap_or(meta.mode() & 0o7777);
                let file = std::fs::File::open(&host).map_err(io_at(&host))?;
                w.add_file(&in_image, mode, meta.len(), file)?;
            }
        }
    }
    Ok(())
}
