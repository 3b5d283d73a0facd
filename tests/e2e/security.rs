//! End-to-end security: TLS, mTLS, bearer tokens, operation and key grants, the audit
//! log, transport limits and startup refusals, against a real server over TCP.

use std::path::Path;

use kmsd::audit::AuditRecord;
use kmsd::config::TlsFiles;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::pb::crypto_service_client::CryptoServiceClient;
use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::pb::{self, CreateKeyRequest};
use crate::support::security::{
    Pem, TestCa, audit_records, plain_channel, start_raw, tls_channel, token_hash, with_token,
    write,
};
use crate::support::{assert_error, temp_dir, test_config};

const OPERATOR_TOKEN: &str = "operator-token-6f1c2a";
const PAYMENTS_TOKEN: &str = "payments-token-93be70";
const PAYMENTS_SPIFFE: &str = "spiffe://cluster.local/ns/payments/sa/api";

fn auth_file(dir: &Path) -> std::path::PathBuf {
    write(
        dir,
        "auth.toml",
        &format!(
            r#"
[[principals]]
name = "operator"
token_sha256 = "{}"
operations = ["*"]
keys = ["*"]

[[principals]]
name = "payments"
token_sha256 = "{}"
spiffe_id = "{PAYMENTS_SPIFFE}"
operations = ["GenerateDataKeyPairWithoutPlaintext", "AdvanceGenerateDataKeyPairWithoutPlaintext",
              "AdvanceDecrypt", "DescribeKey", "DisableKey", "ListKeys", "ListAliases"]
keys = ["alias/payments-*"]
"#,
            token_hash(OPERATOR_TOKEN),
            token_hash(PAYMENTS_TOKEN)
        ),
    )
}

fn management(channel: &Channel) -> KeyManagementServiceClient<Channel> {
    KeyManagementServiceClient::new(channel.clone())
}

fn crypto(channel: &Channel) -> CryptoServiceClient<Channel> {
    CryptoServiceClient::new(channel.clone())
}

async fn create_key_as(channel: &Channel, token: &str) -> String {
    management(channel)
        .create_key(with_token(CreateKeyRequest::default(), token))
        .await
        .expect("CreateKey")
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id
}

fn generate(key_id: &str) -> pb::GenerateDataKeyPairWithoutPlaintextRequest {
    pb::GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.to_owned(),
        key_pair_spec: "EC_P256".into(),
        key_format: "DER".into(),
        ..Default::default()
    }
}

fn find<'a>(records: &'a [AuditRecord], request_id: &str) -> &'a AuditRecord {
    records
        .iter()
        .find(|r| r.request_id == request_id)
        .unwrap_or_else(|| panic!("no audit record for {request_id} in {records:#?}"))
}

fn status_request_id(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("x-kms-request-id")
        .expect("request id")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn tls_serves_tls_and_refuses_plaintext_clients() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let ca = TestCa::new("test ca");
    let server_pem = ca.server();
    let mut config = test_config(dir);
    config.tls = Some(TlsFiles {
        cert: write(dir, "server.pem", &server_pem.cert),
        key: write(dir, "server.key", &server_pem.key),
        client_ca: None,
    });
    let (server, addr) = start_raw(config).await.expect("TLS server starts");

    let channel = tls_channel(addr, &ca.cert_pem(), None).await.expect("TLS");
    let created = management(&channel)
        .create_key(CreateKeyRequest::default())
        .await
        .expect("CreateKey over TLS");
    assert!(created.into_inner().key_metadata.is_some());

    // A plaintext client gets no gRPC through.
    let plain = match plain_channel(addr).await {
        Ok(channel) => management(&channel)
            .list_keys(pb::ListKeysRequest::default())
            .await
            .map(|_| ()),
        Err(err) => Err(tonic::Status::unavailable(err.to_string())),
    };
    assert!(plain.is_err(), "plaintext over a TLS port must fail");

    // A client that does not trust the server's CA refuses the handshake.
    let other = TestCa::new("other ca");
    let untrusted = match tls_channel(addr, &other.cert_pem(), None).await {
        Ok(channel) => management(&channel)
            .list_keys(pb::ListKeysRequest::default())
            .await
            .map(|_| ()),
        Err(err) => Err(tonic::Status::unavailable(err.to_string())),
    };
    assert!(untrusted.is_err());
    server.shutdown().await.unwrap();
}

/// Starts an mTLS server with the auth file and an audit log; returns what the tests need.
async fn start_mtls(
    dir: &Path,
    ca: &TestCa,
) -> (kmsd::server::RunningServer, std::net::SocketAddr) {
    let server_pem = ca.server();
    let mut config = test_config(dir);
    config.tls = Some(TlsFiles {
        cert: write(dir, "server.pem", &server_pem.cert),
        key: write(dir, "server.key", &server_pem.key),
        client_ca: Some(write(dir, "client-ca.pem", &ca.cert_pem())),
    });
    config.auth_config = Some(auth_file(dir));
    config.audit_log = Some(dir.join("audit.jsonl"));
    start_raw(config).await.expect("mTLS server starts")
}

async fn list_keys_over(channel: Result<Channel, tonic::transport::Error>) -> Result<(), String> {
    let channel = channel.map_err(|e| e.to_string())?;
    management(&channel)
        .list_keys(pb::ListKeysRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test]
async fn mtls_identifies_the_client_certificate_and_refuses_others() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let ca = TestCa::new("mesh ca");
    let (server, addr) = start_mtls(dir, &ca).await;
    let good: Pem = ca.client(PAYMENTS_SPIFFE, "payments");

    // The good certificate is the payments principal: ListKeys is granted to it...
    let channel = tls_channel(addr, &ca.cert_pem(), Some(&good))
        .await
        .unwrap();
    management(&channel)
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("ListKeys as payments via its certificate");
    // ...CreateKey is not.
    let denied = management(&channel)
        .create_key(CreateKeyRequest::default())
        .await;
    let status = assert_error(denied, Code::PermissionDenied, "Forbidden.NoPermission");
    let denied_id = status_request_id(&status);

    // A certificate from another CA, or none at all, never gets a call through.
    let other = TestCa::new("rogue ca");
    let wrong = other.client(PAYMENTS_SPIFFE, "payments");
    assert!(
        list_keys_over(tls_channel(addr, &ca.cert_pem(), Some(&wrong)).await)
            .await
            .is_err()
    );
    assert!(
        list_keys_over(tls_channel(addr, &ca.cert_pem(), None).await)
            .await
            .is_err()
    );

    // A valid certificate of an identity the auth file does not know: UNAUTHENTICATED.
    let stranger = ca.client("spiffe://cluster.local/ns/other/sa/x", "other");
    let channel = tls_channel(addr, &ca.cert_pem(), Some(&stranger))
        .await
        .unwrap();
    let result = management(&channel)
        .list_keys(pb::ListKeysRequest::default())
        .await;
    assert_error(result, Code::Unauthenticated, "SignatureNotMatch");

    server.shutdown().await.unwrap();
    let records = audit_records(&dir.join("audit.jsonl"));
    let denied = find(&records, &denied_id);
    assert_eq!(denied.principal.as_deref(), Some("payments"));
    assert_eq!(denied.operation, "CreateKey");
    assert_eq!(denied.outcome, "PERMISSION_DENIED");
    assert_eq!(denied.error_code.as_deref(), Some("Forbidden.NoPermission"));
    assert_eq!(denied.auth.as_deref(), Some("mtls"));
    let peer: std::net::SocketAddr = denied.peer.as_deref().unwrap().parse().unwrap();
    assert!(peer.ip().is_loopback(), "{peer}");
}

#[tokio::test]
async fn tokens_and_grants_decide_every_call_and_each_is_audited() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let audit = dir.join("audit.jsonl");
    let mut config = test_config(dir);
    config.auth_config = Some(auth_file(dir));
    config.audit_log = Some(audit.clone());
    let (server, addr) = start_raw(config).await.expect("starts");
    let channel = plain_channel(addr).await.unwrap();

    // Health needs no principal and is not audited.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a token");

    // Missing and wrong tokens.
    let missing = management(&channel)
        .list_keys(pb::ListKeysRequest::default())
        .await;
    let missing_id = status_request_id(&assert_error(
        missing,
        Code::Unauthenticated,
        "SignatureNotMatch",
    ));
    let wrong = management(&channel)
        .list_keys(with_token(pb::ListKeysRequest::default(), "not-a-token"))
        .await;
    let wrong_id = status_request_id(&assert_error(
        wrong,
        Code::Unauthenticated,
        "SignatureNotMatch",
    ));
    let mut basic = tonic::Request::new(pb::ListKeysRequest::default());
    basic
        .metadata_mut()
        .insert("authorization", "Basic b3BlcmF0b3I=".parse().unwrap());
    assert_error(
        management(&channel).list_keys(basic).await,
        Code::Unauthenticated,
        "SignatureNotMatch",
    );

    // The operator (all operations, all keys) sets up two keys; one is payments'.
    let key_a = create_key_as(&channel, OPERATOR_TOKEN).await;
    let key_b = create_key_as(&channel, OPERATOR_TOKEN).await;
    for (key, alias) in [(&key_a, "alias/payments-a"), (&key_b, "alias/other-b")] {
        management(&channel)
            .create_alias(with_token(
                pb::CreateAliasRequest {
                    key_id: key.clone(),
                    alias_name: alias.into(),
                },
                OPERATOR_TOKEN,
            ))
            .await
            .expect("CreateAlias");
    }

    // Payments may generate under its alias, and (through that alias) by key ID.
    let generated = crypto(&channel)
        .advance_generate_data_key_pair_without_plaintext(with_token(
            pb::AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                key_id: "alias/payments-a".into(),
                key_pair_spec: "EC_P256".into(),
                key_format: "DER".into(),
                ..Default::default()
            },
            PAYMENTS_TOKEN,
        ))
        .await
        .expect("payments generates under its alias")
        .into_inner();
    let generated_id = generated.request_id.clone();
    crypto(&channel)
        .generate_data_key_pair_without_plaintext(with_token(generate(&key_a), PAYMENTS_TOKEN))
        .await
        .expect("key A is granted through its alias");

    // AdvanceDecrypt without a KeyId checks the key that owns the blob's version.
    let opened = crypto(&channel)
        .advance_decrypt(with_token(
            pb::AdvanceDecryptRequest {
                ciphertext_blob: generated.private_key_ciphertext_blob.clone(),
                ..Default::default()
            },
            PAYMENTS_TOKEN,
        ))
        .await
        .expect("AdvanceDecrypt of its own blob")
        .into_inner();
    assert_eq!(opened.key_id, key_a);
    let blob_of_b = crypto(&channel)
        .advance_generate_data_key_pair_without_plaintext(with_token(
            pb::AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                key_id: key_b.clone(),
                key_pair_spec: "EC_P256".into(),
                key_format: "DER".into(),
                ..Default::default()
            },
            OPERATOR_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .private_key_ciphertext_blob;
    // A blob of a key outside the grants and a blob naming a made-up version fail
    // alike: the one decryption failure, so the answer says nothing of what exists.
    let mut made_up_blob = blob_of_b.clone();
    made_up_blob[3..39].copy_from_slice(b"0b6f6f6f-1111-4222-8333-444444444444");
    let advance_decrypt = |blob: &Vec<u8>, key_id: &str| {
        let mut client = crypto(&channel);
        let request = with_token(
            pb::AdvanceDecryptRequest {
                ciphertext_blob: blob.clone(),
                key_id: key_id.to_owned(),
                ..Default::default()
            },
            PAYMENTS_TOKEN,
        );
        async move { client.advance_decrypt(request).await }
    };
    let foreign_blob = advance_decrypt(&blob_of_b, "").await;
    let foreign_status = assert_error(foreign_blob, Code::InvalidArgument, "InvalidParameter");
    let foreign_blob_id = status_request_id(&foreign_status);
    let made_up_status = assert_error(
        advance_decrypt(&made_up_blob, "").await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_eq!(foreign_status.message(), made_up_status.message());
    // A named KeyId is checked first, as in every operation, whatever the blob holds.
    for blob in [&blob_of_b, &made_up_blob] {
        for key_id in [key_b.as_str(), "key-doesnotexist000000000"] {
            assert_error(
                advance_decrypt(blob, key_id).await,
                Code::PermissionDenied,
                "Forbidden.NoPermission",
            );
        }
    }

    // A key outside the grants, by ID, by alias, or not existing at all: denied alike.
    for key in [
        key_b.as_str(),
        "alias/other-b",
        "key-doesnotexist0000000000000000",
    ] {
        let result = crypto(&channel)
            .generate_data_key_pair_without_plaintext(with_token(generate(key), PAYMENTS_TOKEN))
            .await;
        assert_error(result, Code::PermissionDenied, "Forbidden.NoPermission");
    }
    // An operation outside the grants, on a key inside them.
    let decrypt = crypto(&channel)
        .decrypt(with_token(
            pb::DecryptRequest {
                key_id: "alias/payments-a".into(),
                ciphertext_blob: vec![1; 40],
                iv: vec![0; 12],
                ..Default::default()
            },
            PAYMENTS_TOKEN,
        ))
        .await;
    let decrypt_id = status_request_id(&assert_error(
        decrypt,
        Code::PermissionDenied,
        "Forbidden.NoPermission",
    ));
    // DisableKey is granted, key B is not: the key is not touched.
    let disable = management(&channel)
        .disable_key(with_token(
            pb::DisableKeyRequest {
                key_id: key_b.clone(),
            },
            PAYMENTS_TOKEN,
        ))
        .await;
    let disable_id = status_request_id(&assert_error(
        disable,
        Code::PermissionDenied,
        "Forbidden.NoPermission",
    ));
    let described = management(&channel)
        .describe_key(with_token(
            pb::DescribeKeyRequest {
                key_id: key_b.clone(),
            },
            OPERATOR_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(described.key_state, "Enabled");

    // Listings show only what the principal may see.
    let keys: Vec<String> = management(&channel)
        .list_keys(with_token(pb::ListKeysRequest::default(), PAYMENTS_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(keys, std::slice::from_ref(&key_a));
    let aliases: Vec<String> = management(&channel)
        .list_aliases(with_token(
            pb::ListAliasesRequest::default(),
            PAYMENTS_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .aliases
        .into_iter()
        .map(|a| a.alias_name)
        .collect();
    assert_eq!(aliases, ["alias/payments-a"]);
    let operator_keys = management(&channel)
        .list_keys(with_token(pb::ListKeysRequest::default(), OPERATOR_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(operator_keys.len(), 2);

    server.shutdown().await.unwrap();

    // The audit log: one line per call, health excepted, nothing secret.
    let records = audit_records(&audit);
    assert!(records.iter().all(|r| !r.operation.contains("Check")));
    // The three calls without valid credentials are counted, not written one by one.
    for id in [&missing_id, &wrong_id] {
        assert!(
            records.iter().all(|r| &r.request_id != id),
            "{id} has a line"
        );
    }
    let unauthenticated: Vec<_> = records.iter().filter(|r| r.count.is_some()).collect();
    assert_eq!(
        unauthenticated.iter().filter_map(|r| r.count).sum::<u64>(),
        3,
        "{unauthenticated:?}"
    );
    for summary in &unauthenticated {
        assert_eq!(
            (summary.operation.as_str(), summary.outcome.as_str()),
            ("(unauthenticated)", "UNAUTHENTICATED")
        );
        assert_eq!(summary.error_code.as_deref(), Some("SignatureNotMatch"));
        assert_eq!(summary.principal, None);
    }
    let ok = find(&records, &generated_id);
    assert_eq!(ok.principal.as_deref(), Some("payments"));
    assert_eq!(ok.operation, "AdvanceGenerateDataKeyPairWithoutPlaintext");
    assert_eq!(ok.key_id.as_deref(), Some(key_a.as_str()));
    assert_eq!(
        ok.key_version_id.as_deref(),
        Some(generated.key_version_id.as_str())
    );
    assert_eq!(ok.key_pair_spec.as_deref(), Some("EC_P256"));
    assert_eq!(
        (ok.outcome.as_str(), ok.error_code.as_deref()),
        ("OK", None)
    );
    let decrypt = find(&records, &decrypt_id);
    assert_eq!(
        (decrypt.operation.as_str(), decrypt.outcome.as_str()),
        ("Decrypt", "PERMISSION_DENIED")
    );
    let disable = find(&records, &disable_id);
    assert_eq!(disable.key_id.as_deref(), Some(key_b.as_str()));
    assert_eq!(
        disable.error_code.as_deref(),
        Some("Forbidden.NoPermission")
    );
    let foreign = find(&records, &foreign_blob_id);
    assert_eq!(foreign.operation, "AdvanceDecrypt");
    assert!(foreign.key_version_id.is_some(), "{foreign:?}");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(PAYMENTS_TOKEN) && !text.contains(OPERATOR_TOKEN));
    assert!(!text.contains(&token_hash(PAYMENTS_TOKEN)));

    // Appends survive a restart.
    let before = records.len();
    let mut config = test_config(dir);
    config.auth_config = Some(auth_file(dir));
    config.audit_log = Some(audit.clone());
    let (server, addr) = start_raw(config).await.expect("restarts");
    let channel = plain_channel(addr).await.unwrap();
    management(&channel)
        .list_keys(with_token(pb::ListKeysRequest::default(), OPERATOR_TOKEN))
        .await
        .unwrap();
    server.shutdown().await.unwrap();
    let records = audit_records(&audit);
    assert_eq!(records.len(), before + 1);
    assert!(records.iter().any(|r| r.request_id == generated_id));
}

#[tokio::test]
async fn plaintext_on_a_public_address_is_refused_unless_allowed() {
    let tmp = temp_dir();
    let parent = tmp.path();
    let dir = parent.join("data");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = kmsd::server::start(test_config(&dir), listener)
        .await
        .expect_err("plaintext on 0.0.0.0 must be refused");
    let message = err.to_string();
    assert!(
        message.contains("--allow-plaintext") && message.contains("--tls-cert"),
        "{message}"
    );
    assert!(!dir.exists(), "a refused start creates nothing");

    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mut config = test_config(&dir);
    config.allow_plaintext = true;
    config.allow_unauthenticated_network = true;
    let server = kmsd::server::start(config, listener)
        .await
        .expect("--allow-plaintext lets it start");
    server.shutdown().await.unwrap();
}

/// A listener handed in on a non-loopback address is refused without access control,
/// before anything is created, unless the loud opt-out says so.
#[tokio::test]
async fn an_open_server_on_a_public_address_is_refused_unless_allowed() {
    let tmp = temp_dir();
    let dir = tmp.path().join("data");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mut config = test_config(&dir);
    config.allow_plaintext = true;
    let err = kmsd::server::start(config, listener)
        .await
        .expect_err("an open server on 0.0.0.0 must be refused");
    let message = err.to_string();
    assert!(
        message.contains("--auth-config") && message.contains("--allow-unauthenticated-network"),
        "{message}"
    );
    assert!(!dir.exists(), "a refused start creates nothing");
}

/// The real binary refuses `--listen 0.0.0.0:…` without `--auth-config`, before it
/// creates anything, and names the flag that would allow it.
#[test]
fn the_binary_refuses_an_open_server_on_the_network() {
    use std::process::{Command, Stdio};
    let tmp = temp_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args([
            "--listen",
            "0.0.0.0:0",
            "--allow-plaintext",
            "--pool-depth",
            "0",
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kmsd started serving 0.0.0.0 without access control");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("without access control")
            && stderr.contains("--allow-unauthenticated-network"),
        "{stderr}"
    );
    assert!(!tmp.path().join("data").exists());
}

#[tokio::test]
async fn a_malformed_auth_file_stops_the_start_with_line_and_field() {
    let tmp = temp_dir();
    let parent = tmp.path();
    let dir = parent.join("data");
    let file = write(
        parent,
        "auth.toml",
        "[[principals]]\nname = \"a\"\ntoken_sha256 = \"not-hex\"\noperations = [\"*\"]\n",
    );
    let mut config = test_config(&dir);
    config.auth_config = Some(file);
    let err = start_raw(config).await.expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("line 3") && message.contains("token_sha256"),
        "{message}"
    );
    assert!(!dir.exists(), "a refused start creates nothing");

    let mut config = test_config(&dir);
    config.auth_config = Some(parent.join("missing.toml"));
    let message = start_raw(config).await.expect_err("refused").to_string();
    assert!(message.contains("missing.toml"), "{message}");
}

#[tokio::test]
async fn oversized_requests_get_an_error_and_the_server_keeps_serving() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let (server, addr) = start_raw(test_config(dir)).await.unwrap();
    let channel = plain_channel(addr).await.unwrap();
    let key_id = create_key_as(&channel, "unused").await;
    let huge = crypto(&channel)
        .decrypt(pb::DecryptRequest {
            key_id: key_id.clone(),
            ciphertext_blob: vec![7; kmsd::transport::limits::MAX_DECODING_MESSAGE_SIZE + 1],
            iv: vec![0; 12],
            ..Default::default()
        })
        .await
        .expect_err("over the message limit");
    // The caller's fault, in the public API's terms, naming the limit.
    let limit = kmsd::transport::limits::MAX_DECODING_MESSAGE_SIZE.to_string();
    assert_eq!(huge.code(), Code::InvalidArgument, "{huge:?}");
    assert_eq!(crate::support::reason(&huge), "InvalidParameter");
    assert!(huge.message().contains(&limit), "{huge:?}");
    // Encrypt's answer says where large data goes: envelope encryption.
    let huge = crypto(&channel)
        .encrypt(pb::EncryptRequest {
            key_id: key_id.clone(),
            plaintext: vec![7; kmsd::transport::limits::MAX_DECODING_MESSAGE_SIZE + 1],
            ..Default::default()
        })
        .await
        .expect_err("over the message limit");
    assert_eq!(huge.code(), Code::InvalidArgument, "{huge:?}");
    assert_eq!(crate::support::reason(&huge), "InvalidParameter");
    assert!(
        huge.message().contains(&limit) && huge.message().contains("GenerateDataKey"),
        "{huge:?}"
    );
    // Headers over the limit: the stream is refused, the connection and server live on.
    let mut bloated = tonic::Request::new(pb::ListKeysRequest::default());
    bloated
        .metadata_mut()
        .insert("x-bloat", "a".repeat(64 * 1024).parse().unwrap());
    assert!(management(&channel).list_keys(bloated).await.is_err());
    let fresh = plain_channel(addr).await.unwrap();
    management(&fresh)
        .describe_key(pb::DescribeKeyRequest { key_id })
        .await
        .expect("still serving");
    server.shutdown().await.unwrap();
}
