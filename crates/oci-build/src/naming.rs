//! Names of function images: the default template
//! `{registry}/{namespace}/functions/user-{user}-func-{function}:v{version}-{sha8}`,
//! the `latest` rule, and tags from git.

use std::path::Path;
use std::process::Command;

use oci_model::{Digest, Reference};

use crate::{Error, Result};

/// The file whose bytes the default tag's `sha8` hashes.
pub const CODE_FILE: &str = "user_function.py";

/// The default image name of a function:
/// `{registry}/{namespace}/functions/user-{user}-func-{function}:v{version}-{code_sha}`.
///
/// `registry` is a host with an optional port; `namespace` one or more
/// lowercase path components; `user` and `function` one lowercase
/// component each (`[a-z0-9]` runs joined by `.`, `_` or `-`); `version`
/// tag characters (`[A-Za-z0-9_.-]`); `code_sha` 4 to 64 lowercase hex
/// characters (see [`code_sha8`]).
///
/// ```
/// let r = oci_build::naming::default_reference("127.0.0.1:5000", "acme", "alice", "hello", "3", "0123abcd")?;
/// assert_eq!(r.to_string(), "127.0.0.1:5000/acme/functions/user-alice-func-hello:v3-0123abcd");
/// # Ok::<(), oci_build::Error>(())
/// ```
pub fn default_reference(
    registry: &str,
    namespace: &str,
    user: &str,
    function: &str,
    version: &str,
    code_sha: &str,
) -> Result<Reference> {
    let bad = |part: &'static str, value: &str, reason: &str| Error::InvalidName {
        part,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if registry.is_empty() || registry.contains('/') {
        return Err(bad("registry", registry, "expected a host[:port]"));
    }
    if namespace.is_empty() || !namespace.split('/').all(is_component) {
        return Err(bad(
            "namespace",
            namespace,
            "expected lowercase path components ([a-z0-9] separated by '.', '_' or '-', joined by '/')",
        ));
    }
    for (part, value) in [("user", user), ("function", function)] {
        if !is_component(value) {
            return Err(bad(
                part,
                value,
                "expected lowercase letters and digits, separated by single '.', '_' or '-'",
            ));
        }
    }
    if version.is_empty()
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(bad(
            "version",
            version,
            "expected letters, digits, '_', '.' or '-'",
        ));
    }
    if !(4..=64).contains(&code_sha.len())
        || !code_sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad(
            "code sha",
            code_sha,
            "expected 4 to 64 lowercase hex characters",
        ));
    }
    let text = format!(
        "{registry}/{namespace}/functions/user-{user}-func-{function}:v{version}-{code_sha}"
    );
    Reference::parse(&text).map_err(|e| Error::InvalidName {
        part: "reference",
        value: text.clone(),
        reason: e.to_string(),
    })
}

/// One repository path component of the distribution grammar.
fn is_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
        && b.iter().all(|c| alnum(c) || b"._-".contains(c))
        && !b
            .windows(2)
            .any(|w| !alnum(&w[0]) && !alnum(&w[1]) && w != b"__" && w != b"--")
}

/// The first 8 hex characters of the SHA-256 of the exact bytes of
/// `dir/user_function.py` (no normalisation: a changed newline or comment
/// changes it; `requirements.txt` does not take part).
pub fn code_sha8(dir: &Path) -> Result<String> {
    let path = dir.join(CODE_FILE);
    let bytes = fs_err::read(&path).map_err(|source| Error::Io { path, source })?;
    Ok(Digest::of(&bytes).short(8).to_owned())
}

/// Refuses the tag `latest` (in any case, and the implicit one of a
/// reference without tag or digest) unless `allow_latest`: a function
/// image must name the code it runs.
pub fn check_tag(reference: &Reference, allow_latest: bool) -> Result<()> {
    let latest = match (reference.tag(), reference.digest()) {
        (Some(t), _) => t.eq_ignore_ascii_case("latest"),
        (None, digest) => digest.is_none(),
    };
    if latest && !allow_latest {
        return Err(Error::LatestTag {
            reference: reference.to_string(),
        });
    }
    Ok(())
}

/// The short commit id of `dir`'s git checkout (`git rev-parse --short
/// HEAD`), for tags that name the commit.
pub fn git_short_sha(dir: &Path) -> Result<String> {
    let fail = |message: String| Error::Git {
        dir: dir.to_owned(),
        message,
    };
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map_err(|e| fail(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(stderr.trim().to_owned()));
    }
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail(format!("unexpected output `{sha}`")));
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_and_bad_parts() {
        let r = default_reference(
            "reg.example:5000",
            "team/ml",
            "u1",
            "f.x",
            "1.2",
            "deadbeef",
        )
        .unwrap();
        assert_eq!(r.registry(), "reg.example:5000");
        assert_eq!(r.repository(), "team/ml/functions/user-u1-func-f.x");
        assert_eq!(r.tag(), Some("v1.2-deadbeef"));
        let cases = [
            (("", "ns", "u", "f", "1", "deadbeef"), "registry"),
            (("r", "NS", "u", "f", "1", "deadbeef"), "namespace"),
            (("r", "ns//x", "u", "f", "1", "deadbeef"), "namespace"),
            (("r", "ns", "Bob", "f", "1", "deadbeef"), "user"),
            (("r", "ns", "u", "-f", "1", "deadbeef"), "function"),
            (("r", "ns", "u", "a..b", "1", "deadbeef"), "function"),
            (("r", "ns", "u", "f", "1 2", "deadbeef"), "version"),
            (("r", "ns", "u", "f", "1", "DEADBEEF"), "code sha"),
            (("r", "ns", "u", "f", "1", "abc"), "code sha"),
            (("bad host!", "ns", "u", "f", "1", "deadbeef"), "reference"),
        ];
        for ((reg, ns, u, f, v, s), part) in cases {
            let err = default_reference(reg, ns, u, f, v, s).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidName { part: p, .. } if *p == part),
                "{reg} {ns} {u} {f} {v} {s}: {err}"
            );
        }
    }

    #[test]
    fn code_sha_hashes_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CODE_FILE), b"").unwrap();
        assert_eq!(code_sha8(dir.path()).unwrap(), "e3b0c442");
        std::fs::write(dir.path().join(CODE_FILE), b"\n").unwrap();
        assert_ne!(code_sha8(dir.path()).unwrap(), "e3b0c442");
        assert!(matches!(
            code_sha8(&dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn latest_is_refused_unless_allowed() {
        let parse = |s: &str| s.parse::<Reference>().unwrap();
        for r in ["r.io/a:latest", "r.io/a", "r.io/a:LATEST"] {
            assert!(matches!(
                check_tag(&parse(r), false),
                Err(Error::LatestTag { .. })
            ));
            check_tag(&parse(r), true).unwrap();
        }
        check_tag(&parse("r.io/a:v1"), false).unwrap();
        let pinned = parse(&format!("r.io/a@{}", Digest::of(b"x")));
        check_tag(&pinned, false).unwrap();
    }

    #[test]
    fn git_sha_of_a_repo_and_of_a_plain_dir() {
        let dir = tempfile::tempdir().unwrap();
        let err = git_short_sha(dir.path()).unwrap_err();
        assert!(err.to_string().contains("git"), "{err}");
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "{args:?}");
        };
        git(&["init", "-q"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ]);
        let sha = git_short_sha(dir.path()).unwrap();
        assert!(sha.len() >= 7, "{sha}");
    }
}
