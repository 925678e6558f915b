//! Reading an image without copying it: its manifest (with platform
//! selection in an index) and its config, from a registry or a layout.

use oci_model::media_type::ManifestKind;
use oci_model::{Layout, Manifest, Platform};
use registry_client::Client;

use crate::copy::Src;
use crate::{Endpoint, Result};

/// Configs are small JSON documents; a bigger one is refused.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

fn source(client: &Client, at: &Endpoint) -> Result<Src> {
    Ok(match at {
        Endpoint::Registry(r) => Src::Registry(client.clone(), r.clone()),
        Endpoint::Layout { dir, tag } => Src::Layout(Layout::open(dir)?, tag.clone()),
    })
}

/// The manifest at `at`; with `platform`, an index is resolved to that
/// platform's image manifest.
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
    let src = source(client, at)?;
    let root = src.root_manifest().await?;
    match platform {
        Some(p) if root.kind() == ManifestKind::Index => {
            let child = root.select_platform(p)?.clone();
            src.manifest(&child).await
        }
        _ => Ok(root),
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
    let m = manifest(client, at, Some(platform.unwrap_or(&default))).await?;
    let desc = m.config().expect("an image manifest has a config").clone();
    source(client, at)?
        .small_blob(&desc, MAX_CONFIG_BYTES)
        .await
}
