//! The on-disk layout: paths, the version file, atomic writes, temporary
//! entries that clean up after themselves, and tree walks.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use oci_model::Digest;
use serde::{Deserialize, Serialize};

use crate::{Error, LAYOUT_VERSION, Result, io_at};

/// The paths of one cache root, and its lock.
#[derive(Debug)]
pub(crate) struct Paths {
    root: PathBuf,
    base: PathBuf,
    next_tmp: AtomicU64,
    /// An exclusive `flock` on `ROOT/lock` while the cache is open: a
    /// second process would empty `tmp/` under the first one's writes, and
    /// would download what the first is downloading.
    _lock: Flock<File>,
}

impl Paths {
    /// Creates the layout under `root` if needed and checks its version.
    pub(crate) fn open(root: &Path, lock_timeout: std::time::Duration) -> Result<Self> {
        fs::create_dir_all(root).map_err(io_at(root))?;
        let lock_path = root.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        // One process at a time: another one waits its turn (polling, so
        // that the wait can end).
        let started = std::time::Instant::now();
        let mut file = lock_file;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((f, Errno::EWOULDBLOCK)) => {
                    if started.elapsed() >= lock_timeout {
                        return Err(Error::Locked {
                            root: root.to_owned(),
                            waited: started.elapsed(),
                        });
                    }
                    file = f;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((_, errno)) => return Err(io_at(lock_path)(errno.into())),
            }
        };
        let version_file = root.join("VERSION");
        match fs::read_to_string(&version_file) {
            Ok(text) => {
                if text.trim() != LAYOUT_VERSION.to_string() {
                    return Err(Error::UnsupportedVersion {
                        root: root.to_owned(),
                        found: text.trim().chars().take(40).collect(),
                        supported: LAYOUT_VERSION,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(version_file)(e)),
        }
        let paths = Self {
            root: root.to_owned(),
            base: root.join(format!("v{LAYOUT_VERSION}")),
            next_tmp: AtomicU64::new(0),
            _lock: lock,
        };
        for dir in [
            paths.tmp_dir(),
            paths.base.join("blobs/sha256"),
            paths.base.join("layers/sha256"),
            paths.base.join("images/sha256"),
            paths.pins_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        if !version_file.exists() {
            // Written last and synced: a root with a version file has the
            // whole layout.
            oci_model::write_atomic(&version_file, format!("{LAYOUT_VERSION}\n").as_bytes())
                .map_err(io_at(&version_file))?;
        }
        Ok(paths)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.base.join("tmp")
    }

    /// A fresh name under `tmp/`, unique within this process; `tmp/` is
    /// emptied at open, so names never collide with a crashed run's.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir().join(format!("{what}-{n}"))
    }

    pub(crate) fn blob_dir(&self) -> PathBuf {
        self.base.join("blobs/sha256")
    }

    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    pub(crate) fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.base.join("layers/sha256").join(diff_id.hex())
    }

    pub(crate) fn layer_marker(&self, diff_id: &Digest) -> PathBuf {
        self.base
            .join("layers/sha256")
            .join(format!("{}.json", diff_id.hex()))
    }

    /// Where pin files live: a live `CachedImage` of any process holds a
    /// shared `flock` on one per entry it uses.
    pub(crate) fn pins_dir(&self) -> PathBuf {
        self.base.join("pins")
    }

    pub(crate) fn image_dir(&self, digest: &Digest) -> PathBuf {
        self.base.join("images/sha256").join(digest.hex())
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn base(&self) -> &Path {
        &self.base
    }

    /// Moves `path` (a file or tree) out of its final place into `tmp/`
    /// and returns where it went, or `None` if there was nothing. The
    /// rename is atomic, so a reader never sees a half-deleted entry.
    pub(crate) fn retire(&self, path: &Path) -> Result<Option<PathBuf>> {
        let trash = self.tmp_path("trash");
        match fs::rename(path, &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(path)(e)),
        }
    }
}

/// A temporary file removed on drop unless persisted.
pub(crate) struct TempPath {
    path: PathBuf,
    persisted: bool,
}

impl TempPath {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            persisted: false,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file (or directory) to `dest`.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(io_at(dest))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.persisted {
            remove_tree(&self.path);
        }
    }
}

/// Removes a file or a whole tree, read-only directories included;
/// errors are ignored (what is left sits in `tmp/` and goes at the next
/// open).
pub(crate) fn remove_tree(path: &Path) {
    oci_layer::remove_tree(path);
}

/// Creates a private directory.
pub(crate) fn make_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_at(path))
}

/// What an unpacked layer holds, as a walk counts it: the record a
/// completion marker keeps and [`crate::Cache::verify`] compares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// Regular files (each hard link counted).
    pub(crate) files: u64,
    /// Directories, the root excluded.
    pub(crate) dirs: u64,
    /// Symlinks and whiteout devices.
    pub(crate) others: u64,
    /// Bytes of regular-file content (each hard link counted).
    pub(crate) bytes: u64,
}

/// Counts what is under `root` without following symlinks.
pub(crate) fn tally(root: &Path) -> Result<Tally> {
    let mut t = Tally::default();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let meta = entry.metadata().map_err(io_at(entry.path()))?;
            if meta.is_dir() {
                t.dirs += 1;
                stack.push(entry.path());
            } else if meta.is_file() {
                t.files += 1;
                t.bytes += meta.len();
            } else {
                t.others += 1;
            }
        }
    }
    Ok(t)
}

/// Reads and parses a JSON file, or `None` if it is missing or unreadable
/// (a scan treats both as "not complete").
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// The names and paths of a directory's entries.
pub(crate) fn scan(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, entry.path()));
    }
    Ok(out)
}

/// Empties `tmp/`: whatever is there was being written when a previous
/// run stopped.
pub(crate) fn clear_tmp(paths: &Paths) -> Result<()> {
    let tmp = paths.tmp_dir();
    for (_, path) in scan(&tmp)? {
        remove_tree(&path);
    }
    Ok(())
}
