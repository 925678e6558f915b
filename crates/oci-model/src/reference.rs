//! Image references: `host[:port]/path[:tag][@digest]` with Docker Hub
//! defaults, validated against the distribution grammar.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, Error, Result};

/// The registry an unqualified name (`alpine`, `user/app`) lives on.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed image reference.
///
/// ```
/// use oci_model::Reference;
/// let r: Reference = "alpine".parse()?;
/// assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
///
/// let r: Reference = "127.0.0.1:5000/team/app:v1".parse()?;
/// assert_eq!(r.registry(), "127.0.0.1:5000");
/// assert_eq!(r.repository(), "team/app");
/// assert_eq!(r.tag(), Some("v1"));
/// # Ok::<(), oci_model::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference. A reference with neither tag nor digest gets the
    /// tag `latest`, as docker, skopeo and crane do.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidReference {
            reference: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(bad("empty reference".into()));
        }
        if input.len() > 4096 || input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters".into()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(Digest::parse(d).map_err(|e| bad(e.to_string()))?),
            ),
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/', so a port
        // in the registry host is never taken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(bad)?;
        }
        let (registry, repository) = split_registry(name).map_err(bad)?;
        validate_repository(&repository).map_err(bad)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(format!(
                "name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written (`docker.io` for Docker Hub), with its port.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to send API requests to (`registry-1.docker.io` for Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one (it pins
    /// the content), else the tag.
    pub fn reference_str(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => "latest",
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        validate_tag(tag).map_err(|reason| Error::InvalidReference {
            reference: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest`, keeping the tag for display.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository on another registry host (for mirrors).
    pub fn with_registry(&self, registry: &str) -> Result<Self> {
        validate_registry(registry).map_err(|reason| Error::InvalidReference {
            reference: format!("{registry}/{}", self.repository),
            reason,
        })?;
        Ok(Self {
            registry: registry.to_ascii_lowercase(),
            ..self.clone()
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Splits `name` into (registry, repository) with Docker's rule: the first
/// component is a registry when it has a `.` or `:`, or is `localhost`.
fn split_registry(name: &str) -> std::result::Result<(String, String), String> {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.starts_with('[') =>
        {
            validate_registry(first)?;
            (first.to_ascii_lowercase(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => registry,
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    Ok((registry, repository))
}

fn validate_registry(registry: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry `{registry}` has an unclosed `[`"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry `{registry}` is not a valid IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => (
                None,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("registry `{registry}` is malformed"))?,
                ),
            ),
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry `{registry}` has an invalid port"));
    }
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            });
        if !ok {
            return Err(format!("registry host `{host}` is not a valid host name"));
        }
    }
    Ok(())
}

fn validate_repository(repo: &str) -> std::result::Result<(), String> {
    if repo.is_empty() {
        return Err("repository name is empty".into());
    }
    for component in repo.split('/') {
        if component.is_empty() {
            return Err(format!("repository `{repo}` has an empty path component"));
        }
        if !valid_path_component(component) {
            return Err(format!(
                "repository component `{component}` must be lowercase letters and digits, \
                 separated by `.`, `_`, `__` or dashes"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if b.is_empty() {
        return Err("tag is empty".into());
    }
    if b.len() > MAX_TAG_LEN {
        return Err(format!("tag is longer than {MAX_TAG_LEN} characters"));
    }
    if !word(b[0]) || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-') {
        return Err(format!(
            "tag `{tag}` may only hold letters, digits, `_`, `.` and `-`, and not start with `.` or `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_references() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        // input, registry, repository, tag, has digest, display
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, bool, &'a str);
        let cases: &[Case] = &[
            (
                "alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
                "docker.io/library/alpine:latest",
            ),
            (
                "user/app:1.0",
                "docker.io",
                "user/app",
                Some("1.0"),
                false,
                "docker.io/user/app:1.0",
            ),
            (
                "index.docker.io/alpine:3",
                "docker.io",
                "library/alpine",
                Some("3"),
                false,
                "docker.io/library/alpine:3",
            ),
            (
                "localhost/app",
                "localhost",
                "app",
                Some("latest"),
                false,
                "localhost/app:latest",
            ),
            (
                "localhost:5000/a/b/c:v_1.2-rc",
                "localhost:5000",
                "a/b/c",
                Some("v_1.2-rc"),
                false,
                "localhost:5000/a/b/c:v_1.2-rc",
            ),
            (
                "ghcr.io/org/fn__x-y.z:t",
                "ghcr.io",
                "org/fn__x-y.z",
                Some("t"),
                false,
                "ghcr.io/org/fn__x-y.z:t",
            ),
            (
                "[::1]:5000/app:v1",
                "[::1]:5000",
                "app",
                Some("v1"),
                false,
                "[::1]:5000/app:v1",
            ),
            (
                "Example.COM/app:v1",
                "example.com",
                "app",
                Some("v1"),
                false,
                "example.com/app:v1",
            ),
        ];
        for &(input, registry, repo, tag, has_digest, display) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repo, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest().is_some(), has_digest, "{input}");
            assert_eq!(r.to_string(), display, "{input}");
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{input}");
        }
        let r = Reference::parse(&format!("127.0.0.1:5000/app@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.reference_str(), d);
        let r = Reference::parse(&format!("127.0.0.1:5000/app:v1@{d}")).unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.reference_str(), d);
        assert_eq!(
            Reference::parse("alpine").unwrap().api_host(),
            DOCKER_HUB_API_HOST
        );
    }

    #[test]
    fn rejects_malformed_references() {
        let cases = [
            ("", "empty"),
            ("UPPER/app", "lowercase"),
            ("app:", "tag is empty"),
            ("app:-x", "not start"),
            ("app:a/b", "invalid port"),
            ("a//b", "empty path component"),
            ("host:5000/", "repository name is empty"),
            ("host:abc/app", "invalid port"),
            ("host:123456/app", "invalid port"),
            ("-bad.com/app", "valid host"),
            ("[zz]:5/app", "IPv6"),
            ("app@sha256:abc", "64 hex"),
            ("app@md5:abc", "unsupported"),
            ("app name", "whitespace"),
            ("app..x", "lowercase letters"),
            ("app-", "lowercase letters"),
            ("a___b", "lowercase letters"),
        ];
        for (input, want) in cases {
            let err = Reference::parse(input)
                .map(|r| panic!("{input:?} parsed as {r}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(err.contains("invalid reference"), "{input:?}: {err}");
        }
        let long_tag = format!("app:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = format!("example.com/{}", "a".repeat(260));
        assert!(Reference::parse(&long_name).is_err());
    }

    #[test]
    fn with_registry_swaps_the_host() {
        let r = Reference::parse("primary.example:5000/team/app:v1").unwrap();
        let m = r.with_registry("127.0.0.1:6000").unwrap();
        assert_eq!(m.to_string(), "127.0.0.1:6000/team/app:v1");
        assert!(r.with_registry("bad host").is_err());
    }
}
