//! What the server writes down: every operation runs with access control, the audit log
//! and a captured tracing subscriber at trace level; then the captured logs and the
//! audit log are searched for the private keys, data keys, Encrypt plaintexts, random
//! bytes, hashed, signed and MACed messages handed over, secret values (put, read and
//! refused), the master keys' private keys and HMAC secrets (PEM markers, raw bytes, base64, hex,
//! Debug-printed bytes), the bearer token, the AAD and the ciphertexts. And an
//! audit log that cannot be written is reported loudly.
//!
//! Both tests install a global subscriber, so each runs alone in a child process of the
//! test binary (`support::in_own_process`); the rest of the binary never sees it.

use std::sync::OnceLock;

use base64::Engine;
use kmsd::audit::{AuditLog, AuditRecord};

use crate::support::pb::crypto_service_client::CryptoServiceClient;
use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::security::{
    audit_records, plain_channel, start_raw, token_hash, with_token, write,
};
use crate::support::{CapturedLog, PoolConfig, in_own_process, pb, temp_dir, test_config};

const TOKEN: &str = "leak-canary-token-4b9d2e7f0a";
const AAD: &[u8] = b"aad-canary-7d1e0c55";

fn t<T>(message: T) -> tonic::Request<T> {
    with_token(message, TOKEN)
}

/// The process-wide captured log: a global subscriber, so that it sees every thread
/// the server uses (runtime, blocking pool, key generation workers). Only a test that
/// has the process to itself may install it (`in_own_process`): in the shared test
/// process it would capture, and slow down, every other test.
fn captured() -> &'static CapturedLog {
    static CAPTURE: OnceLock<CapturedLog> = OnceLock::new();
    CAPTURE.get_or_init(|| CapturedLog::install("trace,h2=debug,hyper=debug"))
}

fn log_bytes() -> Vec<u8> {
    captured().bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Recognisable pieces of a secret in every form a log could hold it.
fn fingerprints(secret: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    // Windows from the middle of the secret: prefixes (DER headers) are common to
    // every key of a spec, the middle is the key's own.
    for start in [secret.len() / 3, secret.len() / 2] {
        let window = &secret[start..(start + 16).min(secret.len())];
        out.push(window.to_vec());
        out.push(
            window
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        );
        out.push(
            window
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
                .into_bytes(),
        );
    }
    let encoded = b64.encode(secret);
    let mid = encoded.len() / 2;
    out.push(encoded.as_bytes()[mid..(mid + 24).min(encoded.len())].to_vec());
    out
}

#[tokio::test]
async fn no_private_key_token_aad_or_ciphertext_reaches_the_logs_or_the_audit_log() {
    if !in_own_process(
        "security_logs::no_private_key_token_aad_or_ciphertext_reaches_the_logs_or_the_audit_log",
    ) {
        return;
    }
    captured();
    let tmp = temp_dir();
    let dir = tmp.path();
    let audit = dir.join("audit.jsonl");
    let auth = write(
        dir,
        "auth.toml",
        &format!(
            "[[principals]]\nname = \"all\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\nkeys = [\"*\"]\nsecrets = [\"*\"]\n",
            token_hash(TOKEN)
        ),
    );
    let mut config = test_config(dir);
    config.auth_config = Some(auth);
    config.audit_log = Some(audit.clone());
    config.pool = PoolConfig::uniform(1);
    let (server, addr) = start_raw(config).await.expect("starts");
    let channel = plain_channel(addr).await.unwrap();
    let mut mgmt = KeyManagementServiceClient::new(channel.clone());
    let mut crypto = CryptoServiceClient::new(channel.clone());

    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut ciphertexts: Vec<Vec<u8>> = Vec::new();

    // The control plane, every operation.
    let key_id = mgmt
        .create_key(t(pb::CreateKeyRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let k = || key_id.clone();
    mgmt.describe_key(t(pb::DescribeKeyRequest { key_id: k() }))
        .await
        .unwrap();
    mgmt.list_keys(t(pb::ListKeysRequest::default()))
        .await
        .unwrap();
    mgmt.create_alias(t(pb::CreateAliasRequest {
        key_id: k(),
        alias_name: "alias/leak".into(),
    }))
    .await
    .unwrap();
    mgmt.update_alias(t(pb::UpdateAliasRequest {
        key_id: k(),
        alias_name: "alias/leak".into(),
    }))
    .await
    .unwrap();
    mgmt.list_aliases(t(pb::ListAliasesRequest::default()))
        .await
        .unwrap();
    let version = mgmt
        .create_key_version(t(pb::CreateKeyVersionRequest {
            key_id: k(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .key_version
        .unwrap()
        .key_version_id;
    mgmt.list_key_versions(t(pb::ListKeyVersionsRequest {
        key_id: k(),
        ..Default::default()
    }))
    .await
    .unwrap();
    mgmt.describe_key_version(t(pb::DescribeKeyVersionRequest {
        key_id: k(),
        key_version_id: version,
    }))
    .await
    .unwrap();
    mgmt.update_rotation_policy(t(pb::UpdateRotationPolicyRequest {
        key_id: k(),
        enable_automatic_rotation: true,
        rotation_interval: Some(prost_types::Duration {
            seconds: 30 * 86_400,
            nanos: 0,
        }),
    }))
    .await
    .unwrap();

    // Client keys: the password and the PKCS#12 are secrets.
    let password = "client-key-password-canary";
    let created = mgmt
        .create_client_key(t(pb::CreateClientKeyRequest {
            principal: "all".into(),
            password: password.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.push(password.as_bytes().to_vec());
    secrets.push(created.private_key_data.clone().into_bytes());
    mgmt.list_client_keys(t(pb::ListClientKeysRequest::default()))
        .await
        .unwrap();
    mgmt.delete_client_key(t(pb::DeleteClientKeyRequest {
        client_key_id: created.client_key_id,
    }))
    .await
    .unwrap();

    // The data plane: every Generate form, both formats, then both decrypts.
    for (spec, format) in [("EC_P256", "PEM"), ("EC_P256K", "DER"), ("RSA_2048", "PEM")] {
        let plain = crypto
            .generate_data_key_pair(t(pb::GenerateDataKeyPairRequest {
                key_id: "alias/leak".into(),
                key_pair_spec: spec.into(),
                key_format: format.into(),
                aad: AAD.to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        secrets.push(plain.private_key_plaintext.clone());
        ciphertexts.push(plain.private_key_ciphertext_blob.clone());
        let opened = crypto
            .decrypt(t(pb::DecryptRequest {
                key_id: k(),
                ciphertext_blob: plain.private_key_ciphertext_blob.clone(),
                iv: plain.iv.clone(),
                aad: AAD.to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(opened.plaintext, plain.private_key_plaintext);

        let advance = crypto
            .advance_generate_data_key_pair(t(pb::AdvanceGenerateDataKeyPairRequest {
                key_id: k(),
                key_pair_spec: spec.into(),
                key_format: format.into(),
                aad: AAD.to_vec(),
            }))
            .await
            .unwrap()
            .into_inner();
        secrets.push(advance.private_key_plaintext.clone());
        ciphertexts.push(advance.private_key_ciphertext_blob.clone());
        let opened = crypto
            .advance_decrypt(t(pb::AdvanceDecryptRequest {
                ciphertext_blob: advance.private_key_ciphertext_blob.clone(),
                aad: AAD.to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(opened.plaintext, advance.private_key_plaintext);
    }
    for without in [
        crypto
            .generate_data_key_pair_without_plaintext(t(
                pb::GenerateDataKeyPairWithoutPlaintextRequest {
                    key_id: k(),
                    key_pair_spec: "EC_P256".into(),
                    key_format: "PEM".into(),
                    aad: AAD.to_vec(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .private_key_ciphertext_blob,
        crypto
            .advance_generate_data_key_pair_without_plaintext(t(
                pb::AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                    key_id: k(),
                    key_pair_spec: "EC_P256".into(),
                    key_format: "DER".into(),
                    aad: AAD.to_vec(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .private_key_ciphertext_blob,
    ] {
        ciphertexts.push(without);
    }
    // The symmetric data plane: Encrypt and data keys in both forms, opened again;
    // random bytes; a hashed message.
    let plaintext = b"symmetric-plaintext-canary-3e8a1f0b9c7d5e2a4b6c8d0e1f2a3b4c".to_vec();
    let encrypted = crypto
        .encrypt(t(pb::EncryptRequest {
            key_id: "alias/leak".into(),
            plaintext: plaintext.clone(),
            aad: AAD.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    ciphertexts.push(encrypted.ciphertext_blob.clone());
    let opened = crypto
        .decrypt(t(pb::DecryptRequest {
            key_id: k(),
            ciphertext_blob: encrypted.ciphertext_blob.clone(),
            iv: encrypted.iv.clone(),
            aad: AAD.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, plaintext);
    let advance_encrypted = crypto
        .advance_encrypt(t(pb::AdvanceEncryptRequest {
            key_id: k(),
            plaintext: plaintext.clone(),
            aad: AAD.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    ciphertexts.push(advance_encrypted.ciphertext_blob.clone());
    secrets.push(plaintext);
    let data_key = crypto
        .generate_data_key(t(pb::GenerateDataKeyRequest {
            key_id: k(),
            aad: AAD.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.push(data_key.plaintext.clone());
    ciphertexts.push(data_key.ciphertext_blob.clone());
    let advance_data_key = crypto
        .advance_generate_data_key(t(pb::AdvanceGenerateDataKeyRequest {
            key_id: k(),
            number_of_bytes: 64,
            aad: AAD.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.push(advance_data_key.plaintext.clone());
    ciphertexts.push(advance_data_key.ciphertext_blob.clone());
    let opened = crypto
        .advance_decrypt(t(pb::AdvanceDecryptRequest {
            ciphertext_blob: advance_data_key.ciphertext_blob.clone(),
            aad: AAD.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, advance_data_key.plaintext);
    for length in [32, 1024] {
        let random = crypto
            .generate_random(t(pb::GenerateRandomRequest { length }))
            .await
            .unwrap()
            .into_inner();
        secrets.push(random.random.clone());
    }
    let hashed = b"hashed-message-canary-9f4c2b7e1d0a8c6e4f2a0b9d7c5e3f1a".to_vec();
    crypto
        .hash(t(pb::HashRequest {
            message: hashed.clone(),
            algorithm: "SHA-256".into(),
        }))
        .await
        .unwrap();
    secrets.push(hashed);
    // Signatures and MACs: a key of each signing spec and an HMAC key; every message a
    // canary, and refusals too (a wrong algorithm, RSA with a digest).
    let mut master_versions: Vec<(String, String)> = Vec::new();
    for (spec, algorithm) in [
        ("RSA_2048", "RSA_PSS_SHA_256"),
        ("EC_P256", "ECDSA_SHA_256"),
        ("EC_P256K", "ECDSA_SHA_256"),
        ("HMAC_SHA256", ""),
    ] {
        let meta = mgmt
            .create_key(t(pb::CreateKeyRequest {
                key_spec: spec.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .key_metadata
            .unwrap();
        master_versions.push((meta.key_id.clone(), meta.initial_key_version.clone()));
        let id = || meta.key_id.clone();
        if spec == "HMAC_SHA256" {
            let mac = crypto
                .hmac(t(pb::HmacRequest {
                    key_id: id(),
                    message: b"hmac-message-canary-52e1".to_vec(),
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(mac.signature.len(), 32);
            continue;
        }
        let signed = crypto
            .sign(t(pb::SignRequest {
                key_id: id(),
                algorithm: algorithm.into(),
                message: b"signed-message-canary-7a30".to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let verified = crypto
            .verify(t(pb::VerifyRequest {
                key_id: id(),
                algorithm: algorithm.into(),
                message: b"signed-message-canary-7a30".to_vec(),
                signature: signed.signature.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(verified.value);
        crypto
            .get_public_key(t(pb::GetPublicKeyRequest { key_id: id() }))
            .await
            .unwrap();
        assert!(
            crypto
                .sign(t(pb::SignRequest {
                    key_id: id(),
                    algorithm: "NOT_AN_ALGORITHM".into(),
                    message: b"refused-message-canary-0c4d".to_vec(),
                    ..Default::default()
                }))
                .await
                .is_err()
        );
    }
    // A refused Encrypt (over the limit) logs nothing of its plaintext either.
    let oversized = [b"oversized-plaintext-canary-".as_slice(), &[b'z'; 6200]].concat();
    assert!(
        crypto
            .encrypt(t(pb::EncryptRequest {
                key_id: k(),
                plaintext: oversized.clone(),
                ..Default::default()
            }))
            .await
            .is_err()
    );

    // Failures log too: a tampered ciphertext, a wrong token.
    let mut tampered = ciphertexts[1].clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(
        crypto
            .advance_decrypt(t(pb::AdvanceDecryptRequest {
                ciphertext_blob: tampered,
                aad: AAD.to_vec(),
                ..Default::default()
            }))
            .await
            .is_err()
    );
    assert!(
        mgmt.list_keys(with_token(
            pb::ListKeysRequest::default(),
            "wrong-canary-token-c0ffee"
        ))
        .await
        .is_err()
    );

    // Secrets, every operation: the values are canaries, read back in both types, and
    // a refused put (over 30 KiB) logs nothing of its value either.
    secret_lifecycle(&channel, &mut secrets).await;

    // The rest of the lifecycle.
    mgmt.delete_alias(t(pb::DeleteAliasRequest {
        alias_name: "alias/leak".into(),
    }))
    .await
    .unwrap();
    mgmt.disable_key(t(pb::DisableKeyRequest { key_id: k() }))
        .await
        .unwrap();
    mgmt.enable_key(t(pb::EnableKeyRequest { key_id: k() }))
        .await
        .unwrap();
    mgmt.schedule_key_deletion(t(pb::ScheduleKeyDeletionRequest {
        key_id: k(),
        pending_window_in_days: 7,
    }))
    .await
    .unwrap();
    mgmt.cancel_key_deletion(t(pb::CancelKeyDeletionRequest { key_id: k() }))
        .await
        .unwrap();
    let mut backup = pb::admin_service_client::AdminServiceClient::new(channel.clone())
        .backup(t(pb::BackupRequest {}))
        .await
        .unwrap()
        .into_inner();
    while backup.message().await.unwrap().is_some() {}
    server.shutdown().await.unwrap();
    // The master keys' private keys and HMAC secret, as kmsd keeps them sealed.
    for (key_id, version_id) in &master_versions {
        secrets.push(crate::support::unsealed_material(dir, key_id, version_id).await);
    }

    // Every operation is in the audit log.
    let records: Vec<AuditRecord> = audit_records(&audit);
    // A secret's records name it and the version read, never the data.
    let read = records
        .iter()
        .find(|r| r.operation == "GetSecretValue" && r.outcome == "OK")
        .expect("GetSecretValue audited");
    assert_eq!(read.secret_name.as_deref(), Some("leak/db-password"));
    assert!(read.secret_version_id.is_some(), "{read:?}");
    let operations: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.operation.as_str()).collect();
    for op in kmsd_api::ops::Operation::ALL {
        assert!(
            operations.contains(op.name()),
            "{op} missing from the audit log"
        );
    }

    let logs = log_bytes();
    let audit_text = std::fs::read(&audit).unwrap();
    assert!(logs.len() > 1000, "the capture works: {} bytes", logs.len());
    assert!(
        contains(&logs, b"kmsd listening"),
        "the capture sees kmsd's own events"
    );
    for (name, haystack) in [("logs", &logs), ("audit log", &audit_text)] {
        assert!(
            !contains(haystack, b"PRIVATE KEY"),
            "PEM marker in the {name}"
        );
        for (i, secret) in secrets.iter().enumerate() {
            for print in fingerprints(secret) {
                assert!(!contains(haystack, &print), "secret {i} in the {name}");
            }
        }
        for canary in [
            &b"symmetric-plaintext-canary"[..],
            b"hashed-message-canary",
            b"oversized-plaintext-canary",
            b"hmac-message-canary",
            b"signed-message-canary",
            b"refused-message-canary",
            b"secret-value-canary",
            b"oversized-secret-canary",
        ] {
            assert!(
                !contains(haystack, canary),
                "{} in the {name}",
                String::from_utf8_lossy(canary)
            );
        }
        for (i, ciphertext) in ciphertexts.iter().enumerate() {
            for print in fingerprints(ciphertext) {
                assert!(!contains(haystack, &print), "ciphertext {i} in the {name}");
            }
        }
        for canary in [TOKEN.as_bytes(), b"wrong-canary-token-c0ffee", AAD] {
            assert!(
                !contains(haystack, canary),
                "{} in the {name}",
                String::from_utf8_lossy(canary)
            );
        }
        let b64_aad = base64::engine::general_purpose::STANDARD.encode(AAD);
        assert!(
            !contains(haystack, b64_aad.as_bytes()),
            "base64 AAD in the {name}"
        );
        assert!(
            !contains(haystack, token_hash(TOKEN).as_bytes()),
            "token hash in the {name}"
        );
    }
}

/// Every secret operation, through `channel`, with canary values (pushed to
/// `secrets` in the forms a log could hold them).
async fn secret_lifecycle(channel: &tonic::transport::Channel, secrets: &mut Vec<Vec<u8>>) {
    let mut api = pb::secrets_service_client::SecretsServiceClient::new(channel.clone());
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let name = || "leak/db-password".to_owned();
    let first = "secret-value-canary-1-a94c0e2f7b31";
    let binary: Vec<u8> = b"secret-value-canary-binary-\x00\x01\xfe".to_vec();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&binary);
    api.create_secret(t(pb::CreateSecretRequest {
        secret_name: name(),
        secret_data: first.into(),
        version_id: "v1".into(),
        extended_config: r#"{"DBName":"leak"}"#.into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    api.put_secret_value(t(pb::PutSecretValueRequest {
        secret_name: name(),
        version_id: "v2".into(),
        secret_data: encoded.clone(),
        secret_data_type: "binary".into(),
        version_stages: String::new(),
    }))
    .await
    .unwrap();
    let got = crypto
        .get_secret_value(t(pb::GetSecretValueRequest {
            secret_name: name(),
            fetch_extended_config: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.secret_data, encoded);
    let previous = crypto
        .get_secret_value(t(pb::GetSecretValueRequest {
            secret_name: name(),
            version_stage: "ACSPrevious".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(previous.secret_data, first);
    let oversized = format!("oversized-secret-canary-{}", "q".repeat(31 * 1024));
    assert!(
        api.put_secret_value(t(pb::PutSecretValueRequest {
            secret_name: name(),
            version_id: "v3".into(),
            secret_data: oversized,
            ..Default::default()
        }))
        .await
        .is_err()
    );
    api.describe_secret(t(pb::DescribeSecretRequest {
        secret_name: name(),
    }))
    .await
    .unwrap();
    api.list_secrets(t(pb::ListSecretsRequest::default()))
        .await
        .unwrap();
    api.list_secret_version_ids(t(pb::ListSecretVersionIdsRequest {
        secret_name: name(),
        include_deprecated: true,
        ..Default::default()
    }))
    .await
    .unwrap();
    api.update_secret(t(pb::UpdateSecretRequest {
        secret_name: name(),
        description: Some("leak test".into()),
        extended_config: None,
    }))
    .await
    .unwrap();
    api.update_secret_version_stage(t(pb::UpdateSecretVersionStageRequest {
        secret_name: name(),
        version_stage: "ACSCurrent".into(),
        remove_from_version: "v2".into(),
        move_to_version: "v1".into(),
    }))
    .await
    .unwrap();
    api.update_secret_rotation_policy(t(pb::UpdateSecretRotationPolicyRequest {
        secret_name: name(),
        enable_automatic_rotation: true,
        rotation_interval: "7d".into(),
    }))
    .await
    .unwrap();
    api.delete_secret(t(pb::DeleteSecretRequest {
        secret_name: name(),
        recovery_window_in_days: 7,
        force_delete_without_recovery: false,
    }))
    .await
    .unwrap();
    api.restore_secret(t(pb::RestoreSecretRequest {
        secret_name: name(),
    }))
    .await
    .unwrap();
    secrets.push(first.as_bytes().to_vec());
    secrets.push(binary);
    secrets.push(encoded.into_bytes());
}

#[tokio::test]
async fn a_failed_audit_write_is_logged_loudly() {
    if !in_own_process("security_logs::a_failed_audit_write_is_logged_loudly") {
        return;
    }
    captured();
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("no /dev/full on this system; skipped");
        return;
    }
    let log = AuditLog::open(full, false, "e2e").expect("/dev/full opens for writing");
    log.record(&AuditRecord {
        request_id: "write-failure-probe".into(),
        operation: "ListKeys".into(),
        outcome: "OK".into(),
        ..AuditRecord::default()
    });
    assert!(log.flush().await);
    let logs = String::from_utf8_lossy(&log_bytes()).into_owned();
    let line = logs
        .lines()
        .find(|line| line.contains("AUDIT LOG WRITE FAILED"))
        .unwrap_or_else(|| panic!("no write failure logged in:\n{logs}"));
    assert!(
        line.contains("ERROR") && line.contains("/dev/full"),
        "{line}"
    );
}
