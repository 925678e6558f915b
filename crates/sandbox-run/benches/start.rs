//! Start latency of a cached `/bin/true` container: `Sandbox::run` against
//! `crun run` and `runc run` of an equivalent bundle, 50 sequential runs
//! each, on one machine in one process. Needs root, crun, runc and Debian's
//! busybox-static.
//!
//! crun refuses the hybrid cgroup layout (v1 with a v2 `unified` mount) that
//! some hosts have; it then runs in a private mount namespace without the
//! `unified` mount, and that wrapper's own cost is measured and reported
//! apart.

#![allow(clippy::print_stdout, reason = "a benchmark reports on standard output")]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox_run::{Launcher, Outcome, RootFs, RunSpec, Sandbox, SandboxConfig};
use serde_json::{Value, json};

const RUNS: u32 = 50;
const PARENT: &str = "hoist-bench";

fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "true"] {
        symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n").unwrap();
}

/// `runc spec`, changed to match what `Sandbox::run` sets up by default.
fn bundle_config(rootfs: &Path) -> Value {
    let out = Command::new("runc").args(["spec", "--bundle"]).arg(rootfs.parent().unwrap()).output().unwrap();
    assert!(out.status.success());
    let path = rootfs.parent().unwrap().join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(path).unwrap();
    let mut seccomp: Value =
        serde_json::from_str(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/seccomp.json"))).unwrap();
    seccomp["architectures"] = json!(["SCMP_ARCH_X86_64"]);
    let none: Vec<String> = Vec::new();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["true"]);
    config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    config["process"]["noNewPrivileges"] = json!(true);
    config["process"]["capabilities"] =
        json!({"bounding": none, "effective": none, "inheritable": none, "permitted": none, "ambient": none});
    config["root"] = json!({"path": rootfs, "readonly": true});
    config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777", "size=536870912"]}));
    config["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 2i64 << 30, "swap": 2i64 << 30},
        "cpu": {"quota": 200000, "period": 100000},
        "pids": {"limit": 256},
    });
    config["linux"]["seccomp"] = seccomp;
    config
}

fn time_runs(name: &str, mut run: impl FnMut(u32)) -> Duration {
    run(0); // warm caches
    let started = Instant::now();
    for i in 1..=RUNS {
        run(i);
    }
    let per = started.elapsed() / RUNS;
    println!("{name:<28} {:>7.2} ms per start", per.as_secs_f64() * 1e3);
    per
}

fn command_ok(command: &mut Command) {
    let status = command.stdin(Stdio::null()).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "{command:?} failed");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("bundle/rootfs");
    busybox_rootfs(&rootfs);
    let bundle = rootfs.parent().unwrap().to_owned();
    let mut config = bundle_config(&rootfs);

    let sandbox = Sandbox::new(SandboxConfig {
        state_root: work.path().join("state"),
        cgroup_parent: PARENT.into(),
        launcher: Launcher::new(env!("CARGO_BIN_EXE_sandbox-launcher")),
    })
    .unwrap();
    let spec = RunSpec::new(RootFs::Dir(rootfs.clone()), vec!["true".into()]);
    for _ in 0..5 {
        let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
        let r = sandbox.run(&spec).unwrap();
        let t1 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
        println!("start={t0} end={t1} total={}\n{}", t1 - t0, String::from_utf8_lossy(&r.stderr));
    }
    let ours = time_runs("sandbox-run (libcontainer)", |_| {
        assert_eq!(sandbox.run(&spec).unwrap().outcome, Outcome::Exited(0));
    });

    let hybrid = Path::new("/sys/fs/cgroup/unified").exists();
    let write_config = |config: &mut Value, runtime: &str, i: u32| {
        config["linux"]["cgroupsPath"] = json!(format!("/{PARENT}/{runtime}-{i}"));
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(config).unwrap()).unwrap();
    };
    let crun = time_runs("crun run", |i| {
        write_config(&mut config, "crun", i);
        let id = format!("bench-crun-{i}");
        let mut command = Command::new("unshare");
        if hybrid {
            command.args(["-m", "--propagation", "private", "sh", "-c"]);
            command.arg("umount /sys/fs/cgroup/unified; exec crun \"$@\"").arg("sh");
        } else {
            command.arg("crun");
        }
        command_ok(command.args(["--root"]).arg(work.path().join("crun")).args(["run", "--bundle"]).arg(&bundle).arg(id));
    });
    let wrapper = time_runs("  of which the hybrid wrapper", |_| {
        command_ok(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c"]).arg(
            "umount /sys/fs/cgroup/unified; exec true",
        ));
    });
    let runc = time_runs("runc run", |i| {
        write_config(&mut config, "runc", i);
        let id = format!("bench-runc-{i}");
        command_ok(Command::new("runc").args(["--root"]).arg(work.path().join("runc")).args(["run", "--bundle"]).arg(&bundle).arg(id));
    });
    let crun_alone = if hybrid { crun.saturating_sub(wrapper) } else { crun };
    println!("ratio sandbox-run / crun      {:.2} (crun without its wrapper: {:.2})", ratio(ours, crun), ratio(ours, crun_alone));
    println!("ratio sandbox-run / runc      {:.2}", ratio(ours, runc));
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(PARENT));
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
