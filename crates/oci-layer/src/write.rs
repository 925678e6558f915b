//! Reproducible layer writing: sorted entries, fixed metadata, one pass.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_model::{Descriptor, Digest, Hashing};

use crate::compression::Encoder;
use crate::names::{self, BadName};
use crate::{Compression, Error, Result, io_at};

/// How a [`LayerWriter`] writes its layer.
///
/// ```
/// use oci_layer::{Compression, WriteOptions};
/// // A build honouring SOURCE_DATE_EPOCH reads it and passes it here;
/// // the library never looks at the environment itself.
/// let opts = WriteOptions { compression: Compression::Zstd, mtime: 1_700_000_000, uid: 1000, gid: 1000, ..Default::default() };
/// assert_eq!(WriteOptions::default().mtime, 0);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The compression of the blob. Default gzip.
    pub compression: Compression,
    /// The mtime of every entry, in seconds since the epoch. Default 0.
    pub mtime: u64,
    /// The owner of every entry. Default 0 (root).
    pub uid: u64,
    /// The group of every entry. Default 0 (root).
    pub gid: u64,
    /// Keep the owner and permission bits (setuid, setgid and sticky
    /// included) of what [`LayerWriter::add_tree`] adds, as read from the
    /// host, instead of `uid`/`gid` and normalised modes: for layers that
    /// record what a build step wrote, as Docker records them. Default
    /// false (every layer of a function image is normalised).
    pub keep_host_metadata: bool,
}

/// Owner and permission bits of one entry, kept from the host.
#[derive(Clone, Copy, Debug)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
}

/// What [`LayerWriter::finish`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The digest of the compressed blob.
    pub digest: Digest,
    /// The size of the compressed blob in bytes.
    pub size: u64,
    /// The digest of the uncompressed tar, for the config's `rootfs`.
    pub diff_id: Digest,
    /// The OCI media type of the blob.
    pub media_type: &'static str,
}

impl LayerInfo {
    /// The descriptor a manifest lists for this layer.
    ///
    /// ```
    /// use oci_layer::{LayerWriter, WriteOptions};
    /// let mut blob = Vec::new();
    /// let info = LayerWriter::new(WriteOptions::default()).finish(&mut blob)?;
    /// assert_eq!(info.descriptor().size, blob.len() as u64);
    /// # Ok::<(), oci_layer::Error>(())
    /// ```
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.to_owned(),
            digest: self.digest.clone(),
            size: self.size,
            platform: None,
        }
    }
}

enum Source<'a> {
    Bytes(Vec<u8>),
    Reader(Box<dyn Read + 'a>),
    Host(PathBuf),
}

enum Node<'a> {
    /// `explicit` is false for a parent implied by a deeper entry.
    Dir {
        explicit: bool,
        meta: Option<Meta>,
    },
    File {
        executable: bool,
        size: u64,
        source: Source<'a>,
        meta: Option<Meta>,
    },
    Symlink {
        target: PathBuf,
        meta: Option<Meta>,
    },
}

/// Builds a layer whose bytes depend only on its entries and options: the
/// same inputs give the same digest, whatever order they were added in.
///
/// Entries are written sorted by path with every parent directory present,
/// all with one mtime and owner, empty user and group names, modes
/// normalised to 0755 (directories and executables) or 0644, and symlinks
/// 0777. Later additions of the same path replace earlier ones. File
/// contents are read only when [`finish`](Self::finish) streams the layer,
/// so memory stays bounded by the number of entries, not their size.
///
/// ```
/// use oci_layer::{LayerWriter, WriteOptions};
///
/// let build = |swap: bool| -> oci_layer::Result<oci_layer::LayerInfo> {
///     let mut w = LayerWriter::new(WriteOptions { uid: 1000, gid: 1000, ..Default::default() });
///     let (a, b) = (("app/a.py", b"a".to_vec()), ("app/b.py", b"b".to_vec()));
///     let (first, second) = if swap { (b, a) } else { (a, b) };
///     w.add_bytes(first.0, 0o644, first.1)?.add_bytes(second.0, 0o644, second.1)?;
///     w.finish(std::io::sink())
/// };
/// assert_eq!(build(false)?.digest, build(true)?.digest);
/// # Ok::<(), oci_layer::Error>(())
/// ```
pub struct LayerWriter<'a> {
    opts: WriteOptions,
    entries: BTreeMap<PathBuf, Node<'a>>,
}

impl std::fmt::Debug for LayerWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerWriter")
            .field("opts", &self.opts)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// A path inside the layer, read as [`unpack`](crate::unpack) reads entry
/// names: relative, without `.` or `..`.
fn layer_path(path: &Path, allow_root: bool) -> Result<PathBuf> {
    let invalid = |reason| Error::InvalidLayerPath {
        path: path.to_owned(),
        reason,
    };
    let rel = names::normalize(path.as_os_str().as_bytes()).map_err(|e| match e {
        BadName::Escapes => invalid("climbs out of the layer root"),
        BadName::Nul => invalid("contains a NUL byte"),
    })?;
    if rel.as_os_str().is_empty() && !allow_root {
        return Err(invalid("names the layer root"));
    }
    Ok(rel)
}

impl<'a> LayerWriter<'a> {
    /// An empty layer.
    pub fn new(opts: WriteOptions) -> Self {
        Self {
            opts,
            entries: BTreeMap::new(),
        }
    }

    /// Adds a file with the given contents. Only the executable bits of
    /// `mode` matter: the file is written 0755 if any is set, else 0644.
    pub fn add_bytes(
        &mut self,
        path: impl AsRef<Path>,
        mode: u32,
        contents: impl Into<Vec<u8>>,
    ) -> Result<&mut Self> {
        let contents = contents.into();
        self.insert(
            path.as_ref(),
            Node::File {
                executable: mode & 0o111 != 0,
                size: contents.len() as u64,
                source: Source::Bytes(contents),
                meta: None,
            },
        )
    }

    /// Adds a file of `size` bytes read from `reader` when the layer is
    /// written; a reader giving more or fewer bytes fails [`finish`](Self::finish).
    ///
    /// ```
    /// use oci_layer::{LayerWriter, WriteOptions};
    /// let data = b"#!/bin/sh\necho hi\n";
    /// let mut w = LayerWriter::new(WriteOptions::default());
    /// w.add_file("usr/local/bin/hi", 0o755, data.len() as u64, &data[..])?;
    /// w.finish(std::io::sink())?;
    /// # Ok::<(), oci_layer::Error>(())
    /// ```
    pub fn add_file(
        &mut self,
        path: impl AsRef<Path>,
        mode: u32,
        size: u64,
        reader: impl Read + 'a,
    ) -> Result<&mut Self> {
        self.insert(
            path.as_ref(),
            Node::File {
                executable: mode & 0o111 != 0,
                size,
                source: Source::Reader(Box::new(reader)),
                meta: None,
            },
        )
    }

    /// Adds a directory (mode 0755). Parents of other entries are added
    /// without asking; this is for empty directories.
    pub fn add_dir(&mut self, path: impl AsRef<Path>) -> Result<&mut Self> {
        self.insert(
            path.as_ref(),
            Node::Dir {
                explicit: true,
                meta: None,
            },
        )
    }

    /// Adds a symlink. Absolute targets are kept (they resolve inside the
    /// container's root); relative ones must not climb out of the root.
    pub fn add_symlink(
        &mut self,
        path: impl AsRef<Path>,
        target: impl AsRef<Path>,
    ) -> Result<&mut Self> {
        let target = target.as_ref();
        let bytes = target.as_os_str().as_bytes();
        let rel = layer_path(path.as_ref(), false)?;
        if bytes.is_empty() || bytes.contains(&0) {
            return Err(Error::InvalidEntry {
                entry: rel,
                reason: "symlink target is empty or has a NUL byte",
            });
        }
        if !bytes.starts_with(b"/") && !names::symlink_stays_inside(&rel, bytes) {
            return Err(Error::SymlinkEscape {
                entry: rel,
                target: target.to_owned(),
            });
        }
        self.insert_rel(
            rel,
            Node::Symlink {
                target: target.to_owned(),
                meta: None,
            },
        )?;
        Ok(self)
    }

    /// The metadata of a host entry to keep, when the options say so.
    fn host_meta(&self, meta: &fs::Metadata) -> Option<Meta> {
        use std::os::unix::fs::MetadataExt;
        self.opts.keep_host_metadata.then(|| Meta {
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
        })
    }

    /// Adds everything under `host_dir`, placed under `prefix` in the
    /// layer (empty for the root). Symlinks are added as symlinks, never
    /// followed; files are read when the layer is written, and one whose
    /// size changed by then fails [`finish`](Self::finish). Hard-linked
    /// files become separate copies. Sockets, FIFOs and devices are refused.
    ///
    /// ```
    /// use oci_layer::{LayerWriter, WriteOptions};
    /// let src = tempfile::tempdir()?;
    /// std::fs::create_dir(src.path().join("pkg"))?;
    /// std::fs::write(src.path().join("pkg/__init__.py"), b"")?;
    /// let mut w = LayerWriter::new(WriteOptions::default());
    /// w.add_tree(src.path(), "app")?;
    /// w.finish(std::io::sink())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_tree(
        &mut self,
        host_dir: impl AsRef<Path>,
        prefix: impl AsRef<Path>,
    ) -> Result<&mut Self> {
        let prefix = layer_path(prefix.as_ref(), true)?;
        let mut stack = vec![(host_dir.as_ref().to_owned(), prefix)];
        while let Some((dir, rel_dir)) = stack.pop() {
            if !rel_dir.as_os_str().is_empty() {
                let meta = match self.opts.keep_host_metadata {
                    true => self.host_meta(&fs::symlink_metadata(&dir).map_err(io_at(&dir))?),
                    false => None,
                };
                self.insert_rel(
                    rel_dir.clone(),
                    Node::Dir {
                        explicit: true,
                        meta,
                    },
                )?;
            }
            for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
                let entry = entry.map_err(io_at(&dir))?;
                let host = entry.path();
                let rel = rel_dir.join(entry.file_name());
                let meta = fs::symlink_metadata(&host).map_err(io_at(&host))?;
                let kind = meta.file_type();
                if kind.is_dir() {
                    stack.push((host, rel));
                } else if kind.is_file() {
                    let node = Node::File {
                        executable: meta.permissions().mode() & 0o111 != 0,
                        size: meta.len(),
                        source: Source::Host(host),
                        meta: self.host_meta(&meta),
                    };
                    self.insert_rel(rel, node)?;
                } else if kind.is_symlink() {
                    let target = fs::read_link(&host).map_err(io_at(&host))?;
                    let rel = layer_path(&rel, false)?;
                    self.add_symlink(&rel, target)?;
                    if let Some(Node::Symlink { meta: m, .. }) = self.entries.get_mut(&rel) {
                        *m = self.opts.keep_host_metadata.then(|| Meta {
                            mode: 0o777,
                            uid: u64::from(std::os::unix::fs::MetadataExt::uid(&meta)),
                            gid: u64::from(std::os::unix::fs::MetadataExt::gid(&meta)),
                        });
                    }
                } else {
                    return Err(Error::UnsupportedHostFile { path: host });
                }
            }
        }
        Ok(self)
    }

    fn insert(&mut self, path: &Path, node: Node<'a>) -> Result<&mut Self> {
        let rel = layer_path(path, false)?;
        self.insert_rel(rel, node)?;
        Ok(self)
    }

    fn insert_rel(&mut self, rel: PathBuf, node: Node<'a>) -> Result<()> {
        let mut parent = PathBuf::new();
        let depth = rel.components().count();
        for part in rel.components().take(depth - 1) {
            parent.push(part);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(
                        parent.clone(),
                        Node::Dir {
                            explicit: false,
                            meta: None,
                        },
                    );
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    return Err(Error::PathConflict {
                        path: rel,
                        existing: parent,
                    });
                }
            }
        }
        match (self.entries.get(&rel), &node) {
            // An implied directory never replaces an explicit one.
            (
                Some(Node::Dir { .. }),
                Node::Dir {
                    explicit: false, ..
                },
            ) => return Ok(()),
            (Some(Node::Dir { .. }), Node::File { .. } | Node::Symlink { .. }) => {
                // Path order keeps descendants right after their directory.
                let next = self
                    .entries
                    .range::<Path, _>((Bound::Excluded(rel.as_path()), Bound::Unbounded))
                    .next();
                if let Some((child, _)) = next.filter(|(p, _)| p.starts_with(&rel)) {
                    return Err(Error::PathConflict {
                        path: rel.clone(),
                        existing: child.clone(),
                    });
                }
            }
            _ => {}
        }
        self.entries.insert(rel, node);
        Ok(())
    }

    /// Streams the layer into `out` (pass `&mut writer` to keep using it)
    /// and returns its digests. Nothing is buffered beyond the codecs'
    /// windows.
    pub fn finish<W: Write>(self, out: W) -> Result<LayerInfo> {
        let output = |source| Error::Output { source };
        let compression = self.opts.compression;
        let encoder = Encoder::new(compression, Hashing::new(out)).map_err(output)?;
        let mut builder = tar::Builder::new(Hashing::new(encoder));
        for (rel, node) in self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(self.opts.mtime);
            header.set_uid(self.opts.uid);
            header.set_gid(self.opts.gid);
            header.set_size(0);
            let meta = match &node {
                Node::Dir { meta, .. } | Node::File { meta, .. } | Node::Symlink { meta, .. } => {
                    *meta
                }
            };
            if let Some(m) = meta {
                header.set_uid(m.uid);
                header.set_gid(m.gid);
            }
            let mode = |normal: u32| meta.map_or(normal, |m| m.mode);
            match node {
                Node::Dir { .. } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(mode(0o755));
                    // The trailing slash is how docker and GNU tar name directories.
                    builder
                        .append_data(&mut header, rel.join(""), io::empty())
                        .map_err(output)?;
                }
                Node::Symlink { target, .. } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    builder
                        .append_link(&mut header, &rel, &target)
                        .map_err(output)?;
                }
                Node::File {
                    executable,
                    size,
                    source,
                    ..
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(mode(if executable { 0o755 } else { 0o644 }));
                    header.set_size(size);
                    let (reader, source_path): (Box<dyn Read + 'a>, PathBuf) = match source {
                        Source::Bytes(b) => (Box::new(io::Cursor::new(b)), rel.clone()),
                        Source::Reader(r) => (r, rel.clone()),
                        Source::Host(host) => {
                            let file = fs::File::open(&host).map_err(io_at(&host))?;
                            (Box::new(file), host)
                        }
                    };
                    let mut failure = None;
                    let exact = Exact {
                        inner: reader,
                        left: size,
                        expected: size,
                        path: &source_path,
                        failure: &mut failure,
                    };
                    if let Err(e) = builder.append_data(&mut header, &rel, exact) {
                        return Err(failure.unwrap_or(Error::Output { source: e }));
                    }
                }
            }
        }
        let (encoder, tar) = builder.into_inner().map_err(output)?.into_parts();
        let diff_id = tar.finish();
        let (mut out, blob) = encoder.finish().map_err(output)?.into_parts();
        out.flush().map_err(output)?;
        Ok(LayerInfo {
            size: blob.bytes(),
            digest: blob.finish(),
            diff_id,
            media_type: compression.media_type(),
        })
    }
}

/// Reads exactly `expected` bytes, keeping a typed error for `finish`,
/// since the tar builder would flatten it into an output error.
struct Exact<'e, R> {
    inner: R,
    left: u64,
    expected: u64,
    path: &'e Path,
    failure: &'e mut Option<Error>,
}

impl<R: Read> Exact<'_, R> {
    fn fail(&mut self, error: Error) -> io::Error {
        *self.failure = Some(error);
        io::Error::other("layer entry source failed")
    }
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One probe read: a source longer than announced would
            // otherwise be silently cut.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(self.fail(Error::SizeMismatch {
                    path: self.path.to_owned(),
                    expected: self.expected,
                    actual: self.expected + 1,
                })),
                Err(e) => Err(self.fail(io_at(self.path)(e))),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => Err(self.fail(Error::SizeMismatch {
                path: self.path.to_owned(),
                expected: self.expected,
                actual: self.expected - self.left,
            })),
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) => Err(self.fail(io_at(self.path)(e))),
        }
    }
}

#[cfg(test)]
mod tests;
