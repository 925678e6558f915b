//! Tests of whole function directories, on real temporary directories.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{Error, Policy, check_dir};

const HANDLER: &str = "def handler(inputs):\n    return inputs\n";

fn write(dir: &Path, relative: &str, content: impl AsRef<[u8]>) {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().expect("in dir")).expect("mkdir");
    fs::write(path, content).expect("write");
}

fn shown(dir: &Path, policy: &Policy) -> Vec<String> {
    check_dir(dir, policy)
        .expect("readable")
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn files_of_the_code_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        d,
        "user_function.py",
        "from .lib import util\nfrom lib.util import f\n\ndef handler(inputs):\n    return f(inputs)\n",
    );
    write(d, "lib/__init__.py", "");
    write(
        d,
        "lib/util.py",
        "import json\ndef f(x):\n    return json.dumps(x)\n",
    );
    write(d, "lib/data/table.csv", "a,b\n");
    write(
        d,
        "lib/requirements.txt",
        "not a requirements file: only the top one is\n",
    );
    write(
        d,
        "requirements.txt",
        "requests==2.32.3\nnumpy>=1.26 ; python_version >= '3.9'\n",
    );
    write(d, ".env", "SECRET=1\n");
    write(d, ".git/config", "[core]\n");
    write(d, "lib/.hidden.py", "import os\n");
    write(d, "__pycache__/user_function.cpython-311.pyc", [0u8, 1, 2]);
    write(d, "lib/__pycache__/util.cpython-311.pyc", [0u8, 1, 2]);
    let checked = check_dir(d, &Policy::default()).expect("readable");
    assert!(checked.is_ok(), "{:?}", checked.problems);
    let want: Vec<PathBuf> = [
        "lib/__init__.py",
        "lib/data/table.csv",
        "lib/requirements.txt",
        "lib/util.py",
        "user_function.py",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(checked.files, want);
    let names: Vec<_> = checked
        .requirements
        .iter()
        .map(|r| (r.name.as_str(), r.line))
        .collect();
    assert_eq!(names, [("requests", 1), ("numpy", 2)]);
}

#[test]
fn every_problem_of_every_file_sorted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        d,
        "user_function.py",
        "import subprocess\nasync def handler(inputs):\n    return eval(inputs)\n",
    );
    write(d, "lib/util.py", "def f(:\n");
    write(d, "lib/net.py", "import socket\nfrom os import path\n");
    write(d, "requirements.txt", "-e .\nrequests\nrequests\n");
    assert_eq!(
        shown(d, &Policy::default()),
        [
            "lib/net.py:1:8: import of denied module `socket`",
            "lib/net.py:2:1: import of denied module `os`",
            "lib/util.py:1:7: syntax error: invalid syntax. Got unexpected token ':'",
            "requirements.txt:1:1: editable installs (`-e`) are not allowed",
            "requirements.txt:3:1: duplicate requirement for `requests` (first on line 2)",
            "user_function.py:1:8: import of denied module `subprocess`",
            "user_function.py:2:1: `handler` must be a plain function, not `async def`",
            "user_function.py:3:12: call of denied function `eval`",
        ]
    );
}

#[test]
fn missing_user_function() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "main.py", HANDLER);
    write(dir.path(), "sub/user_function.py", HANDLER);
    assert_eq!(
        shown(dir.path(), &Policy::default()),
        [
            "user_function.py:1:1: no such file: a function needs user_function.py defining `handler(inputs)`"
        ]
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let checked = check_dir(empty.path(), &Policy::default()).expect("readable");
    assert_eq!((checked.files.len(), checked.problems.len()), (0, 1));
}

#[test]
fn symlinks_are_problems_and_not_followed() {
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "secret.py", "import os\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "user_function.py", HANDLER);
    std::os::unix::fs::symlink(outside.path().join("secret.py"), d.join("link.py"))
        .expect("symlink");
    std::os::unix::fs::symlink(outside.path(), d.join("linkdir")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent", d.join("dangling")).expect("symlink");
    std::os::unix::fs::symlink("user_function.py", d.join("requirements.txt")).expect("symlink");
    let checked = check_dir(d, &Policy::default()).expect("readable");
    assert_eq!(checked.files, [PathBuf::from("user_function.py")]);
    assert_eq!(checked.requirements, []);
    let shown: Vec<_> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "dangling:1:1: symbolic links are not allowed",
            "link.py:1:1: symbolic links are not allowed",
            "linkdir:1:1: symbolic links are not allowed",
            "requirements.txt:1:1: symbolic links are not allowed",
        ]
    );
}

#[test]
fn special_files_and_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "user_function.py", HANDLER);
    // A socket: reading it would fail, a pipe would block.
    let _listener = std::os::unix::net::UnixListener::bind(d.join("sock")).expect("bind");
    let bad_name = std::ffi::OsStr::from_bytes(b"bad\xffname.py");
    fs::write(d.join(bad_name), "import os\n").expect("write");
    assert_eq!(
        shown(d, &Policy::default()),
        [
            "bad\u{fffd}name.py:1:1: file name is not valid UTF-8",
            "sock:1:1: not a regular file (a device, socket or pipe)",
        ]
    );
}

#[test]
fn sources_that_are_not_utf8() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        d,
        "user_function.py",
        b"def handler(inputs):\n    return '\xe9t\xe9'\n",
    );
    write(d, "requirements.txt", b"requests\nna\xefve\n");
    write(d, "data.bin", [0xffu8, 0xfe]);
    assert_eq!(
        shown(d, &Policy::default()),
        [
            "requirements.txt:2:3: file is not valid UTF-8",
            "user_function.py:2:13: file is not valid UTF-8",
        ]
    );
}

#[test]
fn sizes() {
    let policy = Policy {
        max_code_bytes: 100,
        ..Policy::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "user_function.py", HANDLER);
    write(d, "big.py", format!("import os\n{}", "#".repeat(200)));
    // A file at the limit is reported and not parsed; nothing is parsed
    // once the total is over.
    assert_eq!(
        shown(d, &policy),
        [
            ".:1:1: the function's files total 249 bytes; they must be smaller than 100 bytes",
            "big.py:1:1: file is 210 bytes; files must be smaller than 100 bytes",
        ]
    );
    fs::remove_file(d.join("big.py")).expect("rm");
    write(d, "a.py", "import os\n");
    write(d, "requirements.txt", "x".repeat(51));
    assert_eq!(
        shown(d, &policy),
        [".:1:1: the function's files total 100 bytes; they must be smaller than 100 bytes"]
    );
    fs::write(d.join("requirements.txt"), "x".repeat(50)).expect("write");
    assert_eq!(
        shown(d, &policy),
        ["a.py:1:8: import of denied module `os`"]
    );
}

#[test]
fn too_many_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "user_function.py", HANDLER);
    for i in 0..10_000 {
        fs::write(d.join(format!("f{i:05}")), "").expect("write");
    }
    let checked = check_dir(d, &Policy::default()).expect("readable");
    assert_eq!(
        checked
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [".:1:1: too many files and directories: more than 10000"]
    );
}

#[test]
fn unreadable_directories_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    match check_dir(&missing, &Policy::default()) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let file = dir.path().join("file");
    fs::write(&file, HANDLER).expect("write");
    match check_dir(&file, &Policy::default()) {
        Err(e @ Error::NotADirectory { .. }) => {
            assert_eq!(
                e.to_string(),
                format!("{} is not a directory", file.display())
            );
        }
        other => panic!("{other:?}"),
    }
}
