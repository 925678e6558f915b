//! Reading an image without copying it: its manifest (with platform
//! selection in an index) and its config, from a registry or a layout.

use oci_model::{Layout, Manifest, Platform, Reference, Source};
use registry_client::Client;

use crate::{Endpoint, Result, from_model};

/// The manifest at `at`; with `platform`, an index is resolved to that
/// platform's image manifest (an index inside it is refused).
///
/// ```no_run
/// # async fn demo() -> Result<(), oci_push::Error> {
/// let client = registry_client::Client::builder().build()?;
/// let m = oci_push::manifest(&client, &"oci:/tmp/layout:v1".parse()?, None).await?;
/// println!("{}", String::from_utf8_lossy(m.bytes()));
/// # Ok(()) }
/// ```
pub async fn manifest(
    client: &Client,
    at: &Endpoint,
    platform: Option<&Platform>,
) -> Result<Manifest> {
    match at {
        Endpoint::Registry(r) => manifest_from(client, r, platform).await,
        Endpoint::Layout { dir, tag } => {
            let layout = Layout::open(dir)?;
            let r = layout.reference(tag.as_deref())?;
            manifest_from(&layout, &r, platform).await
        }
    }
}

/// The raw config JSON of the image at `at`, choosing `platform` in an
/// index (linux/amd64 when `None`). Verified against its digest.
pub async fn config(
    client: &Client,
    at: &Endpoint,
    platform: Option<&Platform>,
) -> Result<Vec<u8>> {
    let default = Platform::default();
    let platform = platform.unwrap_or(&default);
    match at {
        Endpoint::Registry(r) => config_from(client, r, platform).await,
        Endpoint::Layout { dir, tag } => {
            let layout = Layout::open(dir)?;
            let r = layout.reference(tag.as_deref())?;
            config_from(layout, &r, platform).await
        }
    }
}

async fn manifest_from<S: Source>(
    source: &S,
    r: &Reference,
    platform: Option<&Platform>,
) -> Result<Manifest> {
    match platform {
        Some(p) => Ok(oci_model::resolve_manifest(source, r, p)
            .await
            .map_err(from_model)?
            .manifest),
        None => source
            .manifest(r)
            .await
            .map_err(|e| from_model(oci_model::Error::source(format!("manifest of {r}"), e))),
    }
}

async fn config_from<S: Source>(source: S, r: &Reference, platform: &Platform) -> Result<Vec<u8>> {
    use oci_model::Image;
    let image = oci_model::resolve(source, r, platform)
        .await
        .map_err(from_model)?;
    Ok(image.config_bytes().to_vec())
}
