//! OCI 1.1 referrers: artifacts that point at an image through their
//! `subject`, listed by a registry's referrers API or, where a registry has
//! none (distribution 2.8), by the fallback index kept at the tag
//! `sha256-<hex>` of the subject's digest. Both are image indexes; this
//! module reads them from untrusted bytes (size and entry count bounded,
//! every digest typed) and writes the fallback one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, Error, MAX_MANIFEST_BYTES, Result, media_type};

/// The most entries read from one referrers index: a 4 MiB index holds
/// about 20 000 minimal descriptors, so this bounds the work per subject
/// long before that.
pub const MAX_REFERRERS: usize = 10_000;

/// The media type and bytes of the empty config (`{}`) that artifacts
/// without a config of their own point at, as the image spec 1.1 says.
pub const EMPTY_JSON: &[u8] = b"{}";

/// One entry of a referrers index: an artifact manifest that refers to the
/// subject.
///
/// ```
/// use oci_model::{Digest, Referrer};
/// let r = Referrer::new("application/vnd.oci.image.manifest.v1+json", Digest::of(b"m"), 1)
///     .artifact_type("application/spdx+json");
/// assert_eq!(r.artifact_type.as_deref(), Some("application/spdx+json"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// The referrer manifest's media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// What kind of artifact it is: the manifest's `artifactType`, else its
    /// config's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest's annotations (`org.opencontainers.image.created`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Referrer {
    /// A referrer with no artifact type and no annotations.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Sets the artifact type.
    pub fn artifact_type(mut self, t: impl Into<String>) -> Self {
        self.artifact_type = Some(t.into());
        self
    }
}

/// The tag under which the fallback referrers index of `subject` is kept:
/// `sha256-<hex>`, derived from the digest alone.
///
/// ```
/// use oci_model::{Digest, referrers_tag};
/// let d = Digest::of(b"x");
/// assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
/// ```
pub fn referrers_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexProbe {
    schema_version: Option<u64>,
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Referrer>,
}

/// Reads a referrers index (the API's answer, or a fallback tag's index):
/// at most [`MAX_MANIFEST_BYTES`] and [`MAX_REFERRERS`] entries, schema
/// version 2, an OCI index media type when one is named, typed digests,
/// no digest listed twice.
///
/// ```
/// let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
///   "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,
///   "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
///   "artifactType":"application/spdx+json"}]}"#;
/// let list = oci_model::parse_referrers(body)?;
/// assert_eq!(list[0].artifact_type.as_deref(), Some("application/spdx+json"));
/// # Ok::<(), oci_model::Error>(())
/// ```
pub fn parse_referrers(bytes: &[u8]) -> Result<Vec<Referrer>> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(Error::ManifestTooLarge {
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES as u64,
        });
    }
    let bad = |reason: String| Error::MalformedReferrers { reason };
    // Counted before the entries are typed, so a hostile index costs one
    // pass over its bytes, not a vector of ten million descriptors.
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let count = raw
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    if count > MAX_REFERRERS {
        return Err(Error::TooManyReferrers {
            count,
            limit: MAX_REFERRERS,
        });
    }
    let probe: IndexProbe = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
    if probe.schema_version != Some(2) {
        return Err(bad("schemaVersion must be 2".into()));
    }
    if let Some(t) = &probe.media_type
        && t != media_type::OCI_INDEX
    {
        return Err(bad(format!("media type `{t}` is not an OCI image index")));
    }
    let mut seen = std::collections::HashSet::new();
    for r in &probe.manifests {
        if !seen.insert(&r.digest) {
            return Err(bad(format!("{} is listed twice", r.digest)));
        }
    }
    Ok(probe.manifests)
}

/// The bytes of a referrers index listing `referrers`, as the fallback tag
/// keeps it.
///
/// ```
/// use oci_model::{Digest, Referrer, parse_referrers, referrers_index};
/// let r = Referrer::new("application/vnd.oci.image.manifest.v1+json", Digest::of(b"m"), 1);
/// let bytes = referrers_index(std::slice::from_ref(&r));
/// assert_eq!(parse_referrers(&bytes)?, vec![r]);
/// # Ok::<(), oci_model::Error>(())
/// ```
pub fn referrers_index(referrers: &[Referrer]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": referrers,
    }))
    .expect("a referrers index serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(d: &Digest) -> String {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":3}}"#
        )
    }

    #[test]
    fn round_trips_and_refuses_hostile_indexes() {
        let mut r = Referrer::new(media_type::OCI_MANIFEST, Digest::of(b"a"), 7)
            .artifact_type("application/spdx+json");
        r.annotations
            .insert("org.opencontainers.image.created".into(), "2026".into());
        assert_eq!(
            parse_referrers(&referrers_index(&[r.clone()])).unwrap(),
            vec![r]
        );
        assert!(
            parse_referrers(br#"{"schemaVersion":2}"#)
                .unwrap()
                .is_empty()
        );

        let d = Digest::of(b"a");
        let twice = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{}]}}"#,
            entry(&d),
            entry(&d)
        );
        let many: Vec<String> = (0..=MAX_REFERRERS as u64)
            .map(|i| entry(&Digest::of(&i.to_le_bytes())))
            .collect();
        let many = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, many.join(","));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![b' '; MAX_MANIFEST_BYTES + 1], "larger than"),
            (b"[]".to_vec(), "malformed referrers index"),
            (br#"{"schemaVersion":1}"#.to_vec(), "schemaVersion must be 2"),
            (
                br#"{"schemaVersion":2,"mediaType":"text/html"}"#.to_vec(),
                "not an OCI image index",
            ),
            (
                br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}"#
                    .to_vec(),
                "malformed referrers index",
            ),
            (twice.into_bytes(), "listed twice"),
            (many.into_bytes(), "more than 10000 referrers"),
        ];
        for (bytes, want) in cases {
            let err = parse_referrers(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
