//! Heredocs (`RUN <<EOF`, `COPY <<A <<B /dir/`) found as `BuildKit`'s
//! parser finds them, for every `RUN`, `COPY` and `ADD` in shell form,
//! wherever the marker stands on the line and however many there are.
//!
//! [`prepare`] returns the heredocs of each instruction and the Dockerfile
//! with their bodies blanked out (every byte but newlines a space) and the
//! `<<` of each marker replaced by `""`, so that `parse-dockerfile` (which
//! reads only one heredoc, and only at the start of a `RUN`) sees plain
//! words at unchanged offsets: spans into the prepared text are spans into
//! the original.
//!
//! ```
//! use dockerfile_syntax::heredoc::prepare;
//! let text = "FROM scratch\nRUN <<A cat - <<-\"B\"\none $X\nA\n\ttwo\n\tB\n";
//! let prepared = prepare(text)?;
//! let docs = &prepared.heredocs[&13];
//! assert_eq!((docs[0].name.as_str(), docs[0].content.as_str(), docs[0].expand), ("A", "one $X\n", true));
//! assert_eq!((docs[1].name.as_str(), docs[1].data(), docs[1].expand), ("B", "two\n".to_owned(), false));
//! assert_eq!(&text[docs[1].marker..docs[1].marker + 3], "<<-");
//! assert!(dockerfile_syntax::parse_dockerfile::parse(&prepared.text).is_ok());
//! # Ok::<(), dockerfile_syntax::heredoc::HeredocError>(())
//! ```

use std::collections::BTreeMap;

/// The most heredocs one Dockerfile may hold.
const MAX_HEREDOCS: usize = 1024;

/// One heredoc of an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, unquoted (`EOF` for `<<"EOF"`); also the file name
    /// of a `COPY` heredoc.
    pub name: String,
    /// `<<-`: leading tabs are stripped from the body's lines.
    pub chomp: bool,
    /// Whether the delimiter was unquoted: a `COPY` body is then expanded.
    pub expand: bool,
    /// The body as written, each line ending with `\n`.
    pub content: String,
    /// Byte offset of the marker word (`<<EOF`, `2<<-EOF`) in the text.
    pub marker: usize,
}

impl Heredoc {
    /// The body with leading tabs removed from every line for `<<-`.
    pub fn data(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// A Dockerfile with its heredocs taken out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The text to parse: bodies blanked, markers made plain words, every
    /// offset unchanged.
    pub text: String,
    /// The heredocs of each instruction, by the offset of its keyword, in
    /// the order of their markers.
    pub heredocs: BTreeMap<usize, Vec<Heredoc>>,
}

/// A heredoc whose end never comes, or too many heredocs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeredocError {
    /// No line holds only the delimiter after the marker.
    #[error("unterminated heredoc {name:?}")]
    Unterminated {
        /// The delimiter.
        name: String,
        /// Byte offset of the marker.
        marker: usize,
    },
    /// More heredocs than a Dockerfile may hold.
    #[error("more than {MAX_HEREDOCS} heredocs")]
    TooMany,
}

impl HeredocError {
    /// Byte offset in the text the error is about.
    pub fn offset(&self) -> usize {
        match self {
            Self::Unterminated { marker, .. } => *marker,
            Self::TooMany => 0,
        }
    }
}

/// Lines of `text` as (start offset, line without its `\n` or `\r\n`,
/// offset after its newline).
fn lines(text: &str) -> Vec<(usize, &str, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[start..end]
            .strip_suffix('\r')
            .unwrap_or(&text[start..end]);
        let next = (end + 1).min(text.len());
        out.push((start, line, next.max(end)));
        start = end + 1;
    }
    out
}

/// The escape character the parser directives at the top choose.
fn escape_of(lines: &[(usize, &str, usize)]) -> char {
    for (_, line, _) in lines {
        let Some(rest) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().to_ascii_lowercase();
        if key == "escape" {
            return match value.trim() {
                "`" => '`',
                _ => '\\',
            };
        }
        if key != "syntax" && key != "check" {
            break;
        }
    }
    '\\'
}

/// Whether `line` continues on the next one (ends with the escape
/// character, blanks after it allowed).
fn continues(line: &str, escape: char) -> bool {
    line.trim_end_matches([' ', '\t']).ends_with(escape)
}

/// Finds every heredoc of `text`; see the module documentation.
///
/// # Errors
/// A heredoc without its terminating line, or more than 1024 heredocs.
pub fn prepare(text: &str) -> Result<Prepared, HeredocError> {
    let lines = lines(text);
    let escape = escape_of(&lines);
    let mut masked = text.as_bytes().to_vec();
    let mut heredocs: BTreeMap<usize, Vec<Heredoc>> = BTreeMap::new();
    let mut count = 0usize;
    let mut i = 0;
    while i < lines.len() {
        let (start, line, _) = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let keyword_at = start + (line.len() - trimmed.len());
        // The instruction's lines: continuations, skipping blank and
        // comment lines inside it as the parser does.
        let mut parts = vec![(keyword_at, trimmed)];
        let mut last = i;
        while continues(lines[last].1, escape) && last + 1 < lines.len() {
            last += 1;
            let (s, l, _) = lines[last];
            let t = l.trim_start();
            if !(t.is_empty() || t.starts_with('#')) {
                parts.push((s, l));
            }
        }
        i = last + 1;
        let keyword: String = trimmed
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if !matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            continue;
        }
        let mut markers = Vec::new();
        let mut first = true;
        for (offset, part) in &parts {
            let skip = if first { keyword.len() } else { 0 };
            let rest = &part[skip..];
            if first && rest.trim_start().starts_with('[') {
                // The exec (JSON) form has no heredocs.
                break;
            }
            first = false;
            for (at, word) in words(rest) {
                if let Some(h) = parse_marker(word) {
                    markers.push((offset + skip + at, h));
                }
            }
        }
        for (marker, (name, chomp, expand)) in markers {
            count += 1;
            if count > MAX_HEREDOCS {
                return Err(HeredocError::TooMany);
            }
            let mut content = String::new();
            let mut terminated = false;
            while i < lines.len() {
                let (s, l, next) = lines[i];
                i += 1;
                masked[s..next]
                    .iter_mut()
                    .filter(|b| **b != b'\n')
                    .for_each(|b| *b = b' ');
                let candidate = if chomp { l.trim_start_matches('\t') } else { l };
                if candidate == name {
                    terminated = true;
                    break;
                }
                content.push_str(l);
                content.push('\n');
            }
            if !terminated {
                return Err(HeredocError::Unterminated { name, marker });
            }
            let lt = marker + text[marker..].find("<<").unwrap_or(0);
            masked[lt..lt + 2].copy_from_slice(b"\"\"");
            heredocs.entry(keyword_at).or_default().push(Heredoc {
                name,
                chomp,
                expand,
                content,
                marker,
            });
        }
    }
    let text =
        String::from_utf8(masked).expect("only ASCII bytes were replaced, whole lines or `<<`");
    Ok(Prepared { text, heredocs })
}

/// Shell words of `line` with their byte offsets, quotes and escapes kept
/// (`BuildKit` splits with raw quotes and escapes, escape `\`).
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quote = None;
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(_), _) => {}
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push((s, &line[s..at]));
                }
                continue;
            }
            (None, '\\') => {
                start.get_or_insert(at);
                chars.next();
                continue;
            }
            (None, '"' | '\'') => quote = Some(c),
            (None, _) => {}
        }
        start.get_or_insert(at);
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// A heredoc marker word (`<<EOF`, `<<-'EOF'`, `2<<EOF`): its delimiter,
/// whether it chomps tabs, whether its body expands; as `BuildKit`'s
/// `ParseHeredoc` reads it.
pub fn parse_marker(word: &str) -> Option<(String, bool, bool)> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    // One word once quotes and escapes are read.
    let mut name = String::new();
    let mut quoted = false;
    let mut quote = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => name.push(chars.next()?),
            (Some(_), c) => name.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                quoted = true;
            }
            (None, '\\') => name.push(chars.next()?),
            (None, c) if c.is_whitespace() => return None,
            (None, c) => name.push(c),
        }
    }
    if quote.is_some() || name.is_empty() {
        return None;
    }
    Some((name, chomp, !quoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_read_as_buildkit_reads_them() {
        assert_eq!(parse_marker("<<EOF"), Some(("EOF".into(), false, true)));
        assert_eq!(parse_marker("<<-EOF"), Some(("EOF".into(), true, true)));
        assert_eq!(
            parse_marker("<<\"EOF\""),
            Some(("EOF".into(), false, false))
        );
        assert_eq!(parse_marker("<<'E O'"), Some(("E O".into(), false, false)));
        assert_eq!(parse_marker("2<<X"), Some(("X".into(), false, true)));
        assert_eq!(parse_marker("<<"), None);
        assert_eq!(parse_marker("a<<EOF"), None);
        assert_eq!(parse_marker("<<E<F"), None);
        assert_eq!(parse_marker("<<\"EOF"), None);
    }

    #[test]
    fn bodies_are_blanked_and_offsets_kept() {
        let text = "FROM scratch\nCOPY <<A <<B /d/\na\nA\nb\nB\nRUN echo \"<<NOT\" && cat <<C\nc\nC\nENV X=1\n";
        let p = prepare(text).unwrap();
        assert_eq!(p.text.len(), text.len());
        assert_eq!(p.heredocs.len(), 2);
        let copy = &p.heredocs[&13];
        assert_eq!(copy.len(), 2);
        assert_eq!(copy[1].content, "b\n");
        let run = p.heredocs.values().nth(1).unwrap();
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].name, "C");
        let parsed = crate::parse_dockerfile::parse(&p.text).unwrap();
        assert_eq!(parsed.instructions.len(), 4);
        assert!(p.text.contains("COPY \"\"A \"\"B /d/"));
    }

    #[test]
    fn the_exec_form_and_other_instructions_have_none() {
        let text = "FROM scratch\nRUN [\"sh\", \"-c\", \"cat <<EOF\"]\nENV A=<<B\n";
        let p = prepare(text).unwrap();
        assert!(p.heredocs.is_empty());
        assert_eq!(p.text, text);
    }

    #[test]
    fn an_unterminated_heredoc_is_named() {
        let err = prepare("FROM scratch\nRUN <<EOF\nno end\n").unwrap_err();
        assert_eq!(
            err,
            HeredocError::Unterminated {
                name: "EOF".into(),
                marker: 17
            }
        );
    }

    #[test]
    fn continuation_lines_may_hold_markers() {
        let text = "FROM scratch\nRUN cat <<A \\\n  && cat <<B\na\nA\nb\nB\n";
        let p = prepare(text).unwrap();
        let docs = &p.heredocs[&13];
        assert_eq!(
            docs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["A", "B"]
        );
    }
}
