//! The registry's catalog: the names of its repositories.

use oci_model::Reference;
use serde::Deserialize;

use crate::manifests::read_page;
use crate::{Client, Error, Result};

/// The largest page of the catalog read (as a page of tags).
const MAX_PAGE_BYTES: usize = oci_model::MAX_MANIFEST_BYTES;
/// The most repository names collected over all pages.
const MAX_REPOSITORIES: usize = 1_000_000;
/// Bounds a hostile registry that links back to itself forever.
const MAX_PAGES: usize = 10_000;

/// One page of a registry's catalog.
#[derive(Clone, Debug)]
pub struct CatalogPage {
    /// Repository names on this page.
    pub repositories: Vec<String>,
    /// The next page, when there is one.
    pub next: Option<url::Url>,
}

impl Client {
    /// Lists the repositories of the registry `r` is on (`GET
    /// /v2/_catalog`), following `Link` pagination within the registry.
    /// Registries may refuse it (many hosted ones do): that is an error.
    ///
    /// ```no_run
    /// # async fn demo() -> registry_client::Result<()> {
    /// let client = registry_client::Client::builder().build()?;
    /// let r = "127.0.0.1:5000/any".parse().unwrap();
    /// for repository in client.list_repositories(&r).await? {
    ///     println!("{repository}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_repositories(&self, r: &oci_model::Reference) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut next = None;
        for _ in 0..MAX_PAGES {
            let page = self.catalog_page(r, next.as_ref()).await?;
            if page.repositories.len() > MAX_REPOSITORIES - names.len() {
                return Err(Error::Protocol {
                    registry: r.api_host().to_owned(),
                    what: "GET catalog".into(),
                    reason: format!("more than {MAX_REPOSITORIES} repositories"),
                });
            }
            names.extend(page.repositories);
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(names),
            }
        }
        Err(Error::Protocol {
            registry: r.api_host().to_owned(),
            what: "GET catalog".into(),
            reason: format!("more than {MAX_PAGES} pages of catalog"),
        })
    }

    /// One page of the registry's catalog (`GET /v2/_catalog`): the first
    /// with `next` `None`, then the page each answer links to. `registry`
    /// is any reference on the registry (only its host and credentials are
    /// used). A page is read up to 4 MiB.
    ///
    /// ```no_run
    /// # async fn demo(client: registry_client::Client) -> registry_client::Result<()> {
    /// let on = "127.0.0.1:5000/x".parse().unwrap();
    /// let mut next = None;
    /// loop {
    ///     let page = client.catalog_page(&on, next.as_ref()).await?;
    ///     page.repositories.iter().for_each(|r| println!("{r}"));
    ///     let Some(n) = page.next else { break };
    ///     next = Some(n);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn catalog_page(
        &self,
        registry: &Reference,
        next: Option<&url::Url>,
    ) -> Result<CatalogPage> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let host = registry.api_host();
        let what = "GET catalog".to_owned();
        let protocol = |reason: String| Error::Protocol {
            registry: host.to_owned(),
            what: what.clone(),
            reason,
        };
        let url = match next {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!(
                "{}://{host}/v2/_catalog?n=1000",
                self.scheme(host)
            ))
            .map_err(|e| protocol(format!("bad URL: {e}")))?,
        };
        let scope = "registry:catalog:*";
        let response = self
            .inner
            .retry
            .run(|_| async {
                let response = self
                    .send(registry, scope, &what, |h| h.get(url.as_str()))
                    .await?;
                if !response.status().is_success() {
                    return Err(Client::fail(registry, &what, response).await);
                }
                Ok(response)
            })
            .await?;
        let (next, body) = read_page(
            &url,
            response,
            host,
            &what,
            "page of the catalog",
            MAX_PAGE_BYTES,
        )
        .await?;
        let page: Catalog = serde_json::from_slice(&body)
            .map_err(|e| protocol(format!("catalog is not valid JSON: {e}")))?;
        Ok(CatalogPage {
            repositories: page.repositories.unwrap_or_default(),
            next,
        })
    }
}
