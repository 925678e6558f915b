//! The cache of `COPY`/`ADD` steps: a key of everything that decides the
//! step's layer, and an entry per key naming the layer in the build store
//! (`dockerfile-copy/steps/KEY.json`, written atomically). A missing or
//! unreadable entry, or one whose blob the store lost, is a miss: the step
//! is built again.

use oci_layer::LayerInfo;
use oci_model::{Descriptor, Digest, Digester};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Ctx, Stage};
use crate::image;
use crate::{Builder, Result, io_at};

/// Version of the entries and of their key's recipe.
const FORMAT: &str = "hoist-dockerfile-copy-v1";

/// A step's cache key being made: every field length-prefixed, so that no
/// two different sequences of fields hash alike.
pub(super) struct StepKey(Digester);

impl StepKey {
    /// A key of a `kind` step on `state`: the stage's layers so far (as a
    /// `RUN`'s key has them) and the build's epoch (every entry's mtime).
    pub(super) fn new(kind: &str, state: &Stage, epoch: u64) -> Self {
        let mut key = Self(Digester::new());
        key.field(FORMAT.as_bytes());
        key.field(kind.as_bytes());
        key.number(epoch);
        key.layers(state);
        key
    }

    /// The layers of `stage` (their diff-ids, which name their contents).
    pub(super) fn layers(&mut self, stage: &Stage) {
        self.number(stage.layers.len() as u64);
        for (_, diff_id) in &stage.layers {
            self.field(diff_id.as_str().as_bytes());
        }
    }

    pub(super) fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    pub(super) fn number(&mut self, n: u64) {
        self.field(&n.to_le_bytes());
    }

    pub(super) fn finish(self) -> String {
        self.0.finish().hex().to_owned()
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: String,
    digest: Digest,
    size: u64,
    diff_id: Digest,
}

impl Builder {
    /// The layer cached under `key`, when its entry is sound and the store
    /// still has its blob.
    fn cached_step(&self, ctx: &Ctx<'_>, key: &str) -> Option<Entry> {
        let path = self.step_entry(key);
        let bytes = std::fs::read(path).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.format == FORMAT && ctx.store.has_blob(&entry.digest, Some(entry.size)))
            .then_some(entry)
    }

    fn step_entry(&self, key: &str) -> std::path::PathBuf {
        self.cache_dir
            .join("dockerfile-copy")
            .join("steps")
            .join(format!("{key}.json"))
    }

    /// Adds the layer cached under `key` to `state`, if there is one;
    /// returns the step's log line.
    pub(super) fn take_cached_step(
        &self,
        state: &mut Stage,
        ctx: &Ctx<'_>,
        key: &str,
        line: &str,
    ) -> Option<String> {
        let entry = self.cached_step(ctx, key)?;
        self.add_layer(state, entry.digest, entry.size, entry.diff_id, line);
        Some(format!("(cached {})\n", &key[..12]))
    }

    /// Records `layer` as the one of the step `key`.
    pub(super) fn remember_step(&self, key: &str, layer: &LayerInfo) -> Result<()> {
        let path = self.step_entry(key);
        let entry = Entry {
            format: FORMAT.to_owned(),
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        }
        crate::write_atomic(
            &path,
            &serde_json::to_vec(&entry).expect("an entry serializes"),
        )
    }

    /// Adds a layer of the store to `state`: its descriptor, diff-id and
    /// history entry.
    pub(super) fn add_layer(
        &self,
        state: &mut Stage,
        digest: Digest,
        size: u64,
        diff_id: Digest,
        line: &str,
    ) {
        let types = image::types(state.family);
        state.layers.push((
            Descriptor {
                media_type: types.layer.to_owned(),
                digest: digest.clone(),
                size,
                platform: None,
            },
            diff_id.clone(),
        ));
        state.added.push(digest);
        if let Some(ids) = state.config["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(Value::String(diff_id.to_string()));
        }
        super::apply::push_history(&mut state.config, &self.created(), line, false);
    }
}
