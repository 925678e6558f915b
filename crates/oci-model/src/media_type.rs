//! Media types of the OCI image spec and Docker's schema 2, and the
//! family (OCI or Docker) each belongs to.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The empty descriptor's media type (`{}`), the config of artifacts
/// that have none of their own.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifests (signed and unsigned): refused, they carry no
/// content digests for their config.
pub const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest type hoist reads, for the `Accept` header.
pub const ACCEPT_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Which specification a media type comes from. A copy never mixes them:
/// a Docker manifest list keeps Docker manifests and the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `application/vnd.oci.*`
    Oci,
    /// `application/vnd.docker.*`
    Docker,
}

/// What a manifest media type describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single-platform image manifest.
    Image,
    /// An index (manifest list) of manifests.
    Index,
}

/// Classifies a manifest media type, `None` when it is not one hoist reads.
///
/// ```
/// use oci_model::media_type::{classify, Family, ManifestKind, DOCKER_MANIFEST_LIST};
/// assert_eq!(classify(DOCKER_MANIFEST_LIST), Some((ManifestKind::Index, Family::Docker)));
/// assert_eq!(classify("text/plain"), None);
/// ```
pub fn classify(media_type: &str) -> Option<(ManifestKind, Family)> {
    match base(media_type) {
        OCI_MANIFEST => Some((ManifestKind::Image, Family::Oci)),
        OCI_INDEX => Some((ManifestKind::Index, Family::Oci)),
        DOCKER_MANIFEST => Some((ManifestKind::Image, Family::Docker)),
        DOCKER_MANIFEST_LIST => Some((ManifestKind::Index, Family::Docker)),
        _ => None,
    }
}

/// The family of any media type, by its prefix.
pub fn family(media_type: &str) -> Option<Family> {
    let t = base(media_type);
    if t.starts_with("application/vnd.oci.") {
        Some(Family::Oci)
    } else if t.starts_with("application/vnd.docker.") {
        Some(Family::Docker)
    } else {
        None
    }
}

/// The media type without parameters (`; charset=…`) or surrounding blanks.
pub fn base(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}
