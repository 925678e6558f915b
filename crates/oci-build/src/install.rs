//! Installing wheels into a staging tree that becomes the dependency
//! layer, the way pip's `--target` would, without running Python.
//!
//! Layout inside the staging root:
//! - `opt/hoist/site-packages/`: the wheel's root, and its
//!   `<name>.data/purelib` and `<name>.data/platlib` directories;
//! - `opt/hoist/bin/`: `<name>.data/scripts`, with a `#!python` shebang
//!   rewritten to the base image's interpreter.
//!
//! `<name>.data/data` and `<name>.data/headers` are skipped: they target
//! prefixes (`/usr/share`, include directories) a function does not use.
//! Console-script wrappers from `entry_points.txt` are not generated, and
//! nothing is byte-compiled here (`__pycache__/*.pyc` entries of a wheel
//! are dropped too): bytecode, when the build makes it, comes from the
//! base image's own interpreter (see `bytecode.rs`).
//! `<dist-info>/INSTALLER` says `hoist`.
//!
//! Every entry is checked before anything is written: absolute names,
//! `..` components, backslashes and symlinks are refused with an error
//! naming the wheel and the entry. Entries stream from the archive to
//! disk, so memory does not grow with the wheel.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use fs_err as fs;

use crate::{Error, Result};

/// Where wheels are installed, relative to the image root.
pub const SITE_PACKAGES: &str = "opt/hoist/site-packages";
/// Where wheel scripts are installed, relative to the image root.
pub const SCRIPTS: &str = "opt/hoist/bin";

/// The most bytes one wheel may expand to: a zip bomb stops here.
const MAX_UNPACKED: u64 = 4 << 30;

/// Installs the wheel at `wheel` (its file name is used in errors) into
/// the staging tree `root`.
pub(crate) fn install_wheel(wheel: &Path, root: &Path, interpreter: &str) -> Result<()> {
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |reason: String| Error::BadWheel {
        wheel: name.clone(),
        reason,
    };
    let file = fs::File::open(wheel).map_err(|source| Error::Io {
        path: wheel.to_owned(),
        source,
    })?;
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let site = root.join(SITE_PACKAGES);
    let scripts = root.join(SCRIPTS);
    let mut plan = Vec::with_capacity(archive.len());
    let mut dist_info = None;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        let entry_name = entry
            .name()
            .map_err(|e| bad(format!("entry {i}: {e}")))?
            .into_owned();
        let hostile = |reason: &'static str| Error::HostileWheel {
            wheel: name.clone(),
            entry: entry_name.clone(),
            reason,
        };
        if entry.is_symlink() {
            return Err(hostile("symlinks are not allowed in wheels"));
        }
        let rel = safe_relative(&entry_name).map_err(hostile)?;
        if entry.is_dir() {
            continue;
        }
        let mut parts = rel.components();
        let first = parts
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        if first.ends_with(".dist-info") && parts.clone().next().is_some() {
            dist_info.get_or_insert_with(|| first.clone());
        }
        let target = if first.ends_with(".data") {
            let scheme = parts
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            let rest = parts.as_path();
            if rest.as_os_str().is_empty() {
                continue;
            }
            match scheme.as_str() {
                "purelib" | "platlib" => Target::File(site.join(rest)),
                "scripts" => Target::Script(scripts.join(rest)),
                // Skipped on purpose; see the module docs.
                "data" | "headers" => continue,
                _ => return Err(hostile("unknown .data scheme")),
            }
        } else {
            Target::File(site.join(&rel))
        };
        if rel.extension().is_some_and(|e| e == "pyc")
            && rel.components().any(|c| c.as_os_str() == "__pycache__")
        {
            continue;
        }
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        plan.push((i, target, executable));
    }
    let Some(dist_info) = dist_info else {
        return Err(bad("no .dist-info directory".into()));
    };
    let mut total = 0u64;
    for (i, target, executable) in plan {
        let mut entry = archive.by_index(i).map_err(|e| bad(e.to_string()))?;
        let declared = entry.size();
        let (path, script) = match target {
            Target::File(p) => (p, false),
            Target::Script(p) => (p, true),
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let io_err = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut out = io::BufWriter::new(fs::File::create(&path).map_err(io_err)?);
        let limit = declared.min(MAX_UNPACKED - total);
        let mut limited = (&mut entry).take(limit + 1);
        if script {
            copy_script(&mut limited, &mut out, interpreter)
        } else {
            io::copy(&mut limited, &mut out).map(drop)
        }
        .map_err(|e| bad(format!("{}: {e}", entry_name_of(&path, root))))?;
        out.flush().map_err(io_err)?;
        if limited.limit() == 0 {
            return Err(bad(format!(
                "{}: more bytes than the archive declares, or over the {MAX_UNPACKED}-byte limit",
                entry_name_of(&path, root)
            )));
        }
        let written = limit + 1 - limited.limit();
        total += written;
        let mode = if executable || script { 0o755 } else { 0o644 };
        set_mode(&path, mode)?;
    }
    let installer = site.join(&dist_info).join("INSTALLER");
    fs::write(&installer, b"hoist\n").map_err(|source| Error::Io {
        path: installer.clone(),
        source,
    })?;
    set_mode(&installer, 0o644)?;
    Ok(())
}

enum Target {
    File(PathBuf),
    Script(PathBuf),
}

fn entry_name_of(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// A relative path with only normal components, or why not.
fn safe_relative(name: &str) -> std::result::Result<PathBuf, &'static str> {
    if name.contains('\\') {
        return Err("backslash in entry name");
    }
    if name.contains('\0') {
        return Err("NUL byte in entry name");
    }
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("entry name has a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("entry name is absolute"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("empty entry name");
    }
    Ok(out)
}

/// Copies a script, replacing a `#!python` (or `#!pythonw`) first line
/// with the interpreter, as installers do.
fn copy_script(input: &mut impl Read, out: &mut impl Write, interpreter: &str) -> io::Result<()> {
    let mut reader = BufReader::new(input);
    let mut first = Vec::new();
    reader.by_ref().take(4096).read_until(b'\n', &mut first)?;
    if first.starts_with(b"#!python") {
        let rest = first
            .iter()
            .position(|&b| b == b' ' || b == b'\n')
            .map_or(&[][..], |i| &first[i..]);
        let line = [b"#!", interpreter.as_bytes(), rest].concat();
        out.write_all(&line)?;
    } else {
        out.write_all(&first)?;
    }
    io::copy(&mut reader, out)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use zip::write::SimpleFileOptions;

    /// A wheel of (name, unix mode, contents); a mode with the symlink bit
    /// makes a symlink entry whose target is the contents.
    pub(crate) fn wheel(path: &Path, entries: &[(&str, u32, &[u8])]) {
        let file = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(file);
        for (name, mode, data) in entries {
            let opts = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            if mode & 0o170000 == 0o120000 {
                z.add_symlink(*name, std::str::from_utf8(data).unwrap(), opts)
                    .unwrap();
            } else {
                z.start_file(*name, opts).unwrap();
                z.write_all(data).unwrap();
            }
        }
        z.finish().unwrap();
    }

    #[test]
    fn installs_root_data_and_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let whl = dir.path().join("demo-1.0-py3-none-any.whl");
        wheel(
            &whl,
            &[
                ("demo/__init__.py", 0o644, b"X = 1\n"),
                ("demo/__pycache__/__init__.cpython-311.pyc", 0o644, b"junk"),
                ("demo-1.0.dist-info/METADATA", 0o600, b"Name: demo\n"),
                ("demo-1.0.dist-info/RECORD", 0o644, b""),
                ("demo-1.0.data/purelib/demo_extra.py", 0o644, b"Y = 2\n"),
                ("demo-1.0.data/platlib/demo_native.so", 0o755, b"ELF"),
                (
                    "demo-1.0.data/scripts/demo-cli",
                    0o644,
                    b"#!python\nprint(1)\n",
                ),
                ("demo-1.0.data/scripts/raw", 0o755, b"#!/bin/sh\necho\n"),
                ("demo-1.0.data/data/share/doc.txt", 0o644, b"doc"),
                ("demo-1.0.data/headers/demo.h", 0o644, b"int x;"),
            ],
        );
        let root = dir.path().join("root");
        install_wheel(&whl, &root, "/usr/bin/python3.11").unwrap();
        let site = root.join(SITE_PACKAGES);
        let bin = root.join(SCRIPTS);
        assert_eq!(
            std::fs::read(site.join("demo/__init__.py")).unwrap(),
            b"X = 1\n"
        );
        assert!(!site.join("demo/__pycache__").exists());
        assert_eq!(
            std::fs::read(site.join("demo_extra.py")).unwrap(),
            b"Y = 2\n"
        );
        assert!(site.join("demo_native.so").is_file());
        assert_eq!(
            std::fs::read(bin.join("demo-cli")).unwrap(),
            b"#!/usr/bin/python3.11\nprint(1)\n"
        );
        assert_eq!(
            std::fs::read(bin.join("raw")).unwrap(),
            b"#!/bin/sh\necho\n"
        );
        assert!(!root.join("opt/hoist/site-packages/share").exists());
        assert!(!site.join("demo-1.0.data").exists());
        assert_eq!(
            std::fs::read(site.join("demo-1.0.dist-info/INSTALLER")).unwrap(),
            b"hoist\n"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&site.join("demo-1.0.dist-info/METADATA")), 0o644);
        assert_eq!(mode(&site.join("demo_native.so")), 0o755);
        assert_eq!(mode(&bin.join("demo-cli")), 0o755);
    }

    #[test]
    fn refuses_hostile_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, u32, &[u8], &str); 4] = [
            ("../evil.py", 0o644, b"x", "`..`"),
            ("/etc/passwd", 0o644, b"x", "absolute"),
            ("demo\\..\\x.py", 0o644, b"x", "backslash"),
            ("demo/link", 0o120777, b"../../../etc", "symlink"),
        ];
        for (i, (name, mode, data, want)) in cases.into_iter().enumerate() {
            let whl = dir.path().join(format!("bad{i}-1.0-py3-none-any.whl"));
            wheel(
                &whl,
                &[
                    ("demo-1.0.dist-info/METADATA", 0o644, b""),
                    (name, mode, data),
                ],
            );
            let root = dir.path().join(format!("root{i}"));
            let err = install_wheel(&whl, &root, "/usr/bin/python3").unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, Error::HostileWheel { .. })
                    && text.contains(&format!("bad{i}-1.0"))
                    && text.contains(want),
                "{name}: {text}"
            );
            // Nothing was written before the refusal.
            assert!(!root.exists(), "{name}");
        }
        let whl = dir.path().join("nodist-1.0-py3-none-any.whl");
        wheel(&whl, &[("a.py", 0o644, b"")]);
        assert!(matches!(
            install_wheel(&whl, &dir.path().join("r"), "/p"),
            Err(Error::BadWheel { .. })
        ));
        let junk = dir.path().join("junk-1.0-py3-none-any.whl");
        std::fs::write(&junk, b"not a zip").unwrap();
        assert!(matches!(
            install_wheel(&junk, &dir.path().join("r2"), "/p"),
            Err(Error::BadWheel { .. })
        ));
    }
}
