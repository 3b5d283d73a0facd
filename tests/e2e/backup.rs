//! Backup over real gRPC: a consistent snapshot streamed while the server serves, and
//! a restore from it that serves the same keys and opens earlier ciphertexts.

use std::time::Duration;

use bytes::Bytes;
use tonic::Code;

use crate::support::pb::admin_service_client::AdminServiceClient;
use crate::support::pb::*;
use crate::support::*;

/// Streams a Backup; returns the bytes and the size and digest of the last piece.
async fn backup(server: &TestServer) -> (Vec<u8>, u64, String) {
    let mut stream = AdminServiceClient::new(server.channel.clone())
        .backup(BackupRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    let mut last = None;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(last.is_none(), "nothing after the last piece");
        assert_request_id(&chunk.request_id);
        bytes.extend_from_slice(&chunk.data);
        if !chunk.sha256.is_empty() {
            last = Some((chunk.size, chunk.sha256));
        }
    }
    let (size, sha256) = last.expect("a last piece with the size and digest");
    (bytes, size, sha256)
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_the_same_keys() {
    let server = start().await;
    let key_id = create_key(&server).await;
    server
        .management()
        .create_alias(CreateAliasRequest {
            key_id: key_id.clone(),
            alias_name: "alias/backed-up".into(),
        })
        .await
        .unwrap();
    let sealed = server
        .crypto()
        .encrypt(EncryptRequest {
            key_id: "alias/backed-up".into(),
            plaintext: b"before the backup".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // Writers keep going while the backup is taken and streamed.
    let writer = {
        let mut management = server.management();
        tokio::spawn(async move {
            for _ in 0..10 {
                management
                    .create_key(CreateKeyRequest::default())
                    .await
                    .unwrap();
            }
        })
    };
    let (bytes, size, sha256) = backup(&server).await;
    writer.await.unwrap();
    assert_eq!(bytes.len() as u64, size);
    let digest = ring_sha256_hex(&bytes);
    assert_eq!(sha256, digest);
    let root_key = std::fs::read(server.data_dir().join("root.key")).unwrap();
    assert!(
        !bytes
            .windows(root_key.len())
            .any(|w| w == root_key.as_slice()),
        "the backup holds no root key"
    );
    // No snapshot is left behind in the data directory.
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(kmsd::backup::SNAPSHOT_DIR_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _stopped = server.stop().await;

    // Restore: the backup as the store of a new data directory, the same root key.
    let restored = temp_dir();
    std::fs::write(restored.path().join("kmsd.redb"), &bytes).unwrap();
    let root_file = restored.path().join("root.key");
    write_root_key(&root_file, &root_key);
    let mut config = test_config(restored.path());
    config.root_key_file = Some(root_file);
    let server = try_start(config, start_clock()).await.unwrap();
    assert_eq!(describe(&server, "alias/backed-up").await.key_id, key_id);
    let opened = server
        .crypto()
        .decrypt(DecryptRequest {
            key_id: key_id.clone(),
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"before the backup");
}

#[tokio::test]
async fn a_restored_backup_needs_its_root_key() {
    let server = start().await;
    create_key(&server).await;
    let (bytes, _, _) = backup(&server).await;
    let _stopped = server.stop().await;
    let restored = temp_dir();
    std::fs::write(restored.path().join("kmsd.redb"), &bytes).unwrap();
    // No root key given: a new development key is made, and the store refuses it.
    let err = try_start(test_config(restored.path()), start_clock())
        .await
        .err()
        .expect("the backup does not open under another root key");
    assert!(err.to_string().contains("root key"), "{err}");
}

#[tokio::test]
async fn backup_is_an_operation_that_must_be_granted() {
    let dir = temp_dir();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[principals]]\nname = \"apps\"\ntoken_sha256 = \"{}\"\n\
             operations = [\"CreateKey\"]\nkeys = [\"*\"]\n",
            crate::support::security::token_hash("apps-token")
        ),
    )
    .unwrap();
    let server = start_with(|config| config.auth_config = Some(auth.clone())).await;
    let err = AdminServiceClient::new(server.channel.clone())
        .backup(crate::support::security::with_token(
            BackupRequest {},
            "apps-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "Forbidden.NoPermission");
}

/// SHA-256 as lowercase hex, through the same ring the server uses.
fn ring_sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A Backup over a raw HTTP/2 connection whose stream window is 0: the response head
/// arrives, no byte of the snapshot can, and the server holds it until the deadline.
async fn stalled_backup(
    server: &TestServer,
) -> (
    h2::client::SendRequest<Bytes>,
    http::Response<h2::RecvStream>,
) {
    let tcp = tokio::net::TcpStream::connect(server.server.local_addr())
        .await
        .unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri("http://kms.test/kms.v1.AdminService/Backup")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        tonic::Status::from_header_map(response.headers()).is_none(),
        "the stalled backup itself started"
    );
    (client, response)
}

fn snapshots_on_disk(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(kmsd::backup::SNAPSHOT_DIR_PREFIX)
        })
        .count()
}

/// Backup hands out every key record and every client key: only a principal whose
/// key grants are `*` may take one, whatever its operation grants say.
#[tokio::test]
async fn backup_needs_a_grant_on_every_key() {
    use crate::support::security::{token_hash, with_token};
    let dir = temp_dir();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[principals]]\nname = \"some\"\ntoken_sha256 = \"{}\"\n\
             operations = [\"Backup\"]\nkeys = [\"key-*\", \"alias/app-*\"]\n\
             [[principals]]\nname = \"backups\"\ntoken_sha256 = \"{}\"\n\
             operations = [\"Backup\"]\nkeys = [\"*\"]\n",
            token_hash("some-token"),
            token_hash("backup-token"),
        ),
    )
    .unwrap();
    let server = start_with(|config| config.auth_config = Some(auth.clone())).await;
    let err = AdminServiceClient::new(server.channel.clone())
        .backup(with_token(BackupRequest {}, "some-token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(reason(&err), "Forbidden.NoPermission");
    let mut stream = AdminServiceClient::new(server.channel.clone())
        .backup(with_token(BackupRequest {}, "backup-token"))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
}

/// Two snapshots at most at a time; a stream nobody reads is abandoned at the deadline
/// and its snapshot removed; the audit record says how the backup ended, once it has.
#[tokio::test]
async fn stalled_backups_are_bounded_abandoned_and_audited_when_they_end() {
    use crate::support::security::audit_records;
    let files = temp_dir();
    let audit = files.path().join("audit.jsonl");
    let server = start_with(|config| config.audit_log = Some(audit.clone())).await;
    create_key(&server).await;
    server
        .server
        .kms()
        .backups()
        .set_stream_deadline(Duration::from_secs(2));
    let first = stalled_backup(&server).await;
    let second = stalled_backup(&server).await;
    assert_eq!(snapshots_on_disk(&server), 2);
    let err = AdminServiceClient::new(server.channel.clone())
        .backup(BackupRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err), "Rejected.Throttling");
    // Started is not done: no record yet says the stalled backups succeeded.
    assert!(server.server.kms().audit().unwrap().flush().await);
    let early: Vec<_> = audit_records(&audit)
        .into_iter()
        .filter(|r| r.operation == "Backup" && r.outcome == "OK")
        .collect();
    assert!(early.is_empty(), "{early:#?}");

    // Past the deadline: both abandoned, their snapshots gone, their slots free.
    let mut waited = Duration::ZERO;
    while snapshots_on_disk(&server) > 0 {
        assert!(waited < Duration::from_secs(10), "snapshots still on disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let (bytes, size, _) = backup(&server).await;
    assert_eq!(bytes.len() as u64, size);
    drop((first, second));

    server.server.shutdown().await.unwrap();
    let outcomes: Vec<_> = audit_records(&audit)
        .into_iter()
        .filter(|r| r.operation == "Backup")
        .map(|r| r.outcome)
        .collect();
    let count = |o: &str| outcomes.iter().filter(|x| x.as_str() == o).count();
    assert_eq!(count("DEADLINE_EXCEEDED"), 2, "{outcomes:?}");
    assert_eq!(count("RESOURCE_EXHAUSTED"), 1, "{outcomes:?}");
    assert_eq!(count("OK"), 1, "{outcomes:?}");
}

/// Runs `kmsd backup verify FILE --root-key-file KEY`; its success, stdout and stderr.
fn backup_verify(file: &std::path::Path, key: &std::path::Path) -> (bool, String, String) {
    let (file, key) = (file.as_os_str(), key.as_os_str());
    run_kmsd(&[
        "backup".as_ref(),
        "verify".as_ref(),
        file,
        "--root-key-file".as_ref(),
        key,
    ])
}

#[tokio::test]
async fn kmsd_backup_verify_checks_a_backup_offline() {
    let server = start().await;
    // Two keys, one with a second version; the secret below makes a third (its
    // default encryption key, with an alias).
    let first = create_key(&server).await;
    create_key(&server).await;
    server
        .management()
        .create_key_version(CreateKeyVersionRequest {
            key_id: first.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    server
        .management()
        .create_alias(CreateAliasRequest {
            key_id: first,
            alias_name: "alias/verified".into(),
        })
        .await
        .unwrap();
    crate::support::pb::secrets_service_client::SecretsServiceClient::new(server.channel.clone())
        .create_secret(CreateSecretRequest {
            secret_name: "db/password".into(),
            secret_data: "hunter22".into(),
            version_id: "v1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (bytes, _, _) = backup(&server).await;
    let root_key = std::fs::read(server.data_dir().join("root.key")).unwrap();
    let _stopped = server.stop().await;

    let dir = temp_dir();
    let file = dir.path().join("kmsd.backup");
    std::fs::write(&file, &bytes).unwrap();
    let key = dir.path().join("root.key");
    write_root_key(&key, &root_key);
    let (ok, stdout, stderr) = backup_verify(&file, &key);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("3 keys, 4 key versions (every one unseals)")
            && stdout.contains("1 secrets with 1 versions (every one opens)"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "verifying changes nothing"
    );

    let wrong = dir.path().join("wrong.key");
    write_root_key(&wrong, &[7u8; 32]);
    let (ok, _, stderr) = backup_verify(&file, &wrong);
    assert!(!ok);
    assert!(stderr.contains("does not match this backup"), "{stderr}");

    let truncated = dir.path().join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let (ok, stdout, stderr) = backup_verify(&truncated, &key);
    assert!(!ok, "a truncated backup does not verify: {stdout}");
    assert!(stderr.contains("truncated.backup"), "{stderr}");
}
