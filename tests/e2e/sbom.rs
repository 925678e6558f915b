//! `hoist sbom`: inventories of images built from real Debian packages and
//! real wheels, whiteouts, hostile record files, and SBOMs checked by the
//! SPDX and CycloneDX projects' own validators.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use oci_layer::{LayerWriter, WriteOptions};
use serde_json::Value;

use super::{hoist, hoist_ok};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `hoist sbom ARGS` with `SOURCE_DATE_EPOCH` set.
fn sbom_at(epoch: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("sbom")
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env("HOME", "/nonexistent-home-for-tests")
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .expect("run hoist")
}

/// The real wheel Debian ships for `name` (python3-pip-whl,
/// python3-setuptools-whl), unpacked into `site`; returns its version.
fn unpack_debian_wheel(name: &str, site: &Path) -> String {
    let wheel = std::fs::read_dir("/usr/share/python-wheels")
        .expect("Debian's python3-pip-whl (scripts/install-test-deps)")
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".whl"))
        })
        .unwrap_or_else(|| panic!("no {name} wheel in /usr/share/python-wheels"));
    let out = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(site)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = wheel.file_name().unwrap().to_str().unwrap();
    file[name.len() + 1..].split('-').next().unwrap().to_owned()
}

/// The image's layer digests, bottom first, from its layout.
fn layers(layout: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap(),
    )
    .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs the validators the SPDX and CycloneDX projects publish on PyPI
/// (spdx-tools, cyclonedx-python-lib; scripts/install-test-deps).
fn validate(spdx: &Path, cyclonedx: &Path) {
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(spdx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyspdxtools: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let script = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if errors:
    sys.exit(f"invalid CycloneDX 1.5: {errors!r}")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(cyclonedx)
        .output()
        .unwrap();
    assert!(out.status.success(), "cyclonedx: {}", text(&out.stderr));
}

#[test]
fn inventory_and_sboms_of_a_debian_image_with_wheels() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).display().to_string();

    // A base from real Debian packages, whose versions are the truth.
    let debs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-base-cache");
    let base = format!("oci:{}:slim", w("base"));
    let built: Value = serde_json::from_str(&hoist_ok(&[
        "base",
        "debian",
        "--preset",
        "slim",
        "--no-bytecode",
        "--json",
        "--output",
        &base,
        "--cache-dir",
        debs.to_str().unwrap(),
    ]))
    .unwrap();
    let debian: BTreeMap<String, String> = built["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(debian.contains_key("libc6"), "{debian:?}");

    // Two real wheels copied into site-packages, an egg-info file, then
    // a RUN that deletes setuptools' dist-info (a whiteout).
    let ctx = work.path().join("ctx");
    let site = ctx.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let pip = unpack_debian_wheel("pip", &site);
    let setuptools = unpack_debian_wheel("setuptools", &site);
    std::fs::write(
        site.join("Legacy_Thing-0.9.egg-info"),
        "Metadata-Version: 1.1\nName: Legacy_Thing\nVersion: 0.9\nLicense: MIT\n",
    )
    .unwrap();
    let dist = "/usr/local/lib/python3.11/dist-packages";
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "ARG BASE\nFROM ${{BASE}}\nCOPY site/ {dist}/\n\
             RUN [\"python3.11\", \"-c\", \"import shutil; shutil.rmtree('{dist}/setuptools-{setuptools}.dist-info')\"]\n"
        ),
    )
    .unwrap();
    let image_dir = work.path().join("image");
    let image = format!("oci:{}:1", image_dir.display());
    let out = hoist(&[
        "build",
        "-f",
        &ctx.join("Dockerfile").display().to_string(),
        &ctx.display().to_string(),
        "--build-arg",
        &format!("BASE={base}"),
        "--cache-dir",
        &w("build-cache"),
        "--tag",
        "127.0.0.1:1/acme/sbom:1",
        "--output",
        &image,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let layers = layers(&image_dir);
    let base_layers = layers.len() - 2;
    let copy_layer = &layers[base_layers];

    // The inventory: every Debian package at its version from the one
    // base layer that wrote the status file; pip from the COPY layer;
    // setuptools gone.
    let cache = w("layer-cache");
    let listed: Value = serde_json::from_str(&hoist_ok(&[
        "sbom",
        &image,
        "--list",
        "--json",
        "--cache-dir",
        &cache,
    ]))
    .unwrap();
    assert_eq!(listed["distro"]["id"], "debian");
    assert_eq!(listed["distro"]["version_id"], "12");
    assert!(
        listed["notes"].as_array().unwrap().is_empty(),
        "{}",
        listed["notes"]
    );
    let packages = listed["packages"].as_array().unwrap();
    let of = |kind: &str| -> BTreeMap<String, &Value> {
        packages
            .iter()
            .filter(|p| p["ecosystem"] == kind)
            .map(|p| (p["name"].as_str().unwrap().to_owned(), p))
            .collect()
    };
    let debs = of("deb");
    let found: BTreeMap<String, String> = debs
        .iter()
        .map(|(n, p)| (n.clone(), p["version"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(found, debian, "every package the base installed, exactly");
    let status_layer = debs["libc6"]["layer"].as_str().unwrap();
    assert!(layers[..base_layers].iter().any(|l| l == status_layer));
    assert!(debs.values().all(|p| p["layer"] == status_layer));
    assert!(debs.values().all(|p| p["path"] == "var/lib/dpkg/status"));
    assert_eq!(debs["libc6"]["source"]["name"], "glibc");
    assert_eq!(debs["libc6"]["source"]["version"], debian["libc6"].as_str());

    let python = of("python");
    assert_eq!(
        python.keys().collect::<Vec<_>>(),
        ["Legacy_Thing", "pip"],
        "setuptools' dist-info was deleted by a later layer"
    );
    assert_eq!(python["pip"]["version"], pip.as_str());
    assert_eq!(python["pip"]["layer"], copy_layer.as_str());
    assert_eq!(
        python["pip"]["path"],
        format!("{}/pip-{pip}.dist-info/METADATA", &dist[1..])
    );
    assert_eq!(python["Legacy_Thing"]["version"], "0.9");

    // The table, for people.
    let table = hoist_ok(&["sbom", &image, "--format", "table", "--cache-dir", &cache]);
    let pip_line = table
        .lines()
        .find(|l| l.starts_with("python") && l.contains(" pip "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        pip_line.contains(&pip) && pip_line.contains(&copy_layer[7..19]),
        "{pip_line}"
    );
    assert!(!table.contains("setuptools"), "{table}");

    // SBOMs: the same bytes twice at one SOURCE_DATE_EPOCH, valid for
    // the schemas' own validators, with the purls advisories match on.
    let spdx = work.path().join("sbom.spdx.json");
    let cdx = work.path().join("sbom.cdx.json");
    for (format, file) in [("spdx", &spdx), ("cyclonedx", &cdx)] {
        let out = sbom_at(
            "1700000000",
            &[
                &image,
                "--format",
                format,
                "--cache-dir",
                &cache,
                "--output",
                file.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
        let again = sbom_at(
            "1700000000",
            &[&image, "--format", format, "--cache-dir", &cache],
        );
        assert!(again.status.success(), "{}", text(&again.stderr));
        assert_eq!(
            again.stdout,
            std::fs::read(file).unwrap(),
            "{format} is deterministic"
        );
    }
    validate(&spdx, &cdx);

    let libc_purl = format!(
        "pkg:deb/debian/libc6@{}?arch=amd64&distro=debian-12&upstream=glibc",
        debian["libc6"].replace('+', "%2B").replace(':', "%3A")
    );
    let pip_purl = format!("pkg:pypi/pip@{pip}");
    let legacy_purl = "pkg:pypi/legacy-thing@0.9";
    let doc: Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let root = &doc["packages"][0];
    assert_eq!(root["primaryPackagePurpose"], "CONTAINER");
    let digest = root["versionInfo"].as_str().unwrap();
    assert!(image_dir.join("blobs/sha256").join(&digest[7..]).is_file());
    let purls: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap())
        .collect();
    for want in [libc_purl.as_str(), pip_purl.as_str(), legacy_purl] {
        assert!(purls.contains(&want), "{want} not in {purls:?}");
    }
    assert_eq!(purls.len(), 1 + debian.len() + 2);
    let doc: Value = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
    assert_eq!(doc["metadata"]["component"]["version"], digest);
    let purls: Vec<&str> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    for want in [libc_purl.as_str(), pip_purl.as_str(), legacy_purl] {
        assert!(purls.contains(&want), "{want} not in {purls:?}");
    }
    let pip_component = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purl"] == pip_purl.as_str())
        .unwrap();
    assert!(
        pip_component["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "hoist:layer" && p["value"] == copy_layer.as_str())
    );

    // A failed run leaves the output file as it was.
    let before = std::fs::read(&spdx).unwrap();
    let out = sbom_at(
        "not-a-number",
        &[
            &image,
            "--cache-dir",
            &cache,
            "--output",
            spdx.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("SOURCE_DATE_EPOCH"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&spdx).unwrap(), before);
}

/// A layer with one file of `size` zero bytes at `path`.
fn big_file(path: &str, size: usize) -> LayerWriter<'static> {
    let mut w = LayerWriter::new(WriteOptions::default());
    w.add_bytes(path, 0o644, vec![0u8; size]).unwrap();
    w
}

#[test]
fn hostile_record_files_are_skipped_with_a_note() {
    // BusyBox from Debian's busybox-static, then layers an attacker
    // controls: the status file swapped for a symlink to a host secret,
    // a 80 MiB status.d file, binary garbage as Python metadata.
    let base = testkit::busybox_base().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut link = LayerWriter::new(WriteOptions::default());
    link.add_symlink("var/lib/dpkg/status", "/etc/shadow")
        .unwrap();
    let mut garbage = LayerWriter::new(WriteOptions::default());
    let junk: Vec<u8> = (0..64 << 10)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    garbage
        .add_bytes(
            "usr/lib/python3/dist-packages/evil-1.0.dist-info/METADATA",
            0o644,
            junk.clone(),
        )
        .unwrap()
        .add_bytes("lib/apk/db/installed", 0o644, junk)
        .unwrap();
    let layers = vec![
        link,
        big_file("var/lib/dpkg/status.d/huge", 80 << 20),
        garbage,
    ];
    let dir = work.path().join("image");
    let built = testkit::stack_layers(&base, &dir, "v1", layers).unwrap();
    let image = built.oci_ref();
    let cache = work.path().join("cache");
    let out = hoist(&[
        "sbom",
        &image,
        "--list",
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        text(&out.stdout).trim(),
        "TYPE  NAME  VERSION  LAYER  PATH",
        "nothing is listed: busybox's status was replaced"
    );
    for want in [
        "hoist: note: /var/lib/dpkg/status (layer sha256:",
        "a symlink (to `/etc/shadow`), not followed",
        "/var/lib/dpkg/status.d/huge",
        "83886080 bytes, over the 67108864-byte limit: not read",
        "evil-1.0.dist-info/METADATA",
        "not a distribution's metadata",
        "/lib/apk/db/installed (layer sha256:",
        "no package record in it",
    ] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    assert_eq!(stderr.lines().count(), 4, "{stderr}");

    // An SBOM of it is still valid, with only the image.
    let spdx = work.path().join("x.spdx.json");
    let cdx = work.path().join("x.cdx.json");
    for (format, file) in [("spdx", &spdx), ("cyclonedx", &cdx)] {
        let out = hoist(&[
            "sbom",
            &image,
            "--quiet",
            "--format",
            format,
            "--cache-dir",
            cache.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "--quiet: {}", text(&out.stderr));
    }
    validate(&spdx, &cdx);

    // A directory as --output, and an image that is not there.
    let err = super::hoist_err(&[
        "sbom",
        &image,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--output",
        work.path().to_str().unwrap(),
    ]);
    assert!(err.contains("is a directory"), "{err}");
    let missing = format!("oci:{}:v1", work.path().join("nothing").display());
    let err = super::hoist_err(&["sbom", &missing, "--cache-dir", cache.to_str().unwrap()]);
    assert!(err.contains("nothing"), "{err}");
}
