//! Reproducibility and round trips of `LayerWriter`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::{UnpackOptions, unpack};

fn sample(order: &[usize], opts: &WriteOptions) -> (LayerInfo, Vec<u8>) {
    let mut w = LayerWriter::new(opts.clone());
    for &i in order {
        match i {
            0 => w.add_bytes("app/main.py", 0o600, b"print('hi')\n".to_vec()),
            1 => w.add_bytes("/app/run.sh", 0o700, b"#!/bin/sh\n".to_vec()),
            2 => w.add_dir("./var/empty"),
            3 => w.add_symlink("usr/bin/python", "/usr/bin/python3"),
            4 => w.add_file("app/data/blob", 0o644, 5, &b"12345"[..]),
            5 => w.add_dir("app"),
            _ => unreachable!(),
        }
        .unwrap();
    }
    let mut out = Vec::new();
    let info = w.finish(&mut out).unwrap();
    (info, out)
}

#[test]
fn same_inputs_same_digest_in_any_order() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let opts = WriteOptions {
            compression,
            ..WriteOptions::default()
        };
        let (a, blob) = sample(&[0, 1, 2, 3, 4, 5], &opts);
        let (b, _) = sample(&[0, 1, 2, 3, 4, 5], &opts);
        let (c, _) = sample(&[5, 4, 3, 2, 1, 0], &opts);
        assert_eq!(a, b, "{compression:?}");
        assert_eq!(a, c, "{compression:?}");
        assert_eq!(a.digest, Digest::of(&blob));
        assert_eq!(a.size, blob.len() as u64);
        assert_eq!(a.media_type, compression.media_type());
        assert_eq!(Compression::detect(&blob), compression);
        let other = WriteOptions {
            mtime: 1_700_000_000,
            ..opts.clone()
        };
        assert_ne!(
            sample(&[0], &opts).0.diff_id,
            sample(&[0], &other).0.diff_id
        );
    }
}

#[test]
fn headers_are_normalised() {
    let opts = WriteOptions {
        compression: Compression::None,
        mtime: 1_700_000_000,
        uid: 1000,
        gid: 1000,
        ..WriteOptions::default()
    };
    let (info, tar) = sample(&[0, 1, 2, 3, 4], &opts);
    assert_eq!(
        info.diff_id, info.digest,
        "uncompressed: digest is the diff-id"
    );
    let mut archive = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (1000, 1000));
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        seen.push((path, h.mode().unwrap()));
    }
    let want = [
        ("app/", 0o755),
        ("app/data/", 0o755),
        ("app/data/blob", 0o644),
        ("app/main.py", 0o644),
        ("app/run.sh", 0o755),
        ("usr/", 0o755),
        ("usr/bin/", 0o755),
        ("usr/bin/python", 0o777),
        ("var/", 0o755),
        ("var/empty/", 0o755),
    ];
    let want: Vec<_> = want.iter().map(|(p, m)| (p.to_string(), *m)).collect();
    assert_eq!(seen, want);
}

#[test]
fn round_trip_through_unpack() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    fs::create_dir_all(root.join("pkg/sub")).unwrap();
    fs::write(root.join("pkg/__init__.py"), b"x = 1\n").unwrap();
    fs::write(root.join("pkg/sub/tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("pkg/sub/tool"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/tool", root.join("pkg/tool")).unwrap();
    let long = "n".repeat(120);
    fs::write(root.join("pkg").join(&long), b"long name").unwrap();
    fs::create_dir(root.join("empty")).unwrap();

    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut w = LayerWriter::new(WriteOptions {
            compression,
            mtime: 1_234_567_890,
            ..WriteOptions::default()
        });
        w.add_tree(root, "srv/app").unwrap();
        w.add_bytes("srv/app/extra.txt", 0o644, b"extra".to_vec())
            .unwrap();
        let mut blob = Vec::new();
        let info = w.finish(&mut blob).unwrap();

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("rootfs");
        let stats = unpack(&blob[..], compression, &dest, &UnpackOptions::default()).unwrap();
        assert_eq!(stats.diff_id, info.diff_id);
        let app = dest.join("srv/app");
        assert_eq!(fs::read(app.join("pkg/__init__.py")).unwrap(), b"x = 1\n");
        assert_eq!(fs::read(app.join("pkg").join(&long)).unwrap(), b"long name");
        assert_eq!(fs::read(app.join("extra.txt")).unwrap(), b"extra");
        assert_eq!(
            fs::read_link(app.join("pkg/tool")).unwrap(),
            Path::new("sub/tool")
        );
        let tool = fs::metadata(app.join("pkg/sub/tool")).unwrap();
        assert_eq!(tool.permissions().mode() & 0o777, 0o755);
        assert_eq!(tool.mtime(), 1_234_567_890);
        assert!(app.join("empty").is_dir());
        // srv, srv/app, pkg, pkg/sub, empty, three files, a symlink, extra.txt
        assert_eq!(stats.entries, 10);
    }
}

#[test]
fn refuses_bad_paths_and_conflicts() {
    let mut w = LayerWriter::new(WriteOptions::default());
    assert!(matches!(
        w.add_bytes("../x", 0o644, Vec::new()),
        Err(Error::InvalidLayerPath { .. })
    ));
    assert!(matches!(
        w.add_dir("/"),
        Err(Error::InvalidLayerPath { .. })
    ));
    assert!(matches!(
        w.add_symlink("a/link", "../../etc"),
        Err(Error::SymlinkEscape { .. })
    ));
    w.add_bytes("f", 0o644, b"x".to_vec()).unwrap();
    assert!(matches!(
        w.add_bytes("f/g", 0o644, Vec::new()),
        Err(Error::PathConflict { .. })
    ));
    w.add_bytes("d/child", 0o644, Vec::new()).unwrap();
    assert!(matches!(
        w.add_bytes("d", 0o644, Vec::new()),
        Err(Error::PathConflict { .. })
    ));
}

#[test]
fn source_size_mismatch_is_an_error() {
    for (announced, data) in [(10u64, &b"short"[..]), (2, &b"longer"[..])] {
        let mut w = LayerWriter::new(WriteOptions::default());
        w.add_file("f", 0o644, announced, data).unwrap();
        let err = w.finish(std::io::sink()).unwrap_err();
        assert!(
            matches!(err, Error::SizeMismatch { expected, .. } if expected == announced),
            "{err}"
        );
    }
}

#[test]
fn writes_into_a_layout_blob() {
    let dir = tempfile::tempdir().unwrap();
    let layout = oci_model::Layout::create(dir.path()).unwrap();
    let mut blob = layout.blob_writer().unwrap();
    let mut w = LayerWriter::new(WriteOptions::default());
    w.add_bytes("hello", 0o644, b"world".to_vec()).unwrap();
    let info = w.finish(&mut blob).unwrap();
    let digest = blob.commit(Some(&info.digest)).unwrap();
    assert!(layout.has_blob(&digest, Some(info.size)));
}

#[test]
fn host_metadata_is_kept_only_when_asked() {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("secret");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let tool = dir.join("tool");
    fs::write(&tool, b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("tool", dir.join("link")).unwrap();
    // Root can give files away; elsewhere the owners stay the caller's.
    let owner = std::os::unix::fs::lchown(&tool, Some(1000), Some(1001))
        .map(|()| (1000, 1001))
        .unwrap_or_else(|_| {
            let m = fs::metadata(&tool).unwrap();
            (u64::from(m.uid()), u64::from(m.gid()))
        });
    // After the owner: a change of owner clears setuid.
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o4750)).unwrap();
    let headers = |keep: bool| {
        let mut w = LayerWriter::new(WriteOptions {
            compression: Compression::None,
            keep_host_metadata: keep,
            ..WriteOptions::default()
        });
        w.add_tree(src.path(), "").unwrap();
        let mut tar = Vec::new();
        w.finish(&mut tar).unwrap();
        let mut out = Vec::new();
        for e in tar::Archive::new(&tar[..]).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            out.push((path, h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()));
        }
        out
    };
    let ids = |rel: &str| {
        let m = fs::symlink_metadata(src.path().join(rel)).unwrap();
        (u64::from(m.uid()), u64::from(m.gid()))
    };
    let (dir_ids, link_ids) = (ids("secret"), ids("secret/link"));
    assert_eq!(
        headers(true),
        [
            ("secret/".to_owned(), 0o700, dir_ids.0, dir_ids.1),
            ("secret/link".to_owned(), 0o777, link_ids.0, link_ids.1),
            ("secret/tool".to_owned(), 0o4750, owner.0, owner.1),
        ]
    );
    assert_eq!(
        headers(false),
        [
            ("secret/".to_owned(), 0o755, 0, 0),
            ("secret/link".to_owned(), 0o777, 0, 0),
            ("secret/tool".to_owned(), 0o755, 0, 0),
        ]
    );
}
