//! Unpacking a layer blob into a directory overlayfs can use as a lower
//! layer: whiteouts become 0/0 character devices and opaque directories
//! get the `trusted.overlay.opaque` attribute, as the kernel expects.

use std::fs::{self, DirBuilder, File};
use std::io::{self, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use oci_layer::{Compression, UnpackOptions, UnpackStats};
use oci_model::Digest;
use serde::{Deserialize, Serialize};

use crate::disk::{self, Paths, Tally, TempPath};
use crate::{Error, Result, io_at};

/// The attribute overlayfs reads to hide a lower directory's contents.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The completion marker of an unpacked layer, written beside its
/// directory (`<diff-id hex>.json`) only once the directory is complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerMarker {
    /// The layer's diff-id, which names its directory.
    pub(crate) diff_id: Digest,
    /// The blob it was unpacked from.
    pub(crate) blob: Digest,
    /// What the directory held when it was complete.
    pub(crate) tally: Tally,
}

/// Unpacks the layer blob at `blob_path` under `tmp/`, checks its diff-id,
/// converts its whiteouts, and moves it to its place with a completion
/// marker. On any error nothing is left but `tmp/` debris that is removed
/// on the way out.
pub(crate) fn unpack_layer(
    paths: &Paths,
    blob_path: &Path,
    blob: &Digest,
    compression: Compression,
    diff_id: &Digest,
    opts: &UnpackOptions,
) -> Result<LayerMarker> {
    let work = TempPath::new(paths.tmp_path("layer"));
    disk::make_dir(work.path())?;
    let rootfs = work.path().join("rootfs");
    let file = File::open(blob_path).map_err(io_at(blob_path))?;
    let reader = BufReader::with_capacity(256 << 10, file);
    let stats =
        oci_layer::unpack(reader, compression, &rootfs, opts).map_err(|source| Error::Unpack {
            layer: blob.clone(),
            source,
        })?;
    if &stats.diff_id != diff_id {
        return Err(Error::DiffIdMismatch {
            layer: blob.clone(),
            expected: diff_id.clone(),
            actual: stats.diff_id,
        });
    }
    to_overlay(&rootfs, &stats, blob)?;
    let tally = disk::tally(&rootfs)?;
    let marker = LayerMarker {
        diff_id: diff_id.clone(),
        blob: blob.clone(),
        tally,
    };
    let dest = paths.layer_dir(diff_id);
    // A directory without a marker is a leftover of a corrupt or
    // interrupted entry: move it aside rather than merge into it.
    if let Some(old) = paths.retire(&dest)? {
        disk::remove_tree(&old);
    }
    fs::rename(&rootfs, &dest).map_err(io_at(&dest))?;
    let json = serde_json::to_vec(&marker).expect("a marker serializes");
    let marker_path = paths.layer_marker(diff_id);
    oci_model::write_atomic(&marker_path, &json).map_err(io_at(&marker_path))?;
    Ok(marker)
}

/// Applies the layer's whiteouts in overlayfs form.
fn to_overlay(root: &Path, stats: &UnpackStats, layer: &Digest) -> Result<()> {
    for rel in &stats.whiteouts {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue;
        };
        let dir = real_dir(root, parent, rel, layer)?;
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            // The layer itself has an entry of that name: it hides the
            // lower one already.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(path)(e)),
        }
        mknod(&path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| io_at(&path)(io::Error::from(e)))?;
    }
    for rel in &stats.opaque_dirs {
        let dir = real_dir(root, rel, rel, layer)?;
        xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(io_at(&dir))?;
    }
    Ok(())
}

/// `root/rel` as a real directory, creating missing parts: never through
/// a symlink, which could point anywhere on the host.
fn real_dir(root: &Path, rel: &Path, entry: &Path, layer: &Digest) -> Result<PathBuf> {
    let hostile = |reason| Error::HostileLayer {
        layer: layer.clone(),
        entry: entry.to_owned(),
        reason,
    };
    let mut host = root.to_owned();
    for part in rel.components() {
        let Component::Normal(part) = part else {
            return Err(hostile("path is not a plain relative path"));
        };
        host.push(part);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(hostile("a parent directory is a symlink"));
            }
            Ok(_) => return Err(hostile("a parent is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
                .mode(0o755)
                .create(&host)
                .map_err(io_at(&host))?,
            Err(e) => return Err(io_at(host)(e)),
        }
    }
    Ok(host)
}

/// Whether `path` is an overlayfs whiteout (a 0/0 character device).
#[cfg(test)]
pub(crate) fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}
