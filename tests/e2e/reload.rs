//! Live reload on the real binary: certificates, the client CA and the auth file
//! replaced on disk are served without a restart, after SIGHUP and by the file watch;
//! connections made before keep working; a broken file changes nothing and is counted.

use std::path::Path;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::support::pb::ListKeysRequest;
use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::process::KmsdProcess;
use crate::support::security::{Pem, TestCa, tls_channel, token_hash, with_token, write};
use crate::support::temp_dir;

/// Replaces `dir/name` at once (write, then rename), as cert-manager and Kubernetes do.
fn replace(dir: &Path, name: &str, contents: &str) {
    let staged = write(dir, &format!(".{name}.new"), contents);
    std::fs::rename(staged, dir.join(name)).unwrap();
}

fn serve_certificate(dir: &Path, pem: &Pem) {
    replace(dir, "server.key", &pem.key);
    replace(dir, "server.crt", &pem.cert);
}

async fn list_keys(channel: &Channel, token: Option<&str>) -> Result<(), tonic::Status> {
    let request = match token {
        Some(token) => with_token(ListKeysRequest::default(), token),
        None => tonic::Request::new(ListKeysRequest::default()),
    };
    KeyManagementServiceClient::new(channel.clone())
        .list_keys(request)
        .await
        .map(|_| ())
}

/// The value of `series` (name and labels, exactly) at `/metrics`, 0 when absent.
async fn metric(kmsd: &KmsdProcess, series: &str) -> f64 {
    let text = crate::operations::scrape(kmsd.metrics_addr.expect("--metrics-listen")).await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Waits (bounded) until `check` holds.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 15 s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_mtls(dir: &Path, ca: &TestCa, extra: &[&str]) -> KmsdProcess {
    serve_certificate(dir, &ca.server());
    replace(dir, "client-ca.pem", &ca.cert_pem());
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let client_ca = dir.join("client-ca.pem");
    let mut args = vec![
        "--pool-depth",
        "0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        client_ca.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    KmsdProcess::spawn(&dir.join("data"), &args)
}

#[tokio::test]
async fn a_new_certificate_and_client_ca_are_served_without_a_restart() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let old = TestCa::new("old mesh ca");
    let kmsd = spawn_mtls(dir, &old, &[]);
    let old_client = old.client("spiffe://cluster.local/ns/a/sa/old", "old");
    let existing = tls_channel(kmsd.addr, &old.cert_pem(), Some(&old_client))
        .await
        .unwrap();
    list_keys(&existing, None).await.unwrap();
    assert!(
        metric(
            &kmsd,
            r#"kmsd_tls_certificate_expiry_seconds{listener="grpc"}"#
        )
        .await
            > 0.0
    );

    // SIGHUP: the rotation's new CA, server certificate and client CA.
    let new = TestCa::new("new mesh ca");
    let new_client = new.client("spiffe://cluster.local/ns/a/sa/new", "new");
    serve_certificate(dir, &new.server());
    replace(dir, "client-ca.pem", &new.cert_pem());
    kmsd.signal("HUP");
    eventually("a client trusting only the new CA connects", async || {
        let channel = tls_channel(kmsd.addr, &new.cert_pem(), Some(&new_client)).await;
        matches!(channel, Ok(channel) if list_keys(&channel, None).await.is_ok())
    })
    .await;
    assert!(
        tls_channel(kmsd.addr, &old.cert_pem(), Some(&old_client))
            .await
            .is_err(),
        "a new handshake gets the new certificate"
    );
    list_keys(&existing, None)
        .await
        .expect("the connection made before the reload keeps working");
    assert!(metric(&kmsd, r#"kmsd_reloads_total{what="tls"}"#).await >= 1.0);

    // No signal: the file watch sees the next rotation by itself.
    let third = TestCa::new("third mesh ca");
    let third_client = third.client("spiffe://cluster.local/ns/a/sa/third", "third");
    serve_certificate(dir, &third.server());
    replace(dir, "client-ca.pem", &third.cert_pem());
    eventually("the file watch serves the third CA", async || {
        let channel = tls_channel(kmsd.addr, &third.cert_pem(), Some(&third_client)).await;
        matches!(channel, Ok(channel) if list_keys(&channel, None).await.is_ok())
    })
    .await;
    list_keys(&existing, None).await.unwrap();
}

const OPERATOR_TOKEN: &str = "reload-operator-token";
const PAYMENTS_TOKEN: &str = "reload-payments-token";

fn auth(with_payments: bool) -> String {
    let mut text = format!(
        "[[principals]]\nname = \"operator\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\nkeys = [\"*\"]\n",
        token_hash(OPERATOR_TOKEN)
    );
    if with_payments {
        text += &format!(
            "\n[[principals]]\nname = \"payments\"\ntoken_sha256 = \"{}\"\noperations = [\"ListKeys\"]\nkeys = [\"*\"]\n",
            token_hash(PAYMENTS_TOKEN)
        );
    }
    text
}

#[tokio::test]
async fn a_principal_removed_from_the_auth_file_is_refused_on_its_next_call() {
    let tmp = temp_dir();
    let dir = tmp.path();
    replace(dir, "auth.toml", &auth(true));
    let auth_path = dir.join("auth.toml");
    let kmsd = KmsdProcess::spawn(
        &dir.join("data"),
        &[
            "--pool-depth",
            "0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--auth-config",
            auth_path.to_str().unwrap(),
        ],
    );
    let channel = kmsd.channel().await;
    list_keys(&channel, Some(PAYMENTS_TOKEN)).await.unwrap();

    replace(dir, "auth.toml", &auth(false));
    eventually("payments is refused on the same connection", async || {
        list_keys(&channel, Some(PAYMENTS_TOKEN))
            .await
            .is_err_and(|status| status.code() == tonic::Code::Unauthenticated)
    })
    .await;
    list_keys(&channel, Some(OPERATOR_TOKEN)).await.unwrap();
    assert!(metric(&kmsd, r#"kmsd_reloads_total{what="auth"}"#).await >= 1.0);

    // And back on SIGHUP, the watch aside: the same file, read again on request.
    replace(dir, "auth.toml", &auth(true));
    kmsd.signal("HUP");
    eventually("payments is admitted again", async || {
        list_keys(&channel, Some(PAYMENTS_TOKEN)).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_broken_file_changes_nothing_and_is_counted() {
    let tmp = temp_dir();
    let dir = tmp.path();
    replace(dir, "auth.toml", &auth(true));
    let auth_path = dir.join("auth.toml");
    let ca = TestCa::new("mesh ca");
    let kmsd = spawn_mtls(
        dir,
        &ca,
        &[
            "--auth-config",
            auth_path.to_str().unwrap(),
            "--https-listen",
            "127.0.0.1:0",
        ],
    );
    let client = ca.client("spiffe://cluster.local/ns/a/sa/c", "c");
    let connect = async || {
        let channel = tls_channel(kmsd.addr, &ca.cert_pem(), Some(&client))
            .await
            .expect("the old certificate is still served");
        list_keys(&channel, Some(OPERATOR_TOKEN)).await.unwrap();
    };
    connect().await;
    let https_expiry = r#"kmsd_tls_certificate_expiry_seconds{listener="https"}"#;
    let expiry = metric(&kmsd, https_expiry).await;
    assert!(expiry > 0.0);

    // A certificate file that does not parse.
    replace(dir, "server.crt", "-----BEGIN CERTIFICATE-----\nbroken\n");
    kmsd.signal("HUP");
    eventually("the broken certificate is counted", async || {
        metric(&kmsd, r#"kmsd_reload_failures_total{what="tls"}"#).await >= 1.0
            && metric(&kmsd, r#"kmsd_reload_failures_total{what="gateway_tls"}"#).await >= 1.0
    })
    .await;
    connect().await;

    // A valid certificate whose key is not the served key.
    let other = TestCa::new("other ca").server();
    replace(dir, "server.crt", &other.cert);
    kmsd.signal("HUP");
    eventually("the mismatched key is counted", async || {
        metric(&kmsd, r#"kmsd_reload_failures_total{what="tls"}"#).await >= 2.0
    })
    .await;
    connect().await;
    assert_eq!(
        metric(&kmsd, r#"kmsd_reloads_total{what="tls"}"#).await,
        0.0
    );
    assert_eq!(metric(&kmsd, https_expiry).await, expiry);

    // A policy that does not validate: the old one still judges. (Each SIGHUP so far
    // read the unchanged auth file again, successfully.)
    let auth_reloads = metric(&kmsd, r#"kmsd_reloads_total{what="auth"}"#).await;
    replace(
        dir,
        "auth.toml",
        "[[principals]]\nname = \"x\"\ntoken_sha256 = \"not-hex\"\n",
    );
    kmsd.signal("HUP");
    eventually("the invalid policy is counted", async || {
        metric(&kmsd, r#"kmsd_reload_failures_total{what="auth"}"#).await >= 1.0
    })
    .await;
    connect().await;
    let channel = tls_channel(kmsd.addr, &ca.cert_pem(), Some(&client))
        .await
        .unwrap();
    list_keys(&channel, Some(PAYMENTS_TOKEN)).await.unwrap();
    assert_eq!(
        metric(&kmsd, r#"kmsd_reloads_total{what="auth"}"#).await,
        auth_reloads
    );
}
