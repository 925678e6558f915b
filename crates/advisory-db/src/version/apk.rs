//! Alpine package versions, ordered as apk-tools orders them.

use std::cmp::Ordering;

/// One token of an apk version, in apk-tools' token order: when two
/// versions agree up to a point, the one whose next token kind comes later
/// in this list is the smaller (`1.2` < `1.2.1`, `1.2a` < `1.2.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// A release component (`1`, `.02`): the first compares as a number,
    /// a later one with a leading zero as a decimal fraction.
    Digit {
        first: bool,
        text: &'a str,
    },
    Letter(u8),
    /// `_alpha` … `_rc` are negative (before the plain release), `_cvs` …
    /// `_p` positive.
    Suffix(i8),
    SuffixNo(u64),
    Revision(u64),
    End,
    Invalid,
}

impl Tok<'_> {
    fn kind(self) -> i8 {
        match self {
            Tok::Invalid => -1,
            Tok::Digit { .. } => 1,
            Tok::Letter(_) => 2,
            Tok::Suffix(_) => 3,
            Tok::SuffixNo(_) => 4,
            Tok::Revision(_) => 5,
            Tok::End => 6,
        }
    }
}

const SUFFIXES: [(&str, i8); 9] = [
    ("alpha", -4),
    ("beta", -3),
    ("pre", -2),
    ("rc", -1),
    ("cvs", 1),
    ("svn", 2),
    ("git", 3),
    ("hg", 4),
    ("p", 5),
];

struct Tokens<'a> {
    s: &'a str,
    i: usize,
    /// What the previous token was, which decides what may follow.
    prev: Tok<'a>,
    started: bool,
}

fn number(text: &str) -> u64 {
    text.parse().unwrap_or(u64::MAX)
}

impl<'a> Tokens<'a> {
    fn new(s: &'a str) -> Self {
        Tokens {
            s,
            i: 0,
            prev: Tok::End,
            started: false,
        }
    }

    fn digits(&mut self) -> &'a str {
        let start = self.i;
        while self
            .s
            .as_bytes()
            .get(self.i)
            .is_some_and(u8::is_ascii_digit)
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn next(&mut self) -> Tok<'a> {
        let b = self.s.as_bytes();
        let tok = if !self.started {
            self.started = true;
            match self.digits() {
                "" => Tok::Invalid,
                text => Tok::Digit { first: true, text },
            }
        } else if matches!(self.prev, Tok::Invalid | Tok::End) {
            self.prev
        } else {
            // A commit hash (`~abc123`) does not take part in ordering.
            if b.get(self.i) == Some(&b'~') {
                self.i += 1;
                while b.get(self.i).is_some_and(u8::is_ascii_hexdigit) {
                    self.i += 1;
                }
            }
            let c = b.get(self.i).copied();
            match (self.prev, c) {
                (_, None) => Tok::End,
                (Tok::Digit { .. }, Some(b'.'))
                    if b.get(self.i + 1).is_some_and(u8::is_ascii_digit) =>
                {
                    self.i += 1;
                    Tok::Digit {
                        first: false,
                        text: self.digits(),
                    }
                }
                (Tok::Digit { .. }, Some(c)) if c.is_ascii_lowercase() => {
                    self.i += 1;
                    Tok::Letter(c)
                }
                (
                    Tok::Digit { .. } | Tok::Letter(_) | Tok::Suffix(_) | Tok::SuffixNo(_),
                    Some(b'_'),
                ) => {
                    self.i += 1;
                    match SUFFIXES
                        .iter()
                        .find(|(name, _)| self.s[self.i..].starts_with(name))
                    {
                        Some(&(name, rank)) => {
                            self.i += name.len();
                            Tok::Suffix(rank)
                        }
                        None => Tok::Invalid,
                    }
                }
                (Tok::Suffix(_), Some(c)) if c.is_ascii_digit() => {
                    Tok::SuffixNo(number(self.digits()))
                }
                (Tok::Revision(_), Some(_)) => Tok::Invalid,
                (_, Some(b'-')) if self.s[self.i..].starts_with("-r") => {
                    self.i += 2;
                    match self.digits() {
                        "" => Tok::Invalid,
                        text => Tok::Revision(number(text)),
                    }
                }
                _ => Tok::Invalid,
            }
        };
        self.prev = tok;
        tok
    }
}

/// Whether apk-tools would accept `v` as a version.
pub(crate) fn is_valid(v: &str) -> bool {
    if v.is_empty() || v.len() > 256 {
        return false;
    }
    let mut t = Tokens::new(v);
    loop {
        match t.next() {
            Tok::End => return true,
            Tok::Invalid => return false,
            _ => {}
        }
    }
}

fn compare_digits(a: (bool, &str), b: (bool, &str)) -> Ordering {
    let fraction = !a.0 && !b.0 && (a.1.starts_with('0') || b.1.starts_with('0'));
    if fraction {
        // `1.02` vs `1.1`: leading zeros make the component a fraction.
        a.1.cmp(b.1)
    } else {
        let (x, y) = (a.1.trim_start_matches('0'), b.1.trim_start_matches('0'));
        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
    }
}

/// Compares two apk versions (`1.2.3_rc1-r0`). Invalid input sorts by
/// where it stops being valid, so the order stays total and antisymmetric.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    let (mut ta, mut tb) = (Tokens::new(a), Tokens::new(b));
    loop {
        let (x, y) = (ta.next(), tb.next());
        let ord = match (x, y) {
            (
                Tok::Digit {
                    first: f1,
                    text: t1,
                },
                Tok::Digit {
                    first: f2,
                    text: t2,
                },
            ) => compare_digits((f1, t1), (f2, t2)),
            (Tok::Letter(p), Tok::Letter(q)) => p.cmp(&q),
            (Tok::Suffix(p), Tok::Suffix(q)) => p.cmp(&q),
            (Tok::SuffixNo(p), Tok::SuffixNo(q)) | (Tok::Revision(p), Tok::Revision(q)) => {
                p.cmp(&q)
            }
            (Tok::End, Tok::End) | (Tok::Invalid, Tok::Invalid) => {
                // Equal so far and both done: the rest of the text decides.
                return a[ta.i..].cmp(&b[tb.i..]);
            }
            _ => {
                // Kinds differ: a pre-release suffix makes its side smaller;
                // otherwise the side that goes on (earlier kind) is greater.
                if let Tok::Suffix(r) = x
                    && r < 0
                {
                    return Ordering::Less;
                }
                if let Tok::Suffix(r) = y
                    && r < 0
                {
                    return Ordering::Greater;
                }
                return y.kind().cmp(&x.kind());
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_as_apk_does() {
        // Each pair: a < b, as `apk version -t a b` prints `<`.
        for (a, b) in [
            ("1.2.3-r0", "1.2.3-r1"),
            ("1.2.3-r9", "1.2.3-r10"),
            ("1.2.3-r1", "1.2.4-r0"),
            ("3.1.3-r5", "3.1.4-r0"),
            ("1.9", "1.10"),
            ("1.2", "1.2.1"),
            ("1.2", "1.2-r1"),
            ("1.0_alpha1", "1.0_beta1"),
            ("1.0_beta2", "1.0_rc1"),
            ("1.0_rc1", "1.0"),
            ("1.0_rc1", "1.0-r0"),
            ("1.0", "1.0_p1"),
            ("1.0_p1", "1.0_p2"),
            ("1.0", "1.0a"),
            ("1.0a", "1.0b"),
            ("1.0a", "1.0.1"),
            ("1.01", "1.1"),
            ("2.36-r0", "10.0-r0"),
            ("1.0_git20230101", "1.0_p1"),
        ] {
            assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare(b, a), Ordering::Greater, "{b} > {a}");
        }
        assert_eq!(compare("1.2.3-r0", "1.2.3-r0"), Ordering::Equal);
        for bad in ["", "abc", "1.2-x", "1.2_foo", "1.2-r1a"] {
            assert!(!is_valid(bad), "{bad}");
        }
        for good in ["1.2.3-r0", "1.0_rc1_p2-r3", "2.0a", "1.0~abc1-r0"] {
            assert!(is_valid(good), "{good}");
        }
    }
}
