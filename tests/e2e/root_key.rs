//! The root key file on disk: its permissions, and replacing it with
//! `kmsd rotate-root-key`.

use crate::support::*;

/// Runs the real `kmsd` binary with `args` to its end; returns its status and stderr.
fn run_kmsd(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_root_key_file_others_may_read_is_refused_at_startup_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = temp_dir();
    let key = tmp.path().join("root.key");
    // What `head -c 32 /dev/urandom > root.key` makes under umask 022.
    std::fs::write(&key, [5u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = tmp.path().join("data");
    let (status, stderr) = run_kmsd(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pool-depth".as_ref(),
        "0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--root-key-file".as_ref(),
        key.as_os_str(),
    ]);
    assert!(!status.success());
    let fix = format!("chmod 600 {}", key.display());
    assert!(stderr.contains(&fix), "{stderr}");
    assert!(!data.join("kmsd.redb").exists(), "nothing was created");
}

#[tokio::test]
async fn rotating_the_root_key_reseals_everything_and_retires_the_old_key() {
    use std::time::Duration;

    use crate::support::pb::crypto_service_client::CryptoServiceClient;
    use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
    use crate::support::pb::{CreateKeyRequest, DecryptRequest, GenerateDataKeyPairRequest};
    use crate::support::process::KmsdProcess;

    let tmp = temp_dir();
    let old = tmp.path().join("old.key");
    let new = tmp.path().join("new.key");
    write_root_key(&old, &[0x11; 32]);
    write_root_key(&new, &[0x22; 32]);
    let data = tmp.path().join("data");
    let flags = |key: &std::path::Path| {
        vec![
            "--pool-depth".to_owned(),
            "0".to_owned(),
            "--shutdown-grace-secs".to_owned(),
            "2".to_owned(),
            "--root-key-file".to_owned(),
            key.display().to_string(),
        ]
    };
    let spawn = |key: &std::path::Path| {
        let flags = flags(key);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        KmsdProcess::spawn(&data, &flags)
    };
    let rotate = |old: &std::path::Path, new: &std::path::Path| {
        run_kmsd(&[
            "rotate-root-key".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--root-key-file".as_ref(),
            old.as_os_str(),
            "--new-root-key-file".as_ref(),
            new.as_os_str(),
        ])
    };

    // Under OLD: a key, rotated once, and a sealed private key to open later.
    let mut kmsd = spawn(&old);
    let mut management = KeyManagementServiceClient::new(kmsd.channel().await);
    let key_id = management
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    management
        .create_key_version(crate::support::pb::CreateKeyVersionRequest {
            key_id: key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pair = CryptoServiceClient::new(kmsd.channel().await)
        .generate_data_key_pair(GenerateDataKeyPairRequest {
            key_id: key_id.clone(),
            key_pair_spec: "EC_P256".into(),
            key_format: "PEM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // And a secret, sealed under that key (whose material the rotation re-seals).
    crate::support::pb::secrets_service_client::SecretsServiceClient::new(kmsd.channel().await)
        .create_secret(crate::support::pb::CreateSecretRequest {
            secret_name: "db/rotated".into(),
            secret_data: "survives-the-root-key".into(),
            encryption_key_id: key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let decrypt = DecryptRequest {
        ciphertext_blob: pair.private_key_ciphertext_blob.clone(),
        key_id: key_id.clone(),
        iv: pair.iv.clone(),
        ..Default::default()
    };

    // A running server holds the store: the rotation refuses and changes nothing.
    let (status, stderr) = rotate(&old, &new);
    assert!(!status.success());
    assert!(stderr.contains("stop it first"), "{stderr}");
    drop(management);
    kmsd.signal("TERM");
    assert!(kmsd.wait_exit(Duration::from_secs(20)).success());
    drop(kmsd);

    let (status, stderr) = rotate(&old, &new);
    assert!(status.success(), "{stderr}");
    // Done once: again is refused, and so is a key that is neither.
    let (status, stderr) = rotate(&old, &new);
    assert!(
        !status.success() && stderr.contains("already under the new root key"),
        "{stderr}"
    );
    let stranger = tmp.path().join("stranger.key");
    write_root_key(&stranger, &[0x33; 32]);
    let (status, stderr) = rotate(&stranger, &old);
    assert!(
        !status.success() && stderr.contains("does not match"),
        "{stderr}"
    );

    // OLD opens nothing: a server given it refuses to start.
    let (status, stderr) = run_kmsd(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pool-depth".as_ref(),
        "0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--root-key-file".as_ref(),
        old.as_os_str(),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("root key does not match"), "{stderr}");

    // NEW works: the pair sealed before the rotation opens, both versions are there.
    let kmsd = spawn(&new);
    let opened = CryptoServiceClient::new(kmsd.channel().await)
        .decrypt(decrypt)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, pair.private_key_plaintext);
    let secret = CryptoServiceClient::new(kmsd.channel().await)
        .get_secret_value(crate::support::pb::GetSecretValueRequest {
            secret_name: "db/rotated".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.secret_data, "survives-the-root-key");
    let versions = KeyManagementServiceClient::new(kmsd.channel().await)
        .list_key_versions(crate::support::pb::ListKeyVersionsRequest {
            key_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_versions;
    assert_eq!(versions.len(), 2);
}
