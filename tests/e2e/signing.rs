//! End-to-end tests of asymmetric and HMAC master keys over real gRPC: CreateKey of
//! every spec, Sign / Verify / GetPublicKey / Hmac, checked outside kmsd with the
//! `openssl` command line; the usage, algorithm and state refusals.

use std::path::Path;
use std::process::Command;

use ring::digest::{SHA256, digest};
use tonic::Code;

use crate::support::pb::*;
use crate::support::*;

const MESSAGE: &[u8] = b"kmsd e2e: a message signed by a key that never leaves the server";

fn sha256(data: &[u8]) -> Vec<u8> {
    digest(&SHA256, data).as_ref().to_vec()
}

async fn create(server: &TestServer, spec: &str, usage: &str) -> KeyMetadata {
    server
        .management()
        .create_key(CreateKeyRequest {
            key_spec: spec.into(),
            key_usage: usage.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("CreateKey {spec}: {status:?}"))
        .into_inner()
        .key_metadata
        .expect("KeyMetadata")
}

fn sign_req(key_id: &str, algorithm: &str, message_type: &str, message: &[u8]) -> SignRequest {
    SignRequest {
        key_id: key_id.into(),
        algorithm: algorithm.into(),
        message_type: message_type.into(),
        message: message.to_vec(),
        ..Default::default()
    }
}

fn verify_req(
    key_id: &str,
    algorithm: &str,
    message_type: &str,
    message: &[u8],
    signature: &[u8],
) -> VerifyRequest {
    VerifyRequest {
        key_id: key_id.into(),
        algorithm: algorithm.into(),
        message_type: message_type.into(),
        message: message.to_vec(),
        signature: signature.to_vec(),
        ..Default::default()
    }
}

/// Runs `openssl` with `args` in `dir`; returns whether it succeeded, and its output.
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is installed");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Whether `openssl dgst -sha256 -verify` accepts `signature` of `message` under the
/// PEM public key in `dir/public.pem`.
fn openssl_verifies(dir: &Path, algorithm: &str, message: &[u8], signature: &[u8]) -> bool {
    std::fs::write(dir.join("message.bin"), message).unwrap();
    std::fs::write(dir.join("signature.bin"), signature).unwrap();
    let mut args = vec![
        "dgst",
        "-sha256",
        "-verify",
        "public.pem",
        "-signature",
        "signature.bin",
    ];
    if algorithm == "RSA_PSS_SHA_256" {
        args.extend([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sigopt",
            "rsa_mgf1_md:sha256",
        ]);
    }
    args.push("message.bin");
    let (ok, output) = openssl(dir, &args);
    assert_eq!(ok, output.contains("Verified OK"), "{output}");
    ok
}

#[tokio::test]
async fn every_spec_signs_what_openssl_verifies() {
    let server = start_with(|config| config.pool = PoolConfig::uniform(1)).await;
    let tmp = temp_dir();
    let dir = tmp.path();
    let mut crypto = server.crypto();
    let digest = sha256(MESSAGE);
    let cases = [
        (
            "RSA_2048",
            &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"][..],
            "rsaEncryption",
        ),
        (
            "RSA_3072",
            &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"][..],
            "rsaEncryption",
        ),
        ("EC_P256", &["ECDSA_SHA_256"][..], "prime256v1"),
        ("EC_P256K", &["ECDSA_SHA_256"][..], "secp256k1"),
    ];
    for (spec, algorithms, openssl_name) in cases {
        let meta = create(&server, spec, "").await;
        assert_eq!(meta.key_spec, spec);
        assert_eq!(meta.key_usage, "SIGN/VERIFY");
        assert_eq!(describe(&server, &meta.key_id).await, meta);
        let public = crypto
            .get_public_key(GetPublicKeyRequest {
                key_id: meta.key_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(public.key_id, meta.key_id);
        assert_request_id(&public.request_id);
        assert!(
            public
                .public_key
                .starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{}",
            public.public_key
        );
        std::fs::write(dir.join("public.pem"), &public.public_key).unwrap();
        let (ok, text) = openssl(
            dir,
            &["pkey", "-pubin", "-in", "public.pem", "-text", "-noout"],
        );
        assert!(ok, "{text}");
        let (ok, asn1) = openssl(dir, &["asn1parse", "-in", "public.pem"]);
        assert!(ok && asn1.contains(openssl_name), "{spec}: {asn1}");
        if spec.starts_with("RSA") {
            let bits = &spec[4..];
            assert!(text.contains(&format!("({bits} bit)")), "{text}");
        }

        for &algorithm in algorithms {
            let case = format!("{spec} {algorithm}");
            // RAW: kmsd hashes; openssl hashes the same message.
            let signed = crypto
                .sign(sign_req(&meta.key_id, algorithm, "RAW", MESSAGE))
                .await
                .unwrap_or_else(|s| panic!("{case}: {s:?}"))
                .into_inner();
            assert_eq!(signed.key_id, meta.key_id);
            assert_eq!(signed.algorithm, algorithm);
            assert_eq!(signed.message_type, "RAW");
            assert_request_id(&signed.request_id);
            assert!(
                openssl_verifies(dir, algorithm, MESSAGE, &signed.signature),
                "{case}: openssl rejects kmsd's RAW signature"
            );
            assert!(!openssl_verifies(
                dir,
                algorithm,
                b"another message",
                &signed.signature
            ));
            // MessageType omitted means RAW.
            let default_type = crypto
                .sign(sign_req(&meta.key_id, algorithm, "", MESSAGE))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(default_type.message_type, "RAW");
            assert!(openssl_verifies(
                dir,
                algorithm,
                MESSAGE,
                &default_type.signature
            ));

            // Verify: true for the signature, as RAW and as DIGEST; false otherwise.
            for (message_type, input) in [("RAW", MESSAGE), ("DIGEST", digest.as_slice())] {
                let verified = crypto
                    .verify(verify_req(
                        &meta.key_id,
                        algorithm,
                        message_type,
                        input,
                        &signed.signature,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(verified.value, "{case} {message_type}");
                assert_eq!(verified.message_type, message_type);
                assert_eq!(verified.algorithm, algorithm);
                assert_request_id(&verified.request_id);
            }
            let mut tampered = signed.signature.clone();
            tampered[10] ^= 0x40;
            for (message, signature) in [
                (MESSAGE, tampered.as_slice()),
                (b"another message".as_slice(), signed.signature.as_slice()),
                (MESSAGE, b"not a signature".as_slice()),
            ] {
                let verified = crypto
                    .verify(verify_req(
                        &meta.key_id,
                        algorithm,
                        "RAW",
                        message,
                        signature,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(!verified.value, "{case}: a bad signature is Value false");
            }
            // Older clients: the digest in the Digest field of Verify.
            let old_verify = crypto
                .verify(VerifyRequest {
                    key_id: meta.key_id.clone(),
                    digest: digest.clone(),
                    signature: signed.signature.clone(),
                    algorithm: algorithm.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(
                old_verify.value && old_verify.message_type == "DIGEST",
                "{case}"
            );

            // DIGEST: the caller's SHA-256; openssl checks it against the message.
            let by_digest = crypto
                .sign(sign_req(&meta.key_id, algorithm, "DIGEST", &digest))
                .await;
            let old_form = crypto
                .sign(SignRequest {
                    key_id: meta.key_id.clone(),
                    digest: digest.clone(),
                    algorithm: algorithm.into(),
                    ..Default::default()
                })
                .await;
            for signed in [
                by_digest.unwrap().into_inner(),
                old_form.unwrap().into_inner(),
            ] {
                assert_eq!(signed.message_type, "DIGEST");
                assert!(
                    openssl_verifies(dir, algorithm, MESSAGE, &signed.signature),
                    "{case}: openssl rejects kmsd's DIGEST signature"
                );
            }
            // A digest that is not 32 bytes.
            assert_error(
                crypto
                    .sign(sign_req(&meta.key_id, algorithm, "DIGEST", &digest[..31]))
                    .await,
                Code::InvalidArgument,
                "InvalidParameter",
            );
        }
    }
}

#[tokio::test]
async fn hmac_keys_mac_what_openssl_computes() {
    let server = start().await;
    let meta = create(&server, "HMAC_SHA256", "GENERATE/VERIFY_MAC").await;
    assert_eq!(meta.key_spec, "HMAC_SHA256");
    assert_eq!(meta.key_usage, "GENERATE/VERIFY_MAC");
    let default_usage = create(&server, "HMAC_SHA256", "").await;
    assert_eq!(default_usage.key_usage, "GENERATE/VERIFY_MAC");
    let mut crypto = server.crypto();
    let mac = |message: &[u8]| HmacRequest {
        key_id: meta.key_id.clone(),
        message: message.to_vec(),
    };
    let first = crypto.hmac(mac(MESSAGE)).await.unwrap().into_inner();
    assert_eq!(first.key_id, meta.key_id);
    assert_request_id(&first.request_id);
    assert_eq!(first.signature.len(), 32);
    let again = crypto.hmac(mac(MESSAGE)).await.unwrap().into_inner();
    assert_eq!(again.signature, first.signature, "HMAC is deterministic");
    let other = crypto.hmac(mac(b"another")).await.unwrap().into_inner();
    assert_ne!(other.signature, first.signature);
    let of_other_key = crypto
        .hmac(HmacRequest {
            key_id: default_usage.key_id.clone(),
            message: MESSAGE.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(of_other_key.signature, first.signature);

    // Outside kmsd: openssl's HMAC with the secret kmsd keeps sealed.
    let stopped = server.stop().await;
    let secret =
        unsealed_material(stopped.data_dir(), &meta.key_id, &meta.initial_key_version).await;
    assert_eq!(secret.len(), 32);
    let tmp = temp_dir();
    std::fs::write(tmp.path().join("message.bin"), MESSAGE).unwrap();
    let (ok, output) = openssl(
        tmp.path(),
        &[
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{}", hex::encode(&secret)),
            "message.bin",
        ],
    );
    assert!(ok, "{output}");
    assert!(
        output.trim_end().ends_with(&hex::encode(&first.signature)),
        "{output}"
    );
}

#[tokio::test]
async fn the_private_key_kmsd_keeps_is_the_one_it_publishes() {
    let server = start().await;
    let mut keys = Vec::new();
    for spec in ["RSA_2048", "EC_P256", "EC_P256K"] {
        let meta = create(&server, spec, "SIGN/VERIFY").await;
        let public = server
            .crypto()
            .get_public_key(GetPublicKeyRequest {
                key_id: meta.key_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .public_key;
        keys.push((meta, public));
    }
    let stopped = server.stop().await;
    let tmp = temp_dir();
    for (meta, public) in keys {
        let private =
            unsealed_material(stopped.data_dir(), &meta.key_id, &meta.initial_key_version).await;
        // Sealed at rest: the store file holds no copy of the PKCS#8.
        let store_bytes: Vec<u8> = std::fs::read_dir(stopped.data_dir())
            .unwrap()
            .flat_map(|entry| std::fs::read(entry.unwrap().path()).unwrap_or_default())
            .collect();
        let middle = &private[private.len() / 2..private.len() / 2 + 16];
        assert!(
            !store_bytes.windows(16).any(|w| w == middle),
            "{}: private key in the clear on disk",
            meta.key_spec
        );
        std::fs::write(tmp.path().join("private.der"), &private).unwrap();
        let (ok, derived) = openssl(
            tmp.path(),
            &["pkey", "-inform", "DER", "-in", "private.der", "-pubout"],
        );
        assert!(ok, "{derived}");
        assert_eq!(derived, public, "{}", meta.key_spec);
    }
}

#[tokio::test]
async fn usage_mismatches_are_unsupported_operations() {
    let server = start().await;
    let mut crypto = server.crypto();
    let mut management = server.management();
    let aes = create(&server, "", "").await;
    assert_eq!(
        (aes.key_spec.as_str(), aes.key_usage.as_str()),
        ("Aliyun_AES_256", "ENCRYPT/DECRYPT")
    );
    let ec = create(&server, "EC_P256", "").await;
    let hmac = create(&server, "HMAC_SHA256", "").await;
    let unsupported = "Rejected.UnsupportedOperation";

    // Signing operations under an AES key.
    for key in [&aes, &hmac] {
        assert_error(
            crypto
                .sign(sign_req(&key.key_id, "ECDSA_SHA_256", "RAW", MESSAGE))
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert_error(
            crypto
                .verify(verify_req(
                    &key.key_id,
                    "ECDSA_SHA_256",
                    "RAW",
                    MESSAGE,
                    b"sig",
                ))
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert_error(
            crypto
                .get_public_key(GetPublicKeyRequest {
                    key_id: key.key_id.clone(),
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
    }
    for key in [&aes, &ec] {
        assert_error(
            crypto
                .hmac(HmacRequest {
                    key_id: key.key_id.clone(),
                    message: MESSAGE.to_vec(),
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
    }

    // Symmetric operations under a signing or HMAC key.
    let sealed = crypto
        .encrypt(EncryptRequest {
            key_id: aes.key_id.clone(),
            plaintext: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for key in [&ec, &hmac] {
        let id = || key.key_id.clone();
        assert_error(
            crypto
                .encrypt(EncryptRequest {
                    key_id: id(),
                    plaintext: b"x".to_vec(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert_error(
            crypto
                .advance_encrypt(AdvanceEncryptRequest {
                    key_id: id(),
                    plaintext: b"x".to_vec(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert_error(
            crypto
                .generate_data_key(GenerateDataKeyRequest {
                    key_id: id(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert_error(
            crypto
                .generate_data_key_pair(GenerateDataKeyPairRequest {
                    key_id: id(),
                    key_pair_spec: "EC_P256".into(),
                    key_format: "PEM".into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        let decrypt = assert_error(
            crypto
                .decrypt(DecryptRequest {
                    key_id: id(),
                    ciphertext_blob: sealed.ciphertext_blob.clone(),
                    iv: sealed.iv.clone(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert!(decrypt.message().contains("ENCRYPT/DECRYPT"), "{decrypt:?}");
        // Neither asymmetric nor HMAC keys rotate.
        assert_error(
            management
                .create_key_version(CreateKeyVersionRequest {
                    key_id: id(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert_error(
            management
                .update_rotation_policy(UpdateRotationPolicyRequest {
                    key_id: id(),
                    enable_automatic_rotation: true,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        // Turning rotation off is a no-op, not a refusal.
        management
            .update_rotation_policy(UpdateRotationPolicyRequest {
                key_id: id(),
                enable_automatic_rotation: false,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_error(
        management
            .create_key(CreateKeyRequest {
                key_spec: "RSA_2048".into(),
                enable_automatic_rotation: true,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        unsupported,
    );

    // A spec with another spec's usage names the valid pairs.
    for (spec, usage) in [
        ("EC_P256", "ENCRYPT/DECRYPT"),
        ("Aliyun_AES_256", "SIGN/VERIFY"),
        ("HMAC_SHA256", "SIGN/VERIFY"),
        ("EC_P256K", "GENERATE/VERIFY_MAC"),
    ] {
        let status = assert_error(
            management
                .create_key(CreateKeyRequest {
                    key_spec: spec.into(),
                    key_usage: usage.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
        for pair in [
            "Aliyun_AES_256 with ENCRYPT/DECRYPT",
            "RSA_3072 with SIGN/VERIFY or ENCRYPT/DECRYPT",
            "EC_P256K with SIGN/VERIFY",
            "HMAC_SHA256 with GENERATE/VERIFY_MAC",
        ] {
            assert!(status.message().contains(pair), "{status:?}");
        }
    }

    // An algorithm of another key type, an unknown one, none.
    let rsa = create(&server, "RSA_2048", "").await;
    for (key, algorithm, code, error_code) in [
        (
            &ec,
            "RSA_PSS_SHA_256",
            Code::InvalidArgument,
            "InvalidParameter",
        ),
        (
            &rsa,
            "ECDSA_SHA_256",
            Code::InvalidArgument,
            "InvalidParameter",
        ),
        (
            &ec,
            "ECDSA_SHA_384",
            Code::InvalidArgument,
            "InvalidParameter",
        ),
        (&ec, "", Code::InvalidArgument, "MissingParameter"),
    ] {
        assert_error(
            crypto
                .sign(sign_req(&key.key_id, algorithm, "RAW", MESSAGE))
                .await,
            code,
            error_code,
        );
        assert_error(
            crypto
                .verify(verify_req(&key.key_id, algorithm, "RAW", MESSAGE, b"sig"))
                .await,
            code,
            error_code,
        );
    }
    assert_error(
        crypto
            .sign(sign_req(&ec.key_id, "ECDSA_SHA_256", "HASHED", MESSAGE))
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
}

#[tokio::test]
async fn disabled_signing_and_hmac_keys_are_refused() {
    let server = start().await;
    let mut crypto = server.crypto();
    let ec = create(&server, "EC_P256K", "").await;
    let hmac = create(&server, "HMAC_SHA256", "").await;
    let signature = crypto
        .sign(sign_req(&ec.key_id, "ECDSA_SHA_256", "RAW", MESSAGE))
        .await
        .unwrap()
        .into_inner()
        .signature;
    for key in [&ec, &hmac] {
        server
            .management()
            .disable_key(DisableKeyRequest {
                key_id: key.key_id.clone(),
            })
            .await
            .unwrap();
    }
    let state = "Rejected.InvalidKeyState";
    assert_error(
        crypto
            .sign(sign_req(&ec.key_id, "ECDSA_SHA_256", "RAW", MESSAGE))
            .await,
        Code::FailedPrecondition,
        state,
    );
    assert_error(
        crypto
            .verify(verify_req(
                &ec.key_id,
                "ECDSA_SHA_256",
                "RAW",
                MESSAGE,
                &signature,
            ))
            .await,
        Code::FailedPrecondition,
        state,
    );
    assert_error(
        crypto
            .get_public_key(GetPublicKeyRequest {
                key_id: ec.key_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        state,
    );
    assert_error(
        crypto
            .hmac(HmacRequest {
                key_id: hmac.key_id.clone(),
                message: MESSAGE.to_vec(),
            })
            .await,
        Code::FailedPrecondition,
        state,
    );
    // Enabled again, the same key verifies its earlier signature.
    server
        .management()
        .enable_key(EnableKeyRequest {
            key_id: ec.key_id.clone(),
        })
        .await
        .unwrap();
    assert!(
        crypto
            .verify(verify_req(
                &ec.key_id,
                "ECDSA_SHA_256",
                "RAW",
                MESSAGE,
                &signature
            ))
            .await
            .unwrap()
            .into_inner()
            .value
    );
    // Keys are listed with the rest, and DescribeKey shows spec and usage.
    let listed = server
        .management()
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.keys.iter().map(|k| k.key_id.as_str()).collect();
    assert!(ids.contains(&ec.key_id.as_str()) && ids.contains(&hmac.key_id.as_str()));
    assert_eq!(
        describe(&server, &hmac.key_id).await.key_spec,
        "HMAC_SHA256"
    );
}
