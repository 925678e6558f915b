//! Lookups in a big imported database: 200,000 advisories over 20,000
//! PyPI packages and 5,000 Debian source packages (about the size of
//! osv.dev's PyPI and Debian exports together), imported once from
//! osv-scanner's `<ecosystem>/all.zip` layout; then `Database::check` for
//! one package, which reads that package's file only.
//!
//! `cargo bench -p advisory-db --bench lookup`

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
#![allow(
    clippy::print_stderr,
    reason = "the import time is reported beside criterion's output"
)]

use std::io::Write;
use std::time::Instant;

use advisory_db::{Database, Limits, Package, import};
use criterion::{Criterion, criterion_group, criterion_main};

const PYPI_PACKAGES: usize = 20_000;
const DEBIAN_PACKAGES: usize = 5_000;
const ADVISORIES: usize = 200_000;

fn write_zip(path: &std::path::Path, records: impl Iterator<Item = (String, String)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, json) in records {
        z.start_file(name, options).unwrap();
        z.write_all(json.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

fn lookups(c: &mut Criterion) {
    let src = tempfile::tempdir().unwrap();
    let pypi = (0..ADVISORIES * 4 / 5).map(|i| {
        let id = format!("GHSA-{i:08}");
        let json = format!(
            r#"{{"id":"{id}","aliases":["CVE-2024-{i}"],"summary":"synthetic advisory {i}","database_specific":{{"severity":"HIGH"}},
"affected":[{{"package":{{"ecosystem":"PyPI","name":"Package_{p}"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"{m}.0"}},{{"fixed":"{m}.{f}.1"}}]}}]}}]}}"#,
            p = i % PYPI_PACKAGES,
            m = i % 7,
            f = i % 13,
        );
        (format!("{id}.json"), json)
    });
    write_zip(&src.path().join("PyPI/all.zip"), pypi);
    let debian = (0..ADVISORIES / 5).map(|i| {
        let id = format!("DEBIAN-CVE-2024-{i:06}");
        let json = format!(
            r#"{{"id":"{id}","severity":[{{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}}],
"affected":[{{"package":{{"ecosystem":"Debian:12","name":"src{p}"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"1.{f}-1+deb12u1"}}]}}]}}]}}"#,
            p = i % DEBIAN_PACKAGES,
            f = i % 11,
        );
        (format!("{id}.json"), json)
    });
    write_zip(&src.path().join("Debian/all.zip"), debian);

    let store = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let meta = import(src.path(), store.path(), &Limits::default()).unwrap();
    eprintln!(
        "import of {} advisories: {:.1} s",
        meta.ecosystems.values().map(|c| c.advisories).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    let db = Database::open(store.path()).unwrap();

    let mut group = c.benchmark_group("lookup");
    let pypi = Package {
        ecosystem: "PyPI".into(),
        name: "package-1234".into(),
        version: "3.5".into(),
        ..Package::default()
    };
    assert!(!db.check(&pypi).unwrap().is_empty());
    group.bench_function("pypi_check_8_advisories", |b| {
        b.iter(|| db.check(&pypi).unwrap())
    });
    let deb = Package {
        ecosystem: "Debian:12".into(),
        name: "libsrc42".into(),
        version: "1.5-1".into(),
        source_name: Some("src42".into()),
        source_version: None,
    };
    assert!(!db.check(&deb).unwrap().is_empty());
    group.bench_function("debian_check_8_advisories", |b| {
        b.iter(|| db.check(&deb).unwrap())
    });
    let missing = Package {
        name: "no-such-package".into(),
        ..pypi.clone()
    };
    group.bench_function("pypi_check_unknown_package", |b| {
        b.iter(|| db.check(&missing).unwrap())
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
