//! Stores and ciphertexts made by earlier builds, committed under
//! `tests/data/fixtures/`, that every later build must still open: a store of each
//! format with its root key, and what was sealed, signed and MACed under its keys,
//! in every form (Encrypt, AdvanceEncrypt, GenerateDataKey, AdvanceGenerateDataKey,
//! the four data key pair operations, Sign, Hmac; secrets from format 2; a key made
//! with an idempotency token from format 3, whose token still answers it). A change
//! that breaks any of them
//! fails here; `docs/compatibility.md` says why that must never happen.
//!
//! A new set is made only when the store format changes (never rewritten):
//! `KMSD_WRITE_FIXTURES=1 cargo test --test e2e fixtures::write -- --ignored`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data_key_pairs::check_key_pair;
use crate::support::pb::*;
use crate::support::*;

/// The fixture sets, one per store format; each must open with this build.
const SETS: &[&str] = &["store-format-1", "store-format-2", "store-format-3"];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

/// Bytes as base64 in the JSON, so the fixtures stay reviewable text.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What a fixture set holds besides the store: what its keys made.
#[derive(Serialize, Deserialize)]
struct Expected {
    /// The kmsd that made the set (`kmsd --version`'s text).
    made_by: String,
    /// The symmetric key (two versions: Encrypt used the first, Advance* the second).
    symmetric_key: String,
    /// An alias of the symmetric key, used as the KeyId of some cases.
    alias: String,
    sealed: Vec<Sealed>,
    key_pairs: Vec<KeyPair>,
    signatures: Vec<Signature>,
    macs: Vec<Mac>,
    /// Secrets and their versions (store format 2 on).
    #[serde(default)]
    secrets: Vec<Secret>,
    /// Keys made with an idempotency token (store format 3 on): the set's clock is the
    /// tests' fixed one, so the token is still live when a later build opens it.
    #[serde(default)]
    idempotent_keys: Vec<IdempotentKey>,
}

/// A CreateKey made with an idempotency token, and the key it made.
#[derive(Serialize, Deserialize)]
struct IdempotentKey {
    token: String,
    description: String,
    key_id: String,
}

/// A secret version as GetSecretValue returns it.
#[derive(Serialize, Deserialize)]
struct Secret {
    name: String,
    version_id: String,
    data_type: String,
    data: String,
}

/// Encrypt, AdvanceEncrypt, GenerateDataKey or AdvanceGenerateDataKey's output.
#[derive(Serialize, Deserialize)]
struct Sealed {
    operation: String,
    key_id: String,
    #[serde(with = "b64")]
    aad: Vec<u8>,
    #[serde(with = "b64")]
    iv: Vec<u8>,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
    #[serde(with = "b64")]
    plaintext: Vec<u8>,
}

/// One of the four data key pair operations' output (`private_key` empty for the
/// WithoutPlaintext forms).
#[derive(Serialize, Deserialize)]
struct KeyPair {
    operation: String,
    key_id: String,
    spec: String,
    format: String,
    #[serde(with = "b64")]
    aad: Vec<u8>,
    #[serde(with = "b64")]
    iv: Vec<u8>,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
    #[serde(with = "b64")]
    public_key: Vec<u8>,
    #[serde(with = "b64")]
    private_key: Vec<u8>,
}

/// A Sign answer, with the key's public key as GetPublicKey gave it.
#[derive(Serialize, Deserialize)]
struct Signature {
    key_id: String,
    algorithm: String,
    public_key: String,
    #[serde(with = "b64")]
    message: Vec<u8>,
    #[serde(with = "b64")]
    signature: Vec<u8>,
}

/// An Hmac answer.
#[derive(Serialize, Deserialize)]
struct Mac {
    key_id: String,
    #[serde(with = "b64")]
    message: Vec<u8>,
    #[serde(with = "b64")]
    mac: Vec<u8>,
}

/// Starts a server on a copy of fixture set `name` (the committed files are never
/// opened for writing: a migration would change them).
async fn start_on(name: &str) -> (TestServer, Expected, tempfile::TempDir) {
    let set = fixtures_dir().join(name);
    let dir = temp_dir();
    std::fs::copy(set.join("kmsd.redb"), dir.path().join("kmsd.redb")).unwrap();
    // Git keeps no file modes; kmsd refuses a root key others may read.
    let root_key = std::fs::read(set.join("root.key")).unwrap();
    write_root_key(&dir.path().join("root.key"), &root_key);
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(set.join("expected.json")).unwrap()).unwrap();
    let server = try_start(test_config(dir.path()), start_clock())
        .await
        .unwrap_or_else(|err| panic!("{name} opens: {err:?}"));
    (server, expected, dir)
}

#[tokio::test]
async fn every_committed_store_and_ciphertext_still_opens() {
    for name in SETS {
        let (server, expected, _dir) = start_on(name).await;
        check_set(name, &server, &expected).await;
        server.stop().await;
    }
}

async fn check_set(name: &str, server: &TestServer, expected: &Expected) {
    let mut crypto = server.crypto();
    let mut management = server.management();

    let versions = management
        .list_key_versions(ListKeyVersionsRequest {
            key_id: expected.symmetric_key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.key_versions.len(), 2, "{name}: both versions kept");
    let aliased = describe(server, &expected.alias).await;
    assert_eq!(aliased.key_id, expected.symmetric_key, "{name}: the alias");

    assert_eq!(expected.sealed.len(), 4, "{name}: every sealing form");
    for case in &expected.sealed {
        let opened = open(&mut crypto, &case.operation, &case.key_id, case).await;
        assert_eq!(opened, case.plaintext, "{name}: {}", case.operation);
    }

    assert!(expected.key_pairs.len() >= 4, "{name}: every key pair form");
    for case in &expected.key_pairs {
        let what = format!("{name}: {} {} {}", case.operation, case.spec, case.format);
        let sealed = Sealed {
            operation: case.operation.clone(),
            key_id: case.key_id.clone(),
            aad: case.aad.clone(),
            iv: case.iv.clone(),
            ciphertext: case.ciphertext.clone(),
            plaintext: Vec::new(),
        };
        let private = open(&mut crypto, &case.operation, &case.key_id, &sealed).await;
        if !case.private_key.is_empty() {
            assert_eq!(private, case.private_key, "{what}");
        }
        check_key_pair(&case.spec, &case.format, &case.public_key, &private);
    }

    assert!(!expected.signatures.is_empty(), "{name}: signatures");
    for case in &expected.signatures {
        let what = format!("{name}: {} {}", case.key_id, case.algorithm);
        let public = crypto
            .get_public_key(GetPublicKeyRequest {
                key_id: case.key_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(public.public_key, case.public_key, "{what}: the public key");
        let verified = crypto
            .verify(VerifyRequest {
                key_id: case.key_id.clone(),
                algorithm: case.algorithm.clone(),
                message_type: "RAW".into(),
                message: case.message.clone(),
                signature: case.signature.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(verified.value, "{what}: the signature verifies");
        let mut flipped = case.signature.clone();
        flipped[10] ^= 1;
        let refused = crypto
            .verify(VerifyRequest {
                key_id: case.key_id.clone(),
                algorithm: case.algorithm.clone(),
                message_type: "RAW".into(),
                message: case.message.clone(),
                signature: flipped,
                ..Default::default()
            })
            .await;
        assert!(
            refused.map(|r| !r.into_inner().value).unwrap_or(true),
            "{what}: a changed signature does not verify"
        );
    }

    for case in &expected.idempotent_keys {
        let replayed = create_key_with(
            server,
            CreateKeyRequest {
                description: case.description.clone(),
                idempotency_token: case.token.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(replayed, case.key_id, "{name}: the token answers its key");
    }

    assert!(!expected.macs.is_empty(), "{name}: MACs");
    for case in &expected.macs {
        let mac = crypto
            .hmac(HmacRequest {
                key_id: case.key_id.clone(),
                message: case.message.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            mac.signature, case.mac,
            "{name}: HMAC under {}",
            case.key_id
        );
    }
}

/// Opens a sealed case with Decrypt or AdvanceDecrypt, as its operation needs.
async fn open(
    crypto: &mut pb::crypto_service_client::CryptoServiceClient<tonic::transport::Channel>,
    operation: &str,
    key_id: &str,
    case: &Sealed,
) -> Vec<u8> {
    let result = if operation.starts_with("Advance") {
        crypto
            .advance_decrypt(AdvanceDecryptRequest {
                ciphertext_blob: case.ciphertext.clone(),
                key_id: key_id.to_owned(),
                aad: case.aad.clone(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().plaintext.clone())
    } else {
        crypto
            .decrypt(DecryptRequest {
                ciphertext_blob: case.ciphertext.clone(),
                key_id: key_id.to_owned(),
                aad: case.aad.clone(),
                iv: case.iv.clone(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().plaintext.clone())
    };
    result.unwrap_or_else(|status| panic!("{operation} under {key_id} opens: {status:?}"))
}

/// Makes a new fixture set for this build's store format, in a directory that must
/// not exist yet. Run by hand, only when the store format changes.
#[tokio::test]
#[ignore = "makes a new fixture set; run by hand when the store format changes"]
async fn write() {
    if std::env::var_os("KMSD_WRITE_FIXTURES").is_none() {
        panic!("set KMSD_WRITE_FIXTURES=1 to write a fixture set");
    }
    let name = format!("store-format-{}", kmsd::store::redb::STORE_FORMAT);
    let set = fixtures_dir().join(&name);
    assert!(!set.exists(), "{name} exists: fixtures are never rewritten");

    let server = start().await;
    let expected = make(&server).await;
    let data_dir = server.data_dir().to_path_buf();
    let stopped = server.stop().await;
    std::fs::create_dir_all(&set).unwrap();
    std::fs::copy(data_dir.join("kmsd.redb"), set.join("kmsd.redb")).unwrap();
    // As 64 hex digits (a form kmsd reads), so the file is text in the repository.
    let root_key = std::fs::read(data_dir.join("root.key")).unwrap();
    std::fs::write(set.join("root.key"), hex::encode(root_key) + "\n").unwrap();
    let json = serde_json::to_vec_pretty(&expected).unwrap();
    std::fs::write(set.join("expected.json"), json).unwrap();
    drop(stopped);
}

async fn make(server: &TestServer) -> Expected {
    let mut crypto = server.crypto();
    let mut management = server.management();
    let symmetric_key = create_key(server).await;
    let alias = "alias/fixtures".to_owned();
    management
        .create_alias(CreateAliasRequest {
            key_id: symmetric_key.clone(),
            alias_name: alias.clone(),
        })
        .await
        .unwrap();

    // The first version for Encrypt and the initial-version key pair operations.
    let mut sealed = Vec::new();
    let plaintext = b"kmsd fixture: sealed by Encrypt".to_vec();
    let aad = b"fixture aad".to_vec();
    let out = crypto
        .encrypt(EncryptRequest {
            key_id: alias.clone(),
            plaintext: plaintext.clone(),
            aad: aad.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    sealed.push(Sealed {
        operation: "Encrypt".into(),
        key_id: alias.clone(),
        aad: aad.clone(),
        iv: out.iv.clone(),
        ciphertext: out.ciphertext_blob.clone(),
        plaintext,
    });
    let out = crypto
        .generate_data_key(GenerateDataKeyRequest {
            key_id: symmetric_key.clone(),
            number_of_bytes: 32,
            aad: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    sealed.push(Sealed {
        operation: "GenerateDataKey".into(),
        key_id: symmetric_key.clone(),
        aad: Vec::new(),
        iv: out.iv.clone(),
        ciphertext: out.ciphertext_blob.clone(),
        plaintext: out.plaintext.clone(),
    });
    let mut key_pairs = Vec::new();
    for (spec, format) in [("RSA_2048", "PEM"), ("EC_P256", "DER")] {
        let aad = format!("{spec}/{format}").into_bytes();
        let out = crypto
            .generate_data_key_pair(GenerateDataKeyPairRequest {
                key_id: symmetric_key.clone(),
                key_pair_spec: spec.into(),
                key_format: format.into(),
                aad: aad.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        key_pairs.push(KeyPair {
            operation: "GenerateDataKeyPair".into(),
            key_id: symmetric_key.clone(),
            spec: spec.into(),
            format: format.into(),
            aad,
            iv: out.iv.clone(),
            ciphertext: out.private_key_ciphertext_blob.clone(),
            public_key: out.public_key.clone(),
            private_key: out.private_key_plaintext.clone(),
        });
    }
    let out = crypto
        .generate_data_key_pair_without_plaintext(GenerateDataKeyPairWithoutPlaintextRequest {
            key_id: symmetric_key.clone(),
            key_pair_spec: "EC_P256K".into(),
            key_format: "PEM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    key_pairs.push(KeyPair {
        operation: "GenerateDataKeyPairWithoutPlaintext".into(),
        key_id: symmetric_key.clone(),
        spec: "EC_P256K".into(),
        format: "PEM".into(),
        aad: Vec::new(),
        iv: out.iv.clone(),
        ciphertext: out.private_key_ciphertext_blob.clone(),
        public_key: out.public_key.clone(),
        private_key: Vec::new(),
    });

    // A second version, primary from now on: the Advance operations use it.
    management
        .create_key_version(CreateKeyVersionRequest {
            key_id: symmetric_key.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let plaintext = b"kmsd fixture: sealed by AdvanceEncrypt".to_vec();
    let out = crypto
        .advance_encrypt(AdvanceEncryptRequest {
            key_id: symmetric_key.clone(),
            plaintext: plaintext.clone(),
            aad: aad.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    sealed.push(Sealed {
        operation: "AdvanceEncrypt".into(),
        key_id: symmetric_key.clone(),
        aad: aad.clone(),
        iv: out.iv.clone(),
        ciphertext: out.ciphertext_blob.clone(),
        plaintext,
    });
    let out = crypto
        .advance_generate_data_key(AdvanceGenerateDataKeyRequest {
            key_id: alias.clone(),
            number_of_bytes: 16,
            aad: aad.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    sealed.push(Sealed {
        operation: "AdvanceGenerateDataKey".into(),
        key_id: alias.clone(),
        aad: aad.clone(),
        iv: out.iv.clone(),
        ciphertext: out.ciphertext_blob.clone(),
        plaintext: out.plaintext.clone(),
    });
    let out = crypto
        .advance_generate_data_key_pair(AdvanceGenerateDataKeyPairRequest {
            key_id: symmetric_key.clone(),
            key_pair_spec: "EC_P256".into(),
            key_format: "PEM".into(),
            aad: aad.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    key_pairs.push(KeyPair {
        operation: "AdvanceGenerateDataKeyPair".into(),
        key_id: symmetric_key.clone(),
        spec: "EC_P256".into(),
        format: "PEM".into(),
        aad: aad.clone(),
        iv: out.iv.clone(),
        ciphertext: out.private_key_ciphertext_blob.clone(),
        public_key: out.public_key.clone(),
        private_key: out.private_key_plaintext.clone(),
    });
    let out = crypto
        .advance_generate_data_key_pair_without_plaintext(
            AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                key_id: alias.clone(),
                key_pair_spec: "RSA_2048".into(),
                key_format: "DER".into(),
                aad: Vec::new(),
            },
        )
        .await
        .unwrap()
        .into_inner();
    key_pairs.push(KeyPair {
        operation: "AdvanceGenerateDataKeyPairWithoutPlaintext".into(),
        key_id: alias.clone(),
        spec: "RSA_2048".into(),
        format: "DER".into(),
        aad: Vec::new(),
        iv: out.iv.clone(),
        ciphertext: out.private_key_ciphertext_blob.clone(),
        public_key: out.public_key.clone(),
        private_key: Vec::new(),
    });

    let mut signatures = Vec::new();
    let message = b"kmsd fixture: a message signed once, verified forever".to_vec();
    for (spec, algorithms) in [
        ("RSA_2048", &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"][..]),
        ("EC_P256", &["ECDSA_SHA_256"][..]),
        ("EC_P256K", &["ECDSA_SHA_256"][..]),
    ] {
        let key_id = create_key_with(
            server,
            CreateKeyRequest {
                key_spec: spec.into(),
                key_usage: "SIGN/VERIFY".into(),
                ..Default::default()
            },
        )
        .await;
        let public_key = crypto
            .get_public_key(GetPublicKeyRequest {
                key_id: key_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .public_key;
        for algorithm in algorithms {
            let out = crypto
                .sign(SignRequest {
                    key_id: key_id.clone(),
                    algorithm: (*algorithm).into(),
                    message_type: "RAW".into(),
                    message: message.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            signatures.push(Signature {
                key_id: key_id.clone(),
                algorithm: (*algorithm).into(),
                public_key: public_key.clone(),
                message: message.clone(),
                signature: out.signature.clone(),
            });
        }
    }

    let hmac_key = create_key_with(
        server,
        CreateKeyRequest {
            key_spec: "HMAC_SHA256".into(),
            key_usage: "GENERATE/VERIFY_MAC".into(),
            ..Default::default()
        },
    )
    .await;
    let message = b"kmsd fixture: a message MACed once".to_vec();
    let mac = crypto
        .hmac(HmacRequest {
            key_id: hmac_key.clone(),
            message: message.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .signature;

    let mut secrets = Vec::new();
    for (secret_name, data_type, data) in [
        ("db/orders/password", "text", "fixture-password-1"),
        ("tls/key", "binary", "AAECAwQFBgcICQ=="),
    ] {
        pb::secrets_service_client::SecretsServiceClient::new(server.channel.clone())
            .create_secret(CreateSecretRequest {
                secret_name: secret_name.into(),
                secret_data: data.into(),
                secret_data_type: data_type.into(),
                version_id: "v1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        secrets.push(Secret {
            name: secret_name.into(),
            version_id: "v1".into(),
            data_type: data_type.into(),
            data: data.into(),
        });
    }

    let description = "made with a token".to_owned();
    let token = "fixture-token-1".to_owned();
    let key_id = create_key_with(
        server,
        CreateKeyRequest {
            description: description.clone(),
            idempotency_token: token.clone(),
            ..Default::default()
        },
    )
    .await;
    let idempotent_keys = vec![IdempotentKey {
        token,
        description,
        key_id,
    }];

    Expected {
        made_by: format!(
            "kmsd {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            env!("KMSD_GIT_COMMIT")
        ),
        symmetric_key,
        alias,
        sealed,
        key_pairs,
        signatures,
        macs: vec![Mac {
            key_id: hmac_key,
            message,
            mac,
        }],
        secrets,
        idempotent_keys,
    }
}
