//! Mirroring: copy images from a primary registry to a secondary one with
//! their digests unchanged (disaster recovery), skipping those the
//! secondary already has, carrying on past failures.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use oci_model::{Digest, Endpoint, Reference};
use oci_push::Copier;
use registry_client::Client;
use serde::Serialize;

use crate::{Error, Result, chain, registry_host};

/// The most images an image list may name.
pub const MAX_LIST: usize = 100_000;

/// Parses an image list: one reference per line; blank lines and `#`
/// comments (whole lines, or after whitespace) are ignored. The registry
/// part of each reference is replaced by the primary's when mirroring, so
/// `acme/app:v1` and `primary.example/acme/app:v1` mean the same image.
///
/// ```
/// let images = registry_ops::parse_list("# top images\nacme/app:v1  # the API\n\nacme/db@sha256:0000000000000000000000000000000000000000000000000000000000000000\n")?;
/// assert_eq!(images.len(), 2);
/// assert_eq!(images[0].repository(), "acme/app");
/// assert!(registry_ops::parse_list("acme/app:v1\nnot a reference\n").is_err());
/// # Ok::<(), registry_ops::Error>(())
/// ```
pub fn parse_list(text: &str) -> Result<Vec<Reference>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = match line.find(" #").or_else(|| line.find("\t#")) {
            Some(at) => &line[..at],
            None => line,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() == MAX_LIST {
            return Err(Error::ListTooLong { limit: MAX_LIST });
        }
        let r = Reference::parse(line).map_err(|e| Error::ListLine {
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push(r);
    }
    Ok(out)
}

/// One image copied (or, in a dry run, to be copied).
#[derive(Clone, Debug, Serialize)]
pub struct Mirrored {
    /// The image on the primary.
    pub source: String,
    /// Where it went.
    pub destination: String,
    /// Its manifest digest, the same on both.
    pub digest: Digest,
    /// Bytes of blobs copied (0 in a dry run).
    pub bytes: u64,
}

/// One image the secondary already had.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// The image on the primary.
    pub source: String,
    /// Its manifest digest.
    pub digest: Digest,
}

/// One image that could not be mirrored.
#[derive(Clone, Debug, Serialize)]
pub struct Failed {
    /// The image on the primary.
    pub source: String,
    /// Why.
    pub reason: String,
}

/// What a mirror run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MirrorReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Copied (or to copy).
    pub mirrored: Vec<Mirrored>,
    /// Already there with the same digest.
    pub skipped: Vec<Skipped>,
    /// Failed, with reasons.
    pub failed: Vec<Failed>,
    /// Bytes of blobs copied.
    pub bytes: u64,
    /// Wall time of the run, seconds.
    pub duration_secs: f64,
}

impl MirrorReport {
    /// Images processed.
    pub fn total(&self) -> usize {
        self.mirrored.len() + self.skipped.len() + self.failed.len()
    }

    /// The summary as people read it: counts, each failure with its
    /// reason, bytes and duration.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let verb = if self.dry_run {
            "To mirror"
        } else {
            "Mirrored"
        };
        for m in &self.mirrored {
            let _ = writeln!(
                out,
                "{verb}: {} -> {}@{}",
                m.source, m.destination, m.digest
            );
        }
        let _ = writeln!(out, "Images processed: {}", self.total());
        let _ = writeln!(out, "{verb}: {}", self.mirrored.len());
        let _ = writeln!(out, "Skipped (already mirrored): {}", self.skipped.len());
        let _ = writeln!(out, "Failed: {}", self.failed.len());
        for f in &self.failed {
            let _ = writeln!(out, "  - {} ({})", f.source, f.reason);
        }
        let _ = writeln!(out, "Data transferred: {} bytes", self.bytes);
        let _ = writeln!(out, "Duration: {:.1}s", self.duration_secs);
        out
    }
}

/// Mirrors images from one registry to another.
///
/// ```no_run
/// # async fn demo() -> Result<(), registry_ops::Error> {
/// let client = registry_client::Client::builder().build()?;
/// let mirror = registry_ops::Mirror::new(client, "primary.example", "backup.example")?.jobs(8);
/// let images = vec!["primary.example/acme/app:v1".parse()?];
/// let report = mirror.run(&images, true).await;
/// assert_eq!(report.total(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Mirror {
    client: Client,
    copier: Copier,
    from: String,
    to: String,
    images_at_once: usize,
}

/// The one place mirroring builds its [`Copier`]: every mirror run, by
/// hand or scheduled, brings an image's referrers (SBOMs, scan reports)
/// and cosign signatures along, so the secondary can be verified alone.
fn mirror_copier(client: Client, jobs: usize) -> Copier {
    Copier::new(client).jobs(jobs).referrers(true)
}

impl Mirror {
    /// Mirrors from registry host `from` to `to` (`HOST[:PORT]` each).
    pub fn new(client: Client, from: &str, to: &str) -> Result<Self> {
        let from = registry_host(from)?;
        let to = registry_host(to)?;
        if from == to {
            return Err(Error::Host {
                host: to,
                reason: "the secondary is the primary".into(),
            });
        }
        Ok(Self {
            copier: mirror_copier(client.clone(), 8),
            client,
            from,
            to,
            images_at_once: 4,
        })
    }

    /// Blobs moved at once within one image (default 8); images are
    /// mirrored 4 at a time.
    pub fn jobs(mut self, n: usize) -> Self {
        self.copier = mirror_copier(self.client.clone(), n);
        self
    }

    /// The usage records' most used images (image names and counts, most
    /// used first) as references, duplicates (the same image used through
    /// another registry) dropped; names that do not parse are returned
    /// apart, to be reported as failures.
    pub fn top(&self, used: &[(String, u64)]) -> (Vec<Reference>, Vec<Failed>) {
        let mut images: Vec<Reference> = Vec::new();
        let mut bad = Vec::new();
        for (name, _) in used {
            match Reference::parse(name) {
                Ok(r) => {
                    let same = |o: &Reference| {
                        o.repository() == r.repository()
                            && o.tag() == r.tag()
                            && o.digest() == r.digest()
                    };
                    if !images.iter().any(same) {
                        images.push(r);
                    }
                }
                Err(e) => bad.push(Failed {
                    source: name.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        (images, bad)
    }

    /// Mirrors `images` (their registry replaced by the primary's), 4 at a
    /// time; a failure is reported and the others go on. `dry_run` looks
    /// (which are missing on the secondary) but writes nothing.
    ///
    /// The future is boxed so that it is `Send` for any caller (stream
    /// combinators over borrowed futures otherwise defeat the compiler's
    /// proof of it).
    pub fn run<'a>(
        &'a self,
        images: &'a [Reference],
        dry_run: bool,
    ) -> BoxFuture<'a, MirrorReport> {
        async move { self.run_inner(images, dry_run).await }.boxed()
    }

    async fn run_inner(&self, images: &[Reference], dry_run: bool) -> MirrorReport {
        let started = Instant::now();
        let mut outcomes: Vec<(usize, Outcome)> =
            futures_util::stream::iter(images.iter().cloned().enumerate())
                .map(|(i, image)| async move { (i, self.one(&image, dry_run).await) })
                .buffer_unordered(self.images_at_once)
                .collect()
                .await;
        outcomes.sort_by_key(|(i, _)| *i);
        let mut report = MirrorReport {
            dry_run,
            ..MirrorReport::default()
        };
        for (i, outcome) in outcomes {
            let source = images[i]
                .with_registry(&self.from)
                .map_or_else(|_| images[i].to_string(), |r| r.to_string());
            match outcome {
                Outcome::Mirrored(m) => {
                    report.bytes += m.bytes;
                    report.mirrored.push(m);
                }
                Outcome::Skipped(digest) => report.skipped.push(Skipped { source, digest }),
                Outcome::Failed(reason) => report.failed.push(Failed { source, reason }),
            }
        }
        report.duration_secs = started.elapsed().as_secs_f64();
        report
    }

    async fn one(&self, image: &Reference, dry_run: bool) -> Outcome {
        match self.try_one(image, dry_run).await {
            Ok(o) => o,
            Err(e) => Outcome::Failed(chain(&e)),
        }
    }

    async fn try_one(&self, image: &Reference, dry_run: bool) -> Result<Outcome> {
        let src = image.with_registry(&self.from)?;
        let dst = image.with_registry(&self.to)?;
        let digest = match src.digest() {
            Some(d) => d.clone(),
            None => match self.client.head_manifest(&src).await? {
                Some(d) => d.digest,
                None => self.client.get_manifest(&src).await?.digest().clone(),
            },
        };
        // The one HEAD that tells an image already mirrored: under its tag
        // (or digest) with the same digest.
        if let Some(there) = self.client.head_manifest(&dst).await?
            && there.digest == digest
        {
            return Ok(Outcome::Skipped(digest));
        }
        let destination = dst.name();
        if dry_run {
            return Ok(Outcome::Mirrored(Mirrored {
                source: src.to_string(),
                destination,
                digest,
                bytes: 0,
            }));
        }
        // Pinned to the digest just seen, so a tag moved meanwhile cannot
        // mirror another image than the one decided on.
        let pinned = Endpoint::Registry(src.with_digest(digest.clone()));
        let report = self
            .copier
            .copy(&pinned, &Endpoint::Registry(dst.clone()))
            .await?;
        Ok(Outcome::Mirrored(Mirrored {
            source: src.to_string(),
            destination,
            digest,
            bytes: report.bytes_copied,
        }))
    }
}

enum Outcome {
    Mirrored(Mirrored),
    Skipped(Digest),
    Failed(String),
}

/// `7d`, `12h`, `30m`, `90s`: a duration for `--since`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(registry_ops::mirror::parse_age("7d")?, Duration::from_secs(7 * 86_400));
/// assert!(registry_ops::mirror::parse_age("7").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("`{s}` is not an age like 7d, 12h, 30m or 90s");
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_skip_comments_and_name_bad_lines() {
        let l = parse_list("\n# c\n  a/b:1 # note\n\tc/d:2\n").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].repository(), "c/d");
        let e = parse_list("a/b:1\n\nA B\n").unwrap_err();
        assert!(matches!(e, Error::ListLine { line: 3, .. }), "{e}");
        let long = "a/b:1\n".repeat(MAX_LIST + 1);
        assert!(matches!(parse_list(&long), Err(Error::ListTooLong { .. })));
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "d", "-1d", "1w", "99999999999999999999d", "1.5d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn top_dedupes_and_reports_bad_names() {
        let client = Client::builder().build().unwrap();
        let m = Mirror::new(client, "p.example", "s.example").unwrap();
        let used = vec![
            ("p.example/a/b:1".to_owned(), 9),
            ("s.example/a/b:1".to_owned(), 5),
            ("not a name".to_owned(), 3),
            ("p.example/a/c:1".to_owned(), 1),
        ];
        let (images, bad) = m.top(&used);
        assert_eq!(images.len(), 2);
        assert_eq!(bad.len(), 1);
        assert!(Mirror::new(Client::builder().build().unwrap(), "x.example", "x.example").is_err());
    }
}
