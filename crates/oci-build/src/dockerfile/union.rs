//! The merged view of an image's unpacked layers, as overlayfs would show
//! it, for `COPY --from`: a path is found in the top-most layer that has
//! it, unless a layer above deleted it (a whiteout: a 0/0 character
//! device) or made an ancestor opaque (`trusted.overlay.opaque`); a
//! directory lists the union of its entries down to its first opaque
//! copy. Links are never followed: a link is copied as a link, and a path
//! through a link is not found.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a merged path is, and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// A directory (its entries come from [`Union::read_dir`]).
    Dir,
    /// A regular file at this host path.
    File(PathBuf),
    /// A symbolic link at this host path.
    Symlink(PathBuf),
}

/// Layer directories, top-most first.
pub(super) struct Union {
    layers: Vec<PathBuf>,
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf), Ok(1) if buf[0] == b'y')
}

/// What a layer holds at a path that should be a directory.
enum Presence {
    /// A directory, every component of the way a real directory.
    Dir(PathBuf),
    /// Nothing there: lower layers decide.
    Absent,
    /// A whiteout or a non-directory (a link included) on the way: lower
    /// layers are hidden.
    Hidden,
}

fn dir_in(layer: &Path, rel: &Path) -> Presence {
    let mut here = layer.to_owned();
    for part in rel {
        here.push(part);
        match std::fs::symlink_metadata(&here) {
            Err(_) => return Presence::Absent,
            Ok(m) if is_whiteout(&m) || !m.is_dir() => return Presence::Hidden,
            Ok(_) => {}
        }
    }
    Presence::Dir(here)
}

impl Union {
    pub(super) fn new(layers: Vec<PathBuf>) -> Self {
        Self { layers }
    }

    /// The merged entry at `rel` (relative, no `..`), if any.
    pub(super) fn lookup(&self, rel: &Path) -> Option<Entry> {
        let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
        if parts.is_empty() {
            return Some(Entry::Dir);
        }
        'layers: for layer in &self.layers {
            // Is the path cut off in this layer: a whiteout or a non-directory
            // on the way, or an opaque ancestor that hides lower layers?
            let mut here = layer.clone();
            for (i, part) in parts.iter().enumerate() {
                here.push(part);
                let Ok(meta) = std::fs::symlink_metadata(&here) else {
                    // Not in this layer; an opaque ancestor hides the rest.
                    if i > 0 && is_opaque(here.parent().unwrap_or(layer)) {
                        return None;
                    }
                    continue 'layers;
                };
                if is_whiteout(&meta) {
                    return None;
                }
                let last = i + 1 == parts.len();
                if last {
                    let kind = meta.file_type();
                    return Some(if kind.is_dir() {
                        Entry::Dir
                    } else if kind.is_symlink() {
                        Entry::Symlink(here)
                    } else if kind.is_file() {
                        Entry::File(here)
                    } else {
                        return None;
                    });
                }
                if !meta.is_dir() {
                    // A file or a link where a directory should be.
                    return None;
                }
            }
        }
        None
    }

    /// The merged entries of the directory `rel`, by name.
    pub(super) fn read_dir(&self, rel: &Path) -> BTreeMap<String, Entry> {
        let mut seen: BTreeMap<String, Option<Entry>> = BTreeMap::new();
        for layer in &self.layers {
            // Each component checked in this layer: a link on the way
            // (whose target is on the host, not in the image) ends the
            // merge, as any non-directory does in overlayfs.
            let dir = match dir_in(layer, rel) {
                Presence::Dir(dir) => dir,
                Presence::Absent => continue,
                Presence::Hidden => break,
            };
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if seen.contains_key(&name) {
                        continue;
                    }
                    let Ok(m) = e.path().symlink_metadata() else {
                        continue;
                    };
                    let kind = m.file_type();
                    let entry = if is_whiteout(&m) {
                        None
                    } else if kind.is_dir() {
                        Some(Entry::Dir)
                    } else if kind.is_symlink() {
                        Some(Entry::Symlink(e.path()))
                    } else if kind.is_file() {
                        Some(Entry::File(e.path()))
                    } else {
                        None
                    };
                    seen.insert(name, entry);
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        seen.into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};

    use super::*;

    #[test]
    fn upper_layers_win_and_whiteouts_delete() {
        let top = tempfile::tempdir().unwrap();
        let low = tempfile::tempdir().unwrap();
        let w = |dir: &Path, rel: &str, text: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(low.path(), "app/a.txt", "low a");
        w(low.path(), "app/b.txt", "low b");
        w(low.path(), "app/gone.txt", "deleted above");
        w(top.path(), "app/a.txt", "top a");
        std::os::unix::fs::symlink("a.txt", top.path().join("app/link")).unwrap();
        let whiteout = mknodat(
            CWD,
            top.path().join("app/gone.txt"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            makedev(0, 0),
        );
        let u = Union::new(vec![top.path().to_owned(), low.path().to_owned()]);
        assert_eq!(
            u.lookup(Path::new("app/a.txt")),
            Some(Entry::File(top.path().join("app/a.txt")))
        );
        assert_eq!(
            u.lookup(Path::new("app/b.txt")),
            Some(Entry::File(low.path().join("app/b.txt")))
        );
        assert_eq!(u.lookup(Path::new("app")), Some(Entry::Dir));
        assert_eq!(u.lookup(Path::new("missing")), None);
        assert_eq!(u.lookup(Path::new("app/a.txt/x")), None);
        let names: Vec<String> = u.read_dir(Path::new("app")).into_keys().collect();
        if whiteout.is_ok() {
            assert_eq!(u.lookup(Path::new("app/gone.txt")), None);
            assert_eq!(names, ["a.txt", "b.txt", "link"]);
        }
        assert!(matches!(
            u.lookup(Path::new("app/link")),
            Some(Entry::Symlink(_))
        ));

        // A lower layer's link where a directory is: never followed to the
        // host, in a lookup or a listing.
        let host = tempfile::tempdir().unwrap();
        w(host.path(), "sub/secret", "HOST");
        std::os::unix::fs::symlink(host.path(), low.path().join("escape")).unwrap();
        std::fs::create_dir_all(top.path().join("escape/sub")).unwrap();
        assert_eq!(u.lookup(Path::new("escape/sub/secret")), None);
        assert!(u.read_dir(Path::new("escape/sub")).is_empty());
    }
}
