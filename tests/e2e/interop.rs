//! Images whose layers other tools wrote (GNU tar through `umoci raw
//! add-layer`, `umoci repack`, buildah, skopeo's Docker schema 2
//! conversion) and images of many layers, pushed to a local registry and
//! run by `hoist run`, each checked from inside the container.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_layer::{LayerWriter, WriteOptions};
use testkit::{BaseImage, Registry};

use super::{hoist, hoist_ok};

/// 120 characters: a name GNU tar must carry in an extension header.
const LONG: &str = "a-name-longer-than-the-hundred-bytes-a-ustar-header-holds-so-that-tar-needs-an-extension-header-for-it-0123456789abcdefg";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `hoist run IMAGE --cache-dir CACHE -- CMD...`: its stdout; panics with
/// its stderr if it fails.
fn run(cache: &Path, image: &str, cmd: &[&str]) -> String {
    let mut args = vec!["run", image, "--cache-dir", cache.to_str().unwrap(), "--"];
    args.extend_from_slice(cmd);
    let out = hoist(&args);
    assert!(
        out.status.success(),
        "hoist run {image} ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a tool; its stdout, or a panic with its stderr.
fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A writable copy of `base`'s layout (testkit's is shared) at `dir`.
fn layout_copy(base: &BaseImage, dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    tool(Command::new("cp").arg("-r").arg(&base.layout).arg(&layout));
    layout
}

/// Writes `files` (path, mode, contents) under `root`, parents 0755.
fn write_tree(root: &Path, files: &[(&str, u32, &str)]) {
    for (path, mode, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
}

/// GNU tar of everything in `dir`, with member names `/`, `/etc`, ...: the
/// `./` it writes becomes `/` in names and hard-link targets, not in
/// symlink targets (`-P` keeps the slash).
fn gnu_tar_rooted(dir: &Path, tar: &Path, extra: &[&str]) {
    tool(
        Command::new("tar")
            .arg("-C")
            .arg(dir)
            .args(["-P", "--transform", r"s,^\./,/,S;s,^\.$,/,S"])
            .args(extra)
            .arg("-cf")
            .arg(tar)
            .arg("."),
    );
}

/// `umoci raw add-layer`: `tar` as a new top layer of `layout:tag`.
async fn add_layer(layout: &Path, tag: &str, tar: &Path) {
    let image = format!("{}:{tag}", layout.display());
    testkit::umoci(&["raw", "add-layer", "--image", &image, tar.to_str().unwrap()])
        .await
        .expect("umoci raw add-layer");
}

/// Pushes `layout:tag` to `registry` as `repo:1`; returns the reference.
async fn push(layout: &Path, tag: &str, registry: &Registry, repo: &str) -> String {
    let target = format!("{}/{repo}:1", registry.host());
    testkit::push_layout(layout, tag, &target, None)
        .await
        .expect("push layout");
    target
}

/// What the GNU tar image holds, as its check script prints it.
const GNU_TAR_SEEN: &str = "\
posix
600
vi=gone
ran
data
2 same-inode
/usr/bin/python3
data
data
gone=deleted
new
pax long name
utf-8 name
gnu long name
2 same-inode
";

#[tokio::test(flavor = "multi_thread")]
async fn gnu_tar_layers_run_as_oci_and_as_docker_schema_2() {
    let registry = Registry::start().await.unwrap();
    let base = testkit::busybox_base().expect("busybox base image");
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(&base, work.path());

    // Layer 1, POSIX (PAX) format, every name rooted: `/`, `/etc/motd`...
    let posix = work.path().join("posix");
    write_tree(
        &posix,
        &[
            ("etc/motd", 0o644, "posix\n"),
            ("etc/secret", 0o600, "root only\n"),
            ("bin/.wh.vi", 0o644, ""),
            ("opt/app/run.sh", 0o755, "#!/bin/sh\necho ran\n"),
            ("opt/app/data", 0o644, "data\n"),
            ("opt/app/gone", 0o644, "deleted by the next layer\n"),
            ("opt/opq/old", 0o644, "hidden by the next layer\n"),
            (&format!("opt/pax/{LONG}/file"), 0o644, "pax long name\n"),
            ("opt/pax/naïve.txt", 0o644, "utf-8 name\n"),
        ],
    );
    std::fs::hard_link(posix.join("opt/app/data"), posix.join("opt/app/data.link")).unwrap();
    symlink("/usr/bin/python3", posix.join("opt/app/py")).unwrap();
    symlink("data", posix.join("opt/app/rel")).unwrap();
    let posix_tar = work.path().join("posix.tar");
    gnu_tar_rooted(&posix, &posix_tar, &["--format=posix"]);

    // Layer 2, GNU format, `./` names (the root entry `./` is 0700, as
    // from a temporary directory): whiteouts of the first layer's files,
    // long names and a long hard-link target.
    let gnu = work.path().join("gnu");
    write_tree(
        &gnu,
        &[
            ("opt/app/.wh.gone", 0o644, ""),
            ("opt/opq/.wh..wh..opq", 0o644, ""),
            ("opt/opq/new", 0o644, "new\n"),
            (&format!("opt/gnu/{LONG}"), 0o644, "gnu long name\n"),
        ],
    );
    let long = gnu.join("opt/gnu").join(LONG);
    std::fs::hard_link(&long, gnu.join("opt/gnu").join(format!("{LONG}.link"))).unwrap();
    std::fs::set_permissions(&gnu, std::fs::Permissions::from_mode(0o700)).unwrap();
    let gnu_tar = work.path().join("gnu.tar");
    tool(
        Command::new("tar")
            .arg("-C")
            .arg(&gnu)
            .args(["--format=gnu", "-cf"])
            .arg(&gnu_tar)
            .arg("."),
    );

    add_layer(&layout, "busybox", &posix_tar).await;
    add_layer(&layout, "busybox", &gnu_tar).await;
    let image = push(&layout, "busybox", &registry, "interop/gnu-tar").await;

    let check = format!(
        "cat /etc/motd; stat -c %a /etc/secret; \
         [ -e /bin/vi ] && echo vi=present || echo vi=gone; \
         /opt/app/run.sh; cat /opt/app/data.link; \
         echo $(stat -c %h /opt/app/data) \
           $([ $(stat -c %i /opt/app/data) = $(stat -c %i /opt/app/data.link) ] && echo same-inode); \
         readlink /opt/app/py; readlink /opt/app/rel; cat /opt/app/rel; \
         [ -e /opt/app/gone ] && echo gone=present || echo gone=deleted; \
         ls /opt/opq; cat /opt/pax/{LONG}/file /opt/pax/naïve.txt /opt/gnu/{LONG}; \
         echo $(stat -c %h /opt/gnu/{LONG}) \
           $([ $(stat -c %i /opt/gnu/{LONG}) = $(stat -c %i /opt/gnu/{LONG}.link) ] && echo same-inode)"
    );
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(
        run(cache.path(), &image, &["sh", "-c", &check]),
        GNU_TAR_SEEN
    );

    // The same image with Docker schema 2 media types, as skopeo converts it.
    let docker = format!("{}/interop/gnu-tar-v2s2:1", registry.host());
    testkit::skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{image}"),
        &format!("docker://{docker}"),
    ])
    .await
    .expect("skopeo copy --format v2s2");
    let manifest: serde_json::Value =
        serde_json::from_str(&hoist_ok(&["inspect", &docker])).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["layers"][2]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(
        run(cache.path(), &docker, &["sh", "-c", &check]),
        GNU_TAR_SEEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gnu_tar_xattrs_reach_the_container() {
    let registry = Registry::start().await.unwrap();
    let base = testkit::python_base().expect("python base image");
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(&base, work.path());
    let tree = work.path().join("tree");
    write_tree(&tree, &[("opt/x/file", 0o644, "with xattrs\n")]);
    // `0x0a0b0a`: bytes with newlines, which a PAX reader splitting
    // records on newlines misreads.
    for (path, name, value) in [
        ("opt/x/file", "user.origin", "gnu-tar"),
        ("opt/x/file", "user.binary", "0x0a0b0a"),
        ("opt/x", "user.kind", "directory"),
    ] {
        tool(
            Command::new("setfattr")
                .args(["-n", name, "-v", value])
                .arg(tree.join(path)),
        );
    }
    let tar = work.path().join("xattrs.tar");
    gnu_tar_rooted(&tree, &tar, &["--format=posix", "--xattrs"]);
    add_layer(&layout, "python3.11", &tar).await;
    let image = push(&layout, "python3.11", &registry, "interop/xattrs").await;

    let cache = tempfile::tempdir().unwrap();
    let script = "import os\n\
                  for p in ('/opt/x/file', '/opt/x'):\n    \
                  print(p, sorted((n, os.getxattr(p, n)) for n in os.listxattr(p)))";
    assert_eq!(
        run(cache.path(), &image, &["python3", "-c", script]),
        "/opt/x/file [('user.binary', b'\\n\\x0b\\n'), ('user.origin', b'gnu-tar')]\n\
         /opt/x [('user.kind', b'directory')]\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn umoci_repacked_layers_run() {
    let registry = Registry::start().await.unwrap();
    let base = testkit::busybox_base().expect("busybox base image");
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(&base, work.path());
    let bundle = work.path().join("bundle");
    let image = format!("{}:busybox", layout.display());
    testkit::umoci(&["unpack", "--image", &image, bundle.to_str().unwrap()])
        .await
        .expect("umoci unpack");
    let rootfs = bundle.join("rootfs");
    write_tree(
        &rootfs,
        &[
            ("opt/u/file", 0o644, "umoci\n"),
            ("opt/u/tool", 0o755, "#!/bin/sh\necho tool ran\n"),
            ("opt/u/private", 0o600, ""),
        ],
    );
    std::fs::hard_link(rootfs.join("opt/u/file"), rootfs.join("opt/u/hard")).unwrap();
    symlink("/opt/u/file", rootfs.join("opt/u/abs")).unwrap();
    std::fs::remove_file(rootfs.join("bin/vi")).unwrap();
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    let repacked = format!("{}:repacked", layout.display());
    testkit::umoci(&["repack", "--image", &repacked, bundle.to_str().unwrap()])
        .await
        .expect("umoci repack");
    let image = push(&layout, "repacked", &registry, "interop/umoci").await;

    let cache = tempfile::tempdir().unwrap();
    let check = "cat /opt/u/hard; /opt/u/tool; stat -c %a /opt/u/private; \
                 stat -c %h /opt/u/file; readlink /opt/u/abs; cat /opt/u/abs; \
                 [ -e /bin/vi ] && echo vi=present || echo vi=gone; cat /etc/passwd";
    assert_eq!(
        run(cache.path(), &image, &["sh", "-c", check]),
        "umoci\ntool ran\n600\n2\n/opt/u/file\numoci\nvi=gone\nroot:x:0:0::/:/bin/sh\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn buildah_committed_layers_run() {
    let registry = Registry::start().await.unwrap();
    let base = testkit::busybox_base().expect("busybox base image");
    let from = testkit::push_base(&base, &registry, "base/busybox:1")
        .await
        .expect("push busybox")
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("storage");
    let runroot = work.path().join("run");
    let buildah = |args: &[&str]| {
        tool(
            Command::new("buildah")
                .arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                .args(["--storage-driver", "vfs"])
                .args(args),
        )
        .trim()
        .to_owned()
    };
    let src = work.path().join("src");
    write_tree(
        &src,
        &[
            ("app/main.sh", 0o755, "#!/bin/sh\necho buildah ran\n"),
            ("app/conf/settings", 0o600, "x=1\n"),
        ],
    );
    symlink("conf/settings", src.join("app/link")).unwrap();

    let container = buildah(&["from", "--tls-verify=false", &format!("docker://{from}")]);
    buildah(&["copy", &container, src.to_str().unwrap(), "/opt/b"]);
    // Changes made in the container's root: a deletion (a whiteout in the
    // committed layer) and a hard link.
    let mounted = PathBuf::from(buildah(&["mount", &container]));
    std::fs::remove_file(mounted.join("bin/vi")).unwrap();
    std::fs::hard_link(
        mounted.join("opt/b/app/main.sh"),
        mounted.join("opt/b/main"),
    )
    .unwrap();
    buildah(&["commit", &container, "interop-buildah"]);
    let image = format!("{}/interop/buildah:1", registry.host());
    buildah(&[
        "push",
        "--tls-verify=false",
        "interop-buildah",
        &format!("docker://{image}"),
    ]);

    let cache = tempfile::tempdir().unwrap();
    let check = "/opt/b/app/main.sh; /opt/b/main; stat -c %h /opt/b/main; \
                 stat -c %a /opt/b/app/conf/settings; readlink /opt/b/app/link; \
                 [ -e /bin/vi ] && echo vi=present || echo vi=gone";
    assert_eq!(
        run(cache.path(), &image, &["sh", "-c", check]),
        "buildah ran\nbuildah ran\n2\n600\nconf/settings\nvi=gone\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn images_of_many_layers_run_from_any_cache_path() {
    const LAYERS: usize = 120;
    let registry = Registry::start().await.unwrap();
    let base = testkit::busybox_base().expect("busybox base image");
    let work = tempfile::tempdir().unwrap();
    // Each layer adds `/layers/N` and replaces `/layers/top`.
    let layers = (1..LAYERS).map(|i| {
        let mut w = LayerWriter::new(WriteOptions::default());
        w.add_bytes(format!("layers/{i}"), 0o644, format!("{i}\n").into_bytes())
            .unwrap()
            .add_bytes("layers/top", 0o644, format!("top {i}\n").into_bytes())
            .unwrap();
        w
    });
    let stacked = testkit::stack_layers(&base, work.path(), "many", layers).unwrap();
    assert_eq!(stacked.layers.len(), LAYERS);
    let image = push(work.path(), "many", &registry, "interop/many").await;

    let last = LAYERS - 1;
    let check = format!("cat /layers/1 /layers/{last} /layers/top; ls /layers | wc -l");
    let want = format!("1\n{last}\ntop {last}\n{LAYERS}\n");
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(run(cache.path(), &image, &["sh", "-c", &check]), want);
    // A cache whose path holds what overlayfs options cannot.
    let odd = cache.path().join("with:colon,comma");
    assert_eq!(run(&odd, &image, &["sh", "-c", &check]), want);
}
