//! A function directory: which files it has, their sizes, and every check.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::position::LineIndex;
use crate::{
    Checked, Error, Policy, Problem, REQUIREMENTS, Result, USER_FUNCTION, check_python,
    check_user_function, parse_requirements,
};

/// More entries than this in a function directory is a problem, and the
/// walk stops there.
const MAX_ENTRIES: usize = 10_000;

/// The `file` of problems about the function as a whole.
const WHOLE: &str = ".";

/// Validates the function in `dir` without fetching or running anything.
///
/// Lists the files a build puts in the code layer, parses every `.py` file
/// ([`check_python`]; [`check_user_function`] for `user_function.py`) and
/// `requirements.txt` ([`parse_requirements`]), and collects every problem:
/// also symbolic links (never followed), special files, names that are not
/// UTF-8, sources that are not UTF-8, a missing `user_function.py`, files
/// or a total of `policy.max_code_bytes` or more (then nothing is parsed), and
/// more than 10,000 entries (then nothing else is checked).
///
/// Fails only when something cannot be read: `dir` missing or not a
/// directory, or an I/O error on an entry.
///
/// ```
/// use function_check::{Policy, check_dir};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(
///     dir.path().join("user_function.py"),
///     "import json\n\ndef handler(inputs):\n    return {'echo': json.dumps(inputs)}\n",
/// )?;
/// std::fs::write(dir.path().join("requirements.txt"), "requests==2.32.3\n")?;
///
/// let checked = check_dir(dir.path(), &Policy::default())?;
/// assert!(checked.is_ok(), "{:?}", checked.problems);
/// assert_eq!(checked.files, [std::path::PathBuf::from("user_function.py")]);
/// assert_eq!(checked.requirements[0].name, "requests");
///
/// std::fs::write(dir.path().join("user_function.py"), "import os\n")?;
/// let checked = check_dir(dir.path(), &Policy::default())?;
/// let shown: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
/// assert_eq!(shown, [
///     "user_function.py:1:1: no top-level `def handler(inputs):` in user_function.py",
///     "user_function.py:1:8: import of denied module `os`",
/// ]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_dir(dir: &Path, policy: &Policy) -> Result<Checked> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let meta = fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let mut requirements_file = None;
    // (relative path, size) of every file that is read.
    let mut sizes: Vec<(PathBuf, u64)> = Vec::new();
    let mut entries = 0usize;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let read = fs::read_dir(dir.join(&relative_dir)).map_err(io(&dir.join(&relative_dir)))?;
        let mut children = Vec::new();
        for entry in read {
            let entry = entry.map_err(io(&dir.join(&relative_dir)))?;
            children.push(entry.file_name());
        }
        children.sort();
        for name in children {
            entries += 1;
            if entries > MAX_ENTRIES {
                problems.push(Problem::new(
                    WHOLE,
                    (1, 1),
                    format!("too many files and directories: more than {MAX_ENTRIES}"),
                ));
                // Nothing else is checked on a partial listing.
                files.sort();
                return Ok(Checked {
                    files,
                    requirements: Vec::new(),
                    problems,
                });
            }
            let relative = relative_dir.join(&name);
            let shown = relative.to_string_lossy().into_owned();
            let Some(name) = name.to_str() else {
                problems.push(Problem::new(&shown, (1, 1), "file name is not valid UTF-8"));
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = dir.join(&relative);
            let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                problems.push(Problem::new(
                    &shown,
                    (1, 1),
                    "symbolic links are not allowed",
                ));
            } else if kind.is_dir() {
                if name != "__pycache__" {
                    pending.push(relative);
                }
            } else if !kind.is_file() {
                problems.push(Problem::new(
                    &shown,
                    (1, 1),
                    "not a regular file (a device, socket or pipe)",
                ));
            } else {
                sizes.push((relative.clone(), meta.len()));
                if relative.as_os_str() == REQUIREMENTS {
                    requirements_file = Some(relative);
                } else {
                    files.push(relative);
                }
            }
        }
    }
    files.sort();

    if !files.iter().any(|f| f.as_os_str() == USER_FUNCTION) {
        problems.push(Problem::new(
            USER_FUNCTION,
            (1, 1),
            "no such file: a function needs user_function.py defining `handler(inputs)`",
        ));
    }

    let mut too_large = Vec::new();
    for (relative, size) in &sizes {
        if *size >= policy.max_code_bytes {
            too_large.push(relative.clone());
            problems.push(Problem::new(
                &relative.to_string_lossy(),
                (1, 1),
                format!(
                    "file is {size} bytes; files must be smaller than {} bytes",
                    policy.max_code_bytes
                ),
            ));
        }
    }
    let total: u64 = sizes.iter().map(|(_, size)| size).sum();
    let mut requirements = Vec::new();
    if total >= policy.max_code_bytes {
        problems.push(Problem::new(
            WHOLE,
            (1, 1),
            format!(
                "the function's files total {total} bytes; they must be smaller than {} bytes",
                policy.max_code_bytes
            ),
        ));
    } else {
        let sources = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "py"));
        for relative in sources.chain(&requirements_file) {
            if too_large.contains(relative) {
                continue;
            }
            let shown = relative.to_string_lossy();
            let path = dir.join(relative);
            let text = match read_text(&path, policy.max_code_bytes)? {
                Ok(text) => text,
                Err(problem_at) => {
                    problems.push(Problem::new(&shown, problem_at, "file is not valid UTF-8"));
                    continue;
                }
            };
            if Some(relative) == requirements_file.as_ref() {
                let (found, more) = parse_requirements(&shown, &text, policy);
                requirements = found;
                problems.extend(more);
            } else if relative.as_os_str() == USER_FUNCTION {
                problems.extend(check_user_function(&text, policy));
            } else {
                problems.extend(check_python(&shown, &text, policy));
            }
        }
    }
    problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Ok(Checked {
        files,
        requirements,
        problems,
    })
}

/// Reads a file of at most `limit` bytes as UTF-8; on invalid UTF-8, the
/// position of the first bad byte.
fn read_text(path: &Path, limit: u64) -> Result<Result<String, (usize, usize)>> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    // The size was checked from the metadata; the limit holds even if the
    // file grew since.
    fs::File::open(path)
        .map_err(io)?
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let prefix = std::str::from_utf8(&bytes[..valid]).expect("valid up to here");
        LineIndex::new(prefix).position(valid)
    }))
}

#[cfg(test)]
mod tests;
