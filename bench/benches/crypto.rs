//! Criterion benches of the per-call crypto, so a regression shows up in review:
//! the sealer (plain and Advance forms, and the at-rest open of a version's material),
//! each spec's generation, and the PEM/DER encodings.
//!
//! ```sh
//! cargo bench -p kmsd-bench --bench crypto          # everything (RSA_4096 generation takes a while)
//! cargo bench -p kmsd-bench --bench crypto -- seal  # only the sealer
//! ```
//!
//! End-to-end numbers (the RPC path, the pool, the throttle) come from
//! `cargo run --release -p kmsd-bench`; see `docs/performance.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kmsd::crypto::blob;
use kmsd::crypto::keygen::{self, KeyFormat, KeyPair, KeyPairSpec};
use kmsd::crypto::sealer::{self, SealPurpose};
use kmsd::crypto::secret::MasterKeyMaterial;

const VERSION_ID: &str = "0b6d1c52-8f36-4c1b-9f61-3f9d1c2a7e10";

fn pair(spec: KeyPairSpec) -> KeyPair {
    keygen::generate(spec).expect("key generation")
}

fn sealer(c: &mut Criterion) {
    let material = MasterKeyMaterial::generate().expect("material");
    let mut group = c.benchmark_group("seal");
    for spec in [KeyPairSpec::EcP256, KeyPairSpec::Rsa4096] {
        let der = pair(spec).private_key_pkcs8(KeyFormat::Der);
        group.throughput(Throughput::Bytes(der.len() as u64));
        group.bench_with_input(BenchmarkId::new("plain", spec), &der, |b, der| {
            b.iter(|| {
                sealer::seal_salted(&material, SealPurpose::PlainCiphertext, b"", black_box(der))
            })
        });
        let sealed =
            sealer::seal_salted(&material, SealPurpose::PlainCiphertext, b"", &der).unwrap();
        group.bench_with_input(BenchmarkId::new("open", spec), &sealed, |b, s| {
            b.iter(|| {
                sealer::open_salted(
                    &material,
                    SealPurpose::PlainCiphertext,
                    &s.iv,
                    b"",
                    black_box(&s.ciphertext),
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("advance", spec), &der, |b, der| {
            b.iter(|| blob::seal_advance(&material, VERSION_ID, b"", black_box(der)))
        });
        let advance = blob::seal_advance(&material, VERSION_ID, b"", &der).unwrap();
        group.bench_with_input(BenchmarkId::new("advance_open", spec), &advance, |b, a| {
            b.iter(|| {
                let parsed = blob::parse(black_box(a)).unwrap();
                blob::open_advance(&material, &parsed, b"")
            })
        });
    }
    // What every data key pair call does before sealing: open the version's material.
    let root = MasterKeyMaterial::generate().expect("root");
    let at_rest = sealer::seal(
        &root,
        SealPurpose::KeyMaterialAtRest,
        b"kmsd/v1/key-material",
        material.expose_secret(),
    )
    .unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("material_at_rest_open", |b| {
        b.iter(|| {
            sealer::open(
                &root,
                SealPurpose::KeyMaterialAtRest,
                &at_rest.iv,
                b"kmsd/v1/key-material",
                black_box(&at_rest.ciphertext),
            )
        })
    });
    group.finish();
}

fn generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    for spec in KeyPairSpec::ALL {
        if spec.is_rsa() {
            // Hundreds of ms a pair, with a wide spread (the prime search): few samples,
            // a longer window.
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(match spec {
                KeyPairSpec::Rsa2048 => 5,
                KeyPairSpec::Rsa3072 => 15,
                _ => 30,
            }));
        } else {
            group.sample_size(100);
            group.measurement_time(Duration::from_secs(3));
        }
        group.bench_function(BenchmarkId::from_parameter(spec), |b| {
            b.iter(|| keygen::generate(black_box(spec)))
        });
    }
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for spec in KeyPairSpec::DATA_KEY_PAIRS {
        let kp = pair(spec);
        for format in [KeyFormat::Der, KeyFormat::Pem] {
            group.bench_function(BenchmarkId::new(format!("private_{format}"), spec), |b| {
                b.iter(|| black_box(&kp).private_key_pkcs8(format))
            });
            group.bench_function(BenchmarkId::new(format!("public_{format}"), spec), |b| {
                b.iter(|| black_box(&kp).public_key(format))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, sealer, generation, encoding);
criterion_main!(benches);
