//! Tests of the real `kmsd` binary: durability across SIGKILL, graceful SIGTERM.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::pb::crypto_service_client::CryptoServiceClient;
use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::pb::*;
use crate::support::process::KmsdProcess;
use crate::support::temp_dir;

#[tokio::test]
async fn acknowledged_changes_survive_sigkill() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let mut kmsd = KmsdProcess::spawn(dir, &["--pool-depth", "0"]);
    let mut kms = KeyManagementServiceClient::new(kmsd.channel().await);
    let key_id = kms
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    kms.create_alias(CreateAliasRequest {
        key_id: key_id.clone(),
        alias_name: "alias/durable".into(),
    })
    .await
    .unwrap();
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
    // Killed right after the last acknowledgement: no chance to flush anything.
    kmsd.signal("KILL");
    let status = kmsd.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    drop(kmsd);

    let kmsd = KmsdProcess::spawn(dir, &["--pool-depth", "0"]);
    let mut kms = KeyManagementServiceClient::new(kmsd.channel().await);
    let meta = kms
        .describe_key(DescribeKeyRequest {
            key_id: "alias/durable".into(),
        })
        .await
        .expect("the key and its alias survived SIGKILL")
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(meta.key_id, key_id);
    assert_eq!(meta.primary_key_version, version);
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let mut kmsd = KmsdProcess::spawn(dir, &["--pool-depth", "0", "--shutdown-grace-secs", "20"]);
    let channel = kmsd.channel().await;
    let key_id = KeyManagementServiceClient::new(channel.clone())
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;

    // Watch health, so the flip to NOT_SERVING is seen as it happens.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: "kms.v1.CryptoService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    // An RSA_4096 generation (pool off) in flight when the signal arrives.
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let request = GenerateDataKeyPairWithoutPlaintextRequest {
        key_id,
        key_pair_spec: "RSA_4096".into(),
        key_format: "PEM".into(),
        ..Default::default()
    };
    let in_flight = tokio::spawn(async move {
        crypto
            .generate_data_key_pair_without_plaintext(request)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    kmsd.signal("TERM");

    let flipped = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("health changes at once")
        .unwrap()
        .unwrap();
    assert_eq!(flipped.status(), ServingStatus::NotServing);
    drop(watch);

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert!(
        response
            .into_inner()
            .public_key
            .starts_with(b"-----BEGIN PUBLIC KEY-----")
    );

    let status = tokio::task::spawn_blocking(move || {
        let status = kmsd.wait_exit(Duration::from_secs(20));
        (status, kmsd)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0), "exit 0 after a graceful shutdown");
    // New connections are refused once it is gone.
    assert!(tokio::net::TcpStream::connect(status.1.addr).await.is_err());
}

#[tokio::test]
async fn a_wrong_root_key_after_a_crash_is_refused_without_touching_the_store() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let good = dir.join("good.key");
    let bad = dir.join("bad.key");
    crate::support::write_root_key(&good, &[3u8; 32]);
    crate::support::write_root_key(&bad, &[4u8; 32]);
    let data = dir.join("data");
    let good_flag = [
        "--pool-depth",
        "0",
        "--root-key-file",
        good.to_str().unwrap(),
    ];
    let mut kmsd = KmsdProcess::spawn(&data, &good_flag);
    KeyManagementServiceClient::new(kmsd.channel().await)
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap();
    kmsd.signal("KILL");
    kmsd.wait_exit(Duration::from_secs(10));
    drop(kmsd);

    let db = data.join("kmsd.redb");
    let before = std::fs::read(&db).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--pool-depth",
            "0",
            "--root-key-file",
        ])
        .arg(&bad)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("root key does not match"), "{stderr}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the crashed store was left as it was"
    );

    let kmsd = KmsdProcess::spawn(&data, &good_flag);
    let keys = KeyManagementServiceClient::new(kmsd.channel().await)
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
}

/// Text logs written to a pipe (a file, a log collector) carry no ANSI colour codes.
#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = temp_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args(["--pool-depth", "0"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kmsd");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.contains("kmsd listening");
        lines.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("kmsd listening")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a piped log: {lines:#?}"
    );
}

/// `kmsd --version` names the release and the commit it was built from (what an
/// operator quotes in a bug report), and exits 0.
#[test]
fn version_names_the_release_and_the_commit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    assert_version_line(line.trim(), "kmsd");
}

/// `<name> <version> (commit <HEAD's short hash>)`, or `commit unknown` outside git.
fn assert_version_line(line: &str, name: &str) {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8(out.stdout).unwrap().trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let expected = format!("{name} {} (commit {head})", env!("CARGO_PKG_VERSION"));
    assert_eq!(line, expected);
}
