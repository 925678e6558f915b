//! Debian control data: deb822 paragraphs (the `Packages` index, a
//! package's `control` file, dpkg's `status`) and the relation fields
//! (`Depends`, `Pre-Depends`, `Provides`).
//!
//! Both parsers take untrusted bytes and are bounded: a paragraph over
//! [`MAX_PARAGRAPH`] bytes is an error, not an allocation.

use std::cmp::Ordering;
use std::io::BufRead;

use crate::{Error, Result, compare_versions};

/// The most bytes of one paragraph (real ones are a few KiB; the longest
/// `Depends` lines of Debian stay far below).
pub const MAX_PARAGRAPH: usize = 1 << 20;

/// One deb822 paragraph: its fields in order, names as written, values
/// with continuation lines joined by `\n` (leading space kept off).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// `(name, value)` pairs in file order.
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of field `name` (case-insensitive, as deb822 says).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads deb822 paragraphs one at a time from `reader`, streamed: blank
/// lines separate paragraphs, `Name: value` starts a field, a line
/// starting with a space or tab continues it, `#` lines are comments.
///
/// ```
/// use debian_base::Paragraphs;
///
/// let text = "Package: dash\nVersion: 0.5.12-2\nDescription: shell\n more\n\nPackage: libc6\n";
/// let all: Vec<_> = Paragraphs::new(text.as_bytes()).collect::<Result<_, _>>()?;
/// assert_eq!(all.len(), 2);
/// assert_eq!(all[0].get("version"), Some("0.5.12-2"));
/// assert_eq!(all[0].get("Description"), Some("shell\nmore"));
/// # Ok::<(), debian_base::Error>(())
/// ```
pub struct Paragraphs<R> {
    reader: R,
    /// Where the text comes from, for errors.
    origin: String,
    line_no: u64,
    done: bool,
}

impl<R: BufRead> Paragraphs<R> {
    /// Paragraphs of `reader`.
    pub fn new(reader: R) -> Self {
        Self::named(reader, "control data")
    }

    /// Paragraphs of `reader`, whose errors name `origin`.
    pub fn named(reader: R, origin: impl Into<String>) -> Self {
        Self {
            reader,
            origin: origin.into(),
            line_no: 0,
            done: false,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Control {
            origin: self.origin.clone(),
            line: self.line_no,
            reason: reason.into(),
        }
    }

    fn next_paragraph(&mut self) -> Result<Option<Paragraph>> {
        let mut paragraph = Paragraph::default();
        let mut size = 0usize;
        let mut line = Vec::new();
        loop {
            line.clear();
            let room = (MAX_PARAGRAPH - size) as u64 + 2;
            let n = <&mut R as std::io::Read>::take(&mut self.reader, room)
                .read_until(b'\n', &mut line)
                .map_err(|e| self.bad(format!("read: {e}")))?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line_no += 1;
            size += n;
            if size > MAX_PARAGRAPH {
                return Err(self.bad(format!("paragraph over {MAX_PARAGRAPH} bytes")));
            }
            let text = std::str::from_utf8(&line).map_err(|_| self.bad("not UTF-8"))?;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                if paragraph.fields.is_empty() {
                    size = 0;
                    continue;
                }
                break;
            }
            if text.starts_with('#') {
                continue;
            }
            if text.starts_with([' ', '\t']) {
                let Some((_, value)) = paragraph.fields.last_mut() else {
                    return Err(self.bad("continuation line before any field"));
                };
                let more = text.trim();
                // A lone `.` stands for an empty line in long descriptions.
                if !value.is_empty() || !more.is_empty() {
                    value.push('\n');
                }
                value.push_str(more);
                continue;
            }
            let Some((name, value)) = text.split_once(':') else {
                return Err(self.bad(format!("`{}` is not `Name: value`", truncate(text))));
            };
            if name.is_empty() || !name.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(self.bad(format!("bad field name `{}`", truncate(name))));
            }
            paragraph
                .fields
                .push((name.to_owned(), value.trim().to_owned()));
        }
        Ok((!paragraph.fields.is_empty()).then_some(paragraph))
    }
}

impl<R: BufRead> Iterator for Paragraphs<R> {
    type Item = Result<Paragraph>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_paragraph() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A version operator of a relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Less,
    /// `<=` (also the obsolete `<`)
    LessEqual,
    /// `=`
    Equal,
    /// `>=` (also the obsolete `>`)
    GreaterEqual,
    /// `>>`
    Greater,
}

impl Op {
    /// Whether `version` satisfies `OP wanted`.
    pub fn allows(self, version: &str, wanted: &str) -> bool {
        let o = compare_versions(version, wanted);
        match self {
            Self::Less => o == Ordering::Less,
            Self::LessEqual => o != Ordering::Greater,
            Self::Equal => o == Ordering::Equal,
            Self::GreaterEqual => o != Ordering::Less,
            Self::Greater => o == Ordering::Greater,
        }
    }
}

/// One relation: `name[:arch] [(op version)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// The package (or virtual package) name, without an architecture
    /// qualifier.
    pub name: String,
    /// The version constraint.
    pub version: Option<(Op, String)>,
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some((op, v)) = &self.version {
            let op = match op {
                Op::Less => "<<",
                Op::LessEqual => "<=",
                Op::Equal => "=",
                Op::GreaterEqual => ">=",
                Op::Greater => ">>",
            };
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// Parses a relation field (`Depends`, `Pre-Depends`) into groups of
/// alternatives: `a (>= 1) | b, c:any` → `[[a (>= 1), b], [c]]`. Source
/// package restrictions (`[arch]`, `<profile>`) are dropped, as they do
/// not appear in binary packages.
///
/// ```
/// use debian_base::{Op, parse_relations};
///
/// let groups = parse_relations("libc6 (>= 2.34), media-types | mime-support, python3:any")?;
/// assert_eq!(groups.len(), 3);
/// assert_eq!(groups[0][0].version, Some((Op::GreaterEqual, "2.34".into())));
/// assert_eq!(groups[1][1].name, "mime-support");
/// assert_eq!(groups[2][0].name, "python3");
/// # Ok::<(), debian_base::Error>(())
/// ```
pub fn parse_relations(field: &str) -> Result<Vec<Vec<Relation>>> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in group.split('|') {
            alternatives.push(parse_relation(alt)?);
        }
        groups.push(alternatives);
    }
    Ok(groups)
}

/// Parses a `Provides` field: names with an optional `(= version)`.
///
/// ```
/// let provided = debian_base::parse_provides("libblas.so.3, python3-numpy-abi9 (= 1.24)")?;
/// assert_eq!(provided[1].name, "python3-numpy-abi9");
/// # Ok::<(), debian_base::Error>(())
/// ```
pub fn parse_provides(field: &str) -> Result<Vec<Relation>> {
    let groups = parse_relations(field)?;
    let mut out = Vec::new();
    for group in groups {
        if group.len() != 1 {
            return Err(bad_relation(field, "alternatives in Provides"));
        }
        out.extend(group);
    }
    Ok(out)
}

fn bad_relation(text: &str, reason: &str) -> Error {
    Error::Relation {
        text: truncate(text.trim()).to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_relation(text: &str) -> Result<Relation> {
    // Drop `[arch list]` and `<profiles>` (source package syntax).
    let mut clean = String::with_capacity(text.len());
    let mut depth: Option<char> = None;
    for c in text.chars() {
        match (depth, c) {
            (None, '[') => depth = Some(']'),
            (None, '<') if !clean.contains('(') => depth = Some('>'),
            (Some(end), c) if c == end => depth = None,
            (Some(_), _) => {}
            (None, c) => clean.push(c),
        }
    }
    let clean = clean.trim();
    let (name, constraint) = match clean.split_once('(') {
        Some((name, rest)) => {
            let Some(inner) = rest.trim_end().strip_suffix(')') else {
                return Err(bad_relation(text, "unclosed `(`"));
            };
            (name.trim(), Some(inner.trim()))
        }
        None => (clean, None),
    };
    let name = name.split_once(':').map_or(name, |(n, _)| n);
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
    {
        return Err(bad_relation(text, "not a package name"));
    }
    let version = match constraint {
        None => None,
        Some(c) => {
            let (op, rest) = [
                ("<<", Op::Less),
                ("<=", Op::LessEqual),
                (">=", Op::GreaterEqual),
                (">>", Op::Greater),
                ("=", Op::Equal),
                ("<", Op::LessEqual),
                (">", Op::GreaterEqual),
            ]
            .into_iter()
            .find_map(|(s, op)| c.strip_prefix(s).map(|rest| (op, rest)))
            .ok_or_else(|| bad_relation(text, "no version operator"))?;
            let v = rest.trim();
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(bad_relation(text, "bad version"));
            }
            Some((op, v.to_owned()))
        }
    };
    Ok(Relation {
        name: name.to_owned(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Paragraph>> {
        Paragraphs::new(text.as_bytes()).collect()
    }

    #[test]
    fn paragraphs_fields_and_continuations() {
        let text = "\n\n# comment\nPackage: a\nDescription: one\n two\n .\n three\n\n\n\nPackage: b\r\nVersion:1\r\n";
        let all = parse(text).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get("description"), Some("one\ntwo\n.\nthree"));
        assert_eq!(all[1].get("Version"), Some("1"));
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("\n \n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_paragraphs_are_named_errors() {
        for (text, want) in [
            (" continued\n", "continuation line before any field"),
            ("Package a\n", "is not `Name: value`"),
            (": x\n", "bad field name"),
            ("Package: \u{0}\nDéjà: x\n", "bad field name"),
            ("Package: a\n\u{ff}\n", "is not"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = Paragraphs::new(&b"Package: \xff\n"[..])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let huge = format!("Package: a\nDepends: {}\n", "x, ".repeat(MAX_PARAGRAPH / 3));
        let err = parse(&huge).unwrap_err().to_string();
        assert!(err.contains("paragraph over"), "{err}");
    }

    #[test]
    fn relations_alternatives_and_versions() {
        let groups =
            parse_relations("a (>= 1.0~), b:any (<< 2) | c [amd64] <!nocheck>, d (= 1:2-3) ,")
                .unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0][0].to_string(), "a (>= 1.0~)");
        assert_eq!(groups[1][0].to_string(), "b (<< 2)");
        assert_eq!(groups[1][1].to_string(), "c");
        assert_eq!(groups[2][0].version, Some((Op::Equal, "1:2-3".into())));
        assert_eq!(
            parse_relations("x (> 1)").unwrap()[0][0]
                .version
                .as_ref()
                .unwrap()
                .0,
            Op::GreaterEqual
        );
        for bad in ["a (>= 1", "a (~ 1)", "A", "a (>= )", "a | ", "a (>= 1 2)"] {
            assert!(parse_relations(bad).is_err(), "{bad}");
        }
        assert!(parse_provides("a | b").is_err());
        assert!(Op::Less.allows("1", "2") && !Op::Less.allows("2", "2"));
        assert!(Op::Greater.allows("3", "2") && Op::LessEqual.allows("2", "2"));
    }
}
