//! The local store: an import builds a new generation directory and swaps
//! one symlink to it, so readers see the old database or the new one,
//! never a mix; each (ecosystem, package) has its own file, named by a
//! hash, so a lookup reads one small file and no name from the input ever
//! becomes a path.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::osv::{Advisory, Affected, Record};
use crate::version::Ecosystem;

/// The store format this crate writes and reads.
const FORMAT: u32 = 1;
/// The symlink naming the live generation.
const CURRENT: &str = "current";
const META: &str = "meta.json";
/// A store's `meta.json` is small; more is not ours.
const MAX_META: u64 = 1 << 20;

/// Bounds on what an import reads: every one of them is an error when
/// passed, naming the file.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest OSV JSON file (on disk or uncompressed in a zip).
    pub max_record_bytes: u64,
    /// Most JSON files read in one import (zip entries included).
    pub max_records: u64,
    /// Most bytes read in one import, uncompressed (zip bombs stop here).
    pub max_total_bytes: u64,
    /// Deepest directory level below the import path.
    pub max_depth: usize,
}

impl Default for Limits {
    /// 16 MiB a record (the largest real ones are a few hundred KiB),
    /// 4 million records, 16 GiB in all, 16 directory levels.
    fn default() -> Self {
        Limits {
            max_record_bytes: 16 << 20,
            max_records: 4_000_000,
            max_total_bytes: 16 << 30,
            max_depth: 16,
        }
    }
}

/// Advisory and package counts of one OSV ecosystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Advisories with at least one package in this ecosystem.
    pub advisories: u64,
    /// Distinct packages they name.
    pub packages: u64,
}

/// What an import wrote: `meta.json` of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Store format version.
    pub format: u32,
    /// Seconds since the Unix epoch when the import finished.
    pub imported_at: u64,
    /// The path imported.
    pub source: String,
    /// Counts per OSV ecosystem (`PyPI`, `Debian:12`, …).
    pub ecosystems: BTreeMap<String, Counts>,
    /// Withdrawn records skipped.
    pub withdrawn: u64,
    /// Records skipped because a record with the same id came earlier.
    pub duplicates: u64,
}

/// A package as an inventory finds it: the input of matching.
///
/// For Debian, advisories name source packages: give the source package
/// and its version when the binary package's differ (`libc6` comes from
/// `glibc`; a binNMU adds `+bN` to the binary's version only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Package {
    /// The OSV ecosystem: `PyPI`, `Debian:12`, `Alpine:v3.18`, …
    pub ecosystem: String,
    /// The (binary) package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Debian: the source package name, when it differs.
    pub source_name: Option<String>,
    /// Debian: the source package version, when it differs.
    pub source_version: Option<String>,
}

/// An advisory that affects a package.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The advisory.
    pub advisory: Advisory,
    /// The package name the advisory names (the source package for Debian).
    pub package: String,
    /// The version compared.
    pub version: String,
    /// The smallest fixed version above it, when the advisory names one.
    pub fixed: Option<String>,
}

/// Imports an OSV database from `source` into the store at `db`, replacing
/// the store's previous content in one atomic step.
///
/// `source` is a zip of OSV JSON files (osv-scanner's `<ecosystem>/all.zip`),
/// one OSV JSON file, or a directory searched for both (symbolic links below
/// it are refused). Withdrawn records are skipped, a record whose id came
/// earlier in the import is skipped too. Any error (a malformed record, a
/// bound passed, an unsafe zip entry name) leaves the previous store as it
/// was and nothing of the new one.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("GHSA-8q59-q68h-6hv4.json"), r#"{
///   "id": "GHSA-8q59-q68h-6hv4", "aliases": ["CVE-2020-14343"],
///   "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"},
///     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
///   "database_specific": {"severity": "CRITICAL"}}"#)?;
/// let db = dir.path().join("db");
/// let meta = advisory_db::import(dir.path(), &db, &advisory_db::Limits::default())?;
/// assert_eq!(meta.ecosystems["PyPI"].advisories, 1);
///
/// let found = advisory_db::Database::open(&db)?.check(&advisory_db::Package {
///     ecosystem: "PyPI".into(),
///     name: "pyyaml".into(),
///     version: "5.3.1".into(),
///     ..Default::default()
/// })?;
/// assert_eq!(found[0].advisory.aliases, ["CVE-2020-14343"]);
/// assert_eq!(found[0].fixed.as_deref(), Some("5.4"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import(source: &Path, db: &Path, limits: &Limits) -> Result<Meta, Error> {
    fs::create_dir_all(db).map_err(|e| Error::io(db, e))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let gen_name = format!(
        "gen-{}-{}-{}",
        stamp.as_secs(),
        stamp.subsec_nanos(),
        std::process::id()
    );
    let mut generation = Generation {
        path: db.join(&gen_name),
        committed: false,
    };
    fs::create_dir(&generation.path).map_err(|e| Error::io(&generation.path, e))?;
    let mut writer = Writer {
        root: generation.path.clone(),
        store: fs::canonicalize(db).map_err(|e| Error::io(db, e))?,
        limits: limits.clone(),
        files: 0,
        bytes: 0,
        seen: HashSet::new(),
        packages: HashSet::new(),
        meta: Meta {
            format: FORMAT,
            imported_at: 0,
            source: source.display().to_string(),
            ecosystems: BTreeMap::new(),
            withdrawn: 0,
            duplicates: 0,
        },
    };
    writer.walk(source, 0)?;
    if writer.seen.is_empty() && writer.meta.withdrawn == 0 {
        return Err(Error::Empty {
            path: source.to_owned(),
        });
    }
    let mut meta = writer.meta;
    meta.imported_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let meta_path = generation.path.join(META);
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::io(&meta_path, e.into()))?;
    write_synced(&meta_path, &json)?;
    swap(db, &gen_name)?;
    generation.committed = true;
    Ok(meta)
}

/// Points `db/current` at the new generation with one rename, then removes
/// the generation it replaced.
fn swap(db: &Path, gen_name: &str) -> Result<(), Error> {
    let current = db.join(CURRENT);
    let previous = fs::read_link(&current).ok();
    let link = db.join(format!(".{gen_name}.link"));
    std::os::unix::fs::symlink(gen_name, &link).map_err(|e| Error::io(&link, e))?;
    if let Err(e) = fs::rename(&link, &current) {
        let _ = fs::remove_file(&link);
        return Err(Error::io(&current, e));
    }
    // The new generation is live from here on: a failed fsync of the
    // directory must not turn into an error that removes it.
    let _ = File::open(db).and_then(|d| d.sync_all());
    if let Some(previous) = previous.and_then(|p| generation_name(&p))
        && previous != gen_name
    {
        // Readers that opened the old generation lose it now; a failure to
        // remove it leaves garbage, not a broken store.
        let _ = fs::remove_dir_all(db.join(previous));
    }
    Ok(())
}

/// The generation a `current` link names, if it is one of ours (a bare
/// `gen-…` name: the link never leads out of the store).
fn generation_name(target: &Path) -> Option<String> {
    let name = target.to_str()?;
    (name.starts_with("gen-") && !name.contains('/') && !name.contains(".."))
        .then(|| name.to_owned())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// A generation being written: removed unless committed.
struct Generation {
    path: PathBuf,
    committed: bool,
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The file holding one (ecosystem, normalised name)'s entries.
fn package_file(root: &Path, ecosystem: &str, normalized: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(ecosystem.as_bytes());
    h.update([0]);
    h.update(normalized.as_bytes());
    let hex = hex::encode(h.finalize());
    root.join("packages")
        .join(&hex[..2])
        .join(format!("{}.jsonl", &hex[2..]))
}

struct Writer {
    root: PathBuf,
    /// The store's directory, canonical: never read as input.
    store: PathBuf,
    limits: Limits,
    files: u64,
    bytes: u64,
    seen: HashSet<String>,
    packages: HashSet<(String, String)>,
    meta: Meta,
}

impl Writer {
    fn walk(&mut self, path: &Path, depth: usize) -> Result<(), Error> {
        // The path given is followed if it is a link; nothing below it is.
        let md = if depth == 0 {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        }
        .map_err(|e| Error::io(path, e))?;
        if md.file_type().is_symlink() {
            return Err(Error::Symlink {
                path: path.to_owned(),
            });
        }
        if md.is_dir() {
            // The store itself may sit inside the tree being imported.
            if fs::canonicalize(path).ok().as_deref() == Some(self.store.as_path()) {
                return Ok(());
            }
            if depth >= self.limits.max_depth {
                return Err(Error::TooDeep {
                    path: path.to_owned(),
                    limit: self.limits.max_depth,
                });
            }
            let mut entries = Vec::new();
            for entry in fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                entries.push(entry.map_err(|e| Error::io(path, e))?.path());
                self.count_file(path)?;
            }
            entries.sort();
            for entry in entries {
                self.walk(&entry, depth + 1)?;
            }
            return Ok(());
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !md.is_file() {
            return Ok(());
        }
        match ext {
            "zip" => self.zip(path),
            "json" => {
                let origin = path.display().to_string();
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let bytes = self.read_bounded(&origin, file, md.len())?;
                self.add(&origin, &bytes)
            }
            // Anything else (READMEs, checksums) is not a record.
            _ => Ok(()),
        }
    }

    fn count_file(&mut self, path: &Path) -> Result<(), Error> {
        self.files += 1;
        if self.files > self.limits.max_records {
            return Err(Error::TooMany {
                path: path.to_owned(),
                limit: self.limits.max_records,
            });
        }
        Ok(())
    }

    /// Reads one record's bytes, refusing more than the record and total
    /// bounds whatever size was declared.
    fn read_bounded(
        &mut self,
        origin: &str,
        reader: impl Read,
        declared: u64,
    ) -> Result<Vec<u8>, Error> {
        let too_large = || Error::TooLarge {
            origin: origin.to_owned(),
            limit: self.limits.max_record_bytes,
        };
        if declared > self.limits.max_record_bytes {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(declared.min(1 << 20) as usize);
        reader
            .take(self.limits.max_record_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Read {
                origin: origin.to_owned(),
                source: e,
            })?;
        if bytes.len() as u64 > self.limits.max_record_bytes {
            return Err(too_large());
        }
        self.bytes += bytes.len() as u64;
        if self.bytes > self.limits.max_total_bytes {
            return Err(Error::TotalTooLarge {
                origin: origin.to_owned(),
                limit: self.limits.max_total_bytes,
            });
        }
        Ok(bytes)
    }

    fn zip(&mut self, path: &Path) -> Result<(), Error> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut archive =
            zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| Error::Zip {
                path: path.to_owned(),
                source: e,
            })?;
        for i in 0..archive.len() {
            self.count_file(path)?;
            let entry = archive.by_index(i).map_err(|e| Error::Zip {
                path: path.to_owned(),
                source: e,
            })?;
            let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            let origin = format!("{}!{}", path.display(), name);
            // Entries are never extracted, but a name that would climb out
            // marks an archive that is not an OSV export.
            if escapes(&name) || entry.enclosed_name().is_none() {
                return Err(Error::UnsafeEntry { origin });
            }
            if entry.is_dir() || !name.ends_with(".json") {
                continue;
            }
            let declared = entry.size();
            let bytes = self.read_bounded(&origin, entry, declared)?;
            self.add(&origin, &bytes)?;
        }
        Ok(())
    }

    fn add(&mut self, origin: &str, bytes: &[u8]) -> Result<(), Error> {
        let record = Record::parse(bytes).map_err(|e| Error::Record {
            origin: origin.to_owned(),
            source: e,
        })?;
        if record.withdrawn.is_some() {
            self.meta.withdrawn += 1;
            return Ok(());
        }
        if !self.seen.insert(record.advisory.id.clone()) {
            self.meta.duplicates += 1;
            return Ok(());
        }
        let mut ecosystems = HashSet::new();
        for affected in &record.affected {
            let normalized = Ecosystem::of(&affected.ecosystem).normalize_name(&affected.name);
            let counts = self
                .meta
                .ecosystems
                .entry(affected.ecosystem.clone())
                .or_default();
            if ecosystems.insert(affected.ecosystem.as_str()) {
                counts.advisories += 1;
            }
            if self
                .packages
                .insert((affected.ecosystem.clone(), normalized.clone()))
            {
                counts.packages += 1;
            }
            let file = package_file(&self.root, &affected.ecosystem, &normalized);
            let mut line = serde_json::to_vec(affected).map_err(|e| Error::io(&file, e.into()))?;
            line.push(b'\n');
            append(&file, &line)?;
        }
        Ok(())
    }
}

/// An absolute zip entry name, or one with a `..` component (either
/// separator).
fn escapes(name: &str) -> bool {
    name.starts_with(['/', '\\'])
        || name.contains('\0')
        || name.split(['/', '\\']).any(|c| c == "..")
}

fn append(file: &Path, line: &[u8]) -> Result<(), Error> {
    let open = || fs::OpenOptions::new().create(true).append(true).open(file);
    let mut f = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            open().map_err(|e| Error::io(file, e))?
        }
        Err(e) => return Err(Error::io(file, e)),
    };
    f.write_all(line).map_err(|e| Error::io(file, e))
}

/// An imported store, opened for lookups.
#[derive(Debug)]
pub struct Database {
    root: PathBuf,
    meta: Meta,
}

impl Database {
    /// Opens the store at `db` (the directory given to [`import`]).
    pub fn open(db: &Path) -> Result<Database, Error> {
        let current = db.join(CURRENT);
        let target = match fs::read_link(&current) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoDatabase {
                    path: db.to_owned(),
                });
            }
            Err(e) => return Err(Error::io(&current, e)),
        };
        let name = generation_name(&target).ok_or_else(|| Error::Corrupt {
            path: current.clone(),
            reason: format!(
                "points at {}, not a generation of this store",
                target.display()
            ),
        })?;
        let root = db.join(name);
        let meta_path = root.join(META);
        let mut bytes = Vec::new();
        File::open(&meta_path)
            .and_then(|f| f.take(MAX_META).read_to_end(&mut bytes))
            .map_err(|e| Error::io(&meta_path, e))?;
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        if meta.format != FORMAT {
            return Err(Error::Corrupt {
                path: meta_path,
                reason: format!(
                    "store format {} (this hoist reads {FORMAT}): import again",
                    meta.format
                ),
            });
        }
        Ok(Database { root, meta })
    }

    /// What the import recorded.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Every affected-package entry for `name` in `ecosystem` (PyPI names
    /// are compared PEP 503-normalised). A release-qualified ecosystem
    /// (`Debian:12`) also finds entries of the bare one (`Debian`).
    pub fn lookup(&self, ecosystem: &str, name: &str) -> Result<Vec<Affected>, Error> {
        let family = Ecosystem::of(ecosystem);
        let normalized = family.normalize_name(name);
        let mut keys = vec![ecosystem];
        if let Some((bare, _)) = ecosystem.split_once(':') {
            keys.push(bare);
        }
        let mut out = Vec::new();
        for key in keys {
            let path = package_file(&self.root, key, &normalized);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|e| Error::io(&path, e))?;
                let entry: Affected = serde_json::from_str(&line).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                // A hash collision would put another package in this file.
                if entry.ecosystem == key && family.normalize_name(&entry.name) == normalized {
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }

    /// The advisories affecting `package`, one finding per advisory, most
    /// severe first. Debian packages are matched by source package and
    /// source version.
    pub fn check(&self, package: &Package) -> Result<Vec<Finding>, Error> {
        let (name, version) = if Ecosystem::of(&package.ecosystem) == Ecosystem::Debian {
            (
                package.source_name.as_deref().unwrap_or(&package.name),
                package
                    .source_version
                    .as_deref()
                    .unwrap_or(&package.version),
            )
        } else {
            (package.name.as_str(), package.version.as_str())
        };
        let mut findings: Vec<Finding> = Vec::new();
        for entry in self.lookup(&package.ecosystem, name)? {
            let Some(fixed) = entry.affects(version) else {
                continue;
            };
            match findings
                .iter_mut()
                .find(|f| f.advisory.id == entry.advisory.id)
            {
                Some(f) => f.fixed = f.fixed.take().or(fixed),
                None => findings.push(Finding {
                    advisory: entry.advisory,
                    package: entry.name,
                    version: version.to_owned(),
                    fixed,
                }),
            }
        }
        findings.sort_by(|a, b| {
            b.advisory
                .severity
                .cmp(&a.advisory.severity)
                .then_with(|| a.advisory.id.cmp(&b.advisory.id))
        });
        Ok(findings)
    }
}
