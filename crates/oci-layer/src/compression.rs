//! Layer compression: media types, magic bytes, and streaming codecs.

use std::io::{self, Read, Write};

use oci_model::media_type;

/// How a layer's tar stream is compressed.
///
/// ```
/// use oci_layer::Compression;
/// assert_eq!(
///     Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
///     Some(Compression::Gzip)
/// );
/// assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
/// assert_eq!(Compression::Zstd.media_type(), "application/vnd.oci.image.layer.v1.tar+zstd");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip, the format every registry and runtime reads.
    #[default]
    Gzip,
    /// zstd: smaller and faster to decompress, read by recent runtimes.
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression a layer media type names, parameters ignored; `None`
    /// for a media type that is not a tar layer.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type::base(media_type) {
            media_type::OCI_LAYER_TAR
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            media_type::OCI_LAYER_GZIP
            | media_type::DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            media_type::OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The compression of a stream judged by its first bytes; anything
    /// without a gzip or zstd magic number is taken as a plain tar.
    pub fn detect(prefix: &[u8]) -> Self {
        if prefix.starts_with(GZIP_MAGIC) {
            Self::Gzip
        } else if prefix.starts_with(ZSTD_MAGIC) {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::None => media_type::OCI_LAYER_TAR,
            Self::Gzip => media_type::OCI_LAYER_GZIP,
            Self::Zstd => media_type::OCI_LAYER_ZSTD,
        }
    }

    /// A decoder reading the uncompressed tar from `reader`, with bounded
    /// memory whatever the input: what [`unpack`](crate::unpack) reads
    /// through, for callers that walk a layer's entries without unpacking.
    ///
    /// ```
    /// use std::io::Read;
    /// use oci_layer::{Compression, LayerWriter, WriteOptions};
    /// let mut w = LayerWriter::new(WriteOptions::default());
    /// w.add_bytes("etc/motd", 0o644, b"hi\n".to_vec())?;
    /// let mut blob = Vec::new();
    /// w.finish(&mut blob)?;
    /// let mut tar = Vec::new();
    /// Compression::Gzip.decoder(&blob[..])?.read_to_end(&mut tar)?;
    /// assert!(tar.len() >= 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decoder<'a>(self, reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::None => Box::new(reader),
            // Multi-member gzip is valid and written by some tools; Go's
            // reader (docker, containerd) accepts it too.
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Self::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(reader)?;
                // The zstd default (a 128 MiB window) bounds decoder memory;
                // set it explicitly so a library default change cannot widen it.
                decoder.window_log_max(27)?;
                Box::new(decoder)
            }
        })
    }
}

/// A compressing writer with a deterministic output for a given input.
pub(crate) enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(compression: Compression, inner: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Self::Plain(inner),
            // No file name, mtime 0 and the default OS byte: the gzip header
            // then depends on nothing but the settings.
            Compression::Gzip => Self::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(inner, flate2::Compression::default()),
            ),
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, 3)?;
                // The frame's content checksum lets readers catch corruption.
                encoder.include_checksum(true)?;
                Self::Zstd(encoder)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Self::Plain(w) => Ok(w),
            Self::Gzip(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Gzip(e) => e.write(buf),
            Self::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(e) => e.flush(),
            Self::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_both_ways() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.media_type()), Some(c));
        }
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip; foo=bar"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_media_type(media_type::OCI_CONFIG), None);
    }

    #[test]
    fn detects_what_encoders_write() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut e = Encoder::new(c, Vec::new()).unwrap();
            e.write_all(&[0u8; 1024]).unwrap();
            let out = e.finish().unwrap();
            assert_eq!(Compression::detect(&out), c);
        }
        assert_eq!(Compression::detect(b""), Compression::None);
    }
}
