//! The launcher's side of `/io`: a tmpfs of its own, filled with the
//! caller's inputs before the container starts and emptied, safely, into
//! the caller's directory after every process of the container is gone.
//!
//! Nothing here follows a link the container could have planted: outputs
//! are opened relative to the `/io` directory handle with `O_NOFOLLOW`
//! and `O_NONBLOCK`, checked by `fstat` on the open descriptor (a regular
//! file with one link, under the size cap) and copied with a bound; the
//! host copy is created fresh (`O_EXCL`, `O_NOFOLLOW`) in the caller's
//! directory, which the container never saw.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::unistd::{Gid, Uid, chown};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::spec::{Collected, Io, Refusal};

/// Mounts the tmpfs at `dir` (created), copies the inputs in and hands the
/// directory to the container's user.
pub(crate) fn prepare(io: &Io, dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let options = format!("size={},mode=0700", io.size_bytes);
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|e| format!("mount the /io tmpfs: {e}"))?;
    fill(io, dir, uid, gid)
}

/// Copies the inputs of `io` into the (empty) `/io` at `dir` and hands it
/// to the container's user.
pub(crate) fn fill(io: &Io, dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    for name in &io.inputs {
        let from = io.dir.join(name);
        let to = dir.join(name);
        let copied = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags(OFlags::NOFOLLOW))
            .open(&from)
            .and_then(|mut src| {
                let mut dst = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&to)?;
                std::io::copy(&mut src, &mut dst)
            });
        copied.map_err(|e| match e.raw_os_error() {
            Some(code) if code == Errno::NOSPC.raw_os_error() => format!(
                "input {name} does not fit in the {}-byte /io",
                io.size_bytes
            ),
            _ => format!("copy input {}: {e}", from.display()),
        })?;
    }
    chown(dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| format!("hand /io to uid {uid}: {e}"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod /io: {e}"))
}

/// Mounts a warm container's `/tmp` at `dir` (created): a tmpfs of
/// `size` bytes, world-writable and sticky as `/tmp` is.
pub(crate) fn mount_tmp(dir: &Path, size: u64) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let options = format!("size={size},mode=1777");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| format!("mount the /tmp tmpfs: {e}"))
}

/// Removes everything in `dir`, which stays. Links are removed, never
/// followed (`remove_dir_all` opens each directory relative to its
/// parent without following links).
pub(crate) fn empty(dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(|e| format!("remove {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Collects every output named in `io` from the tmpfs at `dir`.
pub(crate) fn collect(io: &Io, dir: &Path) -> Result<Vec<Collected>, String> {
    let handle = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", dir.display()))?;
    Ok(io
        .outputs
        .iter()
        .map(|name| Collected {
            name: name.clone(),
            result: collect_one(&handle, name, io.max_output_bytes, &io.dir.join(name)),
        })
        .collect())
}

/// Copies the regular file `name` of the directory `dir` to `dest`, at
/// most `limit` bytes of it, or says why not.
pub(crate) fn collect_one(
    dir: impl AsFd,
    name: &str,
    limit: u64,
    dest: &Path,
) -> Result<u64, Refusal> {
    let unreadable = |e: &dyn std::fmt::Display| Refusal::Unreadable {
        reason: e.to_string(),
    };
    // Looked at before it is opened, so that a FIFO or a device is never
    // opened at all; checked again on the descriptor.
    match rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {}
        Ok(stat) => return Err(refusal_for(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => return Err(Refusal::Missing),
        Err(e) => return Err(unreadable(&e)),
    }
    let fd = match rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(Refusal::Symlink),
        Err(Errno::NOENT) => return Err(Refusal::Missing),
        Err(e) => return Err(unreadable(&e)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| unreadable(&e))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        other => return Err(refusal_for(other)),
    }
    if stat.st_nlink != 1 {
        return Err(Refusal::HardLink {
            links: stat.st_nlink as u64,
        });
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > limit {
        return Err(Refusal::TooLarge { size, limit });
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_flags(OFlags::NOFOLLOW))
        .open(dest)
        .map_err(|e| unreadable(&format!("create {}: {e}", dest.display())))?;
    // The size was checked, but read with a bound all the same: nothing
    // may grow a file past what was promised.
    let mut src = File::from(fd).take(limit + 1);
    let copied = std::io::copy(&mut src, &mut out).map_err(|e| unreadable(&e))?;
    if copied > limit {
        drop(out);
        let _ = std::fs::remove_file(dest);
        return Err(Refusal::TooLarge {
            size: copied,
            limit,
        });
    }
    out.flush().map_err(|e| unreadable(&e))?;
    Ok(copied)
}

fn refusal_for(kind: FileType) -> Refusal {
    match kind {
        FileType::Symlink => Refusal::Symlink,
        FileType::Directory => Refusal::Directory,
        FileType::Fifo => Refusal::Fifo,
        FileType::Socket => Refusal::Socket,
        FileType::CharacterDevice | FileType::BlockDevice => Refusal::Device,
        FileType::RegularFile | FileType::Unknown => Refusal::Unreadable {
            reason: "not readable as a regular file".into(),
        },
    }
}

/// `OFlags` as the raw flags `OpenOptionsExt::custom_flags` takes.
fn libc_flags(flags: OFlags) -> i32 {
    flags.bits() as i32
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use nix::sys::stat::{Mode as NixMode, SFlag, makedev, mknod};
    use nix::unistd::mkfifo;

    use super::*;

    /// Each hostile kind of output is refused by name; a good one is
    /// copied whole.
    #[test]
    fn outputs_are_regular_single_link_files_under_the_limit() {
        let io = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("secret");
        std::fs::write(&secret, b"host secret").unwrap();
        let p = |n: &str| io.path().join(n);
        std::fs::write(p("good"), b"{\"ok\": true}").unwrap();
        std::os::unix::fs::symlink(&secret, p("link")).unwrap();
        std::fs::create_dir(p("dir")).unwrap();
        mkfifo(&p("fifo"), NixMode::from_bits_truncate(0o600)).unwrap();
        let _socket = UnixListener::bind(p("socket")).unwrap();
        std::fs::write(p("twice"), b"x").unwrap();
        std::fs::hard_link(p("twice"), p("twice-again")).unwrap();
        std::fs::write(p("big"), vec![b'x'; 101]).unwrap();
        std::fs::write(p("exact"), vec![b'x'; 100]).unwrap();
        let device = mknod(
            &p("device"),
            SFlag::S_IFCHR,
            NixMode::from_bits_truncate(0o666),
            makedev(1, 3),
        );

        let dir = File::open(io.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let collect = |name: &str| collect_one(&dir, name, 100, &out.path().join(name));
        assert_eq!(collect("good"), Ok(12));
        assert_eq!(
            std::fs::read(out.path().join("good")).unwrap(),
            b"{\"ok\": true}"
        );
        assert_eq!(collect("exact"), Ok(100));
        assert_eq!(collect("missing"), Err(Refusal::Missing));
        assert_eq!(collect("link"), Err(Refusal::Symlink));
        assert_eq!(collect("dir"), Err(Refusal::Directory));
        assert_eq!(collect("fifo"), Err(Refusal::Fifo));
        assert_eq!(collect("socket"), Err(Refusal::Socket));
        assert_eq!(collect("twice"), Err(Refusal::HardLink { links: 2 }));
        assert_eq!(
            collect("big"),
            Err(Refusal::TooLarge {
                size: 101,
                limit: 100
            })
        );
        if device.is_ok() {
            assert_eq!(collect("device"), Err(Refusal::Device));
        }
        // Nothing refused reached the host directory.
        let mut kept: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["exact", "good"]);
        // An output already in the host directory is never overwritten.
        assert!(matches!(collect("good"), Err(Refusal::Unreadable { .. })));
    }
}
