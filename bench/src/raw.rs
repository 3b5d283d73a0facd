//! Section 1, the ceiling: what this machine can do without any RPC, timed in the
//! bench process with the library's own functions (the server is idle meanwhile).

use std::hint::black_box;
use std::time::{Duration, Instant};

use kmsd::crypto::blob;
use kmsd::crypto::keygen::{self, KeyFormat, KeyPairSpec};
use kmsd::crypto::sealer::{self, SealPurpose};
use kmsd::crypto::secret::MasterKeyMaterial;

use crate::report::{KeygenCeiling, StepCost};

/// Generates `spec` on one thread until `budget` has passed and at least `min` pairs
/// were made. Returns (pairs, elapsed).
fn single(spec: KeyPairSpec, budget: Duration, min: usize) -> Result<(usize, Duration), String> {
    let start = Instant::now();
    let mut n = 0;
    while n < min || start.elapsed() < budget {
        black_box(keygen::generate(spec).map_err(|e| e.to_string())?);
        n += 1;
    }
    Ok((n, start.elapsed()))
}

/// Generates `spec` on `threads` threads for `budget`; every thread finishes the pair
/// it is on, and the rate counts all pairs over the time until the last one ended.
pub fn all_cores(
    spec: KeyPairSpec,
    threads: usize,
    budget: Duration,
) -> Result<(usize, Duration), String> {
    let start = Instant::now();
    let counts: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut n = 0;
                    while n == 0 || start.elapsed() < budget {
                        black_box(keygen::generate(spec).map_err(|e| e.to_string())?);
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a keygen thread panicked".into()))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok((total, elapsed))
}

/// Raw generation rate of `spec`, one thread and all cores, each for `budget`.
pub fn keygen_ceiling(
    spec: KeyPairSpec,
    threads: usize,
    budget: Duration,
) -> Result<KeygenCeiling, String> {
    let (n1, t1) = single(spec, budget, 3)?;
    let (nall, tall) = all_cores(spec, threads, budget)?;
    let single_s = t1.as_secs_f64() / n1 as f64;
    Ok(KeygenCeiling {
        spec: spec.as_str().to_owned(),
        single_ms: single_s * 1e3,
        single_per_s: 1.0 / single_s,
        all_cores_per_s: nall as f64 / tall.as_secs_f64(),
        threads,
        samples: n1 + nall,
    })
}

/// Mean time of `f` in microseconds over `budget` (at least 100 runs).
fn time_us(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u32;
    while n < 100 || start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// The per-call crypto of the serving path, each timed alone.
pub fn step_costs(budget: Duration) -> Result<Vec<StepCost>, String> {
    let material = MasterKeyMaterial::generate().map_err(|e| e.to_string())?;
    let root = MasterKeyMaterial::generate().map_err(|e| e.to_string())?;
    let rsa = keygen::generate(KeyPairSpec::Rsa4096).map_err(|e| e.to_string())?;
    let ec = keygen::generate(KeyPairSpec::EcP256).map_err(|e| e.to_string())?;
    let version = "0b6d1c52-8f36-4c1b-9f61-3f9d1c2a7e10";
    let mut steps = Vec::new();
    let mut step = |name: String, us: f64| steps.push(StepCost { name, us });

    for (label, pair) in [("RSA_4096", &rsa), ("EC_P256", &ec)] {
        let der = pair.private_key_pkcs8(KeyFormat::Der);
        let sealed = sealer::seal_salted(&material, SealPurpose::PlainCiphertext, b"", &der)
            .map_err(|e| e.to_string())?;
        step(
            format!(
                "seal {label} PKCS#8 DER ({} B): salted HKDF + AES-GCM",
                der.len()
            ),
            time_us(budget, || {
                black_box(
                    sealer::seal_salted(&material, SealPurpose::PlainCiphertext, b"", &der).ok(),
                );
            }),
        );
        step(
            format!("open {label} PKCS#8 DER"),
            time_us(budget, || {
                black_box(
                    sealer::open_salted(
                        &material,
                        SealPurpose::PlainCiphertext,
                        &sealed.iv,
                        b"",
                        &sealed.ciphertext,
                    )
                    .ok(),
                );
            }),
        );
        step(
            format!("seal {label} as an Advance blob"),
            time_us(budget, || {
                black_box(blob::seal_advance(&material, version, b"", &der).ok());
            }),
        );
        step(
            format!("encode {label} private + public key as PEM"),
            time_us(budget, || {
                black_box(pair.private_key_pkcs8(KeyFormat::Pem));
                black_box(pair.public_key(KeyFormat::Pem));
            }),
        );
    }
    let at_rest = sealer::seal(
        &root,
        SealPurpose::KeyMaterialAtRest,
        b"aad",
        material.expose_secret(),
    )
    .map_err(|e| e.to_string())?;
    step(
        "open a version's material under the root key".into(),
        time_us(budget, || {
            black_box(
                sealer::open(
                    &root,
                    SealPurpose::KeyMaterialAtRest,
                    &at_rest.iv,
                    b"aad",
                    &at_rest.ciphertext,
                )
                .ok(),
            );
        }),
    );
    Ok(steps)
}

/// The data path without the RPC: the core's calls a Generate call makes, timed in
/// this process on its own [`Kms`](kmsd::kms::Kms) (a fresh store in `dir`, built as
/// the server builds it), on the bench's runtime. Shows how much of a call is the
/// store, the crypto and the hand-offs.
pub async fn data_path(dir: &std::path::Path, budget: Duration) -> Result<Vec<StepCost>, String> {
    use std::sync::Arc;

    use kmsd::api::Call;
    use kmsd::call::Caller;
    use kmsd::clock::SystemClock;
    use kmsd::config::Config;
    use kmsd::kms::Kms;
    use kmsd_api::pb::{CreateKeyRequest, GenerateDataKeyPairWithoutPlaintextRequest};

    use kmsd::keypool::PoolConfig;

    let err = |e: &dyn std::fmt::Display| e.to_string();
    let config = Config {
        data_dir: dir.to_owned(),
        pool: PoolConfig::default(),
        ..Config::default()
    };
    let kms = Kms::open(&config, Arc::new(SystemClock))
        .await
        .map_err(|e| err(&e))?;
    let caller = Caller::internal();
    let key_id = CreateKeyRequest::default()
        .call(&kms, &caller)
        .await
        .map_err(|e| err(&e))?
        .key_metadata
        .map(|meta| meta.key_id)
        .unwrap_or_default();
    let registry = kms.registry().clone();
    let record = registry.resolve(&key_id).await.map_err(|e| err(&e))?;
    let pool = kms.pool().clone();
    pool.wait_primed().await;

    async fn time_async<F, Fut>(budget: Duration, mut f: F) -> Result<f64, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let start = Instant::now();
        let mut n = 0u32;
        while n < 100 || start.elapsed() < budget {
            f().await?;
            n += 1;
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(n))
    }

    let mut steps = Vec::new();
    steps.push(StepCost {
        name: "in process: KeyRegistry::resolve_usable (store read)".into(),
        us: time_async(budget, || async {
            registry
                .resolve_usable(&key_id)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?,
    });
    steps.push(StepCost {
        name: "in process: KeyRegistry::version_material (read + open)".into(),
        us: time_async(budget, || async {
            registry
                .version_material(&key_id, &record.initial_version_id)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?,
    });
    // A warm take: wait (untimed) until a pair is ready, so the refill is not timed.
    let mut took = Duration::ZERO;
    for _ in 0..200 {
        while pool.ready(KeyPairSpec::EcP256) == 0 {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        let start = Instant::now();
        black_box(pool.take(KeyPairSpec::EcP256).await.map_err(|e| err(&e))?);
        took += start.elapsed();
    }
    steps.push(StepCost {
        name: "in process: KeyPairPool::take EC_P256 (warm)".into(),
        us: took.as_secs_f64() * 1e6 / 200.0,
    });
    // The whole call, paced the same way (each finds a pair ready).
    let mut took = Duration::ZERO;
    for _ in 0..500 {
        while pool.ready(KeyPairSpec::EcP256) == 0 {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        let start = Instant::now();
        let request = GenerateDataKeyPairWithoutPlaintextRequest {
            key_id: key_id.clone(),
            key_pair_spec: "EC_P256".into(),
            key_format: "DER".into(),
            ..Default::default()
        };
        let generated = request.call(&kms, &caller).await.map_err(|e| err(&e))?;
        took += start.elapsed();
        black_box(generated);
    }
    steps.push(StepCost {
        name: "in process: the GenerateDataKeyPairWithoutPlaintext handler EC_P256 (whole call)"
            .into(),
        us: took.as_secs_f64() * 1e6 / 500.0,
    });
    kms.shutdown().await;
    Ok(steps)
}

/// One spec's Sign without the RPC: the whole Sign handler of a 256-byte message (key
/// record and parsed key cached, as in a warm server) against the library signing the
/// same message alone.
#[derive(Clone, Copy, Debug)]
pub struct InProcessSign {
    /// The key's spec.
    pub spec: KeyPairSpec,
    /// The whole Sign handler, us.
    pub handler_us: f64,
    /// The library alone (ring for EC_P256 and ED25519, aws-lc-rs for ML_DSA_65), us.
    pub library_us: f64,
}

/// The specs [`sign_path`] measures, with their algorithm.
pub const IN_PROCESS_SIGN: [(KeyPairSpec, &str); 3] = [
    (KeyPairSpec::EcP256, "ECDSA_SHA_256"),
    (KeyPairSpec::MlDsa65, "ML_DSA"),
    (KeyPairSpec::Ed25519, "ED25519"),
];

/// Sign without the RPC for each of [`IN_PROCESS_SIGN`], in this process on its own
/// [`Kms`](kmsd::kms::Kms) (a fresh store in `dir`); see [`InProcessSign`].
pub async fn sign_path(
    dir: &std::path::Path,
    budget: Duration,
) -> Result<Vec<InProcessSign>, String> {
    use std::sync::Arc;

    use kmsd::api::Call;
    use kmsd::call::Caller;
    use kmsd::clock::SystemClock;
    use kmsd::config::Config;
    use kmsd::kms::Kms;
    use kmsd_api::pb::{CreateKeyRequest, SignRequest};

    use kmsd::keypool::PoolConfig;

    const MESSAGE: [u8; 256] = [0x42; 256];
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let config = Config {
        data_dir: dir.to_owned(),
        pool: PoolConfig::off(),
        ..Config::default()
    };
    let kms = Kms::open(&config, Arc::new(SystemClock))
        .await
        .map_err(|e| err(&e))?;
    let caller = Caller::internal();
    let mut handler = Vec::new();
    for (spec, algorithm) in IN_PROCESS_SIGN {
        let create = CreateKeyRequest {
            key_spec: spec.as_str().into(),
            ..Default::default()
        };
        let key_id = create
            .call(&kms, &caller)
            .await
            .map_err(|e| err(&e))?
            .key_metadata
            .map(|meta| meta.key_id)
            .unwrap_or_default();
        let request = SignRequest {
            key_id,
            algorithm: algorithm.into(),
            message_type: "RAW".into(),
            message: MESSAGE.to_vec(),
            ..Default::default()
        };
        let mut n = 0u32;
        let start = Instant::now();
        while n < 100 || start.elapsed() < budget {
            let request = request.clone();
            black_box(request.call(&kms, &caller).await.map_err(|e| err(&e))?);
            n += 1;
        }
        handler.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    kms.shutdown().await;

    let mut measured = Vec::new();
    for ((spec, _), handler_us) in IN_PROCESS_SIGN.into_iter().zip(handler) {
        let library_us = library_sign_us(spec, &MESSAGE, budget)?;
        measured.push(InProcessSign {
            spec,
            handler_us,
            library_us,
        });
    }
    Ok(measured)
}

/// The library kmsd signs `spec` messages with, alone, on a fresh key: us per signature.
pub fn library_sign_us(spec: KeyPairSpec, message: &[u8], budget: Duration) -> Result<f64, String> {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let pair = keygen::generate(spec).map_err(|e| err(&e))?;
    let pkcs8 = pair.private_key_der();
    let rng = ring::rand::SystemRandom::new();
    match spec {
        KeyPairSpec::EcP256 => {
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
                .map_err(|e| err(&e))?;
            Ok(time_us(budget, || {
                black_box(key.sign(&rng, message).ok());
            }))
        }
        KeyPairSpec::Ed25519 => {
            // kmsd keeps PKCS#8 v1 (the seed only), as it signs: ring reads it this way.
            let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|e| err(&e))?;
            Ok(time_us(budget, || {
                black_box(key.sign(message));
            }))
        }
        KeyPairSpec::MlDsa44 | KeyPairSpec::MlDsa65 | KeyPairSpec::MlDsa87 => {
            let algorithm = spec.ml_dsa_signing().ok_or("ML-DSA")?;
            let key = aws_lc_rs::signature::PqdsaKeyPair::from_pkcs8(algorithm, pkcs8)
                .map_err(|e| err(&e))?;
            let mut signature = vec![0u8; algorithm.signature_len()];
            Ok(time_us(budget, || {
                black_box(key.sign(message, &mut signature).ok());
            }))
        }
        other => Err(format!("no library-alone signing for {other}")),
    }
}
