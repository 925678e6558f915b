//! Validation of Python function sources and requirements before a build
//!
//! A function is a directory holding `user_function.py`, which defines
//! `handler(inputs: dict) -> dict`, an optional `requirements.txt` and any
//! helper modules. [`check_dir`] validates such a directory before anything
//! is fetched or built and returns every problem at once, each with its
//! file, line and column (1-based, columns counted in characters):
//!
//! - every `.py` file is parsed with a real Python parser (`rustpython-parser`,
//!   which also accepts Python 3.11 syntax such as `match`, `except*`, `:=`,
//!   positional-only parameters and parenthesised context managers);
//! - imports of denied modules (default `os`, `subprocess`, `socket`, with
//!   their submodules) and calls of denied functions (default `eval`,
//!   `exec`, also as `builtins.eval`) are reported. `__import__("os")`,
//!   `importlib.import_module("os")` and `import_module("os")` are reported
//!   when the module name is a string literal; a name computed at run time
//!   is not;
//! - `user_function.py` must define a top-level, non-async `def handler`
//!   that takes the inputs as its first positional parameter;
//! - every file, and all files together, must be smaller than
//!   [`Policy::max_code_bytes`]; files that are too large are not parsed;
//! - `requirements.txt` holds fewer than [`Policy::max_requirements`] PEP 508
//!   requirements from the package index, see [`parse_requirements`].
//!
//! The deny lists are a courtesy that fails early with a clear message; they
//! are not isolation. Code can always reach a denied module in ways no static
//! check sees (`getattr`, compiled extension modules, data files), so running
//! functions in a sandbox is what keeps a worker safe.
//!
//! Hostile sources give problems, not crashes: NUL bytes, invalid UTF-8,
//! expressions or blocks nested too deeply for a parser (CPython's own
//! limits of 200 nested brackets and 100 indentation levels, and a bound on
//! operator nesting in one statement), and parser failures are reported as
//! problems of the file.
//!
//! ```
//! use function_check::{Policy, check_python};
//!
//! let problems = check_python("helper.py", "import json, subprocess\n", &Policy::default());
//! assert_eq!(problems[0].to_string(), "helper.py:1:14: import of denied module `subprocess`");
//! ```

mod dir;
mod position;
mod python;
mod requirements;

use std::fmt;
use std::path::PathBuf;

pub use dir::check_dir;
pub use python::{check_python, check_user_function};
pub use requirements::parse_requirements;

/// The name of the file that defines the handler.
pub const USER_FUNCTION: &str = "user_function.py";
/// The name of the requirements file at the top of a function directory.
pub const REQUIREMENTS: &str = "requirements.txt";

/// What a function may contain.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Modules that may not be imported; their submodules are denied too.
    pub denied_modules: Vec<String>,
    /// Functions that may not be called by their bare name or as an
    /// attribute of `builtins`.
    pub denied_calls: Vec<String>,
    /// A file, or all files of a function together, of this many bytes or
    /// more is rejected.
    pub max_code_bytes: u64,
    /// A requirements file with this many requirements or more is rejected.
    pub max_requirements: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            denied_modules: ["os", "subprocess", "socket"].map(String::from).to_vec(),
            denied_calls: ["eval", "exec"].map(String::from).to_vec(),
            max_code_bytes: 1_000_000,
            max_requirements: 50,
        }
    }
}

/// One thing wrong with a function, at a place in one of its files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file, relative to the function directory, with `/` separators;
    /// `.` for problems of the function as a whole.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl Problem {
    fn new(file: &str, (line, column): (usize, usize), message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// One accepted line of a requirements file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Requirement {
    /// The PEP 503-normalised project name (lowercase, runs of `-_.` → `-`).
    pub name: String,
    /// The PEP 508 requirement as written, without options, hashes or
    /// comments, continuation lines joined.
    pub requirement: String,
    /// The values of the line's `--hash` options, as written
    /// (`sha256:<hex>`).
    pub hashes: Vec<String>,
    /// The 1-based line the requirement starts on.
    pub line: usize,
}

/// The outcome of [`check_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The files a build puts in the code layer, relative to the function
    /// directory and sorted: every regular file except the top-level
    /// `requirements.txt`, hidden entries (names starting with `.`) and
    /// `__pycache__` directories.
    pub files: Vec<PathBuf>,
    /// The accepted requirements, in file order.
    pub requirements: Vec<Requirement>,
    /// Every problem found, sorted by file, line and column.
    pub problems: Vec<Problem>,
}

impl Checked {
    /// Whether the function passed every check.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why a function directory could not be checked at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory or an entry in it could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path given as the function directory is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
}

/// The result of [`check_dir`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `module` (dotted) is `denied` or one of its submodules.
fn module_is_denied<'p>(module: &str, policy: &'p Policy) -> Option<&'p str> {
    policy
        .denied_modules
        .iter()
        .find(|d| {
            module
                .strip_prefix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
        .map(String::as_str)
}

/// `Unexpected end` → `unexpected end`, leaving `URL ...` alone.
fn lowercase_first(message: &str) -> String {
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(message[first.len_utf8()..].chars())
            .collect(),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Policy, Problem, Requirement, lowercase_first, module_is_denied};

    #[test]
    fn problems_display_and_serialize() {
        let p = Problem::new("lib/a.py", (3, 7), "import of denied module `os`");
        assert_eq!(p.to_string(), "lib/a.py:3:7: import of denied module `os`");
        assert_eq!(
            serde_json::to_value(&p).expect("serializes"),
            serde_json::json!({
                "file": "lib/a.py", "line": 3, "column": 7,
                "message": "import of denied module `os`",
            })
        );
        let r = Requirement {
            name: "requests".into(),
            requirement: "Requests>=2".into(),
            hashes: vec!["sha256:00".into()],
            line: 2,
        };
        assert_eq!(
            serde_json::to_value(&r).expect("serializes"),
            serde_json::json!({
                "name": "requests", "requirement": "Requests>=2",
                "hashes": ["sha256:00"], "line": 2,
            })
        );
    }

    #[test]
    fn denied_modules_and_submodules() {
        let policy = Policy::default();
        let cases = [
            ("os", Some("os")),
            ("os.path", Some("os")),
            ("subprocess", Some("subprocess")),
            ("socket.x.y", Some("socket")),
            ("osx", None),
            ("json", None),
            ("", None),
            ("my.os", None),
        ];
        for (module, want) in cases {
            assert_eq!(module_is_denied(module, &policy), want, "{module}");
        }
    }

    #[test]
    fn lowercase_first_keeps_acronyms() {
        assert_eq!(lowercase_first("Unexpected end"), "unexpected end");
        assert_eq!(lowercase_first("URL is bad"), "URL is bad");
        assert_eq!(lowercase_first("already"), "already");
        assert_eq!(lowercase_first(""), "");
    }
}
