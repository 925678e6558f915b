//! Retention: which images a [`Policy`] deletes, and deleting them.
//!
//! [`inventory`] reads the registry (catalog, tags, manifests, configs);
//! [`plan`] decides from that, the usage records and the function records,
//! without any I/O; [`apply`] deletes exactly the plan's manifests, by
//! digest. A dry run is `plan` without `apply`, so it lists what the real
//! run deletes.
//!
//! Rules, per tag:
//! 1. an image marked immutable ([`crate::IMMUTABLE_ANNOTATION`]) or in a
//!    base repository of the policy is kept;
//! 2. in a function repository (`…/functions/user-{user}-func-{function}`)
//!    whose function is deleted in the records, it is deleted;
//! 3. a `latest` tag (any repository) is deleted when its image was not
//!    used within `latest.keep_days`;
//! 4. other tags of a function repository: beyond the `keep_versions`
//!    newest (by creation time) they are deleted, and so are those not
//!    used within `keep_days`;
//! 5. anything else is kept.
//!
//! Last use is the latest usage record naming the image by repository and
//! digest or tag (on any registry: a pull from the mirror is a use); an
//! image never used counts from its config's `created`, and one with
//! neither is kept. Registries delete manifests, not tags: a digest is
//! deleted only when every tag on it is, otherwise its tags are kept.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use oci_model::media_type::ManifestKind;
use oci_model::{Descriptor, Digest, Manifest, Reference};
use registry_client::{Checkpoint, Client};
use serde::Serialize;

use crate::{Error, Policy, Result, chain, is_immutable, registry_host};

/// The largest image config read (for its creation time).
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// One manifest of the registry, with what retention needs to know.
#[derive(Clone, Debug, Serialize)]
pub struct ImageFacts {
    /// Its digest.
    pub digest: Digest,
    /// When its config says it was created.
    pub created: Option<DateTime<Utc>>,
    /// Marked immutable.
    pub immutable: bool,
    /// The blobs and manifests it is made of, itself included, with sizes.
    pub parts: Vec<(Digest, u64)>,
}

/// What the registry holds: every tag of every repository and the facts
/// of every manifest a tag points at.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// `(repository, tag, digest)`.
    pub tags: Vec<(String, String, Digest)>,
    /// Facts by manifest digest.
    pub images: HashMap<Digest, ImageFacts>,
}

/// What the records know: last uses and functions.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// Last use by `(repository, digest-or-tag)`.
    last_used: HashMap<(String, String), DateTime<Utc>>,
    /// `(owner, name)` → live.
    functions: HashMap<(String, String), bool>,
}

impl Records {
    /// From the usage records' `(image, last use)` (see `jobs`'
    /// `last_used_images`) and the function names' `(owner, name, live)`.
    /// Image names that do not parse are ignored.
    pub fn new(usage: &[(String, DateTime<Utc>)], functions: &[(String, String, bool)]) -> Self {
        let mut last_used: HashMap<(String, String), DateTime<Utc>> = HashMap::new();
        for (image, at) in usage {
            let Ok(r) = Reference::parse(image) else {
                continue;
            };
            let keys = [
                r.digest().map(|d| d.to_string()),
                r.tag().map(str::to_owned),
            ];
            for key in keys.into_iter().flatten() {
                let e = last_used
                    .entry((r.repository().to_owned(), key))
                    .or_insert(*at);
                *e = (*e).max(*at);
            }
        }
        Self {
            last_used,
            functions: functions
                .iter()
                .map(|(o, n, live)| ((o.clone(), n.clone()), *live))
                .collect(),
        }
    }

    fn last_use(&self, repository: &str, tag: &str, digest: &Digest) -> Option<DateTime<Utc>> {
        let get = |k: &str| self.last_used.get(&(repository.to_owned(), k.to_owned()));
        get(tag)
            .into_iter()
            .chain(get(digest.as_str()))
            .max()
            .copied()
    }
}

/// Why a tag is deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum DeleteReason {
    /// Its function is deleted.
    FunctionDeleted,
    /// Not among the newest versions.
    BeyondNewest {
        /// How many are kept.
        keep: u32,
    },
    /// Not used for too long.
    Unused {
        /// Days since last use (or creation).
        days: i64,
    },
    /// A `latest` tag not used for too long.
    LatestUnused {
        /// Days since last use (or creation).
        days: i64,
    },
}

impl std::fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FunctionDeleted => f.write_str("function deleted"),
            Self::BeyondNewest { keep } => write!(f, "older than the {keep} newest versions"),
            Self::Unused { days } => write!(f, "unused for {days} days"),
            Self::LatestUnused { days } => write!(f, "`latest` unused for {days} days"),
        }
    }
}

/// Why a tag is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// Marked immutable.
    Immutable,
    /// In a base repository.
    Base,
    /// Used (or created) recently enough, among the newest versions.
    Recent,
    /// A `latest` tag used recently enough.
    LatestRecent,
    /// Its digest carries another tag that is kept.
    SharedDigest,
    /// Neither a use nor a creation time to count from.
    NoAge,
    /// No rule of the policy covers its repository.
    NoRule,
}

impl KeepReason {
    /// The reason's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Immutable => "immutable",
            Self::Base => "base repository",
            Self::Recent => "used recently",
            Self::LatestRecent => "latest used recently",
            Self::SharedDigest => "digest shared with a kept tag",
            Self::NoAge => "no use or creation time",
            Self::NoRule => "no rule",
        }
    }
}

/// One manifest to delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deletion {
    /// Its repository.
    pub repository: String,
    /// Its digest.
    pub digest: Digest,
    /// The tags that go with it.
    pub tags: Vec<String>,
    /// Why (the first tag's rule).
    pub reason: String,
}

/// What a policy does to a registry.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Manifests to delete, by repository and digest.
    pub deletions: Vec<Deletion>,
    /// Tags kept, counted by reason.
    pub kept: BTreeMap<&'static str, usize>,
    /// Bytes of manifests and blobs of the deleted images that no kept
    /// image shares (freed once the registry collects its garbage).
    pub bytes_freed: u64,
    /// Bytes of the manifests and blobs of every kept tagged image, each
    /// counted once: the registry's storage in use after the run (and
    /// after its garbage collection; untagged manifests are not seen).
    pub bytes_kept: u64,
}

/// The function (`owner`, `name`) a repository holds the images of, when
/// it follows `…/functions/user-{owner}-func-{name}`.
///
/// ```
/// assert_eq!(
///     registry_ops::gc::function_of("acme/functions/user-alice-func-resize"),
///     Some(("alice".into(), "resize".into()))
/// );
/// assert_eq!(registry_ops::gc::function_of("acme/base/debian"), None);
/// ```
pub fn function_of(repository: &str) -> Option<(String, String)> {
    let mut parts = repository.rsplit('/');
    let last = parts.next()?;
    if parts.next()? != "functions" {
        return None;
    }
    let (owner, name) = last.strip_prefix("user-")?.split_once("-func-")?;
    (!owner.is_empty() && !name.is_empty()).then(|| (owner.to_owned(), name.to_owned()))
}

/// A version tag and its image's creation time (ordered by time, then tag).
type Version<'a> = (Option<DateTime<Utc>>, &'a str);

enum Verdict {
    Delete(DeleteReason),
    Keep(KeepReason),
}

/// Decides what `policy` deletes from `inventory` at `now`.
pub fn plan(inventory: &Inventory, records: &Records, policy: &Policy, now: DateTime<Utc>) -> Plan {
    let days_since = |t: DateTime<Utc>| (now - t).num_days();
    // Version tags per function repository, newest first: ranks for the
    // keep-the-newest rule.
    let mut versions: BTreeMap<&str, Vec<Version<'_>>> = BTreeMap::new();
    for (repo, tag, digest) in &inventory.tags {
        if tag != "latest" && function_of(repo).is_some() {
            let created = inventory.images.get(digest).and_then(|i| i.created);
            versions.entry(repo).or_default().push((created, tag));
        }
    }
    let mut rank: HashMap<(&str, &str), usize> = HashMap::new();
    for (repo, tags) in &mut versions {
        tags.sort_by(|a, b| b.cmp(a));
        for (i, (_, tag)) in tags.iter().enumerate() {
            rank.insert((repo, tag), i);
        }
    }

    let mut verdicts: BTreeMap<(&str, &Digest), Vec<(&str, Verdict)>> = BTreeMap::new();
    for (repo, tag, digest) in &inventory.tags {
        let facts = inventory.images.get(digest);
        let age = records
            .last_use(repo, tag, digest)
            .or(facts.and_then(|f| f.created))
            .map(days_since);
        let function = function_of(repo);
        let verdict = if facts.is_none_or(|f| f.immutable) {
            Verdict::Keep(KeepReason::Immutable)
        } else if policy.is_base(repo) {
            Verdict::Keep(KeepReason::Base)
        } else if policy.functions.delete_orphans
            && function
                .as_ref()
                .is_some_and(|f| records.functions.get(f) == Some(&false))
        {
            Verdict::Delete(DeleteReason::FunctionDeleted)
        } else if tag == "latest" {
            match age {
                None => Verdict::Keep(KeepReason::NoAge),
                Some(days) if days > i64::from(policy.latest.keep_days) => {
                    Verdict::Delete(DeleteReason::LatestUnused { days })
                }
                Some(_) => Verdict::Keep(KeepReason::LatestRecent),
            }
        } else if function.is_some() {
            let keep = policy.functions.keep_versions;
            let r = rank
                .get(&(repo.as_str(), tag.as_str()))
                .copied()
                .unwrap_or(0);
            match age {
                _ if r >= keep as usize => Verdict::Delete(DeleteReason::BeyondNewest { keep }),
                None => Verdict::Keep(KeepReason::NoAge),
                Some(days) if days > i64::from(policy.functions.keep_days) => {
                    Verdict::Delete(DeleteReason::Unused { days })
                }
                Some(_) => Verdict::Keep(KeepReason::Recent),
            }
        } else {
            Verdict::Keep(KeepReason::NoRule)
        };
        verdicts
            .entry((repo, digest))
            .or_default()
            .push((tag, verdict));
    }

    let mut plan = Plan::default();
    let mut kept_parts: BTreeMap<&Digest, u64> = BTreeMap::new();
    let mut deleted_parts: BTreeMap<&Digest, u64> = BTreeMap::new();
    for ((repo, digest), tags) in verdicts {
        let all_deleted = tags.iter().all(|(_, v)| matches!(v, Verdict::Delete(_)));
        let parts = inventory
            .images
            .get(digest)
            .map(|f| f.parts.as_slice())
            .unwrap_or_default();
        if all_deleted {
            let reason = match &tags[0].1 {
                Verdict::Delete(r) => r.to_string(),
                Verdict::Keep(_) => unreachable!("all deleted"),
            };
            let mut names: Vec<String> = tags.iter().map(|(t, _)| (*t).to_owned()).collect();
            names.sort();
            plan.deletions.push(Deletion {
                repository: repo.to_owned(),
                digest: digest.clone(),
                tags: names,
                reason,
            });
            deleted_parts.extend(parts.iter().map(|(d, n)| (d, *n)));
        } else {
            for (_, v) in &tags {
                let why = match v {
                    Verdict::Keep(k) => *k,
                    Verdict::Delete(_) => KeepReason::SharedDigest,
                };
                *plan.kept.entry(why.as_str()).or_default() += 1;
            }
            kept_parts.extend(parts.iter().map(|(d, n)| (d, *n)));
        }
    }
    plan.bytes_freed = deleted_parts
        .iter()
        .filter(|(d, _)| !kept_parts.contains_key(*d))
        .map(|(_, n)| n)
        .sum();
    plan.bytes_kept = kept_parts.values().sum();
    plan
}

/// Reads every repository, tag and tagged manifest of `registry`
/// (`HOST[:PORT]`), `jobs` requests at a time.
///
/// The future is boxed so that it is `Send` for any caller.
pub fn inventory<'a>(
    client: &'a Client,
    registry: &'a str,
    jobs: usize,
) -> BoxFuture<'a, Result<Inventory>> {
    inventory_inner(client, registry, jobs).boxed()
}

async fn inventory_inner(client: &Client, registry: &str, jobs: usize) -> Result<Inventory> {
    let host = registry_host(registry)?;
    let probe = Reference::parse(&format!("{host}/catalog"))?;
    let repositories = client.list_repositories(&probe).await?;
    let jobs = jobs.max(1);
    let tagged: Vec<Vec<(String, String, Digest)>> =
        futures_util::stream::iter(repositories.into_iter().map(|repo| {
            let host = host.clone();
            async move {
                let r = Reference::parse(&format!("{host}/{repo}"))?;
                let tags = match client.list_tags(&r).await {
                    Ok(t) => t,
                    // A repository whose last tag went is listed, tagless.
                    Err(e) if e.is_not_found() => Vec::new(),
                    Err(e) => return Err(Error::from(e)),
                };
                let mut out = Vec::new();
                for tag in tags {
                    let at = r.with_tag(&tag)?;
                    let digest = match client.head_manifest(&at).await? {
                        Some(d) => d.digest,
                        None => client.get_manifest(&at).await?.digest().clone(),
                    };
                    out.push((repo.clone(), tag, digest));
                }
                Ok::<_, Error>(out)
            }
        }))
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let tags: Vec<(String, String, Digest)> = tagged.into_iter().flatten().collect();
    let mut firsts: BTreeMap<Digest, String> = BTreeMap::new();
    for (repo, _, digest) in &tags {
        firsts.entry(digest.clone()).or_insert_with(|| repo.clone());
    }
    let pinned: Vec<Result<Reference>> = firsts
        .into_iter()
        .map(|(d, repo)| Ok(Reference::parse(&format!("{host}/{repo}"))?.with_digest(d)))
        .collect();
    let images: Vec<ImageFacts> = futures_util::stream::iter(pinned)
        .map(|r| async move { facts(client, &r?).await })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    Ok(Inventory {
        images: images.into_iter().map(|f| (f.digest.clone(), f)).collect(),
        tags,
    })
}

/// The facts of the manifest `r` pins: an index's from its children (the
/// creation time is the first child's).
async fn facts(client: &Client, r: &Reference) -> Result<ImageFacts> {
    let manifest = client.get_manifest(r).await?;
    let mut parts = vec![(manifest.digest().clone(), manifest.bytes().len() as u64)];
    let immutable = is_immutable(&manifest);
    let created = if manifest.kind() == ManifestKind::Index {
        let mut created = None;
        for child in manifest.children() {
            let m = client
                .get_manifest(&r.with_digest(child.digest.clone()))
                .await?;
            parts.push((m.digest().clone(), m.bytes().len() as u64));
            parts.extend(blobs(&m));
            if created.is_none() {
                created = config_created(client, r, &m).await?;
            }
        }
        created
    } else {
        parts.extend(blobs(&manifest));
        config_created(client, r, &manifest).await?
    };
    Ok(ImageFacts {
        digest: manifest.digest().clone(),
        created,
        immutable,
        parts,
    })
}

fn blobs(m: &Manifest) -> Vec<(Digest, u64)> {
    m.config()
        .into_iter()
        .chain(m.layers())
        .map(|d| (d.digest.clone(), d.size))
        .collect()
}

async fn config_created(
    client: &Client,
    r: &Reference,
    m: &Manifest,
) -> Result<Option<DateTime<Utc>>> {
    let Some(config) = m.config() else {
        return Ok(None);
    };
    let bytes = read_small(client, r, config).await?;
    #[derive(serde::Deserialize)]
    struct Created {
        #[serde(default)]
        created: Option<String>,
    }
    let created = serde_json::from_slice::<Created>(&bytes)
        .ok()
        .and_then(|c| c.created)
        .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
        .map(|c| c.with_timezone(&Utc));
    Ok(created)
}

async fn read_small(client: &Client, r: &Reference, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size > MAX_CONFIG_BYTES {
        return Err(Error::Image {
            what: format!("config {} of {r}", desc.digest),
            reason: format!("{} bytes, more than {MAX_CONFIG_BYTES}", desc.size),
        });
    }
    let mut stream = client.get_blob(r, desc, Checkpoint::default()).await?;
    let mut out = Vec::with_capacity(desc.size as usize);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// One deletion that failed.
#[derive(Clone, Debug, Serialize)]
pub struct GcFailure {
    /// `repository@digest`.
    pub manifest: String,
    /// Why.
    pub reason: String,
}

/// What a gc run did: the plan, and the deletions that failed.
#[derive(Clone, Debug, Serialize)]
pub struct GcReport {
    /// Whether nothing was deleted (the plan is what a real run deletes).
    pub dry_run: bool,
    /// The decisions.
    #[serde(flatten)]
    pub plan: Plan,
    /// Deletions the registry refused.
    pub failed: Vec<GcFailure>,
}

impl GcReport {
    /// The report as people read it: each deletion, kept counts by
    /// reason, bytes freed, failures.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for d in &self.plan.deletions {
            let _ = writeln!(
                out,
                "{verb} {}@{} [{}] ({})",
                d.repository,
                d.digest,
                d.tags.join(", "),
                d.reason
            );
        }
        let _ = writeln!(
            out,
            "{}: {} images",
            if self.dry_run { "To delete" } else { "Deleted" },
            self.plan.deletions.len() - self.failed.len()
        );
        for (why, n) in &self.plan.kept {
            let _ = writeln!(out, "Kept ({why}): {n} tags");
        }
        let _ = writeln!(out, "Bytes freed: {}", self.plan.bytes_freed);
        let _ = writeln!(out, "Bytes kept: {}", self.plan.bytes_kept);
        for f in &self.failed {
            let _ = writeln!(out, "Failed: {} ({})", f.manifest, f.reason);
        }
        out
    }
}

/// Deletes the plan's manifests on `registry`, by digest, one after
/// another; a failure is reported and the rest go on.
pub async fn apply(client: &Client, registry: &str, plan: Plan) -> Result<GcReport> {
    let host = registry_host(registry)?;
    let mut failed = Vec::new();
    for d in &plan.deletions {
        let r = Reference::parse(&format!("{host}/{}@{}", d.repository, d.digest))?;
        if let Err(e) = client.delete_manifest(&r).await {
            failed.push(GcFailure {
                manifest: format!("{}@{}", d.repository, d.digest),
                reason: chain(&e),
            });
        }
    }
    Ok(GcReport {
        dry_run: false,
        plan,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", hex64(n))).unwrap()
    }

    fn hex64(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    struct Reg {
        inv: Inventory,
        now: DateTime<Utc>,
    }

    impl Reg {
        /// An image created `age` days ago with one private layer and one
        /// layer shared by all.
        fn image(&mut self, n: u8, age: i64, immutable: bool) -> Digest {
            let d = digest(n);
            self.inv.images.insert(
                d.clone(),
                ImageFacts {
                    digest: d.clone(),
                    created: Some(self.now - Duration::days(age)),
                    immutable,
                    parts: vec![
                        (d.clone(), 100),
                        (digest(n + 100), 1000),
                        (digest(255), 5000),
                    ],
                },
            );
            d
        }
        fn tag(&mut self, repo: &str, tag: &str, d: &Digest) {
            self.inv.tags.push((repo.into(), tag.into(), d.clone()));
        }
    }

    const F: &str = "acme/functions/user-u-func-f";

    #[test]
    fn rules() {
        let now = Utc::now();
        let mut r = Reg {
            inv: Inventory::default(),
            now,
        };
        // 12 versions of f, created 1..=12 days ago: the two oldest go.
        for i in 1..=12u8 {
            let d = r.image(i, i64::from(i), false);
            r.tag(F, &format!("v{i:02}"), &d);
        }
        // An old one used yesterday stays (within the newest 10: v01's
        // digest is 1 day old anyway); v05 created long ago... use ages:
        let old = r.image(20, 200, false);
        r.tag("acme/functions/user-u-func-g", "v1", &old);
        let old_used = r.image(21, 200, false);
        r.tag("acme/functions/user-u-func-g", "v2", &old_used);
        let gone = r.image(22, 1, false);
        r.tag("acme/functions/user-x-func-deleted", "v1", &gone);
        let latest_old = r.image(23, 40, false);
        r.tag("acme/app", "latest", &latest_old);
        let latest_new = r.image(24, 40, false);
        r.tag("acme/api", "latest", &latest_new);
        // `latest` on a kept version: the digest stays.
        let shared = r.image(25, 40, false);
        r.tag("acme/functions/user-u-func-h", "latest", &shared);
        r.tag("acme/functions/user-u-func-h", "v1", &shared);
        let base = r.image(26, 999, true);
        r.tag("acme/base/debian", "bookworm", &base);
        let base2 = r.image(27, 999, false);
        r.tag("tools/python", "latest", &base2);
        let system = r.image(28, 999, false);
        r.tag("acme/system/proxy", "v1", &system);

        let usage = vec![
            (
                format!("p.example/acme/functions/user-u-func-g@{old_used}"),
                now - Duration::days(3),
            ),
            (
                "m.example/acme/api:latest".to_owned(),
                now - Duration::days(2),
            ),
            (
                format!("p.example/acme/functions/user-u-func-h@{shared}"),
                now - Duration::days(50),
            ),
        ];
        let functions = vec![
            ("u".to_owned(), "f".to_owned(), true),
            ("u".to_owned(), "g".to_owned(), true),
            ("x".to_owned(), "deleted".to_owned(), false),
        ];
        let mut policy = Policy::default();
        policy.base.repositories = vec!["tools/python".into()];
        let plan = plan(&r.inv, &Records::new(&usage, &functions), &policy, now);
        let deleted: Vec<(&str, &Digest, &str)> = plan
            .deletions
            .iter()
            .map(|d| (d.repository.as_str(), &d.digest, d.reason.as_str()))
            .collect();
        assert_eq!(
            deleted,
            vec![
                ("acme/app", &latest_old, "`latest` unused for 40 days"),
                (F, &digest(11), "older than the 10 newest versions"),
                (F, &digest(12), "older than the 10 newest versions"),
                ("acme/functions/user-u-func-g", &old, "unused for 200 days"),
                (
                    "acme/functions/user-x-func-deleted",
                    &gone,
                    "function deleted"
                ),
            ]
        );
        assert_eq!(plan.kept["immutable"], 1);
        assert_eq!(plan.kept["base repository"], 1);
        assert_eq!(plan.kept["no rule"], 1);
        assert_eq!(plan.kept["latest used recently"], 1);
        // h: `latest` unused 50 days but v1 is kept (no keep-days rule
        // hit: 40 days old), so the digest and both tags stay.
        assert_eq!(plan.kept["digest shared with a kept tag"], 1);
        // 10 of f, g's v2, h's v1.
        assert_eq!(plan.kept["used recently"], 12);
        // Each deleted image frees its manifest and private layer; the
        // shared layer is kept by others.
        assert_eq!(plan.bytes_freed, 5 * 1100);
        // The 16 images kept, and the shared layer once.
        assert_eq!(plan.bytes_kept, 16 * 1100 + 5000);
    }

    #[test]
    fn orphans_kept_when_the_policy_says_so() {
        let now = Utc::now();
        let mut r = Reg {
            inv: Inventory::default(),
            now,
        };
        let d = r.image(1, 1, false);
        r.tag("ns/functions/user-a-func-b", "v1", &d);
        let functions = vec![("a".to_owned(), "b".to_owned(), false)];
        let mut policy = Policy::default();
        assert_eq!(
            plan(&r.inv, &Records::new(&[], &functions), &policy, now)
                .deletions
                .len(),
            1
        );
        policy.functions.delete_orphans = false;
        assert!(
            plan(&r.inv, &Records::new(&[], &functions), &policy, now)
                .deletions
                .is_empty()
        );
    }

    #[test]
    fn function_repositories() {
        assert_eq!(
            function_of("functions/user-a-func-b"),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(function_of("user-a-func-b"), None);
        assert_eq!(function_of("ns/functions/user--func-b"), None);
        assert_eq!(function_of("ns/functions/app"), None);
        assert_eq!(function_of("ns/function/user-a-func-b"), None);
    }
}
