//! Byte-compiling an image's Python modules at build time, by the image's
//! own interpreter in the sandbox: the driver script, the run it needs and
//! how its result is read. Function builds (`oci-build`) and Debian base
//! images (`debian-base`) both compile this way.
//!
//! The driver writes hash-based `.pyc` files (PEP 552, `unchecked-hash`)
//! with `PYTHONHASHSEED=0`, so the same sources and interpreter give the
//! same bytes however the work is split between its workers. It runs as
//! [`USER`], with the overlay's upper layer captured
//! ([`sandbox_run::Capture`]): the caller takes the `.pyc` files it wants
//! from the capture and ignores anything else.
//!
//! ```
//! use python_bytecode::{USER, run_spec};
//! let spec = run_spec(
//!     "/usr/bin/python3.11",
//!     vec!["/layers/base".into()],
//!     &["/usr/lib/python3.11".to_owned()],
//!     sandbox_run::Limits::default(),
//!     std::path::Path::new("/tmp/capture"),
//! );
//! assert_eq!((spec.uid, spec.gid), (USER, USER));
//! assert!(spec.env.contains(&"PYTHONHASHSEED=0".to_owned()));
//! ```

use std::os::unix::fs::lchown;
use std::path::{Path, PathBuf};

use sandbox_run::{Capture, Limits, Outcome, Output, RootFs, RunResult, RunSpec};

/// The compile driver, run with `python -S -B -c DRIVER JOBS DIR...`.
pub const DRIVER: &str = include_str!("compile.py");
/// The user the compile runs as, as functions do.
pub const USER: u32 = 1000;
/// Standard output and error kept of a compile run.
pub const LOG_BYTES: usize = 64 << 10;

/// The run that compiles every module under `dirs` (paths in the image)
/// with `interpreter` (a path in the image), over `lower` (overlay lower
/// directories, top-most first), its writes captured into `capture`.
/// Callers may add to its environment (`SOURCE_DATE_EPOCH`).
pub fn run_spec(
    interpreter: &str,
    lower: Vec<PathBuf>,
    dirs: &[String],
    limits: Limits,
    capture: &Path,
) -> RunSpec {
    let mut args = vec![
        interpreter.to_owned(),
        "-S".into(),
        "-B".into(),
        "-c".into(),
        DRIVER.into(),
        jobs(&limits).to_string(),
    ];
    args.extend(dirs.iter().cloned());
    let mut spec = RunSpec::new(RootFs::Overlay { lower }, args);
    spec.env
        .extend(["PYTHONHASHSEED=0".to_owned(), "HOME=/tmp".to_owned()]);
    spec.uid = USER;
    spec.gid = USER;
    spec.readonly_root = false;
    spec.limits = limits;
    spec.output = Output::Capture {
        max_bytes: LOG_BYTES,
    };
    spec.capture = Some(Capture::new(capture));
    spec
}

/// Workers for the CPUs the run may use.
fn jobs(limits: &Limits) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    (limits.cpus.ceil() as usize).clamp(1, cpus.max(1))
}

/// Why a compile run failed, from its result: `None` when it exited 0
/// and its writes were captured.
pub fn failure(result: &RunResult, limits: &Limits) -> Option<String> {
    match &result.outcome {
        Outcome::Exited(0) => {}
        Outcome::TimedOut => return Some(format!("timed out after {:?}", limits.timeout)),
        other => {
            let text = String::from_utf8_lossy(&result.stderr);
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Some(format!("{other:?}:\n{}", tail.join("\n")));
        }
    }
    match &result.captured {
        Some(Ok(_)) => None,
        Some(Err(refusal)) => Some(format!("what it wrote is refused: {refusal}")),
        None => Some("nothing was captured".into()),
    }
}

/// Makes every directory under `root` (the caller's own tree, links not
/// followed) owned by `uid`, so that the compile may add `__pycache__`;
/// only directories, so that files stay read-only to it. An error names
/// the path.
pub fn hand_dirs_to(root: &Path, uid: u32) -> Result<(), (PathBuf, std::io::Error)> {
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        let at = |e| (dir.clone(), e);
        lchown(&dir, Some(uid), Some(uid)).map_err(at)?;
        for entry in std::fs::read_dir(&dir).map_err(at)? {
            let entry = entry.map_err(at)?;
            if entry.file_type().map_err(at)?.is_dir() {
                todo.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_handed_over_and_files_kept() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg/sub")).unwrap();
        std::fs::write(dir.path().join("pkg/mod.py"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("pkg/link")).unwrap();
        hand_dirs_to(dir.path(), 4321).unwrap();
        let uid = |p: &str| std::fs::symlink_metadata(dir.path().join(p)).unwrap().uid();
        assert_eq!((uid(""), uid("pkg"), uid("pkg/sub")), (4321, 4321, 4321));
        assert_eq!(uid("pkg/mod.py"), 0);
        assert_eq!(uid("pkg/link"), 0, "a link is not followed");
        assert_ne!(std::fs::metadata("/etc").unwrap().uid(), 4321);
        let err = hand_dirs_to(&dir.path().join("missing"), 1).unwrap_err();
        assert!(err.0.ends_with("missing"));
    }

    #[test]
    fn failures_name_the_outcome_and_the_end_of_stderr() {
        let mut result = RunResult {
            outcome: Outcome::Exited(1),
            stdout: Vec::new(),
            stderr: (0..30)
                .map(|i| format!("line {i}\n"))
                .collect::<String>()
                .into_bytes(),
            stdout_truncated: false,
            stderr_truncated: false,
            outputs: Vec::new(),
            captured: None,
            duration: std::time::Duration::ZERO,
        };
        let limits = Limits::default();
        let why = failure(&result, &limits).unwrap();
        assert!(
            why.starts_with("Exited(1):\nline 10\n") && why.ends_with("line 29"),
            "{why}"
        );
        result.outcome = Outcome::Exited(0);
        assert_eq!(failure(&result, &limits).unwrap(), "nothing was captured");
        result.outcome = Outcome::TimedOut;
        assert!(
            failure(&result, &limits)
                .unwrap()
                .starts_with("timed out after")
        );
    }
}
