//! Assembling the image: packages unpacked and merged into one root, what
//! maintainer scripts would have made, bytecode, layers, config.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_layer::{LayerInfo, LayerWriter, WriteOptions};
use oci_model::media_type::{OCI_CONFIG, OCI_MANIFEST};
use oci_model::{Descriptor, Digest, Layout, Platform};
use serde::Serialize;
use serde_json::json;

use crate::control::Paragraphs;
use crate::deb::{DebLimits, unpack_deb};
use crate::fetch::{Hashing, fetch, verify};
use crate::index::{APT_LISTS, Index};
use crate::resolve::{DEFAULT_EXCLUDED, resolve};
use crate::{APT_ARCHIVES, Error, Result};

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\n";
/// Documentation nobody reads inside an image (copyright files stay).
const PRUNED: &[&str] = &["usr/share/man", "usr/share/info", "usr/share/lintian"];
/// Libraries that `update-alternatives` links in a maintainer script:
/// the link is made to the first (by name) implementation shipped (a file
/// or, as libblas3 ships it, a link) in a subdirectory of the multiarch
/// library directory.
const ALTERNATIVES: &[&str] = &["libblas.so.3", "liblapack.so.3"];
/// The most bytes of the host's `/etc/os-release` read.
const MAX_OS_RELEASE: u64 = 64 << 10;
/// The packages of the `slim` preset: Python 3.11 as bookworm ships it
/// (interpreter, standard library, `/usr/bin/python3`), dash for
/// `/bin/sh` and base-files for `/etc/os-release`.
const SLIM: &[&str] = &[
    "base-files",
    "dash",
    "libpython3.11-stdlib",
    "python3-minimal",
];

/// The package sets the function platform's base images use, on the
/// Python the distribution ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Python 3.11, its standard library, dash and base-files.
    Slim,
    /// `slim` + `python3-numpy`.
    Numpy,
    /// `slim` + `python3-scipy` (which brings numpy).
    Scipy,
}

impl Preset {
    /// The requested packages (their dependencies are resolved).
    ///
    /// ```
    /// let p = debian_base::Preset::Numpy.packages();
    /// assert!(p.contains(&"python3-numpy".to_string()));
    /// ```
    pub fn packages(self) -> Vec<String> {
        let extra: &[&str] = match self {
            Self::Slim => &[],
            Self::Numpy => &["python3-numpy"],
            Self::Scipy => &["python3-scipy"],
        };
        SLIM.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    }

    /// `slim`, `numpy` or `scipy`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Slim => "slim",
            Self::Numpy => "numpy",
            Self::Scipy => "scipy",
        }
    }
}

impl FromStr for Preset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "slim" => Ok(Self::Slim),
            "numpy" => Ok(Self::Numpy),
            "scipy" => Ok(Self::Scipy),
            other => Err(Error::Preset(other.to_owned())),
        }
    }
}

/// The Debian architecture of an OCI platform.
///
/// ```
/// use oci_model::Platform;
/// assert_eq!(debian_base::debian_arch(&Platform::default())?, "amd64");
/// # Ok::<(), debian_base::Error>(())
/// ```
pub fn debian_arch(platform: &Platform) -> Result<&'static str> {
    let variant = platform.variant.as_deref();
    Ok(
        match (
            platform.os.as_str(),
            platform.architecture.as_str(),
            variant,
        ) {
            ("linux", "amd64", _) => "amd64",
            ("linux", "arm64", _) => "arm64",
            ("linux", "arm", Some("v7")) => "armhf",
            ("linux", "386", _) => "i386",
            ("linux", "ppc64le", _) => "ppc64el",
            ("linux", "s390x", _) => "s390x",
            ("linux", "riscv64", _) => "riscv64",
            _ => return Err(Error::Platform(platform.to_string())),
        },
    )
}

/// What to build.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// Packages to install: `name` (the index's highest version) or
    /// `name=version`.
    pub packages: Vec<String>,
    /// Packages that satisfy dependencies without being installed
    /// (default [`DEFAULT_EXCLUDED`]).
    pub excluded: Vec<String>,
    /// The image's platform (default linux/amd64).
    pub platform: Platform,
    /// The tag of the image in the layout.
    pub tag: String,
    /// Every timestamp: entries' mtimes, `created` (default 0).
    pub epoch: u64,
    /// apt's lists (default `/var/lib/apt/lists`).
    pub lists_dir: PathBuf,
    /// apt's archive cache, tried before downloading (default
    /// `/var/cache/apt/archives`).
    pub apt_archives: PathBuf,
    /// This crate's cache: `debs/<sha256>.deb` and `tmp/` for builds.
    pub cache_dir: PathBuf,
    /// Limits on each package.
    pub limits: DebLimits,
    /// Extra labels of the image config.
    pub labels: BTreeMap<String, String>,
    /// Annotations of the manifest (none by default: the manifest then
    /// has no `annotations` field). `hoist base` marks its images
    /// immutable here.
    pub annotations: BTreeMap<String, String>,
    /// Where the image's Python compiles bytecode; `None`: no bytecode.
    #[cfg(feature = "bytecode")]
    pub sandbox: Option<sandbox_run::SandboxConfig>,
}

impl Request {
    /// A request for `packages`, caching under `cache_dir`, with the
    /// defaults of each field.
    pub fn new(
        packages: impl IntoIterator<Item = impl Into<String>>,
        cache_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            packages: packages.into_iter().map(Into::into).collect(),
            excluded: DEFAULT_EXCLUDED.iter().map(|s| (*s).to_owned()).collect(),
            platform: Platform::default(),
            tag: "latest".into(),
            epoch: 0,
            lists_dir: APT_LISTS.into(),
            apt_archives: APT_ARCHIVES.into(),
            cache_dir: cache_dir.into(),
            limits: DebLimits::default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            #[cfg(feature = "bytecode")]
            sandbox: None,
        }
    }
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// Name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture (`all` or the image's).
    pub architecture: String,
    /// SHA256 of the `.deb`, as the index gives and the file matched.
    pub sha256: String,
    /// The package whose dependency pulled it in; none when requested.
    pub required_by: Option<String>,
}

/// Whether the image carries bytecode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum BytecodeReport {
    /// Hash-based `.pyc` files in their own layer.
    Compiled {
        /// The interpreter that compiled them.
        interpreter: String,
        /// Modules with bytecode.
        modules: u64,
        /// Sources the interpreter refused (syntax of another Python).
        uncompiled: u64,
    },
    /// None.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// What [`build`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Built {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The config's digest.
    pub config_digest: Digest,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Manifest, config and compressed layers, in bytes.
    pub image_size: u64,
    /// Every installed package, by name.
    pub packages: Vec<Installed>,
    /// Excluded packages some dependency named.
    pub excluded: Vec<String>,
    /// Packages downloaded by this build (the rest came from a cache).
    pub downloaded: usize,
    /// The bytecode.
    pub bytecode: BytecodeReport,
}

/// Builds the image of `request` into the OCI layout `layout_dir`
/// (created if needed), tagged [`Request::tag`]. Blocking: it runs apt
/// and, for bytecode, the sandbox.
///
/// Bytecode is `unchecked-hash` (PEP 552), as Debian's `py3compile`
/// would have it checked by timestamp: a layer sets every mtime to the
/// epoch, so timestamps cannot work; `checked-hash` would read and hash
/// every imported source at every start, the very cost bytecode removes;
/// the sources and their `.pyc` ship together in an image nothing
/// modifies. `PYTHONHASHSEED=0` keeps set literals in one order.
///
/// On error nothing is tagged in the layout (blobs written before may
/// remain); the work directory under the cache is removed.
pub fn build(request: &Request, layout_dir: &Path) -> Result<Built> {
    let arch = debian_arch(&request.platform)?;
    let index = Index::from_apt_lists(&request.lists_dir, arch)?;
    let resolution = resolve(&index, &request.packages, &request.excluded)?;
    let selected: Vec<&crate::Package> = resolution.packages.iter().map(|s| &s.package).collect();
    let (debs, downloaded) = fetch(
        &request.cache_dir.join("debs"),
        &request.apt_archives,
        arch,
        &selected,
    )?;
    let tmp = request.cache_dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|e| Error::io(&rootfs, e))?;

    let mut status = String::new();
    for (i, (package, deb)) in selected.iter().zip(&debs).enumerate() {
        let dest = work.path().join(format!("pkg-{i}"));
        let file = std::fs::File::open(deb).map_err(|e| Error::io(deb, e))?;
        let mut hashing = Hashing::new(file);
        let control = unpack_deb(&mut hashing, &dest, &package.name, &request.limits)?;
        verify(package, &hashing.finish().map_err(|e| Error::io(deb, e))?)?;
        status.push_str(&status_entry(&control, package)?);
        merge(&dest, &rootfs, &package.name)?;
        std::fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
    }
    for pruned in PRUNED {
        let path = rootfs.join(pruned);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    system_files(&rootfs, &status)?;

    let python = find_python(&rootfs)?;
    let bytecode_tree = work.path().join("bytecode");
    let bytecode = compile(
        request,
        &rootfs,
        python.as_ref(),
        &bytecode_tree,
        work.path(),
    )?;

    let layout = Layout::create(layout_dir)?;
    let opts = WriteOptions {
        mtime: request.epoch,
        ..WriteOptions::default()
    };
    let names: Vec<String> = resolution
        .packages
        .iter()
        .map(|s| format!("{}={}", s.package.name, s.package.version))
        .collect();
    let mut w = LayerWriter::new(opts.clone());
    w.add_tree(&rootfs, "")?;
    let mut layers = vec![(
        write_layer(&layout, w)?,
        format!("debian packages: {}", names.join(" ")),
    )];
    if let BytecodeReport::Compiled { interpreter, .. } = &bytecode {
        let mut w = LayerWriter::new(opts);
        w.add_tree(&bytecode_tree, "")?;
        layers.push((
            write_layer(&layout, w)?,
            format!("bytecode: {interpreter} unchecked-hash"),
        ));
    }

    let cmd: Vec<String> = match &python {
        Some(_) if rootfs.join("usr/bin/python3").exists() => vec!["/usr/bin/python3".into()],
        Some((path, _)) => vec![format!("/{path}")],
        None if rootfs.join("bin/sh").exists() => vec!["/bin/sh".into()],
        None => vec![],
    };
    let mut labels = request.labels.clone();
    labels.insert(
        "org.opencontainers.image.created".into(),
        oci_model::rfc3339(request.epoch),
    );
    labels.insert("dev.hoist.base.packages".into(), names.join(" "));
    if let Some((_, version)) = &python {
        labels.insert("dev.hoist.base.python".into(), version.clone());
    }
    let created = oci_model::rfc3339(request.epoch);
    let mut config = json!({
        "created": created,
        "architecture": request.platform.architecture,
        "os": request.platform.os,
        "config": { "Env": [PATH_ENV, "LANG=C.UTF-8"], "Cmd": cmd, "Labels": labels },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(l, _)| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": layers
            .iter()
            .map(|(_, by)| json!({ "created": created, "created_by": format!("hoist base debian: {by}") }))
            .collect::<Vec<_>>(),
    });
    if let Some(v) = &request.platform.variant {
        config["variant"] = v.clone().into();
    }
    let config = serde_json::to_vec(&config).expect("JSON serializes");
    let config_digest = layout.write_blob(&config)?;
    let descriptors: Vec<Descriptor> = layers.iter().map(|(l, _)| l.descriptor()).collect();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len() },
        "layers": descriptors,
    });
    if !request.annotations.is_empty() {
        manifest["annotations"] = json!(request.annotations);
    }
    let manifest = serde_json::to_vec(&manifest).expect("JSON serializes");
    let desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: layout.write_blob(&manifest)?,
        size: manifest.len() as u64,
        platform: None,
    };
    layout.add_manifest(&desc, Some(&request.tag))?;
    let packages = resolution
        .packages
        .iter()
        .map(|s| Installed {
            name: s.package.name.clone(),
            version: s.package.version.clone(),
            architecture: s.package.architecture.clone(),
            sha256: s.package.sha256.clone().unwrap_or_default(),
            required_by: s.required_by.clone(),
        })
        .collect();
    Ok(Built {
        image_size: desc.size
            + config.len() as u64
            + descriptors.iter().map(|d| d.size).sum::<u64>(),
        manifest_digest: desc.digest,
        manifest_size: desc.size,
        config_digest,
        layers: descriptors,
        packages,
        excluded: resolution.excluded,
        downloaded,
        bytecode,
    })
}

/// The dpkg status paragraph of a package from its `control` file:
/// `Status: install ok installed` after `Package:`. The control file must
/// name the package and version the index does.
fn status_entry(control: &str, package: &crate::Package) -> Result<String> {
    let what = format!("{} control file", package.name);
    let paragraphs: Vec<_> =
        Paragraphs::named(control.as_bytes(), what.clone()).collect::<Result<_>>()?;
    let bad = |reason: String| Error::Deb {
        package: package.name.clone(),
        reason,
    };
    let [p] = paragraphs.as_slice() else {
        return Err(bad(format!(
            "{} paragraphs in its control file",
            paragraphs.len()
        )));
    };
    if p.get("Package") != Some(&package.name) || p.get("Version") != Some(&package.version) {
        return Err(bad(format!(
            "its control file names {} {}, not the index's {}",
            p.get("Package").unwrap_or("?"),
            p.get("Version").unwrap_or("?"),
            package.version
        )));
    }
    let body = control.trim_matches('\n');
    let (first, rest) = body.split_once('\n').unwrap_or((body, ""));
    if !first.starts_with("Package:") {
        return Err(bad("its control file does not start with Package:".into()));
    }
    let rest: String = rest
        .lines()
        .filter(|l| !l.starts_with("Status:"))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(format!("{first}\nStatus: install ok installed\n{rest}\n"))
}

/// Moves the tree `src` (one package) into `root`, never through a link:
/// every directory on the way must be a real directory; a file or link
/// replaces an earlier package's; a file where a directory is (or the
/// reverse) is a conflict.
fn merge(src: &Path, root: &Path, package: &str) -> Result<()> {
    let conflict = |rel: &Path, reason| Error::FileConflict {
        package: package.to_owned(),
        path: rel.to_owned(),
        reason,
    };
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let here = src.join(&rel);
        for entry in std::fs::read_dir(&here).map_err(|e| Error::io(&here, e))? {
            let entry = entry.map_err(|e| Error::io(&here, e))?;
            let rel = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            let to = root.join(&rel);
            let existing = std::fs::symlink_metadata(&to).ok().map(|m| m.file_type());
            if kind.is_dir() {
                match existing {
                    None => std::fs::create_dir(&to).map_err(|e| Error::io(&to, e))?,
                    Some(t) if t.is_dir() => {}
                    Some(_) => {
                        return Err(conflict(
                            &rel,
                            "is a directory here and a file or link in an earlier package",
                        ));
                    }
                }
                todo.push(rel);
            } else {
                if existing.is_some_and(|t| t.is_dir()) {
                    return Err(conflict(
                        &rel,
                        "is a file or link here and a directory in an earlier package",
                    ));
                }
                std::fs::rename(entry.path(), &to).map_err(|e| Error::io(&to, e))?;
            }
        }
    }
    Ok(())
}

/// Creates the directories of `rel` under `root` (each must be a real
/// directory) and returns the path, with nothing at it but maybe a file
/// or link, which is removed.
fn prepare(root: &Path, rel: &str) -> Result<PathBuf> {
    let rel = Path::new(rel);
    let mut dir = root.to_owned();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::FileConflict {
                    package: "(image files)".into(),
                    path: dir.strip_prefix(root).unwrap_or(&dir).to_owned(),
                    reason: "must be a directory, a package made it a file or link",
                });
            }
            Err(_) => std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?,
        }
    }
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Err(Error::FileConflict {
            package: "(image files)".into(),
            path: rel.to_owned(),
            reason: "must be a file, a package made it a directory",
        }),
        Ok(_) => std::fs::remove_file(&path)
            .map(|()| path.clone())
            .map_err(|e| Error::io(&path, e)),
        Err(_) => Ok(path),
    }
}

/// Writes `bytes` at `rel` without following any link.
fn put(root: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let path = prepare(root, rel)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&path, e))
}

/// What maintainer scripts and an installer would have made.
fn system_files(root: &Path, status: &str) -> Result<()> {
    put(root, "etc/passwd", PASSWD.as_bytes())?;
    put(root, "etc/group", GROUP.as_bytes())?;
    put(root, "var/lib/dpkg/status", status.as_bytes())?;
    for dir in ["tmp", "root"] {
        if !std::fs::symlink_metadata(root.join(dir)).is_ok_and(|m| m.is_dir()) {
            let path = prepare(root, dir)?;
            std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    // base-files ships /etc/os-release; without it, the host's, which
    // describes the distribution whose apt lists were used.
    if std::fs::symlink_metadata(root.join("etc/os-release")).is_err() {
        let mut text = Vec::new();
        let host = Path::new("/etc/os-release");
        std::fs::File::open(host)
            .and_then(|f| f.take(MAX_OS_RELEASE).read_to_end(&mut text))
            .map_err(|e| Error::io(host, e))?;
        put(root, "etc/os-release", &text)?;
    }
    // dash's maintainer script makes /bin/sh.
    if root.join("bin/dash").is_file() && std::fs::symlink_metadata(root.join("bin/sh")).is_err() {
        let path = prepare(root, "bin/sh")?;
        symlink("dash", &path).map_err(|e| Error::io(&path, e))?;
    }
    // update-alternatives links of the BLAS and LAPACK implementations.
    let lib = root.join("usr/lib");
    let Ok(entries) = std::fs::read_dir(&lib) else {
        return Ok(());
    };
    let mut triplets: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-linux-"))
        .collect();
    triplets.sort();
    for triplet in triplets {
        let dir = lib.join(&triplet);
        let mut subdirs: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        subdirs.sort();
        for name in ALTERNATIVES {
            if std::fs::symlink_metadata(dir.join(name)).is_ok() {
                continue;
            }
            if let Some(sub) = subdirs
                .iter()
                .find(|s| std::fs::symlink_metadata(dir.join(s).join(name)).is_ok())
            {
                let path = prepare(root, &format!("usr/lib/{triplet}/{name}"))?;
                symlink(format!("{sub}/{name}"), &path).map_err(|e| Error::io(&path, e))?;
            }
        }
    }
    Ok(())
}

/// The interpreter (`usr/bin/python3.N`, a regular file; the highest N)
/// and its version `3.N`.
fn find_python(root: &Path) -> Result<Option<(String, String)>> {
    let bin = root.join("usr/bin");
    let Ok(entries) = std::fs::read_dir(&bin) else {
        return Ok(None);
    };
    let mut found: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("python3.")?
                .parse::<u32>()
                .ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found
        .pop()
        .map(|minor| (format!("usr/bin/python3.{minor}"), format!("3.{minor}"))))
}

/// The directories whose modules get bytecode: the standard library of
/// Python `3.N` and Debian's `dist-packages`.
#[cfg(feature = "bytecode")]
fn module_dirs(root: &Path, version: &str) -> Vec<String> {
    [
        format!("usr/lib/python{version}"),
        "usr/lib/python3/dist-packages".into(),
    ]
    .into_iter()
    .filter(|d| std::fs::symlink_metadata(root.join(d)).is_ok_and(|m| m.is_dir()))
    .collect()
}

#[cfg(not(feature = "bytecode"))]
fn compile(
    _: &Request,
    _: &Path,
    python: Option<&(String, String)>,
    _: &Path,
    _: &Path,
) -> Result<BytecodeReport> {
    Ok(BytecodeReport::Skipped {
        reason: match python {
            Some(_) => "built without the bytecode feature".into(),
            None => "no usr/bin/python3.N in the image".into(),
        },
    })
}

/// Byte-compiles the modules in the sandbox with the image's Python, over
/// `root` as the overlay's lower layer; moves the `.pyc` of every shipped
/// source from the capture into `out`.
#[cfg(feature = "bytecode")]
fn compile(
    request: &Request,
    root: &Path,
    python: Option<&(String, String)>,
    out: &Path,
    work: &Path,
) -> Result<BytecodeReport> {
    let Some((interpreter, version)) = python else {
        return Ok(BytecodeReport::Skipped {
            reason: "no usr/bin/python3.N in the image".into(),
        });
    };
    let Some(sandbox) = &request.sandbox else {
        return Ok(BytecodeReport::Skipped {
            reason: "no sandbox to run the image's Python in".into(),
        });
    };
    let dirs = module_dirs(root, version);
    // The compile runs as the unprivileged user, as functions do, and adds
    // __pycache__ to these directories; owners are not kept in layers.
    for d in &dirs {
        python_bytecode::hand_dirs_to(&root.join(d), python_bytecode::USER)
            .map_err(|(path, e)| Error::io(path, e))?;
    }
    let kept = work.join("capture");
    std::fs::create_dir(&kept).map_err(|e| Error::io(&kept, e))?;
    let limits = sandbox_run::Limits::default();
    let in_image: Vec<String> = dirs.iter().map(|d| format!("/{d}")).collect();
    let spec = python_bytecode::run_spec(
        &format!("/{interpreter}"),
        vec![root.to_owned()],
        &in_image,
        limits.clone(),
        &kept,
    );
    let result = sandbox_run::Sandbox::new(sandbox.clone())?.run(&spec)?;
    let failed = |reason: String| Error::Compile {
        interpreter: format!("/{interpreter}"),
        reason,
    };
    if let Some(reason) = python_bytecode::failure(&result, &limits) {
        return Err(failed(reason));
    }
    let tag = format!("cpython-{}", version.replace('.', ""));
    let (mut modules, mut uncompiled) = (0, 0);
    for d in &dirs {
        let mut todo = vec![PathBuf::from(d)];
        while let Some(rel) = todo.pop() {
            let here = root.join(&rel);
            for entry in std::fs::read_dir(&here).map_err(|e| Error::io(&here, e))? {
                let entry = entry.map_err(|e| Error::io(&here, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
                if kind.is_dir() {
                    if name != "__pycache__" {
                        todo.push(rel.join(&name));
                    }
                    continue;
                }
                let Some(stem) = name.strip_suffix(".py") else {
                    continue;
                };
                let pyc = rel.join("__pycache__").join(format!("{stem}.{tag}.pyc"));
                let from = kept.join(&pyc);
                match std::fs::symlink_metadata(&from) {
                    Ok(m) if m.is_file() => {}
                    Ok(_) => return Err(failed(format!("{}: not a regular file", pyc.display()))),
                    Err(_) => {
                        uncompiled += 1;
                        continue;
                    }
                }
                let to = out.join(&pyc);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
                modules += 1;
            }
        }
    }
    Ok(BytecodeReport::Compiled {
        interpreter: format!("/{interpreter}"),
        modules,
        uncompiled,
    })
}

/// Streams a layer into the layout's blobs.
fn write_layer(layout: &Layout, w: LayerWriter<'_>) -> Result<LayerInfo> {
    let mut blob = layout.blob_writer()?;
    let info = w.finish(&mut blob)?;
    blob.commit(Some(&info.digest))?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_never_writes_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(a.join("usr")).unwrap();
        symlink("/etc", a.join("usr/lib")).unwrap();
        std::fs::create_dir_all(b.join("usr/lib")).unwrap();
        std::fs::write(b.join("usr/lib/x"), b"x").unwrap();
        merge(&a, &root, "a").unwrap();
        let err = merge(&b, &root, "b").unwrap_err();
        assert!(
            matches!(err, Error::FileConflict { ref package, .. } if package == "b"),
            "{err}"
        );
        // A later file replaces an earlier link; the link's target is untouched.
        let c = dir.path().join("c");
        std::fs::create_dir_all(c.join("usr")).unwrap();
        std::fs::write(c.join("usr/lib"), b"file").unwrap();
        merge(&c, &root, "c").unwrap();
        assert_eq!(std::fs::read(root.join("usr/lib")).unwrap(), b"file");
        // System files refuse a parent a package made a link.
        let d = tempfile::tempdir().unwrap();
        symlink("/", d.path().join("etc")).unwrap();
        let err = system_files(d.path(), "").unwrap_err();
        assert!(err.to_string().contains("etc"), "{err}");
    }

    #[test]
    fn status_entries_follow_the_control_file() {
        let p = crate::Package {
            name: "dash".into(),
            version: "0.5.12-2".into(),
            ..Default::default()
        };
        let entry = status_entry(
            "Package: dash\nVersion: 0.5.12-2\nDescription: x\n  * y\n",
            &p,
        )
        .unwrap();
        assert_eq!(
            entry,
            "Package: dash\nStatus: install ok installed\nVersion: 0.5.12-2\nDescription: x\n  * y\n\n"
        );
        let err = status_entry("Package: dash\nVersion: 9\n", &p).unwrap_err();
        assert!(
            err.to_string().contains("not the index's 0.5.12-2"),
            "{err}"
        );
        assert!(status_entry("Version: 0.5.12-2\nPackage: dash\n", &p).is_err());
    }

    #[test]
    fn alternatives_and_sh_links() {
        let d = tempfile::tempdir().unwrap();
        let lib = d.path().join("usr/lib/x86_64-linux-gnu");
        std::fs::create_dir_all(lib.join("blas")).unwrap();
        std::fs::write(lib.join("blas/libblas.so.3.11.0"), b"").unwrap();
        symlink("libblas.so.3.11.0", lib.join("blas/libblas.so.3")).unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::write(d.path().join("bin/dash"), b"").unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/os-release"), b"ID=debian\n").unwrap();
        system_files(d.path(), "Package: dash\n").unwrap();
        assert_eq!(
            std::fs::read_link(lib.join("libblas.so.3")).unwrap(),
            Path::new("blas/libblas.so.3")
        );
        assert!(std::fs::symlink_metadata(lib.join("liblapack.so.3")).is_err());
        assert_eq!(
            std::fs::read_link(d.path().join("bin/sh")).unwrap(),
            Path::new("dash")
        );
        assert_eq!(
            std::fs::read(d.path().join("etc/os-release")).unwrap(),
            b"ID=debian\n"
        );
        assert!(
            std::fs::read_to_string(d.path().join("etc/passwd"))
                .unwrap()
                .contains("app:x:1000")
        );
    }

    #[test]
    fn presets_and_platforms() {
        assert_eq!("scipy".parse::<Preset>().unwrap(), Preset::Scipy);
        assert!("fat".parse::<Preset>().is_err());
        assert!(
            Preset::Slim
                .packages()
                .contains(&"python3-minimal".to_owned())
        );
        let arm: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(debian_arch(&arm).unwrap(), "armhf");
        let win: Platform = "windows/amd64".parse().unwrap();
        assert!(debian_arch(&win).is_err());
    }
}
