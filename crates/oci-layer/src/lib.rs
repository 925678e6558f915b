//! OCI image layers: safe reading and reproducible writing.
//!
//! [`unpack`] streams a (compressed) layer tar into a fresh directory and
//! refuses every entry that would land outside it: names whose `..` climb
//! above the root, writes through symlinks, symlinks climbing out of the
//! root, hard links to anything but a regular file already unpacked.
//! Entry names are read as containerd reads them ([`entry_path`]): `/x`,
//! `./x` and `x` are the same path. Whiteouts are reported, not applied,
//! and the diff-id is computed on the way.
//!
//! [`LayerWriter`] writes a layer reproducibly: sorted entries, fixed
//! mtimes and owners, normalised modes, deterministic gzip or zstd, and the
//! digest, size and diff-id computed in one streaming pass.
//!
//! ```
//! use oci_layer::{Compression, LayerWriter, UnpackOptions, WriteOptions};
//!
//! let mut writer = LayerWriter::new(WriteOptions::default());
//! writer.add_bytes("app/main.py", 0o644, b"print('hi')\n".to_vec())?;
//! let mut blob = Vec::new();
//! let info = writer.finish(&mut blob)?;
//!
//! let dir = tempfile::tempdir()?;
//! let dest = dir.path().join("rootfs");
//! let stats = oci_layer::unpack(&blob[..], Compression::Gzip, &dest, &UnpackOptions::default())?;
//! assert_eq!(stats.diff_id, info.diff_id);
//! assert_eq!(std::fs::read(dest.join("app/main.py"))?, b"print('hi')\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod compression;
mod names;
mod unpack;
mod write;

use std::path::PathBuf;

pub use compression::Compression;
pub use names::entry_path;
pub use unpack::{UnpackOptions, UnpackStats, remove_tree, unpack};
pub use write::{LayerInfo, LayerWriter, WriteOptions};

/// Everything that can go wrong in this crate. Entry names are the names
/// written in the tar, so a refusal can be traced back to the layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The unpack destination is already there.
    #[error("{}: destination already exists", .path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// An entry name or hard-link target whose `..` components climb above
    /// the layer root, once resolved lexically (`a/../b` is fine).
    #[error("entry `{}`: path `{}` climbs out of the layer root", .entry.display(), .path.display())]
    ParentTraversal {
        /// The entry.
        entry: PathBuf,
        /// The offending path (the entry name or its hard-link target).
        path: PathBuf,
    },
    /// An entry whose parent directory is a symlink: writing through it
    /// could land anywhere.
    #[error("entry `{}`: parent `{}` is a symlink, refusing to write through it", .entry.display(), .parent.display())]
    SymlinkedParent {
        /// The entry.
        entry: PathBuf,
        /// The parent that is a symlink.
        parent: PathBuf,
    },
    /// An entry whose parent is a file or something else not a directory.
    #[error("entry `{}`: parent `{}` is not a directory", .entry.display(), .parent.display())]
    ParentNotDirectory {
        /// The entry.
        entry: PathBuf,
        /// The parent.
        parent: PathBuf,
    },
    /// A symlink whose relative target climbs out of the layer root.
    #[error("entry `{}`: symlink target `{}` climbs out of the layer root", .entry.display(), .target.display())]
    SymlinkEscape {
        /// The symlink entry.
        entry: PathBuf,
        /// Its target.
        target: PathBuf,
    },
    /// A hard link whose target is not a regular file unpacked earlier.
    #[error("entry `{}`: hard link target `{}` {reason}", .entry.display(), .target.display())]
    InvalidHardLink {
        /// The hard-link entry.
        entry: PathBuf,
        /// Its target.
        target: PathBuf,
        /// Why the target is refused.
        reason: &'static str,
    },
    /// An entry this crate does not unpack (sparse files, volume labels).
    #[error("entry `{}`: unsupported entry type `{kind}`", .entry.display())]
    UnsupportedEntry {
        /// The entry.
        entry: PathBuf,
        /// The tar type flag.
        kind: char,
    },
    /// A tar entry that is well-formed tar but not acceptable in a layer.
    #[error("entry `{}`: {reason}", .entry.display())]
    InvalidEntry {
        /// The entry.
        entry: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More entries than [`UnpackOptions::max_entries`].
    #[error("layer has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// More payload than [`UnpackOptions::max_total_bytes`].
    #[error("entry `{}`: layer payload exceeds the {limit}-byte limit", .entry.display())]
    TooManyBytes {
        /// The entry that went over.
        entry: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The layer stream is not a readable (compressed) tar.
    #[error("corrupt or truncated layer stream: {source}")]
    CorruptStream {
        /// The decoder's or tar parser's error.
        source: std::io::Error,
    },
    /// A path given to [`LayerWriter`] that cannot be a layer entry.
    #[error("invalid path in layer `{}`: {reason}", .path.display())]
    InvalidLayerPath {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two [`LayerWriter`] entries that cannot both exist, such as a file
    /// used as a parent directory.
    #[error("path in layer `{}` conflicts with `{}`", .path.display(), .existing.display())]
    PathConflict {
        /// The path being added.
        path: PathBuf,
        /// The entry already there.
        existing: PathBuf,
    },
    /// A file whose size changed between being added and being written,
    /// or a reader that gave a different number of bytes than announced.
    #[error("{}: expected {expected} bytes, read {actual}", .path.display())]
    SizeMismatch {
        /// The path in the layer.
        path: PathBuf,
        /// The size announced.
        expected: u64,
        /// The bytes read before the mismatch showed.
        actual: u64,
    },
    /// A host file type that cannot go in a layer (socket, device, FIFO).
    #[error("{}: unsupported file type for a layer", .path.display())]
    UnsupportedHostFile {
        /// The host path.
        path: PathBuf,
    },
    /// A file system error on `path`.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing the layer to its output failed.
    #[error("writing the layer: {source}")]
    Output {
        /// The error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error to [`Error::Io`] naming `path`.
fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
