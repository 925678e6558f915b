//! Turns a [`RunSpec`] into an OCI runtime `config.json`.

use std::path::Path;

use serde_json::{Value, json};

use crate::spec::{DEFAULT_PATH, RootFs, RunSpec};
use crate::{Error, Result, seccomp};

/// CFS period used for the CPU limit.
const CPU_PERIOD_US: u64 = 100_000;

/// Paths hidden from the container (as Docker and runc hide them).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths made read-only in the container.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Checks what libcontainer would reject late or misread.
pub(crate) fn validate(spec: &RunSpec) -> Result<()> {
    /// The most lower layers overlayfs stacks (the kernel's `OVL_MAX_STACK`).
    const MAX_OVERLAY_LAYERS: usize = 500;
    let invalid = |reason: String| Err(Error::InvalidSpec { reason });
    if spec.args.is_empty() || spec.args[0].is_empty() {
        return invalid("no command given".into());
    }
    if !spec.cwd.starts_with('/') {
        return invalid(format!("working directory {:?} is not absolute", spec.cwd));
    }
    if let Some(bad) = spec.env.iter().find(|e| !e.contains('=')) {
        return invalid(format!("environment entry {bad:?} is not NAME=value"));
    }
    if !(spec.limits.cpus.is_finite() && spec.limits.cpus > 0.0) {
        return invalid(format!("cpus must be positive, not {}", spec.limits.cpus));
    }
    if spec.limits.memory_bytes < 4 << 20 {
        return invalid(format!(
            "memory limit {} is below 4 MiB",
            spec.limits.memory_bytes
        ));
    }
    if spec.limits.pids == 0 || spec.limits.tmp_bytes == 0 {
        return invalid("pids and tmp_bytes limits must be positive".into());
    }
    match &spec.rootfs {
        RootFs::Dir(dir) if !dir.is_absolute() => {
            invalid(format!("root {} is not absolute", dir.display()))
        }
        RootFs::Overlay { lower } if lower.is_empty() => {
            invalid("overlay root without layers".into())
        }
        RootFs::Overlay { lower } if lower.len() > MAX_OVERLAY_LAYERS => invalid(format!(
            "overlay root of {} layers: overlayfs stacks at most {MAX_OVERLAY_LAYERS}",
            lower.len()
        )),
        // Absolute because the launcher links to each from its bundle; any
        // other character is fine, since only the links' names reach the
        // mount options.
        RootFs::Overlay { lower } => match lower.iter().find(|l| !l.is_absolute()) {
            Some(l) => invalid(format!("overlay layer {} is not absolute", l.display())),
            None => Ok(()),
        },
        RootFs::Dir(_) => Ok(()),
    }?;
    if let Some(capture) = &spec.capture {
        if !matches!(spec.rootfs, RootFs::Overlay { .. }) || spec.readonly_root {
            return invalid("a capture needs a writable overlay root".into());
        }
        if !capture.dir.is_absolute() {
            return invalid(format!(
                "capture directory {} is not absolute",
                capture.dir.display()
            ));
        }
        if capture.max_bytes == 0 || capture.max_entries == 0 {
            return invalid("capture bounds must be positive".into());
        }
    }
    if let Some(io) = &spec.io {
        validate_io(io)?;
    }
    for bind in &spec.binds {
        let target = Path::new(&bind.target);
        let plain = target.is_absolute()
            && target
                .components()
                .skip(1)
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            && target.components().count() > 1
            && !bind.target.ends_with('/');
        let reserved = ["/proc", "/dev", "/sys", "/io"]
            .iter()
            .any(|r| target.starts_with(r));
        if !bind.source.is_absolute() || !plain || reserved {
            return invalid(format!(
                "bind {} at {:?}: needs an absolute source and a plain absolute target outside the sandbox's own mounts",
                bind.source.display(),
                bind.target
            ));
        }
    }
    Ok(())
}

/// Checks an `/io`: an absolute host directory, positive bounds, plain
/// file names.
pub(crate) fn validate_io(io: &crate::Io) -> Result<()> {
    let invalid = |reason: String| Err(Error::InvalidSpec { reason });
    if !io.dir.is_absolute() {
        return invalid(format!("io directory {} is not absolute", io.dir.display()));
    }
    if io.size_bytes == 0 || io.max_output_bytes == 0 {
        return invalid("io size and output limits must be positive".into());
    }
    if let Some(bad) = io
        .inputs
        .iter()
        .chain(&io.outputs)
        .find(|n| !is_plain_name(n))
    {
        return invalid(format!("io file name {bad:?} is not a plain file name"));
    }
    Ok(())
}

/// A single path component: no `/`, not `.` or `..`, no NUL.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The `config.json` of a container whose root is at `root_path`, whose
/// cgroup is `cgroups_path` and whose `/io` (when the spec has one) is the
/// launcher's tmpfs at `io_path`; a warm container's `/tmp` is the
/// launcher's tmpfs at `tmp_path`.
pub(crate) fn config(
    spec: &RunSpec,
    root_path: &Path,
    cgroups_path: &str,
    io_path: &Path,
    tmp_path: Option<&Path>,
) -> Value {
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_owned());
    }
    let no_caps: Vec<String> = Vec::new();
    let caps: Vec<&str> = spec.capabilities.iter().map(|c| c.name()).collect();
    let mut seccomp = seccomp::default_profile();
    // Docker's profile allows `chroot` to a process that may use it.
    if spec.capabilities.contains(&crate::Capability::SysChroot)
        && let Some(rules) = seccomp["syscalls"].as_array_mut()
    {
        rules.push(json!({"names": ["chroot"], "action": "SCMP_ACT_ALLOW"}));
    }
    let memory = i64::try_from(spec.limits.memory_bytes).unwrap_or(i64::MAX);
    let quota = (spec.limits.cpus * CPU_PERIOD_US as f64)
        .round()
        .max(1000.0) as i64;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    mounts.push(match tmp_path {
        Some(tmp) => json!({"destination": "/tmp", "type": "bind", "source": tmp,
                            "options": ["rbind", "rw", "nosuid", "nodev"]}),
        None => json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "mode=1777", format!("size={}", spec.limits.tmp_bytes)]}),
    });
    if spec.io.is_some() {
        mounts.push(
            json!({"destination": "/io", "type": "bind", "source": io_path,
                           "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]}),
        );
    }
    for bind in &spec.binds {
        mounts.push(
            json!({"destination": bind.target, "type": "bind", "source": bind.source,
                           "options": ["rbind", "rw", "nosuid", "nodev"]}),
        );
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.uid, "gid": spec.gid},
            "args": spec.args,
            "env": env,
            "cwd": spec.cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "inheritable": no_caps,
                "permitted": caps, "ambient": no_caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": root_path, "readonly": spec.readonly_root},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": memory, "swap": memory},
                "cpu": {"quota": quota, "period": CPU_PERIOD_US},
                "pids": {"limit": i64::try_from(spec.limits.pids).unwrap_or(i64::MAX)},
            },
            // The network namespace is the launcher's own (see launcher.rs).
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": seccomp,
        },
    })
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};

    use super::*;
    use crate::Limits;

    fn spec() -> RunSpec {
        RunSpec::new(RootFs::Dir("/r".into()), vec!["true".into()])
    }

    #[test]
    fn config_parses_as_runtime_spec_with_the_defaults() {
        let mut run = spec();
        run.io = Some(crate::Io::new("/data/io"));
        run.env = vec!["A=b".into()];
        let spec: Spec = serde_json::from_value(config(
            &run,
            Path::new("/b/rootfs"),
            "/hoist/x",
            Path::new("/b/io"),
            None,
        ))
        .unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.user().uid(), 1000);
        assert_eq!(process.no_new_privileges(), Some(true));
        assert!(
            process
                .env()
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.starts_with("PATH="))
        );
        let caps = process.capabilities().as_ref().unwrap();
        assert!(caps.bounding().as_ref().unwrap().is_empty());
        assert!(caps.effective().as_ref().unwrap().is_empty());
        let chroot = |spec: &Spec| {
            let rules = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
            rules
                .syscalls()
                .iter()
                .flatten()
                .any(|r| r.names().iter().any(|n| n == "chroot"))
        };
        assert!(!chroot(&spec));

        // A build step's capabilities: never inheritable or ambient.
        let mut build = run.clone();
        build.capabilities = crate::Capability::DOCKER_DEFAULT.to_vec();
        let with: Spec = serde_json::from_value(config(
            &build,
            Path::new("/b/rootfs"),
            "/hoist/x",
            Path::new("/b/io"),
            None,
        ))
        .unwrap();
        let caps = with
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 12);
        assert_eq!(caps.effective(), caps.permitted());
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert!(chroot(&with));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.cgroups_path().as_deref(), Some(Path::new("/hoist/x")));
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.memory().unwrap().limit(), Some(2 << 30));
        assert_eq!(resources.memory().unwrap().swap(), Some(2 << 30));
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(200_000));
        assert_eq!(resources.pids().unwrap().limit(), 256);
        let namespaces = linux.namespaces().as_ref().unwrap();
        assert!(
            !namespaces
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::Network)
        );
        let mounts = spec.mounts().as_ref().unwrap();
        let tmp = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/tmp"))
            .unwrap();
        assert!(
            tmp.options()
                .as_ref()
                .unwrap()
                .contains(&format!("size={}", 512 << 20))
        );
        let io = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/io"))
            .unwrap();
        assert_eq!(io.source().as_deref(), Some(Path::new("/b/io")));

        // A warm container's /tmp is the launcher's, bound in.
        let warm: Spec = serde_json::from_value(config(
            &run,
            Path::new("/b/rootfs"),
            "/hoist/x",
            Path::new("/b/io"),
            Some(Path::new("/b/tmp")),
        ))
        .unwrap();
        let tmp = warm
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/tmp"))
            .unwrap();
        assert_eq!(tmp.typ().as_deref(), Some("bind"));
        assert_eq!(tmp.source().as_deref(), Some(Path::new("/b/tmp")));
    }

    #[test]
    fn bad_specs_are_named() {
        type Change = Box<dyn Fn(&mut RunSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.args.clear()), "no command"),
            (Box::new(|s| s.cwd = "app".into()), "not absolute"),
            (Box::new(|s| s.env = vec!["NOEQUALS".into()]), "NAME=value"),
            (
                Box::new(|s| {
                    s.limits = Limits {
                        cpus: 0.0,
                        ..Limits::default()
                    }
                }),
                "cpus",
            ),
            (Box::new(|s| s.limits.memory_bytes = 1), "memory"),
            (
                Box::new(|s| s.rootfs = RootFs::Overlay { lower: vec![] }),
                "without layers",
            ),
            (
                Box::new(|s| {
                    s.rootfs = RootFs::Overlay {
                        lower: vec!["/a".into(), "b".into()],
                    }
                }),
                "overlay layer b is not absolute",
            ),
            (
                Box::new(|s| {
                    s.rootfs = RootFs::Overlay {
                        lower: vec!["/l".into(); 501],
                    }
                }),
                "overlay root of 501 layers",
            ),
            (Box::new(|s| s.rootfs = RootFs::Dir("rel".into())), "root"),
            (
                Box::new(|s| {
                    let mut io = crate::Io::new("/io-dir");
                    io.outputs = vec!["../etc/passwd".into()];
                    s.io = Some(io);
                }),
                "plain file name",
            ),
            (
                Box::new(|s| s.io = Some(crate::Io::new("relative"))),
                "not absolute",
            ),
            (
                Box::new(|s| {
                    s.readonly_root = false;
                    s.capture = Some(crate::Capture::new("/kept"));
                }),
                "writable overlay root",
            ),
            (
                Box::new(|s| {
                    s.rootfs = RootFs::Overlay {
                        lower: vec!["/l".into()],
                    };
                    s.capture = Some(crate::Capture::new("/kept"));
                }),
                "writable overlay root",
            ),
            (
                Box::new(|s| {
                    s.rootfs = RootFs::Overlay {
                        lower: vec!["/l".into()],
                    };
                    s.readonly_root = false;
                    s.capture = Some(crate::Capture::new("kept"));
                }),
                "capture directory kept is not absolute",
            ),
            (
                Box::new(|s| s.binds = vec![crate::Bind::new("/cache", "/proc/x")]),
                "outside the sandbox's own mounts",
            ),
            (
                Box::new(|s| s.binds = vec![crate::Bind::new("/cache", "/a/../etc")]),
                "plain absolute target",
            ),
            (
                Box::new(|s| s.binds = vec![crate::Bind::new("cache", "/c")]),
                "absolute source",
            ),
        ];
        for (change, expected) in cases {
            let mut run = spec();
            change(&mut run);
            let err = validate(&run).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
        validate(&spec()).unwrap();
        let mut run = spec();
        run.binds = vec![crate::Bind::new("/cache/pip", "/root/.cache/pip")];
        validate(&run).unwrap();
        let bound: Spec = serde_json::from_value(config(
            &run,
            Path::new("/b/rootfs"),
            "/hoist/x",
            Path::new("/b/io"),
            None,
        ))
        .unwrap();
        let mount = bound
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/root/.cache/pip"))
            .unwrap();
        assert_eq!(mount.source().as_deref(), Some(Path::new("/cache/pip")));
        // What the mount options could not carry is fine in a layer path.
        let mut run = spec();
        run.rootfs = RootFs::Overlay {
            lower: vec!["/cache:a,b\\c/layer".into(); 500],
        };
        validate(&run).unwrap();
    }
}
