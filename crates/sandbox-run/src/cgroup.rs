//! Finding, emptying and removing a container's cgroups in every hierarchy.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Result};

/// How long to keep killing the processes of a cgroup before giving up.
const KILL_PATIENCE: Duration = Duration::from_secs(10);

/// Mount points of every cgroup (v1) and cgroup2 hierarchy.
pub(crate) fn hierarchies() -> Result<Vec<PathBuf>> {
    let path = "/proc/self/mountinfo";
    let info = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let mut found = Vec::new();
    for line in info.lines() {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if matches!(fields.get(dash + 1), Some(&"cgroup") | Some(&"cgroup2"))
            && let Some(mount_point) = fields.get(4)
        {
            found.push(PathBuf::from(unescape(mount_point)));
        }
    }
    Ok(found)
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(code) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup directories of container `id` under `parent` that exist.
pub(crate) fn container_dirs(parent: &str, id: &str) -> Result<Vec<PathBuf>> {
    Ok(hierarchies()?
        .into_iter()
        .map(|h| h.join(parent).join(id))
        .filter(|d| d.is_dir())
        .collect())
}

/// Container cgroup directories found under `parent` in any hierarchy.
pub(crate) fn children(parent: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for hierarchy in hierarchies()? {
        let dir = hierarchy.join(parent);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The processes in the cgroup directories `dirs`, each once.
pub(crate) fn processes(dirs: &[PathBuf]) -> Vec<i32> {
    let mut all: Vec<i32> = dirs.iter().flat_map(|d| pids(d)).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Memory in use by the cgroup directories `dirs` (page cache and tmpfs
/// pages included), when a memory controller reports it.
pub(crate) fn memory_bytes(dirs: &[PathBuf]) -> Option<u64> {
    dirs.iter()
        .flat_map(|d| [d.join("memory.current"), d.join("memory.usage_in_bytes")])
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .max()
}

/// Writes a control file, ignoring failures: every caller re-checks the
/// cgroup's processes afterwards.
fn write_quietly(path: PathBuf, value: &str) {
    let _ = std::fs::write(path, value);
}

/// Kills every process in the cgroup directories `dirs` (all hierarchies of
/// one container) until none is left; returns how many were killed.
///
/// The v1 freezer stops a fork bomb from outrunning the kills: processes are
/// frozen, signalled, then thawed to die. cgroup v2 has `cgroup.kill`.
pub(crate) fn kill_all(dirs: &[PathBuf]) -> Result<usize> {
    let started = Instant::now();
    let mut killed = 0;
    loop {
        for dir in dirs {
            if dir.join("cgroup.kill").exists() {
                write_quietly(dir.join("cgroup.kill"), "1");
            }
            if dir.join("freezer.state").exists() {
                write_quietly(dir.join("freezer.state"), "FROZEN");
            }
        }
        let mut remaining = 0;
        for dir in dirs {
            for pid in pids(dir) {
                remaining += 1;
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        }
        for dir in dirs {
            if dir.join("freezer.state").exists() {
                write_quietly(dir.join("freezer.state"), "THAWED");
            }
        }
        if remaining == 0 {
            return Ok(killed);
        }
        if started.elapsed() > KILL_PATIENCE {
            let path = dirs.first().cloned().unwrap_or_default();
            return Err(Error::CgroupNotEmpty { path, remaining });
        }
        sleep(Duration::from_millis(2));
    }
}

/// Kills what is left in `dirs` and removes them; returns how many processes
/// were killed.
pub(crate) fn remove(dirs: &[PathBuf]) -> Result<usize> {
    let killed = kill_all(dirs)?;
    let started = Instant::now();
    for dir in dirs {
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                // Dying processes leave the cgroup a moment after SIGKILL.
                Err(e)
                    if e.raw_os_error() == Some(nix::libc::EBUSY)
                        && started.elapsed() < KILL_PATIENCE =>
                {
                    kill_all(std::slice::from_ref(dir))?;
                    sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(Error::io("remove cgroup", dir, e)),
            }
        }
    }
    Ok(killed)
}

/// How many times the OOM killer acted in the container's memory cgroup.
pub(crate) fn oom_kills(dirs: &[PathBuf]) -> u64 {
    dirs.iter()
        .flat_map(|d| [d.join("memory.oom_control"), d.join("memory.events")])
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("oom_kill "))
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/sys/fs/cgroup/a\040b"), "/sys/fs/cgroup/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }
}
