//! `hoist build -f Dockerfile CONTEXT`: the image a Dockerfile describes,
//! built without a daemon on testkit's Python base, run, reproducible,
//! pushed to several tags; instructions it cannot carry out yet and inputs
//! that escape the context are named errors.

use std::path::Path;

use serde_json::Value;

use super::{hoist, skopeo_digest};

const DOCKERFILE: &str = r#"# A release image of a small app.
ARG BASE
FROM ${BASE} AS runtime
ARG GREETING=hello
ENV APP_HOME=/srv/app \
    GREETING=${GREETING}
LABEL org.example.team="platform" version=1
WORKDIR $APP_HOME
COPY app/ ./
COPY --chmod=755 bin/*.sh /usr/local/bin/
USER 1000:1000
EXPOSE 8000
CMD ["python3", "main.py"]

FROM runtime AS release
LABEL stage=release
ENV MODE=release
"#;

/// A context with an app, a script, and files `.dockerignore` leaves out.
fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel);
    for d in ["app/data", "bin", "secrets"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    std::fs::write(
        p("app/main.py"),
        "import os\nprint(os.environ['GREETING'], os.environ.get('MODE'), open('data/word.txt').read().strip(), os.getcwd())\n",
    )
    .unwrap();
    std::fs::write(p("app/data/word.txt"), "world\n").unwrap();
    std::fs::write(p("app/notes.tmp"), "scratch").unwrap();
    std::fs::write(p("bin/start.sh"), "#!/bin/sh\nexec python3 main.py\n").unwrap();
    std::fs::write(p("secrets/key"), "HOST-SECRET").unwrap();
    std::fs::write(p("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(p(".dockerignore"), "secrets\n**/*.tmp\n").unwrap();
    dir
}

fn build(ctx: &Path, extra: &[&str]) -> std::process::Output {
    build_in(
        ctx,
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("dockerfile-cache"),
        extra,
    )
}

/// `build` with its own build cache.
fn build_in(ctx: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    let base = testkit::python_base().expect("python base image");
    let owned = [
        "build".to_owned(),
        "-f".to_owned(),
        ctx.join("Dockerfile").display().to_string(),
        ctx.display().to_string(),
        "--build-arg".to_owned(),
        format!("BASE={}", base.oci_ref()),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
    ];
    let mut args: Vec<&str> = owned.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    hoist(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The config of the image `oci:DIR:TAG` names.
async fn config(image: &str) -> Value {
    let out = testkit::skopeo(&["inspect", "--config", image])
        .await
        .expect("skopeo inspect --config");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerfile_builds_runs_and_is_reproducible() {
    let ctx = context();
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:app", out_dir.path().display());
    let out = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/app:1.0", "--output", &layout],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let digest = printed.trim().rsplit('@').next().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{printed}");
    assert!(
        text(&out.stderr).contains("STEP 1/"),
        "{}",
        text(&out.stderr)
    );

    // What the instructions said is in the config.
    let c = config(&layout).await;
    let env: Vec<&str> = c["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for want in ["APP_HOME=/srv/app", "GREETING=hello", "MODE=release"] {
        assert!(env.contains(&want), "{want} in {env:?}");
    }
    assert_eq!(c["config"]["WorkingDir"], "/srv/app");
    assert_eq!(c["config"]["User"], "1000:1000");
    assert_eq!(c["config"]["Labels"]["org.example.team"], "platform");
    assert_eq!(c["config"]["Labels"]["stage"], "release");
    assert!(c["config"]["ExposedPorts"].get("8000/tcp").is_some(), "{c}");
    assert_eq!(c["config"]["Cmd"][1], "main.py");

    // It runs: files copied by content, the environment, the directory.
    let cache = tempfile::tempdir().unwrap();
    let run = hoist(&[
        "run",
        &layout,
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "hello release world /srv/app\n");
    // .dockerignore kept the secrets and scratch files out; the script is
    // executable.
    let ls = hoist(&[
        "run",
        &layout,
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--",
        "python3",
        "-c",
        "import os; print(sorted(os.listdir('.')), os.access('/usr/local/bin/start.sh', os.X_OK), os.path.exists('/srv/app/secrets'))",
    ]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    assert_eq!(text(&ls.stdout), "['data', 'main.py'] True False\n");

    // The same Dockerfile and context: the same digest.
    let again_dir = tempfile::tempdir().unwrap();
    let again_layout = format!("oci:{}:app", again_dir.path().display());
    let again = build(
        ctx.path(),
        &[
            "--tag",
            "127.0.0.1:1/acme/app:1.0",
            "--output",
            &again_layout,
        ],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout).trim().rsplit('@').next().unwrap(),
        digest
    );

    // A build argument changes the image; --target picks a stage.
    let other_dir = tempfile::tempdir().unwrap();
    let other_layout = format!("oci:{}:app", other_dir.path().display());
    let other = build(
        ctx.path(),
        &[
            "--tag",
            "127.0.0.1:1/acme/app:1.0",
            "--output",
            &other_layout,
            "--build-arg",
            "GREETING=bonjour",
            "--target",
            "runtime",
        ],
    );
    assert!(other.status.success(), "{}", text(&other.stderr));
    let c = config(&other_layout).await;
    let env = c["config"]["Env"].to_string();
    assert!(
        env.contains("GREETING=bonjour") && !env.contains("MODE="),
        "{env}"
    );
    assert!(c["config"]["Labels"].get("stage").is_none(), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_build_is_pushed_to_every_tag() {
    let registry = testkit::Registry::start().await.unwrap();
    let ctx = context();
    let first = format!("{}/acme/app:1.0", registry.host());
    let second = format!("{}/mirror/app:1.0", registry.host());
    let out = build(ctx.path(), &["--tag", &first, "--tag", &second]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let a = skopeo_digest(&format!("docker://{first}")).await;
    let b = skopeo_digest(&format!("docker://{second}")).await;
    assert_eq!(a, b);
    assert!(text(&out.stdout).contains(&a), "{}", text(&out.stdout));
}

/// A multi-stage build: a builder stage makes files, the final stage
/// copies only its result, from a directory whose lower layer had a file
/// the builder deleted.
const MULTI_STAGE: &str = r#"ARG BASE
FROM ${BASE} AS builder
WORKDIR /build
COPY app/ ./src/
RUN python3 -c "import os; os.remove('/build/src/data/word.txt'); open('/build/src/data/made.txt', 'w').write('made')"

FROM ${BASE}
COPY --from=builder /build/src/data /srv/data
COPY --from=0 /build/src/main.py /srv/
CMD ["python3", "-c", "import os; print(sorted(os.listdir('/srv')), sorted(os.listdir('/srv/data')))"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn copy_from_takes_an_earlier_stage_s_merged_files() {
    let ctx = context();
    std::fs::write(ctx.path().join("Dockerfile"), MULTI_STAGE).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:app", out_dir.path().display());
    let out = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/multi:1.0", "--output", &layout],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cache = tempfile::tempdir().unwrap();
    let run = hoist(&[
        "run",
        &layout,
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "['data', 'main.py'] ['made.txt']\n");
}

const WITH_RUN: &str = r#"ARG BASE
FROM ${BASE}
ARG WHO=builder
WORKDIR /srv
COPY app/ ./
RUN ["python3", "-c", "import os; open('/srv/built.txt', 'w').write('built by ' + os.environ['WHO'])"]
RUN python3 -c "import os; os.remove('/srv/data/word.txt'); print('removed')"
CMD ["python3", "-c", "import os; print(open('/srv/built.txt').read(), os.path.exists('/srv/data/word.txt'))"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn run_steps_become_layers_with_whiteouts_and_are_cached() {
    let ctx = context();
    std::fs::write(ctx.path().join("Dockerfile"), WITH_RUN).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:app", out_dir.path().display());
    // A cache of its own: the first build must run its steps.
    let build_cache = tempfile::tempdir().unwrap();
    let build = |ctx: &Path, extra: &[&str]| build_in(ctx, build_cache.path(), extra);
    let out = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/run:1.0", "--output", &layout],
    );
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The RUN's output is in the build's log.
    assert!(log.contains("  removed"), "{log}");
    let cache = tempfile::tempdir().unwrap();
    let run = hoist(&[
        "run",
        &layout,
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    // Written by one RUN; deleted from a lower layer by the next.
    assert_eq!(text(&run.stdout), "built by builder False\n");

    // Again: nothing runs, the same image comes out.
    let again = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/run:1.0", "--output", &layout],
    );
    let again_log = text(&again.stderr);
    assert!(again.status.success(), "{again_log}");
    assert!(!again_log.contains("  removed"), "{again_log}");
    assert_eq!(again_log.matches("(cached").count(), 3, "{again_log}");
    assert_eq!(
        text(&again.stdout).trim().rsplit('@').next(),
        text(&out.stdout).trim().rsplit('@').next()
    );

    // WORKDIR makes a missing directory, as Docker does; RUN runs as the
    // numeric USER.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "ARG BASE\nFROM ${BASE}\nWORKDIR /new/dir\nUSER 1000:1000\nRUN python3 -c \"import os; print(os.getcwd(), os.getuid())\"\n",
    )
    .unwrap();
    let made = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/run:1.0", "--output", &layout],
    );
    let made_log = text(&made.stderr);
    assert!(made.status.success(), "{made_log}");
    assert!(made_log.contains("  /new/dir 1000"), "{made_log}");

    // A failing RUN names its line and shows its output.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "ARG BASE\nFROM ${BASE}\nRUN python3 -c \"import sys; print('about to fail'); sys.exit(3)\"\n",
    )
    .unwrap();
    let failed = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/run:1.0", "--output", &layout],
    );
    let err = text(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        err.contains("Dockerfile:3:1: RUN exited with status 3") && err.contains("about to fail"),
        "{err}"
    );
}

#[test]
fn what_cannot_be_built_is_named_with_its_line() {
    let cases = [
        (
            "FROM scratch\nCOPY ../outside /x\n",
            "Dockerfile:2:1: ",
            "outside the build context",
        ),
        (
            "FROM scratch\nRUN echo hi\n",
            "Dockerfile:2:1: ",
            "'/bin/sh' not found",
        ),
        (
            "FROM scratch\nRUN --mount=type=ssh echo hi\n",
            "Dockerfile:2:1: ",
            "RUN --mount=type=ssh is not supported (only type=cache)",
        ),
        (
            "FROM scratch\nRUN --network=none echo hi\n",
            "Dockerfile:2:1: ",
            "RUN --network is not supported",
        ),
        (
            "FROM scratch\nCOPY missing.txt /x\n",
            "Dockerfile:2:1: ",
            "no such file",
        ),
        (
            "FROM scratch\nADD https://example.invalid/x /x\n",
            "Dockerfile:2:1: ",
            "fetching a URL needs the network; build with --network host",
        ),
        (
            "FROM scratch AS one\nFROM scratch\nCOPY --from=one /missing /b\n",
            "Dockerfile:3:1: ",
            "/missing: no such file in the stage",
        ),
        (
            "FROM scratch\nFROBNICATE now\n",
            "Dockerfile:2:",
            "FROBNICATE",
        ),
        ("FROM scratch\nENV X=${Y\n", "Dockerfile:2:1: ", ""),
    ];
    for (dockerfile, place, message) in cases {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let out = tempfile::tempdir().unwrap();
        let layout = format!("oci:{}:x", out.path().display());
        let result = build(
            ctx.path(),
            &["--tag", "127.0.0.1:1/acme/x:1", "--output", &layout],
        );
        let err = text(&result.stderr);
        assert!(!result.status.success(), "{dockerfile}");
        assert!(
            err.contains(place) && err.contains(message),
            "{dockerfile:?}: {err}"
        );
        // Nothing was written to the destination.
        assert!(
            std::fs::read_dir(out.path()).unwrap().next().is_none(),
            "{dockerfile:?}"
        );
    }
    // A link in the context never leads the build out of it.
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("key"), "HOST-SECRET").unwrap();
    for (copy, message) in [
        ("COPY link/key /x", "goes through a link"),
        ("COPY link/* /x/", "no such file"),
    ] {
        let ctx = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(secret.path(), ctx.path().join("link")).unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM scratch\n{copy}\n"),
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let layout = format!("oci:{}:x", out.path().display());
        let result = build(
            ctx.path(),
            &["--tag", "127.0.0.1:1/acme/x:1", "--output", &layout],
        );
        let err = text(&result.stderr);
        assert!(!result.status.success(), "{copy}");
        assert!(
            err.contains("Dockerfile:2:1: ") && err.contains(message),
            "{copy}: {err}"
        );
    }

    // A stage that does not exist.
    let ctx = context();
    let result = build(
        ctx.path(),
        &["--tag", "127.0.0.1:1/acme/x:1", "--target", "nope"],
    );
    assert!(
        text(&result.stderr).contains("no stage named \"nope\""),
        "{}",
        text(&result.stderr)
    );
    // The latest tag is refused, as for function builds.
    let result = build(ctx.path(), &["--tag", "127.0.0.1:1/acme/x:latest"]);
    assert!(!result.status.success());
    assert!(
        text(&result.stderr).contains("latest"),
        "{}",
        text(&result.stderr)
    );
}

/// Every path of an unpacked root: `dir`, `file:<sha256>` or
/// `link:<target>`, leaving out what runtimes make (mount points, `/tmp`).
fn tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::Digest as _;
    const RUNTIME: &[&str] = &[
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ];
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if RUNTIME
                .iter()
                .any(|r| rel == *r || rel.starts_with(&format!("{r}/")))
            {
                continue;
            }
            let kind = e.file_type().unwrap();
            let what = if kind.is_symlink() {
                format!("link:{}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                todo.push(path.clone());
                "dir".to_owned()
            } else {
                let bytes = std::fs::read(&path).unwrap();
                format!("file:{}", hex::encode(sha2::Sha256::digest(&bytes)))
            };
            out.insert(rel, what);
        }
    }
    out
}

/// Unpacks `oci:DIR:TAG` with umoci; the root directory.
async fn unpack(image: &str, into: &Path) -> std::path::PathBuf {
    let layout = image.strip_prefix("oci:").unwrap();
    testkit::umoci(&["unpack", "--image", layout, into.to_str().unwrap()])
        .await
        .expect("umoci unpack");
    into.join("rootfs")
}

#[tokio::test(flavor = "multi_thread")]
async fn buildah_builds_the_same_file_trees() {
    let base = testkit::python_base().expect("python base image");
    let work = tempfile::tempdir().unwrap();
    for (name, dockerfile) in [
        ("main", DOCKERFILE),
        ("run", WITH_RUN),
        ("multi", MULTI_STAGE),
    ] {
        let ctx = context();
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let ours = format!("oci:{}:{name}", work.path().join("ours").display());
        let out = build(
            ctx.path(),
            &["--tag", "127.0.0.1:1/acme/cmp:1", "--output", &ours],
        );
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));

        let storage = work.path().join(format!("buildah-{name}"));
        let buildah = |args: &[&str]| {
            let out = std::process::Command::new("buildah")
                .arg("--root")
                .arg(storage.join("root"))
                .arg("--runroot")
                .arg(storage.join("run"))
                .args(["--storage-driver", "vfs"])
                .args(args)
                .output()
                .expect("buildah");
            assert!(
                out.status.success(),
                "buildah {args:?}: {}",
                text(&out.stderr)
            );
        };
        let theirs = format!("oci:{}:{name}", work.path().join("theirs").display());
        let tag = format!("localhost/cmp-{name}:1");
        buildah(&[
            "bud",
            "--isolation",
            "chroot",
            "--build-arg",
            &format!("BASE={}", base.oci_ref()),
            "-t",
            &tag,
            ctx.path().to_str().unwrap(),
        ]);
        buildah(&["push", &tag, &theirs]);
        let a = tree(&unpack(&ours, &work.path().join(format!("unpack-ours-{name}"))).await);
        let b = tree(&unpack(&theirs, &work.path().join(format!("unpack-theirs-{name}"))).await);
        let only_ours: Vec<_> = a.iter().filter(|(k, v)| b.get(*k) != Some(v)).collect();
        let only_theirs: Vec<_> = b.iter().filter(|(k, v)| a.get(*k) != Some(v)).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{name}: hoist only {only_ours:?}\nbuildah only {only_theirs:?}"
        );
    }
}

/// `build` on testkit's BusyBox base (`BASE`), which has a shell's tools.
fn build_busybox(ctx: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    let base = testkit::busybox_base().expect("busybox base image");
    let owned = [
        "build".to_owned(),
        "-f".to_owned(),
        ctx.join("Dockerfile").display().to_string(),
        ctx.display().to_string(),
        "--build-arg".to_owned(),
        format!("BASE={}", base.oci_ref()),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
        "--tag".to_owned(),
        "127.0.0.1:1/acme/bb:1".to_owned(),
    ];
    let mut args: Vec<&str> = owned.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    hoist(&args)
}

/// Runs `sh -c SCRIPT` in `oci:DIR:TAG`; its output.
fn run_sh(layout: &str, script: &str) -> String {
    let cache = tempfile::tempdir().unwrap();
    let run = hoist(&[
        "run",
        layout,
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    text(&run.stdout)
}

const HEREDOCS: &str = "ARG BASE
FROM ${BASE}
ARG WHO=world
ENV GREETING=hello
RUN <<EOF
echo \"plain $GREETING $WHO\" > /plain.txt
EOF
RUN <<-EOF
\t#!/bin/sh -e
\techo \"script $0 $WHO\" > /script.txt
\tEOF
RUN cat <<A > /a.txt && cat <<\"B\" > /b.txt
a $WHO
A
b $WHO
B
COPY <<EOF /etc/greeting
$GREETING ${WHO} \"quoted\" \\$WHO
EOF
COPY <<\"ONE\" <<-TWO /files/
one $WHO
ONE
\ttwo $WHO
\tTWO
";

#[tokio::test(flavor = "multi_thread")]
async fn heredocs_run_as_scripts_and_copy_as_files() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), HEREDOCS).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:hd", out_dir.path().display());
    let out = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = run_sh(
        &layout,
        "cat /plain.txt /script.txt /a.txt /b.txt /etc/greeting /files/ONE /files/TWO",
    );
    assert_eq!(
        seen,
        "plain hello world\nscript /io/EOF world\na world\nb $WHO\n\
         hello world \"quoted\" $WHO\none $WHO\ntwo world\n"
    );
    // The script was never part of a layer.
    let tree = tree(&unpack(&layout, &out_dir.path().join("unpacked")).await);
    assert!(!tree.keys().any(|k| k.starts_with("io")), "{tree:?}");

    // An unchanged body comes from the cache; a changed one runs again.
    let again = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stderr).matches("(cached").count(), 5);
    std::fs::write(
        ctx.path().join("Dockerfile"),
        HEREDOCS.replace("plain $GREETING", "changed $GREETING"),
    )
    .unwrap();
    let changed = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    assert_eq!(text(&changed.stderr).matches("(cached").count(), 0);

    // A heredoc without its end is named at its marker.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY <<EOF /x\nno end\n",
    )
    .unwrap();
    let bad = build_busybox(ctx.path(), cache.path(), &[]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("Dockerfile:2:6: unterminated heredoc \"EOF\""),
        "{}",
        text(&bad.stderr)
    );
}

/// Writes archives with Python's `tarfile`, which writes any entry asked
/// for, hostile ones included: `SPEC` is a list of
/// `(name, kind, data_or_target, claimed_size)`.
fn python_tar(path: &Path, mode: &str, spec: &str) {
    let script = format!(
        r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "{mode}") as t:
    for name, kind, data, size in {spec}:
        i = tarfile.TarInfo(name)
        i.mode = 0o644
        if kind == "dir":
            i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
        elif kind == "sym":
            i.type = tarfile.SYMTYPE; i.linkname = data; t.addfile(i)
        elif kind == "huge":
            # A header that claims more than follows.
            i.size = size; t.fileobj.write(i.tobuf(t.format, t.encoding, t.errors)); t.fileobj.write(data.encode())
        elif kind == "chr":
            i.type = tarfile.CHRTYPE; i.devmajor = 8; i.devminor = 0; t.addfile(i)
        else:
            b = data.encode(); i.size = size if size is not None else len(b)
            t.addfile(i, io.BytesIO(b))
"#
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script, path.to_str().unwrap()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn add_unpacks_local_archives_and_refuses_hostile_ones() {
    let ctx = tempfile::tempdir().unwrap();
    let p = |rel: &str| ctx.path().join(rel);
    let good = r#"[("app/", "dir", "", None), ("app/bin/run.sh", "file", "echo run", None), ("/abs.txt", "file", "absolute name", None), ("app/link", "sym", "bin/run.sh", None), ("dev/sda", "chr", "", None)]"#;
    python_tar(&p("app.tar.gz"), "w:gz", good);
    python_tar(&p("app.tbz"), "w:bz2", good);
    python_tar(&p("app-xz"), "w:xz", good);
    python_tar(&p("app.data"), "w", good);
    std::fs::write(p("notes.tar.gz"), "not an archive at all").unwrap();
    std::fs::write(
        p("Dockerfile"),
        "FROM scratch\nADD app.tar.gz /gz/\nADD app.tbz /bz\nADD app-xz /xz/\nADD --chown=1000:1000 app.data /plain/\nADD notes.tar.gz /notes/\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:add", out_dir.path().display());
    let out = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let root = unpack(&layout, &out_dir.path().join("unpacked")).await;
    let tree = tree(&root);
    for dir in ["gz", "bz", "xz", "plain"] {
        assert_eq!(
            std::fs::read_to_string(root.join(dir).join("app/bin/run.sh")).unwrap(),
            "echo run",
            "{dir}: {tree:?}"
        );
        // An absolute name lands inside the destination; a link stays a link.
        assert_eq!(
            std::fs::read_to_string(root.join(dir).join("abs.txt")).unwrap(),
            "absolute name"
        );
        assert_eq!(tree[&format!("{dir}/app/link")], "link:bin/run.sh");
        // Device nodes are dropped.
        assert!(!root.join(dir).join("dev/sda").exists(), "{dir}");
    }
    // --chown applies to what an archive unpacks.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root.join("plain/app/bin/run.sh")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    // A file that only looks like an archive by name is copied as it is.
    assert_eq!(
        std::fs::read_to_string(root.join("notes/notes.tar.gz")).unwrap(),
        "not an archive at all"
    );

    // Hostile archives: a named error, nothing written outside the build.
    let outside = tempfile::tempdir().unwrap();
    let escape = outside.path().join("escaped");
    let cases = [
        (
            format!(
                r#"[("../../../../../../{}", "file", "x", None)]"#,
                escape.display()
            ),
            "climbs out of the layer root",
        ),
        (
            format!(
                r#"[("out", "sym", "{}", None), ("out/escaped", "file", "x", None)]"#,
                outside.path().display()
            ),
            "is a symlink, refusing to write through it",
        ),
        (
            r#"[("huge", "huge", "tiny", (1 << 33) - 1)]"#.to_owned(),
            "entry `huge`: layer payload exceeds",
        ),
        (
            r#"[("dir/.wh.gone", "file", "", None)]"#.to_owned(),
            "would read as a deletion",
        ),
    ];
    for (spec, message) in cases {
        let ctx = tempfile::tempdir().unwrap();
        python_tar(&ctx.path().join("evil.tar"), "w", &spec);
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nADD evil.tar /dest/\n",
        )
        .unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let layout = format!("oci:{}:evil", out_dir.path().display());
        let out = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{spec}");
        assert!(
            err.contains("Dockerfile:2:1: ADD evil.tar") && err.contains(message),
            "{spec}: {err}"
        );
        assert!(!escape.exists(), "{spec}");
        assert!(
            std::fs::read_dir(out_dir.path()).unwrap().next().is_none(),
            "{spec}"
        );
    }
    // The build's temporary directories are gone.
    let tmp = cache.path().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with("add-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

const NAMED_USERS: &str = r#"ARG BASE
FROM ${BASE}
RUN echo "builder:x:2000:2001::/:/bin/sh" >> /etc/passwd && echo "builders:x:2001:" >> /etc/group
COPY --chown=builder:app a.txt /srv/a.txt
COPY --chown=app b.txt /srv/b.txt
USER builder
RUN echo "as $(id -u):$(id -g)"
USER app:builders
RUN echo "then $(id -u):$(id -g)"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn users_and_groups_resolve_by_name_in_the_stage() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), NAMED_USERS).unwrap();
    std::fs::write(ctx.path().join("a.txt"), "a").unwrap();
    std::fs::write(ctx.path().join("b.txt"), "b").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:users", out_dir.path().display());
    let out = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The user a RUN added is known to the instructions after it; a user
    // without a group runs with its primary group.
    assert!(log.contains("  as 2000:2001"), "{log}");
    assert!(log.contains("  then 1000:2001"), "{log}");
    let root = unpack(&layout, &out_dir.path().join("unpacked")).await;
    use std::os::unix::fs::MetadataExt;
    let owner = |rel: &str| {
        let m = std::fs::metadata(root.join(rel)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("srv/a.txt"), (2000, 1000));
    // --chown with a user alone: the user's number as the group, as Docker does.
    assert_eq!(owner("srv/b.txt"), (1000, 1000));

    // Names the stage does not have are errors naming them.
    for (line, message) in [
        (
            "USER ghost\nRUN true",
            "Dockerfile:4:1: USER ghost: no user \"ghost\" in the stage's /etc/passwd",
        ),
        (
            "COPY --chown=app:ghosts a.txt /a",
            "Dockerfile:3:1: --chown app:ghosts: no group \"ghosts\" in the stage's /etc/group",
        ),
    ] {
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("ARG BASE\nFROM ${{BASE}}\n{line}\n"),
        )
        .unwrap();
        let out = build_busybox(ctx.path(), cache.path(), &[]);
        assert!(!out.status.success(), "{line}");
        assert!(
            text(&out.stderr).contains(message),
            "{line}: {}",
            text(&out.stderr)
        );
    }
}

const OWNERS: &str = r#"ARG BASE
FROM ${BASE}
RUN mkdir -p /srv/x && echo hi > /srv/x/f && chown -R 1000:1000 /srv/x \
    && echo tool > /srv/tool && chmod 4755 /srv/tool \
    && mkdir /srv/shared && chmod 1777 /srv/shared \
    && echo secret > /srv/key && chmod 600 /srv/key && chown 0:1000 /srv/key
"#;

/// Mode, owner and group of every path under `root/dir`.
fn metadata(root: &Path, dir: &str) -> std::collections::BTreeMap<String, (u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    tree(root)
        .into_keys()
        .filter(|k| k == dir || k.starts_with(&format!("{dir}/")))
        .map(|k| {
            let m = std::fs::symlink_metadata(root.join(&k)).unwrap();
            (k, (m.mode() & 0o7777, m.uid(), m.gid()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_keeps_owners_and_modes_as_buildah_does() {
    let base = testkit::busybox_base().expect("busybox base image");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), OWNERS).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ours = format!("oci:{}:owners", work.path().join("ours").display());
    let out = build_busybox(ctx.path(), cache.path(), &["--output", &ours]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let root = unpack(&ours, &work.path().join("unpack-ours")).await;
    let mine = metadata(&root, "srv");
    assert_eq!(mine["srv/x/f"], (0o644, 1000, 1000), "{mine:?}");
    assert_eq!(mine["srv/tool"], (0o4755, 0, 0), "{mine:?}");
    assert_eq!(mine["srv/shared"], (0o1777, 0, 0), "{mine:?}");
    assert_eq!(mine["srv/key"], (0o600, 0, 1000), "{mine:?}");

    let storage = work.path().join("buildah");
    let buildah = |args: &[&str]| {
        let out = std::process::Command::new("buildah")
            .arg("--root")
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .expect("buildah");
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            text(&out.stderr)
        );
    };
    let theirs = format!("oci:{}:owners", work.path().join("theirs").display());
    buildah(&[
        "bud",
        "--isolation",
        "chroot",
        "--build-arg",
        &format!("BASE={}", base.oci_ref()),
        "-t",
        "localhost/owners:1",
        ctx.path().to_str().unwrap(),
    ]);
    buildah(&["push", "localhost/owners:1", &theirs]);
    let root = unpack(&theirs, &work.path().join("unpack-theirs")).await;
    assert_eq!(mine, metadata(&root, "srv"));
}

const CACHE_MOUNT: &str = r#"ARG BASE
FROM ${BASE}
COPY stamp /stamp
RUN --mount=type=cache,target=/var/cache/app,id=app,sharing=locked \
    echo "seen $(cat /var/cache/app/seen 2>/dev/null || echo none)" && cat /stamp >> /var/cache/app/seen
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_mount_outlives_its_run_and_stays_out_of_the_layer() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), CACHE_MOUNT).unwrap();
    std::fs::write(ctx.path().join("stamp"), "first\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:cm", out_dir.path().display());
    let out = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("  seen none"), "{log}");
    // The mount and its mount point are not in the image.
    let tree = tree(&unpack(&layout, &out_dir.path().join("unpacked")).await);
    assert!(!tree.keys().any(|k| k.starts_with("var/cache")), "{tree:?}");

    // A changed earlier step runs the RUN again: it finds what the first
    // build left in the cache.
    std::fs::write(ctx.path().join("stamp"), "second\n").unwrap();
    let again = build_busybox(ctx.path(), cache.path(), &["--output", &layout]);
    let log = text(&again.stderr);
    assert!(again.status.success(), "{log}");
    assert!(log.contains("  seen first"), "{log}");
}

/// A wheel of package `hello_hoist` 1.0, made with the host's Python.
fn hello_wheel(dir: &Path) {
    let script = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/hello_hoist-1.0-py3-none-any.whl", "w") as z:
    z.writestr("hello_hoist/__init__.py", "def greet():\n    return 'hello from a local index'\n")
    info = "hello_hoist-1.0.dist-info/"
    z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: hello-hoist\nVersion: 1.0\n")
    z.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: hoist-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(info + "RECORD", "".join(f"{p},,\n" for p in ["hello_hoist/__init__.py", info + "METADATA", info + "WHEEL", info + "RECORD"]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A child process killed when the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pip_install_runs_with_the_network_it_is_allowed() {
    // A base with pip, from Debian packages, and a local package index.
    let work = tempfile::tempdir().unwrap();
    let base = format!("oci:{}:pip", work.path().join("base").display());
    let debs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-base-cache");
    let built = hoist(&[
        "base",
        "debian",
        "--preset",
        "slim",
        "--packages-extra",
        "python3-pip",
        "--output",
        &base,
        "--cache-dir",
        debs.to_str().unwrap(),
    ]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let index = work.path().join("index");
    std::fs::create_dir(&index).unwrap();
    hello_wheel(&index);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Killed(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(&index)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the index never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "ARG BASE\nFROM ${BASE}\nARG INDEX\n\
         RUN python3 -m pip install --no-cache-dir --break-system-packages --no-index --find-links \"$INDEX\" hello-hoist\n\
         CMD [\"python3\", \"-c\", \"import hello_hoist; print(hello_hoist.greet())\"]\n",
    )
    .unwrap();
    let cache = work.path().join("cache");
    let build = |network: Option<&str>, out: &str| {
        let mut args = vec![
            "build".to_owned(),
            "-f".to_owned(),
            ctx.join("Dockerfile").display().to_string(),
            ctx.display().to_string(),
            "--build-arg".to_owned(),
            format!("BASE={base}"),
            "--build-arg".to_owned(),
            format!("INDEX=http://127.0.0.1:{port}/"),
            "--cache-dir".to_owned(),
            cache.display().to_string(),
            "--tag".to_owned(),
            "127.0.0.1:1/acme/pip:1".to_owned(),
            "--output".to_owned(),
            out.to_owned(),
        ];
        if let Some(n) = network {
            args.extend(["--network".to_owned(), n.to_owned()]);
        }
        hoist(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // No network by default: pip finds nothing, and nothing is written.
    let closed = work.path().join("closed");
    let out = build(None, &format!("oci:{}:1", closed.display()));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(":4:1: RUN exited with status 1") && err.contains("hello-hoist"),
        "{err}"
    );
    assert!(!closed.exists(), "nothing written for a failed build");

    // With the host's network: installed from the index, and it runs.
    let open = format!("oci:{}:1", work.path().join("open").display());
    let out = build(Some("host"), &open);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Successfully installed hello-hoist-1.0"),
        "the RUN's output is logged: {}",
        text(&out.stderr)
    );
    let lc = work.path().join("layers");
    let run = hoist(&["run", &open, "--cache-dir", lc.to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout).trim(), "hello from a local index");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_limits_are_set_per_build() {
    let ctx = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "ARG BASE\nFROM ${BASE}\nRUN echo begun && sleep 30\n",
    )
    .unwrap();
    let out_dir = ctx.path().join("out");
    let output = format!("oci:{}:1", out_dir.display());
    let out = build_busybox(
        ctx.path(),
        cache.path(),
        &["--run-timeout", "2s", "--output", &output],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(":3:1: RUN ended: TimedOut") && err.contains("begun"),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing written");
    let out = build_busybox(ctx.path(), cache.path(), &["--run-cpus", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--run-cpus"),
        "{}",
        text(&out.stderr)
    );

    // What a RUN may write: 12 MiB does not fit in 8, and fits in 32.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "ARG BASE\nFROM ${BASE}\nRUN dd if=/dev/zero of=/big bs=1M count=12\n",
    )
    .unwrap();
    let out = build_busybox(
        ctx.path(),
        cache.path(),
        &["--run-disk", "8m", "--output", &output],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(":3:1: RUN exited with status 1") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing written");
    let out = build_busybox(
        ctx.path(),
        cache.path(),
        &["--run-disk", "32m", "--output", &output],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Serves `/files/hello.txt`, a redirect to it, a 404 and a directory URL
/// on a loopback port, until the test process ends.
fn web_server() -> u16 {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or("").to_owned();
            let (status, extra, body) = match path.as_str() {
                "/files/hello.txt" | "/dir/" => ("200 OK", String::new(), "hello from the web\n"),
                "/redirect" => ("302 Found", "location: /files/hello.txt\r\n".to_owned(), ""),
                _ => ("404 Not Found", String::new(), "no"),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn add_fetches_urls_only_with_the_network() {
    let port = web_server();
    let web = format!("http://127.0.0.1:{port}");
    let sum = format!(
        "sha256:{}",
        oci_model::Digest::of(b"hello from the web\n").hex()
    );
    let ctx = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dockerfile = |body: &str| {
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM scratch\n{body}\n"),
        )
        .unwrap();
    };
    let out_dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:web", out_dir.path().display());
    let fails = |extra: &[&str], want: &str| {
        let out = build_busybox(ctx.path(), cache.path(), extra);
        let err = text(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "want {want:?}: {err}"
        );
        assert!(err.contains("Dockerfile:2"), "{err}");
    };

    // Without the network a URL is a named error, not a download.
    dockerfile(&format!("ADD {web}/files/hello.txt /web/"));
    fails(&[], "needs the network; build with --network host");

    dockerfile(&format!(
        "ADD {web}/files/hello.txt /web/\n\
         ADD --checksum={sum} {web}/redirect /web/renamed.txt\n\
         ADD --chmod=755 {web}/files/hello.txt /usr/bin/hello"
    ));
    let out = build_busybox(
        ctx.path(),
        cache.path(),
        &["--network", "host", "--output", &layout],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let root = unpack(&layout, &out_dir.path().join("unpacked")).await;
    for file in ["web/hello.txt", "web/renamed.txt", "usr/bin/hello"] {
        assert_eq!(
            std::fs::read_to_string(root.join(file)).unwrap(),
            "hello from the web\n",
            "{file}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| {
        std::fs::metadata(root.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("usr/bin/hello"), 0o755);
    assert_eq!(
        mode("web/hello.txt") & 0o111,
        0,
        "a download is not executable"
    );

    // A --checksum already fetched is not fetched again: nothing listens here.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    dockerfile(&format!(
        "ADD --checksum={sum} http://127.0.0.1:{closed}/gone.txt /gone.txt"
    ));
    let out = build_busybox(
        ctx.path(),
        cache.path(),
        &["--network", "host", "--output", &layout],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Refusals, each naming the line.
    let wrong = format!("sha256:{}", "0".repeat(64));
    for (body, want) in [
        (
            format!("ADD --checksum={wrong} {web}/files/hello.txt /x"),
            "checksum mismatch",
        ),
        (format!("ADD {web}/missing /x"), "404"),
        (format!("ADD {web}/dir/ /web/"), "names no file"),
        ("ADD ftp://127.0.0.1/x /x".to_owned(), "only http and https"),
        (
            format!("ADD --checksum=md5:abc {web}/files/hello.txt /x"),
            "--checksum=md5:abc",
        ),
        (
            format!("ADD --checksum={sum} {web}/files/hello.txt Dockerfile /x/"),
            "exactly one source",
        ),
        (format!("COPY --checksum={sum} Dockerfile /x"), "only ADD"),
        (
            "ADD --from=0 Dockerfile /x".to_owned(),
            "only COPY takes --from",
        ),
    ] {
        dockerfile(&body);
        fails(&["--network", "host"], want);
    }
    // Nothing half-downloaded is kept.
    let fetched: Vec<_> = std::fs::read_dir(cache.path().join("fetched/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(fetched, [sum.trim_start_matches("sha256:")], "{fetched:?}");
}
