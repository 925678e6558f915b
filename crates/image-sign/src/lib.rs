//! cosign-compatible image signatures with a key pair.
//!
//! - Keys as cosign writes them ([`generate_key_pair`], [`PrivateKey`],
//!   [`PublicKey`]): an `ENCRYPTED SIGSTORE PRIVATE KEY` PEM (scrypt +
//!   NaCl secretbox over PKCS#8 ECDSA P-256) and a PKIX `PUBLIC KEY` PEM.
//! - Signatures as cosign stores them ([`sign`], [`verify`]): a
//!   simple-signing [`Payload`] blob per signature, its ECDSA signature in
//!   the layer annotation `dev.cosignproject.cosign/signature`, the layers
//!   gathered in an OCI manifest tagged `sha256-<hex>.sig` beside the
//!   signed manifest.
//!
//! No transparency log (Rekor) and no keyless certificates (Fulcio):
//! signatures are checked against a public key only.
//!
//! ```
//! use image_sign::{PrivateKey, PublicKey, generate_key_pair};
//! let keys = generate_key_pair(b"password")?;
//! let private = PrivateKey::from_encrypted_pem(keys.private_pem.as_bytes(), b"password")?;
//! assert_eq!(private.public_key(), PublicKey::from_pem(keys.public_pem.as_bytes())?);
//! # Ok::<(), image_sign::KeyError>(())
//! ```

mod keys;
mod payload;
mod registry;

pub use keys::{
    ACCEPTED_SCRYPT_PARAMS, COSIGN_PRIVATE_KEY_LABEL, EncryptedKey, GeneratedKeys, KeyError,
    MAX_KEY_FILE_BYTES, PUBLIC_KEY_LABEL, PrivateKey, PublicKey, SIGSTORE_PRIVATE_KEY_LABEL,
    generate_key_pair, parse_private_pem,
};
pub use payload::{
    MAX_PAYLOAD_BYTES, MAX_SIGNATURES, PAYLOAD_MEDIA_TYPE, PAYLOAD_TYPE, Payload, PayloadError,
    SIGNATURE_ANNOTATION, SignatureLayer, parse_signature_manifest, signature_tag,
};
pub use registry::{
    Error, IdentityCheck, Signed, Verified, parse_annotations, resolve, sign, verify,
};
