//! `oci_layer::unpack` on arbitrary bytes with every compression, small
//! limits: never panics, nothing appears outside the destination, the root
//! stays a 0755 directory whatever names the entries use (`/`, `./`, `..`),
//! and every whiteout it reports is a plain path below the root.
#![no_main]

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use oci_layer::{Compression, UnpackOptions, unpack};

fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let opts = UnpackOptions {
        max_entries: 64,
        max_total_bytes: 1 << 20,
    };
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let base = tempfile::tempdir().unwrap();
        let parent = base.path().join("parent");
        let outside = base.path().join("outside");
        std::fs::create_dir(&parent).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let dest = parent.join("layer");
        let result = unpack(data, compression, &dest, &opts);
        let ok = result.is_ok();
        assert_eq!(names(&outside), Vec::<std::ffi::OsString>::new());
        assert_eq!(names(base.path()), ["outside", "parent"]);
        let want: &[&str] = if ok { &["layer"] } else { &[] };
        assert_eq!(names(&parent), want, "ok = {ok}");
        if let Ok(stats) = result {
            let root = std::fs::symlink_metadata(&dest).unwrap();
            assert!(root.is_dir());
            assert_eq!(root.permissions().mode() & 0o7777, 0o755);
            for path in stats.whiteouts.iter().chain(&stats.opaque_dirs) {
                assert!(
                    path.components().all(|c| matches!(c, Component::Normal(_))),
                    "{path:?}"
                );
            }
            // A successful unpack may hold read-only directories.
            make_removable(&dest);
        }
    }
});

fn make_removable(dir: &Path) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
}
