//! What a base image offers a Python function: interpreter, Python
//! version, CPU architecture and C library, read from the image's layers
//! rather than assumed.
//!
//! Each layer is streamed as a tar (never unpacked) and the scanner notes
//! `usr/bin/python3.N` and `usr/local/bin/python3.N` (file, symlink or hard
//! link), `var/lib/dpkg/status` (the `libc6` version gives glibc X.Y),
//! `lib/ld-musl-*.so.1` with `lib/apk/db/installed` (musl) and, when no
//! package database names glibc, the version string inside `libc.so.6`.
//! Later layers win and whiteouts remove what earlier layers had. Entry
//! names are read as unpacking reads them ([`oci_layer::entry_path`]):
//! `/usr/bin/x`, `./usr/bin/x` and `usr/lib/../bin/x` are one path.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};

/// The most bytes read of one package database or `libc.so.6`: real ones
/// are a few MiB at most, and a bigger one must not cost a build memory.
const MAX_READ: u64 = 8 << 20;

/// The C library of a base image, which decides the wheel platform tags
/// that can run on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Libc {
    /// GNU libc `major.minor`: wheels tagged `manylinux_<major>_<minor>` or
    /// older run.
    Glibc {
        /// Major version (2).
        major: u32,
        /// Minor version (36 for Debian 12).
        minor: u32,
    },
    /// musl: wheels tagged `musllinux_*` run.
    Musl {
        /// The version from the Alpine package database, when present.
        version: Option<String>,
    },
}

impl fmt::Display for Libc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glibc { major, minor } => write!(f, "glibc {major}.{minor}"),
            Self::Musl { version: Some(v) } => write!(f, "musl {v}"),
            Self::Musl { version: None } => f.write_str("musl"),
        }
    }
}

/// What the build learned about its base image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseFacts {
    /// `X.Y`, e.g. `3.11`.
    pub python_version: String,
    /// Absolute path of the interpreter, e.g. `/usr/bin/python3.11`.
    pub interpreter: String,
    /// The CPU architecture as Python packaging names it (`x86_64`,
    /// `aarch64`).
    pub arch: String,
    /// The C library, when the image tells.
    pub libc: Option<Libc>,
    /// Whether the interpreter's standard library ships bytecode
    /// (`usr/lib/python3.N/__pycache__/*.cpython-3N.pyc`, or under
    /// `usr/local/lib` for `/usr/local/bin/python3.N`). Without it every
    /// start compiles each standard module it imports.
    pub stdlib_bytecode: bool,
}

impl BaseFacts {
    /// The `--python-platform` value uv resolves for, e.g.
    /// `x86_64-manylinux_2_36` or `x86_64-unknown-linux-musl`. uv knows
    /// manylinux tags from 2.17 to 2.40: a newer glibc is resolved as 2.40
    /// (wheels for newer glibc versions are then not chosen, never wrong
    /// ones), an older one is refused.
    pub fn platform_tag(&self) -> Option<String> {
        match self.libc.as_ref()? {
            Libc::Glibc { major: 2, minor } if *minor >= 17 => {
                Some(format!("{}-manylinux_2_{}", self.arch, (*minor).min(40)))
            }
            Libc::Glibc { .. } => None,
            Libc::Musl { .. } => Some(format!("{}-unknown-linux-musl", self.arch)),
        }
    }
}

/// What one path in the image says, as far as the scan cares.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Finding {
    /// A `python3.N` interpreter.
    Python { minor: u32 },
    /// A dpkg status file, with the `libc6` version if it lists one.
    Dpkg(Option<(u32, u32)>),
    /// The musl dynamic loader.
    MuslLoader,
    /// Alpine's package database, with the musl version if it lists one.
    Apk(Option<String>),
    /// A `libc.so.6` whose bytes name its version.
    LibcBinary(Option<(u32, u32)>),
    /// Bytecode of a standard library module, at the place its
    /// interpreter reads it from.
    StdlibBytecode,
}

/// Accumulates findings over the layers of one image, bottom first.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    found: BTreeMap<String, Finding>,
}

impl Scanner {
    /// Reads one uncompressed layer tar.
    pub(crate) fn scan_tar(&mut self, tar: impl Read) -> std::io::Result<()> {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            // A name outside the root makes the unpack of the layer fail;
            // one that is not UTF-8 is no path this scan looks for.
            let Some(path) = oci_layer::entry_path(&entry.path_bytes())
                .and_then(|p| p.into_os_string().into_string().ok())
            else {
                continue;
            };
            if path.is_empty() {
                continue;
            }
            let (dir, name) = match path.rsplit_once('/') {
                Some((d, n)) => (d, n),
                None => ("", path.as_str()),
            };
            if name == ".wh..wh..opq" {
                // An opaque root (`/.wh..wh..opq`) hides every lower path.
                let prefix = format!("{dir}/");
                self.found
                    .retain(|p, _| !dir.is_empty() && !p.starts_with(&prefix));
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{dir}/{hidden}")
                };
                let prefix = format!("{gone}/");
                self.found
                    .retain(|p, _| p != &gone && !p.starts_with(&prefix));
                continue;
            }
            let kind = entry.header().entry_type();
            let is_file = kind.is_file();
            let is_link = kind.is_symlink() || kind.is_hard_link();
            // A later layer that replaces a path with something else hides
            // what an earlier one had there.
            let finding = if (dir == "usr/bin" || dir == "usr/local/bin") && (is_file || is_link) {
                python_minor(name).map(|minor| Finding::Python { minor })
            } else if path == "var/lib/dpkg/status" && is_file {
                Some(Finding::Dpkg(dpkg_libc6(&read_capped(&mut entry)?)))
            } else if path == "lib/apk/db/installed" && is_file {
                Some(Finding::Apk(apk_musl(&read_capped(&mut entry)?)))
            } else if dir == "lib"
                && name.starts_with("ld-musl-")
                && name.ends_with(".so.1")
                && (is_file || is_link)
            {
                Some(Finding::MuslLoader)
            } else if is_file && is_stdlib_bytecode(dir, name) {
                Some(Finding::StdlibBytecode)
            } else if name == "libc.so.6" && is_file {
                Some(Finding::LibcBinary(glibc_in_binary(&read_capped(
                    &mut entry,
                )?)))
            } else {
                None
            };
            match finding {
                Some(f) => {
                    self.found.insert(path, f);
                }
                None => {
                    self.found.remove(&path);
                }
            }
        }
        Ok(())
    }

    /// The facts gathered. `hint` is the config's `PYTHON_VERSION`
    /// (`3.12.4`), which picks among several interpreters.
    pub(crate) fn finish(&self, hint: Option<&str>) -> (Option<(String, String)>, Option<Libc>) {
        let hinted_minor = hint.and_then(|h| {
            let mut parts = h.split('.');
            (parts.next() == Some("3"))
                .then(|| parts.next()?.parse::<u32>().ok())
                .flatten()
        });
        let mut pythons: Vec<(&str, u32)> = self
            .found
            .iter()
            .filter_map(|(p, f)| match f {
                Finding::Python { minor } => Some((p.as_str(), *minor)),
                _ => None,
            })
            .collect();
        // Preference: the hinted version, then /usr/local (where images
        // that build their own Python put it), then the newest.
        pythons.sort_by_key(|(p, minor)| {
            (
                Some(*minor) == hinted_minor,
                p.starts_with("usr/local/"),
                *minor,
            )
        });
        let python = pythons
            .last()
            .map(|(p, minor)| (format!("3.{minor}"), format!("/{p}")));
        let mut libc = None;
        let mut musl_loader = false;
        let mut apk_version = None;
        let mut binary = None;
        for f in self.found.values() {
            match f {
                Finding::Dpkg(Some((major, minor))) => {
                    libc = Some(Libc::Glibc {
                        major: *major,
                        minor: *minor,
                    })
                }
                Finding::MuslLoader => musl_loader = true,
                Finding::Apk(v) => apk_version = v.clone(),
                Finding::LibcBinary(Some(v)) => binary = Some(*v),
                _ => {}
            }
        }
        let libc = libc
            .or_else(|| binary.map(|(major, minor)| Libc::Glibc { major, minor }))
            .or_else(|| {
                musl_loader.then_some(Libc::Musl {
                    version: apk_version,
                })
            });
        (python, libc)
    }
}

impl Scanner {
    /// Whether the standard library of `interpreter` (`/usr/bin/python3.11`
    /// reads `/usr/lib/python3.11`) ships bytecode for the interpreter.
    pub(crate) fn stdlib_bytecode(&self, interpreter: &str) -> bool {
        let path = interpreter.trim_start_matches('/');
        let Some((prefix, name)) = path
            .rsplit_once('/')
            .and_then(|(bin, name)| Some((bin.strip_suffix("bin")?, name)))
        else {
            return false;
        };
        let dir = format!("{prefix}lib/{name}/__pycache__/");
        // Findings are checked to be bytecode of their directory's version.
        self.found.iter().any(|(p, f)| {
            *f == Finding::StdlibBytecode
                && p.strip_prefix(&dir).is_some_and(|file| !file.contains('/'))
        })
    }
}

/// Whether `dir/name` is the bytecode of a standard module as the
/// interpreter reads it: `usr/lib/python3.11/__pycache__/json.cpython-311.pyc`
/// (or under `usr/local/lib`); optimised (`.opt-1`) files are not read by
/// a plain start.
fn is_stdlib_bytecode(dir: &str, name: &str) -> bool {
    let Some(lib) = dir.strip_suffix("/__pycache__").and_then(|d| {
        d.strip_prefix("usr/lib/")
            .or_else(|| d.strip_prefix("usr/local/lib/"))
    }) else {
        return false;
    };
    let Some(minor) = python_minor(lib) else {
        return false;
    };
    name.strip_suffix(&format!(".cpython-3{minor}.pyc"))
        .is_some_and(|stem| !stem.is_empty() && !stem.contains('.'))
}

/// `python3.11` → 11; `python3.11-config`, `python3` → none.
fn python_minor(name: &str) -> Option<u32> {
    let minor = name.strip_prefix("python3.")?;
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    minor.parse().ok()
}

fn read_capped(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(MAX_READ).read_to_end(&mut buf)?;
    Ok(buf)
}

/// `major.minor` at the start of a version such as `2.36-9+deb12u4`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The `libc6` version of a dpkg status file.
fn dpkg_libc6(status: &[u8]) -> Option<(u32, u32)> {
    let text = String::from_utf8_lossy(status);
    text.split("\n\n").find_map(|stanza| {
        let mut is_libc6 = false;
        let mut version = None;
        for line in stanza.lines() {
            if let Some(p) = line.strip_prefix("Package:") {
                is_libc6 = p.trim() == "libc6";
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim());
            }
        }
        // An epoch (`1:2.36`) is not part of the upstream version.
        let v = version?;
        let v = v.split_once(':').map_or(v, |(_, rest)| rest);
        if is_libc6 { major_minor(v) } else { None }
    })
}

/// The musl version in Alpine's `lib/apk/db/installed`.
fn apk_musl(db: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(db);
    text.split("\n\n").find_map(|stanza| {
        let mut lines = stanza.lines();
        lines.clone().any(|l| l == "P:musl").then(|| {
            lines
                .find_map(|l| l.strip_prefix("V:"))
                .map(|v| v.split('-').next().unwrap_or(v).to_owned())
        })?
    })
}

/// The version glibc prints about itself: `GNU C Library (…) stable
/// release version 2.36.`
fn glibc_in_binary(bytes: &[u8]) -> Option<(u32, u32)> {
    const MARK: &[u8] = b"GNU C Library";
    const VERSION: &[u8] = b"version ";
    let start = bytes.windows(MARK.len()).position(|w| w == MARK)?;
    let window = &bytes[start..bytes.len().min(start + 256)];
    let end = window.iter().position(|&b| b == 0).unwrap_or(window.len());
    let window = &window[..end];
    let at = window.windows(VERSION.len()).position(|w| w == VERSION)?;
    let text = String::from_utf8_lossy(&window[at + VERSION.len()..]);
    major_minor(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of (path, kind, contents) entries; kind 'f' file, 'l' symlink
    /// (contents: its target). Names go into the header as written, so
    /// `/x` and `a/../x` get through as other tools write them.
    fn tar(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_mode(0o755);
            let body: &[u8] = match kind {
                'l' => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.as_old_mut().linkname[..data.len()].copy_from_slice(data);
                    b""
                }
                _ => data,
            };
            h.set_size(body.len() as u64);
            h.set_cksum();
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    const DPKG: &[u8] = b"Package: dash\nVersion: 0.5.12-2\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n\n";

    #[test]
    fn finds_python_and_glibc_from_dpkg() {
        let mut s = Scanner::default();
        s.scan_tar(
            &tar(&[
                ("./var/lib/dpkg/status", 'f', DPKG),
                ("usr/bin/python3.11", 'f', b"ELF"),
                ("usr/bin/python3.11-config", 'f', b"sh"),
                ("usr/bin/python3", 'l', b"python3.11"),
            ])[..],
        )
        .unwrap();
        let (python, libc) = s.finish(None);
        assert_eq!(
            python,
            Some(("3.11".to_owned(), "/usr/bin/python3.11".to_owned()))
        );
        assert_eq!(
            libc,
            Some(Libc::Glibc {
                major: 2,
                minor: 36
            })
        );
    }

    #[test]
    fn later_layers_and_whiteouts_win() {
        let mut s = Scanner::default();
        s.scan_tar(
            &tar(&[
                ("usr/bin/python3.9", 'f', b"ELF"),
                ("var/lib/dpkg/status", 'f', DPKG),
            ])[..],
        )
        .unwrap();
        s.scan_tar(
            &tar(&[
                ("usr/bin/.wh.python3.9", 'f', b""),
                ("usr/local/bin/python3.12", 'l', b"python3"),
                ("usr/bin/python3.13", 'f', b"ELF"),
            ])[..],
        )
        .unwrap();
        // /usr/local wins over a newer /usr/bin unless the hint says otherwise.
        let (python, _) = s.finish(None);
        assert_eq!(python.unwrap().1, "/usr/local/bin/python3.12");
        let (python, _) = s.finish(Some("3.13.1"));
        assert_eq!(python.unwrap().1, "/usr/bin/python3.13");
        s.scan_tar(&tar(&[("usr/local/bin/.wh..wh..opq", 'f', b"")])[..])
            .unwrap();
        s.scan_tar(&tar(&[("var/lib/dpkg/.wh.status", 'f', b"")])[..])
            .unwrap();
        let (python, libc) = s.finish(None);
        assert_eq!(python.unwrap().0, "3.13");
        assert_eq!(libc, None);
    }

    #[test]
    fn names_are_read_as_unpacking_reads_them() {
        let mut s = Scanner::default();
        s.scan_tar(
            &tar(&[
                ("/usr/bin/python3.9", 'f', b"ELF"),
                ("./var/lib/dpkg/status", 'f', DPKG),
                ("/usr/lib/../local/bin/python3.10", 'f', b"ELF"),
                // Refused by unpacking, so not a finding either.
                ("../usr/bin/python3.13", 'f', b"ELF"),
            ])[..],
        )
        .unwrap();
        let (python, libc) = s.finish(None);
        assert_eq!(python.unwrap().1, "/usr/local/bin/python3.10");
        assert!(libc.is_some());
        s.scan_tar(
            &tar(&[
                ("/usr/local/bin/.wh.python3.10", 'f', b""),
                ("./var/lib/.wh..wh..opq", 'f', b""),
                ("usr/./bin//python3.12", 'l', b"/usr/bin/python3.9"),
            ])[..],
        )
        .unwrap();
        let (python, libc) = s.finish(None);
        assert_eq!(python.unwrap().1, "/usr/bin/python3.12");
        assert_eq!(libc, None);
        s.scan_tar(&tar(&[("/.wh..wh..opq", 'f', b"")])[..])
            .unwrap();
        assert_eq!(s.finish(None), (None, None));
    }

    #[test]
    fn stdlib_bytecode_is_the_chosen_interpreter_s() {
        let mut s = Scanner::default();
        s.scan_tar(
            &tar(&[
                ("usr/bin/python3.11", 'f', b"ELF"),
                ("usr/lib/python3.11/json/__init__.py", 'f', b""),
                (
                    "usr/lib/python3.11/__pycache__/os.cpython-311.opt-1.pyc",
                    'f',
                    b"",
                ),
                (
                    "usr/lib/python3.12/__pycache__/os.cpython-312.pyc",
                    'f',
                    b"",
                ),
                (
                    "usr/lib/python3.11/__pycache__/os.cpython-312.pyc",
                    'f',
                    b"",
                ),
                (
                    "usr/lib/python3.11/__pycache__/link.cpython-311.pyc",
                    'l',
                    b"x",
                ),
            ])[..],
        )
        .unwrap();
        // Optimised only, another version's, a link: none a start reads.
        assert!(!s.stdlib_bytecode("/usr/bin/python3.11"));
        s.scan_tar(
            &tar(&[(
                "./usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
                'f',
                b"",
            )])[..],
        )
        .unwrap();
        assert!(s.stdlib_bytecode("/usr/bin/python3.11"));
        assert!(!s.stdlib_bytecode("/usr/local/bin/python3.11"));
        assert!(s.stdlib_bytecode("/usr/bin/python3.12"));
        assert!(!s.stdlib_bytecode("/usr/bin/python3.13"));
        s.scan_tar(&tar(&[("usr/lib/python3.11/.wh.__pycache__", 'f', b"")])[..])
            .unwrap();
        assert!(!s.stdlib_bytecode("/usr/bin/python3.11"));
        s.scan_tar(
            &tar(&[(
                "usr/local/lib/python3.12/__pycache__/json.cpython-312.pyc",
                'f',
                b"",
            )])[..],
        )
        .unwrap();
        assert!(s.stdlib_bytecode("/usr/local/bin/python3.12"));
    }

    #[test]
    fn musl_and_libc_binary() {
        let mut s = Scanner::default();
        s.scan_tar(
            &tar(&[
                ("lib/ld-musl-x86_64.so.1", 'f', b"ELF"),
                (
                    "lib/apk/db/installed",
                    'f',
                    b"C:Q1\nP:busybox\nV:1.36\n\nC:Q2\nP:musl\nV:1.2.4-r2\nA:x86_64\n\n",
                ),
            ])[..],
        )
        .unwrap();
        assert_eq!(
            s.finish(None).1,
            Some(Libc::Musl {
                version: Some("1.2.4".into())
            })
        );
        let mut s = Scanner::default();
        let mut libc = vec![0x7f, b'E', b'L', b'F', 0, 0];
        libc.extend_from_slice(
            b"GNU C Library (Debian GLIBC 2.36-9+deb12u4) stable release version 2.36.\n\0rest",
        );
        s.scan_tar(&tar(&[("lib/x86_64-linux-gnu/libc.so.6", 'f', &libc)])[..])
            .unwrap();
        assert_eq!(
            s.finish(None).1,
            Some(Libc::Glibc {
                major: 2,
                minor: 36
            })
        );
    }

    #[test]
    fn platform_tags() {
        let facts = |libc| BaseFacts {
            python_version: "3.11".into(),
            interpreter: "/usr/bin/python3.11".into(),
            arch: "x86_64".into(),
            libc,
            stdlib_bytecode: false,
        };
        let glibc = |minor| Some(Libc::Glibc { major: 2, minor });
        assert_eq!(
            facts(glibc(36)).platform_tag().as_deref(),
            Some("x86_64-manylinux_2_36")
        );
        assert_eq!(
            facts(glibc(41)).platform_tag().as_deref(),
            Some("x86_64-manylinux_2_40")
        );
        assert_eq!(facts(glibc(12)).platform_tag(), None);
        assert_eq!(facts(None).platform_tag(), None);
        assert_eq!(
            facts(Some(Libc::Musl { version: None }))
                .platform_tag()
                .as_deref(),
            Some("x86_64-unknown-linux-musl")
        );
    }
}
