//! The registry's catalog: the names of its repositories.

use serde::Deserialize;

use crate::client::{ReadError, connection_error, header_str, read_body};
use crate::manifests::next_tags_page;
use crate::{Client, Error, Result};

/// The largest page of the catalog read (as a page of tags).
const MAX_PAGE_BYTES: usize = oci_model::MAX_MANIFEST_BYTES;
/// The most repository names collected over all pages.
const MAX_REPOSITORIES: usize = 1_000_000;
/// Bounds a hostile registry that links back to itself forever.
const MAX_PAGES: usize = 10_000;

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
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let what = "GET catalog".to_owned();
        let scope = "registry:catalog:*";
        let host = r.api_host();
        let protocol = |reason: String| Error::Protocol {
            registry: host.to_owned(),
            what: what.clone(),
            reason,
        };
        let first = format!("{}://{host}/v2/_catalog?n=1000", self.scheme(host));
        let mut next =
            Some(url::Url::parse(&first).map_err(|e| protocol(format!("bad URL: {e}")))?);
        let mut names = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(protocol(format!("more than {MAX_PAGES} pages of catalog")));
            }
            let response = self
                .inner
                .retry
                .run(|_| async {
                    let response = self.send(r, scope, &what, |h| h.get(url.as_str())).await?;
                    if !response.status().is_success() {
                        return Err(Client::fail(r, &what, response).await);
                    }
                    Ok(response)
                })
                .await?;
            next =
                next_tags_page(&url, header_str(response.headers(), "link")).map_err(protocol)?;
            let body = read_body(response, MAX_PAGE_BYTES)
                .await
                .map_err(|e| match e {
                    ReadError::Transport(e) => connection_error(host, &what, &e),
                    ReadError::TooLarge { .. } => Error::TooLarge {
                        registry: host.to_owned(),
                        what: what.clone(),
                        content: "page of the catalog",
                        limit: MAX_PAGE_BYTES as u64,
                    },
                })?;
            let page: Catalog = serde_json::from_slice(&body)
                .map_err(|e| protocol(format!("catalog is not valid JSON: {e}")))?;
            let page = page.repositories.unwrap_or_default();
            if page.len() > MAX_REPOSITORIES - names.len() {
                return Err(protocol(format!(
                    "more than {MAX_REPOSITORIES} repositories"
                )));
            }
            names.extend(page);
        }
        Ok(names)
    }
}
