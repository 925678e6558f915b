//! Where images are copied from and to: a registry reference, or an OCI
//! layout directory written `oci:DIR[:TAG]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::{Error, Reference, Result};

/// A copy's source or destination.
///
/// ```
/// use oci_model::Endpoint;
/// let e: Endpoint = "oci:/tmp/layout:v1".parse()?;
/// assert!(matches!(e, Endpoint::Layout { ref tag, .. } if tag.as_deref() == Some("v1")));
/// let e: Endpoint = "127.0.0.1:5000/app:v1".parse()?;
/// assert!(matches!(e, Endpoint::Registry(_)));
/// # Ok::<(), oci_model::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An image in a registry.
    Registry(Reference),
    /// An image in an OCI layout directory, named by its `ref.name` tag.
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag; a source without one must hold exactly one manifest.
        tag: Option<String>,
    },
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("oci:") {
            // The tag is after the last ':' unless that ':' belongs to the
            // path (a '/' follows it).
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') => (d, Some(t)),
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(Error::InvalidEndpoint {
                    input: s.to_owned(),
                    reason: "`oci:` needs a directory, as in oci:DIR[:TAG]".into(),
                });
            }
            if let Some(t) = tag
                && (t.is_empty()
                    || t.len() > 128
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
            {
                return Err(Error::InvalidEndpoint {
                    input: s.to_owned(),
                    reason: format!("`{t}` is not a valid layout tag"),
                });
            }
            return Ok(Self::Layout {
                dir: PathBuf::from(dir),
                tag: tag.map(str::to_owned),
            });
        }
        // skopeo users write docker://; accept it.
        let text = s.strip_prefix("docker://").unwrap_or(s);
        Ok(Self::Registry(Reference::parse(text)?))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(r) => write!(f, "{r}"),
            Self::Layout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            Self::Layout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let cases = [
            ("oci:dir", "dir", None),
            ("oci:dir:v1", "dir", Some("v1")),
            ("oci:/a/b:c/d", "/a/b:c/d", None),
            ("oci:./x:y:latest", "./x:y", Some("latest")),
        ];
        for (input, dir, tag) in cases {
            assert_eq!(
                input.parse::<Endpoint>().unwrap(),
                Endpoint::Layout {
                    dir: dir.into(),
                    tag: tag.map(str::to_owned)
                },
                "{input}"
            );
        }
        assert_eq!(
            "docker://127.0.0.1:5000/a:b".parse::<Endpoint>().unwrap(),
            "127.0.0.1:5000/a:b".parse::<Endpoint>().unwrap()
        );
        for bad in ["oci:", "oci::tag", "oci:dir:bad tag", "Bad/Ref", ""] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
