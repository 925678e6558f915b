//! Getting the `.deb` files: from the cache (`<cache>/debs/<sha256>.deb`),
//! else from apt's archive cache, else through `apt-get download` (apt is
//! the only path to the network: its sources, proxies and authentication
//! apply). Every file is checked against the SHA256 the index gives before
//! it enters the cache, and again while it is read.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use crate::index::Package;
use crate::{Error, Result};

/// apt's own cache of downloaded packages.
pub const APT_ARCHIVES: &str = "/var/cache/apt/archives";

/// A reader that hashes what passes through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads what is left and returns the hex SHA256 of everything read.
    pub(crate) fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Hashing::new(f).finish().map_err(|e| Error::io(path, e))
}

/// The hash the index gives for `p`, or an error naming it.
pub(crate) fn expected_hash(p: &Package) -> Result<&str> {
    p.sha256.as_deref().ok_or_else(|| Error::NoHash {
        package: format!("{}={}", p.name, p.version),
    })
}

/// The cached, verified `.deb` of each package (same order), fetching
/// the missing ones. Returns the paths and how many were downloaded.
pub(crate) fn fetch(
    debs: &Path,
    apt_archives: &Path,
    arch: &str,
    packages: &[&Package],
) -> Result<(Vec<PathBuf>, usize)> {
    std::fs::create_dir_all(debs).map_err(|e| Error::io(debs, e))?;
    let path_of =
        |p: &Package| -> Result<PathBuf> { Ok(debs.join(format!("{}.deb", expected_hash(p)?))) };
    let mut missing = Vec::new();
    for p in packages {
        let cached = path_of(p)?;
        if cached.is_file() {
            continue;
        }
        // apt's cache names files NAME_VERSION_ARCH.deb, `:` as `%3a`.
        let apt_name = format!(
            "{}_{}_{}.deb",
            p.name,
            p.version.replace(':', "%3a"),
            p.architecture
        );
        let in_apt = apt_archives.join(apt_name);
        if in_apt.is_file() && sha256_file(&in_apt)? == expected_hash(p)? {
            let tmp = tempfile::NamedTempFile::new_in(debs).map_err(|e| Error::io(debs, e))?;
            std::fs::copy(&in_apt, tmp.path()).map_err(|e| Error::io(&in_apt, e))?;
            tmp.persist(&cached)
                .map_err(|e| Error::io(&cached, e.error))?;
            continue;
        }
        missing.push(*p);
    }
    if !missing.is_empty() {
        download(debs, arch, &missing)?;
    }
    let paths = packages.iter().map(|p| path_of(p)).collect::<Result<_>>()?;
    Ok((paths, missing.len()))
}

/// `apt-get download` of `missing` into a temporary directory of `debs`;
/// each file is verified, then renamed to its hash.
fn download(debs: &Path, arch: &str, missing: &[&Package]) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(debs)
        .map_err(|e| Error::io(debs, e))?;
    let args: Vec<String> = missing
        .iter()
        .map(|p| {
            if p.architecture == arch || p.architecture == "all" {
                format!("{}={}", p.name, p.version)
            } else {
                format!("{}:{}={}", p.name, p.architecture, p.version)
            }
        })
        .collect();
    let out = Command::new("apt-get")
        .args(["download", "-q"])
        .args(&args)
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("apt-get", e))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("apt-get download {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    for p in missing {
        let prefix = format!("{}_", p.name);
        let file = std::fs::read_dir(tmp.path())
            .map_err(|e| Error::io(tmp.path(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|f| {
                let n = f.file_name().unwrap_or_default().to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".deb")
            })
            .ok_or_else(|| Error::Deb {
                package: p.name.clone(),
                reason: "`apt-get download` left no .deb for it".into(),
            })?;
        verify(p, &sha256_file(&file)?)?;
        let cached = debs.join(format!("{}.deb", expected_hash(p)?));
        std::fs::rename(&file, &cached).map_err(|e| Error::io(&cached, e))?;
    }
    Ok(())
}

/// Checks `actual` against the index's hash of `p`.
pub(crate) fn verify(p: &Package, actual: &str) -> Result<()> {
    let expected = expected_hash(p)?;
    if actual != expected {
        return Err(Error::HashMismatch {
            package: format!("{}={}", p.name, p.version),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        });
    }
    Ok(())
}
