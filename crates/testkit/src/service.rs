//! Plumbing shared by the server fixtures (PostgreSQL, Redis, SeaweedFS):
//! a supervisor that stops its server when the test process goes away,
//! and the unprivileged user servers run as when tests run as root.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::{Error, Result, io_err};

/// A server run under `sh`, which starts it, prints `ready`, and stops
/// it and removes its directory once its standard input closes: when the
/// value is dropped, and also when the test process dies without running
/// destructors (a panic in a static, a kill), so no server outlives its
/// test run.
#[derive(Debug)]
pub(crate) struct Supervised {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Supervised {
    /// Runs `script` with `args` ($1, $2, …) as `user`, and waits until it
    /// prints `ready`. Anything else it prints first, or its exit, is the
    /// error, with `log`'s tail appended.
    pub(crate) fn start(
        what: &str,
        script: &str,
        args: &[&str],
        user: Option<(u32, u32)>,
        log: &Path,
    ) -> Result<Self> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C meant for the test run must
            // not kill the server before the supervisor can clean up.
            .process_group(0);
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(io_err(format!("spawn sh for {what}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() == "ready" {
            return Ok(Self { child, stdin });
        }
        drop(stdin);
        let status = child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        Err(Error::ServiceStart {
            service: what.into(),
            reason: format!("{} ({status})", line.trim()),
            log_tail: tail(log, 30),
        })
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Closing stdin tells the script to stop the server and clean up.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The uid and gid servers that refuse root run as: `postgres` when that
/// user exists (Debian's PostgreSQL package makes it), else `nobody`;
/// `None` when the tests do not run as root.
pub(crate) fn unprivileged_user() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    };
    find("postgres").or_else(|| find("nobody"))
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    // The owner of a file we just made is our effective uid.
    use std::os::unix::fs::MetadataExt as _;
    tempfile::tempfile()
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.uid() == 0)
}

/// Hands `dir` (not its contents) to `user`.
pub(crate) fn chown(dir: &Path, user: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(io_err(format!("chown {}", dir.display())))?;
    }
    Ok(())
}

/// The last `lines` lines of the file at `path`.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
