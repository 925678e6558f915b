//! Entry names: lexical normalisation shared by reading and writing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a name cannot be a path inside a layer root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadName {
    Absolute,
    ParentDir,
    Nul,
}

/// Splits `name` on `/` into its normal components, dropping empty and `.`
/// components. The result is relative and may be empty (the root itself).
pub(crate) fn normalize(name: &[u8]) -> Result<PathBuf, BadName> {
    if name.starts_with(b"/") {
        return Err(BadName::Absolute);
    }
    if name.contains(&0) {
        return Err(BadName::Nul);
    }
    let mut out = PathBuf::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(BadName::ParentDir),
            _ => out.push(OsStr::from_bytes(part)),
        }
    }
    Ok(out)
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
        assert_eq!(normalize(b"./usr//bin/").unwrap(), Path::new("usr/bin"));
        assert_eq!(normalize(b"./").unwrap(), Path::new(""));
        assert_eq!(normalize(b"/etc/passwd"), Err(BadName::Absolute));
        assert_eq!(normalize(b"a/../../x"), Err(BadName::ParentDir));
        assert_eq!(normalize(b"a\0b"), Err(BadName::Nul));
        assert_eq!(normalize(b"a/..b").unwrap(), Path::new("a/..b"));
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
