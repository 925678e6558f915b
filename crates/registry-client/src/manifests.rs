//! Manifest and tag operations: GET (size-limited, digest-checked), HEAD,
//! PUT, DELETE, and the paginated tag list.

use http::{StatusCode, header};
use oci_model::{Descriptor, Digest, MAX_MANIFEST_BYTES, Manifest, Reference, media_type};
use serde::Deserialize;

use crate::client::{
    Access, ReadError, connection_error, header_length, header_str, read_body, scope,
};
use crate::{Client, Error, Result};

impl Client {
    /// Fetches a manifest or index. The bytes are checked against the
    /// reference's digest (when it has one) and against the registry's
    /// `Docker-Content-Digest` header; more than 4 MiB is refused.
    pub async fn get_manifest(&self, r: &Reference) -> Result<Manifest> {
        let what = format!("GET manifest {}:{}", r.repository(), r.reference_str());
        let url = format!("{}/manifests/{}", self.repo_url(r), r.reference_str());
        let accept = media_type::ACCEPT_MANIFESTS.join(", ");
        let scope = scope(r.repository(), Access::Pull);
        let registry = r.api_host().to_owned();
        self.inner
            .retry
            .run(|_| async {
                let response = self
                    .send(r, &scope, &what, |h| {
                        h.get(&url).header(header::ACCEPT, &accept)
                    })
                    .await?;
                if !response.status().is_success() {
                    return Err(Client::fail(r, &what, response).await);
                }
                let model = |source| Error::Model {
                    registry: registry.clone(),
                    what: what.clone(),
                    source,
                };
                let content_type =
                    header_str(response.headers(), "content-type").map(str::to_owned);
                let announced =
                    header_str(response.headers(), "docker-content-digest").map(str::to_owned);
                let bytes = read_body(response, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| match e {
                        ReadError::Transport(e) => connection_error(&registry, &what, &e),
                        ReadError::TooLarge { announced: length } => {
                            model(oci_model::Error::ManifestTooLarge {
                                // Unannounced: at least one byte more than the limit.
                                size: length.unwrap_or(MAX_MANIFEST_BYTES as u64 + 1),
                                limit: MAX_MANIFEST_BYTES as u64,
                            })
                        }
                    })?;
                let actual = Digest::of(&bytes);
                let expected = match (r.digest(), announced.as_deref()) {
                    (Some(d), _) => Some(d.clone()),
                    (None, Some(h)) => Some(Digest::parse(h).map_err(model)?),
                    (None, None) => None,
                };
                if let Some(expected) = expected
                    && expected != actual
                {
                    return Err(Error::DigestMismatch {
                        registry: registry.clone(),
                        what: what.clone(),
                        expected,
                        actual,
                    });
                }
                Manifest::from_bytes(bytes, content_type.as_deref()).map_err(model)
            })
            .await
    }

    /// Asks whether a manifest exists, without fetching it: `None` when the
    /// registry does not have it.
    pub async fn head_manifest(&self, r: &Reference) -> Result<Option<Descriptor>> {
        let what = format!("HEAD manifest {}:{}", r.repository(), r.reference_str());
        let url = format!("{}/manifests/{}", self.repo_url(r), r.reference_str());
        let accept = media_type::ACCEPT_MANIFESTS.join(", ");
        let scope = scope(r.repository(), Access::Pull);
        self.inner
            .retry
            .run(|_| async {
                let response = self
                    .send(r, &scope, &what, |h| {
                        h.head(&url).header(header::ACCEPT, &accept)
                    })
                    .await?;
                if response.status() == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !response.status().is_success() {
                    return Err(Client::fail(r, &what, response).await);
                }
                let headers = response.headers();
                let Some(digest) = header_str(headers, "docker-content-digest") else {
                    // Without the header we cannot tell what is there; the
                    // caller falls back to a GET.
                    return Ok(None);
                };
                let digest = Digest::parse(digest).map_err(|source| Error::Model {
                    registry: r.api_host().to_owned(),
                    what: what.clone(),
                    source,
                })?;
                if let Some(want) = r.digest()
                    && want != &digest
                {
                    return Ok(None);
                }
                Ok(Some(Descriptor {
                    media_type: header_str(headers, "content-type")
                        .map(|t| media_type::base(t).to_owned())
                        .unwrap_or_default(),
                    digest,
                    size: header_length(headers).unwrap_or(0),
                    platform: None,
                }))
            })
            .await
    }

    /// Uploads a manifest under `r`'s tag (or, without a tag, its digest).
    /// Every blob and child manifest it references must already be there.
    pub async fn put_manifest(&self, r: &Reference, manifest: &Manifest) -> Result<()> {
        self.put_manifest_subject(r, manifest).await.map(drop)
    }

    /// [`Client::put_manifest`], returning the registry's `OCI-Subject`
    /// header: the subject it indexed, when it has the referrers API.
    pub async fn put_manifest_subject(
        &self,
        r: &Reference,
        manifest: &Manifest,
    ) -> Result<Option<String>> {
        let target = match r.tag() {
            Some(t) => t.to_owned(),
            None => manifest.digest().to_string(),
        };
        let what = format!("PUT manifest {}:{target}", r.repository());
        let url = format!("{}/manifests/{target}", self.repo_url(r));
        let scope = scope(r.repository(), Access::Push);
        self.inner
            .retry
            .run(|_| async {
                let response = self
                    .send(r, &scope, &what, |h| {
                        h.put(&url)
                            .header(header::CONTENT_TYPE, manifest.media_type())
                            .body(manifest.bytes().to_vec())
                    })
                    .await?;
                if !response.status().is_success() {
                    return Err(Client::fail(r, &what, response).await);
                }
                if let Some(d) = header_str(response.headers(), "docker-content-digest")
                    && d != manifest.digest().as_str()
                {
                    return Err(Error::Protocol {
                        registry: r.api_host().to_owned(),
                        what: what.clone(),
                        reason: format!(
                            "the registry stored the manifest as {d}, not {}",
                            manifest.digest()
                        ),
                    });
                }
                Ok(header_str(response.headers(), "oci-subject").map(str::to_owned))
            })
            .await
    }

    /// Deletes a manifest. A tag is first resolved to its digest, since
    /// registries delete manifests by digest.
    pub async fn delete_manifest(&self, r: &Reference) -> Result<Digest> {
        let digest = match r.digest() {
            Some(d) => d.clone(),
            None => match self.head_manifest(r).await? {
                Some(d) => d.digest,
                None => self.get_manifest(r).await?.digest().clone(),
            },
        };
        let what = format!("DELETE manifest {}@{digest}", r.repository());
        let url = format!("{}/manifests/{digest}", self.repo_url(r));
        let scope = scope(r.repository(), Access::Delete);
        self.inner
            .retry
            .run(|_| async {
                let response = self.send(r, &scope, &what, |h| h.delete(&url)).await?;
                if !response.status().is_success() {
                    return Err(Client::fail(r, &what, response).await);
                }
                Ok(())
            })
            .await?;
        Ok(digest)
    }

    /// Lists a repository's tags, following `Link` pagination within the
    /// registry. Each page is read up to 4 MiB, the whole list up to a
    /// million tags.
    pub async fn list_tags(&self, r: &Reference) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        // Bounds a hostile registry that links back to itself forever.
        const MAX_PAGES: usize = 10_000;
        let what = format!("GET tags {}", r.repository());
        let scope = scope(r.repository(), Access::Pull);
        let host = r.api_host();
        let protocol = |reason: String| Error::Protocol {
            registry: host.to_owned(),
            what: what.clone(),
            reason,
        };
        let first = format!("{}/tags/list?n=1000", self.repo_url(r));
        let mut next =
            Some(url::Url::parse(&first).map_err(|e| protocol(format!("bad URL: {e}")))?);
        let mut tags = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(protocol(format!("more than {MAX_PAGES} pages of tags")));
            }
            let response = self
                .inner
                .retry
                .run(|_| async {
                    let response = self.send(r, &scope, &what, |h| h.get(url.as_str())).await?;
                    if !response.status().is_success() {
                        return Err(Client::fail(r, &what, response).await);
                    }
                    Ok(response)
                })
                .await?;
            let (after, body) = read_page(
                &url,
                response,
                host,
                &what,
                "page of tags",
                MAX_TAG_PAGE_BYTES,
            )
            .await?;
            next = after;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| protocol(format!("tag list is not valid JSON: {e}")))?;
            let page = page.tags.unwrap_or_default();
            if page.len() > MAX_TAGS - tags.len() {
                return Err(protocol(format!("more than {MAX_TAGS} tags")));
            }
            tags.extend(page);
        }
        Ok(tags)
    }
}

/// The largest page of a tag list read: the manifests' limit, room for
/// tens of thousands of tags.
const MAX_TAG_PAGE_BYTES: usize = MAX_MANIFEST_BYTES;
/// The most tags [`Client::list_tags`] collects, over all pages: a few
/// hundred MiB at worst.
const MAX_TAGS: usize = 1_000_000;

/// A page of a paginated listing (tags, the catalog, referrers): the page
/// its `Link` header names next (on the same registry) and its body, read
/// up to `limit` bytes (`content` names it in the error).
pub(crate) async fn read_page(
    url: &url::Url,
    response: reqwest::Response,
    host: &str,
    what: &str,
    content: &'static str,
    limit: usize,
) -> Result<(Option<url::Url>, Vec<u8>)> {
    let next = next_tags_page(url, header_str(response.headers(), "link")).map_err(|reason| {
        Error::Protocol {
            registry: host.to_owned(),
            what: what.to_owned(),
            reason,
        }
    })?;
    let body = read_body(response, limit).await.map_err(|e| match e {
        ReadError::Transport(e) => connection_error(host, what, &e),
        ReadError::TooLarge { .. } => Error::TooLarge {
            registry: host.to_owned(),
            what: what.to_owned(),
            content,
            limit: limit as u64,
        },
    })?;
    Ok((next, body))
}

/// The page after `current` of a tag list: the target of the `Link`
/// header's `rel="next"`, resolved against `current`. `Ok(None)` on the
/// last page (no such link, or one that is not a URL); an error for a link
/// that leaves the registry (another scheme, host or port), since requests
/// carry the registry's credentials.
pub fn next_tags_page(
    current: &url::Url,
    link: Option<&str>,
) -> std::result::Result<Option<url::Url>, String> {
    let Some(target) = link.and_then(parse_next_link) else {
        return Ok(None);
    };
    let Ok(next) = current.join(&target) else {
        return Ok(None);
    };
    if next.origin() != current.origin() {
        return Err(format!(
            "the next page of tags is on another server ({}), not following it",
            next.origin().ascii_serialization()
        ));
    }
    Ok(Some(next))
}

/// `<url>; rel="next"` → url.
fn parse_next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(parse_next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(parse_next_link("garbage"), None);
    }

    #[test]
    fn follows_tag_pages_within_the_registry() {
        let current = url::Url::parse("https://r.example/v2/a/tags/list?n=2").unwrap();
        let next = |link| next_tags_page(&current, link).map(|u| u.map(String::from));
        let same = [
            (
                r#"</v2/a/tags/list?last=x&n=2>; rel="next""#,
                "https://r.example/v2/a/tags/list?last=x&n=2",
            ),
            (
                r#"<list?last=x>; rel="next""#,
                "https://r.example/v2/a/tags/list?last=x",
            ),
            (
                r#"<https://r.example:443/v2/a/tags/list?last=y>; rel="next""#,
                "https://r.example/v2/a/tags/list?last=y",
            ),
            (
                r#"<//r.example/v2/b>; rel="next""#,
                "https://r.example/v2/b",
            ),
        ];
        for (link, want) in same {
            assert_eq!(next(Some(link)), Ok(Some(want.to_owned())), "{link}");
        }
        assert_eq!(next(None), Ok(None));
        assert_eq!(next(Some(r#"</x>; rel="prev""#)), Ok(None));
        for elsewhere in [
            r#"<https://evil.example/v2/a/tags/list>; rel="next""#,
            r#"<//evil.example/v2/a>; rel="next""#,
            r#"<http://r.example/v2/a/tags/list>; rel="next""#,
            r#"<https://r.example:5000/v2/a/tags/list>; rel="next""#,
            r#"<file:///etc/passwd>; rel="next""#,
        ] {
            let err = next(Some(elsewhere)).unwrap_err();
            assert!(err.contains("another server"), "{elsewhere}: {err}");
        }
    }
}
