//! `hoist base debian`: base images from real bookworm packages, used as
//! function bases; hostile packages refused.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use testkit::Registry;

use super::peer::function_dir;
use super::{hoist, hoist_ok};

/// The .deb cache shared by this module's tests and runs.
fn deb_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-base-cache")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The bytes of `path` in the gzip layer `digest` of the layout `dir`.
fn file_in_layer(dir: &Path, digest: &str, path: &str) -> Option<Vec<u8>> {
    let blob = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap());
    let mut tar = tar::Archive::new(gz);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new(path) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return Some(bytes);
        }
    }
    None
}

fn build_slim(out: &Path) -> Value {
    let layout = format!("oci:{}:slim", out.display());
    let stdout = hoist_ok(&[
        "--json",
        "base",
        "debian",
        "--preset",
        "slim",
        "--output",
        &layout,
        "--cache-dir",
        deb_cache().to_str().unwrap(),
    ]);
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn slim_preset_is_reproducible_and_hosts_functions() {
    let first = tempfile::tempdir().unwrap();
    let built = build_slim(first.path());
    let digest = built["digest"].as_str().unwrap();
    let packages = built["packages"].as_array().unwrap();
    let names: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in [
        "python3.11-minimal",
        "libpython3.11-stdlib",
        "libc6",
        "dash",
        "base-files",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    // Only maintainer scripts need these.
    assert!(
        !names.contains(&"dpkg") && !names.contains(&"perl-base"),
        "{names:?}"
    );

    // The dpkg status lists every package at its version, installed.
    let layers = built["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{built}");
    let layer0 = layers[0]["digest"].as_str().unwrap();
    let status = file_in_layer(first.path(), layer0, "var/lib/dpkg/status").expect("dpkg status");
    let status = String::from_utf8(status).unwrap();
    for p in packages {
        let (name, version) = (p["name"].as_str().unwrap(), p["version"].as_str().unwrap());
        let entry = format!("Package: {name}\nStatus: install ok installed\n");
        let at = status
            .find(&entry)
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        let paragraph = status[at..].split("\n\n").next().unwrap();
        assert!(
            paragraph.contains(&format!("\nVersion: {version}\n")),
            "{paragraph}"
        );
    }
    let passwd = file_in_layer(first.path(), layer0, "etc/passwd").unwrap();
    assert!(text(&passwd).contains("app:x:1000:1000:"));

    // Hash-based, unchecked bytecode (PEP 552 flags word 0b01).
    assert_eq!(built["bytecode"]["status"], "compiled", "{built}");
    assert!(
        built["bytecode"]["modules"].as_u64().unwrap() > 400,
        "{built}"
    );
    let layer1 = layers[1]["digest"].as_str().unwrap();
    let pyc = file_in_layer(
        first.path(),
        layer1,
        "usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
    )
    .expect("bytecode of os");
    assert_eq!(u32::from_le_bytes(pyc[4..8].try_into().unwrap()), 1);

    // The same package versions give the same image.
    let second = tempfile::tempdir().unwrap();
    let again = build_slim(second.path());
    assert_eq!(again["digest"], built["digest"]);
    assert_eq!(again["downloaded"], 0, "{again}");

    // Python runs in it, standard library extensions included.
    let image = format!("oci:{}:slim", first.path().display());
    let run_cache = tempfile::tempdir().unwrap();
    let out = hoist(&[
        "run",
        &image,
        "--cache-dir",
        run_cache.path().to_str().unwrap(),
        "--",
        "python3",
        "-c",
        "import sqlite3, ssl, json, sys; print(sys.version_info[:2], sqlite3.sqlite_version > '3', json.dumps(ssl.OPENSSL_VERSION[:7]))",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "(3, 11) True \"OpenSSL\"");

    // A function built on it runs.
    let f = function_dir(
        "import json\n\ndef handler(inputs):\n    return {\"y\": json.dumps(inputs)}\n",
        None,
    );
    let fn_out = tempfile::tempdir().unwrap();
    let fn_layout = format!("oci:{}:fn", fn_out.path().display());
    let build_cache = tempfile::tempdir().unwrap();
    let stdout = hoist_ok(&[
        "--json",
        "build",
        f.path().to_str().unwrap(),
        "--base",
        &image,
        "--tag",
        "127.0.0.1:1/fn/on-debian:v1",
        "--output",
        &fn_layout,
        "--cache-dir",
        build_cache.path().to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["stdlib_bytecode"], true, "{report}");
    assert_eq!(report["base_digest"], digest, "{report}");
    let inputs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(inputs.path(), r#"{"x": 1}"#).unwrap();
    let out = hoist(&[
        "invoke",
        &fn_layout,
        "--inputs",
        inputs.path().to_str().unwrap(),
        "--cache-dir",
        run_cache.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"y": "{\"x\": 1}"}));

    // Pushed to a registry under two names, digest unchanged.
    let registry = Registry::start().await.unwrap();
    let (a, b) = (
        format!("{}/base/python:3.11-slim", registry.host()),
        format!("{}/base/python:slim", registry.host()),
    );
    let stdout = hoist_ok(&[
        "base",
        "debian",
        "--preset",
        "slim",
        "--tag",
        &a,
        "--tag",
        &b,
        "--cache-dir",
        deb_cache().to_str().unwrap(),
    ]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, name) in lines.iter().zip([&a, &b]) {
        assert!(
            line.starts_with(name.as_str()) && line.ends_with(&format!("@{digest}")),
            "{stdout}"
        );
    }
}

/// A tar of `(name, kind, content or link target)`: `f` file, `l` symlink.
fn tar(entries: &[(&str, char, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        // Written raw, so that `..` reaches the reader.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if *kind == 'l' {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_link_name(data).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// A .deb of package `evil` version 1 with `data` as its files.
fn deb(data: &[(&str, char, &str)]) -> Vec<u8> {
    let control = tar(&[(
        "./control",
        'f',
        "Package: evil\nVersion: 1\nArchitecture: all\n",
    )]);
    let mut out = b"!<arch>\n".to_vec();
    for (name, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", control),
        ("data.tar", tar(data)),
    ] {
        out.extend(
            format!(
                "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                0,
                0,
                0,
                100644,
                bytes.len()
            )
            .as_bytes(),
        );
        out.extend(&bytes);
        if bytes.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

#[test]
fn hostile_packages_are_refused_and_nothing_is_written() {
    let work = tempfile::tempdir().unwrap();
    let lists = work.path().join("lists");
    let cache = work.path().join("cache");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::create_dir_all(cache.join("debs")).unwrap();
    let index = |sha: &str| {
        let paragraph = format!(
            "Package: evil\nVersion: 1\nArchitecture: all\nFilename: pool/e/evil_1_all.deb\nSize: 1\nSHA256: {sha}\n"
        );
        std::fs::write(
            lists.join("example_dists_x_main_binary-amd64_Packages"),
            paragraph,
        )
        .unwrap();
    };
    let out = work.path().join("out");
    let layout = format!("oci:{}:evil", out.display());
    let attempt = || {
        hoist(&[
            "base",
            "debian",
            "--packages",
            "evil",
            "--lists-dir",
            lists.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--output",
            &layout,
            "--no-bytecode",
        ])
    };
    for (data, want) in [
        (
            deb(&[("./../../etc/cron.d/evil", 'f', "* * * * * root sh\n")]),
            "climbs out",
        ),
        (
            deb(&[("./etc", 'l', "/etc"), ("./etc/cron.d/evil", 'f', "x")]),
            "symlink",
        ),
        (
            deb(&[("./usr/lib/x", 'l', "../../../../../tmp")]),
            "climbs out",
        ),
    ] {
        let sha = hex::encode(Sha256::digest(&data));
        std::fs::write(cache.join("debs").join(format!("{sha}.deb")), &data).unwrap();
        index(&sha);
        let result = attempt();
        assert!(!result.status.success());
        let err = text(&result.stderr);
        assert!(
            err.contains("package evil") && err.contains(want),
            "want {want}: {err}"
        );
        assert!(!out.exists(), "{err}: the output was written");
        let tmp = cache.join("tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "{err}: work left in {}", tmp.display());
    }

    // A file whose hash is not the index's.
    let benign = deb(&[("./usr/share/evil", 'f', "x")]);
    let claimed = "ab".repeat(32);
    std::fs::write(cache.join("debs").join(format!("{claimed}.deb")), &benign).unwrap();
    index(&claimed);
    let result = attempt();
    let err = text(&result.stderr);
    assert!(
        err.contains("package evil=1: SHA256") && err.contains(&claimed),
        "{err}"
    );
    assert!(!out.exists());

    // An unknown package is a named error before anything is fetched.
    let result = hoist(&[
        "base",
        "debian",
        "--packages",
        "no-such-package",
        "--lists-dir",
        lists.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--output",
        &layout,
        "--no-bytecode",
    ]);
    assert!(text(&result.stderr).contains("unknown package no-such-package for amd64"));
}
