//! Micro-benchmarks of the hot paths every copied byte goes through:
//! hashing with the streaming verifier, and parsing manifests.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use oci_model::{Descriptor, Digest, Manifest};
use registry_client::{Checkpoint, VerifiedStream};

fn verified_stream(c: &mut Criterion) {
    const SIZE: usize = 64 << 20;
    const CHUNK: usize = 256 << 10;
    let data = Bytes::from(vec![7u8; SIZE]);
    let desc = Descriptor {
        media_type: oci_model::media_type::OCI_LAYER_GZIP.into(),
        digest: Digest::of(&data),
        size: SIZE as u64,
        platform: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(20);
    group.bench_function("verified_stream_64MiB", |b| {
        b.iter(|| {
            let chunks: Vec<_> = (0..SIZE / CHUNK)
                .map(|i| Ok(data.slice(i * CHUNK..(i + 1) * CHUNK)))
                .collect();
            let inner = Box::pin(futures_util::stream::iter(chunks));
            let mut s =
                VerifiedStream::new(inner, desc.clone(), Checkpoint::default(), "bench", "bench");
            rt.block_on(async {
                let mut n = 0;
                while let Some(c) = s.next().await {
                    n += c.unwrap().len();
                }
                assert_eq!(n, SIZE);
            });
        })
    });
    group.finish();
}

fn parse_manifest(c: &mut Criterion) {
    let layers: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":{i},"digest":"{}"}}"#,
                Digest::of(format!("{i}").as_bytes())
            )
        })
        .collect();
    let json = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[{}]}}"#,
        Digest::of(b"{}"),
        layers.join(",")
    );
    c.bench_function("parse_manifest_50_layers", |b| {
        b.iter(|| Manifest::from_bytes(json.clone().into_bytes(), None).unwrap())
    });
}

criterion_group!(benches, verified_stream, parse_manifest);
criterion_main!(benches);
