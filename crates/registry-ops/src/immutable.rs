//! Immutable images: a manifest annotation, and the check that refuses to
//! put another image under a tag that holds one.

use oci_model::{Digest, Manifest, Reference};
use registry_client::Client;

use crate::{Error, Result};

/// The manifest annotation (value `true`) that marks an image immutable:
/// `hoist base debian` writes it; `hoist build` and `hoist copy` refuse to
/// replace such an image under its tag without `--force`; `hoist gc`
/// never deletes it. An annotation of the manifest rather than a config
/// label, because images built `FROM` a base inherit its labels, and they
/// must stay ordinary images.
pub const IMMUTABLE_ANNOTATION: &str = "dev.hoist.immutable";

/// Whether a manifest carries [`IMMUTABLE_ANNOTATION`]` = "true"`.
///
/// ```
/// let m = oci_model::Manifest::from_bytes(
///     br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
///     "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
///     "layers":[],"annotations":{"dev.hoist.immutable":"true"}}"#.to_vec(),
///     None,
/// )?;
/// assert!(registry_ops::is_immutable(&m));
/// # Ok::<(), oci_model::Error>(())
/// ```
pub fn is_immutable(manifest: &Manifest) -> bool {
    #[derive(serde::Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: Option<std::collections::BTreeMap<String, String>>,
    }
    serde_json::from_slice::<Annotated>(manifest.bytes())
        .ok()
        .and_then(|a| a.annotations)
        .is_some_and(|a| a.get(IMMUTABLE_ANNOTATION).is_some_and(|v| v == "true"))
}

/// Refuses to put `new` under `dst`'s tag when the tag holds another
/// image that is immutable ([`Error::Immutable`]). One `HEAD`; a `GET` of
/// the manifest only when the tag holds another image (or the registry
/// does not say which).
/// A reference without a tag (a digest) never overwrites anything.
///
/// ```no_run
/// # async fn demo(new: oci_model::Digest) -> Result<(), registry_ops::Error> {
/// let client = registry_client::Client::builder().build()?;
/// let dst = "127.0.0.1:5000/base/debian:bookworm".parse()?;
/// registry_ops::check_overwrite(&client, &dst, &new).await?;
/// # Ok(()) }
/// ```
pub async fn check_overwrite(client: &Client, dst: &Reference, new: &Digest) -> Result<()> {
    let Some(tag) = dst.tag() else {
        return Ok(());
    };
    let at_tag = dst.with_tag(tag)?;
    let existing = match client.head_manifest(&at_tag).await? {
        Some(d) => d.digest,
        None => match client.get_manifest(&at_tag).await {
            Ok(m) => m.digest().clone(),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        },
    };
    if &existing == new {
        return Ok(());
    }
    let manifest = client
        .get_manifest(&at_tag.with_digest(existing.clone()))
        .await?;
    if is_immutable(&manifest) {
        return Err(Error::Immutable {
            reference: at_tag.to_string(),
            existing,
            new: new.clone(),
        });
    }
    Ok(())
}
