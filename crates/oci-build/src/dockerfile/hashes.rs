//! The content hashes of context files, remembered between builds (as
//! `BuildKit`'s content-hash cache): a `COPY`/`ADD` step's cache key holds
//! the sha256 of every file it reads, and a file whose metadata is what it
//! was when it was last hashed is not read again.
//!
//! A record is kept per context (a file under
//! `dockerfile-copy/hashes/`, named by the context's path) and matches a
//! file only when its path, device, inode, size, mtime and ctime (both to
//! the nanosecond) are unchanged. The ctime is the guard against a content
//! change whose mtime was put back (`touch -d`): no user can set it. A file
//! whose mtime or ctime is less than [`MARGIN`] older than the moment its
//! hash began is hashed but not remembered, since a change made within the
//! filesystem's timestamp granularity would leave its metadata as it was
//! (git's "racily clean" entries). Records are written atomically; a
//! record file that cannot be read is ignored and every file hashed again.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_model::{Digest, Digester};

/// First line of a record file: its format.
const HEADER: &str = "hoist-copy-hashes-v1";
/// How much older than the hash's start a file's times must be for its
/// hash to be remembered.
pub(super) const MARGIN: Duration = Duration::from_secs(1);
/// Records kept per context: a bound on the file, whatever the context.
const MAX_RECORDS: usize = 1 << 21;
/// Record files kept (one per context; the least recently written go).
const MAX_CONTEXTS: usize = 32;

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    pub(super) fn of(meta: &Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether both times are at least `margin` before `start`.
    fn settled(&self, start: SystemTime, margin: Duration) -> bool {
        let Ok(since) = start.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = i128::try_from(since.saturating_sub(margin).as_nanos()).unwrap_or(i128::MAX);
        self.mtime_ns < limit && self.ctime_ns < limit
    }
}

/// The remembered hashes of one context's files.
pub(super) struct ContentHashes {
    /// The record file.
    file: PathBuf,
    /// Records read from it, by path relative to the context.
    old: HashMap<Vec<u8>, (Stat, Digest)>,
    /// Records confirmed or made by this build.
    new: HashMap<Vec<u8>, (Stat, Digest)>,
    margin: Duration,
    /// Files read and hashed by this build.
    pub(super) hashed: u64,
    /// Files whose hash came from the records.
    pub(super) remembered: u64,
}

impl ContentHashes {
    /// The records of `context` kept under `dir`; none when there are no
    /// readable ones.
    pub(super) fn open(dir: &Path, context: &Path) -> Self {
        let context = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_owned());
        let name = Digest::of(context.as_os_str().as_bytes());
        let file = dir.join(name.hex());
        let old = std::fs::read(&file)
            .ok()
            .and_then(|bytes| parse(&bytes))
            .unwrap_or_default();
        Self {
            file,
            old,
            new: HashMap::new(),
            margin: MARGIN,
            hashed: 0,
            remembered: 0,
        }
    }

    /// The sha256 of the context file `rel` at `host`, whose metadata
    /// (`lstat`) is `meta`: remembered, or read without following links.
    pub(super) fn sha256(
        &mut self,
        rel: &Path,
        host: &Path,
        meta: &Metadata,
    ) -> io::Result<Digest> {
        let stat = Stat::of(meta);
        let key = rel.as_os_str().as_bytes();
        let known = self.new.get(key).or_else(|| self.old.get(key));
        if let Some((s, digest)) = known
            && *s == stat
        {
            let digest = digest.clone();
            self.remembered += 1;
            self.new.insert(key.to_owned(), (stat, digest.clone()));
            return Ok(digest);
        }
        let start = SystemTime::now();
        let mut file = open_regular(host, &stat)?;
        let mut d = Digester::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.update(&buf[..n]);
        }
        let after = Stat::of(&file.metadata()?);
        let digest = d.finish();
        self.hashed += 1;
        if after == stat && stat.settled(start, self.margin) {
            self.new.insert(key.to_owned(), (stat, digest.clone()));
        }
        Ok(digest)
    }

    /// Writes the records back (atomically) when this build added any,
    /// keeping those of files it did not read up to a bound, and removes
    /// the record files of the least recently built contexts.
    pub(super) fn save(&self) -> io::Result<()> {
        let changed = self.new.iter().any(|(k, v)| self.old.get(k) != Some(v));
        if !changed {
            return Ok(());
        }
        let mut out = String::with_capacity(HEADER.len() + 1 + self.new.len() * 120);
        out.push_str(HEADER);
        out.push('\n');
        let kept = self
            .old
            .iter()
            .filter(|(k, _)| !self.new.contains_key(*k))
            .take(MAX_RECORDS.saturating_sub(self.new.len()));
        for (path, (stat, digest)) in self.new.iter().chain(kept) {
            use std::fmt::Write;
            let _ = writeln!(
                out,
                "{} {} {} {} {} {} {}",
                digest.hex(),
                stat.dev,
                stat.ino,
                stat.size,
                stat.mtime_ns,
                stat.ctime_ns,
                escape(path)
            );
        }
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        oci_model::write_atomic(&self.file, out.as_bytes())?;
        prune(dir);
        Ok(())
    }
}

/// Removes all but the [`MAX_CONTEXTS`] most recently written record files.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let named = m.is_file() && e.file_name().len() == 64;
            named.then_some((m.modified().ok()?, e.path()))
        })
        .collect();
    if files.len() <= MAX_CONTEXTS {
        return;
    }
    files.sort();
    for (_, path) in &files[..files.len() - MAX_CONTEXTS] {
        let _ = std::fs::remove_file(path);
    }
}

/// Opens the regular file at `path` that `stat` describes: never through
/// a link, never blocking on a FIFO, and refused when it is not the same
/// file (swapped since it was looked at).
pub(super) fn open_regular(path: &Path, stat: &Stat) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.dev() != stat.dev || meta.ino() != stat.ino {
        return Err(io::Error::other(
            "not the regular file the build looked at (replaced while the build read it)",
        ));
    }
    Ok(file)
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

/// A context file read for a layer, checked against the sha256 its step's
/// cache key holds: opened when first read (a layer of many files holds no
/// descriptor for each), and an error at its end when its bytes differ.
pub(super) struct Verified {
    path: PathBuf,
    stat: Stat,
    expected: Digest,
    file: Option<File>,
    digester: Option<Digester>,
}

impl Verified {
    pub(super) fn new(path: PathBuf, stat: Stat, expected: Digest) -> Self {
        Self {
            path,
            stat,
            expected,
            file: None,
            digester: Some(Digester::new()),
        }
    }
}

impl Read for Verified {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.file.is_none() {
            self.file = Some(open_regular(&self.path, &self.stat)?);
        }
        let n = self.file.as_mut().expect("opened").read(buf)?;
        if n > 0 {
            if let Some(d) = &mut self.digester {
                d.update(&buf[..n]);
            }
        } else if let Some(d) = self.digester.take()
            && d.finish() != self.expected
        {
            return Err(io::Error::other(
                "its contents changed while the build read it",
            ));
        }
        Ok(n)
    }
}

/// Path bytes as one word of a record line: printable ASCII but `%`
/// kept, everything else `%XX`.
fn escape(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn unescape(word: &str) -> Option<Vec<u8>> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = word.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The records of a record file; `None` for anything malformed (the
/// whole file is then ignored).
fn parse(bytes: &[u8]) -> Option<HashMap<Vec<u8>, (Stat, Digest)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut records = HashMap::new();
    for line in lines {
        if records.len() >= MAX_RECORDS {
            return None;
        }
        let mut w = line.split(' ');
        let hex = w.next()?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let digest = Digest::parse(&format!("sha256:{hex}")).ok()?;
        let stat = Stat {
            dev: w.next()?.parse().ok()?,
            ino: w.next()?.parse().ok()?,
            size: w.next()?.parse().ok()?,
            mtime_ns: w.next()?.parse().ok()?,
            ctime_ns: w.next()?.parse().ok()?,
        };
        let path = unescape(w.next()?)?;
        if w.next().is_some() {
            return None;
        }
        records.insert(path, (stat, digest));
    }
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(h: &mut ContentHashes, root: &Path, rel: &str) -> Digest {
        let host = root.join(rel);
        let meta = std::fs::symlink_metadata(&host).unwrap();
        h.sha256(Path::new(rel), &host, &meta).unwrap()
    }

    #[test]
    fn unchanged_files_are_not_read_again_and_changes_are_seen() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("a.txt"), "one").unwrap();
        std::fs::write(ctx.path().join("b%  x"), "two").unwrap();
        // Old enough to be remembered.
        std::thread::sleep(MARGIN + Duration::from_millis(100));

        let mut first = ContentHashes::open(cache.path(), ctx.path());
        let a = hash(&mut first, ctx.path(), "a.txt");
        assert_eq!(a, Digest::of(b"one"));
        hash(&mut first, ctx.path(), "b%  x");
        assert_eq!((first.hashed, first.remembered), (2, 0));
        first.save().unwrap();

        let mut second = ContentHashes::open(cache.path(), ctx.path());
        assert_eq!(hash(&mut second, ctx.path(), "a.txt"), a);
        assert_eq!(hash(&mut second, ctx.path(), "b%  x"), Digest::of(b"two"));
        assert_eq!((second.hashed, second.remembered), (0, 2));

        // Same size, mtime put back: the ctime moved, so it is read.
        let before = std::fs::metadata(ctx.path().join("a.txt")).unwrap();
        std::fs::write(ctx.path().join("a.txt"), "uno").unwrap();
        let times = std::fs::FileTimes::new().set_modified(before.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(ctx.path().join("a.txt"))
            .unwrap()
            .set_times(times)
            .unwrap();
        let mut third = ContentHashes::open(cache.path(), ctx.path());
        assert_eq!(hash(&mut third, ctx.path(), "a.txt"), Digest::of(b"uno"));
        assert_eq!((third.hashed, third.remembered), (1, 0));
    }

    #[test]
    fn fresh_files_are_hashed_but_not_remembered() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("new"), "just written").unwrap();
        let mut h = ContentHashes::open(cache.path(), ctx.path());
        hash(&mut h, ctx.path(), "new");
        h.save().unwrap();
        let mut again = ContentHashes::open(cache.path(), ctx.path());
        hash(&mut again, ctx.path(), "new");
        assert_eq!((again.hashed, again.remembered), (1, 0));
    }

    #[test]
    fn damaged_records_are_ignored() {
        assert!(parse(b"").is_none());
        assert!(parse(b"other-format\n").is_none());
        let good = format!("{HEADER}\n{} 1 2 3 4 5 a%20b\n", "ab".repeat(32));
        let records = parse(good.as_bytes()).unwrap();
        assert_eq!(records.len(), 1);
        assert!(records.contains_key(&b"a b"[..]));
        for bad in [
            format!("{HEADER}\n{} 1 2 3 4 5\n", "ab".repeat(32)),
            format!("{HEADER}\n{} 1 2 3 4 5 a b\n", "ab".repeat(32)),
            format!("{HEADER}\n{} x 2 3 4 5 a\n", "ab".repeat(32)),
            format!("{HEADER}\nzz 1 2 3 4 5 a\n"),
            format!("{HEADER}\n{} 1 2 3 4 5 a%2\n", "ab".repeat(32)),
            format!("{HEADER}\n{} 1 2 3 4 5 a%zz\n", "ab".repeat(32)),
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
        let odd: Vec<u8> = vec![b'a', 0xff, b' ', b'%', b'\n'];
        assert_eq!(unescape(&escape(&odd)).unwrap(), odd);
    }

    #[test]
    fn a_link_or_a_swapped_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "HOST").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let stat = Stat::of(&std::fs::metadata(&secret).unwrap());
        assert!(open_regular(&link, &stat).is_err());
        let other = dir.path().join("other");
        std::fs::write(&other, "x").unwrap();
        assert!(open_regular(&other, &stat).is_err());

        // A file changed after it was hashed fails when the layer reads it.
        let mut r = Verified::new(secret.clone(), stat, Digest::of(b"HOST"));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        std::fs::write(&secret, "EVIL").unwrap();
        let mut r = Verified::new(secret, stat, Digest::of(b"HOST"));
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }
}
