//! Real containers (run as root): isolation seen from inside, outcomes, and
//! that nothing is left behind after any of them.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_run::{
    Capture, CaptureRefusal, Io, Launcher, LiveOutput, Network, Outcome, Output, OutputEvent,
    Refusal, RootFs, RunResult, RunSpec, Sandbox, SandboxConfig, Stream,
};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_sandbox-launcher");

/// A sandbox with its own cgroup parent and state root, checked for
/// leftovers (and its cgroup parent removed) when dropped.
struct Fixture {
    sandbox: Sandbox,
    parent: String,
    state: tempfile::TempDir,
    rootfs: tempfile::TempDir,
}

impl Fixture {
    fn new(name: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the sandbox tests run real containers and need root"
        );
        let state = tempfile::tempdir().unwrap();
        let parent = format!("hoist-test-{name}-{}", std::process::id());
        let config = SandboxConfig::new(Launcher::new(LAUNCHER))
            .with_state_root(state.path().to_owned())
            .with_cgroup_parent(parent.clone());
        let sandbox = Sandbox::new(config).unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        busybox_rootfs(rootfs.path());
        Self {
            sandbox,
            parent,
            state,
            rootfs,
        }
    }

    fn spec(&self, script: &str) -> RunSpec {
        RunSpec::new(
            RootFs::Dir(self.rootfs.path().to_owned()),
            vec!["sh".into(), "-c".into(), script.into()],
        )
    }

    fn run(&self, spec: &RunSpec) -> RunResult {
        let result = self.sandbox.run(spec).unwrap();
        self.assert_clean();
        result
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|h| h.path().join(&self.parent))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// No cgroup, mount, state directory or process of a container is left.
    fn assert_clean(&self) {
        for dir in self.cgroup_dirs() {
            let children: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .collect();
            assert!(
                children.is_empty(),
                "cgroups left in {}: {children:?}",
                dir.display()
            );
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let state = self.state.path().to_str().unwrap();
        assert!(!mounts.contains(state), "mounts left under {state}");
        for sub in ["bundles", "containers"] {
            let left: Vec<_> = std::fs::read_dir(self.state.path().join(sub))
                .unwrap()
                .collect();
            assert!(left.is_empty(), "{sub} left: {left:?}");
        }
        let marker = format!("/{}/", self.parent);
        for proc in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cgroups) = std::fs::read_to_string(proc.path().join("cgroup")) {
                assert!(
                    !cgroups.contains(&marker),
                    "process {:?} left in {marker}",
                    proc.file_name()
                );
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_clean();
        }
        for dir in self.cgroup_dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A root filesystem of Debian's static busybox with its applets, and a
/// user 1000.
fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn defaults_isolate_the_container() {
    let f = Fixture::new("isolation");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g)
         grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
         echo nets=$(ls /sys/class/net) lo_flags=$(cat /sys/class/net/lo/flags)
         nc -w 2 127.0.0.1 {port} </dev/null && echo host-port=open || echo host-port=closed
         touch /root-file 2>/dev/null && echo root=writable || echo root=readonly
         grep ' /tmp ' /proc/mounts
         df -m /tmp | tail -1
         touch /tmp/file && echo tmp=writable
         echo keys=$(wc -c < /proc/keys) timer_list=$(wc -c < /proc/timer_list) firmware=$(ls /sys/firmware | wc -l)
         touch /proc/sys/kernel/x 2>/dev/null; echo sysrq=$(echo 1 2>/dev/null > /proc/sysrq-trigger && echo writable || echo readonly)
         echo host=$(hostname)
         echo fds=$(ls /proc/self/fd | tr '\\n' ' ')"
    );
    // A descriptor the caller leaked (no close-on-exec) must not reach the container.
    let leaked = nix::fcntl::open(
        "/etc/hostname",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let result = f.run(&f.spec(&script));
    let out = text(&result.stdout);
    assert_eq!(
        result.outcome,
        Outcome::Exited(0),
        "{out}\n{}",
        text(&result.stderr)
    );
    assert!(out.contains("uid=1000 gid=1000"), "{out}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{cap}:\t0000000000000000")),
            "{cap} not empty: {out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        out.contains("nets=lo lo_flags=0x9"),
        "only lo, and up: {out}"
    );
    assert!(out.contains("host-port=closed"), "{out}");
    assert!(out.contains("root=readonly"), "{out}");
    assert!(out.contains("tmpfs /tmp tmpfs rw,nosuid,nodev"), "{out}");
    assert!(out.contains(" 512 "), "/tmp is 512 MiB: {out}");
    assert!(out.contains("tmp=writable"), "{out}");
    assert!(
        out.contains("keys=0 timer_list=0 firmware=0"),
        "masked paths: {out}"
    );
    assert!(out.contains("sysrq=readonly"), "{out}");
    assert!(out.contains("host=sandbox"), "{out}");
    assert!(
        out.contains("fds=0 1 2 3\n"),
        "only stdio and ls's own directory: {out}"
    );
    nix::unistd::close(leaked).unwrap();
    // The listener saw no connection from inside.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());
}

#[test]
fn host_network_is_an_explicit_opt_out() {
    let f = Fixture::new("hostnet");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut spec = f.spec(&format!("echo hello | nc -w 2 127.0.0.1 {port}"));
    spec.network = Network::Host;
    let accepted = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    let result = f.run(&spec);
    assert_eq!(
        result.outcome,
        Outcome::Exited(0),
        "{}",
        text(&result.stderr)
    );
    assert_eq!(accepted.join().unwrap(), "hello\n");
}

#[test]
fn exit_codes_and_output_are_reported() {
    let f = Fixture::new("exit");
    let result = f.run(&f.spec("echo out; echo err >&2; exit 3"));
    assert_eq!(result.outcome, Outcome::Exited(3));
    assert_eq!(result.outcome.exit_code(), 3);
    assert_eq!(text(&result.stdout), "out\n");
    assert_eq!(text(&result.stderr), "err\n");
    assert!(!result.stdout_truncated && !result.stderr_truncated);
}

#[test]
fn a_broken_pipe_ends_the_writer_as_it_does_outside() {
    // The launcher is a Rust binary, which ignores SIGPIPE; the container
    // must not inherit that: `yes` dies of the signal (status 141), as
    // under docker, rather than living on until it checks a write.
    let f = Fixture::new("sigpipe");
    let mut spec =
        f.spec(r#"(yes; echo "yes: $?" >&2) | head -n 2; grep '^SigIgn' /proc/self/status >&2"#);
    spec.limits.timeout = Duration::from_secs(20);
    let result = f.run(&spec);
    let err = text(&result.stderr);
    assert_eq!(result.outcome, Outcome::Exited(0), "{err}");
    assert_eq!(text(&result.stdout), "y\ny\n");
    assert!(err.contains("yes: 141"), "{err}");
    let ignored = err
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(ignored & (1 << (13 - 1)), 0, "SIGPIPE ignored: {err}");
}

#[test]
fn inherited_output_is_not_captured() {
    let f = Fixture::new("inherit");
    let mut spec = f.spec("echo streamed; exit 4");
    spec.output = Output::Inherit;
    let result = f.run(&spec);
    assert_eq!(result.outcome, Outcome::Exited(4));
    assert!(result.stdout.is_empty() && result.stderr.is_empty());
}

#[test]
fn a_missing_launcher_is_an_error() {
    let f = Fixture::new("nolauncher");
    let config = SandboxConfig::new(Launcher::new("/nonexistent/sandbox-launcher"))
        .with_state_root(f.state.path().to_owned())
        .with_cgroup_parent(f.parent.clone());
    let err = Sandbox::new(config)
        .unwrap()
        .run(&f.spec("true"))
        .unwrap_err();
    assert!(
        matches!(err, sandbox_run::Error::LauncherSpawn { .. }),
        "{err}"
    );
    f.assert_clean();
}

#[test]
fn output_is_truncated_at_the_limit() {
    let f = Fixture::new("truncate");
    let mut spec = f.spec("head -c 300000 /dev/zero; echo small >&2");
    spec.output = Output::Capture { max_bytes: 1000 };
    let result = f.run(&spec);
    assert_eq!(result.outcome, Outcome::Exited(0));
    assert_eq!(result.stdout, vec![0u8; 1000]);
    assert!(result.stdout_truncated);
    assert_eq!(text(&result.stderr), "small\n");
    assert!(!result.stderr_truncated);
}

#[test]
fn a_missing_command_fails_to_start() {
    let f = Fixture::new("missing");
    let spec = RunSpec::new(
        RootFs::Dir(f.rootfs.path().to_owned()),
        vec!["/no/such/binary".into()],
    );
    let result = f.run(&spec);
    match &result.outcome {
        Outcome::FailedToStart(why) => assert!(why.contains("/no/such/binary"), "{why}"),
        other => panic!("expected FailedToStart, got {other:?}"),
    }
    assert_eq!(result.outcome.exit_code(), 125);
}

/// A host directory for `/io` with `inputs.json` in it.
fn io_dir(inputs: &str) -> tempfile::TempDir {
    let io = tempfile::tempdir().unwrap();
    std::fs::write(io.path().join("inputs.json"), inputs).unwrap();
    io
}

fn io_spec(dir: &std::path::Path, outputs: &[&str]) -> Io {
    let mut io = Io::new(dir);
    io.inputs = vec!["inputs.json".into()];
    io.outputs = outputs.iter().map(|o| (*o).to_owned()).collect();
    io
}

#[test]
fn io_is_a_private_tmpfs_whose_outputs_come_back() {
    let f = Fixture::new("io");
    let io = io_dir("{\"x\":1}");
    let mut spec = f.spec(
        "cat /io/inputs.json > /io/output.json && grep ' /io ' /proc/mounts && id -u > /io/who",
    );
    spec.io = Some(io_spec(io.path(), &["output.json", "who", "never-written"]));
    let result = f.run(&spec);
    assert_eq!(
        result.outcome,
        Outcome::Exited(0),
        "{}",
        text(&result.stderr)
    );
    // Its own tmpfs, 64 MiB by default, no devices, no executables.
    let mounts = text(&result.stdout);
    assert!(mounts.contains("tmpfs"), "{mounts}");
    assert!(mounts.contains("size=65536k"), "{mounts}");
    assert!(
        mounts.contains("nodev") && mounts.contains("noexec"),
        "{mounts}"
    );
    assert_eq!(result.outputs.len(), 3);
    assert_eq!(result.outputs[0].result, Ok(7));
    assert_eq!(result.outputs[2].result, Err(Refusal::Missing));
    assert_eq!(
        std::fs::read_to_string(io.path().join("output.json")).unwrap(),
        "{\"x\":1}"
    );
    assert_eq!(
        std::fs::read_to_string(io.path().join("who")).unwrap(),
        "1000\n"
    );
}

#[test]
fn hostile_outputs_are_refused_and_no_host_byte_leaks() {
    let f = Fixture::new("io-hostile");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "HOST-SECRET").unwrap();
    let io = io_dir("{}");
    let script = format!(
        "ln -s {secret} /io/link; ln -s /io/inputs.json /io/inner-link; mkdir /io/dir; \
         mkfifo /io/fifo; echo x > /io/a; ln /io/a /io/hard; \
         head -c 2000 /dev/zero > /io/big; echo ok > /io/fine",
        secret = secret.path().display()
    );
    let mut spec = f.spec(&script);
    let mut io_spec = io_spec(
        io.path(),
        &["link", "inner-link", "dir", "fifo", "hard", "big", "fine"],
    );
    io_spec.max_output_bytes = 1000;
    spec.io = Some(io_spec);
    let result = f.run(&spec);
    assert_eq!(
        result.outcome,
        Outcome::Exited(0),
        "{}",
        text(&result.stderr)
    );
    let got: Vec<_> = result.outputs.iter().map(|c| c.result.clone()).collect();
    assert_eq!(
        got,
        [
            Err(Refusal::Symlink),
            Err(Refusal::Symlink),
            Err(Refusal::Directory),
            Err(Refusal::Fifo),
            Err(Refusal::HardLink { links: 2 }),
            Err(Refusal::TooLarge {
                size: 2000,
                limit: 1000
            }),
            Ok(3),
        ]
    );
    // Only the regular file and the inputs are in the host directory.
    let mut names: Vec<_> = std::fs::read_dir(io.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fine", "inputs.json"]);
}

#[test]
fn filling_io_fails_the_function_alone() {
    let f = Fixture::new("io-full");
    let io = io_dir("{}");
    let mut spec =
        f.spec("dd if=/dev/zero of=/io/out bs=1M count=2048 2>/dev/null; echo status=$?");
    let mut io_spec = io_spec(io.path(), &["out"]);
    io_spec.size_bytes = 8 << 20;
    io_spec.max_output_bytes = 1 << 20;
    spec.io = Some(io_spec);
    let result = f.run(&spec);
    assert_eq!(result.outcome, Outcome::Exited(0));
    // The write of 2 GiB failed when the 8 MiB tmpfs was full.
    assert_eq!(
        text(&result.stdout),
        "status=1\n",
        "{}",
        text(&result.stderr)
    );
    // The tmpfs held what fit, 8 MiB; over the output limit, refused, and
    // the host directory got nothing.
    assert!(
        matches!(
            result.outputs[0].result,
            Err(Refusal::TooLarge { size, limit: 0x10_0000 })
                if size > (8 << 20) - (64 << 10) && size <= 8 << 20
        ),
        "{:?}",
        result.outputs[0]
    );
    assert!(!io.path().join("out").exists());
}

#[test]
fn a_busy_loop_times_out() {
    let f = Fixture::new("timeout");
    let mut spec = f.spec("while :; do :; done");
    spec.limits.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = f.run(&spec);
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert_eq!(result.outcome.exit_code(), 124);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_timeout_during_setup_still_kills_and_cleans_up() {
    let f = Fixture::new("setuptimeout");
    let mut spec = f.spec("sleep 30");
    spec.limits.timeout = Duration::from_millis(1);
    let started = Instant::now();
    let result = f.run(&spec);
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_memory_hog_is_oom_killed() {
    let f = Fixture::new("oom");
    let mut spec = f.spec("head -c 200m /dev/zero | tail");
    spec.limits.memory_bytes = 32 << 20;
    let result = f.run(&spec);
    assert_eq!(
        result.outcome,
        Outcome::OomKilled,
        "{}",
        text(&result.stderr)
    );
    assert_eq!(result.outcome.exit_code(), 137);
}

#[test]
fn a_fork_bomb_is_contained() {
    let f = Fixture::new("forkbomb");
    let mut spec = f.spec("bomb() { bomb | bomb & }; bomb; sleep 2; echo done");
    spec.limits.pids = 64;
    spec.limits.timeout = Duration::from_secs(60);
    let started = Instant::now();
    let result = f.run(&spec);
    assert_ne!(result.outcome, Outcome::TimedOut);
    assert!(
        text(&result.stderr).contains("can't fork"),
        "the pids limit stopped it: {}",
        text(&result.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn overlay_root_stacks_layers_with_whiteouts() {
    let f = Fixture::new("overlay");
    let bottom = tempfile::tempdir().unwrap();
    busybox_rootfs(bottom.path());
    std::fs::write(bottom.path().join("etc/gone.txt"), "deleted above").unwrap();
    std::fs::create_dir_all(bottom.path().join("data/dir")).unwrap();
    std::fs::write(
        bottom.path().join("data/dir/old.txt"),
        "hidden by opaque dir",
    )
    .unwrap();
    std::fs::write(bottom.path().join("data/kept.txt"), "kept").unwrap();
    let top = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(top.path().join("etc")).unwrap();
    std::fs::create_dir_all(top.path().join("data/dir")).unwrap();
    std::fs::write(top.path().join("data/dir/new.txt"), "new").unwrap();
    std::fs::set_permissions(
        top.path().join("data"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Overlay whiteout: a 0/0 character device; opaque directory: an xattr.
    nix::sys::stat::mknod(
        &top.path().join("etc/gone.txt"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    let status = Command::new("python3")
        .args([
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], 'trusted.overlay.opaque', b'y')",
        ])
        .arg(top.path().join("data/dir"))
        .status()
        .unwrap();
    assert!(status.success());
    let rootfs = RootFs::Overlay {
        lower: vec![top.path().to_owned(), bottom.path().to_owned()],
    };
    let spec = RunSpec::new(
        rootfs,
        vec![
            "sh".into(),
            "-c".into(),
            "test -e /etc/gone.txt && echo gone=present; cat /data/kept.txt; echo; ls /data/dir; \
             touch /x 2>/dev/null || echo root=readonly"
                .into(),
        ],
    );
    let result = f.run(&spec);
    assert_eq!(
        result.outcome,
        Outcome::Exited(0),
        "{}",
        text(&result.stderr)
    );
    assert_eq!(text(&result.stdout), "kept\nnew.txt\nroot=readonly\n");
    // The layers were not touched (mount points went to the upper layer).
    assert!(!top.path().join("tmp").exists() && !bottom.path().join("tmp").exists());
}

/// Every path under `dir`, relative, with a letter for its kind (d, f, l),
/// sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let path = rel.join(e.file_name());
            let kind = e.file_type().unwrap();
            let letter = if kind.is_dir() {
                todo.push(path.clone());
                'd'
            } else if kind.is_symlink() {
                'l'
            } else {
                'f'
            };
            out.push(format!("{letter} {}", path.display()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_captured_overlay_root_keeps_what_the_command_wrote_as_a_layer() {
    let f = Fixture::new("capture");
    let lower = tempfile::tempdir().unwrap();
    busybox_rootfs(lower.path());
    std::fs::create_dir_all(lower.path().join("data/old")).unwrap();
    std::fs::write(lower.path().join("data/old/a"), "a").unwrap();
    std::fs::write(lower.path().join("data/gone"), "gone").unwrap();
    let kept = tempfile::tempdir().unwrap();
    let io = io_dir("{}");
    let mut spec = RunSpec::new(
        RootFs::Overlay {
            lower: vec![lower.path().to_owned()],
        },
        vec![
            "sh".into(),
            "-c".into(),
            "set -e; mkdir -p /data/new; echo hi > /data/new/file; ln -s /etc/passwd /data/link; \
             rm /data/gone; rm -r /data/old; mkdir /data/old; echo b > /data/old/b; \
             echo scratch > /tmp/not-kept; echo out > /io/out.txt"
                .into(),
        ],
    );
    spec.uid = 0;
    spec.gid = 0;
    spec.readonly_root = false;
    spec.io = Some(io_spec(io.path(), &["out.txt"]));
    spec.capture = Some(Capture::new(kept.path()));
    let result = f.run(&spec);
    assert_eq!(
        result.outcome,
        Outcome::Exited(0),
        "{}",
        text(&result.stderr)
    );
    let captured = result
        .captured
        .expect("a capture")
        .expect("nothing refused");
    assert_eq!(
        tree(kept.path()),
        [
            "d data",
            "d data/new",
            "d data/old",
            "f data/.wh.gone",
            "f data/new/file",
            "f data/old/.wh..wh..opq",
            "f data/old/b",
            "l data/link",
        ],
        "mount points and mounted file systems are not captured"
    );
    assert_eq!(captured.entries, 8);
    assert_eq!(captured.bytes, 5);
    assert_eq!(
        std::fs::read_link(kept.path().join("data/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(result.outputs[0].result, Ok(4));
    // The lower layer is untouched.
    assert!(lower.path().join("data/gone").is_file());
    assert!(!lower.path().join("data/new").exists());
}

#[test]
fn a_capture_refuses_what_a_layer_cannot_hold_and_stays_bounded() {
    let f = Fixture::new("capturebad");
    let lower = tempfile::tempdir().unwrap();
    busybox_rootfs(lower.path());
    let run = |script: &str, max_bytes: u64| {
        let kept = tempfile::tempdir().unwrap();
        let mut spec = RunSpec::new(
            RootFs::Overlay {
                lower: vec![lower.path().to_owned()],
            },
            vec!["sh".into(), "-c".into(), script.into()],
        );
        spec.uid = 0;
        spec.gid = 0;
        spec.readonly_root = false;
        let mut capture = Capture::new(kept.path());
        capture.max_bytes = max_bytes;
        spec.capture = Some(capture);
        let result = f.run(&spec);
        (result, kept)
    };
    let (result, _) = run("mkfifo /pipe", 1 << 20);
    assert_eq!(
        result.captured,
        Some(Err(CaptureRefusal::Entry {
            path: "pipe".into(),
            refusal: Refusal::Fifo
        }))
    );
    let (result, _) = run("touch /.wh.sneaky", 1 << 20);
    assert!(
        matches!(
            result.captured,
            Some(Err(CaptureRefusal::ReservedName { .. }))
        ),
        "{:?}",
        result.captured
    );
    // The upper layer's tmpfs is the bound: writing past it fails inside.
    let (result, kept) = run("dd if=/dev/zero of=/big bs=1M count=4", 1 << 20);
    assert_eq!(
        result.outcome,
        Outcome::Exited(1),
        "{}",
        text(&result.stderr)
    );
    assert!(
        text(&result.stderr).contains("No space left"),
        "{}",
        text(&result.stderr)
    );
    let size = std::fs::metadata(kept.path().join("big")).map_or(0, |m| m.len());
    assert!(size <= 1 << 20, "{size}");
}

#[test]
fn a_killed_launcher_leaves_nothing_after_the_run() {
    let f = Fixture::new("launcherkill");
    let killer = {
        let parent = f.parent.clone();
        std::thread::spawn(move || kill_launcher_of_first_container(&parent))
    };
    let err = f.sandbox.run(&f.spec("sleep 30")).unwrap_err();
    killer.join().unwrap();
    assert!(err.to_string().contains("launcher"), "{err}");
    f.assert_clean();
}

/// A warm container whose command is `script` (busybox `sh`); its `/io`
/// directory is unused until a task.
fn warm_spec(f: &Fixture, script: &str) -> RunSpec {
    let mut spec = f.spec(script);
    spec.io = Some(Io::new(f.state.path()));
    spec
}

#[test]
fn warm_servers_that_misbehave_are_ended_and_removed() {
    let f = Fixture::new("warmbad");
    // Gone before it is ready: said as a run's outcome.
    match f.sandbox.start_warm(&warm_spec(&f, "exit 3")) {
        Err(sandbox_run::Error::WarmNotReady {
            outcome: Outcome::Exited(3),
            ..
        }) => {}
        other => panic!("a server that exits: {other:?}"),
    }
    f.assert_clean();
    // Anything but `ready` first.
    let err = f
        .sandbox
        .start_warm(&warm_spec(&f, "printf hello >&0; sleep 30"))
        .unwrap_err();
    assert!(err.to_string().contains("instead of ready"), "{err}");
    f.assert_clean();
    // Ready, but it never answers a task: the timeout ends the container,
    // and it takes no more tasks.
    let mut warm = f
        .sandbox
        .start_warm(&warm_spec(&f, "printf ready >&0; sleep 30"))
        .unwrap();
    assert!(warm.is_alive());
    let task = tempfile::tempdir().unwrap();
    let result = warm
        .run(&Io::new(task.path()), Duration::from_millis(500))
        .unwrap();
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert!(!warm.is_alive());
    let again = warm.run(&Io::new(task.path()), Duration::from_secs(1));
    assert!(
        matches!(again, Err(sandbox_run::Error::WarmGone { .. })),
        "{again:?}"
    );
    warm.close().unwrap();
    f.assert_clean();
    // A server with another process beside it gets no task: that process
    // could see the task's /io.
    let mut warm = f
        .sandbox
        .start_warm(&warm_spec(&f, "printf ready >&0; sleep 30 & wait"))
        .unwrap();
    let err = warm
        .run(&Io::new(task.path()), Duration::from_secs(10))
        .unwrap_err();
    assert!(err.to_string().contains("besides the server"), "{err}");
    assert!(!warm.is_alive());
    warm.close().unwrap();
    f.assert_clean();
}

#[test]
fn warm_specs_need_an_io_and_captured_output() {
    let f = Fixture::new("warmspec");
    let no_io = f.spec("true");
    let mut inherited = warm_spec(&f, "true");
    inherited.output = Output::Inherit;
    for spec in [no_io, inherited] {
        assert!(matches!(
            f.sandbox.start_warm(&spec),
            Err(sandbox_run::Error::InvalidSpec { .. })
        ));
    }
}

/// Waits for a container under `parent`; returns the pid of its init and of
/// its launcher (the init's parent).
fn find_container(parent: &str) -> (i32, i32) {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no container appeared"
        );
        let procs = std::fs::read_dir(format!("/sys/fs/cgroup/pids/{parent}"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| std::fs::read_to_string(e.path().join("cgroup.procs")).ok())
            .find(|p| !p.trim().is_empty());
        if let Some(procs) = procs {
            let init: i32 = procs.lines().next().unwrap().parse().unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
            let ppid: i32 = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap();
            assert!(
                comm.starts_with("sandbox-launch"),
                "parent of init is {comm:?}"
            );
            return (init, ppid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
}

fn kill_launcher_of_first_container(parent: &str) {
    kill9(find_container(parent).1);
}

#[test]
fn sweep_removes_what_a_crashed_worker_left() {
    let f = Fixture::new("sweep");
    let mut worker = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "crashed_worker", "--nocapture"])
        .env("SANDBOX_TEST_STATE", f.state.path())
        .env("SANDBOX_TEST_PARENT", &f.parent)
        .env("SANDBOX_TEST_ROOTFS", f.rootfs.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (init, launcher) = find_container(&f.parent);
    // The worker and then the launcher crash; the container runs on.
    worker.kill().unwrap();
    worker.wait().unwrap();
    kill9(launcher);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        Path::new(&format!("/proc/{init}")).exists(),
        "the container outlived its launcher"
    );
    assert!(
        std::fs::read_dir(f.state.path().join("bundles"))
            .unwrap()
            .next()
            .is_some()
    );

    let report = f.sandbox.sweep().unwrap();
    assert!(report.processes_killed >= 1, "{report:?}");
    assert!(
        report.cgroups_removed >= 8,
        "one per v1 controller: {report:?}"
    );
    assert_eq!(report.state_dirs_removed, 2, "bundle and state: {report:?}");
    f.assert_clean();
    assert_eq!(
        f.sandbox.sweep().unwrap(),
        sandbox_run::SweepReport::default()
    );
}

/// The worker process that `sweep_removes_what_a_crashed_worker_left` starts
/// and kills; not meant to be run alone.
#[test]
#[ignore = "started by sweep_removes_what_a_crashed_worker_left"]
fn crashed_worker() {
    let var = |name: &str| std::env::var_os(name).expect("started by the sweep test");
    let config = SandboxConfig::new(Launcher::new(LAUNCHER))
        .with_state_root(var("SANDBOX_TEST_STATE"))
        .with_cgroup_parent(var("SANDBOX_TEST_PARENT").into_string().unwrap());
    let mut spec = RunSpec::new(
        RootFs::Dir(var("SANDBOX_TEST_ROOTFS").into()),
        vec!["sleep".into(), "600".into()],
    );
    spec.limits.timeout = Duration::from_secs(120);
    Sandbox::new(config).unwrap().run(&spec).unwrap();
}

/// Every event of a live container's output until its end.
fn drain(running: &sandbox_run::Detached) -> Vec<(Instant, OutputEvent)> {
    let mut seen = Vec::new();
    while let Some(events) = running.recv_output(Duration::from_secs(60)) {
        let now = Instant::now();
        seen.extend(events.into_iter().map(|e| (now, e)));
    }
    seen
}

#[test]
fn detached_output_arrives_line_by_line_as_it_is_written() {
    let f = Fixture::new("live");
    let spec = f.spec("echo one; echo two >&2; sleep 3; printf 'three\\r\\nno-newline'");
    let running = f
        .sandbox
        .start_detached_live(&spec, LiveOutput::default())
        .unwrap();
    let seen = drain(&running);
    let result = running.stop().unwrap();
    f.assert_clean();
    assert_eq!(result.outcome, Outcome::Exited(0));
    // The captured output is what it was without live output.
    assert_eq!(text(&result.stdout), "one\nthree\r\nno-newline");
    assert_eq!(text(&result.stderr), "two\n");
    let lines: Vec<(Stream, String)> = seen
        .iter()
        .map(|(_, e)| match e {
            OutputEvent::Line { stream, line } => (*stream, text(line)),
            other => panic!("{other:?}"),
        })
        .collect();
    let of = |s: Stream| -> Vec<&str> {
        lines
            .iter()
            .filter(|(t, _)| *t == s)
            .map(|(_, l)| l.as_str())
            .collect()
    };
    assert_eq!(of(Stream::Stdout), ["one", "three", "no-newline"]);
    assert_eq!(of(Stream::Stderr), ["two"]);
    let at = |wanted: &str| {
        seen.iter()
            .find(|(_, e)| e.to_string() == wanted)
            .unwrap()
            .0
    };
    assert!(
        at("three").duration_since(at("one")) >= Duration::from_secs(2),
        "one came as it was written"
    );
    assert!(at("three").duration_since(at("two")) >= Duration::from_secs(2));
}

#[test]
fn a_reader_that_falls_behind_gets_counts_and_the_container_is_not_stalled() {
    let f = Fixture::new("livedrop");
    // 18 MB of lines, then one on stderr; nobody reads until the end.
    let spec =
        f.spec("awk 'BEGIN { for (i = 0; i < 2000000; i++) print \"abcdefgh\" }'; echo end >&2");
    let mut live = LiveOutput::default();
    live.max_queued_bytes = 64 << 10;
    let mut running = f.sandbox.start_detached_live(&spec, live).unwrap();
    assert!(
        running.wait(Duration::from_secs(60)),
        "the container ran to its end unread"
    );
    let seen = drain(&running);
    let result = running.stop().unwrap();
    f.assert_clean();
    assert_eq!(result.outcome, Outcome::Exited(0));
    let (mut kept, mut dropped) = ([0u64; 2], [0u64; 2]);
    let mut queued = 0;
    for (_, event) in &seen {
        match event {
            OutputEvent::Line { stream, line } => {
                kept[*stream as usize] += 1;
                queued += line.len() + 64;
                if *stream == Stream::Stdout {
                    assert_eq!(line, b"abcdefgh");
                }
            }
            OutputEvent::Dropped {
                stream,
                lines,
                bytes,
            } => {
                dropped[*stream as usize] += lines;
                assert_eq!(
                    *bytes,
                    lines * if *stream == Stream::Stdout { 8 } else { 3 }
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(queued <= 64 << 10, "{queued} bytes queued");
    assert_eq!(kept[0] + dropped[0], 2_000_000, "every stdout line counted");
    assert_eq!(kept[1] + dropped[1], 1, "stderr's line counted");
    assert!(dropped[0] > 0);
    assert!(seen.last().unwrap().1.to_string().starts_with("… "));
}
