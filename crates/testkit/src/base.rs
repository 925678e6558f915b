//! Base-image fixtures made from Debian bookworm packages, without any
//! image registry: a Python 3.11 image and a BusyBox image, written as OCI
//! image layouts and cached once per machine.
//!
//! Packages come from `apt-get download` and are unpacked with
//! `dpkg-deb -x`; no maintainer script runs, so what those scripts would
//! make (the `/bin/sh` link, `/var/lib/dpkg/status`, the standard
//! library's bytecode that `py3compile` writes) is made here.
//! Layers come from [`oci_layer::LayerWriter`], so the same packages
//! always give the same digests.
//!
//! On-disk cache (root `$HOIST_TESTKIT_CACHE`, else
//! `<temp dir>/hoist-testkit`), one entry per image and package list:
//!
//! ```text
//! <root>/<image>-<key>/lock      flock(2) held while building
//! <root>/<image>-<key>/debs/     downloaded .deb files, kept
//! <root>/<image>-<key>/layout/   the finished OCI layout
//! <root>/<image>-<key>/build-*/  a build in progress (removed on failure)
//! ```
//!
//! `layout/` appears by a rename once complete, so an interrupted build
//! leaves nothing that looks finished; `<key>` hashes [`FORMAT_VERSION`],
//! the image name and its package list.
//!
//! The layouts are not usrmerged (bookworm packages still ship `/bin`,
//! `/lib` and `/lib64`), and every directory is 0755 owned by root:
//! `LayerWriter` normalises modes, so `/tmp` is not world-writable (a
//! sandbox mounts a tmpfs there) and setuid bits are gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fs_err as fs;
use oci_layer::{LayerInfo, LayerWriter, WriteOptions};
use oci_model::media_type::{OCI_CONFIG, OCI_MANIFEST};
use oci_model::{Descriptor, Digest, Layout, MAX_MANIFEST_BYTES, Manifest, Reference};
use serde_json::json;

use crate::{Error, Registry, Result, io_err, push_layout};

/// Bumped whenever the way images are assembled changes, so old cache
/// entries are not reused.
pub const FORMAT_VERSION: u32 = 2;

/// Every image's `created` and history timestamps.
const EPOCH: &str = "1970-01-01T00:00:00Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\n";
/// Documentation nobody reads inside an image.
const PRUNED: &[&str] = &["usr/share/man", "usr/share/info", "usr/share/lintian"];

/// The Python image's bottom layer: the C and C++ runtimes, the libraries
/// the standard library's extension modules link, and dash for `/bin/sh`.
/// The dependency closure of the Python packages, without what only
/// maintainer scripts or documentation need (dpkg, perl, readline-common,
/// gcc-12-base, mailcap).
const PYTHON_LIBRARIES: &[&str] = &[
    "dash",
    "libbz2-1.0",
    "libc6",
    "libcom-err2",
    "libcrypt1",
    "libdb5.3",
    "libexpat1",
    "libffi8",
    "libgcc-s1",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "liblzma5",
    "libncursesw6",
    "libnsl2",
    "libreadline8",
    "libsqlite3-0",
    "libssl3",
    "libstdc++6",
    "libtinfo6",
    "libtirpc-common",
    "libtirpc3",
    "libuuid1",
    "media-types",
    "zlib1g",
];
/// The Python image's second layer: the interpreter and standard library.
const PYTHON_PACKAGES: &[&str] = &[
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11-minimal",
];
const BUSYBOX_PACKAGES: &[&str] = &["busybox-static"];

/// The standard library directory of the Python image, in the image.
const PYTHON_STDLIB: &str = "usr/lib/python3.11";
/// Byte-compiles every module under the directory `sys.argv[1]` as if it
/// were at `sys.argv[2]`, as `py3compile` does when Debian installs
/// Python, but with hash-based `.pyc` files (PEP 552) that do not depend
/// on the sources' mtimes (a layer sets every mtime to the epoch).
/// Modules that do not compile are skipped, as `py3compile` skips them.
const COMPILE_STDLIB: &str = r#"
import os, py_compile, sys
root, image_dir = sys.argv[1], sys.argv[2]
if sys.flags.hash_randomization:
    sys.exit("PYTHONHASHSEED must be 0")
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
for top, dirs, names in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in sorted(n for n in names if n.endswith(".py")):
        path = os.path.join(top, name)
        shown = os.path.join(image_dir, os.path.relpath(path, root))
        try:
            py_compile.compile(path, dfile=shown, doraise=True, invalidation_mode=mode)
        except py_compile.PyCompileError:
            pass
"#;

/// A base image in an OCI layout: what [`python_base`] and
/// [`busybox_base`] return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseImage {
    /// The layout directory (shared: treat it as read-only).
    pub layout: PathBuf,
    /// The tag naming the image in the layout's `index.json`.
    pub tag: String,
    /// The OCI image manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// The image config's digest.
    pub config_digest: Digest,
    /// The gzip layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// Manifest + config + compressed layer bytes: what a full push sends.
    pub total_bytes: u64,
}

impl BaseImage {
    /// The layout reference `hoist copy` and skopeo take:
    /// `oci:LAYOUT:TAG`.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }
}

/// A Python 3.11 image from Debian bookworm packages, linux/amd64, three
/// layers (libraries, Python, `/etc` files): `/usr/bin/python3.11` (also
/// `python3`), `/bin/sh` (dash), libstdc++ and libgcc for binary wheels,
/// `/etc/passwd` and `/etc/group` with root and `app` (1000, home `/tmp`),
/// an empty `/tmp` and a dpkg status file; `Cmd ["/usr/bin/python3.11"]`,
/// `LANG=C.UTF-8`. The standard library ships bytecode, as after Debian's
/// `py3compile` (hash-based and unchecked, so the same packages give the
/// same bytes); `/io` does not exist.
///
/// Built once per machine (the first call downloads about 11 MB of
/// packages and takes seconds; parallel test processes wait for one
/// build), then read from the cache. Blocking: from async code call it
/// before starting servers or through `spawn_blocking`.
///
/// ```no_run
/// let image = testkit::python_base()?;
/// assert_eq!(image.layers.len(), 3);
/// println!("{}", image.oci_ref());
/// # Ok::<(), testkit::Error>(())
/// ```
pub fn python_base() -> Result<BaseImage> {
    python_base_in(&cache_root())
}

/// A BusyBox image from Debian's `busybox-static`, linux/amd64, one layer:
/// `/bin/busybox` with a symlink in `/bin` for each applet, `/etc/passwd`
/// and `/etc/group` (root, `app` 1000), an empty `/tmp`; `Cmd ["/bin/sh"]`.
/// Cached like [`python_base`].
///
/// ```no_run
/// let image = testkit::busybox_base()?;
/// assert_eq!(image.layers.len(), 1);
/// # Ok::<(), testkit::Error>(())
/// ```
pub fn busybox_base() -> Result<BaseImage> {
    busybox_base_in(&cache_root())
}

/// Pushes `image` to `registry` (anonymous or basic auth) as
/// `HOST/REPO:TAG` from `repo_tag` (`REPO:TAG`), digests unchanged, and
/// returns that reference.
///
/// ```no_run
/// # async fn demo() -> testkit::Result<()> {
/// let image = testkit::busybox_base()?;
/// let registry = testkit::Registry::start().await?;
/// let reference = testkit::push_base(&image, &registry, "base/busybox:1").await?;
/// assert_eq!(reference.to_string(), format!("{}/base/busybox:1", registry.host()));
/// # Ok(())
/// # }
/// ```
pub async fn push_base(
    image: &BaseImage,
    registry: &Registry,
    repo_tag: &str,
) -> Result<Reference> {
    let target = format!("{}/{repo_tag}", registry.host());
    push_layout(&image.layout, &image.tag, &target, registry.credentials()).await?;
    Ok(target.parse()?)
}

/// `base` with `layers` stacked on top (bottom first), written as a new
/// OCI layout at `dir` (created if needed) and tagged `tag`: the base's
/// blobs are copied, its config gains the layers' diff-ids and one history
/// line each, and keeps its command and environment. A cheap way to an
/// image of many layers.
///
/// ```no_run
/// use oci_layer::{LayerWriter, WriteOptions};
///
/// let base = testkit::busybox_base()?;
/// let dir = tempfile::tempdir()?;
/// let layers = (0..3).map(|i| {
///     let mut w = LayerWriter::new(WriteOptions::default());
///     w.add_bytes(format!("layers/{i}"), 0o644, b"x".to_vec()).unwrap();
///     w
/// });
/// let image = testkit::stack_layers(&base, dir.path(), "v1", layers)?;
/// assert_eq!(image.layers.len(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stack_layers<'a>(
    base: &BaseImage,
    dir: &Path,
    tag: &str,
    layers: impl IntoIterator<Item = LayerWriter<'a>>,
) -> Result<BaseImage> {
    let from = Layout::open(&base.layout)?;
    let layout = Layout::create(dir)?;
    for layer in &base.layers {
        fs::copy(
            from.blob_path(&layer.digest),
            layout.blob_path(&layer.digest),
        )?;
    }
    let config = from.read_blob(&base.config_digest, MAX_MANIFEST_BYTES as u64)?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| Error::BaseImage {
            image: base.tag.clone(),
            reason: format!("config {}: {e}", base.config_digest),
        })?;
    let mut descriptors: Vec<serde_json::Value> = base
        .layers
        .iter()
        .map(|l| json!({ "mediaType": l.media_type, "digest": l.digest.as_str(), "size": l.size }))
        .collect();
    let bad = || Error::BaseImage {
        image: base.tag.clone(),
        reason: format!(
            "config {} has no rootfs.diff_ids or history",
            base.config_digest
        ),
    };
    for (i, w) in layers.into_iter().enumerate() {
        let info = write_layer(&layout, w)?;
        descriptors.push(json!({ "mediaType": info.media_type, "digest": info.digest.as_str(), "size": info.size }));
        let ids = config["rootfs"]["diff_ids"]
            .as_array_mut()
            .ok_or_else(bad)?;
        ids.push(info.diff_id.as_str().into());
        let history = config["history"].as_array_mut().ok_or_else(bad)?;
        history
            .push(json!({ "created": EPOCH, "created_by": format!("testkit stacked layer {i}") }));
    }
    let config = serde_json::to_vec(&config).expect("JSON serializes");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": layout.write_blob(&config)?.as_str(), "size": config.len() },
        "layers": descriptors,
    });
    let manifest = serde_json::to_vec(&manifest).expect("JSON serializes");
    let desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: layout.write_blob(&manifest)?,
        size: manifest.len() as u64,
        platform: None,
    };
    layout.add_manifest(&desc, Some(tag))?;
    load(dir, tag)
}

fn cache_root() -> PathBuf {
    std::env::var_os("HOIST_TESTKIT_CACHE")
        .map_or_else(|| std::env::temp_dir().join("hoist-testkit"), PathBuf::from)
}

fn python_base_in(root: &Path) -> Result<BaseImage> {
    let packages = [PYTHON_LIBRARIES, PYTHON_PACKAGES].concat();
    cached(root, "python3.11", &packages, |debs, work, layout| {
        let libraries = stage(debs, &work.join("libraries"), PYTHON_LIBRARIES)?;
        let python = stage(debs, &work.join("python"), PYTHON_PACKAGES)?;
        compile_stdlib(&libraries, &python)?;
        let mut w = LayerWriter::new(WriteOptions::default());
        w.add_tree(&libraries, "")?.add_symlink("bin/sh", "dash")?;
        let mut layers = vec![(
            write_layer(layout, w)?,
            format!("libraries: {}", PYTHON_LIBRARIES.join(" ")),
        )];
        let mut w = LayerWriter::new(WriteOptions::default());
        w.add_tree(&python, "")?
            .add_symlink("usr/bin/python3", "python3.11")?;
        layers.push((
            write_layer(layout, w)?,
            format!("python: {}", PYTHON_PACKAGES.join(" ")),
        ));
        let mut w = LayerWriter::new(WriteOptions::default());
        add_system_files(&mut w, &dpkg_status(debs, &packages)?)?;
        layers.push((
            write_layer(layout, w)?,
            "config: /etc/passwd /etc/group /tmp".into(),
        ));
        let env = [PATH_ENV, "LANG=C.UTF-8"];
        write_image(
            layout,
            "python3.11",
            &layers,
            &env,
            &["/usr/bin/python3.11"],
        )
    })
}

fn busybox_base_in(root: &Path) -> Result<BaseImage> {
    cached(root, "busybox", BUSYBOX_PACKAGES, |debs, work, layout| {
        let dir = stage(debs, &work.join("busybox"), BUSYBOX_PACKAGES)?;
        let list = run(Command::new(dir.join("bin/busybox")).arg("--list"))?;
        let mut w = LayerWriter::new(WriteOptions::default());
        w.add_tree(dir.join("bin"), "bin")?;
        for applet in list.lines().map(str::trim) {
            if !applet.is_empty() && applet != "busybox" {
                w.add_symlink(Path::new("bin").join(applet), "busybox")?;
            }
        }
        add_system_files(&mut w, &dpkg_status(debs, BUSYBOX_PACKAGES)?)?;
        let layer = (write_layer(layout, w)?, "busybox-static".to_owned());
        write_image(layout, "busybox", &[layer], &[PATH_ENV], &["/bin/sh"])
    })
}

/// Returns the cached image `name`, building it first (once, under the
/// entry's lock) with `build(debs, work, layout)` when it is missing.
fn cached(
    root: &Path,
    name: &str,
    packages: &[&str],
    build: impl FnOnce(&BTreeMap<String, PathBuf>, &Path, &Layout) -> Result<()>,
) -> Result<BaseImage> {
    let entry = entry_dir(root, name, packages);
    let done = entry.join("layout");
    if done.is_dir() {
        return load(&done, name);
    }
    fs::create_dir_all(&entry)?;
    let lock_path = entry.join("lock");
    let lock = fs::File::create(&lock_path)?;
    lock.file()
        .lock()
        .map_err(io_err(format!("lock {}", lock_path.display())))?;
    // Another process may have finished while this one waited.
    if done.is_dir() {
        return load(&done, name);
    }
    // Under the lock, any build directory is what a killed build left.
    for stale in fs::read_dir(&entry)? {
        let stale = stale?;
        if stale.file_name().to_string_lossy().starts_with("build-") {
            fs::remove_dir_all(stale.path())?;
        }
    }
    let debs = fetch(&entry.join("debs"), packages)?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&entry)
        .map_err(io_err(format!(
            "temporary directory in {}",
            entry.display()
        )))?;
    let staged = work.path().join("layout");
    build(&debs, work.path(), &Layout::create(&staged)?)?;
    fs::rename(&staged, &done)?;
    load(&done, name)
}

/// The cache entry of image `name` built from `packages`.
fn entry_dir(root: &Path, name: &str, packages: &[&str]) -> PathBuf {
    let key = Digest::of(format!("{FORMAT_VERSION}\n{name}\n{}", packages.join("\n")).as_bytes());
    root.join(format!("{name}-{}", &key.hex()[..16]))
}

/// Reads what [`BaseImage`] reports back from a finished layout.
fn load(dir: &Path, tag: &str) -> Result<BaseImage> {
    let layout = Layout::open(dir)?;
    let desc = layout.resolve(Some(tag))?;
    let bytes = layout.read_blob(&desc.digest, MAX_MANIFEST_BYTES as u64)?;
    let manifest = Manifest::from_bytes(bytes, Some(&desc.media_type))?;
    let config = manifest.config().ok_or_else(|| Error::BaseImage {
        image: tag.into(),
        reason: format!(
            "manifest {} in {} has no config",
            desc.digest,
            dir.display()
        ),
    })?;
    let layers = manifest.layers().to_vec();
    Ok(BaseImage {
        layout: dir.to_owned(),
        tag: tag.into(),
        total_bytes: desc.size + config.size + layers.iter().map(|l| l.size).sum::<u64>(),
        manifest_digest: desc.digest,
        manifest_size: desc.size,
        config_digest: config.digest.clone(),
        layers,
    })
}

/// The `.deb` of each package in `debs_dir`, downloading the missing ones
/// (into a temporary directory first, so a partial download is never
/// taken for a package). Stale or missing apt lists get one
/// `apt-get update` and a retry.
fn fetch(debs_dir: &Path, packages: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    fs::create_dir_all(debs_dir)?;
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| find_deb(debs_dir, p).ok().flatten().is_none())
        .collect();
    if !missing.is_empty() {
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(debs_dir)
            .map_err(io_err(format!(
                "temporary directory in {}",
                debs_dir.display()
            )))?;
        let download = || {
            run(Command::new("apt-get")
                .arg("download")
                .args(&missing)
                .current_dir(tmp.path()))
        };
        if let Err(e) = download() {
            let stale = matches!(&e, Error::Command { stderr, .. }
                if stderr.contains("Unable to locate package") || stderr.contains("Failed to fetch"));
            if !stale {
                return Err(e);
            }
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            download()?;
        }
        for file in fs::read_dir(tmp.path())? {
            let file = file?;
            fs::rename(file.path(), debs_dir.join(file.file_name()))?;
        }
    }
    packages
        .iter()
        .map(|&p| match find_deb(debs_dir, p)? {
            Some(path) => Ok((p.to_owned(), path)),
            None => Err(Error::BaseImage {
                image: p.into(),
                reason: format!(
                    "`apt-get download {p}` left no {p}_*.deb in {}",
                    debs_dir.display()
                ),
            }),
        })
        .collect()
}

/// The newest-named `PACKAGE_*.deb` in `dir`.
fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            found.push(dir.join(&*name));
        }
    }
    found.sort();
    Ok(found.pop())
}

/// Unpacks `packages` into a fresh directory `dir`, without documentation.
fn stage(debs: &BTreeMap<String, PathBuf>, dir: &Path, packages: &[&str]) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    for p in packages {
        run(Command::new("dpkg-deb").arg("-x").arg(&debs[*p]).arg(dir))?;
    }
    for pruned in PRUNED {
        let path = dir.join(pruned);
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
    }
    Ok(dir.to_owned())
}

/// Writes the bytecode of the standard library staged in `python` with
/// that Python itself, run on the host through the dynamic loader and C
/// library staged in `libraries` (no chroot, so no root needed).
fn compile_stdlib(libraries: &Path, python: &Path) -> Result<()> {
    let lib = fs::read_dir(libraries.join("lib"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("-linux-gnu"))
        })
        .ok_or_else(|| Error::BaseImage {
            image: "python3.11".into(),
            reason: format!("no lib/*-linux-gnu in {}", libraries.display()),
        })?;
    let loader = fs::read_dir(&lib)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
        })
        .ok_or_else(|| Error::BaseImage {
            image: "python3.11".into(),
            reason: format!("no dynamic loader in {}", lib.display()),
        })?;
    let usr_lib = libraries
        .join("usr/lib")
        .join(lib.file_name().unwrap_or_default());
    let library_path = std::env::join_paths([&lib, &usr_lib]).map_err(|e| Error::BaseImage {
        image: "python3.11".into(),
        reason: format!("library path: {e}"),
    })?;
    run(Command::new(loader)
        .arg("--library-path")
        .arg(library_path)
        .arg(python.join("usr/bin/python3.11"))
        .args(["-S", "-B", "-c", COMPILE_STDLIB])
        .arg(python.join(PYTHON_STDLIB))
        .arg(Path::new("/").join(PYTHON_STDLIB))
        .env_clear()
        .env("PYTHONHOME", python.join("usr"))
        .env("PYTHONHASHSEED", "0")
        .env("SOURCE_DATE_EPOCH", "0"))?;
    Ok(())
}

/// What dpkg would have recorded had it installed `packages`: their
/// control fields marked installed, sorted by name, so SBOM tools see
/// the Debian packages.
fn dpkg_status(debs: &BTreeMap<String, PathBuf>, packages: &[&str]) -> Result<String> {
    let mut sorted = packages.to_vec();
    sorted.sort_unstable();
    let mut status = String::new();
    for p in sorted {
        let control = run(Command::new("dpkg-deb").arg("-f").arg(&debs[p]))?;
        let (first, rest) = control.split_once('\n').unwrap_or((&control, ""));
        if !status.is_empty() {
            status.push('\n');
        }
        status.push_str(&format!("{first}\nStatus: install ok installed\n{rest}"));
        if !status.ends_with('\n') {
            status.push('\n');
        }
    }
    Ok(status)
}

/// `/etc/passwd`, `/etc/group`, `/root`, `/tmp` and the dpkg status file.
fn add_system_files(w: &mut LayerWriter<'_>, dpkg_status: &str) -> Result<()> {
    w.add_bytes("etc/passwd", 0o644, PASSWD)?
        .add_bytes("etc/group", 0o644, GROUP)?
        .add_bytes("var/lib/dpkg/status", 0o644, dpkg_status)?
        .add_dir("root")?
        .add_dir("tmp")?;
    Ok(())
}

/// Streams a layer into the layout's blobs.
fn write_layer(layout: &Layout, w: LayerWriter<'_>) -> Result<LayerInfo> {
    let mut blob = layout.blob_writer()?;
    let info = w.finish(&mut blob)?;
    blob.commit(Some(&info.digest))?;
    Ok(info)
}

/// Writes the config and manifest for `layers` (bottom first, each with
/// its history line) and tags the manifest `tag`.
fn write_image(
    layout: &Layout,
    tag: &str,
    layers: &[(LayerInfo, String)],
    env: &[&str],
    cmd: &[&str],
) -> Result<()> {
    let config = json!({
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": env, "Cmd": cmd },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(l, _)| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": layers
            .iter()
            .map(|(_, by)| json!({ "created": EPOCH, "created_by": format!("testkit base image: {by}") }))
            .collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).expect("JSON serializes");
    let descriptor = |media_type: &str, digest: &Digest, size: u64| json!({ "mediaType": media_type, "digest": digest.as_str(), "size": size });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &layout.write_blob(&config)?, config.len() as u64),
        "layers": layers
            .iter()
            .map(|(l, _)| descriptor(l.media_type, &l.digest, l.size))
            .collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).expect("JSON serializes");
    let desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: layout.write_blob(&manifest)?,
        size: manifest.len() as u64,
        platform: None,
    };
    layout.add_manifest(&desc, Some(tag))?;
    Ok(())
}

/// Runs `cmd` and returns its stdout, or its stderr in the error.
fn run(cmd: &mut Command) -> Result<String> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io_err(format!("run {line}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_packages_give_the_same_digests() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // A build killed earlier left its directory behind.
        let stale = entry_dir(a.path(), "busybox", BUSYBOX_PACKAGES).join("build-killed");
        fs::create_dir_all(stale.join("layout")).unwrap();
        let first = busybox_base_in(a.path()).unwrap();
        assert!(!stale.exists(), "the stale build directory is still there");
        let second = busybox_base_in(b.path()).unwrap();
        assert_eq!(first.manifest_digest, second.manifest_digest);
        assert_eq!(first.layers, second.layers);
        assert_ne!(first.layout, second.layout);
        // A second call reads the cache instead of building.
        assert_eq!(busybox_base_in(a.path()).unwrap(), first);

        let (c, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = python_base_in(c.path()).unwrap();
        let second = python_base_in(d.path()).unwrap();
        assert_eq!(first.manifest_digest, second.manifest_digest);
        assert_eq!(first.config_digest, second.config_digest);
        assert_eq!(first.layers.len(), 3);
        // The standard library ships bytecode, as py3compile leaves it.
        let layout = Layout::open(&first.layout).unwrap();
        let blob = fs::File::open(layout.blob_path(&first.layers[1].digest)).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in [
            "usr/lib/python3.11/__pycache__/tempfile.cpython-311.pyc",
            "usr/lib/python3.11/json/__pycache__/decoder.cpython-311.pyc",
        ] {
            assert!(names.iter().any(|n| n == want), "no {want}");
        }
    }

    #[test]
    fn a_failed_build_leaves_nothing_that_looks_complete() {
        let root = tempfile::tempdir().unwrap();
        let err = cached(root.path(), "broken", &[], |_, work, layout| {
            layout.write_blob(b"half")?;
            fs::write(work.join("junk"), b"x")?;
            Err(Error::BaseImage {
                image: "broken".into(),
                reason: "on purpose".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, Error::BaseImage { .. }), "{err}");
        let entry = entry_dir(root.path(), "broken", &[]);
        let left: Vec<_> = fs::read_dir(&entry)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!entry.join("layout").exists());
        assert!(left.iter().all(|n| n == "lock" || n == "debs"), "{left:?}");
    }

    #[test]
    fn an_unknown_package_is_a_command_error_with_apt_output() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(dir.path(), &["hoist-no-such-package"]).unwrap_err();
        match err {
            Error::Command {
                command, stderr, ..
            } => {
                assert!(command.contains("apt-get"), "{command}");
                assert!(stderr.contains("hoist-no-such-package"), "{stderr}");
            }
            other => panic!("unexpected error: {other}"),
        }
        let left = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 0, "a failed download left files behind");
    }

    #[test]
    fn dpkg_status_marks_each_package_installed() {
        let dir = tempfile::tempdir().unwrap();
        let debs = fetch(dir.path(), BUSYBOX_PACKAGES).unwrap();
        let status = dpkg_status(&debs, BUSYBOX_PACKAGES).unwrap();
        assert!(
            status.starts_with("Package: busybox-static\nStatus: install ok installed\n"),
            "{status}"
        );
        assert!(status.contains("\nVersion: "), "{status}");
    }
}
