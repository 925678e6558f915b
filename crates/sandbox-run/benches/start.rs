//! Start latency of a cached `/bin/true` container: `Sandbox::run` against
//! `crun run` and `runc run` of an equivalent bundle, 50 sequential runs
//! each, on one machine in one process. Needs root, crun, runc and Debian's
//! busybox-static.
//!
//! crun refuses the hybrid cgroup layout (v1 with a v2 `unified` mount) that
//! some hosts have; it then runs in a private mount namespace without the
//! `unified` mount, and that wrapper's own cost is measured and reported
//! apart.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

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
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
    )
    .unwrap();
}

/// `runc spec`, changed to match what `Sandbox::run` sets up by default.
fn bundle_config(rootfs: &Path) -> Value {
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(rootfs.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = rootfs.parent().unwrap().join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(path).unwrap();
    let mut seccomp: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/seccomp.json"
    )))
    .unwrap();
    seccomp["architectures"] = json!(["SCMP_ARCH_X86_64"]);
    let none: Vec<String> = Vec::new();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["true"]);
    config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    config["process"]["noNewPrivileges"] = json!(true);
    config["process"]["capabilities"] = json!({"bounding": none, "effective": none, "inheritable": none, "permitted": none, "ambient": none});
    config["root"] = json!({"path": rootfs, "readonly": true});
    config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777", "size=536870912"]}),
    );
    config["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 2i64 << 30, "swap": 2i64 << 30},
        "cpu": {"quota": 200000, "period": 100000},
        "pids": {"limit": 256},
    });
    config["linux"]["seccomp"] = seccomp;
    config
}

/// Per-start times of one runtime.
#[derive(Default)]
struct Times(Vec<Duration>);

impl Times {
    fn time(&mut self, run: impl FnOnce()) {
        let started = Instant::now();
        run();
        self.0.push(started.elapsed());
    }

    fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    }

    fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }

    fn print(&self, name: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<30} median {:>6.2} ms   mean {:>6.2} ms",
            ms(self.median()),
            ms(self.mean())
        );
    }
}

fn command_ok(command: &mut Command) {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
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

    let sandbox = Sandbox::new(
        SandboxConfig::new(Launcher::new(env!("CARGO_BIN_EXE_sandbox-launcher")))
            .with_state_root(work.path().join("state"))
            .with_cgroup_parent(PARENT),
    )
    .unwrap();
    let spec = RunSpec::new(RootFs::Dir(rootfs.clone()), vec!["true".into()]);
    let hybrid = Path::new("/sys/fs/cgroup/unified").exists();
    let crun_root = work.path().join("crun");
    let runc_root = work.path().join("runc");
    let (mut ours, mut crun, mut wrapper, mut runc) = (
        Times::default(),
        Times::default(),
        Times::default(),
        Times::default(),
    );
    // Interleaved, so that load from elsewhere on the machine hits every
    // runtime alike; the first round warms caches and is not counted.
    for i in 0..=RUNS {
        let mut round = (
            Times::default(),
            Times::default(),
            Times::default(),
            Times::default(),
        );
        round
            .0
            .time(|| assert_eq!(sandbox.run(&spec).unwrap().outcome, Outcome::Exited(0)));
        write_config(&bundle, &mut config, "crun", i);
        round.1.time(|| {
            let mut command = Command::new("unshare");
            if hybrid {
                command.args(["-m", "--propagation", "private", "sh", "-c"]);
                command
                    .arg("umount /sys/fs/cgroup/unified; exec crun \"$@\"")
                    .arg("sh");
            } else {
                command.arg("crun");
            }
            command_ok(
                command
                    .arg("--root")
                    .arg(&crun_root)
                    .args(["run", "--bundle"])
                    .arg(&bundle)
                    .arg(format!("c{i}")),
            );
        });
        round.2.time(|| {
            command_ok(
                Command::new("unshare")
                    .args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec true"),
            );
        });
        write_config(&bundle, &mut config, "runc", i);
        round.3.time(|| {
            command_ok(
                Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["run", "--bundle"])
                    .arg(&bundle)
                    .arg(format!("r{i}")),
            );
        });
        if i > 0 {
            ours.0.extend(round.0.0);
            crun.0.extend(round.1.0);
            wrapper.0.extend(round.2.0);
            runc.0.extend(round.3.0);
        }
    }
    println!("{RUNS} starts of /bin/true (busybox), interleaved");
    ours.print("sandbox-run (libcontainer)");
    crun.print("crun run (with wrapper)");
    wrapper.print("  the wrapper alone");
    runc.print("runc run");
    let crun_alone = if hybrid {
        crun.median().saturating_sub(wrapper.median())
    } else {
        crun.median()
    };
    println!(
        "median ratio sandbox-run / crun: {:.2} with its wrapper, {:.2} without",
        ratio(ours.median(), crun.median()),
        ratio(ours.median(), crun_alone)
    );
    println!(
        "median ratio sandbox-run / runc: {:.2}",
        ratio(ours.median(), runc.median())
    );
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(PARENT));
    }
}

fn write_config(bundle: &Path, config: &mut Value, runtime: &str, i: u32) {
    config["linux"]["cgroupsPath"] = json!(format!("/{PARENT}/{runtime}-{i}"));
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(config).unwrap(),
    )
    .unwrap();
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
