//! The layer walk: which paths hold package records, what each layer adds,
//! replaces and deletes.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};

use oci_model::Digest;
use serde::{Deserialize, Serialize};

use crate::Inventory;
use crate::records::{self, Distro, Parsed, Record, SourcePackage};

/// Where a package was found: the ecosystem of its database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// A Debian (or Ubuntu) package from dpkg's database.
    Deb,
    /// An Alpine package from apk's database.
    Apk,
    /// A Python distribution (`*.dist-info`, `*.egg-info`).
    Python,
}

impl Ecosystem {
    /// `deb`, `apk`, `python`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deb => "deb",
            Self::Apk => "apk",
            Self::Python => "python",
        }
    }
}

/// One installed package and where its record is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// Its package manager.
    pub ecosystem: Ecosystem,
    /// Its name as its database spells it.
    pub name: String,
    /// Its version as its database spells it.
    pub version: String,
    /// Its architecture, when the database says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Its source package (Debian `Source:`, apk origin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourcePackage>,
    /// The license as declared (apk, Python), first line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The file its record is in, relative to the root
    /// (`var/lib/dpkg/status`, `usr/lib/python3/dist-packages/x.dist-info/METADATA`).
    pub path: String,
    /// The layer that last wrote that file.
    pub layer: Digest,
}

/// A file that looked like a package record but was not read, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Note {
    /// The file, relative to the root.
    pub path: String,
    /// The layer it is in.
    pub layer: Digest,
    /// Why it was skipped (or what of it was).
    pub reason: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{} (layer {}): {}", self.path, self.layer, self.reason)
    }
}

/// Size caps for the files read out of layers. A file over its cap is
/// skipped with a [`Note`], never read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest dpkg `status` or apk `installed` file read (real ones
    /// are a few MiB with thousands of packages). Default 64 MiB.
    pub max_database_bytes: u64,
    /// The largest Python metadata file read (its headers only are
    /// parsed; the long description behind them can be large). Default
    /// 16 MiB.
    pub max_metadata_bytes: u64,
    /// The largest `os-release`. Default 64 KiB.
    pub max_os_release_bytes: u64,
    /// The most package records kept over the whole image. Default
    /// 1,000,000.
    pub max_packages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_database_bytes: 64 << 20,
            max_metadata_bytes: 16 << 20,
            max_os_release_bytes: 64 << 10,
            max_packages: 1_000_000,
        }
    }
}

/// What kind of record file a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dpkg,
    Apk,
    Python,
    OsRelease,
}

/// Which record file `path` is, if any.
fn kind_of(path: &str) -> Option<Kind> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if path == "var/lib/dpkg/status" || (dir == "var/lib/dpkg/status.d" && !name.starts_with('.')) {
        // distroless writes one file per package in status.d, with
        // `.md5sums` beside each: those are not records.
        return (!name.ends_with(".md5sums")).then_some(Kind::Dpkg);
    }
    if path == "lib/apk/db/installed" {
        return Some(Kind::Apk);
    }
    if path == "etc/os-release" || path == "usr/lib/os-release" {
        return Some(Kind::OsRelease);
    }
    let parent = dir.rsplit_once('/').map_or(dir, |(_, p)| p);
    let python = (name == "METADATA" && parent.ends_with(".dist-info"))
        || (name == "PKG-INFO" && parent.ends_with(".egg-info"))
        || (name.ends_with(".egg-info") && name.len() > ".egg-info".len());
    python.then_some(Kind::Python)
}

/// What a record path holds, as of the layers read so far.
#[derive(Clone, Debug)]
enum Found {
    Packages {
        ecosystem: Ecosystem,
        records: Vec<Record>,
        layer: Digest,
    },
    Distro(Distro),
    Skipped(Note),
}

/// Walks an image's layers, base first, and keeps the package records of
/// the merged file system: a record file written by a later layer
/// replaces the earlier one, a whiteout or an opaque directory removes
/// it, and so does a later layer putting anything else at its path.
///
/// ```
/// use image_scan::{Limits, Scanner};
///
/// let mut tar = tar::Builder::new(Vec::new());
/// let status = b"Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\n";
/// let mut header = tar::Header::new_gnu();
/// header.set_size(status.len() as u64);
/// header.set_mode(0o644);
/// tar.append_data(&mut header, "var/lib/dpkg/status", &status[..])?;
/// let layer = tar.into_inner()?;
///
/// let digest = oci_model::Digest::of(&layer);
/// let mut scanner = Scanner::new(Limits::default());
/// scanner.scan_layer(&layer[..], &digest)?;
/// let found = scanner.finish();
/// assert_eq!(found.packages[0].name, "dash");
/// assert_eq!(found.packages[0].layer, digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Scanner {
    limits: Limits,
    found: BTreeMap<String, Found>,
    packages: usize,
}

impl Scanner {
    /// A scanner with these caps.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            found: BTreeMap::new(),
            packages: 0,
        }
    }

    /// Reads one uncompressed layer tar, `layer` being its digest. An
    /// error means the tar itself is unreadable; files inside it that
    /// are not acceptable records become notes.
    pub fn scan_layer(&mut self, tar: impl Read, layer: &Digest) -> std::io::Result<()> {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            // A name climbing out of the root is no path in the image; a
            // name that is not UTF-8 is no record file.
            let Some(path) = oci_layer::entry_path(&entry.path_bytes())
                .and_then(|p| p.into_os_string().into_string().ok())
            else {
                continue;
            };
            if path.is_empty() {
                continue;
            }
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            if name == ".wh..wh..opq" {
                self.remove_below(dir);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{dir}/{hidden}")
                };
                self.remove(&gone);
                self.remove_below(&gone);
                continue;
            }
            let kind = entry.header().entry_type();
            if !kind.is_dir() {
                // A file, a link or a device where a directory was: what
                // was below it is gone.
                self.remove_below(&path);
            }
            let Some(record_kind) = kind_of(&path) else {
                // Anything else at a record's path replaces it (an
                // `x.egg-info` file turned into a directory).
                self.remove(&path);
                continue;
            };
            self.remove(&path);
            if kind.is_dir() {
                continue;
            }
            let note = |reason: String| {
                Found::Skipped(Note {
                    path: path.clone(),
                    layer: layer.clone(),
                    reason,
                })
            };
            let found = if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let what = if kind.is_symlink() {
                    "a symlink"
                } else {
                    "a hard link"
                };
                if record_kind == Kind::OsRelease {
                    // `etc/os-release` is a symlink to `../usr/lib/os-release`
                    // on most distributions; that file is read on its own.
                    continue;
                }
                note(format!(
                    "{what} (to `{}`), not followed",
                    target.chars().take(200).collect::<String>()
                ))
            } else if !kind.is_file() {
                note("not a regular file, not read".into())
            } else {
                let size = entry.header().size()?;
                let cap = match record_kind {
                    Kind::Dpkg | Kind::Apk => self.limits.max_database_bytes,
                    Kind::Python => self.limits.max_metadata_bytes,
                    Kind::OsRelease => self.limits.max_os_release_bytes,
                };
                if size > cap {
                    note(format!("{size} bytes, over the {cap}-byte limit: not read"))
                } else {
                    self.read(record_kind, &mut entry, size, &path, layer)?
                }
            };
            if let Found::Packages { records, .. } = &found {
                self.packages += records.len();
            }
            self.found.insert(path, found);
        }
        Ok(())
    }

    /// Reads the record file `entry` of `size` bytes (within its cap).
    fn read(
        &mut self,
        kind: Kind,
        entry: &mut impl Read,
        size: u64,
        path: &str,
        layer: &Digest,
    ) -> std::io::Result<Found> {
        let reader = BufReader::with_capacity(64 << 10, entry);
        let skipped = |reason: String| {
            Found::Skipped(Note {
                path: path.to_owned(),
                layer: layer.clone(),
                reason,
            })
        };
        let (ecosystem, parsed) = match kind {
            Kind::OsRelease => {
                return Ok(match records::parse_os_release(reader)? {
                    Some(d) => Found::Distro(d),
                    None => skipped("no valid ID: not an os-release file".into()),
                });
            }
            Kind::Dpkg => (Ecosystem::Deb, records::parse_dpkg_status(reader)?),
            Kind::Apk => (Ecosystem::Apk, records::parse_apk_installed(reader)?),
            Kind::Python => match records::parse_python_metadata(reader)? {
                Some(r) => (
                    Ecosystem::Python,
                    Parsed {
                        records: vec![r],
                        skipped: 0,
                    },
                ),
                None => {
                    return Ok(skipped(
                        "no valid Name and Version: not a distribution's metadata".into(),
                    ));
                }
            },
        };
        if self.packages + parsed.records.len() > self.limits.max_packages {
            return Ok(skipped(format!(
                "{} records, over the image's limit of {} packages: not read",
                parsed.records.len(),
                self.limits.max_packages
            )));
        }
        if parsed.records.is_empty() && (parsed.skipped > 0 || size > 0) {
            // An empty database is an image without packages; one with
            // bytes but no record is not what its name says.
            return Ok(skipped(match parsed.skipped {
                0 => "no package record in it".to_owned(),
                n => format!("no valid record ({n} without a valid name and version)"),
            }));
        }
        let found = Found::Packages {
            ecosystem,
            records: parsed.records,
            layer: layer.clone(),
        };
        if parsed.skipped > 0 {
            // Keep the good records and say what was left out: stored
            // under a sibling key so a whiteout of the file removes both.
            self.found.insert(
                format!("{path}\0skipped"),
                skipped(format!(
                    "{} records without a valid name and version skipped",
                    parsed.skipped
                )),
            );
        }
        Ok(found)
    }

    /// Forgets what was at `path`.
    fn remove(&mut self, path: &str) {
        if let Some(Found::Packages { records, .. }) = self.found.remove(path) {
            self.packages -= records.len();
        }
        self.found.remove(&format!("{path}\0skipped"));
    }

    /// Forgets everything below the directory `dir` (the root for `""`).
    fn remove_below(&mut self, dir: &str) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let below: Vec<String> = self
            .found
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.remove(&p);
        }
    }

    /// The packages of the merged file system, sorted, and the notes
    /// (the inventory's `image` is left empty).
    pub fn finish(self) -> Inventory {
        let mut out = Inventory::default();
        let mut distros: BTreeMap<String, Distro> = BTreeMap::new();
        for (path, found) in self.found {
            match found {
                Found::Packages {
                    ecosystem,
                    records,
                    layer,
                } => out.packages.extend(records.into_iter().map(|r| Package {
                    ecosystem,
                    name: r.name,
                    version: r.version,
                    arch: r.arch,
                    source: r.source,
                    license: r.license,
                    path: path.clone(),
                    layer: layer.clone(),
                })),
                Found::Distro(d) => {
                    distros.insert(path, d);
                }
                Found::Skipped(note) => out.notes.push(note),
            }
        }
        out.distro = distros
            .remove("etc/os-release")
            .or_else(|| distros.remove("usr/lib/os-release"));
        out.packages.sort();
        out.notes.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar from `(path, entry)` pairs.
    enum E<'a> {
        File(&'a [u8]),
        Dir,
        Link(&'a str),
    }

    fn layer(entries: &[(&str, E<'_>)]) -> (Vec<u8>, Digest) {
        let mut b = tar::Builder::new(Vec::new());
        for (path, e) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            // Names written as they are, `/x` and `./x` included (the
            // builder's own setters refuse absolute names).
            let name = &mut h.as_gnu_mut().unwrap().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            let data: &[u8] = match e {
                E::File(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    data
                }
                E::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    &[]
                }
                E::Link(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name(target).unwrap();
                    &[]
                }
            };
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let digest = Digest::of(&bytes);
        (bytes, digest)
    }

    fn scan(layers: &[&[(&str, E<'_>)]], limits: Limits) -> (Inventory, Vec<Digest>) {
        let mut s = Scanner::new(limits);
        let mut digests = vec![];
        for l in layers {
            let (bytes, d) = layer(l);
            s.scan_layer(&bytes[..], &d).unwrap();
            digests.push(d);
        }
        (s.finish(), digests)
    }

    fn names(inv: &Inventory) -> Vec<String> {
        inv.packages
            .iter()
            .map(|p| format!("{}:{}@{}", p.ecosystem.as_str(), p.name, p.version))
            .collect()
    }

    const STATUS: &[u8] =
        b"Package: libc6\nVersion: 2.36-9\nSource: glibc\nArchitecture: amd64\n\n\
Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\n";
    const META: &[u8] = b"Name: PyYAML\nVersion: 5.3.1\n";
    const SITE: &str = "usr/lib/python3/dist-packages";

    #[test]
    fn layers_replace_and_whiteouts_remove() {
        let meta = format!("{SITE}/PyYAML-5.3.1.dist-info/METADATA");
        let egg = format!("{SITE}/legacy-1.0.egg-info");
        let pkg_info = format!("{SITE}/old.egg-info/PKG-INFO");
        let newer = b"Package: libc6\nVersion: 2.36-9+deb12u4\nSource: glibc\n";
        let wh_meta = format!("{SITE}/.wh.PyYAML-5.3.1.dist-info");
        let (inv, d) = scan(
            &[
                &[
                    ("./var/lib/dpkg/status", E::File(STATUS)),
                    (&meta, E::File(META)),
                    (&egg, E::File(b"Name: legacy\nVersion: 1.0\n")),
                    (&pkg_info, E::File(b"Name: old\nVersion: 0.1\n")),
                ],
                &[
                    ("/var/lib/dpkg/status", E::File(newer)),
                    (&wh_meta, E::File(b"")),
                ],
                &[(&format!("{SITE}/old.egg-info"), E::Dir)],
            ],
            Limits::default(),
        );
        assert_eq!(
            names(&inv),
            [
                "deb:libc6@2.36-9+deb12u4",
                "python:legacy@1.0",
                "python:old@0.1"
            ]
        );
        assert_eq!(inv.packages[0].layer, d[1], "the layer that last wrote it");
        assert_eq!(inv.packages[1].layer, d[0]);
        assert_eq!(inv.packages[1].path, egg);
        assert!(inv.notes.is_empty(), "{:?}", inv.notes);

        // An opaque directory hides what lower layers had in it; a file
        // replacing a directory hides what was below.
        let (inv, _) = scan(
            &[
                &[
                    ("var/lib/dpkg/status", E::File(STATUS)),
                    (&meta, E::File(META)),
                ],
                &[
                    (&format!("{SITE}/.wh..wh..opq"), E::File(b"")),
                    ("var/lib/dpkg", E::File(b"not a directory")),
                ],
            ],
            Limits::default(),
        );
        assert!(inv.packages.is_empty(), "{:?}", inv.packages);

        // A whiteout of the whole directory, and an opaque root.
        let (inv, _) = scan(
            &[
                &[("var/lib/dpkg/status", E::File(STATUS))],
                &[("var/lib/.wh.dpkg", E::File(b""))],
            ],
            Limits::default(),
        );
        assert!(inv.packages.is_empty());
        let (inv, _) = scan(
            &[&[(&meta, E::File(META))], &[(".wh..wh..opq", E::File(b""))]],
            Limits::default(),
        );
        assert!(inv.packages.is_empty());
    }

    #[test]
    fn distroless_status_d_apk_and_os_release() {
        let (inv, _) = scan(
            &[&[
                (
                    "var/lib/dpkg/status.d/base",
                    E::File(b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n"),
                ),
                (
                    "var/lib/dpkg/status.d/base.md5sums",
                    E::File(b"abc  etc/x\n"),
                ),
                (
                    "lib/apk/db/installed",
                    E::File(b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n"),
                ),
                (
                    "usr/lib/os-release",
                    E::File(b"ID=debian\nVERSION_ID=\"12\"\n"),
                ),
                ("etc/os-release", E::Link("../usr/lib/os-release")),
            ]],
            Limits::default(),
        );
        assert_eq!(
            names(&inv),
            ["deb:base-files@12.4+deb12u5", "apk:musl@1.2.4-r2"]
        );
        assert_eq!(
            inv.distro.as_ref().unwrap().version_id.as_deref(),
            Some("12")
        );
        assert!(inv.notes.is_empty(), "{:?}", inv.notes);
    }

    #[test]
    fn hostile_record_files_become_notes() {
        let limits = Limits {
            max_database_bytes: 1024,
            ..Limits::default()
        };
        let huge = vec![b'x'; 4096];
        let (inv, _) = scan(
            &[&[
                ("var/lib/dpkg/status", E::Link("/etc/shadow")),
                ("lib/apk/db/installed", E::File(&huge)),
                (
                    "var/lib/dpkg/status.d/junk",
                    E::File(b"\x00\xff\x13binary: \x01\n\x02"),
                ),
                (
                    "usr/lib/python3/dist-packages/x.dist-info/METADATA",
                    E::File(b"\x7fELF\x02\x01"),
                ),
            ]],
            limits,
        );
        assert!(inv.packages.is_empty());
        let reasons: Vec<_> = inv
            .notes
            .iter()
            .map(|n| (n.path.as_str(), n.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(
            reasons[0].1.contains("over the 1024-byte limit"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("not a distribution"), "{reasons:?}");
        assert!(
            reasons[2]
                .1
                .contains("symlink (to `/etc/shadow`), not followed"),
            "{reasons:?}"
        );
        assert!(
            reasons[3].1.contains("no package record in it"),
            "{reasons:?}"
        );

        // A later good file replaces a skipped one, and its note goes.
        let (inv, _) = scan(
            &[
                &[("var/lib/dpkg/status", E::Link("/etc/shadow"))],
                &[("var/lib/dpkg/status", E::File(STATUS))],
            ],
            Limits::default(),
        );
        assert_eq!(inv.packages.len(), 2);
        assert!(inv.notes.is_empty());

        // Too many packages for the image.
        let (inv, _) = scan(
            &[&[("var/lib/dpkg/status", E::File(STATUS))]],
            Limits {
                max_packages: 1,
                ..Limits::default()
            },
        );
        assert!(inv.packages.is_empty());
        assert!(inv.notes[0].reason.contains("limit of 1 packages"));
    }

    #[test]
    fn a_partly_bad_database_keeps_its_good_records() {
        let status = b"Package: ok\nVersion: 1\n\nPackage: Bad Name\nVersion: 1\n";
        let (inv, _) = scan(
            &[&[("var/lib/dpkg/status", E::File(status))]],
            Limits::default(),
        );
        assert_eq!(names(&inv), ["deb:ok@1"]);
        assert_eq!(inv.notes.len(), 1);
        assert!(inv.notes[0].reason.contains("1 records"), "{:?}", inv.notes);
        assert_eq!(inv.notes[0].path, "var/lib/dpkg/status");
    }
}
