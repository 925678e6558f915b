//! Reading a `.deb` without dpkg, in one pass: the `ar` archive, the
//! `control` file from `control.tar.*` and the files of `data.tar.*`,
//! unpacked through [`oci_layer::unpack`] so that no entry lands outside
//! its directory (`..`, absolute names, writes through links, links
//! climbing out, hard links to anything but an earlier regular file are
//! refused; devices and FIFOs dropped; setuid bits cleared; sizes
//! bounded). Maintainer scripts in `control.tar` are never read.

use std::io::{self, Read};
use std::path::Path;

use oci_layer::{Compression, UnpackOptions};

use crate::{Error, Result};

/// The most bytes of a package's `control` file.
const MAX_CONTROL: u64 = 1 << 20;
const AR_MAGIC: &[u8] = b"!<arch>\n";

/// Limits on one package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebLimits {
    /// Most entries of `data.tar`.
    pub max_entries: u64,
    /// Most bytes of file content in `data.tar`.
    pub max_bytes: u64,
}

impl Default for DebLimits {
    /// 200,000 entries, 4 GiB: above any Debian package.
    fn default() -> Self {
        Self {
            max_entries: 200_000,
            max_bytes: 4 << 30,
        }
    }
}

/// Unpacks the `.deb` read from `reader` into `dest` (which must not
/// exist: it is created whole or not at all) and returns the package's
/// `control` file. `what` names the package in errors.
///
/// ```no_run
/// let deb = std::fs::File::open("dash_0.5.12-2_amd64.deb")?;
/// let control = debian_base::unpack_deb(deb, "dash".as_ref(), "dash", &Default::default())?;
/// assert!(control.starts_with("Package: dash\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unpack_deb(
    mut reader: impl Read,
    dest: &Path,
    what: &str,
    limits: &DebLimits,
) -> Result<String> {
    let bad = |reason: String| Error::Deb {
        package: what.to_owned(),
        reason,
    };
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(|e| bad(format!("no ar header: {e}")))?;
    if magic != AR_MAGIC {
        return Err(bad("not an ar archive".into()));
    }
    let mut control = None;
    let mut unpacked = false;
    let mut seen_binary = false;
    loop {
        let mut header = [0u8; 60];
        match read_full(&mut reader, &mut header) {
            Ok(0) => break,
            Ok(60) => {}
            Ok(_) => return Err(bad("truncated ar member header".into())),
            Err(e) => return Err(bad(format!("read: {e}"))),
        }
        if &header[58..60] != b"`\n" {
            return Err(bad("bad ar member header".into()));
        }
        let name = std::str::from_utf8(&header[..16])
            .map_err(|_| bad("member name not UTF-8".into()))?
            .trim_end()
            .trim_end_matches('/')
            .to_owned();
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad(format!("member {name}: bad size")))?;
        let mut member = (&mut reader).take(size);
        if name == "debian-binary" {
            let mut version = Vec::new();
            member
                .by_ref()
                .take(64)
                .read_to_end(&mut version)
                .map_err(|e| bad(format!("debian-binary: {e}")))?;
            if !version.starts_with(b"2.") {
                return Err(bad("debian-binary is not format 2.x".into()));
            }
            seen_binary = true;
        } else if let Some(ext) = name.strip_prefix("control.tar") {
            if control.is_some() {
                return Err(bad("two control members".into()));
            }
            let tar = decoder(ext, &mut member).map_err(|e| bad(format!("{name}: {e}")))?;
            control = Some(read_control(tar).map_err(|e| bad(format!("{name}: {e}")))?);
        } else if let Some(ext) = name.strip_prefix("data.tar") {
            if unpacked || control.is_none() || !seen_binary {
                return Err(bad(format!("{name} out of order")));
            }
            let tar = decoder(ext, &mut member).map_err(|e| bad(format!("{name}: {e}")))?;
            let opts = UnpackOptions {
                max_entries: limits.max_entries,
                max_total_bytes: limits.max_bytes,
            };
            oci_layer::unpack(tar, Compression::None, dest, &opts).map_err(|source| {
                Error::Unpack {
                    package: what.to_owned(),
                    source,
                }
            })?;
            unpacked = true;
        } else if !name.starts_with('_') {
            return Err(bad(format!("unexpected member `{name}`")));
        }
        // What a decoder left unread (tar padding), then ar's own padding.
        io::copy(&mut member, &mut io::sink()).map_err(|e| bad(format!("read: {e}")))?;
        if member.limit() != 0 {
            return Err(bad(format!("member {name} truncated")));
        }
        if size % 2 == 1 {
            let mut pad = [0u8; 1];
            let _ = read_full(&mut reader, &mut pad).map_err(|e| bad(format!("read: {e}")))?;
        }
    }
    if !unpacked {
        return Err(bad("no data.tar member".into()));
    }
    control.ok_or_else(|| bad("no control file".into()))
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A decompressing reader for a member named `*.tar{ext}`.
fn decoder<'a>(ext: &str, reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    match ext {
        "" => Ok(Box::new(reader)),
        ".xz" => Ok(Box::new(xz2::read::XzDecoder::new(reader))),
        ".gz" => Compression::Gzip.decoder(reader),
        ".zst" => Compression::Zstd.decoder(reader),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("compression `{other}` is not supported"),
        )),
    }
}

/// The `control` file of a `control.tar`, bounded; scripts are skipped.
fn read_control(tar: impl Read) -> io::Result<String> {
    let mut archive = tar::Archive::new(tar);
    let mut control = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes();
        if !matches!(&path[..], b"./control" | b"control") {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(io::Error::other("control is not a regular file"));
        }
        let mut text = Vec::new();
        entry
            .by_ref()
            .take(MAX_CONTROL + 1)
            .read_to_end(&mut text)?;
        if text.len() as u64 > MAX_CONTROL {
            return Err(io::Error::other(format!(
                "control over {MAX_CONTROL} bytes"
            )));
        }
        control =
            Some(String::from_utf8(text).map_err(|_| io::Error::other("control is not UTF-8"))?);
    }
    control.ok_or_else(|| io::Error::other("no control file"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar of `(name, kind, target or content)`; kind `f` file, `l`
    /// symlink, `h` hard link, `c` character device.
    pub(crate) fn tar(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(0);
            let t = match kind {
                'f' => tar::EntryType::Regular,
                'l' => tar::EntryType::Symlink,
                'h' => tar::EntryType::Link,
                'c' => tar::EntryType::Char,
                _ => tar::EntryType::Directory,
            };
            h.set_entry_type(t);
            // Names written raw, so that `..` and `/` reach the reader.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if *kind == 'f' {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            } else {
                if *kind == 'l' || *kind == 'h' {
                    h.set_link_name(data).unwrap();
                }
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    /// An ar archive of `(name, bytes)` members.
    pub(crate) fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            out.extend(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            out.extend(*data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    /// A `.deb` whose data is `data` and control names `package`.
    pub(crate) fn deb(package: &str, data: &[(&str, char, &str)]) -> Vec<u8> {
        let control = format!("Package: {package}\nVersion: 1\nArchitecture: all\n");
        let control = tar(&[
            ("./control", 'f', &control),
            ("./postinst", 'f', "#!/bin/sh\nrm -rf /\n"),
        ]);
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &tar(data)),
        ])
    }

    #[test]
    fn unpacks_data_and_returns_control() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = deb(
            "ok",
            &[
                ("./usr/bin/tool", 'f', "x"),
                ("./usr/bin/alias", 'l', "tool"),
            ],
        );
        let control = unpack_deb(
            &bytes[..],
            &dir.path().join("root"),
            "ok",
            &DebLimits::default(),
        )
        .unwrap();
        assert!(control.starts_with("Package: ok\n"), "{control}");
        assert_eq!(
            std::fs::read(dir.path().join("root/usr/bin/tool")).unwrap(),
            b"x"
        );
        assert!(!dir.path().join("root/postinst").exists());
    }

    #[test]
    fn hostile_packages_are_refused_and_leave_nothing() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (deb("evil", &[("../../etc/evil", 'f', "x")]), "climbs out"),
            (
                deb(
                    "evil",
                    &[
                        ("./usr/lib/x", 'l', "../../../../etc"),
                        ("./usr/lib/x/passwd", 'f', "x"),
                    ],
                ),
                "evil",
            ),
            (
                deb(
                    "evil",
                    &[("./link", 'l', "/etc"), ("./link/passwd", 'f', "x")],
                ),
                "symlink",
            ),
            (deb("evil", &[("./h", 'h', "/etc/shadow")]), "hard link"),
            (b"!<arch>\nnot a header".to_vec(), "truncated"),
            (b"PK\x03\x04 zip file".to_vec(), "not an ar archive"),
            (
                ar(&[("debian-binary", b"2.0\n"), ("data.tar", &tar(&[]))]),
                "out of order",
            ),
            (
                ar(&[("debian-binary", b"2.0\n"), ("control.tar.bz2", b"x")]),
                "not supported",
            ),
            (ar(&[("debian-binary", b"3.0\n")]), "format 2.x"),
            (
                ar(&[("debian-binary", b"2.0\n"), ("evil.sh", b"x")]),
                "unexpected member",
            ),
        ];
        for (bytes, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("root");
            let err = unpack_deb(&bytes[..], &dest, "evil", &DebLimits::default()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("evil"), "{text}");
            assert!(text.contains(want), "want {want}: {text}");
            assert!(!dest.exists(), "{text}: left {}", dest.display());
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{text}");
        }
        // A device node is dropped, not made.
        let dir = tempfile::tempdir().unwrap();
        let bytes = deb("dev", &[("./dev/sda", 'c', ""), ("./ok", 'f', "")]);
        unpack_deb(
            &bytes[..],
            &dir.path().join("r"),
            "dev",
            &DebLimits::default(),
        )
        .unwrap();
        assert!(!dir.path().join("r/dev/sda").exists());
        // Over the byte limit.
        let bytes = deb("big", &[("./big", 'f', "0123456789")]);
        let limits = DebLimits {
            max_entries: 10,
            max_bytes: 5,
        };
        let err = unpack_deb(&bytes[..], &dir.path().join("b"), "big", &limits).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
