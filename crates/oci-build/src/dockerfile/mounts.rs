//! `RUN --mount=type=cache,target=DIR[,id=ID][,sharing=shared|locked|private][,uid=N][,gid=N][,mode=OCTAL]`:
//! a directory of the builder's cache (`dockerfile-cache/`, one per id)
//! bound read-write into the `RUN` at `DIR`, as `BuildKit` does: what the
//! command writes there stays for the next build and is never part of the
//! layer, and its contents are not part of the `RUN`'s cache key (its
//! options are). `locked` and `private` take the directory for one `RUN`
//! at a time (a lock file); `shared` lets builds use it together. Other
//! mount types are refused by name.

use std::path::{Path, PathBuf};

use oci_model::Digest;

use super::apply::absolute;

/// One cache mount of a `RUN`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(super) struct CacheMount {
    /// Absolute path in the container.
    pub target: String,
    pub id: String,
    /// `locked` or `private`: one user at a time.
    pub exclusive: bool,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Reads a `--mount` value; `cwd` resolves a relative target.
pub(super) fn parse(value: &str, cwd: &str) -> Result<CacheMount, String> {
    let mut kind = "bind";
    let (mut target, mut id, mut exclusive) = (None, None, false);
    let (mut uid, mut gid, mut mode) = (0, 0, 0o755);
    let number = |k: &str, v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("--mount {k}={v}: not a number"))
    };
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k.to_ascii_lowercase().as_str() {
            "type" => kind = v,
            "target" | "dst" | "destination" => target = Some(v),
            "id" => id = Some(v.to_owned()),
            "sharing" => {
                exclusive = match v {
                    "shared" => false,
                    "locked" | "private" => true,
                    other => {
                        return Err(format!(
                            "--mount sharing={other}: not shared, locked or private"
                        ));
                    }
                }
            }
            "uid" => uid = number(k, v)?,
            "gid" => gid = number(k, v)?,
            "mode" => {
                mode = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("--mount mode={v}: not an octal mode"))?
            }
            other => return Err(format!("--mount option {other:?} is not supported")),
        }
    }
    if kind != "cache" {
        return Err(format!(
            "RUN --mount=type={kind} is not supported (only type=cache)"
        ));
    }
    let target = target
        .filter(|t| !t.is_empty())
        .ok_or("--mount=type=cache needs a target")?;
    let target = absolute(cwd, target);
    let target = target.trim_end_matches('/').to_owned();
    let reserved = ["/proc", "/dev", "/sys", "/io"];
    if target.is_empty()
        || reserved
            .iter()
            .any(|r| target == *r || target.starts_with(&format!("{r}/")))
    {
        return Err(format!(
            "--mount target {}: the sandbox's own",
            if target.is_empty() { "/" } else { &target }
        ));
    }
    Ok(CacheMount {
        id: id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| target.clone()),
        target,
        exclusive,
        uid,
        gid,
        mode,
    })
}

impl CacheMount {
    /// Its directory under `root` (made, with its owner and mode, the
    /// first time), and the lock file that `locked` takes.
    pub(super) fn directory(&self, root: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        use std::os::unix::fs::PermissionsExt;
        let name = Digest::of(self.id.as_bytes()).hex().to_owned();
        let dir = root.join(&name);
        if !dir.is_dir() {
            std::fs::create_dir_all(root)?;
            // Made aside and renamed: a concurrent build sees all or nothing.
            let fresh = tempfile::Builder::new().prefix(".new-").tempdir_in(root)?;
            let made = fresh.path().join("d");
            std::fs::create_dir(&made)?;
            std::os::unix::fs::chown(&made, Some(self.uid), Some(self.gid))?;
            std::fs::set_permissions(&made, std::fs::Permissions::from_mode(self.mode))?;
            match std::fs::rename(&made, &dir) {
                Ok(()) => {}
                Err(_) if dir.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok((dir, root.join(format!("{name}.lock"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mounts_read_as_buildkit_reads_them() {
        let m = parse("type=cache,target=/root/.cache", "/").unwrap();
        assert_eq!(
            (m.target.as_str(), m.id.as_str(), m.exclusive),
            ("/root/.cache", "/root/.cache", false)
        );
        let m = parse(
            "type=cache,target=cache/,id=pip,sharing=locked,uid=1000,gid=1000,mode=0700",
            "/srv",
        )
        .unwrap();
        assert_eq!(
            (m.target.as_str(), m.id.as_str(), m.exclusive, m.uid, m.mode),
            ("/srv/cache", "pip", true, 1000, 0o700)
        );
        for (bad, why) in [
            ("type=bind,target=/x", "type=bind is not supported"),
            ("target=/x", "type=bind is not supported"),
            ("type=secret,id=x", "type=secret"),
            ("type=cache", "needs a target"),
            ("type=cache,target=/proc/x", "the sandbox's own"),
            ("type=cache,target=/", "the sandbox's own"),
            ("type=cache,target=/x,sharing=maybe", "sharing=maybe"),
            (
                "type=cache,target=/x,from=stage",
                "\"from\" is not supported",
            ),
            ("type=cache,target=/x,mode=999", "not an octal mode"),
        ] {
            let err = parse(bad, "/").unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
