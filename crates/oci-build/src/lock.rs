//! Resolving requirements to exactly one wheel per package with uv
//! (`uv pip compile --format pylock.toml`), and the lock cache.
//!
//! The lock key hashes everything that decides the answer: the
//! requirements (normalised name, PEP 508 text and `--hash` values, in
//! name order), Python `X.Y`, the platform tag, the C library, the
//! resolver options and [`FORMAT`]. A cached lock pins versions: the same
//! requirements on the same base resolve to the same wheels until the
//! cache entry is removed, which is what makes rebuilds reproducible and
//! fast (uv is not started at all).
//!
//! `--hash` options of a requirement are checked here, not by uv (its
//! `pip compile` has no `--require-hashes`): the wheel locked for a
//! package whose line names hashes must have one of them, else the build
//! fails. Packages pulled in without hashes are not checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the lock cache entries and of the key's recipe.
pub(crate) const FORMAT: &str = "hoist-lock-v1";

/// The most time uv may take to resolve: a hung index must not hang a build.
const UV_TIMEOUT: Duration = Duration::from_secs(300);

/// How requirements are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolverSettings {
    /// The `uv` program: `HOIST_UV`, else `uv` found in `PATH`.
    pub uv: PathBuf,
    /// Resolve from uv's cache only (`--offline`).
    pub offline: bool,
    /// Always ask the package index. Without it (and without `offline`)
    /// uv's cache is tried first and the index only when the cache cannot
    /// resolve the requirements: a resolution then picks the newest
    /// versions uv has seen, which may be older than the index's newest.
    pub refresh: bool,
}

impl ResolverSettings {
    /// Settings from the environment: `HOIST_UV` names the uv program.
    pub fn from_env() -> Self {
        Self {
            uv: std::env::var_os("HOIST_UV").map_or_else(|| PathBuf::from("uv"), PathBuf::from),
            offline: false,
            refresh: false,
        }
    }
}

/// A requirement as the resolver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Req {
    pub(crate) name: String,
    pub(crate) requirement: String,
    pub(crate) hashes: Vec<String>,
}

/// One locked package: its version and the one wheel chosen for the base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedWheel {
    /// Normalised package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The wheel's download URL (HTTPS).
    pub url: String,
    /// The wheel's file name.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the wheel, lowercase hex.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    format: String,
    wheels: Vec<LockedWheel>,
}

/// The lock key of a resolution, lowercase hex.
pub(crate) fn lock_key(reqs: &[Req], python: &str, platform: &str, libc: &str) -> String {
    let mut sorted: Vec<&Req> = reqs.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.requirement).cmp(&(&b.name, &b.requirement)));
    let mut text = format!(
        "{FORMAT}\npython={python}\nplatform={platform}\nlibc={libc}\noptions=--only-binary=:all:\n"
    );
    for r in sorted {
        let mut hashes = r.hashes.clone();
        hashes.sort();
        text.push_str(&format!(
            "req={}\t{}\t{}\n",
            r.name,
            r.requirement,
            hashes.join(",")
        ));
    }
    oci_model::Digest::of(text.as_bytes()).hex().to_owned()
}

/// Reads a cached lock, `None` on a miss or an entry of another format.
pub(crate) fn read_cached(path: &Path) -> Option<Vec<LockedWheel>> {
    let bytes = std::fs::read(path).ok()?;
    let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
    (entry.format == FORMAT).then_some(entry.wheels)
}

/// Writes a lock to the cache atomically.
pub(crate) fn write_cached(path: &Path, wheels: &[LockedWheel]) -> Result<()> {
    let entry = CacheEntry {
        format: FORMAT.into(),
        wheels: wheels.to_vec(),
    };
    crate::write_atomic(
        path,
        &serde_json::to_vec_pretty(&entry).expect("serializable"),
    )
}

/// Runs uv and returns one wheel per package, sorted by name.
pub(crate) async fn resolve(
    settings: &ResolverSettings,
    reqs: &[Req],
    python: &str,
    platform: &str,
    uv_cache: &Path,
) -> Result<Vec<LockedWheel>> {
    let tmp = tempfile::tempdir().map_err(|source| Error::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let input = tmp.path().join("requirements.in");
    let mut text = String::new();
    for r in reqs {
        text.push_str(&r.requirement);
        text.push('\n');
    }
    std::fs::write(&input, text.as_bytes()).map_err(crate::io_at(&input))?;
    let output = tmp.path().join("pylock.toml");
    let uv = |offline: bool| {
        let mut cmd = tokio::process::Command::new(&settings.uv);
        cmd.current_dir(tmp.path())
            .args(["pip", "compile"])
            .arg(&input)
            .args(["--python-version", python, "--python-platform", platform])
            .args(["--only-binary", ":all:", "--format", "pylock.toml"])
            .args(["--no-header", "--no-config", "--quiet", "-o"])
            .arg(&output)
            .arg("--cache-dir")
            .arg(uv_cache)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if offline {
            cmd.arg("--offline");
        }
        run_uv(settings, cmd)
    };
    let out = if settings.offline {
        uv(true).await?
    } else if settings.refresh {
        uv(false).await?
    } else {
        // uv's cache alone takes ~70 ms; asking the index ~250 ms more.
        match uv(true).await? {
            out if out.status.success() => out,
            _ => uv(false).await?,
        }
    };
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if let Some(package) = no_wheel_package(&message) {
            return Err(Error::NoWheel {
                package,
                python: python.to_owned(),
                platform: platform.to_owned(),
            });
        }
        return Err(Error::Resolve { message });
    }
    let lock = std::fs::read_to_string(&output).map_err(|source| Error::Io {
        path: output.clone(),
        source,
    })?;
    let wheels = parse_pylock(&lock)?;
    check_hashes(reqs, &wheels)?;
    Ok(wheels)
}

/// Runs a uv command to its end, bounded by [`UV_TIMEOUT`].
async fn run_uv(
    settings: &ResolverSettings,
    mut cmd: tokio::process::Command,
) -> Result<std::process::Output> {
    match tokio::time::timeout(UV_TIMEOUT, cmd.output()).await {
        Err(_) => Err(Error::Resolve {
            message: format!("uv did not finish within {} s", UV_TIMEOUT.as_secs()),
        }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::UvNotFound {
            program: settings.uv.clone(),
        }),
        Ok(Err(source)) => Err(Error::Io {
            path: settings.uv.clone(),
            source,
        }),
        Ok(Ok(out)) => Ok(out),
    }
}

/// The package uv says has no usable wheels, from its explanation
/// (`all versions of pycrypto have no usable wheels`, `pycrypto==2.6.1 has
/// no usable wheels`).
fn no_wheel_package(message: &str) -> Option<String> {
    let at = message.find("no usable wheels")?;
    let before = message[..at].trim_end();
    let before = before
        .strip_suffix(" have")
        .or_else(|| before.strip_suffix(" has"))?;
    let word = before.rsplit(' ').next()?;
    let name = word
        .split(['=', '<', '>', '!', '~', '['])
        .next()
        .unwrap_or(word);
    (!name.is_empty()).then(|| name.to_owned())
}

#[derive(Deserialize)]
struct Pylock {
    #[serde(default)]
    packages: Vec<PylockPackage>,
}

#[derive(Deserialize)]
struct PylockPackage {
    name: String,
    version: Option<String>,
    #[serde(default)]
    wheels: Vec<PylockWheel>,
}

#[derive(Deserialize)]
struct PylockWheel {
    url: Option<String>,
    name: Option<String>,
    size: Option<u64>,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
}

/// One wheel per package from a `pylock.toml`, sorted by name.
pub(crate) fn parse_pylock(text: &str) -> Result<Vec<LockedWheel>> {
    let bad = |reason: String| Error::BadLock { reason };
    let lock: Pylock = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(lock.packages.len());
    for p in lock.packages {
        let name = normalise_name(&p.name);
        let version = p
            .version
            .ok_or_else(|| bad(format!("{name}: no version")))?;
        // The platform is fixed, so uv lists one wheel; should it list
        // several, the first (uv's preference) is taken.
        let w = p
            .wheels
            .into_iter()
            .next()
            .ok_or_else(|| bad(format!("{name} {version}: no wheel")))?;
        let url = w
            .url
            .ok_or_else(|| bad(format!("{name} {version}: wheel without url")))?;
        let filename = w
            .name
            .or_else(|| url.rsplit('/').next().map(str::to_owned))
            .unwrap_or_default();
        if !filename.ends_with(".whl")
            || filename.contains(['/', '\\', '\0'])
            || filename.starts_with('.')
        {
            return Err(bad(format!(
                "{name} {version}: bad wheel file name `{filename}`"
            )));
        }
        let sha256 = w
            .hashes
            .get("sha256")
            .cloned()
            .ok_or_else(|| bad(format!("{name} {version}: wheel without sha256")))?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("{name} {version}: bad sha256 `{sha256}`")));
        }
        let size = w
            .size
            .ok_or_else(|| bad(format!("{name} {version}: wheel without size")))?;
        out.push(LockedWheel {
            name,
            version,
            url,
            filename,
            size,
            sha256: sha256.to_ascii_lowercase(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// PEP 503 normalisation: lowercase, runs of `-_.` become `-`.
fn normalise_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Every requirement with `--hash` values must have its wheel among them.
pub(crate) fn check_hashes(reqs: &[Req], wheels: &[LockedWheel]) -> Result<()> {
    for r in reqs.iter().filter(|r| !r.hashes.is_empty()) {
        let name = normalise_name(&r.name);
        let Some(w) = wheels.iter().find(|w| w.name == name) else {
            continue;
        };
        let ok = r.hashes.iter().any(|h| {
            let hex = h.strip_prefix("sha256:").unwrap_or(h);
            hex.eq_ignore_ascii_case(&w.sha256)
        });
        if !ok {
            return Err(Error::HashMismatch {
                package: name,
                wheel: w.filename.clone(),
                sha256: w.sha256.clone(),
                allowed: r.hashes.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.11"

[[packages]]
name = "six"
version = "1.17.0"
wheels = [{ url = "https://files.example/six-1.17.0-py2.py3-none-any.whl", upload-time = 2024-12-04T17:35:26Z, size = 11050, hashes = { sha256 = "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274" } }]

[[packages]]
name = "Attrs"
version = "26.1.0"
wheels = [{ url = "https://files.example/attrs-26.1.0-py3-none-any.whl", size = 67548, hashes = { sha256 = "c647aa4a12dfbad9333ca4e71fe62ddc36f4e63b2d260a37a8b83d2f043ac309" } }]
"#;

    fn req(name: &str, text: &str, hashes: &[&str]) -> Req {
        Req {
            name: name.into(),
            requirement: text.into(),
            hashes: hashes.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn parses_pylock_sorted() {
        let w = parse_pylock(LOCK).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].name, "attrs");
        assert_eq!(w[0].filename, "attrs-26.1.0-py3-none-any.whl");
        assert_eq!(w[1].size, 11050);
        let no_wheel = "[[packages]]\nname = \"x\"\nversion = \"1\"\n";
        assert!(matches!(parse_pylock(no_wheel), Err(Error::BadLock { .. })));
        let evil = LOCK.replace("six-1.17.0-py2.py3-none-any.whl", "six.tar.gz");
        assert!(matches!(parse_pylock(&evil), Err(Error::BadLock { .. })));
    }

    #[test]
    fn lock_key_is_stable_and_sensitive() {
        let a = [req("six", "six", &[]), req("attrs", "attrs>=20", &[])];
        let b = [req("attrs", "attrs>=20", &[]), req("six", "six", &[])];
        let k = lock_key(&a, "3.11", "x86_64-manylinux_2_36", "glibc 2.36");
        assert_eq!(
            k,
            lock_key(&b, "3.11", "x86_64-manylinux_2_36", "glibc 2.36")
        );
        assert_eq!(k.len(), 64);
        for other in [
            lock_key(&a, "3.12", "x86_64-manylinux_2_36", "glibc 2.36"),
            lock_key(&a, "3.11", "x86_64-manylinux_2_28", "glibc 2.36"),
            lock_key(&a, "3.11", "x86_64-manylinux_2_36", "glibc 2.37"),
            lock_key(&a[..1], "3.11", "x86_64-manylinux_2_36", "glibc 2.36"),
            lock_key(
                &[req("six", "six", &["sha256:00"]), a[1].clone()],
                "3.11",
                "x86_64-manylinux_2_36",
                "glibc 2.36",
            ),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn hashes_are_enforced() {
        let w = parse_pylock(LOCK).unwrap();
        let good = "sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274";
        check_hashes(&[req("six", "six", &["sha256:00", good])], &w).unwrap();
        check_hashes(&[req("attrs", "attrs", &[])], &w).unwrap();
        let err = check_hashes(&[req("Six", "six", &["sha256:00"])], &w).unwrap_err();
        assert!(
            matches!(&err, Error::HashMismatch { package, .. } if package == "six"),
            "{err}"
        );
    }

    #[test]
    fn names_the_package_without_wheels() {
        let msg = "error: No solution found when resolving dependencies\n  cause: Because all versions of pycrypto have no usable wheels and you require pycrypto, we can conclude that your requirements are unsatisfiable.";
        assert_eq!(no_wheel_package(msg).as_deref(), Some("pycrypto"));
        let msg = "Because only foo==1.0 is available and foo==1.0 has no usable wheels, we can";
        assert_eq!(no_wheel_package(msg).as_deref(), Some("foo"));
        assert_eq!(no_wheel_package("network error"), None);
        assert_eq!(normalise_name("Zope.Interface__x"), "zope-interface-x");
    }
}
