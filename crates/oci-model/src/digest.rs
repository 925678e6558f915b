//! Typed content digests (`sha256:<64 hex>`) and a streaming hasher.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// A content digest. Only `sha256` is supported: it is what every registry
/// and tool in the field writes, and accepting algorithms we cannot verify
/// would mean trusting bytes we have not checked.
///
/// ```
/// use oci_model::Digest;
/// let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(d, Digest::of(b""));
/// assert_eq!(d.hex().len(), 64);
/// # Ok::<(), oci_model::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    // Always "sha256:" followed by 64 lowercase hex characters.
    text: String,
}

const SHA256_PREFIX: &str = "sha256:";

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(Error::InvalidDigest {
                digest: s.to_owned(),
                reason: "missing `algorithm:` prefix",
            });
        };
        if algorithm != "sha256" {
            return Err(Error::UnsupportedDigestAlgorithm {
                algorithm: algorithm.to_owned(),
            });
        }
        if encoded.len() != 64 {
            return Err(Error::InvalidDigest {
                digest: s.to_owned(),
                reason: "a sha256 digest has 64 hex characters",
            });
        }
        if !encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::InvalidDigest {
                digest: s.to_owned(),
                reason: "only lowercase hex characters are allowed",
            });
        }
        Ok(Self { text: s.to_owned() })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut d = Digester::new();
        d.update(bytes);
        d.finish()
    }

    /// Builds a digest from a raw SHA-256 output.
    pub fn from_sha256(raw: [u8; 32]) -> Self {
        Self {
            text: format!("{SHA256_PREFIX}{}", hex::encode(raw)),
        }
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The algorithm name, always `sha256`.
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The hex part, which names the blob inside an image layout.
    pub fn hex(&self) -> &str {
        &self.text[SHA256_PREFIX.len()..]
    }

    /// The first `n` hex characters, for short display.
    pub fn short(&self, n: usize) -> &str {
        &self.hex()[..n.min(64)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Streaming SHA-256 that yields a [`Digest`]. `Clone` so a caller can keep
/// the state at a checkpoint (an acknowledged upload chunk) and resume.
///
/// ```
/// use oci_model::{Digest, Digester};
/// let mut d = Digester::new();
/// d.update(b"hello ");
/// d.update(b"world");
/// assert_eq!(d.bytes(), 11);
/// assert_eq!(d.finish(), Digest::of(b"hello world"));
/// ```
#[derive(Clone, Default)]
pub struct Digester {
    hasher: Sha256,
    bytes: u64,
}

impl Digester {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// How many bytes were fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_sha256(self.hasher.finalize().into())
    }
}

/// A reader or writer that hashes every byte passing through it: the
/// one adapter for hashing while streaming to a file, out of a decoder,
/// into an encoder.
///
/// ```
/// use std::io::{Read, Write};
/// use oci_model::{Digest, Hashing};
/// let mut w = Hashing::new(Vec::new());
/// w.write_all(b"layer bytes")?;
/// let (bytes, digester) = w.into_parts();
/// assert_eq!(digester.finish(), Digest::of(&bytes));
///
/// let mut r = Hashing::new(&b"config"[..]);
/// std::io::copy(&mut r, &mut std::io::sink())?;
/// assert_eq!(r.into_parts().1.finish(), Digest::of(b"config"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Hashing<T> {
    inner: T,
    digester: Digester,
}

impl<T> Hashing<T> {
    /// Wraps `inner` with a fresh hasher.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            digester: Digester::new(),
        }
    }

    /// The hash state over what passed so far.
    pub fn digester(&self) -> &Digester {
        &self.digester
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped value and the hash of what passed.
    pub fn into_parts(self) -> (T, Digester) {
        (self.inner, self.digester)
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

impl Digest {
    /// The digest and length of everything `reader` yields.
    pub fn of_reader(reader: impl std::io::Read) -> std::io::Result<(Digest, u64)> {
        let mut hashing = Hashing::new(reader);
        std::io::copy(&mut hashing, &mut std::io::sink())?;
        let digester = hashing.digester;
        let len = digester.bytes();
        Ok((digester.finish(), len))
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_bad_digests() {
        let cases = [
            ("", "missing"),
            ("sha256", "missing"),
            ("sha512:abcd", "unsupported digest algorithm `sha512`"),
            ("md5:abcd", "unsupported"),
            ("sha256:abc", "64 hex"),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "lowercase",
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "lowercase hex",
            ),
        ];
        for (input, want) in cases {
            let err = Digest::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn round_trips_through_text_and_json() {
        let d = Digest::of(b"abc");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.short(8), "ba7816bf");
    }

    #[test]
    fn digester_checkpoint_resumes() {
        let mut a = Digester::new();
        a.update(b"part one,");
        let mut resumed = a.clone();
        a.update(b"part two");
        resumed.update(b"part two");
        assert_eq!(a.finish(), resumed.finish());
    }
}
