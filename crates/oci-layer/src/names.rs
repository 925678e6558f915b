//! Entry names: lexical normalisation shared by reading and writing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a name cannot be a path inside a layer root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadName {
    /// A `..` climbs above the root.
    Escapes,
    Nul,
}

/// The path below the layer root that a tar entry name (or hard-link
/// target) denotes, read as containerd reads it: relative to the root
/// whether it starts with `/`, `./` or neither, empty and `.` components
/// dropped, `..` resolved lexically (`a/../b` is `b`). Lexical is what
/// every runtime does, and enough: entries are then created only below
/// directories checked to be real. The root itself is the empty path.
pub(crate) fn normalize(name: &[u8]) -> Result<PathBuf, BadName> {
    if name.contains(&0) {
        return Err(BadName::Nul);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop().ok_or(BadName::Escapes)?;
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.into_iter().map(OsStr::from_bytes).collect())
}

/// The path, relative to the layer root, that a tar entry name or
/// hard-link target denotes, as [`unpack`](crate::unpack) and containerd
/// read it: a leading `/` or `./` changes nothing, empty and `.`
/// components are dropped and `..` is resolved lexically. `None` when the
/// name still climbs out of the root after that (such an entry makes
/// `unpack` fail) or holds a NUL byte. The root itself is the empty path.
///
/// For readers of layer tars other than `unpack` (scanners, converters),
/// so that every reader agrees on what an entry names.
///
/// ```
/// use std::path::Path;
/// assert_eq!(oci_layer::entry_path(b"/usr/bin/python3").as_deref(), Some(Path::new("usr/bin/python3")));
/// assert_eq!(oci_layer::entry_path(b"./etc/../lib//x/").as_deref(), Some(Path::new("lib/x")));
/// assert_eq!(oci_layer::entry_path(b"./").as_deref(), Some(Path::new("")));
/// assert_eq!(oci_layer::entry_path(b"/../etc/passwd"), None);
/// ```
pub fn entry_path(name: &[u8]) -> Option<PathBuf> {
    normalize(name).ok()
}

/// Whether a relative symlink `target`, placed at `link` (relative to the
/// root), stays inside the root when resolved lexically. Lexical is enough
/// because every directory it passes through was checked to be real.
pub(crate) fn symlink_stays_inside(link: &Path, target: &[u8]) -> bool {
    let mut depth = link.components().count().saturating_sub(1);
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// The raw bytes of a path, for error messages built from tar names.
pub(crate) fn lossless(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        let ok = |name: &[u8], want: &str| {
            assert_eq!(
                normalize(name).as_deref(),
                Ok(Path::new(want)),
                "{:?}",
                lossless(name)
            );
        };
        // As containerd reads them: every form of the root, and names
        // with `/`, `./` or no prefix, are the same paths.
        for root in [
            &b""[..],
            b"/",
            b".",
            b"./",
            b"//",
            b"/.",
            b"/./",
            b"a/..",
            b"/a/../",
        ] {
            ok(root, "");
        }
        for name in [
            &b"etc/passwd"[..],
            b"/etc/passwd",
            b"./etc/passwd",
            b"//etc//passwd/",
        ] {
            ok(name, "etc/passwd");
        }
        ok(b"./usr//bin/", "usr/bin");
        ok(b"a/../b", "b");
        ok(b"/usr/lib/../bin/./x", "usr/bin/x");
        ok(b"a/b/c/../../d", "a/d");
        ok(b"a/..b", "a/..b");
        ok(b"...", "...");
        ok(b"/etc/.wh.x", "etc/.wh.x");
        ok(b"./a/.wh..wh..opq", "a/.wh..wh..opq");

        // Only names that still point outside the root are refused.
        for name in [
            &b".."[..],
            b"../x",
            b"/../x",
            b"./../x",
            b"a/../../x",
            b"a/b/../../..",
        ] {
            assert_eq!(
                normalize(name),
                Err(BadName::Escapes),
                "{:?}",
                lossless(name)
            );
        }
        assert_eq!(normalize(b"a\0b"), Err(BadName::Nul));
        assert_eq!(entry_path(b"../x"), None);
    }

    #[test]
    fn symlink_targets() {
        let link = Path::new("usr/bin/python");
        assert!(symlink_stays_inside(link, b"python3"));
        assert!(symlink_stays_inside(link, b"../lib/x"));
        assert!(symlink_stays_inside(link, b"../../etc"));
        assert!(!symlink_stays_inside(link, b"../../../etc"));
        assert!(!symlink_stays_inside(Path::new("link"), b".."));
        assert!(!symlink_stays_inside(Path::new("a/link"), b"x/../../.."));
        assert!(symlink_stays_inside(Path::new("link"), b"."));
    }
}
