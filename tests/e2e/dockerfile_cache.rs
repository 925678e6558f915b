//! `hoist build -f`: `COPY`/`ADD` steps cached by the content of what they
//! read (a repeated build writes no layer; a changed file re-runs its step
//! and those after it), layers streamed into the store with bounded
//! memory, and patterns in `COPY --from` resolved inside the source stage.

use std::collections::BTreeSet;
use std::path::Path;

use super::hoist;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `hoist build -f` of `ctx`'s Dockerfile on testkit's BusyBox base
/// (`BASE`), with the build cache `cache`, into `oci:OUT:t`.
fn build(ctx: &Path, cache: &Path, out: &Path) -> std::process::Output {
    let base = testkit::busybox_base().expect("busybox base image");
    hoist(&[
        "build",
        "-f",
        ctx.join("Dockerfile").to_str().unwrap(),
        ctx.to_str().unwrap(),
        "--build-arg",
        &format!("BASE={}", base.oci_ref()),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--tag",
        "127.0.0.1:1/acme/cache:1",
        "--output",
        &format!("oci:{}:t", out.display()),
    ])
}

/// Each step's instruction and whether it came from the cache, from the
/// build's log (`STEP n/m: TEXT`, its output indented below it).
fn steps(log: &str) -> Vec<(String, bool)> {
    let mut steps: Vec<(String, bool)> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("STEP ") {
            let (_, instruction) = rest.split_once(": ").unwrap();
            steps.push((instruction.to_owned(), false));
        } else if line.starts_with("  (cached ")
            && let Some(last) = steps.last_mut()
        {
            last.1 = true;
        }
    }
    steps
}

/// The instructions of the build that were not taken from the cache and
/// make a layer.
fn rebuilt(log: &str) -> Vec<String> {
    steps(log)
        .into_iter()
        .filter(|(i, cached)| !cached && ["COPY", "ADD", "RUN"].iter().any(|k| i.starts_with(k)))
        .map(|(i, _)| i)
        .collect()
}

fn blobs(cache: &Path) -> BTreeSet<String> {
    std::fs::read_dir(cache.join("store/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn digest(out: &std::process::Output) -> String {
    text(&out.stdout)
        .trim()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned()
}

const CACHED: &str = "ARG BASE
FROM ${BASE}
COPY a.txt /app/
COPY dir/ /app/dir/
ADD files.tar /app/unpacked/
RUN cat /app/a.txt /app/dir/*.txt /app/unpacked/inside.txt && ls /app/dir
";

#[tokio::test(flavor = "multi_thread")]
async fn copy_steps_are_cached_by_the_content_they_read() {
    let ctx = tempfile::tempdir().unwrap();
    let p = |rel: &str| ctx.path().join(rel);
    std::fs::create_dir_all(p("dir")).unwrap();
    std::fs::write(p("Dockerfile"), CACHED).unwrap();
    std::fs::write(p("a.txt"), "alpha\n").unwrap();
    std::fs::write(p("dir/b.txt"), "bravo\n").unwrap();
    std::fs::write(p("dir/extra.txt"), "extra\n").unwrap();
    std::fs::write(p(".dockerignore"), "dir/extra.txt\n").unwrap();
    let inside = tempfile::tempdir().unwrap();
    std::fs::write(inside.path().join("inside.txt"), "inside\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-cf", p("files.tar").to_str().unwrap(), "-C"])
        .arg(inside.path())
        .arg("inside.txt")
        .status()
        .unwrap();
    assert!(tar.success());
    // Old enough for their hashes to be remembered by the first build, so
    // that the later builds exercise the remembered hashes.
    std::thread::sleep(std::time::Duration::from_millis(1200));

    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let first = build(ctx.path(), cache.path(), out.path());
    let log = text(&first.stderr);
    assert!(first.status.success(), "{log}");
    assert_eq!(rebuilt(&log).len(), 4, "{log}");
    assert!(
        log.contains("  alpha\n  bravo\n  inside\n  b.txt\n"),
        "{log}"
    );

    // Again: every step cached, no blob written, the same image.
    let before = blobs(cache.path());
    let again = build(ctx.path(), cache.path(), out.path());
    let log = text(&again.stderr);
    assert!(again.status.success(), "{log}");
    assert_eq!(rebuilt(&log), Vec::<String>::new(), "{log}");
    assert_eq!(log.matches("(cached ").count(), 4, "{log}");
    assert_eq!(blobs(cache.path()), before);
    assert_eq!(digest(&again), digest(&first));

    // One file of the directory changed: that COPY and what follows it.
    std::fs::write(p("dir/b.txt"), "bravo two\n").unwrap();
    let changed = build(ctx.path(), cache.path(), out.path());
    let log = text(&changed.stderr);
    assert!(changed.status.success(), "{log}");
    assert_eq!(
        rebuilt(&log),
        [
            "COPY dir/ /app/dir/",
            "ADD files.tar /app/unpacked/",
            "RUN cat /app/a.txt /app/dir/*.txt /app/unpacked/inside.txt && ls /app/dir"
        ],
        "{log}"
    );
    assert!(log.contains("  bravo two\n"), "{log}");

    // The same size, the mtime put back: still a change (the ctime moved).
    let stat = std::fs::metadata(p("a.txt")).unwrap();
    let mtime = stat
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::fs::write(p("a.txt"), "ALPHA\n").unwrap();
    let touch = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{}.{:09}", mtime.as_secs(), mtime.subsec_nanos()))
        .arg(p("a.txt"))
        .status()
        .unwrap();
    assert!(touch.success());
    assert_eq!(
        std::fs::metadata(p("a.txt")).unwrap().modified().unwrap(),
        stat.modified().unwrap()
    );
    let restored = build(ctx.path(), cache.path(), out.path());
    let log = text(&restored.stderr);
    assert!(restored.status.success(), "{log}");
    assert_eq!(rebuilt(&log).len(), 4, "{log}");
    assert!(log.contains("  ALPHA\n"), "{log}");

    // A .dockerignore change that leaves what COPY sees alone changes
    // nothing; one that lets a file in re-runs that COPY.
    std::fs::write(p(".dockerignore"), "dir/extra.txt\nnot-there\n").unwrap();
    let same = build(ctx.path(), cache.path(), out.path());
    let log = text(&same.stderr);
    assert!(same.status.success(), "{log}");
    assert_eq!(rebuilt(&log), Vec::<String>::new(), "{log}");
    std::fs::write(p(".dockerignore"), "not-there\n").unwrap();
    let unignored = build(ctx.path(), cache.path(), out.path());
    let log = text(&unignored.stderr);
    assert!(unignored.status.success(), "{log}");
    assert_eq!(rebuilt(&log).len(), 3, "{log}");
    assert!(log.contains("  extra\n"), "{log}");

    // A mode change is a change.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p("a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let chmod = build(ctx.path(), cache.path(), out.path());
    let log = text(&chmod.stderr);
    assert!(chmod.status.success(), "{log}");
    assert_eq!(rebuilt(&log).len(), 4, "{log}");
    assert_ne!(digest(&chmod), digest(&unignored));

    // A damaged cache entry is a miss, not a failure; the same layer comes
    // out.
    for e in std::fs::read_dir(cache.path().join("dockerfile-copy/steps")).unwrap() {
        std::fs::write(e.unwrap().path(), "{not json").unwrap();
    }
    let damaged = build(ctx.path(), cache.path(), out.path());
    let log = text(&damaged.stderr);
    assert!(damaged.status.success(), "{log}");
    assert_eq!(
        rebuilt(&log),
        [
            "COPY a.txt /app/",
            "COPY dir/ /app/dir/",
            "ADD files.tar /app/unpacked/"
        ],
        "the same layers, so the RUN is cached: {log}"
    );
    assert_eq!(digest(&damaged), digest(&chmod));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_copy_is_streamed_into_the_store() {
    const SIZE: usize = 192 << 20;
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY big /big\n",
    )
    .unwrap();
    // Random bytes: gzip cannot shrink them, so a layer held in memory
    // would hold all of them.
    let mut big = std::fs::File::create(ctx.path().join("big")).unwrap();
    let copied = std::io::copy(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), SIZE as u64),
        &mut big,
    )
    .unwrap();
    assert_eq!(copied, SIZE as u64);
    drop(big);
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // The peak resident size of the build alone, as its own child of a
    // Python process.
    let script = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], capture_output=True)\n\
        sys.stderr.write(r.stderr.decode())\n\
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let run = std::process::Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_hoist")])
        .args([
            "build",
            "-f",
            ctx.path().join("Dockerfile").to_str().unwrap(),
            ctx.path().to_str().unwrap(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--tag",
            "127.0.0.1:1/acme/big:1",
            "--output",
            &format!("oci:{}:t", out.path().display()),
        ])
        .env("HOME", "/nonexistent-home-for-tests")
        .output()
        .unwrap();
    let report = text(&run.stdout);
    let (code, rss_kib) = report.trim().split_once(' ').unwrap();
    assert_eq!(code, "0", "{}", text(&run.stderr));
    let rss_mib = rss_kib.parse::<u64>().unwrap() / 1024;
    assert!(
        rss_mib < 96,
        "a {} MiB layer took {rss_mib} MiB of memory",
        SIZE >> 20
    );
    // The layer is in the store, whole.
    let layers: Vec<u64> = std::fs::read_dir(cache.path().join("store/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert!(layers.iter().any(|l| *l > SIZE as u64), "{layers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_from_patterns_match_inside_the_stage_only() {
    // A host directory a link in the stage points at: never read.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("key.txt"), "HOST-SECRET").unwrap();
    let dockerfile = |copies: &str| {
        format!(
            "ARG BASE
FROM ${{BASE}} AS builder
RUN mkdir -p /out/sub /out/other && echo a > /out/a.txt && echo b > /out/b.txt \\
 && echo c > /out/sub/c.txt && echo log > /out/x.log && echo o > /out/other/o.txt \\
 && ln -s {host} /out/host && ln -s /tmp /out/root
FROM ${{BASE}}
{copies}
",
            host = host.path().display()
        )
    };
    let ctx = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        dockerfile(
            "COPY --from=builder /out/*.txt /dst/
COPY --from=builder /out/s?b/[a-c].txt /deep/
COPY --from=builder /out/h* /out/r??t /links/
COPY --from=builder /out/sub/*.txt /one.txt
RUN cd / && find dst deep links one.txt | sort && cat one.txt && readlink links/host && readlink links/root",
        ),
    )
    .unwrap();
    let built = build(ctx.path(), cache.path(), out.path());
    let log = text(&built.stderr);
    assert!(built.status.success(), "{log}");
    let expected = [
        "deep",
        "deep/c.txt",
        "dst",
        "dst/a.txt",
        "dst/b.txt",
        "links",
        "links/host",
        "links/root",
        "one.txt",
        "c",
    ]
    .map(|l| format!("  {l}\n"))
    .concat();
    assert!(log.contains(&expected), "{log}");
    assert!(
        log.contains(&format!("  {}\n  /tmp\n", host.path().display())),
        "{log}"
    );
    assert!(!log.contains("HOST-SECRET"), "{log}");

    // Through a link (to a host directory, or to `/tmp`, which the host has too): no match, an error
    // naming the pattern; never the host's file.
    for (copy, pattern) in [
        ("COPY --from=builder /out/host/*.txt /x/", "/out/host/*.txt"),
        ("COPY --from=builder /out/root/* /x/", "/out/root/*"),
        ("COPY --from=builder /out/*.none /x/", "/out/*.none"),
    ] {
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile(copy)).unwrap();
        let failed = build(ctx.path(), cache.path(), out.path());
        let err = text(&failed.stderr);
        assert!(!failed.status.success(), "{copy}: {err}");
        assert!(
            err.contains(&format!(
                "Dockerfile:7:1: {pattern}: nothing in the stage matches the pattern"
            )),
            "{copy}: {err}"
        );
    }
}
