//! The simple-signing payload cosign and containers/image sign, and the
//! signature manifest (`sha256-<hex>.sig`) that carries payloads as layers.

use std::collections::BTreeMap;

use oci_model::{Digest, Reference};
use serde::{Deserialize, Serialize};

/// The layer media type of a payload, as cosign and containers/image write
/// it (`ctypes.SimpleSigningMediaType`).
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 ASN.1 DER ECDSA signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of every cosign image signature.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The most bytes of one payload read: a real payload is a few hundred
/// bytes (cosign itself refuses payloads over 128 MiB; that is no bound
/// for a worker).
pub const MAX_PAYLOAD_BYTES: u64 = 256 * 1024;
/// The most signature layers one `.sig` manifest may carry for a verify.
pub const MAX_SIGNATURES: usize = 256;

/// What can be wrong with a payload or a signature manifest's bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not the simple-signing JSON.
    #[error("signature payload is malformed: {0}")]
    Malformed(String),
    /// A `critical.type` other than cosign's.
    #[error("signature payload type is {0:?}, not {PAYLOAD_TYPE:?}")]
    WrongType(String),
    /// The signed digest or reference does not parse.
    #[error("signature payload names an invalid {what}: {value:?}")]
    Invalid {
        /// `docker-manifest-digest` or `docker-reference`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Larger than [`MAX_PAYLOAD_BYTES`].
    #[error("signature payload is {size} bytes, more than {MAX_PAYLOAD_BYTES}")]
    TooLarge {
        /// Its size.
        size: u64,
    },
}

/// A parsed simple-signing payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payload {
    /// `critical.identity.docker-reference`: the repository signed for.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the manifest signed.
    pub manifest_digest: Digest,
    /// `optional`: free annotations (`null` in the JSON when empty).
    pub annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    critical: Critical,
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

impl Payload {
    /// The payload cosign signs for `image` (whose digest must be known):
    /// the identity is the repository without tag or digest, as cosign
    /// writes it.
    pub fn for_image(
        repository: &str,
        digest: &Digest,
        annotations: BTreeMap<String, serde_json::Value>,
    ) -> Self {
        Self {
            docker_reference: repository.to_owned(),
            manifest_digest: digest.clone(),
            annotations,
        }
    }

    /// The payload's bytes, in cosign's field order.
    ///
    /// ```
    /// use image_sign::Payload;
    /// let d = oci_model::Digest::of(b"manifest");
    /// let p = Payload::for_image("registry.example/app", &d, Default::default());
    /// let bytes = p.to_bytes();
    /// assert!(bytes.ends_with(br#""type":"cosign container image signature"},"optional":null}"#));
    /// assert_eq!(Payload::parse(&bytes)?, p);
    /// # Ok::<(), image_sign::PayloadError>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            critical: Critical {
                identity: Identity {
                    docker_reference: self.docker_reference.clone(),
                },
                image: Image {
                    docker_manifest_digest: self.manifest_digest.to_string(),
                },
                kind: PAYLOAD_TYPE.to_owned(),
            },
            optional: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
        };
        serde_json::to_vec(&wire).expect("a payload always serializes")
    }

    /// Parses untrusted payload bytes (bounded by [`MAX_PAYLOAD_BYTES`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() as u64 > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge {
                size: bytes.len() as u64,
            });
        }
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if wire.critical.kind != PAYLOAD_TYPE {
            return Err(PayloadError::WrongType(wire.critical.kind));
        }
        let digest = &wire.critical.image.docker_manifest_digest;
        let manifest_digest = Digest::parse(digest).map_err(|_| PayloadError::Invalid {
            what: "docker-manifest-digest",
            value: digest.clone(),
        })?;
        Ok(Self {
            docker_reference: wire.critical.identity.docker_reference,
            manifest_digest,
            annotations: wire.optional.unwrap_or_default(),
        })
    }

    /// Whether the payload's identity names the same registry and
    /// repository as `image` (a tag or digest in the identity is ignored:
    /// containers/image writes the tag it signed through, cosign none).
    pub fn identity_matches(&self, image: &Reference) -> bool {
        Reference::parse(&self.docker_reference).is_ok_and(|signed| {
            signed.registry() == image.registry() && signed.repository() == image.repository()
        })
    }
}

/// The tag holding the signatures of the manifest with `digest`:
/// `sha256-<hex>.sig`.
///
/// ```
/// let d = oci_model::Digest::of(b"");
/// assert_eq!(image_sign::signature_tag(&d), format!("sha256-{}.sig", d.hex()));
/// ```
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// One signature layer of a `.sig` manifest, as read (nothing verified).
#[derive(Clone, Debug)]
pub struct SignatureLayer {
    /// The payload blob's descriptor.
    pub payload: oci_model::Descriptor,
    /// The base64 signature annotation, when present.
    pub signature: Option<String>,
    /// The layer's other annotations (certificates, bundles: carried, not
    /// checked).
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireManifest {
    layers: Vec<WireLayer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLayer {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads the signature layers of a `.sig` manifest's bytes (an OCI or
/// Docker image manifest). Layers of other media types are skipped, as
/// cosign skips them.
pub fn parse_signature_manifest(bytes: &[u8]) -> Result<Vec<SignatureLayer>, PayloadError> {
    if bytes.len() > oci_model::MAX_MANIFEST_BYTES {
        return Err(PayloadError::Malformed(format!(
            "signature manifest is {} bytes",
            bytes.len()
        )));
    }
    let wire: WireManifest =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    let mut out = Vec::new();
    for mut layer in wire.layers {
        if layer.media_type != PAYLOAD_MEDIA_TYPE {
            continue;
        }
        let digest = Digest::parse(&layer.digest).map_err(|_| PayloadError::Invalid {
            what: "layer digest",
            value: layer.digest.clone(),
        })?;
        let signature = layer.annotations.remove(SIGNATURE_ANNOTATION);
        out.push(SignatureLayer {
            payload: oci_model::Descriptor {
                media_type: layer.media_type,
                digest,
                size: layer.size,
                platform: None,
            },
            signature,
            annotations: layer.annotations,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_containers_image_writes() {
        // skopeo 1.9 writes the tag it signed through and a creator.
        let json = br#"{"critical":{"identity":{"docker-reference":"localhost:5000/app:v1"},"image":{"docker-manifest-digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},"type":"cosign container image signature"},"optional":{"creator":"containers/image 5.23","timestamp":1700000000}}"#;
        let p = Payload::parse(json).unwrap();
        assert_eq!(p.annotations["creator"], "containers/image 5.23");
        assert!(p.identity_matches(&"localhost:5000/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap()));
        assert!(!p.identity_matches(&"localhost:5000/other:v1".parse().unwrap()));
        assert!(!p.identity_matches(&"elsewhere:5000/app:v1".parse().unwrap()));
    }

    #[test]
    fn refuses_other_shapes() {
        let d = Digest::of(b"x");
        let good =
            String::from_utf8(Payload::for_image("r/a", &d, BTreeMap::new()).to_bytes()).unwrap();
        let wrong_type = good.replace(PAYLOAD_TYPE, "something else");
        assert!(matches!(
            Payload::parse(wrong_type.as_bytes()),
            Err(PayloadError::WrongType(_))
        ));
        let extra = good.replace(r#""type""#, r#""extra":1,"type""#);
        assert!(matches!(
            Payload::parse(extra.as_bytes()),
            Err(PayloadError::Malformed(_))
        ));
        let digest = good.replace(d.as_str(), "sha256:zz");
        assert!(matches!(
            Payload::parse(digest.as_bytes()),
            Err(PayloadError::Invalid { .. })
        ));
        let big = vec![b' '; MAX_PAYLOAD_BYTES as usize + 1];
        assert!(matches!(
            Payload::parse(&big),
            Err(PayloadError::TooLarge { .. })
        ));
    }

    #[test]
    fn manifest_layers_of_other_types_are_skipped() {
        let d = Digest::of(b"p");
        let json = format!(
            r#"{{"schemaVersion":2,"layers":[
              {{"mediaType":"{PAYLOAD_MEDIA_TYPE}","digest":"{d}","size":1,"annotations":{{"{SIGNATURE_ANNOTATION}":"c2ln","x":"y"}}}},
              {{"mediaType":"application/octet-stream","digest":"{d}","size":1}}]}}"#
        );
        let layers = parse_signature_manifest(json.as_bytes()).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].signature.as_deref(), Some("c2ln"));
        assert_eq!(layers[0].annotations["x"], "y");
    }
}
