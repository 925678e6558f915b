//! `.dockerignore` semantics, ported from moby/patternmatcher
//! (`ignorefile.ReadAll`, `New`, `MatchesOrParentMatches`) and the
//! directory-skipping rule of `BuildKit`'s context walker
//! (tonistiigi/fsutil `filterFS.Walk`).
//!
//! patternmatcher validates a pattern with Go's `filepath.Match` and then
//! matches it through a regular expression it builds from the pattern
//! (`*` → `[^/]*`, `**` → `(.*/)?`, `?` → `[^/]`, `.+()$` escaped, and
//! `[...]`, `\x`, `^`, `|`, `{`, `}` passed through as they are). That
//! expression, not `filepath.Match`, decides what matches, so this module
//! builds the same expression as a small automaton, reading classes,
//! escapes, `^` anchors, `|` alternatives and `{n,m}` repeats with Go's
//! regexp rules, whenever patternmatcher would use the expression (a
//! pattern without `*`, `?`, `[`, `]` or `\` is compared as a string).
//! The few regexp features that such a pattern could reach but that this
//! module does not implement are reported as errors rather than matched
//! differently (see [`Ignore::parse`]).

/// The parsed `.dockerignore`: patterns in file order.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    /// Whether any pattern starts with `!`.
    exclusions: bool,
}

/// A line of `.dockerignore` that Docker would reject (or, for the
/// expression errors, fail on when matching).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: invalid pattern {pattern:?}: {reason}")]
pub struct IgnoreError {
    /// 1-based line number.
    pub line: usize,
    /// The line, trimmed.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Ignore {
    /// Parses `.dockerignore` text: one pattern per line, `#` comments
    /// (only at line start), blank lines skipped, surrounding whitespace
    /// trimmed, patterns cleaned like Go's `filepath.Clean`, a leading `/`
    /// removed, `!` negates (later patterns win), `**` matches any number
    /// of directories, `*`, `?`, `[...]` character classes, `\` escapes.
    /// A byte order mark at the start is ignored.
    ///
    /// # Errors
    /// A line that is only `!`, or that `filepath.Match` rejects
    /// (unterminated `[`, `[]`, `[a-]`, a trailing `\`), or whose regular
    /// expression Go rejects (a reversed range `[z-a]`, an unknown
    /// `[:name:]`, an unknown escape such as `\e`, a repeat such as `*{2}`).
    /// Docker reports the latter only once a path is matched against the
    /// pattern; here it is reported up front. Also rejected, though Docker accepts them: `*`
    /// or `?` inside `[...]` (Docker's translation mangles them into
    /// nested expressions) and the escapes `\p`, `\P` and `\Q` (Unicode
    /// classes and quoting, not implemented).
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let raw = if index == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            // A comment only when `#` is the very first character.
            if raw.starts_with('#') {
                continue;
            }
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let error = |reason: String| IgnoreError {
                line: index + 1,
                pattern: trimmed.to_owned(),
                reason,
            };
            let pattern = read_pattern(trimmed);
            // patternmatcher.New cleans again, and only then looks at `!`:
            // `/!a` becomes `!a` above and so negates `a`, as in Docker.
            let pattern = clean(pattern.trim());
            let (exclusion, body) = match pattern.strip_prefix('!') {
                Some("") => return Err(error("illegal exclusion pattern: \"!\"".to_owned())),
                Some(body) => (true, body),
                None => (false, pattern.as_str()),
            };
            validate_glob(body).map_err(error)?;
            let matcher = compile(body).map_err(error)?;
            patterns.push(Pattern {
                text: body.to_owned(),
                exclusion,
                matcher,
            });
        }
        let exclusions = patterns.iter().any(|p| p.exclusion);
        Ok(Self {
            patterns,
            exclusions,
        })
    }

    /// Whether the context-relative path (`/`-separated, no leading `/`,
    /// e.g. "src/app.py") is excluded. Matching follows moby/patternmatcher's
    /// `MatchesOrParentMatches`: a path is excluded when it or one of its
    /// parent directories matches the last matching pattern that decides
    /// it. The path is cleaned first (a leading `/` is ignored); the
    /// context root itself is never excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path.trim_start_matches('/'));
        if path == "." {
            return false;
        }
        let chars: Vec<char> = path.chars().collect();
        // Where the parent directories end, in bytes and in characters.
        let slashes: Vec<(usize, usize)> = path
            .char_indices()
            .enumerate()
            .filter(|(_, (_, c))| *c == '/')
            .map(|(char, (byte, _))| (byte, char))
            .collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change a path already excluded, nor an
            // exclusion one not excluded yet.
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(&path, &chars)
                || slashes
                    .iter()
                    .any(|&(byte, char)| pattern.matches(&path[..byte], &chars[..char]));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether a directory must still be walked even though it is excluded,
    /// because some negation pattern (`!dir/keep.txt`) could re-include
    /// something below it. This is `BuildKit`'s rule: with no `!` pattern,
    /// never; with a `!` pattern that has a wildcard (other than a trailing
    /// `/*` or `/**`), always; otherwise when such a pattern lies inside
    /// `dir` (or is `dir`). The answer does not depend on whether `dir` is
    /// excluded.
    pub fn may_include_below(&self, dir: &str) -> bool {
        const PATTERN_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];
        let negations = || self.patterns.iter().filter(|p| p.exclusion);
        if negations().any(|p| without_trailing_glob(&p.text).contains(PATTERN_CHARS)) {
            return true;
        }
        if !self.exclusions {
            return false;
        }
        let dir = clean(dir.trim_start_matches('/'));
        // Everything is below the context root.
        if dir == "." {
            return true;
        }
        let dir_slash = format!("{dir}/");
        negations().any(|p| format!("{}/", without_trailing_glob(&p.text)).starts_with(&dir_slash))
    }
}

/// `ignorefile.ReadAll` for one trimmed, non-comment line: the part after
/// a `!` is trimmed and cleaned and loses one leading `/`.
fn read_pattern(trimmed: &str) -> String {
    let (invert, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut pattern = String::new();
    if !body.is_empty() {
        pattern = clean(body);
        if pattern.len() > 1
            && let Some(rest) = pattern.strip_prefix('/')
        {
            pattern = rest.to_owned();
        }
    }
    if invert {
        pattern.insert(0, '!');
    }
    pattern
}

/// fsutil's `patternWithoutTrailingGlob`.
fn without_trailing_glob(pattern: &str) -> &str {
    let pattern = pattern.strip_suffix("/**").unwrap_or(pattern);
    pattern.strip_suffix("/*").unwrap_or(pattern)
}

/// Go's `path.Clean`: the shortest equivalent path, lexically.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// One pattern after `!` is removed.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, as patternmatcher's `Pattern.String()`.
    text: String,
    exclusion: bool,
    matcher: Matcher,
}

/// patternmatcher's match types: plain string tests where the pattern
/// allows, else the expression.
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard: the path equals the pattern.
    Exact,
    /// `dir/**`, `abc**`: the path starts with what precedes `**`.
    Prefix(String),
    /// `**/name`, `**name`: the path ends with what follows `**`.
    Suffix(String),
    /// The expression: alternatives (split at `|`), any of which may
    /// match anywhere in the path (only the `^` and `$` patternmatcher adds
    /// at the ends anchor it).
    Regex(Vec<Vec<Node>>),
}

impl Pattern {
    /// Whether the pattern matches `path`, whose characters are `chars`.
    fn matches(&self, path: &str, chars: &[char]) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Matcher::Regex(alternatives) => alternatives
                .iter()
                .any(|nodes| alternative_matches(nodes, chars)),
        }
    }
}

/// What one character of the path may be.
#[derive(Debug, Clone)]
enum Atom {
    Lit(char),
    Class(Class),
    /// `[^/]`, from `*` and `?`.
    NotSlash,
    /// `.`, from `**`: Go's `.` excludes the newline.
    NotNewline,
}

impl Atom {
    fn matches(&self, ch: char) -> bool {
        match self {
            Self::Lit(lit) => *lit == ch,
            Self::Class(class) => class.matches(ch),
            Self::NotSlash => ch != '/',
            Self::NotNewline => ch != '\n',
        }
    }
}

/// Zero-width conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assertion {
    /// `^` (the leading one, and any in the pattern), `\A`.
    BeginText,
    /// The trailing `$`, `\z`.
    EndText,
    /// `\b`: between an ASCII word character and something else.
    WordBoundary,
    /// `\B`.
    NotWordBoundary,
}

/// One element of the expression patternmatcher builds.
#[derive(Debug, Clone)]
enum Node {
    One(Atom),
    /// `*`, `**` at the end, `{n,}`.
    Star(Atom),
    /// What `{n,m}` adds beyond `n`.
    Optional(Atom),
    /// `**` elsewhere: `(.*/)?`.
    OptDirs,
    Assert(Assertion),
}

/// A character class as ranges of code points.
#[derive(Debug, Clone, Default)]
struct Class {
    negated: bool,
    ranges: Vec<(u32, u32)>,
}

impl Class {
    fn matches(&self, ch: char) -> bool {
        let code = u32::from(ch);
        self.ranges.iter().any(|&(lo, hi)| lo <= code && code <= hi) != self.negated
    }

    /// Adds `ranges`, or everything outside them.
    fn add(&mut self, ranges: &[(u32, u32)], negated: bool) {
        if negated {
            self.ranges.extend(complement(ranges));
        } else {
            self.ranges.extend_from_slice(ranges);
        }
    }
}

/// The code points outside sorted, disjoint `ranges`.
fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 0;
    for &(lo, hi) in ranges {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= u32::from(char::MAX) {
        out.push((next, u32::from(char::MAX)));
    }
    out
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const SPACE: &[(u32, u32)] = &[(0x09, 0x0a), (0x0c, 0x0d), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];

/// Go's Perl classes `\d \s \w` (ASCII only), and whether negated.
fn perl_class(letter: char) -> Option<(&'static [(u32, u32)], bool)> {
    let ranges = match letter.to_ascii_lowercase() {
        'd' => DIGIT,
        's' => SPACE,
        'w' => WORD,
        _ => return None,
    };
    Some((ranges, letter.is_ascii_uppercase()))
}

/// Go's POSIX classes, `alnum` for `[:alnum:]`.
fn posix_class(name: &str) -> Option<&'static [(u32, u32)]> {
    Some(match name {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
        "alpha" => &[(0x41, 0x5a), (0x61, 0x7a)],
        "ascii" => &[(0x00, 0x7f)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1f), (0x7f, 0x7f)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7e)],
        "lower" => &[(0x61, 0x7a)],
        "print" => &[(0x20, 0x7e)],
        "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
        "space" => &[(0x09, 0x0d), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5a)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    })
}

/// Rejects what Go's `filepath.Match` calls a bad pattern, which is how
/// patternmatcher validates each pattern.
fn validate_glob(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut rest = &chars[..];
    while !rest.is_empty() {
        // filepath.scanChunk: stars, then up to the next star outside `[]`.
        while let Some(('*', after)) = rest.split_first() {
            rest = after;
        }
        let mut in_range = false;
        let mut end = 0;
        while end < rest.len() {
            match rest[end] {
                '\\' if end + 1 < rest.len() => end += 1,
                '[' => in_range = true,
                ']' => in_range = false,
                '*' if !in_range => break,
                _ => {}
            }
            end += 1;
        }
        validate_chunk(&rest[..end])?;
        rest = &rest[end..];
    }
    Ok(())
}

/// The syntax checks of Go's `filepath.matchChunk`.
fn validate_chunk(chunk: &[char]) -> Result<(), String> {
    let mut rest = chunk;
    while let Some((&first, after)) = rest.split_first() {
        rest = after;
        match first {
            '[' => {
                if let Some(('^', after)) = rest.split_first() {
                    rest = after;
                }
                let mut ranges = 0;
                loop {
                    if ranges > 0
                        && let Some((']', after)) = rest.split_first()
                    {
                        rest = after;
                        break;
                    }
                    rest = class_glob_char(rest)?;
                    if let Some(('-', after)) = rest.split_first() {
                        rest = class_glob_char(after)?;
                    }
                    ranges += 1;
                }
            }
            '\\' => match rest.split_first() {
                Some((_, after)) => rest = after,
                None => return Err("trailing backslash".to_owned()),
            },
            _ => {}
        }
    }
    Ok(())
}

/// Go's `filepath.getEsc`: one (possibly escaped) character of a class,
/// which must be followed by more of the class.
fn class_glob_char(chunk: &[char]) -> Result<&[char], String> {
    let rest = match chunk.split_first() {
        None => return Err("missing ] in character class".to_owned()),
        Some(('-' | ']', _)) => {
            return Err("'-' or ']' where a character class member is expected".to_owned());
        }
        Some(('\\', after)) => after,
        Some(_) => chunk,
    };
    match rest.split_first() {
        Some((_, after)) if !after.is_empty() => Ok(after),
        _ => Err("missing ] in character class".to_owned()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// More expression nodes than this (repeats multiply them) is an error,
/// as Go's regexp has a size limit too.
const MAX_NODES: usize = 100_000;

/// patternmatcher's `Pattern.compile` for `/` as separator, followed by
/// what Go's regexp parser makes of the result.
fn compile(pattern: &str) -> Result<Matcher, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut alternatives: Vec<Vec<Node>> = Vec::new();
    let mut current = vec![Node::Assert(Assertion::BeginText)];
    let mut kind = Kind::Exact;
    // Go's regexp reports this only if the expression is compiled, which
    // patternmatcher skips for patterns it compares as strings.
    let mut regex_error: Option<String> = None;
    // Whether the last node came from a repetition (`*`, `**`, `{n}`),
    // which Go's regexp does not let another `{n}` repeat.
    let mut last_repeat = false;
    let mut i = 0;
    while i < chars.len() {
        let at_start = i == 0;
        let ch = chars[i];
        i += 1;
        let mut repeat = false;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is read as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    // A trailing `**` matches everything below, like
                    // .gitignore.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        current.push(Node::Star(Atom::NotNewline));
                        kind = Kind::Regex;
                    }
                } else {
                    current.push(Node::OptDirs);
                    kind = Kind::Regex;
                }
                if at_start {
                    kind = Kind::Suffix;
                }
                repeat = true;
            }
            '*' => {
                current.push(Node::Star(Atom::NotSlash));
                kind = Kind::Regex;
                repeat = true;
            }
            '?' => {
                current.push(Node::One(Atom::NotSlash));
                kind = Kind::Regex;
            }
            '\\' => {
                let (node, used) = top_escape(&chars[i..])?;
                i += used;
                current.push(node);
                kind = Kind::Regex;
            }
            '[' => {
                let (class, used) = parse_class(&chars[i..])?;
                i += used;
                current.push(Node::One(Atom::Class(class)));
                kind = Kind::Regex;
            }
            ']' => {
                current.push(Node::One(Atom::Lit(']')));
                kind = Kind::Regex;
            }
            // Passed through unescaped, so an anchor in the expression; it
            // only matters once the pattern is an expression at all.
            '^' => current.push(Node::Assert(Assertion::BeginText)),
            // Unescaped too (patternmatcher's escape table loses the bits
            // of `|`, `{` and `}`): an alternative…
            '|' => alternatives.push(std::mem::take(&mut current)),
            // …and a repeat when it reads as one, else a literal `{`.
            '{' => match parse_repeat(&chars[i..]) {
                Some((min, max, used)) => {
                    i += used;
                    if let Err(err) = apply_repeat(&mut current, min, max, last_repeat) {
                        regex_error.get_or_insert(err);
                    }
                    repeat = true;
                }
                None => current.push(Node::One(Atom::Lit('{'))),
            },
            // Everything else, including the characters patternmatcher
            // escapes (`.+()$`), is literal.
            _ => current.push(Node::One(Atom::Lit(ch))),
        }
        last_repeat = repeat;
        if current.len() > MAX_NODES {
            regex_error.get_or_insert_with(|| "expression too large".to_owned());
            current.clear();
        }
    }
    current.push(Node::Assert(Assertion::EndText));
    alternatives.push(current);
    Ok(match kind {
        Kind::Exact => Matcher::Exact,
        Kind::Prefix => Matcher::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_owned()),
        Kind::Suffix => Matcher::Suffix(pattern.strip_prefix("**").unwrap_or(pattern).to_owned()),
        Kind::Regex => match regex_error {
            Some(err) => return Err(err),
            None => Matcher::Regex(alternatives),
        },
    })
}

/// Go's regexp `parseRepeat`: `{n}`, `{n,}` or `{n,m}` at the start of
/// `rest` (which follows the `{`): `(n, m, characters taken)`, with `m`
/// `None` for no upper bound.
fn parse_repeat(rest: &[char]) -> Option<(u32, Option<u32>, usize)> {
    let mut i = 0;
    let min = parse_int(rest, &mut i)?;
    let max = match rest.get(i)? {
        ',' => {
            i += 1;
            if rest.get(i)? == &'}' {
                None
            } else {
                Some(parse_int(rest, &mut i)?)
            }
        }
        _ => Some(min),
    };
    if rest.get(i) != Some(&'}') {
        return None;
    }
    Some((min, max, i + 1))
}

/// A decimal number without leading zeros, saturating.
fn parse_int(rest: &[char], i: &mut usize) -> Option<u32> {
    let digits = rest[*i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && rest[*i] == '0') {
        return None;
    }
    let value = rest[*i..*i + digits].iter().fold(0_u32, |n, c| {
        n.saturating_mul(10)
            .saturating_add(c.to_digit(10).unwrap_or(0))
    });
    *i += digits;
    Some(value)
}

/// Applies `{min,max}` to the last node of `current`.
fn apply_repeat(
    current: &mut Vec<Node>,
    min: u32,
    max: Option<u32>,
    last_repeat: bool,
) -> Result<(), String> {
    if min > 1000 || max.is_some_and(|max| max > 1000 || min > max) {
        return Err("invalid repeat count".to_owned());
    }
    if last_repeat {
        return Err("invalid nested repetition operator".to_owned());
    }
    match current.pop() {
        Some(Node::One(atom)) => {
            for _ in 0..min {
                current.push(Node::One(atom.clone()));
            }
            match max {
                None => current.push(Node::Star(atom)),
                Some(max) => {
                    for _ in min..max {
                        current.push(Node::Optional(atom.clone()));
                    }
                }
            }
            Ok(())
        }
        // Repeating a zero-width assertion: once, or not at all.
        Some(Node::Assert(assertion)) => {
            if min > 0 {
                current.push(Node::Assert(assertion));
            }
            Ok(())
        }
        _ => Err("missing argument to repetition operator".to_owned()),
    }
}

/// A `\` escape outside a class; `rest` follows the backslash. Returns the
/// node and how many characters of `rest` it took.
fn top_escape(rest: &[char]) -> Result<(Node, usize), String> {
    let Some(&letter) = rest.first() else {
        return Err("trailing backslash".to_owned());
    };
    let assertion = match letter {
        'A' => Assertion::BeginText,
        'z' => Assertion::EndText,
        'b' => Assertion::WordBoundary,
        'B' => Assertion::NotWordBoundary,
        _ => {
            if let Some((ranges, negated)) = perl_class(letter) {
                let mut class = Class::default();
                class.add(ranges, negated);
                return Ok((Node::One(Atom::Class(class)), 1));
            }
            let (ch, used) = escaped_char(rest)?;
            return Ok((Node::One(Atom::Lit(ch)), used));
        }
    };
    Ok((Node::Assert(assertion), 1))
}

/// Go's regexp `parseEscape`: the character a `\` escape stands for.
fn escaped_char(rest: &[char]) -> Result<(char, usize), String> {
    let is_octal = |c: Option<&char>| c.is_some_and(|c| ('0'..='7').contains(c));
    let Some(&letter) = rest.first() else {
        return Err("trailing backslash".to_owned());
    };
    if letter.is_ascii() && !letter.is_ascii_alphanumeric() {
        return Ok((letter, 1));
    }
    let unsupported = |what: &str| Err(format!("escape \\{letter} ({what}) is not supported"));
    let ch = match letter {
        // `\1`… alone would be a back reference, which Go rejects.
        '0'..='7' if letter == '0' || is_octal(rest.get(1)) => {
            let mut value = 0;
            let mut used = 0;
            while used < 3 && is_octal(rest.get(used)) {
                value = value * 8 + rest[used].to_digit(8).unwrap_or(0);
                used += 1;
            }
            return char::from_u32(value)
                .map(|ch| (ch, used))
                .ok_or_else(|| format!("invalid octal escape \\{letter}"));
        }
        'x' => {
            let hex = |c: Option<&char>| c.and_then(|c| c.to_digit(16));
            return match (hex(rest.get(1)), hex(rest.get(2))) {
                (Some(hi), Some(lo)) => char::from_u32(hi * 16 + lo)
                    .map(|ch| (ch, 3))
                    .ok_or_else(|| "invalid hex escape".to_owned()),
                _ => Err("invalid escape \\x: two hex digits expected".to_owned()),
            };
        }
        'a' => '\x07',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        'p' | 'P' => return unsupported("Unicode class"),
        'Q' => return unsupported("quoting"),
        _ => return Err(format!("invalid escape \\{letter}")),
    };
    Ok((ch, 1))
}

/// A class in Go's regexp syntax; `rest` follows the `[`. Returns the
/// class and how many characters of `rest` it took, `]` included.
fn parse_class(rest: &[char]) -> Result<(Class, usize), String> {
    let unsupported = || Err("'*' or '?' inside [...] is not supported".to_owned());
    let mut class = Class::default();
    let mut i = 0;
    if rest.first() == Some(&'^') {
        class.negated = true;
        i += 1;
    }
    let mut first = true;
    loop {
        match rest.get(i) {
            None => return Err("missing ] in character class".to_owned()),
            // `]` first is a member.
            Some(']') if !first => return Ok((class, i + 1)),
            Some('*' | '?') => return unsupported(),
            Some(_) => {}
        }
        first = false;
        if rest[i] == '['
            && rest.get(i + 1) == Some(&':')
            && let Some(len) = named_class_len(&rest[i..])
        {
            let name: String = rest[i + 2..i + len - 2].iter().collect();
            let (negated, bare) = match name.strip_prefix('^') {
                Some(bare) => (true, bare),
                None => (false, name.as_str()),
            };
            let Some(ranges) = posix_class(bare) else {
                return Err(format!("invalid character class [:{name}:]"));
            };
            class.add(ranges, negated);
            i += len;
            continue;
        }
        if rest[i] == '\\'
            && let Some((ranges, negated)) = rest.get(i + 1).and_then(|&c| perl_class(c))
        {
            class.add(ranges, negated);
            i += 2;
            continue;
        }
        let (lo, used) = class_char(&rest[i..])?;
        i += used;
        let mut hi = lo;
        // `a-` before the closing `]` is `a` and `-`.
        if rest.get(i) == Some(&'-') && rest.get(i + 1).is_some_and(|&c| c != ']') {
            i += 1;
            if matches!(rest.get(i), Some('*' | '?')) {
                return unsupported();
            }
            let (end, used) = class_char(&rest[i..])?;
            i += used;
            hi = end;
            if hi < lo {
                return Err(format!("invalid character class range {lo}-{hi}"));
            }
        }
        class.ranges.push((u32::from(lo), u32::from(hi)));
    }
}

/// The length of `[:name:]` at the start of `s`, if `:]` follows.
fn named_class_len(s: &[char]) -> Option<usize> {
    (2..s.len().saturating_sub(1))
        .find(|&j| s[j] == ':' && s[j + 1] == ']')
        .map(|j| j + 2)
}

/// One member character of a class (Go's `parseClassChar`).
fn class_char(rest: &[char]) -> Result<(char, usize), String> {
    match rest.split_first() {
        None => Err("missing ] in character class".to_owned()),
        Some(('\\', after)) => {
            let (ch, used) = escaped_char(after)?;
            Ok((ch, used + 1))
        }
        Some((&ch, _)) => Ok((ch, 1)),
    }
}

/// Go's `Regexp.MatchString` for one alternative: whether it matches
/// anywhere in the path. A breadth-first walk of the automaton of `nodes`,
/// started at every position (only at 0 when it begins with `^`, as the
/// first one does): time is linear in the path whatever the pattern.
fn alternative_matches(nodes: &[Node], chars: &[char]) -> bool {
    let anchored = matches!(nodes.first(), Some(Node::Assert(Assertion::BeginText)));
    let n = nodes.len();
    // States 0..=n: "before node i" (n accepts); n + 1 + i: inside the
    // `.*` of the `(.*/)?` at node i.
    let mut current = vec![false; 2 * n + 1];
    let mut next = vec![false; 2 * n + 1];
    let mut stack = Vec::new();
    for pos in 0..=chars.len() {
        if pos == 0 || !anchored {
            add_state(nodes, chars, pos, 0, &mut current, &mut stack);
        } else if !current.contains(&true) {
            return false;
        }
        if current[n] {
            return true;
        }
        let Some(&ch) = chars.get(pos) else {
            break;
        };
        next.fill(false);
        for state in (0..current.len()).filter(|&s| current[s]) {
            if state > n {
                // Inside `(.*/)?`: a `/` may end it, anything but a newline
                // continues it.
                if ch != '\n' {
                    add_state(nodes, chars, pos + 1, state, &mut next, &mut stack);
                }
                if ch == '/' {
                    add_state(nodes, chars, pos + 1, state - n, &mut next, &mut stack);
                }
                continue;
            }
            let target = match nodes.get(state) {
                Some(Node::One(atom) | Node::Optional(atom)) => {
                    atom.matches(ch).then_some(state + 1)
                }
                Some(Node::Star(atom)) => atom.matches(ch).then_some(state),
                _ => None,
            };
            if let Some(target) = target {
                add_state(nodes, chars, pos + 1, target, &mut next, &mut stack);
            }
        }
        std::mem::swap(&mut current, &mut next);
    }
    false
}

/// Adds `state` and what it reaches without reading (stars and optional
/// parts skipped, assertions that hold at `pos`).
fn add_state(
    nodes: &[Node],
    chars: &[char],
    pos: usize,
    state: usize,
    set: &mut [bool],
    stack: &mut Vec<usize>,
) {
    let n = nodes.len();
    stack.push(state);
    while let Some(state) = stack.pop() {
        if set[state] {
            continue;
        }
        set[state] = true;
        let Some(node) = nodes.get(state) else {
            continue;
        };
        let passes = match node {
            Node::Assert(assertion) => {
                let word =
                    |c: Option<&char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_');
                let boundary =
                    || word(pos.checked_sub(1).and_then(|p| chars.get(p))) != word(chars.get(pos));
                match assertion {
                    Assertion::BeginText => pos == 0,
                    Assertion::EndText => pos == chars.len(),
                    Assertion::WordBoundary => boundary(),
                    Assertion::NotWordBoundary => !boundary(),
                }
            }
            Node::Star(_) | Node::Optional(_) => true,
            Node::OptDirs => {
                stack.push(n + 1 + state);
                true
            }
            Node::One(_) => false,
        };
        if passes {
            stack.push(state + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        match Ignore::parse(text) {
            Ok(ignore) => ignore,
            Err(err) => panic!("{text:?}: {err}"),
        }
    }

    fn parse_err(text: &str) -> IgnoreError {
        match Ignore::parse(text) {
            Ok(ignore) => panic!("{text:?}: expected an error, got {ignore:?}"),
            Err(err) => err,
        }
    }

    /// patternmatcher's `TestMatches` (`MatchesOrParentMatches`), one
    /// pattern at a time. The two cases with path "/" are left out: that is
    /// the context root here, which nothing excludes.
    #[test]
    fn patternmatcher_matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\*b", "a*b", true),
        ];
        for &(pattern, path, expected) in cases {
            assert_eq!(
                ignore(pattern).excludes(path),
                expected,
                "{pattern:?} {path:?}"
            );
        }
        assert!(!ignore("**").excludes("/"));
    }

    /// patternmatcher's `multiPatternTests`.
    #[test]
    fn patternmatcher_multi_pattern_table() {
        let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                whl,
                false,
            ),
            (&["**", "!dist/*.whl"], whl, false),
        ];
        for &(patterns, path, expected) in cases {
            assert_eq!(
                ignore(&patterns.join("\n")).excludes(path),
                expected,
                "{patterns:?} {path:?}"
            );
        }
    }

    /// patternmatcher's `matchTests` (taken from Go's `filepath.Match`
    /// tests); `None` = the pattern is rejected.
    #[test]
    fn filepath_match_table() {
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*", "ab/c", Some(true)),
            ("a*/b", "abc/b", Some(true)),
            ("a*/b", "a/c/b", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("a[^a][^a][^a]b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[\\-x]", "x", Some(true)),
            ("[\\-x]", "-", Some(true)),
            ("[\\-x]", "a", Some(false)),
            ("[]a]", "]", None),
            ("[-]", "-", None),
            ("[x-]", "x", None),
            ("[x-]", "-", None),
            ("[x-]", "z", None),
            ("[-x]", "x", None),
            ("[-x]", "-", None),
            ("[-x]", "a", None),
            ("\\", "a", None),
            ("[a-b-c]", "a", None),
            ("[", "a", None),
            ("[^", "a", None),
            ("[^bc", "a", None),
            ("a[", "a", None),
            ("a[", "ab", None),
            ("*x", "xxx", Some(true)),
        ];
        for &(pattern, path, expected) in cases {
            if let Some(expected) = expected {
                assert_eq!(
                    ignore(pattern).excludes(path),
                    expected,
                    "{pattern:?} {path:?}"
                );
            } else {
                let err = parse_err(pattern);
                assert_eq!((err.line, err.pattern.as_str()), (1, pattern));
            }
        }
    }

    /// patternmatcher's `TestCompile`: which patterns become plain string
    /// tests.
    #[test]
    fn compile_kinds() {
        fn kind(pattern: &str) -> &'static str {
            match compile(&clean(pattern)) {
                Ok(Matcher::Exact) => "exact",
                Ok(Matcher::Prefix(_)) => "prefix",
                Ok(Matcher::Suffix(_)) => "suffix",
                Ok(Matcher::Regex(_)) => "regexp",
                Err(err) => panic!("{pattern:?}: {err}"),
            }
        }
        for (pattern, expected) in [
            ("*", "regexp"),
            ("file*", "regexp"),
            ("*file", "regexp"),
            ("a*/b", "regexp"),
            ("**", "suffix"),
            ("**/**", "regexp"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "regexp"),
            ("**/dir2/**", "regexp"),
            ("**file", "suffix"),
            ("**/file*txt", "regexp"),
            ("**/**/*.txt", "regexp"),
            ("a[b-d]e", "regexp"),
            (".*", "regexp"),
            ("abc.def", "exact"),
            ("abc?def", "regexp"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "exact",
            ),
        ] {
            assert_eq!(kind(pattern), expected, "{pattern:?}");
        }
    }

    /// patternmatcher's single-pattern tests (`TestWildcardMatches` …
    /// `TestMatchesWithMalformedPatterns`).
    #[test]
    fn patternmatcher_simple_cases() {
        assert!(ignore("*").excludes("fileutils.go"));
        assert!(ignore("*.go").excludes("fileutils.go"));
        assert!(ignore("!fileutils.go\n*.go").excludes("fileutils.go"));
        assert!(!ignore("docs\n!docs/README.md").excludes("docs/README.md"));
        assert!(!ignore("docs/\n!docs/README.md").excludes("docs/README.md"));
        assert!(!ignore("docs/*\n!docs/README.md").excludes("docs/README.md"));
        assert!(!ignore("*.go\n!fileutils.go").excludes("fileutils.go"));
        assert!(!ignore("*.go").excludes("."));
        assert!(!ignore("").excludes("any/path/there"));
        let err = parse_err("!");
        assert!(err.reason.contains("illegal exclusion"), "{err}");
        parse_err("[");
    }

    /// patternmatcher's `TestCleanPatterns*`.
    #[test]
    fn patterns_are_cleaned_and_counted() {
        assert_eq!(ignore("docs\nconfig").patterns.len(), 2);
        assert_eq!(ignore("docs\nconfig\n").patterns.len(), 2);
        assert!(ignore("docs\n!docs/README.md").exclusions);
        assert!(ignore("docs\n  !docs/README.md").exclusions);
        assert!(ignore("docs\n!docs/README.md  ").exclusions);
        assert!(!ignore("docs\nconfig").exclusions);
    }

    /// ignorefile's `TestReadAll`, less its two `!` lines, which
    /// patternmatcher then rejects (checked below).
    #[test]
    fn ignorefile_read_all() {
        let parsed = ignore(
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n",
        );
        let patterns: Vec<(bool, &str)> = parsed
            .patterns
            .iter()
            .map(|p| (p.exclusion, p.text.as_str()))
            .collect();
        assert_eq!(
            patterns,
            [
                (false, "test1"),
                (false, "test2"),
                (false, "a/file/here"),
                (false, "lastfile"),
                (true, "inverted/abs/path"),
            ]
        );
        for text in ["a\n!\nb", "a\n! \nb", "a\n!/\n"] {
            let err = parse_err(text);
            assert_eq!(err.line, 2, "{text:?}");
        }
        assert!(Ignore::parse("").is_ok_and(|i| i.patterns.is_empty()));
    }

    #[test]
    fn file_format_details() {
        // Byte order mark, CRLF, comments only at the start of a line.
        let parsed =
            ignore("\u{feff}# comment\r\n  # not a comment\r\n\t\r\n ./a/../b/ \r\n//c//d/\n!/x");
        let patterns: Vec<&str> = parsed.patterns.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(patterns, ["# not a comment", "b", "c/d", "x"]);
        assert!(parsed.excludes("# not a comment"));
        // `/!a` loses its `/` first and then negates `a` (as in Docker).
        let parsed = ignore("*\n/!a");
        assert!(!parsed.excludes("a"));
        assert!(parsed.excludes("b"));
        // `\!` is a literal `!`.
        assert!(ignore("\\!a").excludes("!a"));
        // `a/..` cleans to `.`, which names the root: it excludes nothing.
        assert!(!ignore("a/..").excludes("x"));
    }

    #[test]
    fn errors_name_line_and_pattern() {
        let err = parse_err("ok\n\n  src/[a-  \n");
        assert_eq!(err.line, 3);
        assert_eq!(err.pattern, "src/[a-");
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(err.to_string().contains("src/[a-"), "{err}");
        // Accepted by filepath.Match, rejected by Go's regexp when Docker
        // first matches (moby/moby#52203): reported here at once.
        let err = parse_err("[Local-Only]/");
        assert!(err.reason.contains("range"), "{err}");
        for bad in [
            "[[:alpha:]",
            "[[:nope:]]",
            "a\\e",
            "a\\1",
            "a\\C",
            "\\x4",
            "[\\b]",
        ] {
            parse_err(bad);
        }
        for unsupported in ["[*]", "[a?]", "[a-*]", "\\pL", "\\P{Greek}", "\\Qa"] {
            assert!(
                parse_err(unsupported).reason.contains("not supported"),
                "{unsupported:?}"
            );
        }
    }

    /// What Go's regexp does with pattern text patternmatcher passes
    /// through (see the module documentation).
    #[test]
    fn regexp_pass_through() {
        assert!(ignore("[[:digit:]]*").excludes("1abc"));
        assert!(!ignore("[[:digit:]]*").excludes("abc"));
        assert!(ignore("[[:^digit:]x]").excludes("a"));
        assert!(ignore("\\d\\w?").excludes("1ab"));
        assert!(ignore("[\\d.]*").excludes("1.2"));
        assert!(ignore("[\\d-z]").excludes("-"));
        assert!(ignore("a\\x41*").excludes("aA"));
        assert!(ignore("a\\101*").excludes("aA"));
        assert!(ignore("a\\0*").excludes("a\0"));
        assert!(ignore("a\\t*").excludes("a\t"));
        assert!(ignore("a\\_*").excludes("a_"));
        // `^` is an anchor once the pattern is an expression…
        assert!(ignore("^a*").excludes("ab"));
        assert!(!ignore("^a*").excludes("^ab"));
        assert!(!ignore("a^b*").excludes("a^b"));
        // …and literal otherwise.
        assert!(ignore("a^b").excludes("a^b"));
        assert!(ignore("**/a^b").excludes("x/a^b"));
        assert!(ignore("a\\b*").excludes("a"));
        assert!(ignore("a\\Bb*").excludes("ab"));
        assert!(!ignore("a\\bb*").excludes("ab"));
        assert!(ignore("a\\b-*").excludes("a-"));
        assert!(ignore("a]*").excludes("a]b"));
        // `|`, `{` and `}` are not escaped either: alternatives, which only
        // the outer `^` and `$` anchor, and repeats.
        let alternatives = ignore("a*|b");
        assert!(alternatives.excludes("ax"));
        assert!(alternatives.excludes("xb"));
        assert!(alternatives.excludes("xab"));
        assert!(!alternatives.excludes("c"));
        assert!(ignore("x*|").excludes("anything"));
        assert!(ignore("a{2}*").excludes("aab"));
        assert!(!ignore("a{2}*").excludes("a{2}"));
        assert!(ignore("a{1,2}b*").excludes("aab"));
        assert!(ignore("a{1,}b*").excludes("aaaab"));
        assert!(!ignore("a{1,2}b*").excludes("aaab"));
        assert!(ignore("*.{js,ts}").excludes("a.{js,ts}"));
        assert!(!ignore("*.{js,ts}").excludes("a.js"));
        assert!(ignore("a}*").excludes("a}"));
        assert!(ignore("a{01}*").excludes("a{01}"));
        // Plain strings are not expressions, so these are fine…
        assert!(ignore("a|b").excludes("a|b"));
        assert!(ignore("a{2000}").excludes("a{2000}"));
        assert!(ignore("**/a{2000}").excludes("x/a{2000}"));
        // …but as expressions they are not.
        for bad in ["a*|{2}", "a*{2}", "a{2000}*", "a{3,2}*", "a{2}{2}*"] {
            parse_err(bad);
        }
        // `.` in `**` does not match a newline, `[^/]` does.
        assert!(!ignore("a/**/b*").excludes("a/x\ny/b"));
        assert!(ignore("a/*/b*").excludes("a/x\ny/b"));
    }

    /// The Docker documentation's `.dockerignore` example.
    #[test]
    fn docker_docs_example() {
        let parsed = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(parsed.excludes("somedir/temporary.txt"));
        assert!(parsed.excludes("somedir/temp"));
        assert!(!parsed.excludes("temporary.txt"));
        assert!(parsed.excludes("somedir/subdir/temporary.txt"));
        assert!(parsed.excludes("tempa"));
        assert!(!parsed.excludes("tempab"));
        assert!(parsed.excludes("temp1/anything"));

        let parsed = ignore("*.md\n!README*.md\nREADME-secret.md");
        assert!(parsed.excludes("CHANGES.md"));
        assert!(!parsed.excludes("README.md"));
        assert!(!parsed.excludes("README-public.md"));
        assert!(parsed.excludes("README-secret.md"));
        assert!(!parsed.excludes("docs/CHANGES.md"));

        let parsed = ignore("**/*.go\n**/__pycache__\n.git\nnode_modules/");
        assert!(parsed.excludes("a/b/c.go"));
        assert!(parsed.excludes("c.go"));
        assert!(parsed.excludes("pkg/__pycache__/x.pyc"));
        assert!(parsed.excludes(".git/config"));
        assert!(parsed.excludes("node_modules/x/y.js"));
        assert!(!parsed.excludes("src/node_modules/x"));
        assert!(!parsed.excludes("src/app.py"));
    }

    #[test]
    fn later_patterns_win() {
        let parsed = ignore("build\n!build/keep\nbuild/keep/secret\n");
        assert!(parsed.excludes("build/out.o"));
        assert!(!parsed.excludes("build/keep"));
        assert!(!parsed.excludes("build/keep/a.txt"));
        assert!(parsed.excludes("build/keep/secret"));
        assert!(parsed.excludes("build/keep/secret/x"));
        // Paths are cleaned; the root is never excluded.
        assert!(parsed.excludes("./build//out.o"));
        assert!(parsed.excludes("/build/out.o"));
        assert!(!ignore("*").excludes(""));
        assert!(!ignore("*").excludes("."));
    }

    /// fsutil's rule for walking into an excluded directory.
    #[test]
    fn may_include_below_follows_buildkit() {
        let no_negation = ignore("build\n*.o");
        assert!(!no_negation.may_include_below("build"));

        let literal = ignore("build\n!build/keep.txt\n!docs/**");
        assert!(literal.may_include_below("build"));
        assert!(!literal.may_include_below("build/sub"));
        assert!(!literal.may_include_below("other"));
        assert!(literal.may_include_below("docs"));
        assert!(!literal.may_include_below("bui"));
        assert!(literal.may_include_below("/build/"));

        let nested = ignore("a\n!a/b/c/d.txt");
        assert!(nested.may_include_below("a"));
        assert!(nested.may_include_below("a/b"));
        assert!(nested.may_include_below("a/b/c"));
        assert!(!nested.may_include_below("a/x"));

        // A wildcard in a negation (beyond a trailing /* or /**) means any
        // directory may hold a match.
        let wild = ignore("*\n!**/*.py");
        assert!(wild.may_include_below("anything/at/all"));
        let trailing = ignore("*\n!keep/*");
        assert!(trailing.may_include_below("keep"));
        assert!(!trailing.may_include_below("other"));
    }

    /// A small xorshift generator: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            usize::try_from(self.0 % (n as u64)).unwrap_or(0)
        }

        fn string(&mut self, alphabet: &[&str], max: usize) -> String {
            let len = self.below(max + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    /// Generated patterns and paths never panic, and the answers are
    /// consistent: an excluded path's directory that holds nothing
    /// re-included is excluded as well.
    #[test]
    fn generated_input_never_panics() {
        let pattern_alphabet = [
            "*",
            "**",
            "?",
            "[",
            "]",
            "^",
            "-",
            "!",
            "\\",
            "/",
            ".",
            "..",
            "a",
            "b",
            "1",
            ":",
            " ",
            "#",
            "[:alpha:]",
            "\\d",
            "\\x4",
            "é",
        ];
        let path_alphabet = ["a", "b", "1", "/", ".", "-", "]", "^", "\\", "é", "\n", "*"];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut parsed_ok = 0;
        for _ in 0..3_000 {
            let lines = rng.below(4) + 1;
            let text = (0..lines)
                .map(|_| rng.string(&pattern_alphabet, 6))
                .collect::<Vec<_>>()
                .join("\n");
            let Ok(parsed) = Ignore::parse(&text) else {
                continue;
            };
            parsed_ok += 1;
            for _ in 0..10 {
                let path = rng.string(&path_alphabet, 8);
                let excluded = parsed.excludes(&path);
                let _ = parsed.may_include_below(&path);
                if excluded && !parsed.exclusions {
                    let child = format!("{path}/child");
                    assert!(
                        parsed.excludes(&child),
                        "{text:?}: {path:?} excluded, {child:?} not"
                    );
                }
            }
        }
        assert!(parsed_ok > 500, "{parsed_ok} files parsed");
    }
}
