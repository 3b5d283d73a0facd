//! End-to-end tests of the symmetric data plane over real gRPC: Encrypt,
//! AdvanceEncrypt, GenerateDataKey, AdvanceGenerateDataKey (opened by Decrypt and
//! AdvanceDecrypt), GenerateRandom and Hash.

use std::collections::BTreeSet;

use prost::Message;
use tonic::Code;

use crate::support::pb::*;
use crate::support::*;

const DECRYPTION_FAILED: &str = "The ciphertext could not be decrypted.";
const SALT: usize = 16;
const TAG: usize = 16;

fn encrypt_req(key_id: &str, plaintext: &[u8], aad: &[u8]) -> EncryptRequest {
    EncryptRequest {
        key_id: key_id.to_owned(),
        plaintext: plaintext.to_vec(),
        aad: aad.to_vec(),
        ..Default::default()
    }
}

fn advance_encrypt_req(key_id: &str, plaintext: &[u8], aad: &[u8]) -> AdvanceEncryptRequest {
    AdvanceEncryptRequest {
        key_id: key_id.to_owned(),
        plaintext: plaintext.to_vec(),
        aad: aad.to_vec(),
        ..Default::default()
    }
}

fn decrypt_req(key_id: &str, blob: &[u8], iv: &[u8], aad: &[u8]) -> DecryptRequest {
    DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        key_id: key_id.to_owned(),
        aad: aad.to_vec(),
        iv: iv.to_vec(),
        ..Default::default()
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

fn data_key_req(key_id: &str, number_of_bytes: i32, aad: &[u8]) -> GenerateDataKeyRequest {
    GenerateDataKeyRequest {
        key_id: key_id.to_owned(),
        algorithm: String::new(),
        number_of_bytes,
        aad: aad.to_vec(),
    }
}

fn assert_decryption_failed<T: std::fmt::Debug>(result: Result<T, tonic::Status>, case: &str) {
    let status = assert_error(result, Code::InvalidArgument, "InvalidParameter");
    assert_eq!(status.message(), DECRYPTION_FAILED, "{case}");
}

#[tokio::test]
async fn encrypt_and_advance_encrypt_round_trip() {
    let server = start().await;
    let key_id = create_key(&server).await;
    server
        .management()
        .create_alias(CreateAliasRequest {
            key_id: key_id.clone(),
            alias_name: "alias/sym".into(),
        })
        .await
        .unwrap();
    let primary = describe(&server, &key_id).await.primary_key_version;
    let mut crypto = server.crypto();
    for plaintext in [
        b"x".to_vec(),
        b"hello, envelope".to_vec(),
        vec![0xa5; 6 * 1024],
    ] {
        // Plain form, addressed by alias: the real key ID comes back.
        let mut request = encrypt_req("alias/sym", &plaintext, b"ctx");
        request.algorithm = "AES_GCM".into();
        let sealed = crypto.encrypt(request).await.unwrap().into_inner();
        assert_eq!(sealed.key_id, key_id);
        assert_eq!(sealed.iv.len(), 12);
        assert_eq!(sealed.algorithm, "AES_GCM");
        assert_eq!(sealed.padding_mode, "");
        assert_request_id(&sealed.request_id);
        assert_eq!(sealed.ciphertext_blob.len(), SALT + plaintext.len() + TAG);
        let opened = crypto
            .decrypt(decrypt_req(
                "alias/sym",
                &sealed.ciphertext_blob,
                &sealed.iv,
                b"ctx",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(opened.plaintext, plaintext);
        assert_eq!(opened.key_id, key_id);

        // Self-describing form: the reference's first 51 bytes, then salt, C, T.
        let advance = crypto
            .advance_encrypt(advance_encrypt_req(&key_id, &plaintext, b"ctx"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(advance.key_version_id, primary);
        assert_request_id(&advance.request_id);
        let blob = &advance.ciphertext_blob;
        assert_eq!(&blob[..3], &[b'$', 0x00, 0x02]);
        assert_eq!(&blob[3..39], primary.as_bytes());
        assert_eq!(&blob[39..51], advance.iv.as_slice());
        assert_eq!(blob.len(), 51 + SALT + plaintext.len() + TAG);
        for named in ["", key_id.as_str(), "alias/sym"] {
            let opened = crypto
                .advance_decrypt(advance_decrypt_req(named, blob, b"ctx"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(opened.plaintext, plaintext, "KeyId {named:?}");
            assert_eq!(opened.key_version_id, primary);
            assert_eq!(opened.key_id, key_id);
        }
    }
    // Two seals of one plaintext differ in IV, salt and ciphertext.
    let a = crypto
        .encrypt(encrypt_req(&key_id, b"same", b""))
        .await
        .unwrap()
        .into_inner();
    let b = crypto
        .encrypt(encrypt_req(&key_id, b"same", b""))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.iv, b.iv);
    assert_ne!(a.ciphertext_blob[..SALT], b.ciphertext_blob[..SALT]);
    assert_ne!(a.ciphertext_blob, b.ciphertext_blob);
}

#[tokio::test]
async fn data_keys_round_trip_in_both_forms() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let mut seen = BTreeSet::new();
    for (asked, expected) in [(0, 32usize), (1, 1), (32, 32), (1024, 1024)] {
        let key = crypto
            .generate_data_key(data_key_req(&key_id, asked, b"dk"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(key.key_id, key_id);
        assert_eq!(key.algorithm, "AES_GCM");
        assert_eq!(key.iv.len(), 12);
        assert_request_id(&key.request_id);
        assert_eq!(key.plaintext.len(), expected, "NumberOfBytes {asked}");
        assert_eq!(key.ciphertext_blob.len(), SALT + expected + TAG);
        assert!(seen.insert(key.plaintext.clone()), "a fresh data key");
        let opened = crypto
            .decrypt(decrypt_req(&key_id, &key.ciphertext_blob, &key.iv, b"dk"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(opened.plaintext, key.plaintext);

        let advance = crypto
            .advance_generate_data_key(AdvanceGenerateDataKeyRequest {
                key_id: key_id.clone(),
                number_of_bytes: asked,
                aad: b"dk".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(advance.plaintext.len(), expected);
        assert_eq!(&advance.ciphertext_blob[39..51], advance.iv.as_slice());
        assert!(seen.insert(advance.plaintext.clone()), "a fresh data key");
        let opened = crypto
            .advance_decrypt(advance_decrypt_req("", &advance.ciphertext_blob, b"dk"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(opened.plaintext, advance.plaintext);
        assert_eq!(opened.key_version_id, advance.key_version_id);
    }
}

#[tokio::test]
async fn tamper_wrong_aad_wrong_key_cross_form_and_truncation_fail_alike() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let other_key = create_key(&server).await;
    let mut crypto = server.crypto();
    let plain = crypto
        .encrypt(encrypt_req(&key_id, b"the plaintext", b"aad-1"))
        .await
        .unwrap()
        .into_inner();
    let (blob, iv) = (plain.ciphertext_blob.clone(), plain.iv.clone());
    let mut plain_cases: Vec<(String, DecryptRequest)> = vec![
        (
            "wrong aad".into(),
            decrypt_req(&key_id, &blob, &iv, b"aad-2"),
        ),
        ("no aad".into(), decrypt_req(&key_id, &blob, &iv, b"")),
        (
            "wrong key".into(),
            decrypt_req(&other_key, &blob, &iv, b"aad-1"),
        ),
        (
            "truncated".into(),
            decrypt_req(&key_id, &blob[..blob.len() - 1], &iv, b"aad-1"),
        ),
        (
            "salt only".into(),
            decrypt_req(&key_id, &blob[..SALT], &iv, b"aad-1"),
        ),
        (
            "salt removed".into(),
            decrypt_req(&key_id, &blob[SALT..], &iv, b"aad-1"),
        ),
    ];
    // Salt, ciphertext and tag regions.
    for index in [0, SALT - 1, SALT, blob.len() - TAG - 1, blob.len() - 1] {
        let mut tampered = blob.clone();
        tampered[index] ^= 0x01;
        plain_cases.push((
            format!("byte {index}"),
            decrypt_req(&key_id, &tampered, &iv, b"aad-1"),
        ));
    }
    let mut bad_iv = iv.clone();
    bad_iv[0] ^= 0x80;
    plain_cases.push(("iv".into(), decrypt_req(&key_id, &blob, &bad_iv, b"aad-1")));

    // Cross-form, both ways, under the same key and version (no rotation yet).
    let advance = crypto
        .advance_encrypt(advance_encrypt_req(&key_id, b"the plaintext", b"aad-1"))
        .await
        .unwrap()
        .into_inner();
    let ablob = advance.ciphertext_blob.clone();
    let header_aad = [&ablob[..39], b"aad-1"].concat();
    plain_cases.push((
        "advance blob split into Iv and the rest".into(),
        decrypt_req(&key_id, &ablob[51..], &advance.iv, &header_aad),
    ));
    plain_cases.push((
        "advance blob whole".into(),
        decrypt_req(&key_id, &ablob, &advance.iv, b"aad-1"),
    ));
    for (case, request) in plain_cases {
        assert_decryption_failed(crypto.decrypt(request).await, &case);
    }

    let mut disguised = ablob[..51].to_vec();
    disguised[39..51].copy_from_slice(&iv);
    disguised.extend_from_slice(&blob);
    let mut advance_cases: Vec<(String, AdvanceDecryptRequest)> = vec![
        (
            "plain ciphertext".into(),
            advance_decrypt_req("", &blob, b"aad-1"),
        ),
        (
            "plain ciphertext behind the advance header".into(),
            advance_decrypt_req("", &disguised, b"aad-1"),
        ),
        (
            "wrong aad".into(),
            advance_decrypt_req("", &ablob, b"aad-2"),
        ),
        (
            "wrong key".into(),
            advance_decrypt_req(&other_key, &ablob, b"aad-1"),
        ),
        (
            "truncated".into(),
            advance_decrypt_req("", &ablob[..ablob.len() - 1], b"aad-1"),
        ),
        (
            "header and iv only".into(),
            advance_decrypt_req("", &ablob[..51], b"aad-1"),
        ),
    ];
    for index in [0usize, 1, 2, 3, 38, 39, 50, 51, 66, 67, ablob.len() - 1] {
        let mut tampered = ablob.clone();
        tampered[index] ^= 0x01;
        advance_cases.push((
            format!("byte {index}"),
            advance_decrypt_req("", &tampered, b"aad-1"),
        ));
    }
    for (case, request) in advance_cases {
        assert_decryption_failed(crypto.advance_decrypt(request).await, &case);
    }
    // The untouched ciphertexts still open.
    crypto
        .decrypt(decrypt_req(&key_id, &blob, &iv, b"aad-1"))
        .await
        .unwrap();
    crypto
        .advance_decrypt(advance_decrypt_req("", &ablob, b"aad-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn limits_and_missing_parameters_get_their_codes() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let invalid = |code: &str| (Code::InvalidArgument, code.to_owned());
    let too_big = assert_error(
        crypto
            .encrypt(encrypt_req(&key_id, &[0; 6 * 1024 + 1], b""))
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert!(
        too_big.message().contains("6144") && too_big.message().contains("GenerateDataKey"),
        "{too_big:?}"
    );
    let too_big = assert_error(
        crypto
            .advance_encrypt(advance_encrypt_req(&key_id, &[0; 6 * 1024 + 1], b""))
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert!(too_big.message().contains("GenerateDataKey"));

    let base = encrypt_req(&key_id, b"x", b"");
    let cases: Vec<(EncryptRequest, (Code, String), &str)> = vec![
        (
            EncryptRequest {
                iv: vec![0; 12],
                ..base.clone()
            },
            invalid("InvalidParameter"),
            "Iv",
        ),
        (
            EncryptRequest {
                algorithm: "AES_CBC".into(),
                ..base.clone()
            },
            invalid("InvalidParameter"),
            "Algorithm",
        ),
        (
            EncryptRequest {
                padding_mode: "PKCS7".into(),
                ..base.clone()
            },
            invalid("InvalidParameter"),
            "PaddingMode",
        ),
        (
            EncryptRequest {
                aad: vec![0; 8193],
                ..base.clone()
            },
            invalid("InvalidParameter"),
            "Aad",
        ),
        (
            EncryptRequest {
                key_id: String::new(),
                ..base.clone()
            },
            invalid("MissingParameter"),
            "KeyId",
        ),
        (
            EncryptRequest {
                plaintext: Vec::new(),
                ..base.clone()
            },
            invalid("MissingParameter"),
            "Plaintext",
        ),
        (
            EncryptRequest {
                key_id: "key-doesnotexist0000000".into(),
                ..base.clone()
            },
            (Code::NotFound, "Forbidden.KeyNotFound".into()),
            "key-doesnotexist",
        ),
    ];
    for (request, (code, reason_code), mentions) in cases {
        let advance = AdvanceEncryptRequest {
            key_id: request.key_id.clone(),
            plaintext: request.plaintext.clone(),
            algorithm: request.algorithm.clone(),
            aad: request.aad.clone(),
            iv: request.iv.clone(),
            padding_mode: request.padding_mode.clone(),
        };
        for status in [
            assert_error(crypto.encrypt(request).await, code, &reason_code),
            assert_error(crypto.advance_encrypt(advance).await, code, &reason_code),
        ] {
            assert!(
                status.message().contains(mentions),
                "{status:?} should mention {mentions}"
            );
        }
    }
    // The largest AAD and plaintext are fine.
    crypto
        .encrypt(encrypt_req(&key_id, &[1; 6 * 1024], &[7; 8192]))
        .await
        .unwrap();

    for bad in [-1, 1025, i32::MAX] {
        let status = assert_error(
            crypto
                .generate_data_key(data_key_req(&key_id, bad, b""))
                .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
        assert!(status.message().contains("NumberOfBytes"), "{status:?}");
        assert_error(
            crypto
                .advance_generate_data_key(AdvanceGenerateDataKeyRequest {
                    key_id: key_id.clone(),
                    number_of_bytes: bad,
                    aad: Vec::new(),
                })
                .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
    assert_error(
        crypto.generate_data_key(data_key_req("", 32, b"")).await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    let mut wrong_algorithm = data_key_req(&key_id, 32, b"");
    wrong_algorithm.algorithm = "SM4".into();
    assert_error(
        crypto.generate_data_key(wrong_algorithm).await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_error(
        crypto
            .generate_data_key(data_key_req(&key_id, 32, &[0; 8193]))
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );

    assert_error(
        crypto
            .generate_random(GenerateRandomRequest { length: 0 })
            .await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    for bad in [-5, 1025] {
        let status = assert_error(
            crypto
                .generate_random(GenerateRandomRequest { length: bad })
                .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
        assert!(status.message().contains("Length"), "{status:?}");
    }
    for bad in ["MD5", "SHA-1", "sha-256", "SM3"] {
        let status = assert_error(
            crypto
                .hash(HashRequest {
                    message: b"abc".to_vec(),
                    algorithm: bad.into(),
                })
                .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
        assert!(status.message().contains("SHA-256"), "{status:?}");
    }
}

#[tokio::test]
async fn disabled_and_pending_deletion_keys_are_refused() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let mut kms = server.management();
    let plain = crypto
        .encrypt(encrypt_req(&key_id, b"data", b""))
        .await
        .unwrap()
        .into_inner();
    let advance = crypto
        .advance_encrypt(advance_encrypt_req(&key_id, b"data", b""))
        .await
        .unwrap()
        .into_inner();

    async fn refused(
        crypto: &mut crypto_service_client::CryptoServiceClient<tonic::transport::Channel>,
        key_id: &str,
        plain: &EncryptResponse,
        advance: &AdvanceEncryptResponse,
        state: &str,
    ) {
        let check = |result: Result<(), tonic::Status>, op: &str| {
            let status = assert_error(result, Code::FailedPrecondition, "Rejected.InvalidKeyState");
            assert!(status.message().contains(state), "{op}: {status:?}");
        };
        check(
            crypto
                .encrypt(encrypt_req(key_id, b"x", b""))
                .await
                .map(drop),
            "Encrypt",
        );
        check(
            crypto
                .advance_encrypt(advance_encrypt_req(key_id, b"x", b""))
                .await
                .map(drop),
            "AdvanceEncrypt",
        );
        check(
            crypto
                .generate_data_key(data_key_req(key_id, 32, b""))
                .await
                .map(drop),
            "GenerateDataKey",
        );
        check(
            crypto
                .advance_generate_data_key(AdvanceGenerateDataKeyRequest {
                    key_id: key_id.to_owned(),
                    number_of_bytes: 32,
                    aad: Vec::new(),
                })
                .await
                .map(drop),
            "AdvanceGenerateDataKey",
        );
        check(
            crypto
                .decrypt(decrypt_req(key_id, &plain.ciphertext_blob, &plain.iv, b""))
                .await
                .map(drop),
            "Decrypt",
        );
        check(
            crypto
                .advance_decrypt(advance_decrypt_req(key_id, &advance.ciphertext_blob, b""))
                .await
                .map(drop),
            "AdvanceDecrypt",
        );
    }

    kms.disable_key(DisableKeyRequest {
        key_id: key_id.clone(),
    })
    .await
    .unwrap();
    refused(&mut crypto, &key_id, &plain, &advance, "Disabled").await;
    kms.enable_key(EnableKeyRequest {
        key_id: key_id.clone(),
    })
    .await
    .unwrap();
    kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
        key_id: key_id.clone(),
        pending_window_in_days: 7,
    })
    .await
    .unwrap();
    refused(&mut crypto, &key_id, &plain, &advance, "PendingDeletion").await;
    // GenerateRandom and Hash need no key and keep working.
    crypto
        .generate_random(GenerateRandomRequest { length: 8 })
        .await
        .unwrap();
    kms.cancel_key_deletion(CancelKeyDeletionRequest {
        key_id: key_id.clone(),
    })
    .await
    .unwrap();
    crypto
        .decrypt(decrypt_req(&key_id, &plain.ciphertext_blob, &plain.iv, b""))
        .await
        .unwrap();
}

#[tokio::test]
async fn after_rotation_advance_decrypt_opens_old_and_new_blobs() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let mut kms = server.management();
    let initial = describe(&server, &key_id).await.initial_key_version;
    let mut blobs = Vec::new();
    let mut plains = Vec::new();
    for round in 0u8..3 {
        if round > 0 {
            kms.create_key_version(CreateKeyVersionRequest {
                key_id: key_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let primary = describe(&server, &key_id).await.primary_key_version;
        let advance = crypto
            .advance_encrypt(advance_encrypt_req(&key_id, &[round; 40], &[round]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(advance.key_version_id, primary);
        let data_key = crypto
            .advance_generate_data_key(AdvanceGenerateDataKeyRequest {
                key_id: key_id.clone(),
                number_of_bytes: 16,
                aad: vec![round],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(data_key.key_version_id, primary);
        blobs.push((
            advance.ciphertext_blob,
            vec![round; 40],
            round,
            primary.clone(),
        ));
        blobs.push((
            data_key.ciphertext_blob.clone(),
            data_key.plaintext.clone(),
            round,
            primary,
        ));
        // The plain form keeps sealing under the initial version.
        plains.push(
            crypto
                .encrypt(encrypt_req(&key_id, &[round; 8], b""))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let versions: BTreeSet<_> = blobs.iter().map(|b| b.3.clone()).collect();
    assert_eq!(versions.len(), 3);
    assert!(versions.contains(&initial));
    for (blob, plaintext, round, version) in &blobs {
        let opened = crypto
            .advance_decrypt(advance_decrypt_req("", blob, &[*round]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&opened.plaintext, plaintext);
        assert_eq!(&opened.key_version_id, version);
    }
    for (round, plain) in plains.iter().enumerate() {
        let opened = crypto
            .decrypt(decrypt_req(&key_id, &plain.ciphertext_blob, &plain.iv, b""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(opened.plaintext, vec![round as u8; 8]);
    }
}

#[tokio::test]
async fn hash_matches_known_vectors_and_random_bytes_are_fresh() {
    let server = start().await;
    let mut crypto = server.crypto();
    // FIPS 180-4 examples for "abc".
    for (algorithm, expected) in [
        (
            "SHA-256",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "SHA-384",
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            "SHA-512",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ] {
        let response = crypto
            .hash(HashRequest {
                message: b"abc".to_vec(),
                algorithm: algorithm.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(hex::encode(&response.digest), expected, "{algorithm:?}");
        assert_request_id(&response.request_id);
    }
    // The empty message has a digest too.
    let empty = crypto
        .hash(HashRequest {
            message: Vec::new(),
            algorithm: "SHA-256".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hex::encode(&empty.digest),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );

    let mut seen = BTreeSet::new();
    for length in [1, 2, 16, 32, 33, 1000, 1024] {
        let response = crypto
            .generate_random(GenerateRandomRequest { length })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.random.len(), length as usize);
        assert_request_id(&response.request_id);
        if length >= 16 {
            assert!(
                seen.insert(response.random.clone()),
                "distinct at length {length}"
            );
        }
    }
    for _ in 0..20 {
        let response = crypto
            .generate_random(GenerateRandomRequest { length: 32 })
            .await
            .unwrap()
            .into_inner();
        assert!(
            seen.insert(response.random.clone()),
            "distinct 32-byte outputs"
        );
    }
}

// === the official SDK's message shapes (reference section 2 / 2b) ===

/// Messages as the SDK declares them: its field names, the reference's numbers and types.
mod sdk {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EncryptRequest {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub plaintext: Vec<u8>,
        #[prost(string, tag = "3")]
        pub algorithm: String,
        #[prost(bytes = "vec", tag = "4")]
        pub aad: Vec<u8>,
        #[prost(bytes = "vec", tag = "5")]
        pub iv: Vec<u8>,
        #[prost(string, tag = "6")]
        pub padding_mode: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EncryptResponse {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ciphertext_blob: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub iv: Vec<u8>,
        #[prost(string, tag = "4")]
        pub request_id: String,
        #[prost(string, tag = "5")]
        pub algorithm: String,
        #[prost(string, tag = "6")]
        pub padding_mode: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdvanceEncryptResponse {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ciphertext_blob: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub iv: Vec<u8>,
        #[prost(string, tag = "4")]
        pub request_id: String,
        #[prost(string, tag = "5")]
        pub algorithm: String,
        #[prost(string, tag = "6")]
        pub padding_mode: String,
        #[prost(string, tag = "7")]
        pub key_version_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GenerateDataKeyRequest {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(string, tag = "2")]
        pub algorithm: String,
        #[prost(int32, tag = "3")]
        pub number_of_bytes: i32,
        #[prost(bytes = "vec", tag = "4")]
        pub aad: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GenerateDataKeyResponse {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub iv: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub plaintext: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub ciphertext_blob: Vec<u8>,
        #[prost(string, tag = "5")]
        pub request_id: String,
        #[prost(string, tag = "6")]
        pub algorithm: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdvanceGenerateDataKeyRequest {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(int32, tag = "2")]
        pub number_of_bytes: i32,
        #[prost(bytes = "vec", tag = "3")]
        pub aad: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdvanceGenerateDataKeyResponse {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub iv: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub plaintext: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub ciphertext_blob: Vec<u8>,
        #[prost(string, tag = "5")]
        pub request_id: String,
        #[prost(string, tag = "6")]
        pub algorithm: String,
        #[prost(string, tag = "7")]
        pub key_version_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GenerateRandomResponse {
        #[prost(bytes = "vec", tag = "1")]
        pub random: Vec<u8>,
        #[prost(string, tag = "2")]
        pub request_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HashRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub message: Vec<u8>,
        #[prost(string, tag = "2")]
        pub algorithm: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HashResponse {
        #[prost(bytes = "vec", tag = "1")]
        pub digest: Vec<u8>,
        #[prost(string, tag = "3")]
        pub request_id: String,
    }
}

/// Re-encodes `message` as the wire bytes and decodes them as `T`.
fn as_sdk<T: Message + Default>(message: &impl Message) -> T {
    T::decode(message.encode_to_vec().as_slice()).expect("the SDK's message decodes")
}

#[tokio::test]
async fn the_sdk_messages_decode_what_kmsd_returns() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();

    // SDK requests, as bytes, decode as kmsd's requests.
    let request: EncryptRequest = as_sdk(&sdk::EncryptRequest {
        key_id: key_id.clone(),
        plaintext: b"sdk".to_vec(),
        algorithm: "AES_GCM".into(),
        aad: b"a".to_vec(),
        ..Default::default()
    });
    let response = crypto.encrypt(request).await.unwrap().into_inner();
    let sealed: sdk::EncryptResponse = as_sdk(&response);
    assert_eq!(sealed.key_id, key_id);
    assert_eq!(sealed.ciphertext_blob, response.ciphertext_blob);
    assert_eq!(sealed.iv, response.iv);
    assert_eq!(sealed.request_id, response.request_id);
    assert_eq!(sealed.algorithm, "AES_GCM");
    let opened = crypto
        .decrypt(decrypt_req(
            &key_id,
            &sealed.ciphertext_blob,
            &sealed.iv,
            b"a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"sdk");

    let advance: sdk::AdvanceEncryptResponse = as_sdk(
        &crypto
            .advance_encrypt(advance_encrypt_req(&key_id, b"sdk", b""))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        advance.key_version_id,
        describe(&server, &key_id).await.primary_key_version
    );
    assert_eq!(&advance.ciphertext_blob[39..51], advance.iv.as_slice());

    let request: GenerateDataKeyRequest = as_sdk(&sdk::GenerateDataKeyRequest {
        key_id: key_id.clone(),
        number_of_bytes: 24,
        ..Default::default()
    });
    let key: sdk::GenerateDataKeyResponse = as_sdk(
        &crypto
            .generate_data_key(request)
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(key.plaintext.len(), 24);
    assert_eq!(key.iv.len(), 12);
    assert_eq!(key.algorithm, "AES_GCM");
    assert_request_id(&key.request_id);

    let request: AdvanceGenerateDataKeyRequest = as_sdk(&sdk::AdvanceGenerateDataKeyRequest {
        key_id: key_id.clone(),
        number_of_bytes: 8,
        aad: b"x".to_vec(),
    });
    let key: sdk::AdvanceGenerateDataKeyResponse = as_sdk(
        &crypto
            .advance_generate_data_key(request)
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(key.plaintext.len(), 8);
    assert!(!key.key_version_id.is_empty());

    let random: sdk::GenerateRandomResponse = as_sdk(
        &crypto
            .generate_random(GenerateRandomRequest { length: 12 })
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(random.random.len(), 12);
    assert_request_id(&random.request_id);

    let request: HashRequest = as_sdk(&sdk::HashRequest {
        message: b"abc".to_vec(),
        algorithm: "SHA-256".into(),
    });
    let digest: sdk::HashResponse = as_sdk(&crypto.hash(request).await.unwrap().into_inner());
    assert_eq!(digest.digest.len(), 32);
    assert_request_id(&digest.request_id);
}
