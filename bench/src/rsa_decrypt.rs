//! Section 4f: RSA_2048 RSAES-OAEP (SHA-256) Decrypt through kmsd over gRPC against
//! aws-lc-rs decrypting alone in this process with a key of the same size, in
//! alternating rounds so both see the same machine (the goal: kmsd within 1.3x
//! of the library). kmsd decrypts with the same aws-lc-rs function, on its CPU pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Budget;
use crate::report::{Summary, Target, at_most};
use kmsd::crypto::keygen::{self, KeyPairSpec};
use kmsd_api::pb::crypto_service_client::CryptoServiceClient;
use kmsd_api::pb::{CreateKeyRequest, DecryptRequest, EncryptRequest};

/// The goal: kmsd's Decrypt p50 at most this multiple of aws-lc-rs's.
pub const DECRYPT_RATIO_MAX: f64 = 1.3;
const ALGORITHM: &str = "RSAES_OAEP_SHA_256";
/// What is sealed: a 32-byte data key, the typical use.
const PLAINTEXT: [u8; 32] = [0x42; 32];

/// Section 4f's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RsaDecryptLatency {
    /// Decrypt over gRPC (one call at a time), per call.
    pub rpc: Summary,
    /// aws-lc-rs `OaepPrivateDecryptingKey::decrypt` alone, per call.
    pub raw: Summary,
    /// Health/Check over the same connection, one call at a time, in the same rounds:
    /// what any call costs before its work.
    pub trivial: Summary,
    /// What kmsd adds to the decryption besides the RPC itself, ms:
    /// `rpc.p50_ms - trivial.p50_ms - raw.p50_ms` (the hop to the CPU pool and back,
    /// the handler).
    pub server_added_ms: f64,
    /// `rpc.p50_ms / raw.p50_ms`.
    pub ratio: f64,
}

impl RsaDecryptLatency {
    /// The section's lines of the table.
    pub fn lines(&self) -> String {
        format!(
            "RSA_2048 {ALGORITHM} Decrypt over gRPC: p50 {:.3} ms, p99 {:.3} ms (n {})\n\
             aws-lc-rs OaepPrivateDecryptingKey::decrypt alone: p50 {:.3} ms, p99 {:.3} ms (n {})\n\
             Health/Check over gRPC (the RPC alone): p50 {:.3} ms, p99 {:.3} ms (n {})\n\
             ratio (p50): {:.2}; kmsd adds {:.3} ms to the RPC and the decryption\n",
            self.rpc.p50_ms,
            self.rpc.p99_ms,
            self.rpc.n,
            self.raw.p50_ms,
            self.raw.p99_ms,
            self.raw.n,
            self.trivial.p50_ms,
            self.trivial.p99_ms,
            self.trivial.n,
            self.ratio,
            self.server_added_ms
        )
    }

    /// The section's target.
    pub fn targets(&self) -> Vec<Target> {
        vec![at_most(
            "RSA_2048 OAEP Decrypt p50 / aws-lc-rs alone".into(),
            self.ratio,
            DECRYPT_RATIO_MAX,
        )]
    }
}

/// Creates an RSA_2048 encryption key, seals a data key under it, then alternates
/// rounds of aws-lc-rs decrypting alone and kmsd's Decrypt.
pub async fn rsa_decrypt_latency(
    channel: &Channel,
    budget: Budget,
) -> Result<RsaDecryptLatency, String> {
    let key_id = crate::create_key(
        channel,
        CreateKeyRequest {
            key_spec: "RSA_2048".into(),
            key_usage: "ENCRYPT/DECRYPT".into(),
            description: "kmsd-bench RSA decryption".into(),
            ..Default::default()
        },
    )
    .await?;
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let ciphertext = crypto
        .encrypt(EncryptRequest {
            key_id: key_id.clone(),
            plaintext: PLAINTEXT.to_vec(),
            algorithm: ALGORITHM.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("Encrypt: {s:?}"))?
        .into_inner()
        .ciphertext_blob;
    let request = DecryptRequest {
        key_id,
        ciphertext_blob: ciphertext,
        algorithm: ALGORITHM.into(),
        ..Default::default()
    };
    // The first call parses and caches the key, as on a warm server.
    crypto
        .decrypt(request.clone())
        .await
        .map_err(|s| format!("Decrypt: {s:?}"))?;

    let (key, sealed) = tokio::task::spawn_blocking(library_key)
        .await
        .map_err(|e| e.to_string())??;
    let key = Arc::new(key);
    let samples = budget.count(300);
    let per_round = samples.div_ceil(3);
    let mut health = HealthClient::new(channel.clone());
    let (mut rpc, mut raw, mut trivial) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        for _ in 0..per_round {
            let started = Instant::now();
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(|s| format!("Health/Check: {s:?}"))?;
            trivial.push(started.elapsed());
        }
        let (key, sealed) = (Arc::clone(&key), sealed.clone());
        let round_raw =
            tokio::task::spawn_blocking(move || library_round(&key, &sealed, per_round))
                .await
                .map_err(|e| e.to_string())??;
        raw.extend(round_raw);
        for _ in 0..per_round {
            let started = Instant::now();
            let opened = crypto
                .decrypt(request.clone())
                .await
                .map_err(|s| format!("Decrypt: {s:?}"))?
                .into_inner();
            rpc.push(started.elapsed());
            if opened.plaintext != PLAINTEXT {
                return Err("Decrypt answered another plaintext".into());
            }
        }
    }
    let (rpc, raw, trivial) = (Summary::of(&rpc), Summary::of(&raw), Summary::of(&trivial));
    Ok(RsaDecryptLatency {
        ratio: rpc.p50_ms / raw.p50_ms,
        server_added_ms: rpc.p50_ms - trivial.p50_ms - raw.p50_ms,
        rpc,
        raw,
        trivial,
    })
}

/// A fresh RSA_2048 key made as kmsd makes keys, parsed by aws-lc-rs, and a
/// ciphertext of [`PLAINTEXT`] under it.
fn library_key() -> Result<(OaepPrivateDecryptingKey, Vec<u8>), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let pair = keygen::generate(KeyPairSpec::Rsa2048).map_err(|e| err(&e))?;
    let private = PrivateDecryptingKey::from_pkcs8(pair.private_key_der()).map_err(|e| err(&e))?;
    let public = OaepPublicEncryptingKey::new(private.public_key()).map_err(|e| err(&e))?;
    let mut sealed = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &PLAINTEXT, &mut sealed, None)
        .map_err(|e| err(&e))?
        .len();
    sealed.truncate(len);
    let key = OaepPrivateDecryptingKey::new(private).map_err(|e| err(&e))?;
    Ok((key, sealed))
}

/// `n` decryptions by aws-lc-rs alone, each timed.
fn library_round(
    key: &OaepPrivateDecryptingKey,
    sealed: &[u8],
    n: usize,
) -> Result<Vec<Duration>, String> {
    let mut out = vec![0u8; key.min_output_size()];
    (0..n)
        .map(|_| {
            let started = Instant::now();
            let opened = key
                .decrypt(&OAEP_SHA256_MGF1SHA256, sealed, &mut out, None)
                .map_err(|e| format!("aws-lc-rs decrypt: {e}"))?;
            let took = started.elapsed();
            if opened != PLAINTEXT {
                return Err("aws-lc-rs opened another plaintext".into());
            }
            Ok(took)
        })
        .collect()
}
