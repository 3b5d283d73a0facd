//! End-to-end tests of ML-DSA and Ed25519 master keys over real gRPC: CreateKey from
//! the pool, DescribeKey and ListKeys, GetPublicKey's SPKI (the LAMPS and RFC 8410
//! OIDs; OpenSSL parses Ed25519's), Sign and Verify with `RAW` and `EXTERNAL_MU` checked
//! against implementations other than the one that signed, tampering, and the
//! refusals of other message types and oversized messages.

use kmsd::crypto::keygen::KeyPairSpec;
use kmsd::crypto::ml_dsa::external_mu;
use ml_dsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use tonic::Code;

use crate::signing::openssl;
use crate::support::pb::*;
use crate::support::*;

const MESSAGE: &[u8] = b"kmsd e2e: firmware image 1.2.3, signed to outlast RSA";

async fn create(server: &TestServer, spec: &str) -> KeyMetadata {
    server
        .management()
        .create_key(CreateKeyRequest {
            key_spec: spec.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("CreateKey {spec}: {status:?}"))
        .into_inner()
        .key_metadata
        .expect("KeyMetadata")
}

async fn sign(
    server: &TestServer,
    key_id: &str,
    algorithm: &str,
    message_type: &str,
    message: &[u8],
) -> Result<SignResponse, tonic::Status> {
    server
        .crypto()
        .sign(SignRequest {
            key_id: key_id.into(),
            algorithm: algorithm.into(),
            message_type: message_type.into(),
            message: message.to_vec(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn verify(
    server: &TestServer,
    key_id: &str,
    algorithm: &str,
    message_type: &str,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, tonic::Status> {
    server
        .crypto()
        .verify(VerifyRequest {
            key_id: key_id.into(),
            algorithm: algorithm.into(),
            message_type: message_type.into(),
            message: message.to_vec(),
            signature: signature.to_vec(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().value)
}

/// The SPKI DER of a PEM `PUBLIC KEY`.
fn spki_der(pem: &str) -> Vec<u8> {
    let (label, der) = p256::pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(label, "PUBLIC KEY");
    der
}

/// Whether ml-dsa (RustCrypto, not the aws-lc-rs that signs RAW) accepts `signature`
/// of `message` under the SPKI, pure ML-DSA with the empty context.
fn ml_dsa_verifies(spec: KeyPairSpec, spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    fn check<P: ml_dsa::MlDsaParams>(spki: &[u8], message: &[u8], signature: &[u8]) -> bool
    where
        ml_dsa::VerifyingKey<P>: p256::pkcs8::DecodePublicKey,
    {
        let key = ml_dsa::VerifyingKey::<P>::from_public_key_der(spki).unwrap();
        ml_dsa::Signature::<P>::try_from(signature)
            .is_ok_and(|signature| key.verify(message, &signature).is_ok())
    }
    match spec {
        KeyPairSpec::MlDsa44 => check::<ml_dsa::MlDsa44>(spki, message, signature),
        KeyPairSpec::MlDsa65 => check::<ml_dsa::MlDsa65>(spki, message, signature),
        _ => check::<ml_dsa::MlDsa87>(spki, message, signature),
    }
}

#[tokio::test]
async fn ml_dsa_keys_sign_raw_and_external_mu_and_verify_both() {
    let server = start().await;
    for (spec, pair_spec, oid_last, signature_len) in [
        ("ML_DSA_44", KeyPairSpec::MlDsa44, 0x11, 2420),
        ("ML_DSA_65", KeyPairSpec::MlDsa65, 0x12, 3309),
        ("ML_DSA_87", KeyPairSpec::MlDsa87, 0x13, 4627),
    ] {
        let meta = create(&server, spec).await;
        assert_eq!(
            (meta.key_spec.as_str(), meta.key_usage.as_str()),
            (spec, "SIGN/VERIFY")
        );
        assert_eq!(describe(&server, &meta.key_id).await, meta);
        let public = server
            .crypto()
            .get_public_key(GetPublicKeyRequest {
                key_id: meta.key_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(public.key_id, meta.key_id);
        let spki = spki_der(&public.public_key);
        // id-ml-dsa-44/65/87: 2.16.840.1.101.3.4.3.17-19, no parameters.
        assert_eq!(
            &spki[4..17],
            &[
                0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, oid_last
            ],
            "{spec}"
        );
        let mu = external_mu(pair_spec, &spki, MESSAGE).unwrap();

        // RAW, signed by aws-lc-rs: ml-dsa verifies it; kmsd verifies it as RAW and as mu.
        let raw = sign(&server, &meta.key_id, "ML_DSA", "RAW", MESSAGE)
            .await
            .unwrap();
        assert_eq!(
            (raw.algorithm.as_str(), raw.message_type.as_str()),
            ("ML_DSA", "RAW")
        );
        assert_eq!(raw.signature.len(), signature_len, "{spec}");
        assert!(ml_dsa_verifies(pair_spec, &spki, MESSAGE, &raw.signature));
        for (message_type, input) in [("RAW", MESSAGE), ("EXTERNAL_MU", &mu[..])] {
            assert!(
                verify(
                    &server,
                    &meta.key_id,
                    "ML_DSA",
                    message_type,
                    input,
                    &raw.signature
                )
                .await
                .unwrap(),
                "{spec} {message_type}"
            );
        }
        // EXTERNAL_MU, signed by ml-dsa: a signature of the message, for every verifier.
        let of_mu = sign(&server, &meta.key_id, "ML_DSA", "EXTERNAL_MU", &mu)
            .await
            .unwrap();
        assert_eq!(of_mu.message_type, "EXTERNAL_MU");
        assert_eq!(of_mu.signature.len(), signature_len);
        assert!(ml_dsa_verifies(pair_spec, &spki, MESSAGE, &of_mu.signature));
        assert!(
            verify(
                &server,
                &meta.key_id,
                "ML_DSA",
                "",
                MESSAGE,
                &of_mu.signature
            )
            .await
            .unwrap()
        );

        // Tampering: the message, the signature, the mu; and a truncated signature.
        let mut flipped = raw.signature.clone();
        flipped[100] ^= 0x01;
        let mut other_mu = mu;
        other_mu[0] ^= 0x80;
        for (message_type, input, signature) in [
            (
                "RAW",
                &b"kmsd e2e: firmware image 1.2.4"[..],
                &raw.signature[..],
            ),
            ("RAW", MESSAGE, &flipped[..]),
            ("EXTERNAL_MU", &other_mu[..], &raw.signature[..]),
            ("EXTERNAL_MU", &mu[..], &flipped[..]),
            ("RAW", MESSAGE, &raw.signature[..signature_len - 1]),
            ("EXTERNAL_MU", &mu[..], &raw.signature[..10]),
        ] {
            assert!(
                !verify(
                    &server,
                    &meta.key_id,
                    "ML_DSA",
                    message_type,
                    input,
                    signature
                )
                .await
                .unwrap(),
                "{spec} {message_type} tampered"
            );
        }
    }
}

#[tokio::test]
async fn ed25519_keys_sign_what_openssl_verifies() {
    let server = start().await;
    let meta = create(&server, "ED25519").await;
    assert_eq!(
        (meta.key_spec.as_str(), meta.key_usage.as_str()),
        ("ED25519", "SIGN/VERIFY")
    );
    let pem = server
        .crypto()
        .get_public_key(GetPublicKeyRequest {
            key_id: meta.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .public_key;
    let spki = spki_der(&pem);
    // RFC 8410: SEQUENCE { SEQUENCE { 1.3.101.112 }, BIT STRING (32 bytes) }.
    assert_eq!(
        &spki[..12],
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00
        ]
    );
    let tmp = temp_dir();
    let dir = tmp.path();
    std::fs::write(dir.join("public.pem"), &pem).unwrap();
    let parsed = openssl(
        dir,
        &["pkey", "-pubin", "-in", "public.pem", "-text", "-noout"],
    );
    assert!(
        parsed.0 && parsed.1.contains("ED25519 Public-Key"),
        "{}",
        parsed.1
    );

    let signed = sign(&server, &meta.key_id, "ED25519", "RAW", MESSAGE)
        .await
        .unwrap();
    assert_eq!(signed.signature.len(), 64);
    // Ed25519 is deterministic (RFC 8032): the same message, the same signature.
    let again = sign(&server, &meta.key_id, "ED25519", "", MESSAGE)
        .await
        .unwrap();
    assert_eq!(again.signature, signed.signature);
    std::fs::write(dir.join("message.bin"), MESSAGE).unwrap();
    std::fs::write(dir.join("signature.bin"), &signed.signature).unwrap();
    let (ok, output) = openssl(
        dir,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "public.pem",
            "-rawin",
            "-in",
            "message.bin",
            "-sigfile",
            "signature.bin",
        ],
    );
    assert!(
        ok && output.contains("Signature Verified Successfully"),
        "{output}"
    );

    // kmsd verifies its own signature and refuses tampered ones. (Signatures made by
    // other implementations, under their keys, go through the same code in
    // crypto::signing_keys's vector tests.)
    assert!(
        verify(
            &server,
            &meta.key_id,
            "ED25519",
            "RAW",
            MESSAGE,
            &signed.signature
        )
        .await
        .unwrap()
    );
    let mut flipped = signed.signature.clone();
    flipped[0] ^= 1;
    for (message, signature) in [
        (&b"kmsd e2e: another firmware"[..], &signed.signature[..]),
        (MESSAGE, &flipped[..]),
        (MESSAGE, &signed.signature[..63]),
    ] {
        assert!(
            !verify(&server, &meta.key_id, "ED25519", "RAW", message, signature)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn other_message_types_algorithms_and_oversized_messages_are_refused() {
    let server = start().await;
    let ml_dsa = create(&server, "ML_DSA_65").await.key_id;
    let ed25519 = create(&server, "ED25519").await.key_id;
    let ec = create(&server, "EC_P256").await.key_id;
    let digest = [7u8; 32];
    for (key_id, algorithm, message_type, message, expected) in [
        (
            &ml_dsa,
            "ML_DSA",
            "DIGEST",
            &digest[..],
            "MessageType DIGEST does not apply to Algorithm ML_DSA; valid values: RAW, EXTERNAL_MU.",
        ),
        (
            &ed25519,
            "ED25519",
            "EXTERNAL_MU",
            &[1u8; 64][..],
            "MessageType EXTERNAL_MU does not apply to Algorithm ED25519; valid values: RAW.",
        ),
        (
            &ml_dsa,
            "ML_DSA",
            "EXTERNAL_MU",
            &digest[..],
            "An EXTERNAL_MU message must be the 64-byte ML-DSA mu",
        ),
        (
            &ml_dsa,
            "ECDSA_SHA_256",
            "RAW",
            MESSAGE,
            "valid values: ML_DSA.",
        ),
        (
            &ec,
            "ML_DSA",
            "RAW",
            MESSAGE,
            "valid values: ECDSA_SHA_256.",
        ),
        (&ed25519, "ML_DSA", "RAW", MESSAGE, "valid values: ED25519."),
    ] {
        for result in [
            sign(&server, key_id, algorithm, message_type, message)
                .await
                .map(|_| ()),
            verify(&server, key_id, algorithm, message_type, message, &[1; 64])
                .await
                .map(|_| ()),
        ] {
            let status = assert_error(result, Code::InvalidArgument, "InvalidParameter");
            assert!(status.message().contains(expected), "{status:?}");
        }
    }
    // RAW up to the request limit; beyond it the error names the limit and the way out.
    let limit = kmsd::transport::limits::MAX_DECODING_MESSAGE_SIZE;
    let near = vec![0x5a; limit - 1024];
    sign(&server, &ml_dsa, "ML_DSA", "RAW", &near)
        .await
        .unwrap();
    // Verify's request also carries the 3309-byte signature: the limit is the request's.
    let fits = &near[..limit - 4096];
    let signed = sign(&server, &ml_dsa, "ML_DSA", "RAW", fits).await.unwrap();
    assert!(
        verify(&server, &ml_dsa, "ML_DSA", "RAW", fits, &signed.signature)
            .await
            .unwrap()
    );
    let huge = vec![0x5a; limit + 1];
    let status = assert_error(
        sign(&server, &ml_dsa, "ML_DSA", "RAW", &huge).await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert!(
        status.message().contains(&limit.to_string()) && status.message().contains("EXTERNAL_MU"),
        "{status:?}"
    );
}

#[tokio::test]
async fn signing_keys_are_listed_come_from_the_pool_and_stay_sealed() {
    let server = start_with(|config| config.pool = PoolConfig::uniform(1)).await;
    let mut created = Vec::new();
    for spec in ["ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ED25519"] {
        created.push(create(&server, spec).await);
    }
    let listed: Vec<String> = server
        .management()
        .list_keys(ListKeysRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    for meta in &created {
        assert!(listed.contains(&meta.key_id), "{}", meta.key_spec);
    }
    // Each CreateKey took its pair from the pool (a hit, or a miss generated by it).
    let metrics = server.server.kms().metrics().render().await;
    let count = |series: String| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str())?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    for meta in &created {
        let spec = &meta.key_spec;
        let taken = count(format!(r#"kmsd_pool_hits_total{{spec="{spec}"}}"#))
            + count(format!(r#"kmsd_pool_misses_total{{spec="{spec}"}}"#));
        assert_eq!(taken, 1.0, "{spec}");
    }
    let stopped = server.stop().await;
    let store_bytes: Vec<u8> = std::fs::read_dir(stopped.data_dir())
        .unwrap()
        .flat_map(|entry| std::fs::read(entry.unwrap().path()).unwrap_or_default())
        .collect();
    for meta in &created {
        let private =
            unsealed_material(stopped.data_dir(), &meta.key_id, &meta.initial_key_version).await;
        let spec: KeyPairSpec = meta.key_spec.parse().unwrap();
        // What is sealed is the key GetPublicKey described: it parses as its spec.
        kmsd::crypto::signing_keys::SigningKey::from_pkcs8(spec, &private).unwrap();
        // The last 16 bytes are secret in both forms (the seed, Ed25519's public key
        // aside): no copy of them in the store files.
        let secret = match spec {
            KeyPairSpec::Ed25519 => &private[16..32],
            _ => &private[private.len() - 16..],
        };
        assert!(
            !store_bytes.windows(16).any(|w| w == secret),
            "{}: private key in the clear on disk",
            meta.key_spec
        );
    }
}
