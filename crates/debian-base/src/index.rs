//! The package index: the `Packages` files apt keeps in
//! `/var/lib/apt/lists/` after `apt-get update`, read for one architecture.
//!
//! apt verified those files against the signed `InRelease` when it
//! fetched them; this crate trusts them as apt does, and every `.deb` is
//! then checked against the SHA256 they give. Compressed lists (`.lz4`,
//! `.gz`, `.xz`, `.zst`, as `Acquire::GzipIndexes` leaves them) are read
//! through `apt-helper cat-file`, which decompresses whatever apt wrote.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::control::{Paragraph, Paragraphs, Relation, parse_provides};
use crate::{Error, Result, compare_versions};

/// Where apt keeps its lists.
pub const APT_LISTS: &str = "/var/lib/apt/lists";
/// apt's helper that prints a list file decompressed.
const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

/// One binary package version as the index lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Package {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// `Architecture` (`amd64`, `all`...).
    pub architecture: String,
    /// `Depends`, unparsed.
    pub depends: String,
    /// `Pre-Depends`, unparsed.
    pub pre_depends: String,
    /// `Provides`, unparsed.
    pub provides: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (`required`, `important`, `optional`...).
    pub priority: String,
    /// `SHA256` of the `.deb`, lowercase hex.
    pub sha256: Option<String>,
    /// `Size` of the `.deb`.
    pub size: Option<u64>,
    /// `Filename`: its path in the archive.
    pub filename: Option<String>,
}

impl Package {
    fn from_paragraph(p: &Paragraph, origin: &str) -> Result<Self> {
        let need = |name: &str| {
            p.get(name)
                .map(str::to_owned)
                .ok_or_else(|| Error::Control {
                    origin: origin.to_owned(),
                    line: 0,
                    reason: format!(
                        "a paragraph without {name} (package {})",
                        p.get("Package").unwrap_or("?")
                    ),
                })
        };
        let field = |name: &str| p.get(name).unwrap_or_default().to_owned();
        Ok(Self {
            name: need("Package")?,
            version: need("Version")?,
            architecture: need("Architecture")?,
            depends: field("Depends"),
            pre_depends: field("Pre-Depends"),
            provides: field("Provides"),
            essential: p.get("Essential") == Some("yes"),
            priority: field("Priority"),
            sha256: p
                .get("SHA256")
                .filter(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()))
                .map(str::to_ascii_lowercase),
            size: p.get("Size").and_then(|s| s.parse().ok()),
            filename: p.get("Filename").map(str::to_owned),
        })
    }
}

/// The packages of one architecture (and `all`), every version the lists
/// hold, with who provides which virtual package.
#[derive(Clone, Debug, Default)]
pub struct Index {
    arch: String,
    packages: BTreeMap<String, Vec<Package>>,
    /// Virtual name → (providing package, its version, provided version).
    providers: BTreeMap<String, Vec<(String, String, Option<String>)>>,
}

impl Index {
    /// An empty index for `arch` (a Debian architecture: `amd64`, `arm64`).
    pub fn new(arch: &str) -> Self {
        Self {
            arch: arch.to_owned(),
            ..Self::default()
        }
    }

    /// Reads every `*_binary-ARCH_Packages*` and `*_binary-all_Packages*`
    /// file of `lists` (apt's lists directory), in name order.
    pub fn from_apt_lists(lists: &Path, arch: &str) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(lists)
            .map_err(|e| Error::io(lists, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                [
                    format!("_binary-{arch}_Packages"),
                    "_binary-all_Packages".into(),
                ]
                .iter()
                .any(|m| {
                    name.ends_with(m.as_str())
                        || [".lz4", ".gz", ".xz", ".zst"]
                            .iter()
                            .any(|c| name.ends_with(&format!("{m}{c}")))
                })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::NoLists {
                dir: lists.to_owned(),
                arch: arch.to_owned(),
            });
        }
        let mut index = Self::new(arch);
        for file in &files {
            let origin = file.display().to_string();
            if file.to_string_lossy().ends_with("_Packages") {
                let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
                index.add(BufReader::new(f), &origin)?;
                continue;
            }
            let mut child = Command::new(APT_HELPER)
                .arg("cat-file")
                .arg(file)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| Error::io(APT_HELPER, e))?;
            let stdout = child.stdout.take().expect("piped");
            let added = index.add(BufReader::new(stdout), &origin);
            let out = child
                .wait_with_output()
                .map_err(|e| Error::io(APT_HELPER, e))?;
            if !out.status.success() {
                return Err(Error::Command {
                    command: format!("{APT_HELPER} cat-file {origin}"),
                    status: out.status.to_string(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            added?;
        }
        Ok(index)
    }

    /// Adds the paragraphs of one `Packages` file; those of other
    /// architectures are skipped.
    ///
    /// ```
    /// let mut index = debian_base::Index::new("amd64");
    /// index.add("Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\n".as_bytes(), "test")?;
    /// assert_eq!(index.candidate("dash").unwrap().version, "0.5.12-2");
    /// # Ok::<(), debian_base::Error>(())
    /// ```
    pub fn add(&mut self, reader: impl BufRead, origin: &str) -> Result<()> {
        for p in Paragraphs::named(reader, origin) {
            let p = p?;
            let arch = p.get("Architecture").unwrap_or_default();
            if arch != self.arch && arch != "all" {
                continue;
            }
            let package = Package::from_paragraph(&p, origin)?;
            for Relation { name, version } in parse_provides(&package.provides)? {
                self.providers.entry(name).or_default().push((
                    package.name.clone(),
                    package.version.clone(),
                    version.map(|(_, v)| v),
                ));
            }
            let versions = self.packages.entry(package.name.clone()).or_default();
            if !versions.iter().any(|v| v.version == package.version) {
                versions.push(package);
            }
        }
        Ok(())
    }

    /// The architecture this index is for.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Every version of `name` the lists hold.
    pub fn versions(&self, name: &str) -> &[Package] {
        self.packages.get(name).map_or(&[], Vec::as_slice)
    }

    /// The version apt installs by default: the highest.
    pub fn candidate(&self, name: &str) -> Option<&Package> {
        self.versions(name)
            .iter()
            .max_by(|a, b| compare_versions(&a.version, &b.version))
    }

    /// The packages that provide the virtual `name`: (package, its
    /// version, the version provided if any).
    pub fn providers(&self, name: &str) -> &[(String, String, Option<String>)] {
        self.providers.get(name).map_or(&[], Vec::as_slice)
    }
}
