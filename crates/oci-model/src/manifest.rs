//! Manifests and indexes as read from untrusted bytes: size-limited,
//! classified by media type, parsed with `oci-spec`, and every descriptor's
//! digest typed. The original bytes are kept: a copy pushes them unchanged,
//! so the digest never moves.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor as SpecDescriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::media_type::{self, Family, ManifestKind};
use crate::{Digest, Error, Result};

/// The most manifest bytes hoist reads, as containerd and the distribution
/// registry do: a bigger one is hostile or broken.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A typed content descriptor: what a manifest says about a blob or a
/// child manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content.
    pub media_type: String,
    /// The content digest.
    pub digest: Digest,
    /// The content size in bytes.
    pub size: u64,
    /// For an index entry, the platform it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    fn from_spec(d: &SpecDescriptor) -> Result<Self> {
        let digest = Digest::parse(d.digest().as_ref())?;
        let platform = d.platform().as_ref().map(|p| Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        });
        Ok(Self {
            media_type: d.media_type().to_string(),
            digest,
            size: d.size(),
            platform,
        })
    }
}

/// An OS / architecture / variant triple, written `linux/amd64` or
/// `linux/arm64/v8`.
///
/// ```
/// use oci_model::Platform;
/// let p: Platform = "linux/arm64/v8".parse()?;
/// assert_eq!(p.architecture, "arm64");
/// assert_eq!(Platform::default().to_string(), "linux/amd64");
/// # Ok::<(), oci_model::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// Whether an index entry for `other` can serve a request for `self`.
    /// A request without a variant takes any variant.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                // arm64 images rarely name their (only) variant.
                (Some(want), None) => self.architecture == "arm64" && want == "v8",
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(Error::InvalidPlatform {
                platform: s.to_owned(),
            });
        }
        Ok(Self {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

/// The parsed body of a manifest.
#[derive(Clone, Debug)]
pub enum Body {
    /// An image manifest.
    Image(Box<ImageManifest>),
    /// An index / manifest list.
    Index(Box<ImageIndex>),
}

/// A manifest as it was received: its exact bytes, media type and digest,
/// and the typed descriptors it references.
///
/// ```
/// use oci_model::Manifest;
/// let json = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
///   "config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,
///     "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
///   "layers":[]}"#;
/// let m = Manifest::from_bytes(json.to_vec(), None)?;
/// assert_eq!(m.children().len(), 1);
/// # Ok::<(), oci_model::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Manifest {
    bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
    kind: ManifestKind,
    family: Family,
    body: Body,
    children: Vec<Descriptor>,
    config: Option<Descriptor>,
    subject: Option<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses manifest bytes. `content_type` is the `Content-Type` the
    /// registry sent (or the descriptor's media type), used when the body
    /// does not name its own media type.
    pub fn from_bytes(bytes: Vec<u8>, content_type: Option<&str>) -> Result<Self> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(Error::ManifestTooLarge {
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES as u64,
            });
        }
        let malformed = |e: serde_json::Error| Error::MalformedManifest {
            reason: e.to_string(),
        };
        let probe: Probe = serde_json::from_slice(&bytes).map_err(malformed)?;
        match probe.schema_version.as_ref().and_then(|v| v.as_u64()) {
            Some(2) => {}
            Some(1) => {
                return Err(Error::UnsupportedMediaType {
                    media_type: "Docker schema 1 manifest".into(),
                });
            }
            _ => {
                return Err(Error::MalformedManifest {
                    reason: format!(
                        "schemaVersion must be 2, found {}",
                        probe
                            .schema_version
                            .map_or("nothing".to_owned(), |v| v.to_string())
                    ),
                });
            }
        }
        let header = content_type
            .map(media_type::base)
            .filter(|t| !t.is_empty() && *t != "application/json");
        let media_type = match (&probe.media_type, header) {
            (Some(body), _) => body.clone(),
            (None, Some(h)) => h.to_owned(),
            // An OCI manifest may omit mediaType; its shape tells.
            (None, None) if probe.manifests.is_some() => media_type::OCI_INDEX.to_owned(),
            (None, None) if probe.config.is_some() => media_type::OCI_MANIFEST.to_owned(),
            (None, None) => {
                return Err(Error::MalformedManifest {
                    reason: "no mediaType, and neither `config` nor `manifests`".into(),
                });
            }
        };
        if media_type::DOCKER_SCHEMA1.contains(&media_type.as_str()) {
            return Err(Error::UnsupportedMediaType { media_type });
        }
        let (kind, family) =
            media_type::classify(&media_type).ok_or_else(|| Error::UnsupportedMediaType {
                media_type: media_type.clone(),
            })?;
        let (body, children, config) = match kind {
            ManifestKind::Image => {
                let m: ImageManifest = serde_json::from_slice(&bytes).map_err(malformed)?;
                let config = Descriptor::from_spec(m.config())?;
                let mut children = vec![config.clone()];
                for l in m.layers() {
                    children.push(Descriptor::from_spec(l)?);
                }
                (Body::Image(Box::new(m)), children, Some(config))
            }
            ManifestKind::Index => {
                let m: ImageIndex = serde_json::from_slice(&bytes).map_err(malformed)?;
                let children = m
                    .manifests()
                    .iter()
                    .map(Descriptor::from_spec)
                    .collect::<Result<Vec<_>>>()?;
                (Body::Index(Box::new(m)), children, None)
            }
        };
        let subject = match &body {
            Body::Image(m) => m.subject().as_ref(),
            Body::Index(m) => m.subject().as_ref(),
        }
        .map(Descriptor::from_spec)
        .transpose()?;
        let digest = Digest::of(&bytes);
        Ok(Self {
            subject,
            bytes,
            media_type,
            digest,
            kind,
            family,
            body,
            children,
            config,
        })
    }

    /// The exact bytes received.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The manifest's media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The digest of [`Self::bytes`].
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Image or index.
    pub fn kind(&self) -> ManifestKind {
        self.kind
    }

    /// OCI or Docker.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The parsed body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// A descriptor of this manifest itself.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            platform: None,
        }
    }

    /// What the manifest references: config then layers for an image, the
    /// child manifests for an index.
    pub fn children(&self) -> &[Descriptor] {
        &self.children
    }

    /// The config descriptor of an image manifest.
    pub fn config(&self) -> Option<&Descriptor> {
        self.config.as_ref()
    }

    /// The layer descriptors of an image manifest (empty for an index).
    pub fn layers(&self) -> &[Descriptor] {
        match self.kind {
            ManifestKind::Image => &self.children[1..],
            ManifestKind::Index => &[],
        }
    }

    /// The manifest this one refers to (OCI 1.1 `subject`): set on
    /// artifacts attached to an image.
    pub fn subject(&self) -> Option<&Descriptor> {
        self.subject.as_ref()
    }

    /// What kind of artifact this is, as a referrers index lists it: the
    /// `artifactType` field, else (for an image manifest) the config's
    /// media type.
    pub fn artifact_type(&self) -> Option<String> {
        match &self.body {
            Body::Image(m) => Some(
                m.artifact_type()
                    .as_ref()
                    .map_or_else(|| m.config().media_type().to_string(), |t| t.to_string()),
            ),
            Body::Index(m) => m.artifact_type().as_ref().map(|t| t.to_string()),
        }
    }

    /// This manifest as an entry of its subject's referrers index: its
    /// descriptor, artifact type and annotations.
    ///
    /// ```
    /// # let json = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    /// #   "artifactType":"application/spdx+json","annotations":{"a":"b"},
    /// #   "config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,
    /// #     "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    /// #   "layers":[]}"#;
    /// let m = oci_model::Manifest::from_bytes(json.to_vec(), None)?;
    /// let r = m.referrer();
    /// assert_eq!(r.artifact_type.as_deref(), Some("application/spdx+json"));
    /// assert_eq!(r.annotations["a"], "b");
    /// # Ok::<(), oci_model::Error>(())
    /// ```
    pub fn referrer(&self) -> crate::Referrer {
        let annotations = match &self.body {
            Body::Image(m) => m.annotations().clone(),
            Body::Index(m) => m.annotations().clone(),
        };
        crate::Referrer {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            artifact_type: self.artifact_type(),
            annotations: annotations.unwrap_or_default().into_iter().collect(),
        }
    }

    /// The entry of an index for `platform`.
    pub fn select_platform(&self, platform: &Platform) -> Result<&Descriptor> {
        if self.kind != ManifestKind::Index {
            return Err(Error::NotAnIndex);
        }
        self.children
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .ok_or_else(|| Error::PlatformNotFound {
                platform: platform.to_string(),
                available: self
                    .children
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: &str, layer_digest: &str) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":10}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":20}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn parses_images_and_indexes() {
        let m = Manifest::from_bytes(image(media_type::OCI_MANIFEST, D2), None).unwrap();
        assert_eq!(m.kind(), ManifestKind::Image);
        assert_eq!(m.family(), Family::Oci);
        assert_eq!(m.config().unwrap().digest.as_str(), D1);
        assert_eq!(m.layers().len(), 1);
        assert_eq!(m.layers()[0].size, 20);
        assert_eq!(m.digest(), &Digest::of(m.bytes()));

        let docker = Manifest::from_bytes(image(media_type::DOCKER_MANIFEST, D2), None).unwrap();
        assert_eq!(docker.family(), Family::Docker);

        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
              {{"mediaType":"{}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{}","digest":"{D2}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_MANIFEST
        );
        let m = Manifest::from_bytes(index.into_bytes(), None).unwrap();
        assert_eq!(m.kind(), ManifestKind::Index);
        assert_eq!(m.children().len(), 2);
        let amd = m.select_platform(&Platform::default()).unwrap();
        assert_eq!(amd.digest.as_str(), D2);
        let arm = m.select_platform(&"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm.digest.as_str(), D1);
        let err = m
            .select_platform(&"linux/s390x".parse().unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains("linux/arm64/v8, linux/amd64"),
            "{err}"
        );
    }

    #[test]
    fn media_type_from_header_or_shape() {
        let body = image(media_type::OCI_MANIFEST, D2);
        let no_type = String::from_utf8(body)
            .unwrap()
            .replace(
                r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                "",
            )
            .into_bytes();
        let m = Manifest::from_bytes(no_type.clone(), None).unwrap();
        assert_eq!(m.media_type(), media_type::OCI_MANIFEST);
        let m = Manifest::from_bytes(no_type, Some(media_type::DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.media_type(), media_type::DOCKER_MANIFEST);
    }

    #[test]
    fn rejects_hostile_manifests() {
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (huge, "larger than"),
            (b"".to_vec(), "malformed manifest"),
            (b"[]".to_vec(), "malformed manifest"),
            (b"{".to_vec(), "malformed manifest"),
            (br#"{"schemaVersion":1}"#.to_vec(), "schema 1"),
            (br#"{"schemaVersion":3}"#.to_vec(), "schemaVersion must be 2"),
            (br#"{"schemaVersion":2}"#.to_vec(), "no mediaType"),
            (
                br#"{"schemaVersion":2,"mediaType":"text/html"}"#.to_vec(),
                "unsupported media type `text/html`",
            ),
            (
                image(media_type::OCI_MANIFEST, "sha512:abcd"),
                "malformed manifest",
            ),
            (
                image(
                    media_type::OCI_MANIFEST,
                    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
                ),
                "unsupported digest algorithm",
            ),
            (
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#
                    .to_vec(),
                "malformed manifest",
            ),
        ];
        for (bytes, want) in cases {
            let err = Manifest::from_bytes(bytes.clone(), None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            );
        }
    }

    #[test]
    fn platform_parsing() {
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v1/x".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches(&Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None
        }));
    }
}
