//! `requirements.txt`: PEP 508 requirements from the package index only.

use std::collections::HashMap;
use std::str::FromStr;

use pep508_rs::{MarkerTree, VerbatimUrl};

use crate::{Policy, Problem, Requirement, lowercase_first};

/// Hash algorithms pip accepts in hash-checking mode, with their hex length.
const HASHES: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// Archive suffixes pip takes as a file name rather than a project name.
const ARCHIVES: [&str; 13] = [
    ".whl",
    ".zip",
    ".tar.gz",
    ".tgz",
    ".tar",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
    ".egg",
];

/// Parses a requirements file and checks it against `policy`.
///
/// The file is read as pip reads it: lines ending in `\` are joined to the
/// next (a comment line never continues), ` #` starts a comment, blank lines
/// are skipped. Each remaining line is one PEP 508 requirement, naming a
/// project on the package index, optionally followed by `--hash=ALGO:HEX`
/// options (sha256, sha384 or sha512).
///
/// Rejected, each with its own message at the offending token:
/// - anything that changes where packages come from: direct URL references
///   (`name @ url`), bare URLs and VCS links (`git+…`), local paths and
///   archives (`./x`, `/x`, `file:`, `x.tar.gz`, `x.whl`), editable installs
///   (`-e`), includes (`-r`, `-c`) and the index options (`-i`/`--index-url`,
///   `--extra-index-url`, `--no-index`, `-f`/`--find-links`,
///   `--trusted-host`);
/// - every other option (`--pre`, `--only-binary`, `--no-binary`,
///   `--prefer-binary`, `--require-hashes`, `--config-settings`,
///   `--global-option`, ...): how packages are resolved and installed is set
///   by the build, not by the requirements file;
/// - `${VAR}` references, which pip would fill from the environment;
/// - invalid PEP 508, weak or malformed hashes;
/// - a second requirement for the same project, unless both carry different
///   environment markers;
/// - `policy.max_requirements` requirements or more, and a file of
///   `policy.max_code_bytes` bytes or more.
///
/// Returns the accepted requirements and every problem found.
///
/// ```
/// use function_check::{Policy, parse_requirements};
///
/// let text = "Requests[socks] >= 2.31 ; python_version >= '3.8'  # HTTP\n\
///             numpy==1.26.4 \\\n    --hash=sha256:8b1a1c3d8d2b36e0e6a4cd5e8c95b4c52a0c07a7d83e4c23c6dc3f2d3e4d5b6a\n\
///             -e ./local\n";
/// let (requirements, problems) = parse_requirements("requirements.txt", text, &Policy::default());
/// assert_eq!(requirements[0].name, "requests");
/// assert_eq!(requirements[0].requirement, "Requests[socks] >= 2.31 ; python_version >= '3.8'");
/// assert_eq!(requirements[1].hashes.len(), 1);
/// assert_eq!(problems[0].to_string(), "requirements.txt:4:1: editable installs (`-e`) are not allowed");
/// ```
pub fn parse_requirements(
    file: &str,
    text: &str,
    policy: &Policy,
) -> (Vec<Requirement>, Vec<Problem>) {
    let mut out = Parser {
        file,
        requirements: Vec::new(),
        problems: Vec::new(),
        seen: HashMap::new(),
        count: 0,
    };
    if text.len() as u64 >= policy.max_code_bytes {
        out.problems.push(Problem::new(
            file,
            (1, 1),
            format!(
                "file is {} bytes; files must be smaller than {} bytes",
                text.len(),
                policy.max_code_bytes
            ),
        ));
        return (out.requirements, out.problems);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for line in logical_lines(text) {
        out.line(&line, policy);
    }
    (out.requirements, out.problems)
}

/// A logical line: physical lines joined at trailing backslashes, with where
/// each piece came from so positions map back to the file.
struct Logical {
    text: String,
    /// (byte offset in `text`, 1-based physical line) of each piece.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    fn first_line(&self) -> usize {
        self.pieces[0].1
    }

    /// The (line, column) of a byte offset in `text`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let i = self.pieces.partition_point(|&(start, _)| start <= offset) - 1;
        let (start, line) = self.pieces[i];
        (line, self.text[start..offset].chars().count() + 1)
    }
}

/// Physical lines split at `\n`, `\r\n` or `\r` (as Python's
/// `splitlines`), then joined as pip joins them.
fn logical_lines(text: &str) -> Vec<Logical> {
    let mut lines = Vec::new();
    let mut current: Option<Logical> = None;
    let physical = split_lines(text);
    for (number, line) in physical.into_iter().enumerate().map(|(i, l)| (i + 1, l)) {
        let is_comment = line.trim_start().starts_with('#');
        let logical = current.get_or_insert_with(|| Logical {
            text: String::new(),
            pieces: Vec::new(),
        });
        logical.pieces.push((logical.text.len(), number));
        match line.strip_suffix('\\') {
            Some(head) if !is_comment => logical.text.push_str(head),
            _ => {
                logical.text.push_str(line);
                lines.extend(current.take());
            }
        }
    }
    lines.extend(current);
    lines
}

fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(i) => {
                lines.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                lines.push(rest);
                rest = "";
            }
        }
    }
    lines
}

/// The byte offset where a comment starts: `#` at the start or after
/// whitespace, the comment taking the whitespace before it too.
fn comment_start(text: &str) -> Option<usize> {
    let mut previous_blank = true;
    for (i, c) in text.char_indices() {
        if c == '#' && previous_blank {
            return Some(text[..i].trim_end().len());
        }
        previous_blank = c.is_whitespace();
    }
    None
}

/// Whitespace-separated tokens with their byte offsets.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

struct Parser<'a> {
    file: &'a str,
    requirements: Vec<Requirement>,
    problems: Vec<Problem>,
    /// Normalised name → (line, marker) of its first requirement.
    seen: HashMap<String, (usize, MarkerTree)>,
    count: usize,
}

/// What an option on a requirements line is, by its name.
enum OptionKind {
    Hash,
    Rejected(String),
}

/// Options that take a value, long and short spellings.
const VALUE_OPTIONS: [&str; 19] = [
    "-e",
    "--editable",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--hash",
    "--config-settings",
    "--global-option",
    "--install-option",
    "--only-binary",
    "--no-binary",
    "--use-feature",
];

fn classify(name: &str) -> OptionKind {
    let message = match name {
        "--hash" => return OptionKind::Hash,
        "-e" | "--editable" => format!("editable installs (`{name}`) are not allowed"),
        "-r" | "--requirement" | "-c" | "--constraint" => {
            format!("includes of other requirement files (`{name}`) are not allowed")
        }
        "-i" | "--index-url" | "--extra-index-url" | "--no-index" | "-f" | "--find-links"
        | "--trusted-host" => {
            format!("option `{name}` is not allowed: it changes where packages come from")
        }
        "--pre" | "--only-binary" | "--no-binary" | "--prefer-binary" | "--require-hashes"
        | "--config-settings" | "--global-option" | "--install-option" | "--use-feature" => {
            format!(
                "option `{name}` is not supported: the build decides how packages are installed"
            )
        }
        _ => format!("unknown option `{name}`"),
    };
    OptionKind::Rejected(message)
}

impl Parser<'_> {
    fn problem(&mut self, at: (usize, usize), message: impl Into<String>) {
        self.problems.push(Problem::new(self.file, at, message));
    }

    fn line(&mut self, logical: &Logical, policy: &Policy) {
        let text = match comment_start(&logical.text) {
            Some(end) => &logical.text[..end],
            None => &logical.text,
        };
        let tokens = tokens(text);
        let Some(&(first, _)) = tokens.first() else {
            return;
        };
        let split = tokens
            .iter()
            .position(|(_, t)| t.starts_with('-'))
            .unwrap_or(tokens.len());
        let (requirement_tokens, option_tokens) = tokens.split_at(split);
        let problems_before = self.problems.len();
        let hashes = self.options(logical, option_tokens, !requirement_tokens.is_empty());
        let Some(&(last, last_token)) = requirement_tokens.last() else {
            return;
        };
        self.count += 1;
        if self.count >= policy.max_requirements && self.count - 1 < policy.max_requirements {
            let message = format!(
                "too many requirements: fewer than {} are allowed",
                policy.max_requirements
            );
            self.problem(logical.position(first), message);
        }
        let written = &text[first..last + last_token.len()];
        if let Some(parsed) = self.requirement(logical, first, written) {
            let name = parsed.name.to_string();
            if let Some((line, marker)) = self.seen.get(&name) {
                // The same project twice is fine only when markers select
                // one of the lines per environment.
                if marker.is_true() || parsed.marker.is_true() || *marker == parsed.marker {
                    let message =
                        format!("duplicate requirement for `{name}` (first on line {line})");
                    self.problem(logical.position(first), message);
                }
            } else {
                self.seen
                    .insert(name.clone(), (logical.first_line(), parsed.marker.clone()));
            }
            if self.problems.len() == problems_before {
                self.requirements.push(Requirement {
                    name,
                    requirement: written.to_owned(),
                    hashes,
                    line: logical.first_line(),
                });
            }
        }
    }

    /// Checks the options of a line and returns its hashes.
    fn options(
        &mut self,
        logical: &Logical,
        tokens: &[(usize, &str)],
        has_requirement: bool,
    ) -> Vec<String> {
        let mut hashes = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let (offset, token) = tokens[i];
            i += 1;
            let at = logical.position(offset);
            if !token.starts_with('-') {
                self.problem(at, format!("unexpected `{token}` after an option"));
                continue;
            }
            // `--name=value`, `--name value`, and short options with the
            // value attached (`-rfile.txt`).
            let (name, attached) = match token.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value)),
                _ if !token.starts_with("--") && token.len() > 2 && token.is_char_boundary(2) => {
                    (&token[..2], Some(&token[2..]))
                }
                _ => (token, None),
            };
            let value = match attached {
                Some(value) => Some(value),
                None if VALUE_OPTIONS.contains(&name) && i < tokens.len() => {
                    i += 1;
                    Some(tokens[i - 1].1)
                }
                None => None,
            };
            match classify(name) {
                OptionKind::Hash if !has_requirement => {
                    self.problem(at, "`--hash` must follow a requirement on the same line");
                }
                OptionKind::Hash => match value {
                    Some(value) => match check_hash(value) {
                        Ok(()) => hashes.push(value.to_owned()),
                        Err(message) => self.problem(at, message),
                    },
                    None => self.problem(at, "`--hash` needs a value: --hash=sha256:<hex>"),
                },
                OptionKind::Rejected(message) => self.problem(at, message),
            }
        }
        hashes
    }

    /// Checks and parses the requirement part of a line.
    fn requirement(
        &mut self,
        logical: &Logical,
        start: usize,
        written: &str,
    ) -> Option<pep508_rs::Requirement<VerbatimUrl>> {
        let at = |offset: usize| logical.position(start + offset);
        if let Some(i) = written.find("${") {
            self.problem(
                at(i),
                "environment variable references (`${...}`) are not supported",
            );
            return None;
        }
        // The first character is part of the head even if it is `~`: a
        // project name cannot start with punctuation, a path can.
        let head_end = written
            .char_indices()
            .skip(1)
            .find(|&(_, c)| {
                c.is_whitespace() || matches!(c, ';' | '[' | '<' | '>' | '=' | '!' | '~' | '(')
            })
            .map_or(written.len(), |(i, _)| i);
        let head = &written[..head_end];
        let lower = head.to_ascii_lowercase();
        let before_markers = written.split(';').next().unwrap_or(written);
        if lower.starts_with("file:") {
            self.problem(
                at(0),
                "local paths are not allowed: name a project on the package index",
            );
            return None;
        }
        if ["git+", "hg+", "svn+", "bzr+"]
            .iter()
            .any(|p| lower.starts_with(p))
            || (lower.contains("://") && !head.contains('@'))
        {
            self.problem(
                at(0),
                "URL requirements are not allowed: name a project on the package index",
            );
            return None;
        }
        if let Some(i) = before_markers.find('@') {
            self.problem(
                at(i),
                "direct references (`name @ url`) are not allowed: name a project on the package index",
            );
            return None;
        }
        let windows_drive = head.len() > 2
            && head.as_bytes()[0].is_ascii_alphabetic()
            && head.as_bytes()[1] == b':'
            && matches!(head.as_bytes()[2], b'\\' | b'/');
        if head.starts_with(['.', '/', '~', '\\'])
            || head.contains(['/', '\\'])
            || windows_drive
            || ARCHIVES.iter().any(|suffix| lower.ends_with(suffix))
        {
            self.problem(
                at(0),
                "local paths are not allowed: name a project on the package index",
            );
            return None;
        }
        if let Some(i) = too_deep(written) {
            let message = format!("parentheses nested too deeply: more than {MAX_PARENTHESES}");
            self.problem(at(i), message);
            return None;
        }
        // pep508_rs 0.9 panics on a name or extra that ends in `.`, `-` or
        // `_` when more text follows (`pkg- >=1`, `pkg[a_]`); say it first.
        if let Some((offset, what, last)) = bad_name_end(written) {
            let message = format!("{what} must end with a letter or digit, not `{last}`");
            self.problem(at(offset), message);
            return None;
        }
        // A panic in the parser on some other input is a problem of the
        // line, not a crash of the caller.
        let parsed =
            std::panic::catch_unwind(|| pep508_rs::Requirement::<VerbatimUrl>::from_str(written));
        let Ok(parsed) = parsed else {
            self.problem(
                at(0),
                "invalid requirement: the PEP 508 parser failed on this line",
            );
            return None;
        };
        match parsed {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                let offset = written
                    .char_indices()
                    .nth(e.start)
                    .map_or(written.len(), |(i, _)| i);
                let message = lowercase_first(&e.message.to_string());
                self.problem(at(offset), format!("invalid requirement: {message}"));
                None
            }
        }
    }
}

/// The offset, kind and character of a project or extra name in a
/// requirement that ends in `.`, `-` or `_`.
fn bad_name_end(written: &str) -> Option<(usize, &'static str, char)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let check = |start: usize, text: &str, what| {
        let end = text.find(|c| !is_name(c)).unwrap_or(text.len());
        let last = text[..end].chars().next_back()?;
        (!last.is_ascii_alphanumeric()).then_some((start + end - 1, what, last))
    };
    if let Some(bad) = check(0, written, "project name") {
        return Some(bad);
    }
    let name_end = written.find(|c| !is_name(c)).unwrap_or(written.len());
    let rest = &written[name_end..];
    let extras = rest.trim_start().strip_prefix('[')?;
    let mut offset = written.len() - extras.len();
    let extras = &extras[..extras.find(']').unwrap_or(extras.len())];
    for extra in extras.split(',') {
        let trimmed = extra.trim_start();
        if let Some(bad) = check(offset + extra.len() - trimmed.len(), trimmed, "extra name") {
            return Some(bad);
        }
        offset += extra.len() + 1;
    }
    None
}

/// The PEP 508 parser recurses once per parenthesis in a marker; real
/// markers nest a few levels.
const MAX_PARENTHESES: usize = 32;

/// Where parentheses first nest deeper than [`MAX_PARENTHESES`].
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth > MAX_PARENTHESES {
                    return Some(i);
                }
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn check_hash(value: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = value.split_once(':') else {
        return Err(format!("invalid hash `{value}`: expected sha256:<hex>"));
    };
    let Some(&(_, length)) = HASHES.iter().find(|(name, _)| *name == algorithm) else {
        return Err(format!(
            "hash algorithm `{algorithm}` is not allowed: use sha256, sha384 or sha512"
        ));
    };
    if hex.len() != length || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid hash `{value}`: {algorithm} takes {length} hexadecimal digits"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
