//! OCI 1.1 referrers: the referrers API (`GET /v2/<name>/referrers/<digest>`)
//! where the registry has it, the `sha256-<hex>` fallback tag where it does
//! not (distribution 2.8 answers the API with a plain 404), and the
//! read-modify-write of that fallback index when an artifact is pushed.
//! Also the registry's catalog, page by page.

use http::{StatusCode, header};
use oci_model::{
    Digest, MAX_MANIFEST_BYTES, MAX_REFERRERS, Manifest, Reference, Referrer, media_type,
    parse_referrers, referrers_index, referrers_tag,
};

use crate::client::{Access, scope};
use crate::manifests::read_page;
use crate::{Client, Error, Result};

/// How a registry lists the referrers of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrersVia {
    /// The referrers API.
    Api,
    /// The index at the `sha256-<hex>` tag (the registry has no API).
    FallbackTag,
}

/// The referrers of one subject, and how they were found.
#[derive(Clone, Debug)]
pub struct Referrers {
    /// The entries, in the registry's order.
    pub list: Vec<Referrer>,
    /// API or fallback tag.
    pub via: ReferrersVia,
}

/// The most pages followed for one subject's referrers (a registry that
/// links back to itself forever is cut off here).
const MAX_REFERRER_PAGES: usize = 100;

impl Client {
    /// Lists the referrers of `subject` in `repo`'s repository, keeping
    /// those of `artifact_type` when one is given: the referrers API,
    /// followed across `Link` pages, or where the registry answers it with
    /// 404, the fallback index at tag `sha256-<hex>` (none there: an empty
    /// list). At most [`MAX_REFERRERS`] entries over all pages.
    ///
    /// ```no_run
    /// # async fn demo(client: registry_client::Client, d: oci_model::Digest) -> registry_client::Result<()> {
    /// let repo = "127.0.0.1:5000/team/app".parse().unwrap();
    /// for r in client.referrers(&repo, &d, Some("application/spdx+json")).await?.list {
    ///     println!("{} {:?}", r.digest, r.artifact_type);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn referrers(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        let mut referrers = match self.referrers_api(repo, subject, artifact_type).await? {
            Some(list) => Referrers {
                list,
                via: ReferrersVia::Api,
            },
            None => Referrers {
                list: self.fallback_referrers(repo, subject).await?.0,
                via: ReferrersVia::FallbackTag,
            },
        };
        // Registries may ignore the filter; applying it again is harmless.
        if let Some(t) = artifact_type {
            referrers
                .list
                .retain(|r| r.artifact_type.as_deref() == Some(t));
        }
        Ok(referrers)
    }

    /// The referrers API's answer; `None` when the registry has no API.
    async fn referrers_api(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>> {
        let what = format!("GET referrers {}@{subject}", repo.repository());
        let scope = scope(repo.repository(), Access::Pull);
        let host = repo.api_host();
        let protocol = |reason: String| Error::Protocol {
            registry: host.to_owned(),
            what: what.clone(),
            reason,
        };
        let mut first = url::Url::parse(&format!("{}/referrers/{subject}", self.repo_url(repo)))
            .map_err(|e| protocol(format!("bad URL: {e}")))?;
        if let Some(t) = artifact_type {
            first.query_pairs_mut().append_pair("artifactType", t);
        }
        let mut next = Some(first);
        let mut list: Vec<Referrer> = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_REFERRER_PAGES {
                return Err(protocol(format!(
                    "more than {MAX_REFERRER_PAGES} pages of referrers"
                )));
            }
            let response = self
                .inner
                .retry
                .run(|_| async {
                    let response = self
                        .send(repo, &scope, &what, |h| {
                            h.get(url.as_str())
                                .header(header::ACCEPT, media_type::OCI_INDEX)
                        })
                        .await?;
                    if response.status() == StatusCode::NOT_FOUND || response.status().is_success()
                    {
                        return Ok(response);
                    }
                    Err(Client::fail(repo, &what, response).await)
                })
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                if pages == 1 {
                    return Ok(None);
                }
                return Err(protocol("a later page of referrers is missing".into()));
            }
            let (after, body) = read_page(
                &url,
                response,
                host,
                &what,
                "referrers index",
                MAX_MANIFEST_BYTES,
            )
            .await?;
            next = after;
            let page = parse_referrers(&body).map_err(|source| Error::Model {
                registry: host.to_owned(),
                what: what.clone(),
                source,
            })?;
            if page.len() > MAX_REFERRERS - list.len() {
                return Err(Error::Model {
                    registry: host.to_owned(),
                    what: what.clone(),
                    source: oci_model::Error::TooManyReferrers {
                        count: list.len() + page.len(),
                        limit: MAX_REFERRERS,
                    },
                });
            }
            list.extend(page);
        }
        Ok(Some(list))
    }

    /// The fallback index of `subject` and its digest (`None` when there is
    /// no such tag).
    async fn fallback_referrers(
        &self,
        repo: &Reference,
        subject: &Digest,
    ) -> Result<(Vec<Referrer>, Option<Digest>)> {
        let tagged = repo
            .with_tag(&referrers_tag(subject))
            .map_err(|source| Error::Model {
                registry: repo.api_host().to_owned(),
                what: format!("referrers tag of {subject}"),
                source,
            })?;
        let manifest = match self.get_manifest(&tagged).await {
            Ok(m) => m,
            Err(Error::Status { status: 404, .. }) => return Ok((Vec::new(), None)),
            Err(e) => return Err(e),
        };
        let list = parse_referrers(manifest.bytes()).map_err(|source| Error::Model {
            registry: repo.api_host().to_owned(),
            what: format!(
                "GET manifest {}:{}",
                repo.repository(),
                referrers_tag(subject)
            ),
            source,
        })?;
        Ok((list, Some(manifest.digest().clone())))
    }

    /// Pushes `manifest` by digest into `repo`'s repository and makes sure
    /// it is listed among the referrers of its `subject`: a registry that
    /// answers with `OCI-Subject` indexes it itself; otherwise the fallback
    /// index at `sha256-<hex>` is read, the entry added (the others kept)
    /// and written back. Two writers updating the same fallback index at
    /// once can lose one entry (the tag scheme has no compare-and-swap), as
    /// the distribution spec warns; pushing the artifact again restores it.
    /// Returns how the registry lists it.
    pub async fn put_referrer(
        &self,
        repo: &Reference,
        manifest: &Manifest,
    ) -> Result<ReferrersVia> {
        let by_digest = Reference::parse(&format!("{}@{}", repo.name(), manifest.digest()))
            .map_err(|source| Error::Model {
                registry: repo.api_host().to_owned(),
                what: format!("PUT manifest {}", manifest.digest()),
                source,
            })?;
        let Some(subject) = manifest.subject() else {
            return Err(Error::Protocol {
                registry: repo.api_host().to_owned(),
                what: format!("PUT referrer {}", manifest.digest()),
                reason: "the manifest has no subject".into(),
            });
        };
        let indexed = self.put_manifest_subject(&by_digest, manifest).await?;
        if indexed.is_some() {
            return Ok(ReferrersVia::Api);
        }
        self.add_fallback_referrer(repo, &subject.digest, manifest.referrer())
            .await?;
        Ok(ReferrersVia::FallbackTag)
    }

    /// Adds `referrer` to the fallback index of `subject` (read, add,
    /// write back; an entry already there is left as it is).
    async fn add_fallback_referrer(
        &self,
        repo: &Reference,
        subject: &Digest,
        referrer: Referrer,
    ) -> Result<()> {
        let (mut list, _) = self.fallback_referrers(repo, subject).await?;
        if list.iter().any(|r| r.digest == referrer.digest) {
            return Ok(());
        }
        if list.len() >= MAX_REFERRERS {
            return Err(Error::Model {
                registry: repo.api_host().to_owned(),
                what: format!("referrers tag of {subject}"),
                source: oci_model::Error::TooManyReferrers {
                    count: list.len() + 1,
                    limit: MAX_REFERRERS,
                },
            });
        }
        list.push(referrer);
        let model = |source| Error::Model {
            registry: repo.api_host().to_owned(),
            what: format!("referrers tag of {subject}"),
            source,
        };
        let index = Manifest::from_bytes(referrers_index(&list), Some(media_type::OCI_INDEX))
            .map_err(model)?;
        let tagged = repo.with_tag(&referrers_tag(subject)).map_err(model)?;
        self.put_manifest(&tagged, &index).await
    }
}
