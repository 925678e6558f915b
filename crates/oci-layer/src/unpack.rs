//! Safe, streaming unpacking of a layer into a fresh directory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use oci_model::{Digest, Hashing};
use xattr::FileExt as _;

use crate::names::{self, BadName};
use crate::{Compression, Error, Result, io_at};

/// Limits on what one layer may contain. The defaults fit any real image
/// while stopping a decompression bomb long before it fills a disk.
///
/// ```
/// use oci_layer::UnpackOptions;
/// let small = UnpackOptions { max_entries: 1_000, max_total_bytes: 64 << 20 };
/// assert!(small.max_entries < UnpackOptions::default().max_entries);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Most tar entries (files, directories, links, whiteouts, global
    /// headers) in the layer. Default 1,000,000.
    pub max_entries: u64,
    /// Most bytes of entry payload in the uncompressed tar, file contents
    /// and extension headers alike. Default 8 GiB.
    pub max_total_bytes: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_total_bytes: 8 << 30,
        }
    }
}

/// What [`unpack`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// The sha256 of the uncompressed tar stream, as a config's `rootfs`
    /// lists it.
    pub diff_id: Digest,
    /// Entries read, of every kind (extension headers excluded).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Device nodes and FIFOs skipped: an image needs none of them and an
    /// unprivileged unpack cannot make them.
    pub dropped: u64,
    /// Paths (relative to the root) deleted by this layer's `.wh.NAME`
    /// whiteouts, in tar order; not created on disk.
    pub whiteouts: Vec<PathBuf>,
    /// Directories (relative to the root) whose lower-layer contents this
    /// layer hides, from `.wh..wh..opq` markers; the root is the empty path.
    pub opaque_dirs: Vec<PathBuf>,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// PAX records of extended attributes (GNU tar, Go, libarchive).
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// The only attribute namespace restored (see [`unpack`]).
const RESTORED_XATTRS: &[u8] = b"user.";
/// Largest GNU long name or PAX header read into memory.
const MAX_EXTENSION_BYTES: u64 = 1 << 20;
/// Latest mtime set (9999-12-31): later ones overflow some file systems.
const MAX_MTIME: u64 = 253_402_300_799;

/// Unpacks a layer read from `reader` into `dest`, which must not exist.
///
/// Entries go into a temporary sibling directory that is renamed to `dest`
/// only when the whole layer is in; on any error it is removed and nothing
/// is left behind.
///
/// Entry names and hard-link targets are read as containerd reads them
/// (see [`entry_path`](crate::entry_path)): `/etc/x`, `./etc/x` and
/// `etc/x` are one path, and `..` is resolved lexically. Names that still
/// climb out of the root, writes through a symlink, relative symlinks
/// climbing out of the root and hard links to anything but a regular file
/// unpacked earlier are refused. An entry for the root itself (`/`, `.`,
/// `./`) is a directory entry whose mode and mtime are ignored, as
/// containerd ignores them: the root stays 0755.
///
/// Device nodes and FIFOs are dropped; setuid, setgid and sticky bits are
/// cleared; ownership is not restored, so an unprivileged user can unpack
/// any layer. Extended attributes (PAX `SCHILY.xattr.*`) are restored in
/// the `user.` namespace only, on files and directories, and skipped where
/// the file system has none; `security.`, `trusted.` and other namespaces
/// are dropped (a `trusted.overlay.*` attribute would steer overlayfs, and
/// file capabilities mean nothing in a container without privileges).
/// Whiteouts are reported in [`UnpackStats`], not applied.
///
/// ```
/// use oci_layer::{Compression, LayerWriter, UnpackOptions, WriteOptions};
///
/// let mut w = LayerWriter::new(WriteOptions { compression: Compression::Zstd, ..Default::default() });
/// w.add_bytes("etc/motd", 0o644, b"hello\n".to_vec())?;
/// w.add_symlink("usr/bin/python", "python3")?;
/// let mut blob = Vec::new();
/// let info = w.finish(&mut blob)?;
///
/// let dir = tempfile::tempdir()?;
/// let compression = Compression::from_media_type(info.media_type).unwrap();
/// let stats = oci_layer::unpack(&blob[..], compression, &dir.path().join("l"), &UnpackOptions::default())?;
/// assert_eq!(stats.diff_id, info.diff_id);
/// assert_eq!(stats.bytes, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unpack(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    match fs::symlink_metadata(dest) {
        Ok(_) => {
            return Err(Error::DestinationExists {
                path: dest.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(dest)(e)),
    }
    let tmp = TempRoot::create(dest)?;
    let stats = Unpacker::new(tmp.path.clone(), opts).run(reader, compression)?;
    tmp.persist(dest)?;
    Ok(stats)
}

/// The directory a layer is unpacked into before it is complete; removed
/// on drop unless persisted, so errors and panics leave nothing behind.
struct TempRoot {
    path: PathBuf,
    persisted: bool,
}

impl TempRoot {
    fn create(dest: &Path) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dest.file_name().unwrap_or(OsStr::new("layer"));
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let mut tmp_name = OsStr::new(".").to_owned();
            tmp_name.push(name);
            tmp_name.push(format!(".unpack-{}-{n}", std::process::id()));
            let path = parent.join(tmp_name);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(Self {
                        path,
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_at(path)(e)),
            }
        }
    }

    fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(io_at(dest))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if self.persisted {
            return;
        }
        remove_tree(&self.path);
    }
}

/// Removes an unpacked tree, read-only directories included (an unpacked
/// layer keeps its directories' modes, which may forbid writing, so
/// `remove_dir_all` alone can fail even for their owner). Errors are
/// ignored: what is left cannot be removed by this process either.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// let dir = tempfile::tempdir()?;
/// let tree = dir.path().join("t");
/// std::fs::create_dir_all(tree.join("ro/sub"))?;
/// std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o500))?;
/// oci_layer::remove_tree(&tree);
/// assert!(!tree.exists());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn remove_tree(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        let _ = fs::remove_file(path);
        return;
    }
    if fs::remove_dir_all(path).is_ok() {
        return;
    }
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let _ = fs::set_permissions(&dir, Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
    let _ = fs::remove_dir_all(path);
}

/// Extension headers that apply to the next member entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    /// `user.` extended attributes, name and value.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pax: bool,
    any: bool,
}

struct Unpacker<'o> {
    root: PathBuf,
    opts: &'o UnpackOptions,
    stats: UnpackStats,
    members: u64,
    payload: u64,
    /// Directory modes and mtimes, applied at the end so that read-only
    /// directories can still be filled and mtimes survive later writes.
    dirs: BTreeMap<PathBuf, (u32, u64)>,
    /// The last parent directory checked to be real, to save lstat calls
    /// for runs of entries in one directory; cleared whenever anything is
    /// removed, since only a removal can turn a directory into a symlink.
    checked_parent: Option<PathBuf>,
    buf: Vec<u8>,
}

fn corrupt(source: io::Error) -> Error {
    Error::CorruptStream { source }
}

fn bad_name(err: BadName, entry: &Path, path: &[u8]) -> Error {
    let path = names::lossless(path);
    let entry = entry.to_owned();
    match err {
        BadName::Escapes => Error::ParentTraversal { entry, path },
        BadName::Nul => Error::InvalidEntry {
            entry,
            reason: "name contains a NUL byte",
        },
    }
}

fn strip_nuls(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

impl<'o> Unpacker<'o> {
    fn new(root: PathBuf, opts: &'o UnpackOptions) -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::new(), (0o755, 0));
        Self {
            root,
            opts,
            stats: UnpackStats {
                diff_id: Digest::of(b""),
                entries: 0,
                bytes: 0,
                dropped: 0,
                whiteouts: Vec::new(),
                opaque_dirs: Vec::new(),
            },
            members: 0,
            payload: 0,
            dirs,
            checked_parent: None,
            buf: vec![0; 64 * 1024],
        }
    }

    fn run(mut self, reader: impl Read, compression: Compression) -> Result<UnpackStats> {
        let decoder = compression.decoder(reader).map_err(corrupt)?;
        // Everything read is hashed: the diff-id.
        let mut archive = tar::Archive::new(Hashing::new(decoder));
        // Raw mode: extension headers come to us, so their size is bounded
        // before they are read into memory (the tar crate reads them whole).
        let entries = archive.entries().map_err(corrupt)?.raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            let mut entry = entry.map_err(corrupt)?;
            self.entry(&mut entry, &mut pending)?;
        }
        if pending.any {
            return Err(corrupt(io::Error::other(
                "extension header with no entry after it",
            )));
        }
        // The diff-id covers the whole stream, including the padding after
        // the end-of-archive blocks that the tar reader does not consume.
        let mut inner = archive.into_inner();
        let left = self.opts.max_total_bytes.saturating_sub(self.payload);
        let trailing = io::copy(
            &mut (&mut inner).take(left.saturating_add(1)),
            &mut io::sink(),
        )
        .map_err(corrupt)?;
        if trailing > left {
            return Err(Error::TooManyBytes {
                entry: PathBuf::from("(data after the end of the archive)"),
                limit: self.opts.max_total_bytes,
            });
        }
        self.apply_dirs()?;
        self.stats.diff_id = inner.into_parts().1.finish();
        Ok(self.stats)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pending: &mut Pending,
    ) -> Result<()> {
        let header = entry.header();
        let kind = header.entry_type().as_byte();
        let name = match (&pending.long_name, &pending.pax_path) {
            (Some(n), _) | (None, Some(n)) => n.clone(),
            (None, None) => header.path_bytes().into_owned(),
        };
        let entry_name = names::lossless(&name);
        let size = entry.size();
        self.payload = self.payload.saturating_add(size);
        if self.payload > self.opts.max_total_bytes {
            return Err(Error::TooManyBytes {
                entry: entry_name,
                limit: self.opts.max_total_bytes,
            });
        }
        let is_extension = matches!(kind, b'L' | b'K' | b'x');
        if is_extension {
            if size > MAX_EXTENSION_BYTES {
                return Err(Error::InvalidEntry {
                    entry: entry_name,
                    reason: "extension header is larger than 1 MiB",
                });
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(corrupt)?;
            if data.len() as u64 != size {
                return Err(corrupt(io::ErrorKind::UnexpectedEof.into()));
            }
            return self.extension(kind, data, entry_name, pending);
        }
        self.members += 1;
        if self.members > self.opts.max_entries {
            return Err(Error::TooManyEntries {
                limit: self.opts.max_entries,
            });
        }
        if kind == b'g' {
            // Global PAX headers carry only defaults (comments, mtimes)
            // that change nothing for an unpacked tree.
            return Ok(());
        }
        let pending = std::mem::take(pending);
        if pending.pax_size.is_some_and(|s| s != size) {
            // The tar reader sized this entry from its header; a PAX size
            // that disagrees would make the two parsers see different files.
            return Err(Error::InvalidEntry {
                entry: entry_name,
                reason: "pax size differs from the header size",
            });
        }
        let link = match (pending.long_link, pending.pax_link) {
            (Some(l), _) | (None, Some(l)) => Some(l),
            (None, None) => header.link_name_bytes().map(|l| l.into_owned()),
        };
        let mode = header.mode().map_err(|_| Error::InvalidEntry {
            entry: entry_name.clone(),
            reason: "malformed mode field",
        })? & 0o777;
        let mtime = header.mtime().unwrap_or(0).min(MAX_MTIME);
        self.stats.entries += 1;

        let rel = names::normalize(&name).map_err(|e| bad_name(e, &entry_name, &name))?;
        if rel.parent().is_some_and(|p| {
            p.components()
                .any(|c| c.as_os_str().as_bytes().starts_with(WHITEOUT_PREFIX))
        }) {
            return Err(Error::InvalidEntry {
                entry: entry_name,
                reason: "entry inside a whiteout",
            });
        }
        if let Some(file_name) = rel.file_name().map(OsStr::as_bytes)
            && file_name.starts_with(WHITEOUT_PREFIX)
        {
            return self.whiteout(&entry_name, &rel, file_name);
        }
        let is_dir = kind == b'5' || (matches!(kind, b'0' | b'\0' | b'7') && name.ends_with(b"/"));
        if rel.as_os_str().is_empty() {
            // The root entry that umoci and `tar -C dir .` write carries
            // the mode of whatever directory the layer was made from (0700
            // for a temporary one), which says nothing about the image:
            // ignored, as containerd ignores it, and the root stays 0755.
            if is_dir {
                return Ok(());
            }
            return Err(Error::InvalidEntry {
                entry: entry_name,
                reason: "a non-directory entry names the layer root",
            });
        }
        match kind {
            _ if is_dir => self.directory(&entry_name, rel, mode, mtime, &pending.xattrs),
            b'0' | b'\0' | b'7' => {
                let meta = (size, mode, mtime);
                self.file(entry, &entry_name, &rel, meta, &pending.xattrs)
            }
            b'2' => self.symlink(&entry_name, &rel, link.unwrap_or_default()),
            b'1' => self.hard_link(&entry_name, &rel, link.unwrap_or_default()),
            b'3' | b'4' | b'6' => {
                self.stats.dropped += 1;
                Ok(())
            }
            other => Err(Error::UnsupportedEntry {
                entry: entry_name,
                kind: char::from(other),
            }),
        }
    }

    fn extension(
        &mut self,
        kind: u8,
        data: Vec<u8>,
        entry_name: PathBuf,
        pending: &mut Pending,
    ) -> Result<()> {
        let duplicate = Error::InvalidEntry {
            entry: entry_name.clone(),
            reason: "two extension headers of one kind for the same entry",
        };
        pending.any = true;
        match kind {
            b'L' if pending.long_name.is_none() => pending.long_name = Some(strip_nuls(data)),
            b'K' if pending.long_link.is_none() => pending.long_link = Some(strip_nuls(data)),
            b'x' if !pending.pax => {
                pending.pax = true;
                let records = pax_records(&data).ok_or(Error::InvalidEntry {
                    entry: entry_name.clone(),
                    reason: "malformed pax header",
                })?;
                for (key, value) in records {
                    match key {
                        b"path" => pending.pax_path = Some(value.to_vec()),
                        b"linkpath" => pending.pax_link = Some(value.to_vec()),
                        b"size" => {
                            let size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                            pending.pax_size = Some(size.ok_or(Error::InvalidEntry {
                                entry: entry_name.clone(),
                                reason: "malformed pax size",
                            })?);
                        }
                        key if key.starts_with(PAX_XATTR_PREFIX) => {
                            let name = &key[PAX_XATTR_PREFIX.len()..];
                            if name.starts_with(RESTORED_XATTRS) {
                                pending.xattrs.push((name.to_vec(), value.to_vec()));
                            }
                        }
                        key if key.starts_with(b"GNU.sparse.") => {
                            return Err(Error::UnsupportedEntry {
                                entry: entry_name,
                                kind: 'S',
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => return Err(duplicate),
        }
        Ok(())
    }

    fn whiteout(&mut self, entry_name: &Path, rel: &Path, file_name: &[u8]) -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
        if file_name == OPAQUE_MARKER {
            self.stats.opaque_dirs.push(parent);
        } else if file_name.starts_with(WHITEOUT_META_PREFIX) {
            // Other `.wh..wh.` names are aufs bookkeeping that docker and
            // containerd ignore too.
        } else {
            let target = &file_name[WHITEOUT_PREFIX.len()..];
            if matches!(target, b"" | b"." | b"..") {
                return Err(Error::InvalidEntry {
                    entry: entry_name.to_owned(),
                    reason: "whiteout names no file",
                });
            }
            self.stats
                .whiteouts
                .push(parent.join(OsStr::from_bytes(target)));
        }
        Ok(())
    }

    fn directory(
        &mut self,
        entry_name: &Path,
        rel: PathBuf,
        mode: u32,
        mtime: u64,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        self.make_parents(entry_name, &rel)?;
        let path = self.root.join(&rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                self.remove(&path)?;
                DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .map_err(io_at(&path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .map_err(io_at(&path))?;
            }
            Err(e) => return Err(io_at(path)(e)),
        }
        // Set now, while the directory is still writable (its mode comes
        // at the end); `xattr::set` does not follow symlinks.
        for (name, value) in xattrs {
            match xattr::set(&path, OsStr::from_bytes(name), value) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => break,
                other => other.map_err(io_at(&path))?,
            }
        }
        self.dirs.insert(rel, (mode, mtime));
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        entry_name: &Path,
        rel: &Path,
        (size, mode, mtime): (u64, u32, u64),
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let path = self.prepare(entry_name, rel)?;
        // create_new fails on anything already there, a dangling symlink
        // included, so this never writes through a link.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let mut copied = 0u64;
        loop {
            let n = entry.read(&mut self.buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n]).map_err(io_at(&path))?;
            copied += n as u64;
        }
        if copied != size {
            return Err(corrupt(io::ErrorKind::UnexpectedEof.into()));
        }
        // Before the mode, which may make the file read-only.
        for (name, value) in xattrs {
            match file.set_xattr(OsStr::from_bytes(name), value) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => break,
                other => other.map_err(io_at(&path))?,
            }
        }
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(io_at(&path))?;
        file.set_modified(mtime_of(mtime)).map_err(io_at(&path))?;
        self.stats.bytes += size;
        Ok(())
    }

    fn symlink(&mut self, entry_name: &Path, rel: &Path, target: Vec<u8>) -> Result<()> {
        if target.is_empty() || target.contains(&0) {
            return Err(Error::InvalidEntry {
                entry: entry_name.to_owned(),
                reason: "symlink target is empty or has a NUL byte",
            });
        }
        // Absolute targets are normal in images (/usr/bin/python3) and
        // resolve inside the container's root; only `..` can climb out.
        if !target.starts_with(b"/") && !names::symlink_stays_inside(rel, &target) {
            return Err(Error::SymlinkEscape {
                entry: entry_name.to_owned(),
                target: names::lossless(&target),
            });
        }
        let path = self.prepare(entry_name, rel)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(io_at(&path))
    }

    fn hard_link(&mut self, entry_name: &Path, rel: &Path, target: Vec<u8>) -> Result<()> {
        let invalid = |reason| Error::InvalidHardLink {
            entry: entry_name.to_owned(),
            target: names::lossless(&target),
            reason,
        };
        let target_rel = names::normalize(&target).map_err(|e| bad_name(e, entry_name, &target))?;
        if target_rel.as_os_str().is_empty() {
            return Err(invalid("names the layer root"));
        }
        if self.real_dir(target_rel.parent().unwrap_or(Path::new(""))) != Some(true) {
            return Err(invalid("is not inside a real directory of the layer"));
        }
        let target_path = self.root.join(&target_rel);
        match fs::symlink_metadata(&target_path) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(invalid(
                    "is not a regular file unpacked earlier in the layer",
                ));
            }
        }
        if target_rel == rel {
            return Ok(());
        }
        let path = self.prepare(entry_name, rel)?;
        fs::hard_link(&target_path, &path).map_err(io_at(&path))
    }

    /// Makes the parents of `rel` and clears whatever is at `rel`; returns
    /// the host path to create the entry at.
    fn prepare(&mut self, entry_name: &Path, rel: &Path) -> Result<PathBuf> {
        self.make_parents(entry_name, rel)?;
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(_) => self.remove(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(path)(e)),
        }
        Ok(path)
    }

    /// Removes what an earlier entry of the same path left: later entries
    /// win, as in every tar reader.
    fn remove(&mut self, path: &Path) -> Result<()> {
        self.checked_parent = None;
        let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        if is_dir {
            fs::remove_dir_all(path).map_err(io_at(path))
        } else {
            fs::remove_file(path).map_err(io_at(path))
        }
    }

    /// Ensures every parent of `rel` is a real directory inside the root,
    /// creating missing ones.
    fn make_parents(&mut self, entry_name: &Path, rel: &Path) -> Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        if self.checked_parent.as_deref() == Some(parent) {
            return Ok(());
        }
        let mut host = self.root.clone();
        let mut so_far = PathBuf::new();
        for part in parent.components() {
            host.push(part);
            so_far.push(part);
            match fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::SymlinkedParent {
                        entry: entry_name.to_owned(),
                        parent: so_far,
                    });
                }
                Ok(_) => {
                    return Err(Error::ParentNotDirectory {
                        entry: entry_name.to_owned(),
                        parent: so_far,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&host)
                        .map_err(io_at(&host))?;
                }
                Err(e) => return Err(io_at(host)(e)),
            }
        }
        self.checked_parent = Some(parent.to_owned());
        Ok(())
    }

    /// Whether `rel` and all its parents are real directories: `None` if
    /// something on the way is missing.
    fn real_dir(&self, rel: &Path) -> Option<bool> {
        let mut host = self.root.clone();
        for part in rel.components() {
            host.push(part);
            if !fs::symlink_metadata(&host).ok()?.is_dir() {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Sets directory modes and mtimes, deepest first, so that a parent
    /// made read-only does not block its children.
    fn apply_dirs(&mut self) -> Result<()> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, (mode, mtime)) in dirs {
            // A later entry may have replaced the directory or a parent.
            if self.real_dir(&rel) != Some(true) {
                continue;
            }
            let path = self.root.join(&rel);
            File::open(&path)
                .and_then(|d| d.set_modified(mtime_of(mtime)))
                .map_err(io_at(&path))?;
            fs::set_permissions(&path, Permissions::from_mode(mode)).map_err(io_at(&path))?;
        }
        Ok(())
    }
}

/// The `LEN KEY=VALUE\n` records of a PAX extended header, split by their
/// lengths, or `None` if one is malformed. Values may hold any byte, a
/// newline included (binary xattrs such as file capabilities), which
/// splitting on newlines, as the tar crate's parser does, would misread.
fn pax_records(mut data: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let digits = &data[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if len <= space + 1 || len > data.len() {
            return None;
        }
        let (record, rest) = data.split_at(len);
        let body = record[space + 1..].strip_suffix(b"\n")?;
        let equals = body.iter().position(|&b| b == b'=')?;
        records.push((&body[..equals], &body[equals + 1..]));
        data = rest;
    }
    Some(records)
}

fn mtime_of(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests;
