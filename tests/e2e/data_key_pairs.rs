//! End-to-end tests of the data key pair operations over real gRPC.

use std::collections::BTreeSet;

use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use tonic::Code;

use crate::support::pb::*;
use crate::support::*;

const SPECS: [&str; 5] = ["RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P256K"];
const DECRYPTION_FAILED: &str = "The ciphertext could not be decrypted.";

/// Parses `public` (SPKI) and `private` (PKCS#8) in `format` as `spec`, checks the
/// algorithm and size, and that the private key's public half is `public`.
pub(crate) fn check_key_pair(spec: &str, format: &str, public: &[u8], private: &[u8]) {
    let (public_der, private_der) = match format {
        "DER" => (public.to_vec(), private.to_vec()),
        "PEM" => {
            let public_pem = std::str::from_utf8(public).unwrap();
            let private_pem = std::str::from_utf8(private).unwrap();
            assert!(
                public_pem.starts_with("-----BEGIN PUBLIC KEY-----"),
                "{public_pem}"
            );
            assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let (label, public_der) = pem_rfc7468_decode(public_pem);
            assert_eq!(label, "PUBLIC KEY");
            let (label, private_der) = pem_rfc7468_decode(private_pem);
            assert_eq!(label, "PRIVATE KEY");
            (public_der, private_der)
        }
        other => panic!("format {other}"),
    };
    let derived_public = match spec {
        "RSA_2048" | "RSA_3072" | "RSA_4096" => {
            let bits: usize = spec[4..].parse().unwrap();
            let public_key = rsa::PublicKey::from_public_key_der(&public_der).unwrap();
            assert_eq!(public_key.size() * 8, bits, "{spec} modulus size");
            assert_eq!(
                public_key.e().to_be_bytes_trimmed_vartime().as_ref(),
                &[1, 0, 1]
            );
            let private_key = rsa::PrivateKey::from_pkcs8_der(&private_der).unwrap();
            private_key
                .to_public_key()
                .to_public_key_der()
                .unwrap()
                .into_vec()
        }
        "EC_P256" => {
            p256::PublicKey::from_public_key_der(&public_der).unwrap();
            let secret = p256::SecretKey::from_pkcs8_der(&private_der).unwrap();
            secret.public_key().to_public_key_der().unwrap().into_vec()
        }
        "EC_P256K" => {
            k256::PublicKey::from_public_key_der(&public_der).unwrap();
            let secret = k256::SecretKey::from_pkcs8_der(&private_der).unwrap();
            secret.public_key().to_public_key_der().unwrap().into_vec()
        }
        other => panic!("spec {other}"),
    };
    assert_eq!(
        derived_public, public_der,
        "{spec}/{format}: private key matches public key"
    );
}

fn pem_rfc7468_decode(pem: &str) -> (String, Vec<u8>) {
    let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
    (label.to_owned(), der)
}

fn generate_req(key_id: &str, spec: &str, format: &str, aad: &[u8]) -> GenerateDataKeyPairRequest {
    GenerateDataKeyPairRequest {
        key_id: key_id.to_owned(),
        algorithm: String::new(),
        key_pair_spec: spec.to_owned(),
        key_format: format.to_owned(),
        aad: aad.to_vec(),
    }
}

fn decrypt_req(key_id: &str, blob: &[u8], iv: &[u8], aad: &[u8]) -> DecryptRequest {
    DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        key_id: key_id.to_owned(),
        algorithm: String::new(),
        aad: aad.to_vec(),
        iv: iv.to_vec(),
        padding_mode: String::new(),
    }
}

fn advance_decrypt_req(key_id: &str, blob: &[u8], aad: &[u8]) -> AdvanceDecryptRequest {
    AdvanceDecryptRequest {
        ciphertext_blob: blob.to_vec(),
        key_id: key_id.to_owned(),
        aad: aad.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_spec_and_format_round_trips_through_decrypt() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    for spec in SPECS {
        for format in ["PEM", "DER"] {
            let aad = format!("{spec}/{format}").into_bytes();
            let response = crypto
                .generate_data_key_pair(generate_req(&key_id, spec, format, &aad))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(response.key_id, key_id);
            assert_eq!(response.key_pair_spec, spec);
            assert_eq!(response.algorithm, "AES_GCM");
            assert_eq!(response.iv.len(), 12);
            assert_request_id(&response.request_id);
            check_key_pair(
                spec,
                format,
                &response.public_key,
                &response.private_key_plaintext,
            );
            assert!(
                response.private_key_ciphertext_blob.len()
                    == 16 + response.private_key_plaintext.len() + 16,
                "ciphertext is a 16-byte salt, the plaintext's length, a 16-byte tag"
            );
            let decrypted = crypto
                .decrypt(decrypt_req(
                    &key_id,
                    &response.private_key_ciphertext_blob,
                    &response.iv,
                    &aad,
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                decrypted.plaintext, response.private_key_plaintext,
                "{spec}/{format}"
            );
            assert_eq!(decrypted.key_id, key_id);
            assert_request_id(&decrypted.request_id);
        }
    }
}

#[tokio::test]
async fn without_plaintext_and_advance_operations_round_trip() {
    let server = start().await;
    let key_id = create_key(&server).await;
    server
        .management()
        .create_alias(CreateAliasRequest {
            key_id: key_id.clone(),
            alias_name: "alias/data".into(),
        })
        .await
        .unwrap();
    let primary = describe(&server, &key_id).await.primary_key_version;
    let mut crypto = server.crypto();
    for spec in ["EC_P256", "EC_P256K", "RSA_2048"] {
        for format in ["PEM", "DER"] {
            // WithoutPlaintext, addressed by alias: the real key ID comes back.
            let sealed = crypto
                .generate_data_key_pair_without_plaintext(
                    GenerateDataKeyPairWithoutPlaintextRequest {
                        key_id: "alias/data".into(),
                        algorithm: "AES_GCM".into(),
                        key_pair_spec: spec.into(),
                        key_format: format.into(),
                        aad: b"ctx".to_vec(),
                    },
                )
                .await
                .unwrap()
                .into_inner();
            assert_eq!(sealed.key_id, key_id);
            let opened = crypto
                .decrypt(decrypt_req(
                    "alias/data",
                    &sealed.private_key_ciphertext_blob,
                    &sealed.iv,
                    b"ctx",
                ))
                .await
                .unwrap()
                .into_inner();
            check_key_pair(spec, format, &sealed.public_key, &opened.plaintext);

            let advance = crypto
                .advance_generate_data_key_pair(AdvanceGenerateDataKeyPairRequest {
                    key_id: "alias/data".into(),
                    key_pair_spec: spec.into(),
                    key_format: format.into(),
                    aad: b"adv".to_vec(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(advance.key_id, key_id);
            assert_eq!(advance.key_version_id, primary);
            check_key_pair(
                spec,
                format,
                &advance.public_key,
                &advance.private_key_plaintext,
            );
            let blob = &advance.private_key_ciphertext_blob;
            assert_eq!(blob[0], b'$');
            assert_eq!(blob[1], 0x00);
            assert_eq!(blob[2], 0x02);
            assert_eq!(&blob[3..39], primary.as_bytes());
            assert_eq!(&blob[39..51], advance.iv.as_slice());
            assert_eq!(
                blob.len(),
                51 + 16 + advance.private_key_plaintext.len() + 16
            );
            // No KeyId needed: the blob names its version.
            let opened = crypto
                .advance_decrypt(advance_decrypt_req("", blob, b"adv"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(opened.plaintext, advance.private_key_plaintext);
            assert_eq!(opened.key_version_id, primary);
            assert_eq!(opened.key_id, key_id);

            let advance_sealed = crypto
                .advance_generate_data_key_pair_without_plaintext(
                    AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                        key_id: key_id.clone(),
                        key_pair_spec: spec.into(),
                        key_format: format.into(),
                        aad: Vec::new(),
                    },
                )
                .await
                .unwrap()
                .into_inner();
            assert_eq!(advance_sealed.key_version_id, primary);
            let opened = crypto
                .advance_decrypt(advance_decrypt_req(
                    "alias/data",
                    &advance_sealed.private_key_ciphertext_blob,
                    b"",
                ))
                .await
                .unwrap()
                .into_inner();
            check_key_pair(spec, format, &advance_sealed.public_key, &opened.plaintext);
        }
    }
}

#[tokio::test]
async fn no_two_calls_return_the_same_key_pair() {
    let server = start_with(|config| {
        config.pool = PoolConfig::uniform(2);
    })
    .await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    for spec in ["EC_P256", "EC_P256K", "RSA_2048"] {
        let mut publics = BTreeSet::new();
        let mut ciphertexts = BTreeSet::new();
        for _ in 0..6 {
            let response = crypto
                .generate_data_key_pair_without_plaintext(
                    GenerateDataKeyPairWithoutPlaintextRequest {
                        key_id: key_id.clone(),
                        key_pair_spec: spec.into(),
                        key_format: "DER".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .into_inner();
            publics.insert(response.public_key);
            ciphertexts.insert(response.private_key_ciphertext_blob);
        }
        assert_eq!(publics.len(), 6, "{spec}: distinct key pairs");
        assert_eq!(ciphertexts.len(), 6, "{spec}: distinct ciphertexts");
    }
}

#[tokio::test]
async fn aad_binds_and_every_tamper_fails_with_one_message() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let other_key = create_key(&server).await;
    let mut crypto = server.crypto();
    let plain = crypto
        .generate_data_key_pair(generate_req(&key_id, "EC_P256", "DER", b"aad-1"))
        .await
        .unwrap()
        .into_inner();
    let blob = plain.private_key_ciphertext_blob.clone();
    let iv = plain.iv.clone();

    let mut failures: Vec<(
        String,
        Result<tonic::Response<DecryptResponse>, tonic::Status>,
    )> = Vec::new();
    failures.push((
        "wrong aad".into(),
        crypto
            .decrypt(decrypt_req(&key_id, &blob, &iv, b"aad-2"))
            .await,
    ));
    failures.push((
        "no aad".into(),
        crypto.decrypt(decrypt_req(&key_id, &blob, &iv, b"")).await,
    ));
    failures.push((
        "wrong key".into(),
        crypto
            .decrypt(decrypt_req(&other_key, &blob, &iv, b"aad-1"))
            .await,
    ));
    for index in [0, blob.len() / 2, blob.len() - 16, blob.len() - 1] {
        let mut tampered = blob.clone();
        tampered[index] ^= 0x01;
        failures.push((
            format!("ciphertext byte {index}"),
            crypto
                .decrypt(decrypt_req(&key_id, &tampered, &iv, b"aad-1"))
                .await,
        ));
    }
    let mut bad_iv = iv.clone();
    bad_iv[5] ^= 0x80;
    failures.push((
        "iv".into(),
        crypto
            .decrypt(decrypt_req(&key_id, &blob, &bad_iv, b"aad-1"))
            .await,
    ));
    failures.push((
        "truncated".into(),
        crypto
            .decrypt(decrypt_req(&key_id, &blob[..blob.len() - 1], &iv, b"aad-1"))
            .await,
    ));
    failures.push((
        "tag only".into(),
        crypto
            .decrypt(decrypt_req(
                &key_id,
                &blob[blob.len() - 16..],
                &iv,
                b"aad-1",
            ))
            .await,
    ));
    for (case, result) in failures {
        let status = assert_error(result, Code::InvalidArgument, "InvalidParameter");
        assert_eq!(status.message(), DECRYPTION_FAILED, "{case}");
    }
    // The untouched ciphertext still opens.
    crypto
        .decrypt(decrypt_req(&key_id, &blob, &iv, b"aad-1"))
        .await
        .unwrap();

    // The self-describing form: edit every region, including the header.
    let rotated = server
        .management()
        .create_key_version(CreateKeyVersionRequest {
            key_id: key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_version
        .unwrap()
        .key_version_id;
    let advance = crypto
        .advance_generate_data_key_pair_without_plaintext(
            AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                key_id: key_id.clone(),
                key_pair_spec: "EC_P256".into(),
                key_format: "PEM".into(),
                aad: b"aad-1".to_vec(),
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(advance.key_version_id, rotated);
    let blob = advance.private_key_ciphertext_blob;
    let initial = describe(&server, &key_id).await.initial_key_version;
    let mut cases: Vec<(String, Vec<u8>, Vec<u8>, String)> = Vec::new();
    cases.push((
        "wrong aad".into(),
        blob.clone(),
        b"aad-x".to_vec(),
        String::new(),
    ));
    cases.push((
        "wrong key id".into(),
        blob.clone(),
        b"aad-1".to_vec(),
        other_key.clone(),
    ));
    for index in [0usize, 1, 2, 3, 20, 38, 39, 50, 51, blob.len() - 1] {
        let mut tampered = blob.clone();
        tampered[index] ^= 0x01;
        cases.push((
            format!("byte {index}"),
            tampered,
            b"aad-1".to_vec(),
            String::new(),
        ));
    }
    // A header that names another real version of the same key must not open either.
    let mut other_version = blob.clone();
    other_version[3..39].copy_from_slice(initial.as_bytes());
    cases.push((
        "other version".into(),
        other_version,
        b"aad-1".to_vec(),
        String::new(),
    ));
    cases.push((
        "truncated".into(),
        blob[..60].to_vec(),
        b"aad-1".to_vec(),
        String::new(),
    ));
    cases.push((
        "garbage".into(),
        vec![0x24; 80],
        b"aad-1".to_vec(),
        String::new(),
    ));
    for (case, tampered, aad, key) in cases {
        let status = assert_error(
            crypto
                .advance_decrypt(advance_decrypt_req(&key, &tampered, &aad))
                .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
        assert_eq!(status.message(), DECRYPTION_FAILED, "{case}");
    }
    crypto
        .advance_decrypt(advance_decrypt_req(&key_id, &blob, b"aad-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn rotation_moves_advance_operations_and_old_blobs_still_open() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let mut kms = server.management();
    let initial = describe(&server, &key_id).await.initial_key_version;
    let mut blobs = Vec::new();
    let mut plain = Vec::new();
    let mut versions = vec![initial.clone()];
    for round in 0..3 {
        if round > 0 {
            let version = kms
                .create_key_version(CreateKeyVersionRequest {
                    key_id: key_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .key_version
                .unwrap()
                .key_version_id;
            versions.push(version);
        }
        let advance = crypto
            .advance_generate_data_key_pair(AdvanceGenerateDataKeyPairRequest {
                key_id: key_id.clone(),
                key_pair_spec: "EC_P256".into(),
                key_format: "DER".into(),
                aad: vec![round],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            &advance.key_version_id,
            versions.last().unwrap(),
            "Advance uses the newest version"
        );
        blobs.push((
            advance.private_key_ciphertext_blob.clone(),
            advance.private_key_plaintext.clone(),
            advance.key_version_id.clone(),
            round,
        ));
        let generated = crypto
            .generate_data_key_pair(generate_req(&key_id, "EC_P256", "DER", b""))
            .await
            .unwrap()
            .into_inner();
        plain.push((
            generated.private_key_ciphertext_blob.clone(),
            generated.iv.clone(),
            generated.private_key_plaintext.clone(),
        ));
    }
    assert_eq!(versions.len(), 3);
    for (blob, expected, version, round) in &blobs {
        let opened = crypto
            .advance_decrypt(advance_decrypt_req("", blob, &[*round]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&opened.plaintext, expected);
        assert_eq!(&opened.key_version_id, version);
    }
    // The plain operations sealed every round under the initial version, so Decrypt
    // (which only ever uses the initial version) opens all of them.
    for (blob, iv, expected) in &plain {
        let opened = crypto
            .decrypt(decrypt_req(&key_id, blob, iv, b""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&opened.plaintext, expected);
    }

    // Ciphertexts outlive a restart.
    let server = server.stop().await.restart().await;
    let mut crypto = server.crypto();
    for (blob, expected, _, round) in &blobs {
        let opened = crypto
            .advance_decrypt(advance_decrypt_req(&key_id, blob, &[*round]))
            .await
            .unwrap();
        assert_eq!(&opened.into_inner().plaintext, expected);
    }
    let (blob, iv, expected) = &plain[0];
    let opened = crypto
        .decrypt(decrypt_req(&key_id, blob, iv, b""))
        .await
        .unwrap();
    assert_eq!(&opened.into_inner().plaintext, expected);
}

#[tokio::test]
async fn bad_parameters_and_key_states_get_their_codes() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let mut kms = server.management();
    let cases: Vec<(GenerateDataKeyPairRequest, Code, &str, &str)> = vec![
        (
            generate_req("", "EC_P256", "PEM", b""),
            Code::InvalidArgument,
            "MissingParameter",
            "KeyId",
        ),
        (
            generate_req(&key_id, "", "PEM", b""),
            Code::InvalidArgument,
            "MissingParameter",
            "KeyPairSpec",
        ),
        (
            generate_req(&key_id, "EC_P256", "", b""),
            Code::InvalidArgument,
            "MissingParameter",
            "KeyFormat",
        ),
        (
            generate_req(&key_id, "RSA_1024", "PEM", b""),
            Code::InvalidArgument,
            "InvalidParameter",
            "RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P256K",
        ),
        (
            generate_req(&key_id, "ec_p256", "PEM", b""),
            Code::InvalidArgument,
            "InvalidParameter",
            "EC_P256K",
        ),
        (
            generate_req(&key_id, "EC_P256", "JWK", b""),
            Code::InvalidArgument,
            "InvalidParameter",
            "PEM, DER",
        ),
        (
            generate_req(&key_id, "EC_P256", "PEM", &[0u8; 8193]),
            Code::InvalidArgument,
            "InvalidParameter",
            "8192",
        ),
        (
            generate_req("key-nosuchkey", "EC_P256", "PEM", b""),
            Code::NotFound,
            "Forbidden.KeyNotFound",
            "",
        ),
        (
            generate_req("alias/nosuch", "EC_P256", "PEM", b""),
            Code::NotFound,
            "Forbidden.AliasNotFound",
            "",
        ),
    ];
    for (request, code, reason_code, mentions) in cases {
        let status = assert_error(
            crypto.generate_data_key_pair(request).await,
            code,
            reason_code,
        );
        assert!(
            status.message().contains(mentions),
            "{status:?} should mention {mentions}"
        );
    }
    let mut wrong_algorithm = generate_req(&key_id, "EC_P256", "PEM", b"");
    wrong_algorithm.algorithm = "AES_CBC".into();
    assert_error(
        crypto.generate_data_key_pair(wrong_algorithm).await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    // The largest AAD is fine.
    crypto
        .generate_data_key_pair(generate_req(&key_id, "EC_P256", "PEM", &[7u8; 8192]))
        .await
        .unwrap();

    let sealed = crypto
        .generate_data_key_pair(generate_req(&key_id, "EC_P256", "PEM", b""))
        .await
        .unwrap()
        .into_inner();
    let blob = sealed.private_key_ciphertext_blob.clone();
    assert_error(
        crypto
            .decrypt(decrypt_req(&key_id, &blob, &[0u8; 11], b""))
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_error(
        crypto.decrypt(decrypt_req(&key_id, &blob, b"", b"")).await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    assert_error(
        crypto
            .decrypt(decrypt_req(&key_id, b"", &sealed.iv, b""))
            .await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    assert_error(
        crypto
            .decrypt(decrypt_req("", &blob, &sealed.iv, b""))
            .await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    assert_error(
        crypto
            .advance_decrypt(advance_decrypt_req("", b"", b""))
            .await,
        Code::InvalidArgument,
        "MissingParameter",
    );

    // Disabled and pending-deletion keys refuse every crypto operation.
    kms.disable_key(DisableKeyRequest {
        key_id: key_id.clone(),
    })
    .await
    .unwrap();
    assert_error(
        crypto
            .generate_data_key_pair(generate_req(&key_id, "EC_P256", "PEM", b""))
            .await,
        Code::FailedPrecondition,
        "Rejected.InvalidKeyState",
    );
    assert_error(
        crypto
            .decrypt(decrypt_req(&key_id, &blob, &sealed.iv, b""))
            .await,
        Code::FailedPrecondition,
        "Rejected.InvalidKeyState",
    );
    kms.enable_key(EnableKeyRequest {
        key_id: key_id.clone(),
    })
    .await
    .unwrap();
    let advance = crypto
        .advance_generate_data_key_pair_without_plaintext(
            AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                key_id: key_id.clone(),
                key_pair_spec: "EC_P256".into(),
                key_format: "PEM".into(),
                aad: Vec::new(),
            },
        )
        .await
        .unwrap()
        .into_inner();
    kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
        key_id: key_id.clone(),
        pending_window_in_days: 30,
    })
    .await
    .unwrap();
    assert_error(
        crypto
            .advance_generate_data_key_pair(AdvanceGenerateDataKeyPairRequest {
                key_id: key_id.clone(),
                key_pair_spec: "EC_P256".into(),
                key_format: "PEM".into(),
                aad: Vec::new(),
            })
            .await,
        Code::FailedPrecondition,
        "Rejected.InvalidKeyState",
    );
    assert_error(
        crypto
            .advance_decrypt(advance_decrypt_req(
                "",
                &advance.private_key_ciphertext_blob,
                b"",
            ))
            .await,
        Code::FailedPrecondition,
        "Rejected.InvalidKeyState",
    );
}

/// Keys checked the way a user would: with the `openssl` command-line tool.
#[tokio::test]
async fn openssl_accepts_the_keys_and_they_match() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let dir = temp_dir();
    for (spec, format, expect) in [
        ("RSA_2048", "PEM", "Public-Key: (2048 bit)"),
        ("RSA_3072", "DER", "Public-Key: (3072 bit)"),
        ("EC_P256", "PEM", "prime256v1"),
        ("EC_P256K", "DER", "secp256k1"),
    ] {
        let sealed = crypto
            .generate_data_key_pair_without_plaintext(GenerateDataKeyPairWithoutPlaintextRequest {
                key_id: key_id.clone(),
                key_pair_spec: spec.into(),
                key_format: format.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let private = crypto
            .decrypt(decrypt_req(
                &key_id,
                &sealed.private_key_ciphertext_blob,
                &sealed.iv,
                b"",
            ))
            .await
            .unwrap()
            .into_inner()
            .plaintext
            .clone();
        let public_path = dir.path().join(format!("{spec}.pub"));
        let private_path = dir.path().join(format!("{spec}.key"));
        std::fs::write(&public_path, &sealed.public_key).unwrap();
        std::fs::write(&private_path, &private).unwrap();

        let text = openssl(&[
            "pkey",
            "-pubin",
            "-inform",
            format,
            "-in",
            public_path.to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(
            String::from_utf8_lossy(&text).contains(expect),
            "{spec}: {}",
            String::from_utf8_lossy(&text)
        );
        openssl(&[
            "pkey",
            "-inform",
            format,
            "-in",
            private_path.to_str().unwrap(),
            "-noout",
            "-check",
        ]);
        let derived = openssl(&[
            "pkey",
            "-inform",
            format,
            "-in",
            private_path.to_str().unwrap(),
            "-pubout",
            "-outform",
            format,
        ]);
        assert_eq!(
            derived, sealed.public_key,
            "{spec}: openssl derives the returned public key"
        );
    }
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command-line tool is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
