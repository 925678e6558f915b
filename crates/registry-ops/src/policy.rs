//! The retention policy, in TOML.

use serde::Deserialize;

use crate::{Error, Result};

/// What `hoist gc` keeps. Every field has the seeds' default:
///
/// ```toml
/// [functions]
/// keep_days = 90        # kept this long after their last use
/// keep_versions = 10    # at most this many newest versions per function
/// delete_orphans = true # images of deleted functions go
///
/// [latest]
/// keep_days = 30        # a `latest` tag unused this long goes
///
/// [base]
/// repositories = []     # repository prefixes never deleted, e.g. "acme/base/"
/// ```
///
/// ```
/// let p = registry_ops::Policy::from_toml("[functions]\nkeep_versions = 3\n")?;
/// assert_eq!((p.functions.keep_days, p.functions.keep_versions), (90, 3));
/// assert!(registry_ops::Policy::from_toml("[functions]\nkeep_dayz = 3\n").is_err());
/// # Ok::<(), registry_ops::Error>(())
/// ```
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Policy {
    /// Function images (`…/functions/user-{user}-func-{function}`).
    pub functions: Functions,
    /// `latest` tags, in any repository.
    pub latest: Latest,
    /// Base images.
    pub base: Base,
}

/// The function images' rules.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Functions {
    /// Days an image is kept after its last use (or its creation, when
    /// never used).
    pub keep_days: u32,
    /// The newest versions kept per function, whatever their use.
    pub keep_versions: u32,
    /// Whether the images of deleted functions are removed.
    pub delete_orphans: bool,
}

/// The `latest` tags' rule.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Latest {
    /// Days a `latest` tag is kept after its image's last use.
    pub keep_days: u32,
}

/// Base images: never deleted.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Base {
    /// Repository prefixes (`acme/base/`, or a whole name) whose images
    /// are never deleted, beside every image marked immutable.
    pub repositories: Vec<String>,
}

impl Default for Functions {
    fn default() -> Self {
        Self {
            keep_days: 90,
            keep_versions: 10,
            delete_orphans: true,
        }
    }
}

impl Default for Latest {
    fn default() -> Self {
        Self { keep_days: 30 }
    }
}

/// The largest policy file read.
pub const MAX_POLICY_BYTES: usize = 64 << 10;

impl Policy {
    /// Parses a policy; missing fields take the defaults. Zero days or
    /// versions are refused: they would delete everything at once.
    pub fn from_toml(text: &str) -> Result<Self> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(Error::Policy(format!(
                "larger than {MAX_POLICY_BYTES} bytes"
            )));
        }
        let p: Self = toml::from_str(text).map_err(|e| Error::Policy(e.to_string()))?;
        for (what, n) in [
            ("functions.keep_days", p.functions.keep_days),
            ("functions.keep_versions", p.functions.keep_versions),
            ("latest.keep_days", p.latest.keep_days),
        ] {
            if n == 0 {
                return Err(Error::Policy(format!("{what} must be at least 1")));
            }
        }
        if p.base.repositories.iter().any(String::is_empty) {
            return Err(Error::Policy(
                "base.repositories has an empty prefix".into(),
            ));
        }
        Ok(p)
    }

    /// Whether `repository` is a base image repository.
    pub fn is_base(&self, repository: &str) -> bool {
        self.base
            .repositories
            .iter()
            .any(|p| repository == p.trim_end_matches('/') || repository.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let p = Policy::from_toml("").unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(p.functions.keep_days, 90);
        assert_eq!(p.functions.keep_versions, 10);
        assert_eq!(p.latest.keep_days, 30);
    }

    #[test]
    fn refuses_zero_unknown_and_huge() {
        for bad in [
            "[functions]\nkeep_days = 0\n",
            "[latest]\nkeep_days = 0\n",
            "[functions]\nkeep_versions = 0\n",
            "[functions]\nkeep_days = -1\n",
            "[other]\n",
            "[base]\nrepositories = [\"\"]\n",
            "not toml",
        ] {
            assert!(Policy::from_toml(bad).is_err(), "{bad}");
        }
        let huge = format!("# {}\n", "x".repeat(MAX_POLICY_BYTES));
        assert!(Policy::from_toml(&huge).is_err());
    }

    #[test]
    fn base_prefixes() {
        let p = Policy::from_toml("[base]\nrepositories = [\"acme/base/\", \"tools/python\"]\n")
            .unwrap();
        assert!(p.is_base("acme/base/debian"));
        assert!(p.is_base("tools/python"));
        assert!(!p.is_base("acme/basement"));
        assert!(!p.is_base("acme/functions/user-a-func-b"));
    }
}
