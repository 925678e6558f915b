//! Hostile and ordinary layers through `unpack`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;

const MTIME: u64 = 1_600_000_000;

/// A tar built entry by entry with names written straight into the header,
/// so `..` and absolute names get through as an attacker would write them.
struct Tar {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl Tar {
    fn new() -> Self {
        Self {
            builder: Some(tar::Builder::new(Vec::new())),
        }
    }

    fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], mode: u32, data: &[u8]) -> Self {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(MTIME);
        h.set_cksum();
        self.builder.as_mut().unwrap().append(&h, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw(EntryType::Regular, name.as_bytes(), b"", 0o644, data)
    }

    fn dir(self, name: &str, mode: u32) -> Self {
        self.raw(EntryType::Directory, name.as_bytes(), b"", mode, b"")
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(
            EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            0o777,
            b"",
        )
    }

    fn hard_link(self, name: &str, target: &str) -> Self {
        self.raw(
            EntryType::Link,
            name.as_bytes(),
            target.as_bytes(),
            0o644,
            b"",
        )
    }

    /// A PAX extended header whose records apply to the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // `LEN KEY=VALUE\n`, where LEN counts its own digits too.
            let body = key.len() + value.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(EntryType::XHeader, b"PaxHeader", b"", 0o644, &data)
    }

    fn bytes(mut self) -> Vec<u8> {
        self.builder.take().unwrap().into_inner().unwrap()
    }
}

fn compress(c: Compression, tar: &[u8]) -> Vec<u8> {
    let mut e = crate::compression::Encoder::new(c, Vec::new()).unwrap();
    e.write_all(tar).unwrap();
    e.finish().unwrap()
}

/// A scratch area: `parent/` receives the layer, `outside/` is what an
/// escape would hit.
struct Scratch {
    base: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("parent")).unwrap();
        fs::create_dir(base.path().join("outside")).unwrap();
        Self { base }
    }
    fn parent(&self) -> PathBuf {
        self.base.path().join("parent")
    }
    fn outside(&self) -> PathBuf {
        self.base.path().join("outside")
    }
    fn dest(&self) -> PathBuf {
        self.parent().join("layer")
    }
    fn assert_clean(&self, case: &str) {
        for dir in [self.base.path().to_owned(), self.parent(), self.outside()] {
            let mut left: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            left.sort();
            let want: Vec<std::ffi::OsString> = if dir == self.base.path() {
                vec!["outside".into(), "parent".into()]
            } else {
                Vec::new()
            };
            assert_eq!(left, want, "{case}: leftovers in {}", dir.display());
        }
    }
}

type Check = fn(&Error) -> bool;

struct Case {
    name: &'static str,
    input: fn(&Path) -> Vec<u8>,
    compression: Compression,
    opts: UnpackOptions,
    check: Check,
}

fn case(name: &'static str, input: fn(&Path) -> Vec<u8>, check: Check) -> Case {
    Case {
        name,
        input,
        compression: Compression::None,
        opts: UnpackOptions::default(),
        check,
    }
}

fn gzipped_layer() -> Vec<u8> {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    compress(Compression::Gzip, &Tar::new().file("big", &payload).bytes())
}

#[test]
fn hostile_layers_are_refused_and_leave_nothing() {
    let cases = [
        case(
            "dot-dot name",
            |_| Tar::new().file("../escape", b"x").bytes(),
            |e| matches!(e, Error::ParentTraversal { entry, .. } if entry == Path::new("../escape")),
        ),
        case(
            "absolute name climbing out",
            |_| {
                Tar::new()
                    .file("/../etc/passwd", b"root::0:0::/:/bin/sh\n")
                    .bytes()
            },
            |e| matches!(e, Error::ParentTraversal { entry, .. } if entry == Path::new("/../etc/passwd")),
        ),
        case(
            "dot-dot in the middle",
            |_| Tar::new().file("a/../../x", b"x").bytes(),
            |e| matches!(e, Error::ParentTraversal { .. }),
        ),
        case(
            "dot-dot climbing out after a dot-slash",
            |_| {
                Tar::new()
                    .dir("./", 0o755)
                    .file("./a/b/../../../x", b"x")
                    .bytes()
            },
            |e| matches!(e, Error::ParentTraversal { .. }),
        ),
        case(
            "a file naming the root",
            |_| {
                Tar::new()
                    .raw(EntryType::Regular, b"/.", b"", 0o644, b"x")
                    .bytes()
            },
            |e| matches!(e, Error::InvalidEntry { .. }),
        ),
        case(
            "a symlink naming the root",
            |_| Tar::new().symlink("/", "/etc").bytes(),
            |e| matches!(e, Error::InvalidEntry { .. }),
        ),
        case(
            "symlink climbing out, then a write through it",
            |_| {
                Tar::new()
                    .symlink("link", "../../..")
                    .file("link/x", b"x")
                    .bytes()
            },
            |e| matches!(e, Error::SymlinkEscape { entry, .. } if entry == Path::new("link")),
        ),
        case(
            "write through an absolute symlink to /etc",
            |_| {
                Tar::new()
                    .symlink("link", "/etc")
                    .file("link/passwd", b"x")
                    .bytes()
            },
            |e| {
                matches!(e, Error::SymlinkedParent { entry, parent }
                if entry == Path::new("link/passwd") && parent == Path::new("link"))
            },
        ),
        case(
            "write through an absolute symlink to a real outside directory",
            |outside| {
                Tar::new()
                    .symlink("link", outside.to_str().unwrap())
                    .file("link/x", b"x")
                    .bytes()
            },
            |e| matches!(e, Error::SymlinkedParent { .. }),
        ),
        case(
            "write through a symlink that stays inside",
            |_| {
                Tar::new()
                    .dir("sub/", 0o755)
                    .symlink("link", "sub")
                    .file("link/x", b"x")
                    .bytes()
            },
            |e| matches!(e, Error::SymlinkedParent { .. }),
        ),
        case(
            "parent is a file",
            |_| Tar::new().file("f", b"x").file("f/x", b"y").bytes(),
            |e| matches!(e, Error::ParentNotDirectory { parent, .. } if parent == Path::new("f")),
        ),
        case(
            "hard link to ../outside",
            |_| Tar::new().hard_link("h", "../outside").bytes(),
            |e| {
                matches!(e, Error::ParentTraversal { entry, path }
                if entry == Path::new("h") && path == Path::new("../outside"))
            },
        ),
        case(
            "hard link to an absolute path climbing out",
            |_| Tar::new().hard_link("h", "/../etc/passwd").bytes(),
            |e| {
                matches!(e, Error::ParentTraversal { entry, path }
                if entry == Path::new("h") && path == Path::new("/../etc/passwd"))
            },
        ),
        case(
            "hard link to the root",
            |_| Tar::new().hard_link("h", "/").bytes(),
            |e| matches!(e, Error::InvalidHardLink { .. }),
        ),
        case(
            "hard link to a host file by its absolute name",
            // Read as root-relative: `etc/passwd` of the layer, not the host's.
            |_| Tar::new().hard_link("h", "/etc/passwd").bytes(),
            |e| matches!(e, Error::InvalidHardLink { entry, .. } if entry == Path::new("h")),
        ),
        case(
            "hard link through a symlinked directory",
            |_| {
                Tar::new()
                    .dir("dir/", 0o755)
                    .file("dir/f", b"x")
                    .symlink("s", "dir")
                    .hard_link("h", "s/f")
                    .bytes()
            },
            |e| matches!(e, Error::InvalidHardLink { entry, .. } if entry == Path::new("h")),
        ),
        case(
            "hard link to a symlink pointing out",
            |_| {
                Tar::new()
                    .symlink("s", "/etc/shadow")
                    .hard_link("h", "s")
                    .bytes()
            },
            |e| matches!(e, Error::InvalidHardLink { .. }),
        ),
        case(
            "hard link to a file not unpacked yet",
            |_| {
                Tar::new()
                    .hard_link("h", "later")
                    .file("later", b"x")
                    .bytes()
            },
            |e| matches!(e, Error::InvalidHardLink { .. }),
        ),
        case(
            "hard link to a directory",
            |_| Tar::new().dir("d/", 0o755).hard_link("h", "d").bytes(),
            |e| matches!(e, Error::InvalidHardLink { .. }),
        ),
        case(
            "entry inside a whiteout",
            |_| Tar::new().file(".wh.x/y", b"x").bytes(),
            |e| matches!(e, Error::InvalidEntry { .. }),
        ),
        case(
            "sparse file",
            |_| {
                Tar::new()
                    .raw(EntryType::GNUSparse, b"s", b"", 0o644, b"")
                    .bytes()
            },
            |e| matches!(e, Error::UnsupportedEntry { kind: 'S', .. }),
        ),
        case(
            "oversized long name",
            |_| {
                let name = vec![b'a'; 2 << 20];
                Tar::new()
                    .raw(EntryType::GNULongName, b"././@LongLink", b"", 0o644, &name)
                    .bytes()
            },
            |e| matches!(e, Error::InvalidEntry { .. }),
        ),
        case(
            "pax record longer than its header",
            |_| {
                Tar::new()
                    .raw(EntryType::XHeader, b"PaxHeader", b"", 0o644, b"99 path=x\n")
                    .file("f", b"x")
                    .bytes()
            },
            |e| matches!(e, Error::InvalidEntry { reason, .. } if reason.contains("pax")),
        ),
        case(
            "pax record without `=`",
            |_| {
                Tar::new()
                    .raw(EntryType::XHeader, b"PaxHeader", b"", 0o644, b"9 pathxx\n")
                    .file("f", b"x")
                    .bytes()
            },
            |e| matches!(e, Error::InvalidEntry { reason, .. } if reason.contains("pax")),
        ),
        case(
            "long name with no entry after it",
            |_| {
                Tar::new()
                    .raw(EntryType::GNULongName, b"././@LongLink", b"", 0o644, b"x")
                    .bytes()
            },
            |e| matches!(e, Error::CorruptStream { .. }),
        ),
        case(
            "truncated plain tar",
            |_| {
                let tar = Tar::new().file("f", &[7; 4096]).bytes();
                tar[..2048].to_vec()
            },
            |e| matches!(e, Error::CorruptStream { .. }),
        ),
        case(
            "garbage",
            |_| (0..4096u32).map(|i| (i * 31 % 256) as u8).collect(),
            |e| matches!(e, Error::CorruptStream { .. }),
        ),
        Case {
            compression: Compression::Gzip,
            ..case(
                "truncated gzip",
                |_| {
                    let gz = gzipped_layer();
                    gz[..gz.len() / 2].to_vec()
                },
                |e| matches!(e, Error::CorruptStream { .. }),
            )
        },
        Case {
            compression: Compression::Gzip,
            ..case(
                "gzip with its trailer cut",
                |_| {
                    let gz = gzipped_layer();
                    gz[..gz.len() - 4].to_vec()
                },
                |e| matches!(e, Error::CorruptStream { .. }),
            )
        },
        Case {
            compression: Compression::Gzip,
            ..case(
                "garbage as gzip",
                |_| b"this is not gzip at all, not even close".repeat(10),
                |e| matches!(e, Error::CorruptStream { .. }),
            )
        },
        Case {
            compression: Compression::Zstd,
            ..case(
                "truncated zstd",
                |_| {
                    let z = compress(
                        Compression::Zstd,
                        &Tar::new().file("f", &[1; 100_000]).bytes(),
                    );
                    z[..z.len() - 8].to_vec()
                },
                |e| matches!(e, Error::CorruptStream { .. }),
            )
        },
        Case {
            opts: UnpackOptions {
                max_entries: 3,
                ..UnpackOptions::default()
            },
            ..case(
                "too many entries",
                |_| {
                    let mut t = Tar::new();
                    for i in 0..5 {
                        t = t.file(&format!("f{i}"), b"x");
                    }
                    t.bytes()
                },
                |e| matches!(e, Error::TooManyEntries { limit: 3 }),
            )
        },
        Case {
            opts: UnpackOptions {
                max_total_bytes: 100,
                ..UnpackOptions::default()
            },
            ..case(
                "too many bytes",
                |_| {
                    Tar::new()
                        .file("small", &[0; 60])
                        .file("big", &[0; 60])
                        .bytes()
                },
                |e| matches!(e, Error::TooManyBytes { entry, limit: 100 } if entry == Path::new("big")),
            )
        },
        Case {
            compression: Compression::Gzip,
            opts: UnpackOptions {
                max_total_bytes: 1 << 20,
                ..UnpackOptions::default()
            },
            ..case(
                "gzip bomb",
                |_| {
                    let mut e =
                        crate::compression::Encoder::new(Compression::Gzip, Vec::new()).unwrap();
                    let mut h = Header::new_gnu();
                    h.set_path("bomb").unwrap();
                    h.set_size(1 << 30);
                    h.set_cksum();
                    e.write_all(h.as_bytes()).unwrap();
                    let zeros = vec![0u8; 1 << 20];
                    for _ in 0..8 {
                        e.write_all(&zeros).unwrap();
                    }
                    e.finish().unwrap()
                },
                |e| matches!(e, Error::TooManyBytes { .. }),
            )
        },
    ];
    for c in cases {
        let scratch = Scratch::new();
        let input = (c.input)(&scratch.outside());
        let err = unpack(&input[..], c.compression, &scratch.dest(), &c.opts).expect_err(c.name);
        assert!((c.check)(&err), "{}: unexpected error {err:?}", c.name);
        let text = err.to_string();
        assert!(!text.ends_with('.'), "{}: {text}", c.name);
        scratch.assert_clean(c.name);
    }
}

#[test]
fn refuses_an_existing_destination() {
    let scratch = Scratch::new();
    fs::create_dir(scratch.dest()).unwrap();
    let tar = Tar::new().file("f", b"x").bytes();
    let err = unpack(
        &tar[..],
        Compression::None,
        &scratch.dest(),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::DestinationExists { .. }), "{err}");
}

#[test]
fn ordinary_layer_unpacks_with_modes_mtimes_and_links() {
    let scratch = Scratch::new();
    let mut tar = Tar::new()
        .dir("./", 0o755)
        .dir("./usr/", 0o755)
        .dir("usr/bin/", 0o755)
        .raw(
            EntryType::Regular,
            b"usr/bin/sudo",
            b"",
            0o4755,
            b"#!/bin/sh\n",
        )
        .raw(EntryType::Regular, b"usr/bin/sg", b"", 0o2711, b"")
        .raw(EntryType::Directory, b"tmp/", b"", 0o1777, b"")
        .symlink("usr/bin/python", "/usr/bin/python3")
        .symlink("usr/bin/py", "python")
        .hard_link("usr/bin/sudo2", "usr/bin/sudo")
        .raw(EntryType::Char, b"dev/null", b"", 0o666, b"")
        .raw(EntryType::Block, b"dev/sda", b"", 0o660, b"")
        .raw(EntryType::Fifo, b"run/fifo", b"", 0o600, b"")
        .dir("ro/", 0o555)
        .file("ro/inside", b"still written")
        .file("dup", b"first")
        .file("dup", b"second")
        .bytes();
    // Writers pad to a 10 KiB record; the diff-id covers that padding too.
    tar.resize(tar.len().div_ceil(10240) * 10240, 0);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let dest = scratch.parent().join(format!("{c:?}"));
        let stats = unpack(&compress(c, &tar)[..], c, &dest, &UnpackOptions::default()).unwrap();
        assert_eq!(stats.diff_id, Digest::of(&tar), "{c:?}");
        assert_eq!(stats.entries, 16);
        assert_eq!(stats.dropped, 3);
        assert_eq!(stats.bytes, 10 + 13 + 5 + 6);
        let mode = |p: &str| {
            fs::symlink_metadata(dest.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("usr/bin/sudo"), 0o755, "setuid cleared");
        assert_eq!(mode("usr/bin/sg"), 0o711, "setgid cleared");
        assert_eq!(mode("tmp"), 0o777, "sticky cleared");
        assert_eq!(mode("ro"), 0o555);
        let meta = fs::metadata(dest.join("usr/bin/sudo")).unwrap();
        assert_eq!(meta.mtime() as u64, MTIME);
        assert_eq!(
            meta.ino(),
            fs::metadata(dest.join("usr/bin/sudo2")).unwrap().ino()
        );
        assert_eq!(
            fs::metadata(dest.join("ro")).unwrap().mtime() as u64,
            MTIME,
            "dir mtime kept"
        );
        assert_eq!(
            fs::read_link(dest.join("usr/bin/python")).unwrap(),
            Path::new("/usr/bin/python3")
        );
        assert_eq!(fs::read(dest.join("ro/inside")).unwrap(), b"still written");
        assert_eq!(fs::read(dest.join("dup")).unwrap(), b"second");
        assert!(!dest.join("dev/null").exists());
        assert!(!dest.join("run/fifo").exists());
    }
    let left: Vec<_> = fs::read_dir(scratch.parent()).unwrap().collect();
    assert_eq!(left.len(), 3, "no temp dirs left: {left:?}");
    // The read-only directory does not stop the scratch dir being removed.
    for entry in fs::read_dir(scratch.parent()).unwrap() {
        fs::set_permissions(
            entry.unwrap().path().join("ro"),
            Permissions::from_mode(0o755),
        )
        .unwrap();
    }
}

#[test]
fn whiteouts_are_recorded_not_created() {
    let scratch = Scratch::new();
    let tar = Tar::new()
        .dir("a/", 0o755)
        .file("a/.wh.b", b"")
        .file("a/.wh..wh..opq", b"")
        .file(".wh..wh..opq", b"")
        .file("a/.wh..wh.plnk", b"")
        .file(".wh.top", b"")
        .bytes();
    let stats = unpack(
        &tar[..],
        Compression::None,
        &scratch.dest(),
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(stats.whiteouts, [Path::new("a/b"), Path::new("top")]);
    assert_eq!(stats.opaque_dirs, [Path::new("a"), Path::new("")]);
    let a: Vec<_> = fs::read_dir(scratch.dest().join("a")).unwrap().collect();
    assert!(a.is_empty(), "{a:?}");
    let root: Vec<_> = fs::read_dir(scratch.dest())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(root, ["a"]);
}

#[test]
fn directory_replaced_by_symlink_keeps_its_mode_off_the_target() {
    let scratch = Scratch::new();
    let outside = scratch.outside();
    let before = fs::metadata(&outside).unwrap().permissions().mode();
    let tar = Tar::new()
        .dir("d/", 0o700)
        .dir("d/e/", 0o500)
        .symlink("d", outside.to_str().unwrap())
        .bytes();
    unpack(
        &tar[..],
        Compression::None,
        &scratch.dest(),
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::metadata(&outside).unwrap().permissions().mode(), before);
    assert!(
        fs::symlink_metadata(scratch.dest().join("d"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn long_names_from_gnu_and_pax_headers() {
    let scratch = Scratch::new();
    let long = format!("{}/file", "d".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    builder.append_data(&mut h, &long, &b"gnu"[..]).unwrap();
    // A PAX `path` record, as Go's archive/tar writes for long names.
    let pax_name = format!("{}/pax", "p".repeat(120));
    let x = Tar::new().pax(&[("path", pax_name.as_bytes())]).raw(
        EntryType::Regular,
        b"truncated-name",
        b"",
        0o644,
        b"pax",
    );
    let mut tar = builder.into_inner().unwrap();
    tar.truncate(tar.len() - 1024);
    tar.extend(x.bytes());
    let stats = unpack(
        &tar[..],
        Compression::None,
        &scratch.dest(),
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(stats.entries, 2);
    assert_eq!(fs::read(scratch.dest().join(&long)).unwrap(), b"gnu");
    assert_eq!(fs::read(scratch.dest().join(&pax_name)).unwrap(), b"pax");
}

/// What `root` holds, one line per path in order: `dir/`, `file = text`
/// (with `[N links]` when hard-linked) and `link -> target`.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    fs::read_link(&path).unwrap().display()
                ));
            } else {
                let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
                let links = match meta.nlink() {
                    1 => String::new(),
                    n => format!(" [{n} links]"),
                };
                out.push(format!("{rel} = {text}{links}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn names_are_read_as_containerd_reads_them() {
    // (what the case shows, the entries, the tree they make)
    type Build = fn(Tar) -> Tar;
    let cases: &[(&str, Build, &[&str])] = &[
        (
            "plain name",
            |t| t.file("etc/motd", b"x"),
            &["etc/", "etc/motd = x"],
        ),
        (
            "leading slash",
            |t| t.file("/etc/motd", b"x"),
            &["etc/", "etc/motd = x"],
        ),
        (
            "dot-slash",
            |t| t.file("./etc/motd", b"x"),
            &["etc/", "etc/motd = x"],
        ),
        (
            "doubled slashes and dots",
            |t| t.file("//etc/./motd", b"x"),
            &["etc/", "etc/motd = x"],
        ),
        (
            "dot-dot resolved lexically",
            |t| t.file("etc/../motd", b"x"),
            &["motd = x"],
        ),
        (
            "dot-dot after a leading slash",
            |t| t.file("/usr/lib/../bin/x", b"x"),
            &["usr/", "usr/bin/", "usr/bin/x = x"],
        ),
        (
            "directories under each spelling",
            |t| t.dir("/a/", 0o755).dir("./a/b/", 0o755).dir("a/b/c", 0o755),
            &["a/", "a/b/", "a/b/c/"],
        ),
        (
            "one path under two spellings: the later entry wins",
            |t| t.file("/etc/x", b"first").file("./etc/x", b"second"),
            &["etc/", "etc/x = second"],
        ),
        (
            "hard link with a root-relative target",
            |t| {
                t.file("/bin/busybox", b"bb")
                    .hard_link("/bin/sh", "/bin/busybox")
            },
            &[
                "bin/",
                "bin/busybox = bb [2 links]",
                "bin/sh = bb [2 links]",
            ],
        ),
        (
            "hard link target with dot-slash and dot-dot",
            |t| t.file("./bin/a", b"x").hard_link("bin/b", "./usr/../bin/a"),
            &["bin/", "bin/a = x [2 links]", "bin/b = x [2 links]"],
        ),
        (
            "symlink targets are kept as written",
            |t| {
                t.symlink("/usr/bin/python", "/usr/bin/python3")
                    .symlink("./lib", "usr/lib")
            },
            &[
                "lib -> usr/lib",
                "usr/",
                "usr/bin/",
                "usr/bin/python -> /usr/bin/python3",
            ],
        ),
        (
            "the root as /",
            |t| t.dir("/", 0o700).file("/f", b"x"),
            &["f = x"],
        ),
        ("the root as .", |t| t.dir(".", 0o700), &[]),
        ("the root as ./", |t| t.dir("./", 0o700), &[]),
        ("the root as //", |t| t.dir("//", 0o700), &[]),
        ("the root as a/..", |t| t.dir("a/..", 0o700), &[]),
    ];
    for (what, build, want) in cases {
        let scratch = Scratch::new();
        let tar = build(Tar::new()).bytes();
        let stats = unpack(
            &tar[..],
            Compression::None,
            &scratch.dest(),
            &UnpackOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(tree(&scratch.dest()), *want, "{what}");
        // A root entry changes neither the root's mode nor its mtime.
        let root = fs::metadata(scratch.dest()).unwrap();
        assert_eq!(root.permissions().mode() & 0o7777, 0o755, "{what}");
        assert_eq!(root.mtime(), 0, "{what}");
        assert!(
            stats.whiteouts.is_empty() && stats.opaque_dirs.is_empty(),
            "{what}"
        );
    }
}

#[test]
fn whiteouts_under_every_spelling() {
    // (whiteout entry, files it deletes, directories it makes opaque)
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("/etc/.wh.x", &["etc/x"], &[]),
        ("./etc/.wh.x", &["etc/x"], &[]),
        ("./.wh.top", &["top"], &[]),
        ("/.wh.top", &["top"], &[]),
        ("a/../.wh.b", &["b"], &[]),
        ("./a/.wh..wh..opq", &[], &["a"]),
        ("/a/b/.wh..wh..opq", &[], &["a/b"]),
        ("/.wh..wh..opq", &[], &[""]),
        ("./.wh..wh..opq", &[], &[""]),
    ];
    for (name, whiteouts, opaque) in cases {
        let scratch = Scratch::new();
        let tar = Tar::new().file(name, b"").bytes();
        let stats = unpack(
            &tar[..],
            Compression::None,
            &scratch.dest(),
            &UnpackOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let paths = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(paths(&stats.whiteouts), *whiteouts, "{name}");
        assert_eq!(paths(&stats.opaque_dirs), *opaque, "{name}");
        let left: Vec<_> = tree(&scratch.dest())
            .into_iter()
            .filter(|p| p.contains(".wh."))
            .collect();
        assert!(left.is_empty(), "{name}: {left:?}");
    }
}

#[test]
fn user_xattrs_are_restored_and_others_dropped() {
    let scratch = Scratch::new();
    let tar = Tar::new()
        .pax(&[
            ("SCHILY.xattr.user.color", b"blue"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02"),
        ])
        .dir("/d/", 0o555)
        .pax(&[("SCHILY.xattr.user.raw", b"\x00\xff=\n")])
        .raw(EntryType::Regular, b"./d/f", b"", 0o444, b"data")
        .pax(&[("SCHILY.xattr.user.on-link", b"x")])
        .symlink("d/l", "f")
        .bytes();
    unpack(
        &tar[..],
        Compression::None,
        &scratch.dest(),
        &UnpackOptions::default(),
    )
    .unwrap();
    let names = |p: &str| {
        let mut v: Vec<_> = xattr::list(scratch.dest().join(p))
            .unwrap()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("d"), ["user.color"]);
    assert_eq!(names("d/f"), ["user.raw"]);
    assert_eq!(names("d/l"), Vec::<String>::new());
    let get = |p: &str, n: &str| xattr::get(scratch.dest().join(p), n).unwrap();
    assert_eq!(get("d", "user.color").as_deref(), Some(&b"blue"[..]));
    assert_eq!(get("d/f", "user.raw").as_deref(), Some(&b"\x00\xff=\n"[..]));
    let mode = |p: &str| {
        fs::metadata(scratch.dest().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!((mode("d"), mode("d/f")), (0o555, 0o444));
    fs::set_permissions(scratch.dest().join("d"), Permissions::from_mode(0o755)).unwrap();
}
