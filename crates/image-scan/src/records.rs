//! Parsers of the package databases an image carries: dpkg's `status`
//! (and distroless `status.d/*`), apk's `installed`, Python's core
//! metadata (`METADATA`, `PKG-INFO`) and `os-release`.
//!
//! Every input is untrusted bytes from a layer. The parsers stream
//! (memory is bounded by [`MAX_LINE`] and the fields they keep, never by
//! the input), read lossily (a stray non-UTF-8 byte spoils one value,
//! not the database) and never panic; a record without a valid name or
//! version is counted as skipped, not guessed at.

use std::io::{BufRead, Read};

use serde::{Deserialize, Serialize};

/// The longest line kept; longer lines (a huge `Description`) are read
/// through and ignored.
pub const MAX_LINE: usize = 64 << 10;

/// The longest value kept of a field; longer ones are ignored.
const MAX_VALUE: usize = 4 << 10;

/// A Debian source package: what security advisories name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePackage {
    /// The source package's name (`glibc` for `libc6`).
    pub name: String,
    /// Its version: the `Source:` field's `(version)`, else the binary's.
    pub version: String,
}

/// One package record read from a database, before it is tied to a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Name as the database spells it.
    pub name: String,
    /// Version as the database spells it.
    pub version: String,
    /// Architecture (`amd64`, `all`, `x86_64`), when given.
    pub arch: Option<String>,
    /// The source package (Debian `Source:`, apk origin).
    pub source: Option<SourcePackage>,
    /// The license as declared (apk `L:`, Python `License-Expression` or
    /// `License`), its first line, when given.
    pub license: Option<String>,
}

/// What one database file held: its records and how many it skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The valid records, in file order.
    pub records: Vec<Record>,
    /// Records skipped: no valid name or version.
    pub skipped: usize,
}

/// `Name: value` fields of one paragraph, only those asked for.
type Fields = Vec<(String, String)>;

/// Reads one line of at most [`MAX_LINE`] bytes into `line` (without its
/// end); `None` at the end of input. A longer line is read through and
/// reported as `Some(false)`.
fn next_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    line.clear();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        return Ok(Some(true));
    }
    if n <= MAX_LINE {
        // The last line, without a newline.
        return Ok(Some(true));
    }
    // Over the cap: drop the rest of the line.
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                break;
            }
            None => {
                let len = buf.len();
                reader.consume(len);
            }
        }
    }
    line.clear();
    Ok(Some(false))
}

/// Streams deb822-style paragraphs (`Name: value`, continuation lines
/// starting with a space or tab, blank lines between paragraphs; apk's
/// `K:value` is the same shape) and calls `each` with the fields named in
/// `wanted` (compared case-insensitively as deb822 says, or exactly for
/// apk, where `a:` and `A:` differ; continuation lines are not kept, no
/// field this crate reads has them).
fn paragraphs(
    mut reader: impl BufRead,
    wanted: &[&str],
    exact: bool,
    mut each: impl FnMut(&Fields),
) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut fields: Fields = Vec::new();
    while let Some(whole) = next_line(&mut reader, &mut line)? {
        if !whole {
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            if !fields.is_empty() {
                each(&fields);
                fields.clear();
            }
            continue;
        }
        if matches!(line[0], b' ' | b'\t' | b'#') {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.len() > MAX_VALUE {
            continue;
        }
        let name = name.trim();
        let found = wanted.iter().find(|w| {
            if exact {
                **w == name
            } else {
                w.eq_ignore_ascii_case(name)
            }
        });
        if let Some(w) = found {
            // A repeated field: the first one counts, as dpkg reads it.
            if !fields.iter().any(|(n, _)| n == w) {
                fields.push(((*w).to_owned(), value.to_owned()));
            }
        }
    }
    if !fields.is_empty() {
        each(&fields);
    }
    Ok(())
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A Debian package name: `[a-z0-9][a-z0-9+.-]+` (policy §5.6.1).
fn debian_name(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 256
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
}

/// A version as package databases write them: printable ASCII without
/// spaces, at most 256 bytes. Looser than either format's rules, strict
/// enough that it cannot break a purl or a table.
fn plain_version(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A word from a database (architecture, apk origin): printable ASCII
/// without spaces, at most 128 bytes.
fn word(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// A license as declared, for display: its first line, at most 256
/// characters, control characters dropped.
fn license(s: &str) -> Option<String> {
    let first: String = s
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect();
    let first = first.trim();
    (!first.is_empty() && !first.eq_ignore_ascii_case("UNKNOWN")).then(|| first.to_owned())
}

/// Parses a dpkg `status` file (or a distroless `status.d/*` file, the
/// same format without `Status:`). Packages whose status says they are
/// not installed (`not-installed`, `config-files`) are left out; the
/// `Source:` field (`name` or `name (version)`) gives the source
/// package, which defaults to the binary package itself.
///
/// ```
/// let status = b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
/// Source: glibc\nVersion: 2.36-9+deb12u4\n\n\
/// Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
/// let parsed = image_scan::parse_dpkg_status(&status[..])?;
/// assert_eq!(parsed.records.len(), 1);
/// let libc = &parsed.records[0];
/// let source = libc.source.as_ref().unwrap();
/// assert_eq!((source.name.as_str(), source.version.as_str()), ("glibc", "2.36-9+deb12u4"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn parse_dpkg_status(reader: impl BufRead) -> std::io::Result<Parsed> {
    let mut parsed = Parsed::default();
    let wanted = ["Package", "Version", "Architecture", "Source", "Status"];
    paragraphs(reader, &wanted, false, |f| {
        if let Some(status) = field(f, "Status") {
            let state = status.split_whitespace().last().unwrap_or("");
            if matches!(state, "not-installed" | "config-files") {
                return;
            }
        }
        let (Some(name), Some(version)) = (field(f, "Package"), field(f, "Version")) else {
            parsed.skipped += 1;
            return;
        };
        if !debian_name(name) || !plain_version(version) {
            parsed.skipped += 1;
            return;
        }
        let source = match field(f, "Source") {
            None => Some(SourcePackage {
                name: name.to_owned(),
                version: version.to_owned(),
            }),
            Some(s) => {
                let (src, ver) = match s.split_once('(') {
                    Some((n, rest)) => (n.trim(), rest.trim_end().strip_suffix(')').map(str::trim)),
                    None => (s.trim(), None),
                };
                let ver = ver.unwrap_or(version);
                (debian_name(src) && plain_version(ver)).then(|| SourcePackage {
                    name: src.to_owned(),
                    version: ver.to_owned(),
                })
            }
        };
        parsed.records.push(Record {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: field(f, "Architecture").and_then(word),
            source,
            license: None,
        });
    })?;
    Ok(parsed)
}

/// Parses Alpine's `lib/apk/db/installed`: `P:` name, `V:` version, `A:`
/// architecture, `o:` origin (the source package), `L:` license.
///
/// ```
/// let db = b"C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\n\n";
/// let parsed = image_scan::parse_apk_installed(&db[..])?;
/// assert_eq!(parsed.records[0].name, "musl");
/// assert_eq!(parsed.records[0].license.as_deref(), Some("MIT"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn parse_apk_installed(reader: impl BufRead) -> std::io::Result<Parsed> {
    let mut parsed = Parsed::default();
    let wanted = ["P", "V", "A", "o", "L"];
    paragraphs(reader, &wanted, true, |f| {
        let (Some(name), Some(version)) = (field(f, "P"), field(f, "V")) else {
            parsed.skipped += 1;
            return;
        };
        let name_ok = name.len() <= 256
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b));
        if name.is_empty() || !name_ok || !plain_version(version) {
            parsed.skipped += 1;
            return;
        }
        let source = field(f, "o").and_then(word).map(|origin| SourcePackage {
            name: origin,
            version: version.to_owned(),
        });
        parsed.records.push(Record {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: field(f, "A").and_then(word),
            source,
            license: field(f, "L").and_then(license),
        });
    })?;
    Ok(parsed)
}

/// Parses Python core metadata (`METADATA`, `PKG-INFO`, a `*.egg-info`
/// file): the headers up to the first blank line; the body (the long
/// description) is not read. `Name` must be a valid distribution name
/// (PEP 508) and `Version` a plain version string, else `None`.
///
/// ```
/// let meta = b"Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.3.1\nLicense: MIT\n\nlong text";
/// let r = image_scan::parse_python_metadata(&meta[..])?.unwrap();
/// assert_eq!((r.name.as_str(), r.version.as_str()), ("PyYAML", "5.3.1"));
/// assert_eq!(image_scan::pep503_name(&r.name), "pyyaml");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn parse_python_metadata(mut reader: impl BufRead) -> std::io::Result<Option<Record>> {
    let mut line = Vec::new();
    let mut fields: Fields = Vec::new();
    let wanted = ["Name", "Version", "License-Expression", "License"];
    while let Some(whole) = next_line(&mut reader, &mut line)? {
        if !whole {
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        if let Some((name, value)) = text.split_once(':')
            && let Some(w) = wanted.iter().find(|w| w.eq_ignore_ascii_case(name.trim()))
            && !fields.iter().any(|(n, _)| n == w)
            && value.len() <= MAX_VALUE
        {
            fields.push(((*w).to_owned(), value.trim().to_owned()));
        }
    }
    let (Some(name), Some(version)) = (field(&fields, "Name"), field(&fields, "Version")) else {
        return Ok(None);
    };
    if !python_name(name) || !plain_version(version) {
        return Ok(None);
    }
    Ok(Some(Record {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: None,
        source: None,
        license: field(&fields, "License-Expression")
            .or_else(|| field(&fields, "License"))
            .and_then(license),
    }))
}

/// A distribution name as PEP 508 allows: ASCII letters and digits, with
/// `.`, `_` and `-` inside.
fn python_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// A Python distribution name normalised as PEP 503 says (and purls
/// want): lower case, each run of `-`, `_` and `.` one `-`.
///
/// ```
/// assert_eq!(image_scan::pep503_name("Zope.Interface__x"), "zope-interface-x");
/// ```
pub fn pep503_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// The distribution an image is built from, from `os-release`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distro {
    /// `ID`: `debian`, `ubuntu`, `alpine`.
    pub id: String,
    /// `VERSION_ID`: `12`, `3.19.1`; absent on testing and unstable.
    pub version_id: Option<String>,
}

/// Parses `os-release` (`KEY=value`, values optionally quoted). `None`
/// without a valid `ID` (lower-case letters, digits, `._-`).
///
/// ```
/// let d = image_scan::parse_os_release(&b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"[..])?;
/// assert_eq!(d.unwrap().version_id.as_deref(), Some("12"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn parse_os_release(mut reader: impl BufRead) -> std::io::Result<Option<Distro>> {
    let mut line = Vec::new();
    let (mut id, mut version_id) = (None, None);
    let ok = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    while let Some(whole) = next_line(&mut reader, &mut line)? {
        if !whole {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let Some((key, value)) = text.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        match key.trim() {
            "ID" if ok(value) => id = Some(value.to_owned()),
            "VERSION_ID" if ok(value) => version_id = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(id.map(|id| Distro { id, version_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_source_forms_and_skips() {
        let status = "Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\n\
Architecture: amd64\nSource: openssl (3.0.11-1~deb12u2)\nDescription: x\n long\n .\n more\n\n\n\
Package: libgcc-s1\nVersion: 12.2.0-14\nSource: gcc-12 (12.2.0-14+b1)\n\n\
Package: BAD NAME\nVersion: 1\n\n\
Package: noversion\n\n\
Package: half\nStatus: install ok half-configured\nVersion: 2\n\n\
Package: removed\nStatus: purge ok not-installed\nVersion: 3\n";
        let p = parse_dpkg_status(status.as_bytes()).unwrap();
        let names: Vec<_> = p.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["libssl3", "libgcc-s1", "half"]);
        assert_eq!(p.skipped, 2);
        let ssl = &p.records[0];
        assert_eq!(ssl.arch.as_deref(), Some("amd64"));
        assert_eq!(
            ssl.source,
            Some(SourcePackage {
                name: "openssl".into(),
                version: "3.0.11-1~deb12u2".into()
            })
        );
        assert_eq!(
            p.records[1].source.as_ref().unwrap().version,
            "12.2.0-14+b1"
        );
        assert_eq!(p.records[2].source.as_ref().unwrap().name, "half");
    }

    #[test]
    fn hostile_bytes_are_read_through() {
        // A line far over the cap, binary garbage and CRLF endings.
        let mut status = b"Package: pa\r\nVersion: 1\r\nDescription: ".to_vec();
        status.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
        status.extend(
            b"\n\n\xff\xfe\x00garbage\n\nPackage: pb\nVersion: \xff2\n\nPackage: pc\nVersion: 3",
        );
        let p = parse_dpkg_status(&status[..]).unwrap();
        let names: Vec<_> = p.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["pa", "pc"], "{p:?}");
        assert_eq!(p.skipped, 1, "pb's version is not ASCII");
        assert_eq!(parse_dpkg_status(&b""[..]).unwrap(), Parsed::default());
    }

    #[test]
    fn python_metadata_headers_only() {
        let meta = b"Metadata-Version: 2.1\nName: zope.interface\nVersion: 6.0\n\
License: ZPL 2.1\n  continued\n\nName: not-a-header\n";
        let r = parse_python_metadata(&meta[..]).unwrap().unwrap();
        assert_eq!(r.name, "zope.interface");
        assert_eq!(r.license.as_deref(), Some("ZPL 2.1"));
        assert_eq!(pep503_name(&r.name), "zope-interface");
        for bad in [
            &b"Name: -bad\nVersion: 1\n"[..],
            b"Name: ok\nVersion: 1 2\n",
            b"Name: ok\n",
            b"\nName: ok\nVersion: 1\n",
            b"\x00\x01\x02",
        ] {
            assert_eq!(parse_python_metadata(bad).unwrap(), None, "{bad:?}");
        }
    }

    #[test]
    fn apk_and_os_release() {
        let db = b"P:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\nL:GPL-2.0-only\n\nP:\nV:1\n\n";
        let p = parse_apk_installed(&db[..]).unwrap();
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.skipped, 1);
        let d = parse_os_release(&b"ID=alpine\nVERSION_ID=3.19.1\n"[..]).unwrap();
        assert_eq!(
            d,
            Some(Distro {
                id: "alpine".into(),
                version_id: Some("3.19.1".into())
            })
        );
        assert_eq!(parse_os_release(&b"ID=\"Bad Id\"\n"[..]).unwrap(), None);
    }
}
