//! The launcher's side of a [`Capture`]: the overlay's upper layer copied
//! into the caller's directory, in the form of an OCI layer, once every
//! process of the container is gone.
//!
//! Nothing here follows a link the container could have planted: each
//! directory is opened relative to its parent's handle with `O_NOFOLLOW`,
//! each entry is looked at with `AT_SYMLINK_NOFOLLOW` before it is opened
//! and checked again by `fstat` on the descriptor, files are read
//! `O_NONBLOCK` (a FIFO is refused before it is opened, and could not hang
//! the reader anyway) with a bound, and symbolic links are recreated from
//! their target text. The copies are created fresh (`O_EXCL`,
//! `O_NOFOLLOW`, `mkdirat`) under the caller's directory, which the
//! container never saw.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use crate::spec::{Capture, CaptureRefusal, Captured, Refusal};

/// The deepest directory copied: each level holds two descriptors open.
const MAX_DEPTH: usize = 128;
/// The overlayfs attribute of a directory that hides the lower layers'.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The whiteout prefix of OCI layers.
const WHITEOUT: &[u8] = b".wh.";
/// The name of an opaque directory's marker in OCI layers.
const OPAQUE_MARKER: &CStr = c".wh..wh..opq";

/// Fails unless `dir` is an empty directory (not a link to one).
pub(crate) fn check_empty(dir: &Path) -> Result<(), String> {
    let fd = open_dir(rustix::fs::CWD, dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
    let mut entries =
        rustix::fs::Dir::read_from(&fd).map_err(|e| format!("read {}: {e}", dir.display()))?;
    let other = entries.find(|e| {
        e.as_ref().map_or(true, |e| {
            ![&b"."[..], b".."].contains(&e.file_name().to_bytes())
        })
    });
    match other {
        None => Ok(()),
        Some(Ok(_)) => Err(format!("capture directory {} is not empty", dir.display())),
        Some(Err(e)) => Err(format!("read {}: {e}", dir.display())),
    }
}

/// One directory being copied.
struct Frame {
    src: OwnedFd,
    dst: OwnedFd,
    /// Its path relative to the root.
    path: PathBuf,
    /// The names still to copy.
    names: std::vec::IntoIter<CString>,
}

/// Copies the upper layer at `upper` into `capture.dir`. `Err` is a failure
/// of the host side (the caller's directory); a refusal is the container's.
pub(crate) fn copy_upper(
    upper: &Path,
    capture: &Capture,
) -> Result<Result<Captured, CaptureRefusal>, String> {
    let src =
        open_dir(rustix::fs::CWD, upper).map_err(|e| format!("open {}: {e}", upper.display()))?;
    let dst = open_dir(rustix::fs::CWD, &capture.dir)
        .map_err(|e| format!("open {}: {e}", capture.dir.display()))?;
    let mut copy = Copy {
        capture,
        done: Captured {
            entries: 0,
            bytes: 0,
        },
    };
    let root = match copy.frame(src, dst, PathBuf::new()) {
        Ok(frame) => frame,
        Err(step) => return step.split(),
    };
    let mut stack = vec![root];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        let depth = stack.len();
        match copy.entry(stack.last().expect("a frame"), &name, depth) {
            Ok(Some(child)) => stack.push(child),
            Ok(None) => {}
            Err(step) => return step.split(),
        }
    }
    Ok(Ok(copy.done))
}

/// Why a copy stopped.
enum Stop {
    /// The host side failed.
    Host(String),
    /// The container left something that is refused.
    Refused(CaptureRefusal),
}

impl Stop {
    fn split(self) -> Result<Result<Captured, CaptureRefusal>, String> {
        match self {
            Self::Host(e) => Err(e),
            Self::Refused(r) => Ok(Err(r)),
        }
    }
}

struct Copy<'a> {
    capture: &'a Capture,
    done: Captured,
}

impl Copy<'_> {
    /// A frame for the directory `src`, copied to `dst`: its names read
    /// (and counted against the entry bound) and, when it is opaque, its
    /// marker written.
    fn frame(&mut self, src: OwnedFd, dst: OwnedFd, path: PathBuf) -> Result<Frame, Stop> {
        let unreadable = |e: Errno| entry_refusal(&path, unreadable(e));
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&src).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = entry.file_name();
            if [&b"."[..], b".."].contains(&name.to_bytes()) {
                continue;
            }
            self.count()?;
            names.push(name.to_owned());
        }
        names.sort();
        let mut flag = [0u8; 2];
        match rustix::fs::fgetxattr(&src, OPAQUE_XATTR, &mut flag) {
            Ok(1) if flag[0] == b'y' => {
                self.count()?;
                create_file(&dst, OPAQUE_MARKER, 0o644)
                    .map_err(|e| host(&self.capture.dir, &path.join(".wh..wh..opq"), e))?;
            }
            _ => {}
        }
        Ok(Frame {
            src,
            dst,
            path,
            names: names.into_iter(),
        })
    }

    fn count(&mut self) -> Result<(), Stop> {
        self.done.entries += 1;
        if self.done.entries > self.capture.max_entries {
            return Err(Stop::Refused(CaptureRefusal::TooManyEntries {
                limit: self.capture.max_entries,
            }));
        }
        Ok(())
    }

    /// Copies the entry `name` of `frame`; a directory gives its frame.
    fn entry(&mut self, frame: &Frame, name: &CStr, depth: usize) -> Result<Option<Frame>, Stop> {
        let path = frame.path.join(OsStr::from_bytes(name.to_bytes()));
        if name.to_bytes().starts_with(WHITEOUT) {
            return Err(Stop::Refused(CaptureRefusal::ReservedName { path }));
        }
        let stat = rustix::fs::statat(&frame.src, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| entry_refusal(&path, unreadable(e)))?;
        let dir = &self.capture.dir;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                if depth >= MAX_DEPTH {
                    return Err(Stop::Refused(CaptureRefusal::TooDeep {
                        path,
                        limit: MAX_DEPTH,
                    }));
                }
                let src =
                    open_dir(&frame.src, name).map_err(|e| entry_refusal(&path, unreadable(e)))?;
                rustix::fs::mkdirat(&frame.dst, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| host(dir, &path, e))?;
                let dst = open_dir(&frame.dst, name).map_err(|e| host(dir, &path, e))?;
                keep_metadata(&dst, &stat).map_err(|e| host(dir, &path, e))?;
                self.frame(src, dst, path).map(Some)
            }
            FileType::RegularFile => {
                self.file(frame, name, &path)?;
                Ok(None)
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&frame.src, name, Vec::new())
                    .map_err(|e| entry_refusal(&path, unreadable(e)))?;
                rustix::fs::symlinkat(target.as_c_str(), &frame.dst, name)
                    .map_err(|e| host(dir, &path, e))?;
                rustix::fs::chownat(
                    &frame.dst,
                    name,
                    Some(Uid::from_raw(stat.st_uid)),
                    Some(Gid::from_raw(stat.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| host(dir, &path, e))?;
                Ok(None)
            }
            // How overlayfs records a deletion.
            FileType::CharacterDevice if stat.st_rdev == 0 => {
                let marker = [WHITEOUT, name.to_bytes()].concat();
                let marker = CString::new(marker).expect("a file name has no NUL");
                create_file(&frame.dst, &marker, 0o644).map_err(|e| host(dir, &path, e))?;
                Ok(None)
            }
            other => Err(entry_refusal(&path, refusal_for(other))),
        }
    }

    /// Copies the regular file `name` of `frame`, within the byte bound.
    fn file(&mut self, frame: &Frame, name: &CStr, path: &Path) -> Result<(), Stop> {
        let refused = |r| entry_refusal(path, r);
        let fd = rustix::fs::openat(
            &frame.src,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| refused(unreadable(e)))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| refused(unreadable(e)))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {}
            other => return Err(refused(refusal_for(other))),
        }
        let limit = self.capture.max_bytes;
        let left = limit - self.done.bytes;
        let too_many = || Stop::Refused(CaptureRefusal::TooManyBytes { limit });
        if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > left {
            return Err(too_many());
        }
        // Private until its owner and mode are the container's.
        let out =
            create_file(&frame.dst, name, 0o600).map_err(|e| host(&self.capture.dir, path, e))?;
        // Read with the bound whatever the size said: nothing may grow a
        // file past what was promised.
        let mut src = File::from(fd).take(left + 1);
        let mut out = File::from(out);
        let mut buf = vec![0u8; 64 << 10];
        let mut copied = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(refused(Refusal::Unreadable {
                        reason: e.to_string(),
                    }));
                }
            };
            copied += n as u64;
            if copied > left {
                return Err(too_many());
            }
            out.write_all(&buf[..n]).map_err(|e| {
                Stop::Host(format!(
                    "write {}: {e}",
                    self.capture.dir.join(path).display()
                ))
            })?;
        }
        self.done.bytes += copied;
        keep_metadata(&out, &stat).map_err(|e| host(&self.capture.dir, path, e))?;
        Ok(())
    }
}

/// Gives the copy `fd` the owner and permission bits (setuid, setgid and
/// sticky included) of the container's `stat`: the owner first, since a
/// change of owner clears the setuid bits.
fn keep_metadata(fd: impl AsFd, stat: &rustix::fs::Stat) -> rustix::io::Result<()> {
    rustix::fs::fchown(
        &fd,
        Some(Uid::from_raw(stat.st_uid)),
        Some(Gid::from_raw(stat.st_gid)),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(stat.st_mode & 0o7777))
}

/// Opens the directory `path` of `at`, never through a link.
fn open_dir<P: rustix::path::Arg>(at: impl AsFd, path: P) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Creates the file `name` in `dir`; it must not exist.
fn create_file(dir: impl AsFd, name: &CStr, mode: u32) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
}

fn unreadable(e: Errno) -> Refusal {
    Refusal::Unreadable {
        reason: e.to_string(),
    }
}

fn entry_refusal(path: &Path, refusal: Refusal) -> Stop {
    Stop::Refused(CaptureRefusal::Entry {
        path: path.to_owned(),
        refusal,
    })
}

fn host(dir: &Path, path: &Path, e: Errno) -> Stop {
    Stop::Host(format!("create {}: {e}", dir.join(path).display()))
}

fn refusal_for(kind: FileType) -> Refusal {
    match kind {
        FileType::Fifo => Refusal::Fifo,
        FileType::Socket => Refusal::Socket,
        FileType::CharacterDevice | FileType::BlockDevice => Refusal::Device,
        FileType::Symlink => Refusal::Symlink,
        FileType::Directory => Refusal::Directory,
        FileType::RegularFile | FileType::Unknown => Refusal::Unreadable {
            reason: "not readable as a regular file".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use nix::sys::stat::{Mode as NixMode, SFlag, makedev, mknod};
    use nix::unistd::mkfifo;

    use super::*;

    fn capture(dir: &Path) -> Capture {
        Capture::new(dir)
    }

    /// Every entry of `dir`, relative, with a letter for its kind (d, f,
    /// l), sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(rel) = todo.pop() {
            for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
                let e = e.unwrap();
                let path = rel.join(e.file_name());
                let kind = e.file_type().unwrap();
                let letter = if kind.is_dir() {
                    todo.push(path.clone());
                    'd'
                } else if kind.is_symlink() {
                    'l'
                } else {
                    'f'
                };
                out.push(format!("{letter} {}", path.display()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn an_upper_layer_becomes_a_layer_tree() {
        let upper = tempfile::tempdir().unwrap();
        let u = |p: &str| upper.path().join(p);
        std::fs::create_dir_all(u("opt/app/__pycache__")).unwrap();
        std::fs::write(u("opt/app/__pycache__/m.pyc"), b"bytecode").unwrap();
        std::fs::write(u("opt/run"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(u("opt/run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        symlink("/etc/shadow", u("opt/link")).unwrap();
        std::fs::create_dir(u("etc")).unwrap();
        // Root can make whiteouts; elsewhere this part is skipped.
        let whiteout = mknod(
            &u("etc/gone"),
            SFlag::S_IFCHR,
            NixMode::empty(),
            makedev(0, 0),
        );
        let opaque = rustix::fs::setxattr(
            u("opt/app").as_path(),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        );
        let out = tempfile::tempdir().unwrap();
        let done = copy_upper(upper.path(), &capture(out.path()))
            .unwrap()
            .unwrap();
        let mut want = vec![
            "d etc",
            "d opt",
            "d opt/app",
            "d opt/app/__pycache__",
            "f opt/app/__pycache__/m.pyc",
            "f opt/run",
            "l opt/link",
        ];
        if whiteout.is_ok() {
            want.push("f etc/.wh.gone");
        }
        if opaque.is_ok() {
            want.push("f opt/app/.wh..wh..opq");
        }
        want.sort_unstable();
        assert_eq!(listing(out.path()), want);
        assert_eq!(done.bytes, 8 + 10);
        assert_eq!(done.entries, want.len() as u64);
        let o = |p: &str| out.path().join(p);
        assert_eq!(
            std::fs::read(o("opt/app/__pycache__/m.pyc")).unwrap(),
            b"bytecode"
        );
        assert_eq!(
            std::fs::read_link(o("opt/link")).unwrap(),
            Path::new("/etc/shadow")
        );
        let mode = |p: &str| std::fs::metadata(o(p)).unwrap().permissions().mode() & 0o777;
        // Modes are kept, as Docker keeps them.
        assert_eq!(mode("opt/run"), 0o700);
        assert_eq!(mode("opt/app/__pycache__/m.pyc"), 0o644);
    }

    #[test]
    fn what_cannot_be_a_layer_or_is_too_much_is_refused() {
        type Make = fn(&Path);
        let cases: [(&str, Make, &str); 6] = [
            (
                "fifo",
                |u| mkfifo(&u.join("pipe"), NixMode::from_bits_truncate(0o600)).unwrap(),
                "pipe: a FIFO",
            ),
            (
                "socket",
                |u| drop(std::os::unix::net::UnixListener::bind(u.join("sock")).unwrap()),
                "sock: a socket",
            ),
            (
                "reserved",
                |u| std::fs::write(u.join(".wh.x"), b"").unwrap(),
                ".wh.x: `.wh.` names",
            ),
            (
                "bytes",
                |u| std::fs::write(u.join("big"), vec![0u8; 101]).unwrap(),
                "more than 100 bytes",
            ),
            (
                "entries",
                |u| (0..11).for_each(|i| std::fs::write(u.join(i.to_string()), b"").unwrap()),
                "more than 10 entries",
            ),
            (
                "deep",
                |u| std::fs::create_dir_all(u.join("d/".repeat(MAX_DEPTH + 1))).unwrap(),
                "nested deeper than 128",
            ),
        ];
        for (what, make, want) in cases {
            let upper = tempfile::tempdir().unwrap();
            make(upper.path());
            let out = tempfile::tempdir().unwrap();
            let mut c = capture(out.path());
            c.max_bytes = 100;
            if what == "entries" {
                c.max_entries = 10;
            }
            let refusal = copy_upper(upper.path(), &c).unwrap().unwrap_err();
            assert!(refusal.to_string().contains(want), "{what}: {refusal}");
        }
        // A tree exactly at the bounds is taken.
        let upper = tempfile::tempdir().unwrap();
        std::fs::write(upper.path().join("f"), vec![0u8; 100]).unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut c = capture(out.path());
        c.max_bytes = 100;
        c.max_entries = 1;
        assert_eq!(
            copy_upper(upper.path(), &c).unwrap(),
            Ok(Captured {
                entries: 1,
                bytes: 100
            })
        );
    }

    #[test]
    fn the_capture_directory_must_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        check_empty(dir.path()).unwrap();
        std::fs::write(dir.path().join("x"), b"").unwrap();
        assert!(check_empty(dir.path()).unwrap_err().contains("not empty"));
        let link = dir.path().join("link");
        symlink(dir.path(), &link).unwrap();
        assert!(check_empty(&link).is_err());
    }
}
