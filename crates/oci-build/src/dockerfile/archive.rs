//! `ADD` of a local archive: recognised by content as Docker does (a tar,
//! plain or compressed with gzip, bzip2, xz or zstd, whatever its name),
//! unpacked by `oci_layer::unpack` into a fresh directory of the build's
//! own, whose safety rules hold for archives too: no entry lands outside
//! that directory (`..` refused, absolute names read relative to it, no
//! write through a link, hard links only to files already unpacked),
//! device nodes and FIFOs are dropped, and entries and bytes are bounded.
//! The directory then goes into the layer under the destination, so the
//! image's tree never holds anything outside the destination either.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use oci_layer::{Compression, UnpackOptions, UnpackStats};

/// The most bytes of file contents one archive may unpack to.
const MAX_BYTES: u64 = 4 << 30;
/// The most entries one archive may hold.
const MAX_ENTRIES: u64 = 1 << 20;

/// How an archive is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// The decompressed stream of `file`.
fn decoder(format: Format, file: File) -> io::Result<Box<dyn Read>> {
    let file = io::BufReader::new(file);
    Ok(match format {
        Format::Tar => Box::new(file),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        Format::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(file)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

/// Whether `block` is a tar header: its checksum matches, as a tar reader
/// checks it before anything else.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|b| *b as char)
        .take_while(|c| *c != '\0')
        .collect();
    let Ok(stored) = u32::from_str_radix(digits.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == sum
}

/// The archive format of the file at `path`, or `None` when it is not a
/// (compressed) tar and `ADD` copies it as it is.
pub(super) fn detect(path: &Path) -> io::Result<Option<Format>> {
    let mut magic = [0u8; 6];
    let mut file = File::open(path)?;
    let n = read_full(&mut file, &mut magic)?;
    let magic = &magic[..n];
    let format = if magic.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if magic.starts_with(b"BZh") {
        Format::Bzip2
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::Xz
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else {
        Format::Tar
    };
    let mut block = [0u8; 512];
    // A compressed file that is not a tar inside is copied as it is, as a
    // damaged one is: Docker only unpacks what it can read as a tar.
    let Ok(mut stream) = decoder(format, File::open(path)?) else {
        return Ok(None);
    };
    match read_full(&mut stream, &mut block) {
        Ok(512) if is_tar_header(&block) => Ok(Some(format)),
        _ => Ok(None),
    }
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Unpacks the archive at `path` into `into` (which must not exist yet).
pub(super) fn extract(
    path: &Path,
    format: Format,
    into: &Path,
) -> Result<UnpackStats, oci_layer::Error> {
    let file = File::open(path).map_err(|source| oci_layer::Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let stream =
        decoder(format, file).map_err(|source| oci_layer::Error::CorruptStream { source })?;
    let options = UnpackOptions {
        max_entries: MAX_ENTRIES,
        max_total_bytes: MAX_BYTES,
    };
    oci_layer::unpack(stream, Compression::None, into, &options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn archives_are_recognised_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_with("a.txt", b"hello");
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        std::io::Write::write_all(&mut bz, &tar).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut xz, &tar).unwrap();
        let xz = xz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        // Names do not matter; contents do.
        for (name, bytes, want) in [
            ("plain.bin", &tar[..], Some(Format::Tar)),
            ("x.tar.gz", &gz[..], Some(Format::Gzip)),
            ("noext", &bz[..], Some(Format::Bzip2)),
            ("x.txz", &xz[..], Some(Format::Xz)),
            ("x.zst", &zst[..], Some(Format::Zstd)),
            ("notes.tar", b"just text, not a tar", None),
            ("empty.tar.gz", b"", None),
        ] {
            let p = write(name, bytes);
            assert_eq!(detect(&p).unwrap(), want, "{name}");
            if let Some(format) = want {
                let into = dir.path().join(format!("{name}.d"));
                extract(&p, format, &into).unwrap();
                assert_eq!(std::fs::read(into.join("a.txt")).unwrap(), b"hello");
            }
        }
        // gzip of something that is not a tar: a plain file.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[b'x'; 600]).unwrap();
        let p = write("text.gz", &gz.finish().unwrap());
        assert_eq!(detect(&p).unwrap(), None);
    }
}
