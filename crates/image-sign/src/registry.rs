//! Signing and verifying images in a registry: the `.sig` manifest beside
//! the signed one.

use std::collections::BTreeMap;
use std::pin::Pin;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use oci_model::{Descriptor, Digest, Manifest, Reference, media_type};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature};
use registry_client::{BlobSource, ByteStream, Checkpoint, Client};
use serde::Serialize;

use crate::payload::{
    MAX_PAYLOAD_BYTES, MAX_SIGNATURES, PAYLOAD_MEDIA_TYPE, Payload, PayloadError,
    SIGNATURE_ANNOTATION, parse_signature_manifest, signature_tag,
};
use crate::{PrivateKey, PublicKey};

/// Why a signature operation failed. Each reason a verify rejects an image
/// is its own variant; [`Error::reason`] names it for metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(Box<registry_client::Error>),
    /// The image to sign or verify is not in the registry.
    #[error("image {0} not found")]
    ImageNotFound(String),
    /// No `.sig` manifest for the image's digest.
    #[error("image {image} is not signed (no {tag} in the registry)")]
    Unsigned {
        /// The image, by digest.
        image: String,
        /// The signature tag looked for.
        tag: String,
    },
    /// Signatures exist but none verifies with the key.
    #[error(
        "no signature of {image} verifies with the given key ({count} signature(s) by other keys)"
    )]
    WrongKey {
        /// The image, by digest.
        image: String,
        /// How many signatures were checked.
        count: usize,
    },
    /// A signature verifies but its payload signs another manifest.
    #[error("signature of {image} signs another manifest ({signed})")]
    WrongDigest {
        /// The image, by digest.
        image: String,
        /// The digest the payload names.
        signed: Digest,
    },
    /// A signature verifies but its payload names another repository.
    #[error("signature of {image} is for repository {signed:?}")]
    WrongIdentity {
        /// The image, by digest.
        image: String,
        /// The payload's `docker-reference`.
        signed: String,
    },
    /// A payload blob's bytes do not match its digest or size in the
    /// `.sig` manifest.
    #[error("signature payload {digest} of {image} was tampered with: {source}")]
    Tampered {
        /// The image, by digest.
        image: String,
        /// The payload digest the manifest names.
        digest: Digest,
        /// What the registry client found.
        source: Box<registry_client::Error>,
    },
    /// A payload that verifies but does not parse, or a `.sig` manifest
    /// that is not one.
    #[error("signature of {image}: {source}")]
    Malformed {
        /// The image, by digest.
        image: String,
        /// What is wrong.
        source: PayloadError,
    },
    /// The `.sig` manifest has more signature layers than
    /// [`MAX_SIGNATURES`].
    #[error("{image} has {count} signatures, more than the {MAX_SIGNATURES} read")]
    TooManySignatures {
        /// The image, by digest.
        image: String,
        /// How many.
        count: usize,
    },
    /// An annotation `K=V` that is not one.
    #[error("annotation {0:?} is not KEY=VALUE")]
    BadAnnotation(String),
}

impl From<registry_client::Error> for Error {
    fn from(e: registry_client::Error) -> Self {
        Self::Registry(Box::new(e))
    }
}

impl Error {
    /// A short stable name of the failure, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Registry(_) => "registry",
            Self::ImageNotFound(_) => "not_found",
            Self::Unsigned { .. } => "unsigned",
            Self::WrongKey { .. } => "wrong_key",
            Self::WrongDigest { .. } => "wrong_digest",
            Self::WrongIdentity { .. } => "wrong_identity",
            Self::Tampered { .. } => "tampered",
            Self::Malformed { .. } => "malformed",
            Self::TooManySignatures { .. } => "too_many",
            Self::BadAnnotation(_) => "bad_annotation",
        }
    }

    /// Which of several layers' failures to report: a sign of an attack
    /// or a mistake before "another key" (other signers are normal).
    fn rank(&self) -> u8 {
        match self {
            Self::Tampered { .. } => 5,
            Self::WrongDigest { .. } => 4,
            Self::WrongIdentity { .. } => 3,
            Self::Malformed { .. } => 2,
            Self::WrongKey { .. } => 1,
            _ => 0,
        }
    }
}

/// The result of [`sign`].
#[derive(Clone, Debug, Serialize)]
pub struct Signed {
    /// The signed image, pinned by digest.
    pub image: String,
    /// The signature manifest's reference (`…:sha256-<hex>.sig`).
    pub signature_tag: String,
    /// How many signatures the `.sig` manifest now holds.
    pub signatures: usize,
    /// False when this key had already signed this payload (nothing written).
    pub added: bool,
}

/// A signature that verified.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    /// The payload blob's digest.
    pub payload_digest: Digest,
    /// The payload.
    pub payload: Payload,
}

/// How strictly a verify checks the payload's identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityCheck {
    /// The payload must name the image's registry and repository.
    #[default]
    Repository,
    /// Any identity: the digest alone binds the signature. For images read
    /// from a mirror, whose host differs from the one signed for.
    Any,
}

/// Resolves `image` to its manifest digest (a tag is looked up; a digest
/// is kept) and returns the reference pinned by it.
pub async fn resolve(client: &Client, image: &Reference) -> Result<Reference, Error> {
    if image.digest().is_some() {
        return Ok(image.clone());
    }
    match client.get_manifest(image).await {
        Ok(m) => Ok(image.with_digest(m.digest().clone())),
        Err(e) if e.is_not_found() => Err(Error::ImageNotFound(image.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Parses `-a KEY=VALUE` annotations into the payload's `optional` map.
///
/// ```
/// let a = image_sign::parse_annotations(["env=prod", "by=ci=1"])?;
/// assert_eq!(a["by"], "ci=1");
/// assert!(image_sign::parse_annotations(["novalue"]).is_err());
/// # Ok::<(), image_sign::Error>(())
/// ```
pub fn parse_annotations<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, serde_json::Value>, Error> {
    pairs
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.into())),
            _ => Err(Error::BadAnnotation(kv.to_owned())),
        })
        .collect()
}

/// Signs `image` with `key`: resolves it to a digest, writes the payload
/// blob, and appends a layer to the image's `.sig` manifest (creating it),
/// keeping every other signature there. The identity is the image's
/// `registry/repository`, as cosign writes it.
///
/// Two signers writing the same `.sig` at the same instant can lose one
/// signature: registries offer no conditional manifest PUT.
///
/// ```no_run
/// # async fn demo(client: registry_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let pem = std::fs::read("cosign.key")?;
/// let key = image_sign::PrivateKey::from_encrypted_pem(&pem, b"password")?;
/// let signed = image_sign::sign(&client, &"registry.example/app:v1".parse()?, &key, Default::default()).await?;
/// println!("{}", signed.signature_tag);
/// # Ok(()) }
/// ```
pub async fn sign(
    client: &Client,
    image: &Reference,
    key: &PrivateKey,
    annotations: BTreeMap<String, serde_json::Value>,
) -> Result<Signed, Error> {
    let image = resolve(client, image).await?;
    let digest = image.digest().expect("resolved").clone();
    let payload = Payload::for_image(&image.name(), &digest, annotations).to_bytes();
    let signature: DerSignature = key.0.sign(&payload);
    let signature = STANDARD.encode(signature.as_bytes());
    let payload_desc = Descriptor {
        media_type: PAYLOAD_MEDIA_TYPE.to_owned(),
        digest: Digest::of(&payload),
        size: payload.len() as u64,
        platform: None,
    };
    let sig_ref = image
        .with_tag(&signature_tag(&digest))
        .map_err(|e| Error::from(model_error(&image, e)))?;
    let mut layers = existing_layers(client, &sig_ref, &image).await?;
    let image_name = image.to_string();
    let already = layers.iter().any(|l| {
        l["digest"] == payload_desc.digest.as_str()
            && l["annotations"][SIGNATURE_ANNOTATION] == signature.as_str()
    });
    if already {
        return Ok(Signed {
            image: image_name,
            signature_tag: sig_ref.to_string(),
            signatures: layers.len(),
            added: false,
        });
    }
    layers.push(serde_json::json!({
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "size": payload_desc.size,
        "digest": payload_desc.digest.as_str(),
        "annotations": { SIGNATURE_ANNOTATION: signature },
    }));
    // The config lists each layer as a diff ID (payloads are not
    // compressed), as go-containerregistry writes it for cosign.
    let diff_ids: Vec<&serde_json::Value> = layers.iter().map(|l| &l["digest"]).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("json");
    let config_desc = Descriptor {
        media_type: media_type::OCI_CONFIG.to_owned(),
        digest: Digest::of(&config),
        size: config.len() as u64,
        platform: None,
    };
    push_small(client, &sig_ref, &payload_desc, payload).await?;
    push_small(client, &sig_ref, &config_desc, config).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": config_desc.media_type,
            "size": config_desc.size,
            "digest": config_desc.digest.as_str(),
        },
        "layers": layers,
    }))
    .expect("json");
    let manifest = Manifest::from_bytes(manifest, Some(media_type::OCI_MANIFEST))
        .map_err(|e| Error::from(model_error(&sig_ref, e)))?;
    client.put_manifest(&sig_ref, &manifest).await?;
    Ok(Signed {
        image: image_name,
        signature_tag: sig_ref.to_string(),
        signatures: layers.len(),
        added: true,
    })
}

fn model_error(r: &Reference, source: oci_model::Error) -> registry_client::Error {
    registry_client::Error::Model {
        registry: r.api_host().to_owned(),
        what: format!("signature manifest {r}"),
        source,
    }
}

/// The layers of the existing `.sig` manifest, as JSON values kept exactly
/// (other signers' annotations, certificates, bundles), or none.
async fn existing_layers(
    client: &Client,
    sig_ref: &Reference,
    image: &Reference,
) -> Result<Vec<serde_json::Value>, Error> {
    let manifest = match client.get_manifest(sig_ref).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let malformed = |reason: String| Error::Malformed {
        image: image.to_string(),
        source: PayloadError::Malformed(reason),
    };
    let value: serde_json::Value =
        serde_json::from_slice(manifest.bytes()).map_err(|e| malformed(e.to_string()))?;
    match value.get("layers") {
        Some(serde_json::Value::Array(layers)) => Ok(layers.clone()),
        _ => Err(malformed("signature manifest has no layers array".into())),
    }
}

struct Small(Bytes);

impl BlobSource for Small {
    fn open(
        &self,
    ) -> Pin<Box<dyn Future<Output = registry_client::Result<ByteStream>> + Send + '_>> {
        let bytes = self.0.clone();
        Box::pin(async move {
            let stream: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes)]));
            Ok(stream)
        })
    }
}

async fn push_small(
    client: &Client,
    r: &Reference,
    desc: &Descriptor,
    bytes: Vec<u8>,
) -> Result<(), Error> {
    if client.head_blob(r, &desc.digest).await?.is_some() {
        return Ok(());
    }
    client
        .push_blob(r, desc, None, &Small(Bytes::from(bytes)))
        .await?;
    Ok(())
}

/// Verifies `image`'s signatures with `key`: resolves the image to its
/// digest, reads its `.sig` manifest, and for each signature layer checks
/// the payload blob against its digest, the signature against the key,
/// the payload's digest against the image's and (by `identity`) its
/// repository. Returns every signature that passed; when none did, the
/// most telling failure.
///
/// ```no_run
/// # async fn demo(client: registry_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let key = image_sign::PublicKey::from_pem(&std::fs::read("cosign.pub")?)?;
/// let image = "registry.example/app:v1".parse()?;
/// let ok = image_sign::verify(&client, &image, &key, image_sign::IdentityCheck::Repository).await?;
/// println!("{} signature(s) verified", ok.len());
/// # Ok(()) }
/// ```
pub async fn verify(
    client: &Client,
    image: &Reference,
    key: &PublicKey,
    identity: IdentityCheck,
) -> Result<Vec<Verified>, Error> {
    let image = resolve(client, image).await?;
    let digest = image.digest().expect("resolved").clone();
    let name = image.to_string();
    let tag = signature_tag(&digest);
    let sig_ref = image
        .with_tag(&tag)
        .map_err(|e| Error::from(model_error(&image, e)))?;
    let manifest = match client.get_manifest(&sig_ref).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Err(Error::Unsigned { image: name, tag }),
        Err(e) => return Err(e.into()),
    };
    let layers = parse_signature_manifest(manifest.bytes()).map_err(|source| Error::Malformed {
        image: name.clone(),
        source,
    })?;
    if layers.len() > MAX_SIGNATURES {
        return Err(Error::TooManySignatures {
            image: name,
            count: layers.len(),
        });
    }
    if layers.is_empty() {
        return Err(Error::Unsigned { image: name, tag });
    }
    let count = layers.len();
    let mut verified = Vec::new();
    let mut worst: Option<Error> = None;
    for layer in layers {
        match check_layer(client, &sig_ref, &image, &digest, key, identity, &layer).await {
            Ok(v) => verified.push(v),
            Err(Error::Registry(e)) => return Err(Error::Registry(e)),
            Err(e) => {
                if worst.as_ref().is_none_or(|w| e.rank() > w.rank()) {
                    worst = Some(e);
                }
            }
        }
    }
    if !verified.is_empty() {
        return Ok(verified);
    }
    Err(match worst {
        Some(Error::WrongKey { image, .. }) => Error::WrongKey { image, count },
        Some(e) => e,
        None => Error::WrongKey { image: name, count },
    })
}

async fn check_layer(
    client: &Client,
    sig_ref: &Reference,
    image: &Reference,
    digest: &Digest,
    key: &PublicKey,
    identity: IdentityCheck,
    layer: &crate::SignatureLayer,
) -> Result<Verified, Error> {
    let name = image.to_string();
    let malformed = |source| Error::Malformed {
        image: name.clone(),
        source,
    };
    if layer.payload.size > MAX_PAYLOAD_BYTES {
        return Err(malformed(PayloadError::TooLarge {
            size: layer.payload.size,
        }));
    }
    let wrong_key = || Error::WrongKey {
        image: name.clone(),
        count: 1,
    };
    // No signature annotation, or one that is not base64 DER: nothing this
    // key signed.
    let signature = layer
        .signature
        .as_deref()
        .and_then(|s| STANDARD.decode(s.trim()).ok())
        .and_then(|der| Signature::from_der(&der).ok())
        .ok_or_else(wrong_key)?;
    let payload = read_payload(client, sig_ref, image, &layer.payload).await?;
    key.0
        .verify(&payload, &signature)
        .map_err(|_| wrong_key())?;
    let parsed = Payload::parse(&payload).map_err(malformed)?;
    if &parsed.manifest_digest != digest {
        return Err(Error::WrongDigest {
            image: name,
            signed: parsed.manifest_digest,
        });
    }
    if identity == IdentityCheck::Repository && !parsed.identity_matches(image) {
        return Err(Error::WrongIdentity {
            image: name,
            signed: parsed.docker_reference,
        });
    }
    Ok(Verified {
        payload_digest: layer.payload.digest.clone(),
        payload: parsed,
    })
}

/// Reads one payload blob, bounded by its descriptor's size (already
/// checked against [`MAX_PAYLOAD_BYTES`]) and verified against its digest.
async fn read_payload(
    client: &Client,
    sig_ref: &Reference,
    image: &Reference,
    desc: &Descriptor,
) -> Result<Vec<u8>, Error> {
    use futures_util::StreamExt as _;
    let tampered = |source| Error::Tampered {
        image: image.to_string(),
        digest: desc.digest.clone(),
        source: Box::new(source),
    };
    let classify = |e| match e {
        e @ (registry_client::Error::DigestMismatch { .. }
        | registry_client::Error::SizeMismatch { .. }) => tampered(e),
        e => Error::from(e),
    };
    let mut stream = client
        .get_blob(sig_ref, desc, Checkpoint::default())
        .await
        .map_err(classify)?;
    let mut out = Vec::with_capacity(desc.size as usize);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(classify)?);
    }
    Ok(out)
}
