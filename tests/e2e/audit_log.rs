//! The audit log as a SIEM takes it: logrotate's `mv` then SIGHUP under load on the
//! real binary, `kmsd audit verify` on the rotated files, stdout with
//! `--audit-required`, and syslog over a unix datagram socket and over UDP, each read
//! by a socket the test binds.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kmsd::audit::{AuditRecord, STARTED_OUTCOME, chain};

use crate::support::pb;
use crate::support::pb::crypto_service_client::CryptoServiceClient;
use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::process::KmsdProcess;
use crate::support::security::audit_records;
use crate::support::{start_with, temp_dir};

/// Runs `kmsd audit verify FILES…`: whether it passed, and what it printed.
fn verify(files: &[&Path]) -> (bool, String) {
    verify_with(&[], files)
}

/// [`verify`] with `flags` before the files.
fn verify_with(flags: &[&str], files: &[&Path]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["audit", "verify"])
        .args(flags)
        .args(files)
        .output()
        .expect("run kmsd audit verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// SIGTERM, and waits (off the runtime, which must go on closing the test's
/// connections for kmsd to drain) until kmsd has exited 0.
async fn terminate(kmsd: KmsdProcess) -> KmsdProcess {
    kmsd.signal("TERM");
    let (status, kmsd) = tokio::task::spawn_blocking(move || {
        let mut kmsd = kmsd;
        (kmsd.wait_exit(Duration::from_secs(30)), kmsd)
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    kmsd
}

/// The records of calls, summary lines left out.
fn calls(records: &[AuditRecord]) -> Vec<&AuditRecord> {
    records.iter().filter(|r| r.count.is_none()).collect()
}

#[tokio::test]
async fn logrotate_under_load_loses_no_record_and_the_chain_verifies_across_files() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let audit = dir.join("audit.jsonl");
    let rotated = dir.join("audit.jsonl.1");
    let mut kmsd = KmsdProcess::spawn(
        &dir.join("data"),
        &[
            "--audit-log",
            audit.to_str().unwrap(),
            "--replica-id",
            "kmsd-e2e-0",
        ],
    );
    let channel = kmsd.channel().await;
    // The load: four clients calling back to back until told to stop, each keeping
    // the request ID of every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut crypto = CryptoServiceClient::new(channel.clone());
        let stop = Arc::clone(&stop);
        clients.spawn(async move {
            let mut answered = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = crypto
                    .generate_random(pb::GenerateRandomRequest { length: 32 })
                    .await
                    .expect("kmsd keeps serving through the rotation");
                answered.push(answer.into_inner().request_id.clone());
            }
            answered
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // logrotate: mv (kmsd goes on writing the renamed file), then SIGHUP.
    std::fs::rename(&audit, &rotated).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kmsd.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !audit.exists() {
        assert!(
            Instant::now() < deadline,
            "no new audit file 10 s after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let old_len_at_reopen = std::fs::metadata(&rotated).unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered = BTreeSet::new();
    while let Some(ids) = clients.join_next().await {
        answered.extend(ids.unwrap());
    }
    assert!(
        kmsd.child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop kmsd"
    );
    drop(channel);
    let kmsd = terminate(kmsd).await;
    drop(kmsd);

    assert_eq!(
        std::fs::metadata(&rotated).unwrap().len(),
        old_len_at_reopen,
        "nothing reaches the old file once the new one exists"
    );
    let (old, new) = (audit_records(&rotated), audit_records(&audit));
    let (old_calls, new_calls) = (calls(&old), calls(&new));
    assert!(
        old_calls.len() >= 10 && new_calls.len() >= 10,
        "load on both sides of the rotation: {} then {}",
        old_calls.len(),
        new_calls.len()
    );
    let recorded: Vec<&str> = old_calls
        .iter()
        .chain(&new_calls)
        .map(|r| r.request_id.as_str())
        .collect();
    let unique: BTreeSet<&str> = recorded.iter().copied().collect();
    assert_eq!(unique.len(), recorded.len(), "each call recorded once");
    assert_eq!(
        unique,
        answered.iter().map(String::as_str).collect(),
        "every answered call recorded, none lost"
    );
    for record in old_calls.iter().chain(&new_calls) {
        assert_eq!(record.replica.as_deref(), Some("kmsd-e2e-0"));
        assert_eq!(record.outcome, "OK");
    }
    let old_text = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(
        new[0].prev_sha256,
        Some(chain::line_sha256(old_text.lines().last().unwrap())),
        "the new file's first record names the old file's last line"
    );

    let (passed, said) = verify(&[&rotated, &audit]);
    assert!(passed, "{said}");
    let total = old.len() + new.len();
    assert!(
        said.contains(&format!("chain intact: {total} records in 2 files")),
        "{said}"
    );
    let (passed, said) = verify_with(&["--replica", "kmsd-e2e-0"], &[&rotated, &audit]);
    assert!(passed, "{said}");
    let (passed, said) = verify_with(&["--replica", "kmsd-e2e-1"], &[&rotated, &audit]);
    assert!(!passed && said.contains("no records of replica"), "{said}");

    // One line edited (a failure made to look like a success, or the reverse).
    let lines: Vec<&str> = old_text.lines().collect();
    let edited_at = lines.len() / 2;
    let edited: String = lines
        .iter()
        .enumerate()
        .map(|(index, line)| match index {
            i if i == edited_at => line.replacen("\"OK\"", "\"PERMISSION_DENIED\"", 1) + "\n",
            _ => format!("{line}\n"),
        })
        .collect();
    assert_ne!(edited, old_text);
    std::fs::write(&rotated, edited).unwrap();
    let (passed, said) = verify(&[&rotated, &audit]);
    assert!(!passed, "{said}");
    let broken_at = format!("audit.jsonl.1:{}: the chain is broken", edited_at + 2);
    assert!(said.contains(&broken_at), "{broken_at}: {said}");
}

#[tokio::test]
async fn stdout_with_audit_required_serves_calls_and_every_record_reaches_stdout() {
    let tmp = temp_dir();
    let mut kmsd = KmsdProcess::spawn_piping_stdout(
        &tmp.path().join("data"),
        &["--audit-log", "-", "--audit-required"],
    );
    let stdout = kmsd.child.stdout.take().expect("stdout piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let channel = kmsd.channel().await;
    let created = KeyManagementServiceClient::new(channel.clone())
        .create_key(pb::CreateKeyRequest::default())
        .await
        .expect("served with --audit-required on a pipe")
        .into_inner();
    let mut answered = vec![created.request_id];
    let mut crypto = CryptoServiceClient::new(channel);
    for _ in 0..20 {
        let answer = crypto
            .generate_random(pb::GenerateRandomRequest { length: 16 })
            .await
            .expect("served with --audit-required on a pipe");
        answered.push(answer.into_inner().request_id.clone());
    }
    drop(crypto);
    terminate(kmsd).await;

    // Every line on stdout is a record (logs go to stderr); each call has its STARTED
    // and its outcome, written before it was answered.
    let lines: Vec<String> = lines.iter().collect();
    let records: Vec<AuditRecord> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for request_id in &answered {
        let outcomes: Vec<&str> = records
            .iter()
            .filter(|r| &r.request_id == request_id)
            .map(|r| r.outcome.as_str())
            .collect();
        assert_eq!(outcomes, [STARTED_OUTCOME, "OK"], "{request_id}");
    }
    assert_eq!(records.len(), 2 * answered.len(), "{lines:#?}");
    let kept = tmp.path().join("from-stdout.jsonl");
    std::fs::write(&kept, lines.join("\n") + "\n").unwrap();
    let (passed, said) = verify(&[&kept]);
    assert!(passed, "{said}");
}

/// One syslog message: its RFC 5424 header fields and the record it carries.
fn syslog_message(datagram: &[u8]) -> (Vec<String>, AuditRecord) {
    let text = std::str::from_utf8(datagram).expect("UTF-8");
    let parts: Vec<&str> = text.splitn(8, ' ').collect();
    assert_eq!(parts.len(), 8, "{text}");
    let record = serde_json::from_str(parts[7]).unwrap_or_else(|e| panic!("{e}: {text}"));
    let header = parts[..7].iter().map(|part| (*part).to_owned()).collect();
    (header, record)
}

#[tokio::test]
async fn syslog_gets_each_record_as_one_rfc5424_message() {
    use std::os::unix::net::UnixDatagram;

    let tmp = temp_dir();
    let socket_path = tmp.path().join("log.sock");
    let daemon = UnixDatagram::bind(&socket_path).unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    type Receive<'a> = Box<dyn Fn(&mut [u8]) -> std::io::Result<usize> + 'a>;
    let cases: [(String, bool, Receive<'_>); 2] = [
        (
            format!("syslog://{}", socket_path.display()),
            true,
            Box::new(|buf| daemon.recv(buf)),
        ),
        (
            format!("syslog://{}", collector.local_addr().unwrap()),
            false,
            Box::new(|buf| collector.recv(buf)),
        ),
    ];
    for (target, required, receive) in cases {
        let server = start_with(|config| {
            config.audit_log = Some(target.clone().into());
            config.audit_required = required;
            config.replica = "replica-s".into();
        })
        .await;
        let answer = server
            .crypto()
            .generate_random(pb::GenerateRandomRequest { length: 16 })
            .await
            .unwrap_or_else(|e| panic!("{target}: {e}"))
            .into_inner();
        server.stop().await;
        let expected: &[&str] = if required {
            &[STARTED_OUTCOME, "OK"]
        } else {
            &["OK"]
        };
        let mut buf = vec![0u8; 64 * 1024];
        for outcome in expected {
            let len = receive(&mut buf).unwrap_or_else(|e| panic!("{target}: {e}"));
            let (header, record) = syslog_message(&buf[..len]);
            assert_eq!(
                header[0], "<86>1",
                "{target}: facility authpriv, severity info"
            );
            assert!(humantime::parse_rfc3339(&header[1]).is_ok(), "{header:?}");
            assert_eq!(
                header[2..],
                [
                    "replica-s",
                    "kmsd",
                    &std::process::id().to_string(),
                    "audit",
                    "-"
                ]
            );
            assert_eq!(record.request_id, answer.request_id, "{target}");
            assert_eq!(record.outcome, *outcome, "{target}");
            assert_eq!(record.replica.as_deref(), Some("replica-s"));
            assert!(record.prev_sha256.is_some());
        }
    }
}
