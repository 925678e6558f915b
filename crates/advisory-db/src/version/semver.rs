//! Semantic versions as OSV's `SEMVER` ranges use them (semver 2.0.0
//! precedence; a leading `v` and missing minor or patch are tolerated).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SemVer<'a> {
    core: [u64; 3],
    pre: Vec<&'a str>,
}

impl<'a> SemVer<'a> {
    pub(crate) fn parse(text: &'a str) -> Option<SemVer<'a>> {
        if text.is_empty() || text.len() > 256 {
            return None;
        }
        let text = text.strip_prefix('v').unwrap_or(text);
        // Build metadata plays no part in precedence.
        let text = text.split_once('+').map_or(text, |(v, _)| v);
        let (core_text, pre_text) = match text.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (text, None),
        };
        let mut core = [0u64; 3];
        let mut parts = core_text.split('.');
        for (i, slot) in core.iter_mut().enumerate() {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    *slot = p.parse().unwrap_or(u64::MAX);
                }
                None if i > 0 => break,
                _ => return None,
            }
        }
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre_text {
            Some(p) => {
                let ids: Vec<&str> = p.split('.').collect();
                if ids.iter().any(|id| {
                    id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }) {
                    return None;
                }
                ids
            }
            None => Vec::new(),
        };
        Some(SemVer { core, pre })
    }
}

fn compare_identifier(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => {
            let (x, y) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

impl Ord for SemVer<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release sorts before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let ord = compare_identifier(a, b);
                        if ord != Ordering::Equal {
                            return ord;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for SemVer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_as_semver_2() {
        // semver.org's example chain, then core ordering.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2",
            "v1.10.0",
            "2.0.0",
        ];
        for pair in chain.windows(2) {
            let (a, b) = (
                SemVer::parse(pair[0]).unwrap(),
                SemVer::parse(pair[1]).unwrap(),
            );
            assert_eq!(a.cmp(&b), Ordering::Less, "{pair:?}");
        }
        assert_eq!(SemVer::parse("1.0.0+build.1"), SemVer::parse("1.0.0"));
        for bad in ["", "x", "1.0.0.0", "1..0", "1.0.0-", "1.0.0-a..b"] {
            assert_eq!(SemVer::parse(bad), None, "{bad}");
        }
    }
}
