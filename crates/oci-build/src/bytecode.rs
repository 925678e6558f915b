//! Bytecode at build time: the image's modules compiled by the base image's
//! own interpreter, run in `sandbox-run` over the build's layers, into
//! hash-based `.pyc` files (PEP 552) that the runtime imports instead of
//! compiling every module at every start.
//!
//! The mechanism is general — run a command over an image's layers and
//! keep what it writes as a tree ready to become a layer — and is what a
//! Dockerfile `RUN` needs too:
//! 1. the base image is pulled from the build store into a
//!    [`layer_cache::Cache`] (`rootfs/` in the cache directory), which
//!    unpacks each layer once, safely, and hands back its directory;
//! 2. the trees to compile (the dependency layer's staging directory, the
//!    code files not compiled yet) are stacked on top as overlay lower
//!    directories, owned by the sandbox user so that it may add
//!    `__pycache__` to them;
//! 3. `python-bytecode`'s driver runs as uid 1000 with the seeds' limits, no network and
//!    a build timeout, its writes going to the overlay's upper layer, a
//!    bounded tmpfs ([`sandbox_run::Capture`]), which the launcher copies
//!    out without following a link once the container is gone;
//! 4. of that copy only the `.pyc` files of the sources the build shipped,
//!    at the path the interpreter reads them from, are taken; anything else
//!    the interpreter left is ignored, and a link or device where bytecode
//!    belongs fails the build.
//!
//! The same inputs give the same bytes: invalidation by source hash
//! (`unchecked-hash`, so no timestamp is read or written), `PYTHONHASHSEED=0`
//! (set literals are written in hash order), `SOURCE_DATE_EPOCH` set to the
//! build epoch, the in-image path as each code object's file name (compiled
//! where the runtime imports it), and per-file work that does not depend on
//! how it is split between workers. Unchecked bytecode is never compared
//! with its source at import: the source and its `.pyc` ship in one layer
//! of an image that does not change, and reading and hashing every source
//! at every start is the cost this removes.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fs_err as fs;
use layer_cache::{Cache, CacheConfig};
use oci_model::{Digest, Layout, Platform};
use sandbox_run::{Limits, Sandbox, SandboxConfig};
use serde::{Serialize, Serializer};

use crate::{Error, Result, io_at};

/// Version of the bytecode recipe (driver, invalidation mode, knobs): part
/// of every cache key that covers bytecode.
pub(crate) const FORMAT: &str = "hoist-bytecode-v1";
/// The largest `.pyc` of a code file read back: code is under 1 MB.
pub(crate) const MAX_CODE_PYC: u64 = 16 << 20;

/// Whether the image's modules carry bytecode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Bytecode {
    /// The dependency and code layers carry hash-based `.pyc` files.
    Compiled {
        /// Modules with bytecode in the image's own layers.
        modules: u64,
        /// Sources the interpreter refused to compile (syntax of another
        /// Python version, a deliberately broken test file), left without
        /// bytecode as pip leaves them.
        uncompiled: u64,
        /// Sources compiled by this build; 0 when the dependency layer and
        /// every code file's bytecode came from the cache.
        compiled_now: u64,
        /// Time spent compiling, the sandbox included.
        #[serde(serialize_with = "millis")]
        time: Duration,
    },
    /// No bytecode: every start compiles the modules it imports.
    Skipped {
        /// Why.
        #[serde(serialize_with = "display")]
        reason: NoBytecode,
    },
}

/// Why a build made no bytecode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoBytecode {
    /// [`Builder::sandbox`](crate::Builder::sandbox) was not given.
    #[error("no sandbox is configured to run the base image's interpreter in")]
    NoSandbox,
    /// The base's interpreter was not found; its path is only assumed.
    #[error("the base image's interpreter was not found, only assumed")]
    NoInterpreter,
    /// A Python without hash-based bytecode.
    #[error("Python {version} has no hash-based bytecode (3.7 and later have)")]
    TooOld {
        /// Python `X.Y`.
        version: String,
    },
}

fn display<S: Serializer>(value: &NoBytecode, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn millis<S: Serializer>(value: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((value.as_secs_f64() * 1e5).round() / 100.0)
}

/// How builds compile: the sandbox and the limits of each compile run.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) sandbox: SandboxConfig,
    pub(crate) limits: Limits,
}

/// The interpreter's bytecode tag for Python `X.Y`: `3.11` → `cpython-311`.
pub(crate) fn cache_tag(python_version: &str) -> String {
    format!("cpython-{}", python_version.replace('.', ""))
}

/// Whether bytecode can be made for the base, or why not.
pub(crate) fn check(python_version: &str, found: bool) -> std::result::Result<(), NoBytecode> {
    if !found {
        return Err(NoBytecode::NoInterpreter);
    }
    let minor = python_version
        .strip_prefix("3.")
        .and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(m) if m >= 7 => Ok(()),
        _ => Err(NoBytecode::TooOld {
            version: python_version.to_owned(),
        }),
    }
}

/// Where the bytecode of the source `rel` (`pkg/mod.py`) is read from:
/// `pkg/__pycache__/mod.cpython-311.pyc`.
pub(crate) fn pyc_path(rel: &Path, tag: &str) -> Option<PathBuf> {
    let stem = rel.file_stem()?.to_str()?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    Some(parent.join("__pycache__").join(format!("{stem}.{tag}.pyc")))
}

/// The cache key of one code file's bytecode: the recipe, the base and
/// interpreter, the file's path in the image (its code objects' file name)
/// and its bytes.
pub(crate) fn code_key(
    base: &Digest,
    interpreter: &str,
    image_path: &Path,
    source: &[u8],
) -> String {
    let text = format!(
        "{FORMAT}\nbase={base}\ninterpreter={interpreter}\npath={}\nsource={}\n",
        image_path.display(),
        Digest::of(source)
    );
    Digest::of(text.as_bytes()).hex().to_owned()
}

/// A staging tree placed over the base for a compile: `root` is an image
/// root holding the modules under `dir` (relative to the image root).
pub(crate) struct Tree<'a> {
    pub(crate) root: &'a Path,
    pub(crate) dir: &'static str,
}

/// One compile: what it runs over and with.
pub(crate) struct Run<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) cache_dir: &'a Path,
    pub(crate) store: &'a Layout,
    pub(crate) base: &'a Digest,
    pub(crate) platform: &'a Platform,
    pub(crate) interpreter: &'a str,
    pub(crate) epoch: u64,
}

/// Compiles the modules of `trees` (top-most first) over the base and
/// returns the captured upper layer: a tree rooted like the image.
pub(crate) async fn compile(run: Run<'_>, trees: &[Tree<'_>]) -> Result<tempfile::TempDir> {
    let mut config = CacheConfig::new(run.cache_dir.join("rootfs"));
    config.platform = run.platform.clone();
    let cache = Cache::open(config).await?;
    let reference = run.store.reference(None)?.with_digest(run.base.clone());
    let image = cache.pull(&reference, run.store).await?;
    // Closed at once, so that other processes sharing the cache are not
    // held up for the compile; the image's pins keep its layers.
    drop(cache);

    let tmp = run.cache_dir.join("tmp");
    fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
    let kept = tempfile::Builder::new()
        .prefix("bytecode-")
        .tempdir_in(&tmp)
        .map_err(io_at(&tmp))?;
    let mut lower: Vec<PathBuf> = trees.iter().map(|t| t.root.to_owned()).collect();
    lower.extend(image.lower_dirs());
    let dirs: Vec<String> = trees.iter().map(|t| format!("/{}", t.dir)).collect();
    let limits = run.settings.limits.clone();
    let mut spec =
        python_bytecode::run_spec(run.interpreter, lower, &dirs, limits.clone(), kept.path());
    spec.env.push(format!("SOURCE_DATE_EPOCH={}", run.epoch));
    let roots: Vec<PathBuf> = trees.iter().map(|t| t.root.to_owned()).collect();
    let sandbox_config = run.settings.sandbox.clone();
    let result = crate::blocking("byte-compiling", move || {
        // The sandbox user adds __pycache__ to the staged directories.
        for root in &roots {
            python_bytecode::hand_dirs_to(root, python_bytecode::USER)
                .map_err(|(path, source)| Error::Io { path, source })?;
        }
        let sandbox = Sandbox::new(sandbox_config)?;
        Ok(sandbox.run(&spec)?)
    })
    .await?;
    drop(image);
    match python_bytecode::failure(&result, &limits) {
        None => Ok(kept),
        Some(reason) => Err(Error::Compile {
            interpreter: run.interpreter.to_owned(),
            reason,
        }),
    }
}

/// What was taken into a layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Sources with bytecode.
    pub(crate) modules: u64,
    /// Sources without.
    pub(crate) uncompiled: u64,
}

/// Moves the bytecode of every source under `dir` (relative to the image
/// root) of the staging tree `staging` out of the capture `kept` into the
/// staging tree, next to its source.
pub(crate) fn merge(staging: &Path, kept: &Path, dir: &str, tag: &str) -> Result<Taken> {
    let mut taken = Taken::default();
    let base = staging.join(dir);
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let here = base.join(&rel);
        for entry in fs::read_dir(&here).map_err(io_at(&here))? {
            let entry = entry.map_err(io_at(&here))?;
            let name = rel.join(entry.file_name());
            if entry.file_type().map_err(io_at(&here))?.is_dir() {
                if entry.file_name() != "__pycache__" {
                    todo.push(name);
                }
                continue;
            }
            if name.extension().is_none_or(|e| e != "py") {
                continue;
            }
            let Some(pyc) = pyc_path(&name, tag) else {
                taken.uncompiled += 1;
                continue;
            };
            let from = kept.join(dir).join(&pyc);
            if !is_bytecode(&from)? {
                taken.uncompiled += 1;
                continue;
            }
            let to = base.join(&pyc);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            fs::rename(&from, &to).map_err(io_at(&from))?;
            taken.modules += 1;
        }
    }
    Ok(taken)
}

/// The bytecode at `path` of the capture, at most [`MAX_CODE_PYC`] bytes.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    if !is_bytecode(path)? {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .map_err(io_at(path))?
        .take(MAX_CODE_PYC + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at(path))?;
    if bytes.len() as u64 > MAX_CODE_PYC {
        return Err(Error::BadBytecode {
            path: path.to_owned(),
            reason: "over 16 MiB, for code under 1 MB",
        });
    }
    Ok(Some(bytes))
}

/// Whether the capture holds bytecode at `path`: a regular file; none is
/// false; anything else (a link, a directory) is what no compile writes.
fn is_bytecode(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(true),
        Ok(_) => Err(Error::BadBytecode {
            path: path.to_owned(),
            reason: "not a regular file",
        }),
        // No bytecode there, or a parent that is not a directory.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(false),
        Err(e) => Err(io_at(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytecode_lives_where_the_interpreter_reads_it() {
        assert_eq!(cache_tag("3.11"), "cpython-311");
        assert_eq!(
            pyc_path(Path::new("pkg/sub/mod.py"), "cpython-311").unwrap(),
            Path::new("pkg/sub/__pycache__/mod.cpython-311.pyc")
        );
        assert_eq!(
            pyc_path(Path::new("six.py"), "cpython-312").unwrap(),
            Path::new("__pycache__/six.cpython-312.pyc")
        );
        assert_eq!(check("3.11", true), Ok(()));
        assert_eq!(check("3.11", false), Err(NoBytecode::NoInterpreter));
        assert!(matches!(check("3.6", true), Err(NoBytecode::TooOld { .. })));
    }

    #[test]
    fn code_keys_cover_base_interpreter_path_and_source() {
        let base = Digest::of(b"base");
        let p = Path::new("/opt/hoist/function/user_function.py");
        let k = code_key(&base, "/usr/bin/python3.11", p, b"x = 1\n");
        assert_eq!(k, code_key(&base, "/usr/bin/python3.11", p, b"x = 1\n"));
        for other in [
            code_key(&Digest::of(b"other"), "/usr/bin/python3.11", p, b"x = 1\n"),
            code_key(&base, "/usr/local/bin/python3.11", p, b"x = 1\n"),
            code_key(
                &base,
                "/usr/bin/python3.11",
                Path::new("/opt/hoist/function/b.py"),
                b"x = 1\n",
            ),
            code_key(&base, "/usr/bin/python3.11", p, b"x = 2\n"),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn only_the_bytecode_of_shipped_sources_is_taken() {
        let staging = tempfile::tempdir().unwrap();
        let kept = tempfile::tempdir().unwrap();
        let s = |p: &str| staging.path().join("opt/site").join(p);
        let k = |p: &str| kept.path().join("opt/site").join(p);
        for p in ["six.py", "pkg/__init__.py", "pkg/broken.py", "pkg/data.txt"] {
            std::fs::create_dir_all(s(p).parent().unwrap()).unwrap();
            std::fs::write(s(p), b"").unwrap();
        }
        for p in [
            "__pycache__/six.cpython-311.pyc",
            "pkg/__pycache__/__init__.cpython-311.pyc",
            // Not the bytecode of a shipped source: left behind.
            "pkg/__pycache__/extra.cpython-311.pyc",
            "pkg/evil.pth",
        ] {
            std::fs::create_dir_all(k(p).parent().unwrap()).unwrap();
            std::fs::write(k(p), b"pyc").unwrap();
        }
        let taken = merge(staging.path(), kept.path(), "opt/site", "cpython-311").unwrap();
        assert_eq!(
            taken,
            Taken {
                modules: 2,
                uncompiled: 1
            }
        );
        assert!(s("__pycache__/six.cpython-311.pyc").is_file());
        assert!(s("pkg/__pycache__/__init__.cpython-311.pyc").is_file());
        assert!(!s("pkg/__pycache__/extra.cpython-311.pyc").exists());
        assert!(!s("pkg/evil.pth").exists());

        // A link where bytecode belongs fails the build.
        std::fs::remove_file(s("pkg/__pycache__/__init__.cpython-311.pyc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", k("pkg/__pycache__/__init__.cpython-311.pyc"))
            .unwrap();
        let err = merge(staging.path(), kept.path(), "opt/site", "cpython-311").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
