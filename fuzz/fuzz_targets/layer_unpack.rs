//! `oci_layer::unpack` on arbitrary bytes with every compression, small
//! limits: never panics, and nothing appears outside the destination.
#![no_main]

use std::path::Path;

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
        let ok = unpack(data, compression, &dest, &opts).is_ok();
        assert_eq!(names(&outside), Vec::<std::ffi::OsString>::new());
        assert_eq!(names(base.path()), ["outside", "parent"]);
        let want: &[&str] = if ok { &["layer"] } else { &[] };
        assert_eq!(names(&parent), want, "ok = {ok}");
        // A successful unpack may hold read-only directories.
        if ok {
            make_removable(&dest);
        }
    }
});

fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
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
