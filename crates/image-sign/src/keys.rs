//! Key pairs in cosign's files: the private key is PKCS#8 DER of an ECDSA
//! P-256 key, encrypted with scrypt + NaCl secretbox inside a JSON envelope
//! (go-securesystemslib's `encrypted` package), in a PEM block labelled
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign: `ENCRYPTED COSIGN
//! PRIVATE KEY`); the public key is a PKIX `PUBLIC KEY` PEM block.

use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use pem_rfc7468::LineEnding;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use spki::{DecodePublicKey, EncodePublicKey};
use zeroize::Zeroizing;

/// The PEM label cosign writes on a private key today.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label older cosign releases wrote; still read.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The PEM label of a PKIX public key.
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// The most bytes of a key file read: a real one is well under 1 KiB.
pub const MAX_KEY_FILE_BYTES: usize = 64 * 1024;

/// The scrypt parameter sets go-securesystemslib accepts (legacy, standard,
/// OWASP), as `(N, r, p)`. Nothing else is derived: a hostile key file
/// naming N = 2^30 would make scrypt allocate 1 TiB. The largest set costs
/// 128 · r · N = 128 MiB.
pub const ACCEPTED_SCRYPT_PARAMS: [(u64, u32, u32); 3] =
    [(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)];

/// The parameters written: cosign's (the legacy set, which every release
/// of cosign and of containers/image reads).
const WRITE_SCRYPT: (u64, u32, u32) = (32768, 8, 1);
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const BOX_KEY_LEN: usize = 32;

/// What can be wrong with a key file or its password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file is larger than [`MAX_KEY_FILE_BYTES`].
    #[error("key file is {size} bytes, more than the {limit} a key can be")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not one well-formed PEM block (truncated, bad base64, no END line).
    #[error("key file is not a PEM block: {0}")]
    Pem(String),
    /// A PEM block of another kind than expected.
    #[error("PEM block is {found:?}, expected {expected}")]
    WrongLabel {
        /// The label found.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The encrypted envelope is not the JSON cosign writes.
    #[error("encrypted key envelope is malformed: {0}")]
    Envelope(String),
    /// The envelope names a key derivation other than scrypt.
    #[error("unknown key derivation function {0:?} (only scrypt is read)")]
    UnknownKdf(String),
    /// The envelope names a cipher other than NaCl secretbox.
    #[error("unknown cipher {0:?} (only nacl/secretbox is read)")]
    UnknownCipher(String),
    /// scrypt parameters outside [`ACCEPTED_SCRYPT_PARAMS`].
    #[error(
        "scrypt parameters N={n} r={r} p={p} are not one of the accepted sets \
         (N 32768, 65536 or 131072 with r=8 p=1)"
    )]
    ScryptParams {
        /// N.
        n: u64,
        /// r.
        r: u64,
        /// p.
        p: u64,
    },
    /// The salt or nonce has the wrong length.
    #[error("{what} is {len} bytes, expected {expected}")]
    BadLength {
        /// `salt` or `nonce`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The length required.
        expected: usize,
    },
    /// The secretbox did not open: the password is wrong (or the
    /// ciphertext was altered).
    #[error("wrong password (the encrypted private key did not decrypt)")]
    WrongPassword,
    /// The decrypted or PEM bytes are not an ECDSA P-256 key.
    #[error("not an ECDSA P-256 key: {0}")]
    NotP256(String),
}

/// A private signing key, decrypted.
#[derive(Clone)]
pub struct PrivateKey(pub(crate) SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").finish_non_exhaustive()
    }
}

/// A public verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(pub(crate) VerifyingKey);

/// A freshly generated key pair as the two files cosign writes.
#[derive(Debug)]
pub struct GeneratedKeys {
    /// The encrypted private key PEM (`cosign.key`).
    pub private_pem: String,
    /// The public key PEM (`cosign.pub`).
    pub public_pem: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

/// Go's encoding/json writes `[]byte` as standard base64 with padding.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

impl PrivateKey {
    /// A new random P-256 key.
    pub fn generate() -> Self {
        Self(SigningKey::random(&mut OsRng))
    }

    /// Its public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// Encrypts the key under `password` as cosign does and returns the
    /// `ENCRYPTED SIGSTORE PRIVATE KEY` PEM.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let der = self
            .0
            .to_pkcs8_der()
            .map_err(|e| KeyError::NotP256(e.to_string()))?;
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let (n, r, p) = WRITE_SCRYPT;
        let key = derive(password, &salt, n, r, p)?;
        let cipher = XSalsa20Poly1305::new(key.as_slice().into());
        let ciphertext = cipher
            .encrypt((&nonce).into(), der.as_bytes())
            .map_err(|_| KeyError::Envelope("secretbox refused to seal".into()))?;
        let envelope = Envelope {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    n,
                    r: r.into(),
                    p: p.into(),
                },
                salt: salt.to_vec(),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: nonce.to_vec(),
            },
            ciphertext,
        };
        let json = serde_json::to_vec(&envelope).map_err(|e| KeyError::Envelope(e.to_string()))?;
        pem_rfc7468::encode_string(SIGSTORE_PRIVATE_KEY_LABEL, LineEnding::LF, &json)
            .map_err(|e| KeyError::Pem(e.to_string()))
    }

    /// Reads an encrypted private key PEM (either label) with `password`.
    ///
    /// ```
    /// use image_sign::PrivateKey;
    /// let pem = PrivateKey::generate().to_encrypted_pem(b"pw")?;
    /// assert!(PrivateKey::from_encrypted_pem(pem.as_bytes(), b"pw").is_ok());
    /// assert!(matches!(
    ///     PrivateKey::from_encrypted_pem(pem.as_bytes(), b"other"),
    ///     Err(image_sign::KeyError::WrongPassword)
    /// ));
    /// # Ok::<(), image_sign::KeyError>(())
    /// ```
    pub fn from_encrypted_pem(pem: &[u8], password: &[u8]) -> Result<Self, KeyError> {
        let envelope = parse_private_pem(pem)?;
        let key = open_envelope(&envelope, password)?;
        SigningKey::from_pkcs8_der(&key)
            .map(Self)
            .map_err(|e| KeyError::NotP256(e.to_string()))
    }
}

/// Decodes a private key file's PEM and checks its envelope without
/// deriving the key (no scrypt work): what a fuzzer can drive fast.
pub fn parse_private_pem(pem: &[u8]) -> Result<EncryptedKey, KeyError> {
    let (label, body) = decode_pem(pem)?;
    if label != SIGSTORE_PRIVATE_KEY_LABEL && label != COSIGN_PRIVATE_KEY_LABEL {
        return Err(KeyError::WrongLabel {
            found: label,
            expected: SIGSTORE_PRIVATE_KEY_LABEL,
        });
    }
    let envelope: Envelope =
        serde_json::from_slice(&body).map_err(|e| KeyError::Envelope(e.to_string()))?;
    if envelope.kdf.name != "scrypt" {
        return Err(KeyError::UnknownKdf(envelope.kdf.name));
    }
    if envelope.cipher.name != "nacl/secretbox" {
        return Err(KeyError::UnknownCipher(envelope.cipher.name));
    }
    let ScryptParams { n, r, p } = envelope.kdf.params;
    if !ACCEPTED_SCRYPT_PARAMS
        .iter()
        .any(|&(an, ar, ap)| an == n && u64::from(ar) == r && u64::from(ap) == p)
    {
        return Err(KeyError::ScryptParams { n, r, p });
    }
    // go-securesystemslib reads any salt length; only the nonce is fixed.
    if envelope.cipher.nonce.len() != NONCE_LEN {
        return Err(KeyError::BadLength {
            what: "nonce",
            len: envelope.cipher.nonce.len(),
            expected: NONCE_LEN,
        });
    }
    Ok(EncryptedKey(envelope))
}

/// A private key file's envelope, checked but still encrypted.
pub struct EncryptedKey(Envelope);

impl std::fmt::Debug for EncryptedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedKey")
            .field("scrypt_n", &self.0.kdf.params.n)
            .finish_non_exhaustive()
    }
}

fn open_envelope(envelope: &EncryptedKey, password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let e = &envelope.0;
    let params = &e.kdf.params;
    // parse_private_pem accepted only small r and p.
    let key = derive(
        password,
        &e.kdf.salt,
        params.n,
        params.r as u32,
        params.p as u32,
    )?;
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    let nonce: [u8; NONCE_LEN] =
        e.cipher
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength {
                what: "nonce",
                len: e.cipher.nonce.len(),
                expected: NONCE_LEN,
            })?;
    cipher
        .decrypt((&nonce).into(), e.ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::WrongPassword)
}

fn derive(
    password: &[u8],
    salt: &[u8],
    n: u64,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; BOX_KEY_LEN]>, KeyError> {
    let bad = || KeyError::ScryptParams {
        n,
        r: r.into(),
        p: p.into(),
    };
    if !n.is_power_of_two() {
        return Err(bad());
    }
    let params =
        scrypt::Params::new(n.trailing_zeros() as u8, r, p, BOX_KEY_LEN).map_err(|_| bad())?;
    let mut key = Zeroizing::new([0u8; BOX_KEY_LEN]);
    scrypt::scrypt(password, salt, &params, key.as_mut_slice()).map_err(|_| bad())?;
    Ok(key)
}

fn decode_pem(pem: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    if pem.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge {
            size: pem.len(),
            limit: MAX_KEY_FILE_BYTES,
        });
    }
    // Files written by Go end in a newline; editors may add blank lines.
    let trimmed = trim_ascii(pem);
    let (label, body) =
        pem_rfc7468::decode_vec(trimmed).map_err(|e| KeyError::Pem(e.to_string()))?;
    Ok((label.to_owned(), body))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

impl PublicKey {
    /// Reads a PKIX `PUBLIC KEY` PEM holding a P-256 key.
    ///
    /// ```
    /// use image_sign::{PrivateKey, PublicKey};
    /// let key = PrivateKey::generate().public_key();
    /// let pem = key.to_pem()?;
    /// assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    /// assert_eq!(PublicKey::from_pem(pem.as_bytes())?, key);
    /// # Ok::<(), image_sign::KeyError>(())
    /// ```
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        if label != PUBLIC_KEY_LABEL {
            return Err(KeyError::WrongLabel {
                found: label,
                expected: PUBLIC_KEY_LABEL,
            });
        }
        VerifyingKey::from_public_key_der(&der)
            .map(Self)
            .map_err(|e| KeyError::NotP256(e.to_string()))
    }

    /// The `PUBLIC KEY` PEM, as cosign writes `cosign.pub`.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::NotP256(e.to_string()))
    }
}

/// Generates a key pair and encodes both files, the private key encrypted
/// under `password` (which may be empty, as cosign allows).
///
/// ```
/// let keys = image_sign::generate_key_pair(b"")?;
/// assert!(keys.private_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
/// # Ok::<(), image_sign::KeyError>(())
/// ```
pub fn generate_key_pair(password: &[u8]) -> Result<GeneratedKeys, KeyError> {
    let key = PrivateKey::generate();
    Ok(GeneratedKeys {
        private_pem: key.to_encrypted_pem(password)?,
        public_pem: key.public_key().to_pem()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    fn envelope_pem(json: &str) -> String {
        pem_rfc7468::encode_string(SIGSTORE_PRIVATE_KEY_LABEL, LineEnding::LF, json.as_bytes())
            .unwrap()
    }

    fn reencode(pem: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let (_, body) = pem_rfc7468::decode_vec(pem.trim().as_bytes()).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        edit(&mut v);
        envelope_pem(&v.to_string())
    }

    #[test]
    fn round_trip_and_cosign_label() {
        let keys = generate_key_pair(b"secret").unwrap();
        let private =
            PrivateKey::from_encrypted_pem(keys.private_pem.as_bytes(), b"secret").unwrap();
        assert_eq!(
            private.public_key(),
            PublicKey::from_pem(keys.public_pem.as_bytes()).unwrap()
        );
        let old = keys
            .private_pem
            .replace(SIGSTORE_PRIVATE_KEY_LABEL, COSIGN_PRIVATE_KEY_LABEL);
        assert!(PrivateKey::from_encrypted_pem(old.as_bytes(), b"secret").is_ok());
    }

    #[test]
    fn envelope_is_what_cosign_writes() {
        let pem = PrivateKey::generate().to_encrypted_pem(b"").unwrap();
        let (_, body) = pem_rfc7468::decode_vec(pem.trim().as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kdf"]["name"], "scrypt");
        assert_eq!(
            v["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(v["cipher"]["name"], "nacl/secretbox");
        let nonce = STANDARD
            .decode(v["cipher"]["nonce"].as_str().unwrap())
            .unwrap();
        assert_eq!(nonce.len(), 24);
        // The empty password works, as with COSIGN_PASSWORD="".
        assert!(PrivateKey::from_encrypted_pem(pem.as_bytes(), b"").is_ok());
    }

    #[test]
    fn hostile_and_broken_files_are_named() {
        let pem = PrivateKey::generate().to_encrypted_pem(b"pw").unwrap();
        let err = |p: &str| PrivateKey::from_encrypted_pem(p.as_bytes(), b"pw").unwrap_err();
        assert!(matches!(
            PrivateKey::from_encrypted_pem(pem.as_bytes(), b"wrong").unwrap_err(),
            KeyError::WrongPassword
        ));
        assert!(matches!(err(&pem[..pem.len() / 2]), KeyError::Pem(_)));
        let huge = reencode(&pem, |v| v["kdf"]["params"]["N"] = (1u64 << 30).into());
        assert!(matches!(err(&huge), KeyError::ScryptParams { n, .. } if n == 1 << 30));
        let wide_r = reencode(&pem, |v| v["kdf"]["params"]["r"] = 1_000_000.into());
        assert!(matches!(err(&wide_r), KeyError::ScryptParams { .. }));
        let kdf = reencode(&pem, |v| v["kdf"]["name"] = "pbkdf2".into());
        assert!(matches!(err(&kdf), KeyError::UnknownKdf(n) if n == "pbkdf2"));
        let cipher = reencode(&pem, |v| v["cipher"]["name"] = "aes-gcm".into());
        assert!(matches!(err(&cipher), KeyError::UnknownCipher(_)));
        let nonce = reencode(&pem, |v| v["cipher"]["nonce"] = "AAAA".into());
        assert!(matches!(
            err(&nonce),
            KeyError::BadLength { what: "nonce", .. }
        ));
        assert!(matches!(err(&envelope_pem("{}")), KeyError::Envelope(_)));
        let public = PrivateKey::generate().public_key().to_pem().unwrap();
        assert!(matches!(err(&public), KeyError::WrongLabel { .. }));
        assert!(matches!(
            PublicKey::from_pem(pem.as_bytes()).unwrap_err(),
            KeyError::WrongLabel { .. }
        ));
        let big = "A".repeat(MAX_KEY_FILE_BYTES + 1);
        assert!(matches!(err(&big), KeyError::TooLarge { .. }));
    }
}
