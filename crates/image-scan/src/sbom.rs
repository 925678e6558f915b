//! SBOM documents: SPDX 2.3 JSON, CycloneDX 1.5 JSON, and a plain table.
//!
//! Deterministic: packages in the inventory's (sorted) order, identifiers
//! numbered in that order, the document's namespace and serial number
//! derived from the image digest. Only the creation time, which the
//! caller passes, changes between two runs on the same image.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::{Ecosystem, Error, ImageInfo, Inventory, Package, Result};

/// An SBOM format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// SPDX 2.3, JSON.
    Spdx,
    /// CycloneDX 1.5, JSON.
    CycloneDx,
}

/// What the documents name as their creator.
const TOOL: &str = concat!("hoist-", env!("CARGO_PKG_VERSION"));

/// Percent-encodes `s` for a purl component: everything but ASCII letters,
/// digits and `.-_~` (so `:` in an epoch is `%3A`, `+` is `%2B`).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The package URL of `p`, as scanners and advisory databases write
/// them: `pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12`
/// (with `upstream=SOURCE` when the source package has another name),
/// `pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1`,
/// `pkg:pypi/pyyaml@5.3.1` (PEP 503 names). Qualifiers are sorted, as the
/// purl spec says.
///
/// ```
/// use image_scan::{Distro, Ecosystem, Package, SourcePackage, purl};
/// let p = Package {
///     ecosystem: Ecosystem::Deb,
///     name: "libc6".into(),
///     version: "2.36-9+deb12u4".into(),
///     arch: Some("amd64".into()),
///     source: Some(SourcePackage { name: "glibc".into(), version: "2.36-9+deb12u4".into() }),
///     license: None,
///     path: "var/lib/dpkg/status".into(),
///     layer: oci_model::Digest::of(b"layer"),
/// };
/// let debian = Distro { id: "debian".into(), version_id: Some("12".into()) };
/// assert_eq!(
///     purl(&p, Some(&debian)),
///     "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
/// );
/// ```
pub fn purl(p: &Package, distro: Option<&crate::Distro>) -> String {
    let (kind, namespace, default_ns) = match p.ecosystem {
        Ecosystem::Deb => ("deb", distro.map(|d| d.id.as_str()), Some("debian")),
        Ecosystem::Apk => ("apk", distro.map(|d| d.id.as_str()), Some("alpine")),
        Ecosystem::Python => ("pypi", None, None),
    };
    let name = match p.ecosystem {
        Ecosystem::Python => crate::pep503_name(&p.name),
        _ => p.name.clone(),
    };
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = namespace.or(default_ns) {
        out.push_str(&encode(ns));
        out.push('/');
    }
    out.push_str(&encode(&name));
    out.push('@');
    out.push_str(&encode(&p.version));
    let mut qualifiers: BTreeMap<&str, String> = BTreeMap::new();
    if p.ecosystem != Ecosystem::Python {
        if let Some(arch) = &p.arch {
            qualifiers.insert("arch", encode(arch));
        }
        if let Some(d) = distro {
            let v = match &d.version_id {
                Some(v) => format!("{}-{v}", d.id),
                None => d.id.clone(),
            };
            qualifiers.insert("distro", encode(&v));
        }
        if let Some(s) = &p.source
            && s.name != p.name
        {
            qualifiers.insert("upstream", encode(&s.name));
        }
    }
    for (i, (k, v)) in qualifiers.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        let _ = write!(out, "{k}={v}");
    }
    out
}

/// The image's own purl: `pkg:oci/NAME@sha256%3A…?arch=…&repository_url=…`.
fn image_purl(image: &ImageInfo) -> String {
    let last = image.name.rsplit('/').next().unwrap_or(&image.name);
    let mut out = format!(
        "pkg:oci/{}@{}",
        encode(&last.to_ascii_lowercase()),
        encode(image.digest.as_str())
    );
    let mut q = vec![];
    if !image.architecture.is_empty() {
        q.push(format!("arch={}", encode(&image.architecture)));
    }
    q.push(format!("repository_url={}", encode(&image.name)));
    if let Some(tag) = &image.tag {
        q.push(format!("tag={}", encode(tag)));
    }
    out.push('?');
    out.push_str(&q.join("&"));
    out
}

/// A name derived from the image digest, stable across runs: the
/// document namespace and the serial number.
fn stable_hex(image: &ImageInfo, what: &str) -> String {
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    h.update(image.digest.as_str().as_bytes());
    h.update(image.name.as_bytes());
    h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The image's name as shown: `NAME:TAG@sha256:…` or `NAME@sha256:…`.
fn display_name(image: &ImageInfo) -> String {
    match &image.tag {
        Some(t) => format!("{}:{t}@{}", image.name, image.digest),
        None => format!("{}@{}", image.name, image.digest),
    }
}

/// Writes `inventory` as an SBOM in `format`, pretty-printed JSON ending
/// in a newline. `created` (seconds since the Unix epoch; pass
/// `SOURCE_DATE_EPOCH` for reproducible files) is the only input that is
/// not the image: the same inventory and time give the same bytes.
///
/// ```
/// use image_scan::{Format, ImageInfo, Inventory, sbom};
/// let inventory = Inventory {
///     image: Some(ImageInfo {
///         name: "registry.example/app".into(),
///         tag: Some("v1".into()),
///         digest: oci_model::Digest::of(b"manifest"),
///         architecture: "amd64".into(),
///         os: "linux".into(),
///     }),
///     ..Inventory::default()
/// };
/// let doc: serde_json::Value = serde_json::from_slice(&sbom(&inventory, Format::CycloneDx, 0)?)?;
/// assert_eq!(doc["specVersion"], "1.5");
/// assert_eq!(doc["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sbom(inventory: &Inventory, format: Format, created: u64) -> Result<Vec<u8>> {
    let image = inventory.image.as_ref().ok_or(Error::NoImage)?;
    let doc = match format {
        Format::Spdx => spdx(inventory, image, created),
        Format::CycloneDx => cyclonedx(inventory, image, created),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("JSON values serialize");
    bytes.push(b'\n');
    Ok(bytes)
}

/// What the SBOMs say of where a package's record is.
fn location(p: &Package) -> String {
    format!("layer {}, /{}", p.layer, p.path)
}

fn spdx(inventory: &Inventory, image: &ImageInfo, created: u64) -> Value {
    let distro = inventory.distro.as_ref();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": image.name,
        "versionInfo": image.digest.as_str(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "checksums": [{"algorithm": "SHA256", "checksumValue": image.digest.hex()}],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": image_purl(image),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in inventory.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{}", p.ecosystem.as_str(), i + 1);
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "comment": location(p),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p, distro),
            }],
        });
        if let Some(s) = &p.source {
            pkg["sourceInfo"] = json!(format!(
                "built from source package {} {}",
                s.name, s.version
            ));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": display_name(image),
        "documentNamespace": format!(
            "https://hoist.invalid/spdx/{}/{}",
            image.digest.hex(),
            &stable_hex(image, "spdx")[..16]
        ),
        "creationInfo": {
            "created": oci_model::rfc3339(created),
            "creators": [format!("Tool: {TOOL}")],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn cyclonedx(inventory: &Inventory, image: &ImageInfo, created: u64) -> Value {
    let distro = inventory.distro.as_ref();
    let hex = stable_hex(image, "cyclonedx");
    // A version-4-shaped UUID from the digest: stable for one image.
    let serial = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    );
    let image_ref = image_purl(image);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut components = Vec::new();
    let mut refs = Vec::new();
    for p in &inventory.packages {
        let purl = purl(p, distro);
        // The same package may be installed twice (two site-packages):
        // each needs its own bom-ref.
        let n = seen.entry(purl.clone()).or_default();
        *n += 1;
        let bom_ref = if *n == 1 {
            purl.clone()
        } else {
            format!("{purl}#{n}")
        };
        let mut properties = vec![
            json!({"name": "hoist:package:type", "value": p.ecosystem.as_str()}),
            json!({"name": "hoist:layer", "value": p.layer.as_str()}),
            json!({"name": "hoist:path", "value": format!("/{}", p.path)}),
        ];
        if let Some(s) = &p.source {
            properties.push(json!({"name": "hoist:source:name", "value": s.name}));
            properties.push(json!({"name": "hoist:source:version", "value": s.version}));
        }
        let mut c = json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": p.name,
            "version": p.version,
            "purl": purl,
            "properties": properties,
        });
        if let Some(l) = &p.license {
            c["licenses"] = json!([{ "license": { "name": l } }]);
        }
        refs.push(bom_ref);
        components.push(c);
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": oci_model::rfc3339(created),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "hoist",
                    "version": env!("CARGO_PKG_VERSION"),
                }],
            },
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": image.name,
                "version": image.digest.as_str(),
                "purl": image_ref,
                "hashes": [{"alg": "SHA-256", "content": image.digest.hex()}],
            },
        },
        "components": components,
        "dependencies": [{ "ref": image_ref, "dependsOn": refs }],
    })
}

/// The inventory as a table for people: `TYPE NAME VERSION LAYER PATH`
/// aligned in columns (layer digests shortened to 12 hex digits), one
/// package a line, sorted.
///
/// ```
/// let t = image_scan::table(&image_scan::Inventory::default());
/// assert!(t.starts_with("TYPE"));
/// ```
pub fn table(inventory: &Inventory) -> String {
    let mut rows = vec![[
        "TYPE".to_owned(),
        "NAME".to_owned(),
        "VERSION".to_owned(),
        "LAYER".to_owned(),
        "PATH".to_owned(),
    ]];
    for p in &inventory.packages {
        rows.push([
            p.ecosystem.as_str().to_owned(),
            p.name.clone(),
            p.version.clone(),
            format!("{}:{}", p.layer.algorithm(), p.layer.short(12)),
            format!("/{}", p.path),
        ]);
    }
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
