//! End-to-end tests of RSA encryption keys (`RSA_2048`, `RSA_3072` with usage
//! `ENCRYPT/DECRYPT`) over real gRPC: Encrypt / Decrypt with both RSAES-OAEP
//! algorithms up to the OAEP limit, interop with the `openssl` command line (it
//! encrypts with GetPublicKey's key, kmsd decrypts), the one byte-identical error for
//! every undecryptable ciphertext, and the refusals (a disabled key, Sign, the AES-only
//! operations, parameters RSAES-OAEP has no use for).

use std::path::Path;

use tonic::Code;

use crate::signing::openssl;
use crate::support::pb::*;
use crate::support::*;

const ALGORITHMS: [&str; 2] = ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"];

async fn create(server: &TestServer, spec: &str) -> KeyMetadata {
    server
        .management()
        .create_key(CreateKeyRequest {
            key_spec: spec.into(),
            key_usage: "ENCRYPT/DECRYPT".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("CreateKey {spec}: {status:?}"))
        .into_inner()
        .key_metadata
        .expect("KeyMetadata")
}

fn encrypt_req(key_id: &str, algorithm: &str, plaintext: &[u8]) -> EncryptRequest {
    EncryptRequest {
        key_id: key_id.into(),
        algorithm: algorithm.into(),
        plaintext: plaintext.to_vec(),
        ..Default::default()
    }
}

fn decrypt_req(key_id: &str, algorithm: &str, ciphertext: &[u8]) -> DecryptRequest {
    DecryptRequest {
        key_id: key_id.into(),
        algorithm: algorithm.into(),
        ciphertext_blob: ciphertext.to_vec(),
        ..Default::default()
    }
}

/// The OAEP limit, `k - 2*hLen - 2`.
fn limit(spec: &str, algorithm: &str) -> usize {
    let k = if spec == "RSA_2048" { 256 } else { 384 };
    let h = if algorithm == "RSAES_OAEP_SHA_256" {
        32
    } else {
        20
    };
    k - 2 * h - 2
}

async fn public_pem(server: &TestServer, key_id: &str) -> String {
    server
        .crypto()
        .get_public_key(GetPublicKeyRequest {
            key_id: key_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .public_key
}

/// `openssl pkeyutl -encrypt` of `plaintext` under the PEM public key in
/// `dir/public.pem`, with OAEP of `algorithm` (and a label, if given).
fn openssl_encrypt(dir: &Path, algorithm: &str, plaintext: &[u8], label: Option<&str>) -> Vec<u8> {
    let md = if algorithm == "RSAES_OAEP_SHA_256" {
        "sha256"
    } else {
        "sha1"
    };
    std::fs::write(dir.join("plain.bin"), plaintext).unwrap();
    let (oaep_md, mgf1_md) = (format!("rsa_oaep_md:{md}"), format!("rsa_mgf1_md:{md}"));
    let label_opt = label.map(|l| format!("rsa_oaep_label:{}", hex::encode(l)));
    let mut args = vec![
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        "public.pem",
        "-in",
        "plain.bin",
        "-out",
        "sealed.bin",
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        &oaep_md,
        "-pkeyopt",
        &mgf1_md,
    ];
    if let Some(label_opt) = &label_opt {
        args.extend(["-pkeyopt", label_opt]);
    }
    let (ok, output) = openssl(dir, &args);
    assert!(ok, "{output}");
    std::fs::read(dir.join("sealed.bin")).unwrap()
}

/// A failed call's status as bytes a caller can compare: code, message, and the
/// details with the request ID (the one thing that differs per call) blanked.
fn status_bytes(status: &tonic::Status) -> (Code, Vec<u8>, Vec<u8>) {
    let request_id = status
        .metadata()
        .get("x-kms-request-id")
        .expect("x-kms-request-id")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(request_id.len(), 36);
    let mut details = status.details().to_vec();
    let needle = request_id.as_bytes();
    let mut blanked = 0;
    let mut i = 0;
    while i + needle.len() <= details.len() {
        if &details[i..i + needle.len()] == needle {
            details[i..i + needle.len()].fill(b'-');
            blanked += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    assert!(blanked >= 1, "the request ID is in the details");
    (status.code(), status.message().as_bytes().to_vec(), details)
}

#[tokio::test]
async fn both_algorithms_round_trip_up_to_the_oaep_limit_on_both_sizes() {
    let server = start_with(|config| config.pool = PoolConfig::uniform(1)).await;
    let mut crypto = server.crypto();
    for spec in ["RSA_2048", "RSA_3072"] {
        let key = create(&server, spec).await;
        assert_eq!(
            (key.key_spec.as_str(), key.key_usage.as_str()),
            (spec, "ENCRYPT/DECRYPT")
        );
        let modulus = if spec == "RSA_2048" { 256 } else { 384 };
        for algorithm in ALGORITHMS {
            let max = limit(spec, algorithm);
            for plaintext in [b"a short secret".to_vec(), vec![0xa5; max]] {
                let sealed = crypto
                    .encrypt(encrypt_req(&key.key_id, algorithm, &plaintext))
                    .await
                    .unwrap_or_else(|s| panic!("{spec} {algorithm}: {s:?}"))
                    .into_inner();
                assert_eq!(sealed.key_id, key.key_id);
                assert_eq!(sealed.algorithm, algorithm);
                assert!(sealed.iv.is_empty(), "RSAES-OAEP has no IV");
                assert_eq!(sealed.ciphertext_blob.len(), modulus);
                assert_request_id(&sealed.request_id);
                let opened = crypto
                    .decrypt(decrypt_req(&key.key_id, algorithm, &sealed.ciphertext_blob))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(opened.plaintext == plaintext, "{spec} {algorithm}");
                assert_eq!(opened.algorithm, algorithm);
                assert_eq!(opened.key_id, key.key_id);
            }
            let over = assert_error(
                crypto
                    .encrypt(encrypt_req(&key.key_id, algorithm, &vec![1; max + 1]))
                    .await,
                Code::InvalidArgument,
                "InvalidParameter",
            );
            assert!(
                over.message().contains(&format!("at most {max}"))
                    && over.message().contains("OAEP limit"),
                "{over:?}"
            );
        }
    }
}

#[tokio::test]
async fn openssl_encrypts_to_the_public_key_and_kmsd_decrypts() {
    let server = start_with(|config| config.pool = PoolConfig::uniform(1)).await;
    let tmp = temp_dir();
    let dir = tmp.path();
    let mut crypto = server.crypto();
    for spec in ["RSA_2048", "RSA_3072"] {
        let key = create(&server, spec).await;
        let pem = public_pem(&server, &key.key_id).await;
        std::fs::write(dir.join("public.pem"), &pem).unwrap();
        let (ok, text) = openssl(dir, &["pkey", "-pubin", "-in", "public.pem", "-text"]);
        let bits = &spec[4..];
        assert!(ok && text.contains(&format!("({bits} bit)")), "{text}");
        for algorithm in ALGORITHMS {
            let plaintext = vec![0x3c; limit(spec, algorithm)];
            let sealed = openssl_encrypt(dir, algorithm, &plaintext, None);
            let opened = crypto
                .decrypt(decrypt_req(&key.key_id, algorithm, &sealed))
                .await
                .unwrap_or_else(|s| panic!("{spec} {algorithm}: {s:?}"))
                .into_inner();
            assert!(opened.plaintext == plaintext, "{spec} {algorithm}");
            // openssl's ciphertext under the other algorithm does not open.
            let other = ALGORITHMS.iter().find(|a| **a != algorithm).unwrap();
            assert_error(
                crypto
                    .decrypt(decrypt_req(&key.key_id, other, &sealed))
                    .await,
                Code::InvalidArgument,
                "InvalidParameter",
            );
        }
    }
}

#[tokio::test]
async fn every_undecryptable_ciphertext_gets_the_same_status_byte_for_byte() {
    let server = start_with(|config| config.pool = PoolConfig::uniform(1)).await;
    let tmp = temp_dir();
    let dir = tmp.path();
    let mut crypto = server.crypto();
    let key = create(&server, "RSA_2048").await;
    let other = create(&server, "RSA_2048").await;
    let algorithm = "RSAES_OAEP_SHA_256";
    let sealed = crypto
        .encrypt(encrypt_req(&key.key_id, algorithm, b"the secret"))
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob;
    std::fs::write(
        dir.join("public.pem"),
        public_pem(&server, &key.key_id).await,
    )
    .unwrap();
    let labelled = openssl_encrypt(dir, algorithm, b"the secret", Some("a label"));
    let for_other = crypto
        .encrypt(encrypt_req(&other.key_id, algorithm, b"the secret"))
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob;
    let mut flipped = sealed.clone();
    flipped[17] ^= 0x01;
    let mut last_bit = sealed.clone();
    *last_bit.last_mut().unwrap() ^= 0x80;
    let mut longer = sealed.clone();
    longer.push(0);
    let cases: [(&str, &[u8], &str); 8] = [
        ("truncated", &sealed[..sealed.len() - 1], algorithm),
        ("bit-flipped", &flipped, algorithm),
        ("last bit flipped", &last_bit, algorithm),
        ("one byte longer", &longer, algorithm),
        ("another label", &labelled, algorithm),
        ("another key's", &for_other, algorithm),
        ("the other algorithm", &sealed, "RSAES_OAEP_SHA_1"),
        ("not below the modulus", &[0xff; 256], algorithm),
    ];
    let mut first: Option<(Code, Vec<u8>, Vec<u8>)> = None;
    for (what, ciphertext, algorithm) in cases {
        let status = assert_error(
            crypto
                .decrypt(decrypt_req(&key.key_id, algorithm, ciphertext))
                .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
        let bytes = status_bytes(&status);
        match &first {
            None => first = Some(bytes),
            Some(first) => assert!(*first == bytes, "{what}: {status:?}"),
        }
    }
    // And it is the answer an AES key gives for a ciphertext that does not open.
    let aes = server
        .management()
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    let aes_failure = assert_error(
        crypto
            .decrypt(DecryptRequest {
                key_id: aes.key_id,
                ciphertext_blob: vec![0; 64],
                iv: vec![0; 12],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert!(first.unwrap() == status_bytes(&aes_failure));
    // The ciphertext itself still opens: nothing above damaged the key.
    let opened = crypto
        .decrypt(decrypt_req(&key.key_id, algorithm, &sealed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"the secret");
}

#[tokio::test]
async fn refusals_name_what_is_wrong_before_the_key_is_used() {
    let server = start_with(|config| config.pool = PoolConfig::uniform(1)).await;
    let mut crypto = server.crypto();
    let key = create(&server, "RSA_2048").await;
    let id = key.key_id.as_str();
    let sealed = crypto
        .encrypt(encrypt_req(id, "RSAES_OAEP_SHA_1", b"x"))
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob;
    let invalid = "InvalidParameter";
    // No algorithm, or AES's: the key needs an RSAES one.
    assert_error(
        crypto.encrypt(encrypt_req(id, "", b"x")).await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    let aes_gcm = assert_error(
        crypto.encrypt(encrypt_req(id, "AES_GCM", b"x")).await,
        Code::InvalidArgument,
        invalid,
    );
    assert!(
        aes_gcm
            .message()
            .contains("RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1"),
        "{aes_gcm:?}"
    );
    assert_error(
        crypto
            .decrypt(DecryptRequest {
                iv: vec![0; 12],
                ..decrypt_req(id, "", &sealed)
            })
            .await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    let unknown = assert_error(
        crypto
            .encrypt(encrypt_req(id, "RSAES_OAEP_SHA_512", b"x"))
            .await,
        Code::InvalidArgument,
        invalid,
    );
    assert!(unknown.message().contains("AES_GCM"), "{unknown:?}");
    // Iv, Aad and PaddingMode have no meaning for RSAES-OAEP.
    for (request, what) in [
        (
            EncryptRequest {
                iv: vec![0; 12],
                ..encrypt_req(id, ALGORITHMS[0], b"x")
            },
            "Iv",
        ),
        (
            EncryptRequest {
                aad: b"context".to_vec(),
                ..encrypt_req(id, ALGORITHMS[0], b"x")
            },
            "Aad",
        ),
        (
            EncryptRequest {
                padding_mode: "PKCS1".into(),
                ..encrypt_req(id, ALGORITHMS[0], b"x")
            },
            "PaddingMode",
        ),
    ] {
        let status = assert_error(
            crypto.encrypt(request).await,
            Code::InvalidArgument,
            invalid,
        );
        assert!(status.message().starts_with(what), "{status:?}");
    }
    let status = assert_error(
        crypto
            .decrypt(DecryptRequest {
                aad: b"context".to_vec(),
                ..decrypt_req(id, "RSAES_OAEP_SHA_1", &sealed)
            })
            .await,
        Code::InvalidArgument,
        invalid,
    );
    assert!(status.message().starts_with("Aad"), "{status:?}");
    // An RSAES algorithm on an AES key.
    let aes = server
        .management()
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    let status = assert_error(
        crypto
            .encrypt(encrypt_req(&aes.key_id, "RSAES_OAEP_SHA_256", b"x"))
            .await,
        Code::InvalidArgument,
        invalid,
    );
    assert!(status.message().contains("AES_GCM"), "{status:?}");

    // An encryption key never signs, and the AES-only operations refuse it.
    let unsupported = "Rejected.UnsupportedOperation";
    for algorithm in ["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"] {
        let status = assert_error(
            crypto
                .sign(SignRequest {
                    key_id: id.into(),
                    algorithm: algorithm.into(),
                    message: b"m".to_vec(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
        assert!(status.message().contains("SIGN/VERIFY"), "{status:?}");
        assert_error(
            crypto
                .verify(VerifyRequest {
                    key_id: id.into(),
                    algorithm: algorithm.into(),
                    message: b"m".to_vec(),
                    signature: vec![0; 256],
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            unsupported,
        );
    }
    assert_error(
        crypto
            .advance_encrypt(AdvanceEncryptRequest {
                key_id: id.into(),
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
                key_id: id.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        unsupported,
    );
    // Nor does it rotate.
    assert_error(
        server
            .management()
            .create_key_version(CreateKeyVersionRequest {
                key_id: id.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        unsupported,
    );
    // A signing RSA key does not decrypt.
    let signing = server
        .management()
        .create_key(CreateKeyRequest {
            key_spec: "RSA_2048".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(signing.key_usage, "SIGN/VERIFY");
    assert_error(
        crypto
            .decrypt(decrypt_req(&signing.key_id, "RSAES_OAEP_SHA_1", &sealed))
            .await,
        Code::InvalidArgument,
        unsupported,
    );
}

#[tokio::test]
async fn a_disabled_key_is_refused_and_opens_again_once_enabled() {
    let server = start_with(|config| config.pool = PoolConfig::uniform(1)).await;
    let mut crypto = server.crypto();
    let key = create(&server, "RSA_3072").await;
    let algorithm = "RSAES_OAEP_SHA_256";
    let sealed = crypto
        .encrypt(encrypt_req(&key.key_id, algorithm, b"kept"))
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob;
    server
        .management()
        .disable_key(DisableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    let state = "Rejected.InvalidKeyState";
    assert_error(
        crypto
            .encrypt(encrypt_req(&key.key_id, algorithm, b"x"))
            .await,
        Code::FailedPrecondition,
        state,
    );
    assert_error(
        crypto
            .decrypt(decrypt_req(&key.key_id, algorithm, &sealed))
            .await,
        Code::FailedPrecondition,
        state,
    );
    assert_error(
        crypto
            .get_public_key(GetPublicKeyRequest {
                key_id: key.key_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        state,
    );
    server
        .management()
        .enable_key(EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    let opened = crypto
        .decrypt(decrypt_req(&key.key_id, algorithm, &sealed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"kept");
}
