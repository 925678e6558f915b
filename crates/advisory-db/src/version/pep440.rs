//! PEP 440 versions: parsing (with the spec's normalisations) and ordering.

use std::cmp::Ordering;

/// Longest version string accepted: real ones are a few dozen bytes.
const MAX_LEN: usize = 256;
/// Most release segments accepted (`1.2.3.4…`).
const MAX_SEGMENTS: usize = 32;

/// A parsed PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pep440 {
    epoch: u64,
    /// Release segments with trailing zeros removed (`1.0` = `1`).
    release: Vec<u64>,
    /// `a`=0, `b`=1, `rc`=2, with its number.
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<Local>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Local {
    Num(u64),
    Text(String),
}

impl Ord for Local {
    // PEP 440: numeric segments sort above alphanumeric ones.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Local::Num(a), Local::Num(b)) => a.cmp(b),
            (Local::Text(a), Local::Text(b)) => a.cmp(b),
            (Local::Num(_), Local::Text(_)) => Ordering::Greater,
            (Local::Text(_), Local::Num(_)) => Ordering::Less,
        }
    }
}

impl PartialOrd for Local {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A cursor over the lowercased version text.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        // Too many digits for u64 saturates: still ordered, never a panic.
        let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        Some(digits.parse().unwrap_or(u64::MAX))
    }
    /// An optional `.`, `-` or `_` separator.
    fn separator(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
}

impl Pep440 {
    /// Parses a version as `packaging.version.Version` does, or `None`.
    pub(crate) fn parse(text: &str) -> Option<Pep440> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_LEN {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        let mut c = Cursor {
            s: lower.as_bytes(),
            i: 0,
        };
        c.eat("v");
        let first = c.number()?;
        let (epoch, mut release) = if c.eat("!") {
            (first, vec![c.number()?])
        } else {
            (0, vec![first])
        };
        while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
            c.i += 1;
            release.push(c.number()?);
            if release.len() > MAX_SEGMENTS {
                return None;
            }
        }
        // Pre-release: [sep](a|b|c|rc|alpha|beta|pre|preview)[sep][N].
        let save = c.i;
        c.separator();
        let kind = [
            ("alpha", 0),
            ("a", 0),
            ("beta", 1),
            ("b", 1),
            ("preview", 2),
            ("pre", 2),
            ("rc", 2),
            ("c", 2),
        ]
        .into_iter()
        .find(|(word, _)| c.eat(word))
        .map(|(_, k)| k);
        let pre = match kind {
            Some(k) => {
                let at = c.i;
                c.separator();
                match c.number() {
                    Some(n) => Some((k, n)),
                    None => {
                        c.i = at;
                        Some((k, 0))
                    }
                }
            }
            None => {
                c.i = save;
                None
            }
        };
        // Post-release: -N, or [sep](post|rev|r)[sep][N].
        let save = c.i;
        let post = if c.peek() == Some(b'-') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
            c.i += 1;
            c.number()
        } else {
            c.separator();
            if c.eat("post") || c.eat("rev") || c.eat("r") {
                let at = c.i;
                c.separator();
                match c.number() {
                    Some(n) => Some(n),
                    None => {
                        c.i = at;
                        Some(0)
                    }
                }
            } else {
                c.i = save;
                None
            }
        };
        // Development release: [sep]dev[sep][N].
        let save = c.i;
        c.separator();
        let dev = if c.eat("dev") {
            let at = c.i;
            c.separator();
            match c.number() {
                Some(n) => Some(n),
                None => {
                    c.i = at;
                    Some(0)
                }
            }
        } else {
            c.i = save;
            None
        };
        // Local version: +label(.label)*, separators . - _.
        let mut local = Vec::new();
        if c.eat("+") {
            let rest = std::str::from_utf8(&c.s[c.i..]).ok()?;
            for part in rest.split(['.', '-', '_']) {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return None;
                }
                local.push(if part.bytes().all(|b| b.is_ascii_digit()) {
                    Local::Num(part.parse().unwrap_or(u64::MAX))
                } else {
                    Local::Text(part.to_owned())
                });
            }
            c.i = c.s.len();
        }
        if c.i != c.s.len() {
            return None;
        }
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        Some(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// Whether this is a pre-release or a development release.
    pub(crate) fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }
}

/// `packaging`'s sort key for pre, post and dev parts, as comparable tuples.
fn pre_key(v: &Pep440) -> (i8, u8, u64) {
    match (v.pre, v.post, v.dev) {
        // A dev release of a final version sorts before its pre-releases.
        (None, None, Some(_)) => (-1, 0, 0),
        (None, _, _) => (1, 0, 0),
        (Some((k, n)), _, _) => (0, k, n),
    }
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.release.cmp(&other.release))
            .then_with(|| pre_key(self).cmp(&pre_key(other)))
            // No post release sorts before any; no dev release after any.
            .then_with(|| {
                self.post
                    .map(|p| p as i128)
                    .unwrap_or(-1)
                    .cmp(&other.post.map(|p| p as i128).unwrap_or(-1))
            })
            .then_with(|| {
                self.dev
                    .map(|d| d as i128)
                    .unwrap_or(i128::MAX)
                    .cmp(&other.dev.map(|d| d as i128).unwrap_or(i128::MAX))
            })
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Pep440 {
        Pep440::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn orders_as_pep_440() {
        // Strictly increasing, from PEP 440's own examples.
        let order = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
            "5.3.1",
            "5.4",
            "1!0.1",
        ];
        for pair in order.windows(2) {
            assert_eq!(v(pair[0]).cmp(&v(pair[1])), Ordering::Less, "{pair:?}");
            assert_eq!(v(pair[1]).cmp(&v(pair[0])), Ordering::Greater, "{pair:?}");
        }
    }

    #[test]
    fn normalises_spellings() {
        for (a, b) in [
            ("1.0", "1.0.0"),
            ("1.0", "v1.0"),
            ("1.0a1", "1.0-alpha.1"),
            ("1.0rc1", "1.0c1"),
            ("1.0rc1", "1.0-preview1"),
            ("1.0b", "1.0b0"),
            ("1.0.post1", "1.0-1"),
            ("1.0.post1", "1.0-r1"),
            ("1.0.post0", "1.0.post"),
            ("1.0.dev0", "1.0-dev"),
            ("1.0+ubuntu.1", "1.0+ubuntu-1"),
            ("0!1.0", "1.0"),
            ("1.0RC1", "1.0rc1"),
        ] {
            assert_eq!(v(a), v(b), "{a} = {b}");
        }
    }

    #[test]
    fn refuses_what_packaging_refuses() {
        for bad in [
            "",
            "abc",
            "1.0+",
            "1.0+a..b",
            "1.0-beta-",
            "1..0",
            "1.0 2",
            "1.0++a",
        ] {
            assert_eq!(Pep440::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Pep440::parse(&"1.".repeat(200)), None);
    }
}
