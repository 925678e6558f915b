//! Dockerfile variable substitution, ported from `BuildKit`'s
//! `frontend/dockerfile/shell/lex.go` (the default `Lex`, as used for
//! `ENV`, `ARG`, `LABEL`, `WORKDIR`, `COPY`, … : quotes are removed,
//! escapes are processed and unset variables expand to "").
//!
//! The code follows the Go step by step, quirks included, so that a
//! Dockerfile means the same here as under `docker build`; comments name
//! the places where that looks surprising. The one deliberate difference is
//! listed on [`process_words`].

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Looks up a variable; `None` = unset.
pub trait Vars {
    /// The value of `name`, or `None` when it is unset (set but empty is
    /// `Some("")`, which `${VAR-word}` and `${VAR:-word}` tell apart).
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl<S: BuildHasher> Vars for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

/// Pairs in definition order; the last pair with a name wins, as with
/// `BuildKit`'s `EnvsFromSlice` (a later `ENV` overrides an earlier one).
impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Expansion failed; `text` is the whole input, `kind` what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {text:?}: {kind}")]
pub struct ExpandError {
    /// The text given to [`process_word`] or [`process_words`].
    pub text: String,
    /// What went wrong.
    pub kind: ExpandErrorKind,
}

/// What was wrong with the text; the messages are `BuildKit`'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    /// `'` without its closing `'`.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// `"` without its closing `"`.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// `${` without its closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${VAR/pattern` without the `/` before the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:…}`, `${{…}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${VAR` followed by something that is no operator (`${VAR:=x}`,
    /// `${VAR.x}`, `${VAR:#x}`); holds the operator as written.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${VAR?message}` with `VAR` unset, or `${VAR:?message}` with `VAR`
    /// unset or empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message from the text, or `BuildKit`'s default one.
        message: String,
    },
    /// More than [`MAX_DEPTH`] nested `${…}`.
    #[error("substitutions nested too deeply")]
    TooDeep,
    /// A `#`, `%` or `/` pattern with a `\` that escapes nothing it may.
    #[error("invalid pattern ({pattern}) in substitution: invalid escape {escape}")]
    InvalidPattern {
        /// The pattern after expansion, escapes kept.
        pattern: String,
        /// The offending escape, e.g. `'\x'`, or "at end of pattern".
        escape: String,
    },
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}`, `${VAR-word}`,
/// `${VAR+word}`, `${VAR:?message}` / `${VAR?message}` (error when
/// unset/empty), and the `BuildKit` forms `${VAR#pattern}`,
/// `${VAR##pattern}`, `${VAR%pattern}`, `${VAR%%pattern}`,
/// `${VAR/pattern/replacement}`, `${VAR//pattern/replacement}` (patterns:
/// `*` and `?` globs, literal otherwise), and removes quotes and escapes,
/// exactly as `BuildKit`'s `Lex.ProcessWord` does.
///
/// `escape` is the Dockerfile's escape character (`\`, or a backtick after
/// an `# escape=` directive): it makes the next character literal (`\$VAR`
/// gives `$VAR`). Inside `'…'` nothing is expanded; inside `"…"` variables are,
/// and the escape only escapes `"`, `$` and itself. Names are letters
/// (any Unicode letter, as in `BuildKit`), digits and `_`, not starting
/// with a digit; like `BuildKit`, `$1`/`$12`
/// (positional) and `$@ $* $# $? $- $$ $! $0` (special) are names too,
/// never set, so they expand to "". `$` before anything else is literal.
///
/// # Errors
/// Malformed text (`${`, `${VAR`, `${1abc}`, unterminated quotes,
/// unsupported operators) and `?` operators whose variable is unset or
/// empty; the error carries the text.
pub fn process_word(text: &str, vars: &dyn Vars, escape: char) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(text, vars, escape);
    lexer
        .process_stop_on(None, false, None)
        .map_err(|kind| ExpandError {
            text: text.to_owned(),
            kind,
        })
}

/// Expands an unquoted heredoc's body as `BuildKit` does for `COPY <<EOF`:
/// as [`process_word`] with the escape `\\`, but quotes are plain
/// characters (`SkipProcessQuotes`), so `"$A"` keeps its quotes around
/// the value.
///
/// ```
/// use std::collections::BTreeMap;
/// let vars = BTreeMap::from([("A".to_owned(), "x".to_owned())]);
/// let body = dockerfile_syntax::expand::process_heredoc("say \"$A\" '${A}' \\$A\n", &vars)?;
/// assert_eq!(body, "say \"x\" 'x' $A\n");
/// # Ok::<(), dockerfile_syntax::expand::ExpandError>(())
/// ```
///
/// # Errors
/// As [`process_word`].
pub fn process_heredoc(text: &str, vars: &dyn Vars) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(text, vars, '\\');
    lexer.skip_quotes = true;
    lexer
        .process_stop_on(None, false, None)
        .map_err(|kind| ExpandError {
            text: text.to_owned(),
            kind,
        })
}

/// Like [`process_word`], then splits the result into words on whitespace
/// that was neither quoted, escaped nor inside a `${…}` word, as `BuildKit`'s
/// `Lex.ProcessWords` does (used for `EXPOSE`): the value of a variable is
/// split too, `""` alone gives no word, and `<<` plus the blanks after it
/// stay one word with what follows (heredoc markers).
///
/// One difference from `BuildKit`, on purpose: there, a `${VAR<op>word}`
/// drops the text of the current word before it (`a${X:-b}` gives `["b"]`,
/// because the nested parse resets a shared buffer); here it gives
/// `["ab"]`, as `process_word` and a shell do.
///
/// # Errors
/// As [`process_word`].
pub fn process_words(
    text: &str,
    vars: &dyn Vars,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer::new(text, vars, escape);
    let mut words = Words::default();
    match lexer.process_stop_on(None, false, Some(&mut words)) {
        Ok(_) => Ok(words.finish()),
        Err(kind) => Err(ExpandError {
            text: text.to_owned(),
            kind,
        }),
    }
}

/// Characters of the input with Go's `text/scanner` `Peek`/`Next`.
struct Scanner {
    chars: Vec<char>,
    pos: usize,
}

impl Scanner {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        // text/scanner drops a byte order mark at the very start.
        let pos = usize::from(chars.first() == Some(&'\u{feff}'));
        Self { chars, pos }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }
}

/// Word splitting state, `BuildKit`'s `wordsStruct`.
#[derive(Default)]
struct Words {
    buf: String,
    done: Vec<String>,
    in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the current word.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            // BuildKit only ends a word that has text: `''` sets `in_word`
            // with an empty buffer and never becomes a word.
            if self.in_word && !self.buf.is_empty() {
                self.done.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        for ch in text.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, text: &str) {
        self.buf.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.done.push(self.buf);
        }
        self.done
    }
}

/// How deep `${…}` may nest (in words and quotes). Go's growable stacks
/// have no such limit; here it keeps hostile input from exhausting the
/// thread's stack.
const MAX_DEPTH: usize = 200;

struct Lexer<'a> {
    scanner: Scanner,
    vars: &'a dyn Vars,
    escape: char,
    /// Current `${…}` nesting.
    depth: usize,
    /// Quotes are plain characters (heredoc bodies).
    skip_quotes: bool,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, vars: &'a dyn Vars, escape: char) -> Self {
        Self {
            scanner: Scanner::new(text),
            vars,
            escape,
            depth: 0,
            skip_quotes: false,
        }
    }

    /// Processes up to `stop` (consumed) or the end of the text.
    /// `raw_escapes` keeps escape characters in the result: `BuildKit` does
    /// that inside `#`, `%` and `/` patterns, whose own escapes (`\*`) are
    /// read later by the pattern parser.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        mut words: Option<&mut Words>,
    ) -> Result<String, ExpandErrorKind> {
        let mut result = String::new();
        while let Some(ch) = self.scanner.peek() {
            if stop == Some(ch) {
                self.scanner.next();
                return Ok(result);
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    // A variable's value is split into words.
                    if let Some(words) = words.as_deref_mut() {
                        words.add_string(&value);
                    }
                }
                '<' | '\'' | '"' if !(self.skip_quotes && ch != '<') => {
                    let text = match ch {
                        '<' => self.process_possible_heredoc(),
                        '\'' => self.process_single_quote()?,
                        _ => self.process_double_quote(raw_escapes)?,
                    };
                    result.push_str(&text);
                    if let Some(words) = words.as_deref_mut() {
                        words.add_raw_string(&text);
                    }
                }
                _ => {
                    self.scanner.next();
                    let mut ch = ch;
                    if ch == self.escape {
                        if raw_escapes {
                            if let Some(words) = words.as_deref_mut() {
                                words.add_raw_char(ch);
                            }
                            result.push(ch);
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.scanner.next() else {
                            break;
                        };
                        ch = escaped;
                        if let Some(words) = words.as_deref_mut() {
                            words.add_raw_char(ch);
                        }
                    } else if let Some(words) = words.as_deref_mut() {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        match stop {
            // The callers report this as the `}` or `/` they were after.
            Some('/') => Err(ExpandErrorKind::MissingSlash),
            Some(_) => Err(ExpandErrorKind::MissingBrace),
            None => Ok(result),
        }
    }

    /// `'…'`: everything literal, no escapes at all.
    fn process_single_quote(&mut self) -> Result<String, ExpandErrorKind> {
        self.scanner.next();
        let mut result = String::new();
        loop {
            match self.scanner.next() {
                None => return Err(ExpandErrorKind::UnterminatedSingleQuote),
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"…"`: variables expand; the escape escapes only `"`, `$` and
    /// itself, and is kept before anything else (`"\t"` stays `\t`).
    fn process_double_quote(&mut self, raw_escapes: bool) -> Result<String, ExpandErrorKind> {
        self.scanner.next();
        let mut result = String::new();
        loop {
            match self.scanner.peek() {
                None => return Err(ExpandErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.scanner.next();
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.scanner.next();
                    if ch == self.escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.scanner.peek() {
                            // Dropped; the loop then reports the missing `"`.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.scanner.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `<` or `<<` plus the blanks after it, kept together as one word
    /// (`BuildKit`'s heredoc detection relies on it).
    fn process_possible_heredoc(&mut self) -> String {
        self.scanner.next();
        if self.scanner.peek() != Some('<') {
            return "<".to_owned();
        }
        self.scanner.next();
        let mut result = "<<".to_owned();
        while let Some(ch @ ('\t' | '\r' | ' ')) = self.scanner.peek() {
            result.push(ch);
            self.scanner.next();
        }
        result
    }

    fn lookup(&self, name: &str) -> Option<&'a str> {
        self.vars.get(name)
    }

    /// `$…` at the current position.
    fn process_dollar(&mut self) -> Result<String, ExpandErrorKind> {
        if self.depth >= MAX_DEPTH {
            return Err(ExpandErrorKind::TooDeep);
        }
        self.depth += 1;
        let result = self.process_dollar_at_depth();
        self.depth -= 1;
        result
    }

    fn process_dollar_at_depth(&mut self) -> Result<String, ExpandErrorKind> {
        self.scanner.next();
        if self.scanner.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(self.lookup(&name).unwrap_or_default().to_owned());
        }
        self.scanner.next();
        match self.scanner.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        match self.scanner.next() {
            Some('}') => Ok(self.lookup(&name).unwrap_or_default().to_owned()),
            Some(':') => {
                // Whatever follows the `:` is taken as the operator, even a
                // `}`; a wrong one is reported after its word is read.
                let op = self.scanner.next();
                self.process_modifier(&name, op, true)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => {
                self.process_modifier(&name, Some(op), false)
            }
            Some('/') => self.process_replace(&name),
            Some(other) => Err(ExpandErrorKind::UnsupportedModifier(other.to_string())),
            None => Err(ExpandErrorKind::MissingBrace),
        }
    }

    /// `${name<op>word}` after the operator; `null_is_unset` for the `:`
    /// forms.
    fn process_modifier(
        &mut self,
        name: &str,
        op: Option<char>,
        null_is_unset: bool,
    ) -> Result<String, ExpandErrorKind> {
        let op_text = format!(
            "{}{}",
            if null_is_unset { ":" } else { "" },
            op.map(String::from).unwrap_or_default()
        );
        let trim = matches!(op, Some('#' | '%'));
        if null_is_unset && trim {
            return Err(ExpandErrorKind::UnsupportedModifier(op_text));
        }
        let word = self.process_stop_on(Some('}'), trim, None)?;
        let value = self.lookup(name);
        let unset = match value {
            None => true,
            Some(value) => null_is_unset && value.is_empty(),
        };
        match op {
            Some('-') => Ok(if unset {
                word
            } else {
                value.unwrap_or_default().to_owned()
            }),
            Some('+') => Ok(if unset { String::new() } else { word }),
            Some('?') => {
                if unset {
                    let message = if !word.is_empty() {
                        word
                    } else if value.is_none() {
                        "is not allowed to be unset".to_owned()
                    } else {
                        "is not allowed to be empty".to_owned()
                    };
                    Err(ExpandErrorKind::Required {
                        name: name.to_owned(),
                        message,
                    })
                } else {
                    Ok(value.unwrap_or_default().to_owned())
                }
            }
            Some(op @ ('#' | '%')) => {
                // `##`/`%%` trim the longest match, `#`/`%` the shortest.
                // BuildKit looks at the word after expansion, so a value
                // starting with the operator counts too.
                let (pattern, greedy) = match word.strip_prefix(op) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let value = value.unwrap_or_default();
                if op == '%' {
                    trim_suffix(pattern, value, greedy)
                } else {
                    trim_prefix(pattern, value, greedy)
                }
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(op_text)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`
    /// after the first `/`.
    fn process_replace(&mut self, name: &str) -> Result<String, ExpandErrorKind> {
        let replace_all = self.scanner.peek() == Some('/');
        if replace_all {
            self.scanner.next();
        }
        let pattern = self.process_stop_on(Some('/'), true, None)?;
        let replacement = self.process_stop_on(Some('}'), true, None)?;
        let value = self.lookup(name).unwrap_or_default();
        let compiled = ShellPattern::new(&pattern, true, false)?;
        let chars: Vec<char> = value.chars().collect();
        let ends = compiled.match_ends(&chars);
        if replace_all {
            return Ok(replace_all_go(&chars, &ends, &replacement));
        }
        // The first match only, and the replacement taken literally
        // (BuildKit's ReplaceAllString expands `$0` in the other case).
        let first = ends
            .iter()
            .enumerate()
            .find_map(|(start, end)| end.map(|end| (start, end)));
        Ok(match first {
            Some((start, end)) => {
                let mut result: String = chars[..start].iter().collect();
                result.push_str(&replacement);
                result.extend(&chars[end..]);
                result
            }
            None => value.to_owned(),
        })
    }

    /// A name, a run of digits (positional) or one special parameter
    /// character; empty when none is there.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.scanner.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.scanner.peek().filter(|&c| is_digit(c)) {
                    self.scanner.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.scanner.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.scanner.next();
            name.push(ch);
        }
        name
    }
}

/// Go's `unicode.IsLetter`: exact for ASCII and Latin-1; beyond that
/// Rust's Alphabetic property, which adds a few marks and letter numbers.
fn is_letter(ch: char) -> bool {
    ch.is_alphabetic()
}

/// Go's `unicode.IsDigit`: `0`–`9` in Latin-1; beyond that Rust's
/// Numeric property, which adds other numerals.
fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (u32::from(ch) > 0xff && ch.is_numeric())
}

/// POSIX special parameters; never set in a Dockerfile.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// One element of a `#`/`%`/`/` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: any character but a newline (Go's regexp `.`).
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// A shell pattern as `BuildKit` turns it into a regular expression
/// (`convertShellPatternToRegex`): `*`, `?`, and `\` escaping `*`, `?`,
/// `\`, `}` and `/`; no bracket expressions.
struct ShellPattern {
    toks: Vec<Tok>,
    greedy: bool,
    anchored: bool,
}

impl ShellPattern {
    fn new(pattern: &str, greedy: bool, anchored: bool) -> Result<Self, ExpandErrorKind> {
        let invalid = |escape: String| ExpandErrorKind::InvalidPattern {
            pattern: pattern.to_owned(),
            escape,
        };
        let mut chars = pattern.chars().peekable();
        // text/scanner again: a leading byte order mark is skipped.
        chars.next_if_eq(&'\u{feff}');
        let mut toks = Vec::new();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match chars.peek().copied() {
                    // `}` and `/` are escaped only to get them past the
                    // `${…}` parser: the backslash is not part of the pattern.
                    Some('}' | '/') => {}
                    Some(escaped @ ('*' | '?' | '\\')) => {
                        chars.next();
                        toks.push(Tok::Lit(escaped));
                    }
                    Some(other) => return Err(invalid(format!("'\\{other}'"))),
                    None => return Err(invalid("at end of pattern".to_owned())),
                },
                other => toks.push(Tok::Lit(other)),
            }
        }
        Ok(Self {
            toks,
            greedy,
            anchored,
        })
    }

    /// For each start position, the end of the match Go's leftmost-first
    /// regexp engine would pick there (greedy stars take the longest run
    /// that still lets the rest match, lazy ones the shortest), or `None`.
    /// Anchored patterns only get a result at 0.
    ///
    /// Computed backwards over the pattern, one row of positions at a time,
    /// which is what backtracking would find without its exponential cost.
    fn match_ends(&self, s: &[char]) -> Vec<Option<usize>> {
        let len = s.len();
        // row[p]: end of the match of toks[i..] starting at p.
        let mut row: Vec<Option<usize>> = (0..=len).map(Some).collect();
        // Where the run of non-newline characters from p stops.
        let mut line_end = vec![len; len + 1];
        for p in (0..len).rev() {
            line_end[p] = if s[p] == '\n' { p } else { line_end[p + 1] };
        }
        for tok in self.toks.iter().rev() {
            let mut next = vec![None; len + 1];
            match *tok {
                Tok::Lit(c) => {
                    for p in 0..len {
                        if s[p] == c {
                            next[p] = row[p + 1];
                        }
                    }
                }
                Tok::Any => {
                    for p in 0..len {
                        if s[p] != '\n' {
                            next[p] = row[p + 1];
                        }
                    }
                }
                Tok::Star => {
                    // The star may take s[p..q] for any q up to the end of
                    // p's line (a newline is a boundary, so each line is
                    // swept on its own, from its end). Greedy keeps the
                    // last such q with a match, lazy the first.
                    let mut chosen: Option<usize> = None;
                    for p in (0..=len).rev() {
                        if p == line_end[p] {
                            chosen = None;
                        }
                        if row[p].is_some() && (!self.greedy || chosen.is_none()) {
                            chosen = Some(p);
                        }
                        next[p] = chosen.and_then(|q| row[q]);
                    }
                }
            }
            row = next;
        }
        if self.anchored {
            row.truncate(1);
        }
        row
    }
}

/// `${VAR#pattern}` / `${VAR##pattern}`.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandErrorKind> {
    let compiled = ShellPattern::new(pattern, greedy, true)?;
    let chars: Vec<char> = value.chars().collect();
    Ok(
        match compiled.match_ends(&chars).first().copied().flatten() {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_owned(),
        },
    )
}

/// `${VAR%pattern}` / `${VAR%%pattern}`: `BuildKit` reverses pattern and
/// value to turn the shortest/longest suffix into a prefix.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandErrorKind> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern keeping each `\x` escape in front of its character.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = chars.clone();
    let Some(last) = chars.len().checked_sub(1) else {
        return String::new();
    };
    let mut i = 0;
    while i <= last {
        let out_idx = last - i;
        if chars[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = chars[i + 1];
            i += 2;
        } else {
            out[out_idx] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// Go's `Regexp.ReplaceAllString` for a pattern without groups: empty
/// matches right after a match are skipped, and `$0`/`${0}` in the
/// replacement stand for the match, `$$` for `$`.
fn replace_all_go(s: &[char], ends: &[Option<usize>], replacement: &str) -> String {
    let mut out = String::new();
    let mut last_match_end = 0;
    let mut search = 0;
    while search <= s.len() {
        let Some((start, end)) = (search..=s.len()).find_map(|p| ends[p].map(|e| (p, e))) else {
            break;
        };
        out.extend(&s[last_match_end..start]);
        if end > last_match_end || start == 0 {
            let matched: String = s[start..end].iter().collect();
            out.push_str(&go_expand(replacement, &matched));
        }
        last_match_end = end;
        // Always advance at least one character.
        search = if search + 1 > end { search + 1 } else { end };
    }
    if last_match_end < s.len() {
        out.extend(&s[last_match_end..]);
    }
    out
}

/// Go's `Regexp.Expand` template syntax with no capture groups.
fn go_expand(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match extract_group_ref(rest) {
            Some((name, after)) => {
                // Group 0 is the whole match; there are no others, and an
                // unknown group expands to nothing.
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            // Malformed: the `$` is literal.
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// `name` or `{name}` at the start of `text` (Go's `extract`).
fn extract_group_ref(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !is_letter(c) && !is_digit(c) && c != '_')
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        after.strip_prefix('}').map(|after| (name, after))
    } else {
        Some((name, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input, variables, expected result (`None`: an error).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn word(text: &str, pairs: &[(&str, &str)]) -> Result<String, ExpandError> {
        process_word(text, &vars(pairs), '\\')
    }

    fn ok(text: &str, pairs: &[(&str, &str)]) -> String {
        match word(text, pairs) {
            Ok(result) => result,
            Err(err) => panic!("{text:?}: unexpected error {err}"),
        }
    }

    fn err(text: &str, pairs: &[(&str, &str)]) -> ExpandError {
        match word(text, pairs) {
            Ok(result) => panic!("{text:?}: expected an error, got {result:?}"),
            Err(err) => err,
        }
    }

    /// `BuildKit`'s `frontend/dockerfile/shell/envVarTest`, verbatim:
    /// `platform|input|expected` (A = all, U = Unix, W = Windows; `error`
    /// means an error is expected).
    const ENV_VAR_TEST: &str = r#"
A|hello                    |     hello
A|he'll'o                  |     hello
A|he'llo                   |     error
A|he\'llo                  |     he'llo
A|he\\'llo                 |     error
A|abc\tdef                 |     abctdef
A|"abc\tdef"               |     abc\tdef
A|"abc\\tdef"              |     abc\tdef
A|'abc\tdef'               |     abc\tdef
A|hello\                   |     hello
A|hello\\                  |     hello\
A|"hello                   |     error
A|"hello\"                 |     error
A|"hel'lo"                 |     hel'lo
A|'hello                   |     error
A|'hello\'                 |     hello\
A|'hello\there'            |     hello\there
A|'hello\\there'           |     hello\\there
A|"''"                     |     ''
A|$.                       |     $.
A|he$1x                    |     hex
A|he$.x                    |     he$.x
# Next one is different on Windows as $pwd==$PWD
U|he$pwd.                  |     he.
W|he$pwd.                  |     he/home.
A|he$PWD                   |     he/home
A|he\$PWD                  |     he$PWD
A|he\\$PWD                 |     he\/home
A|"he\$PWD"                |     he$PWD
A|"he\\$PWD"               |     he\/home
A|\${}                     |     ${}
A|\${}aaa                  |     ${}aaa
A|he\${}                   |     he${}
A|he\${}xx                 |     he${}xx
A|${}                      |     error
A|${}aaa                   |     error
A|he${}                    |     error
A|he${}xx                  |     error
A|he${hi}                  |     he
A|he${hi}xx                |     hexx
A|he${PWD}                 |     he/home
A|he${.}                   |     error
A|he${XXX:-000}xx          |     he000xx
A|he${PWD:-000}xx          |     he/homexx
A|he${XXX:-$PWD}xx         |     he/homexx
A|he${XXX:-${PWD:-yyy}}xx  |     he/homexx
A|he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
A|he${XXX:YYY}             |     error
A|he${XXX?}                |     error
A|he${XXX:?}               |     error
A|he${PWD?}                |     he/home
A|he${PWD:?}               |     he/home
A|he${NULL?}               |     he
A|he${NULL:?}              |     error
A|he${XXX:+${PWD}}xx       |     hexx
A|he${PWD:+${XXX}}xx       |     hexx
A|he${PWD:+${SHELL}}xx     |     hebashxx
A|he${XXX:+000}xx          |     hexx
A|he${PWD:+000}xx          |     he000xx
A|'he${XX}'                |     he${XX}
A|"he${PWD}"               |     he/home
A|"he'$PWD'"               |     he'/home'
A|"$PWD"                   |     /home
A|'$PWD'                   |     $PWD
A|'\$PWD'                  |     \$PWD
A|'"hello"'                |     "hello"
A|he\$PWD                  |     he$PWD
A|"he\$PWD"                |     he$PWD
A|'he\$PWD'                |     he\$PWD
A|he${PWD                  |     error
A|he${PWD:=000}xx          |     error
A|he${PWD:+${PWD}:}xx      |     he/home:xx
A|he${XXX:-\$PWD:}xx       |     he$PWD:xx
A|he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
A|안녕하세요                 |     안녕하세요
A|안'녕'하세요               |     안녕하세요
A|안'녕하세요                |     error
A|안녕\'하세요               |     안녕'하세요
A|안\\'녕하세요              |     error
A|안녕\t하세요               |     안녕t하세요
A|"안녕\t하세요"             |     안녕\t하세요
A|'안녕\t하세요              |     error
A|안녕하세요\                |     안녕하세요
A|안녕하세요\\               |     안녕하세요\
A|"안녕하세요                |     error
A|"안녕하세요\"              |     error
A|"안녕'하세요"              |     안녕'하세요
A|'안녕하세요                |     error
A|'안녕하세요\'              |     안녕하세요\
A|안녕$1x                    |     안녕x
A|안녕$.x                    |     안녕$.x
# Next one is different on Windows as $pwd==$PWD
U|안녕$pwd.                  |     안녕.
W|안녕$pwd.                  |     안녕/home.
A|안녕$PWD                   |     안녕/home
A|안녕\$PWD                  |     안녕$PWD
A|안녕\\$PWD                 |     안녕\/home
A|안녕\${}                   |     안녕${}
A|안녕\${}xx                 |     안녕${}xx
A|안녕${}                    |     error
A|안녕${}xx                  |     error
A|안녕${hi}                  |     안녕
A|안녕${hi}xx                |     안녕xx
A|안녕${PWD}                 |     안녕/home
A|안녕${.}                   |     error
A|안녕${XXX:-000}xx          |     안녕000xx
A|안녕${PWD:-000}xx          |     안녕/homexx
A|안녕${XXX:-$PWD}xx         |     안녕/homexx
A|안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
A|안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
A|안녕${XXX:YYY}             |     error
A|안녕${XXX:+${PWD}}xx       |     안녕xx
A|안녕${PWD:+${XXX}}xx       |     안녕xx
A|안녕${PWD:+${SHELL}}xx     |     안녕bashxx
A|안녕${XXX:+000}xx          |     안녕xx
A|안녕${PWD:+000}xx          |     안녕000xx
A|'안녕${XX}'                |     안녕${XX}
A|"안녕${PWD}"               |     안녕/home
A|"안녕'$PWD'"               |     안녕'/home'
A|'"안녕"'                   |     "안녕"
A|안녕\$PWD                  |     안녕$PWD
A|"안녕\$PWD"                |     안녕$PWD
A|'안녕\$PWD'                |     안녕\$PWD
A|안녕${PWD                  |     error
A|안녕${PWD:=000}xx          |     error
A|안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
A|안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
A|안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
A|$KOREAN                    |     한국어
A|안녕$KOREAN                |     안녕한국어
A|${{aaa}                   |     error
A|${aaa}}                   |     }
A|${aaa                     |     error
A|${{aaa:-bbb}              |     error
A|${aaa:-bbb}}              |     bbb}
A|${aaa:-bbb                |     error
A|${aaa:-bbb}               |     bbb
A|${aaa:-${bbb:-ccc}}       |     ccc
A|${aaa:-bbb ${foo}         |     error
A|${aaa:-bbb {foo}          |     bbb {foo
A|${:}                      |     error
A|${:-bbb}                  |     error
A|${:+bbb}                  |     error

# Positional parameters won't be set:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_01
A|$1                        |
A|${1}                      |
A|${1:+bbb}                 |
A|${1:-bbb}                 |     bbb
A|$2                        |
A|${2}                      |
A|${2:+bbb}                 |
A|${2:-bbb}                 |     bbb
A|$3                        |
A|${3}                      |
A|${3:+bbb}                 |
A|${3:-bbb}                 |     bbb
A|$4                        |
A|${4}                      |
A|${4:+bbb}                 |
A|${4:-bbb}                 |     bbb
A|$5                        |
A|${5}                      |
A|${5:+bbb}                 |
A|${5:-bbb}                 |     bbb
A|$6                        |
A|${6}                      |
A|${6:+bbb}                 |
A|${6:-bbb}                 |     bbb
A|$7                        |
A|${7}                      |
A|${7:+bbb}                 |
A|${7:-bbb}                 |     bbb
A|$8                        |
A|${8}                      |
A|${8:+bbb}                 |
A|${8:-bbb}                 |     bbb
A|$9                        |
A|${9}                      |
A|${9:+bbb}                 |
A|${9:-bbb}                 |     bbb
A|$999                      |
A|${999}                    |
A|${999:+bbb}               |
A|${999:-bbb}               |     bbb
A|$999aaa                   |     aaa
A|${999}aaa                 |     aaa
A|${999:+bbb}aaa            |     aaa
A|${999:-bbb}aaa            |     bbbaaa
A|$001                      |
A|${001}                    |
A|${001:+bbb}               |
A|${001:-bbb}               |     bbb
A|$001aaa                   |     aaa
A|${001}aaa                 |     aaa
A|${001:+bbb}aaa            |     aaa
A|${001:-bbb}aaa            |     bbbaaa

# Special parameters won't be set in the Dockerfile:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_02
A|$@                        |
A|${@}                      |
A|${@:+bbb}                 |
A|${@:-bbb}                 |     bbb
A|$@@@                      |     @@
A|$@aaa                     |     aaa
A|${@}aaa                   |     aaa
A|${@:+bbb}aaa              |     aaa
A|${@:-bbb}aaa              |     bbbaaa
A|$*                        |
A|${*}                      |
A|${*:+bbb}                 |
A|${*:-bbb}                 |     bbb
A|$#                        |
A|${#}                      |
A|${#:+bbb}                 |
A|${#:-bbb}                 |     bbb
A|$?                        |
A|${?}                      |
A|${?:+bbb}                 |
A|${?:-bbb}                 |     bbb
A|$-                        |
A|${-}                      |
A|${-:+bbb}                 |
A|${-:-bbb}                 |     bbb
A|$$                        |
A|${$}                      |
A|${$:+bbb}                 |
A|${$:-bbb}                 |     bbb
A|$!                        |
A|${!}                      |
A|${!:+bbb}                 |
A|${!:-bbb}                 |     bbb
A|$0                        |
A|${0}                      |
A|${0:+bbb}                 |
A|${0:-bbb}                 |     bbb
"#;

    /// `BuildKit`'s `TestShellParser4EnvVars` over [`ENV_VAR_TEST`].
    #[test]
    fn buildkit_env_var_test_file() {
        let env = vars(&[
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("KOREAN", "한국어"),
            ("NULL", ""),
        ]);
        let mut checked = 0;
        for (number, line) in ENV_VAR_TEST.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('|').collect();
            assert_eq!(fields.len(), 3, "line {number}: {line:?}");
            let (platform, source, expected) =
                (fields[0].trim(), fields[1].trim(), fields[2].trim());
            if platform == "W" {
                continue;
            }
            let result = process_word(source, &env, '\\');
            if expected == "error" {
                assert!(result.is_err(), "line {number}: {source:?} gave {result:?}");
            } else {
                assert_eq!(result.as_deref(), Ok(expected), "line {number}: {source:?}");
            }
            checked += 1;
        }
        assert!(checked > 200, "only {checked} cases");
    }

    /// `BuildKit`'s `frontend/dockerfile/shell/wordsTest` (`TestShellParser4Words`):
    /// `ENV` lines add to the environment, the others are
    /// `input | comma-separated words`.
    #[test]
    fn buildkit_words_test_file() {
        let steps: &[(&str, &str)] = &[
            ("hello", "hello"),
            ("hello${hi}bye", "hellobye"),
            ("ENV", "hi=hi"),
            ("hello${hi}bye", "hellohibye"),
            ("ENV", "space=abc  def"),
            ("hello${space}bye", "helloabc,defbye"),
            ("hello\"${space}\"bye", "helloabc  defbye"),
            ("hello \"${space}\"bye", "hello,abc  defbye"),
            ("ENV", "leading=  ab c"),
            ("hello${leading}def", "hello,ab,cdef"),
            ("hello\"${leading}\" def", "hello  ab c,def"),
            ("hello\"${leading}\"", "hello  ab c"),
            ("hello${leading}", "hello,ab,c"),
            ("ENV", "trailing=ab c   "),
            ("hello${trailing}", "helloab,c"),
            ("hello${trailing}d", "helloab,c,d"),
            ("hello\"${trailing}\"d", "helloab c   d"),
            ("hel\"lo${trailing}\"", "helloab c   "),
            ("hello\" there  \"", "hello there  "),
            ("hello there", "hello,there"),
            ("hello\\ there", "hello there"),
            ("hello\" there", "error"),
            ("hello\\\" there", "hello\",there"),
            ("hello\"\\\\there\"", "hello\\there"),
            ("hello\"\\there\"", "hello\\there"),
            ("hello'\\\\there'", "hello\\\\there"),
            ("hello'\\there'", "hello\\there"),
            ("hello'$there'", "hello$there"),
        ];
        let mut env: Vec<(String, String)> = Vec::new();
        for &(input, expected) in steps {
            if input == "ENV" {
                let (key, value) = expected.split_once('=').unwrap_or((expected, ""));
                env.push((key.to_owned(), value.to_owned()));
                continue;
            }
            let result = process_words(input, &env, '\\');
            if expected == "error" {
                assert!(result.is_err(), "{input:?} gave {result:?}");
            } else {
                let expected: Vec<&str> = expected.split(',').collect();
                assert_eq!(
                    result,
                    Ok(expected.iter().map(|w| (*w).to_owned()).collect()),
                    "{input:?}"
                );
            }
        }
    }

    /// `BuildKit`'s `TestShellParserMandatoryEnvVars`.
    #[test]
    fn mandatory_vars() {
        let set = [("VAR", "plain"), ("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let unset = [("ARG", "x")];
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";

        assert_eq!(ok(no_empty, &set), "plain");
        assert!(err(no_empty, &empty).to_string().contains("message herex"));
        assert!(err(no_empty, &unset).to_string().contains("message herex"));

        assert_eq!(ok(no_unset, &set), "plain");
        assert_eq!(ok(no_unset, &empty), "");
        assert!(err(no_unset, &unset).to_string().contains("message herex"));
    }

    #[test]
    fn required_default_messages() {
        let e = err("${FOO?}", &[]);
        assert_eq!(
            e.kind,
            ExpandErrorKind::Required {
                name: "FOO".to_owned(),
                message: "is not allowed to be unset".to_owned()
            }
        );
        let e = err("${FOO:?}", &[("FOO", "")]);
        assert_eq!(
            e.to_string(),
            "failed to process \"${FOO:?}\": FOO: is not allowed to be empty"
        );
    }

    /// `BuildKit`'s `TestProcessWithMatches` (values and errors; the
    /// matched/unmatched sets are not part of this API).
    #[test]
    fn buildkit_process_with_matches() {
        let fb = [("FOO", "xxx"), ("BAR", "")];
        let cases: &[Case] = &[
            ("x", &[("DUMMY", "dummy")], Some("x")),
            ("x ${UNUSED}", &[("DUMMY", "dummy")], Some("x ")),
            ("x ${FOO}", &[("FOO", "y")], Some("x y")),
            ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &fb, Some("xxx  ccc")),
            (
                "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
                &fb,
                Some("xxx bbb ccc"),
            ),
            ("${FOO:-}", &fb, Some("xxx")),
            ("${FOO:-}", &[], Some("")),
            ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &fb, Some("aaa bbb ")),
            ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", &fb, Some("aaa  ")),
            ("${FOO?aaa}", &fb, Some("xxx")),
            ("${BAR?bbb}", &fb, Some("")),
            ("${BAZ?ccc}", &fb, None),
            ("${FOO:?aaa}", &fb, Some("xxx")),
            ("${BAR:?bbb}", &fb, None),
            ("${BAZ:?ccc}", &fb, None),
            ("${BAZ:?}", &fb, None),
            ("${FOO=aaa}", &fb, None),
            ("${FOO=:aaa}", &fb, None),
            ("${FOO=}", &[], None),
            // Special characters of regular expressions are literal; `}`
            // must be escaped not to end the `${}`.
            (
                r"${FOO#()[]{\}^$.\*\?|\\}",
                &[("FOO", r"()[]{}^$.*?|\x")],
                Some("x"),
            ),
            (r"${FOO%%\**}", &[("FOO", "xx**")], Some("xx")),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
            ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
            ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
            ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy")),
            (r"${FOO#?\?}", &[("FOO", "???y")], Some("?y")),
            (
                "${ABC:-.}${FOO%x}${ABC:-.}",
                &[("FOO", "xxyy")],
                Some(".xxyy."),
            ),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], Some("a")),
            ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
            (
                "${FOO%%$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("xxyy"),
            ),
            ("${FOO:#}", &[], None),
            ("${FOO:##}", &[], None),
            ("${FOO:%}", &[], None),
            ("${FOO:%%}", &[], None),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                Some("/foo.*/*.txt - /foo..*.txt"),
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                Some("/tmp/bar.txt - /bar.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                Some("/foo/b/c.txt - /foo/c.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                Some("https://google.de"),
            ),
            // Escaped separators: the `\` before `/` in the replacement stays.
            (
                r"${FOO//\//\/}",
                &[("FOO", "/tmp/foo.txt")],
                Some(r"\/tmp\/foo.txt"),
            ),
            // Partial input BuildKit keeps working on.
            (
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("wwxxyy"),
            ),
            ("${FOO//ww}", &[("FOO", "xxyy")], None),
            ("${FOO//}", &[("FOO", "xxyy")], None),
            ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO///}", &[], Some("")),
        ];
        for &(input, env, expected) in cases {
            match expected {
                Some(expected) => assert_eq!(ok(input, env), expected, "{input:?}"),
                None => {
                    err(input, env);
                }
            }
        }
    }

    /// `BuildKit`'s `TestProcessWithMatchesPlatform`.
    #[test]
    fn release_file_name() {
        let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
        let with = |more: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(more);
            ok(release, &all)
        };
        assert_eq!(
            with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
    }

    /// `BuildKit`'s `TestGetEnv`: the last definition wins.
    #[test]
    fn pairs_last_one_wins() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        assert_eq!(Vars::get(&pairs(&[]), "foo"), None);
        assert_eq!(Vars::get(&pairs(&[("foo", "")]), "foo"), Some(""));
        assert_eq!(
            Vars::get(&pairs(&[("foo", "bar"), ("car", "hat")]), "car"),
            Some("hat")
        );
        let list = pairs(&[("foo", "bar"), ("car", "hat"), ("car", "bike")]);
        assert_eq!(
            process_word("$foo $car", &list, '\\').as_deref(),
            Ok("bar bike")
        );
        let map: HashMap<String, String> = [("a".to_owned(), "1".to_owned())].into_iter().collect();
        assert_eq!(process_word("${a}${b:-2}", &map, '\\').as_deref(), Ok("12"));
    }

    /// `BuildKit`'s `TestReversePattern`.
    #[test]
    fn reverse_patterns() {
        for (pattern, expected) in [
            (r"a\*c", r"c\*a"),
            (r"\\\ab", r"b\a\\"),
            (r"ab\", r"\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            (r"\\b", r"b\\"),
            ("", ""),
        ] {
            assert_eq!(reverse_pattern(pattern), expected, "{pattern:?}");
        }
    }

    /// `BuildKit`'s `TestConvertShellPatternToRegex`, through the operators.
    #[test]
    fn pattern_escapes() {
        let value = [("V", r"(()[]{}^$.*?|\x")];
        assert_eq!(ok(r"${V#(()[]{\}^$.\*\?|\\}", &value), "x");
        assert_eq!(ok(r"${V#*}", &value), r"(()[]{}^$.*?|\x");
        assert_eq!(ok(r"${V##*}", &value), "");
        assert_eq!(ok(r"${V#?}", &value), r"()[]{}^$.*?|\x");
        // `\` may only escape `*`, `?`, `\`, `}` and `/` in a pattern.
        for bad in [r"${V#\x}", r"${V#a\}", r"${V%\\\}", r"${V/\x/y}"] {
            let e = err(bad, &value);
            assert!(
                matches!(
                    e.kind,
                    ExpandErrorKind::InvalidPattern { .. } | ExpandErrorKind::MissingBrace
                ),
                "{bad:?}: {e}"
            );
        }
        let e = err(r"${V#\x}", &value);
        assert_eq!(
            e.kind,
            ExpandErrorKind::InvalidPattern {
                pattern: r"\x".to_owned(),
                escape: r"'\x'".to_owned()
            }
        );
    }

    #[test]
    fn trims_shortest_and_longest() {
        let v = [("P", "/usr/local/lib/python3.12/site.py")];
        assert_eq!(ok("${P#*/}", &v), "usr/local/lib/python3.12/site.py");
        assert_eq!(ok("${P##*/}", &v), "site.py");
        assert_eq!(ok("${P%/*}", &v), "/usr/local/lib/python3.12");
        assert_eq!(ok("${P%%/*}", &v), "");
        assert_eq!(ok("${P%.py}", &v), "/usr/local/lib/python3.12/site");
        assert_eq!(ok("${P#nomatch}", &v), "/usr/local/lib/python3.12/site.py");
        assert_eq!(ok("${UNSET#*}", &v), "");
        assert_eq!(ok("${P/lib/LIB}", &v), "/usr/local/LIB/python3.12/site.py");
        assert_eq!(ok("${P//l/L}", &v), "/usr/LocaL/Lib/python3.12/site.py");
        assert_eq!(ok("${P/#/x}", &v), "/usr/local/lib/python3.12/site.py");
    }

    /// Go's regexp `.` does not match a newline, so neither do `*` and `?`.
    #[test]
    fn globs_stop_at_newlines() {
        let v = [("V", "ab\ncd")];
        assert_eq!(ok("${V#*}", &v), "ab\ncd");
        assert_eq!(ok("${V##*}", &v), "\ncd");
        assert_eq!(ok("${V%%*}", &v), "ab\n");
        assert_eq!(ok("${V#a?}", &v), "\ncd");
        assert_eq!(ok("${V#ab?}", &v), "ab\ncd");
        assert_eq!(ok("${V//*/x}", &v), "x\nx");
    }

    /// `${V//…}` goes through Go's `ReplaceAllString`: empty matches next to
    /// a match are skipped, `$0` (escaped from the lexer) is the match.
    #[test]
    fn replace_all_follows_go() {
        let v = [("V", "abc")];
        assert_eq!(ok("${V//*/x}", &v), "x");
        assert_eq!(ok("${E//*/x}", &[("E", "")]), "x");
        assert_eq!(ok("${V///-}", &v), "-a-b-c-");
        assert_eq!(ok(r"${V//b/[\$0]}", &v), r"a[\b]c");
        assert_eq!(ok(r"${V/b/[\$0]}", &v), r"a[\$0]c");
        assert_eq!(ok(r"${V//b/\$\$}", &v), r"a\$\$c");
        assert_eq!(ok("${V//b/$R}", &[("V", "abc"), ("R", "$$")]), "a$c");
        assert_eq!(ok(r"${V//b/\$x}", &v), r"a\c");
        assert_eq!(ok(r"${V//b/\$.}", &v), r"a\$.c");
    }

    #[test]
    fn custom_escape_character() {
        let v = [("A", "1")];
        let with = |text: &str| process_word(text, &vars(&v), '`');
        assert_eq!(with("`$A $A").as_deref(), Ok("$A 1"));
        assert_eq!(with(r"C:\path\$A").as_deref(), Ok(r"C:\path\1"));
        assert_eq!(with("\"a`\"b\"").as_deref(), Ok("a\"b"));
        assert_eq!(with("\"`$A\"").as_deref(), Ok("$A"));
        assert_eq!(with("\"`x\"").as_deref(), Ok("`x"));
        assert_eq!(with("a``b").as_deref(), Ok("a`b"));
        assert_eq!(
            process_words("a` b c", &vars(&v), '`'),
            Ok(vec!["a b".to_owned(), "c".to_owned()])
        );
    }

    #[test]
    fn names_and_literal_dollars() {
        let v = [("A", "1"), ("A_1", "2"), ("_", "3")];
        assert_eq!(ok("$A_1 $A-1 $_ ${A}_1", &v), "2 1-1 3 1_1");
        assert_eq!(ok("$ $. $/ $% $", &v), "$ $. $/ $% $");
        assert_eq!(ok("$1abc", &v), "abc");
        assert_eq!(ok("cost: 5$", &v), "cost: 5$");
        assert_eq!(ok("\\\\$A", &v), "\\1");
        assert_eq!(ok("'$A' \"$A\" $A", &v), "$A 1 1");
        assert_eq!(ok("\u{feff}$A", &v), "1");
    }

    #[test]
    fn malformed_input_is_an_error_naming_it() {
        for (text, kind) in [
            ("${", ExpandErrorKind::MissingBrace),
            ("${VAR", ExpandErrorKind::MissingBrace),
            ("${VAR:-x", ExpandErrorKind::MissingBrace),
            ("${VAR/x", ExpandErrorKind::MissingSlash),
            ("${VAR/x/y", ExpandErrorKind::MissingBrace),
            ("${}", ExpandErrorKind::BadSubstitution),
            ("${:-x}", ExpandErrorKind::BadSubstitution),
            ("${{x}", ExpandErrorKind::BadSubstitution),
            (
                "${1abc}",
                ExpandErrorKind::UnsupportedModifier("a".to_owned()),
            ),
            (
                "${VAR:=x}",
                ExpandErrorKind::UnsupportedModifier(":=".to_owned()),
            ),
            (
                "${VAR:#x}",
                ExpandErrorKind::UnsupportedModifier(":#".to_owned()),
            ),
            ("'abc", ExpandErrorKind::UnterminatedSingleQuote),
            ("\"abc", ExpandErrorKind::UnterminatedDoubleQuote),
            ("\"abc\\\"", ExpandErrorKind::UnterminatedDoubleQuote),
        ] {
            let e = err(text, &[]);
            assert_eq!(e.kind, kind, "{text:?}");
            assert_eq!(e.text, text);
            assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
        }
    }

    #[test]
    fn words_split_on_unquoted_whitespace() {
        let v = [("L", " a  b "), ("E", "")];
        let words = |text: &str| process_words(text, &vars(&v), '\\');
        let owned = |list: &[&str]| -> Result<Vec<String>, ExpandError> {
            Ok(list.iter().map(|w| (*w).to_owned()).collect())
        };
        assert_eq!(words("80/tcp  443"), owned(&["80/tcp", "443"]));
        assert_eq!(words("x${L}y"), owned(&["x", "a", "b", "y"]));
        assert_eq!(words("'x y' \"$L\""), owned(&["x y", " a  b "]));
        assert_eq!(words("'' $E \"\""), owned(&[]));
        assert_eq!(words("a\\ b\tc\n d"), owned(&["a b", "c", "d"]));
        assert_eq!(words("cat <<  EOF x"), owned(&["cat", "<<  EOF", "x"]));
        assert_eq!(words("a<b"), owned(&["a<b"]));
        assert_eq!(words(""), owned(&[]));
        // BuildKit gives ["b c", "d"] here (see `process_words`).
        assert_eq!(words("a${X:-b c} d"), owned(&["ab", "c", "d"]));
        assert_eq!(words("'x' \"a\"${X:-b}"), owned(&["x", "ab"]));
        assert!(words("'x").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let nested = |depth: usize| format!("{}x{}", "${A:-\"".repeat(depth), "\"}".repeat(depth));
        assert_eq!(ok(&nested(MAX_DEPTH - 1), &[]), "x");
        assert_eq!(err(&nested(100_000), &[]).kind, ExpandErrorKind::TooDeep);
        let unclosed = "${A:-".repeat(100_000);
        assert!(word(&unclosed, &[]).is_err());
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
    }

    /// Garbage never panics: every string over the alphabet of the
    /// syntax gives a result or an error.
    #[test]
    fn garbage_never_panics() {
        let alphabet: Vec<char> = "${}:-+?#%/*\\'\"aB_1 \n`<".chars().collect();
        let env = vars(&[("a", "x*y"), ("B", ""), ("_", "a b"), ("aB_1", "$a")]);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut errors = 0;
        for round in 0..20_000 {
            let len = rng.below(24);
            let text: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let escape = if round % 5 == 0 { '`' } else { '\\' };
            let word = process_word(&text, &env, escape);
            let words = process_words(&text, &env, escape);
            // Both read the same syntax, so both fail or neither does.
            assert_eq!(word.is_err(), words.is_err(), "{text:?}");
            if let Err(e) = word {
                assert_eq!(e.text, text);
                errors += 1;
            }
        }
        assert!(errors > 1_000 && errors < 19_000, "{errors} errors");
    }
}
