//! End-to-end tests of the HTTPS gateway with raw HTTP/1.1 requests over TLS on real
//! sockets: what the official SDKs send (signed as they sign), and what they never
//! send (bad signatures, tampered bodies, skewed dates, unknown or expired client
//! keys, unknown operations, oversize bodies). The SDK itself runs in
//! `clients/sdk/test_sdk_gateway.py`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tonic::Code;

use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::pb::*;
use crate::support::*;

/// The protobuf `Error` body, as the SDKs decode it.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorBody {
    #[prost(int32, tag = "1")]
    status_code: i32,
    #[prost(string, tag = "2")]
    error_code: String,
    #[prost(string, tag = "3")]
    error_message: String,
    #[prost(string, tag = "4")]
    request_id: String,
}

/// A client key as the SDK holds it: its ID and the private key from its PKCS#12.
pub(crate) struct ClientKey {
    id: String,
    signer: RsaKeyPair,
}

pub(crate) async fn gateway_server(adjust: impl FnOnce(&mut kmsd::config::Config)) -> TestServer {
    start_with(|config| {
        config.https_listen = Some("127.0.0.1:0".parse().unwrap());
        adjust(config);
    })
    .await
}

pub(crate) async fn client_key(server: &TestServer, not_after: &str) -> ClientKey {
    client_key_on(server.management(), not_after).await
}

async fn client_key_on(
    mut management: KeyManagementServiceClient<tonic::transport::Channel>,
    not_after: &str,
) -> ClientKey {
    let created = management
        .create_client_key(CreateClientKeyRequest {
            principal: "e2e".into(),
            password: "pw-e2e-long-enough".into(),
            not_after: not_after.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    opened(&created, "pw-e2e-long-enough")
}

/// The client key a CreateClientKey answer holds, as the SDK opens it: its PKCS#12
/// under `password`.
fn opened(created: &CreateClientKeyResponse, password: &str) -> ClientKey {
    let der = BASE64.decode(&created.private_key_data).unwrap();
    let store = p12_keystore::KeyStore::from_pkcs12(&der, password).unwrap();
    let (_, chain) = store.private_key_chain().unwrap();
    ClientKey {
        id: created.client_key_id.clone(),
        signer: RsaKeyPair::from_pkcs8(chain.key()).unwrap(),
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The headers the SDK sends for `body`, signed as it signs (reference section 6).
pub(crate) fn signed_headers(
    key: &ClientKey,
    api_name: &str,
    digest_of: &[u8],
    date: SystemTime,
) -> Vec<(String, String)> {
    let sha = upper_hex(ring::digest::digest(&ring::digest::SHA256, digest_of).as_ref());
    let date = httpdate::fmt_http_date(date);
    let mut kms_headers = [
        ("x-kms-apiversion", "dkms-gcs-0.2".to_owned()),
        ("x-kms-apiname", api_name.to_owned()),
        ("x-kms-signaturemethod", "RSA_PKCS1_SHA_256".to_owned()),
        ("x-kms-acccesskeyid", key.id.clone()),
    ];
    kms_headers.sort();
    let mut to_sign = format!("POST\n{sha}\napplication/x-protobuf\n{date}\n");
    for (name, value) in &kms_headers {
        to_sign.push_str(&format!("{name}:{value}\n"));
    }
    to_sign.push('/');
    let mut signature = vec![0; key.signer.public().modulus_len()];
    key.signer
        .sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            to_sign.as_bytes(),
            &mut signature,
        )
        .unwrap();
    let mut headers: Vec<(String, String)> = kms_headers
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
    headers.extend([
        ("accept".to_owned(), "application/x-protobuf".to_owned()),
        (
            "content-type".to_owned(),
            "application/x-protobuf".to_owned(),
        ),
        ("content-sha256".to_owned(), sha),
        ("date".to_owned(), date),
        (
            "authorization".to_owned(),
            format!("Bearer {}", BASE64.encode(signature)),
        ),
    ]);
    headers
}

/// Sends one raw HTTP/1.1 request over TLS (verifying the development certificate)
/// and returns the status and body.
async fn send(server: &TestServer, headers: &[(String, String)], body: &[u8]) -> (u16, Vec<u8>) {
    let addr = server.server.https_addr().expect("gateway on");
    let ca = std::fs::read(server_data_dir(server).join("https-dev-cert.pem")).unwrap();
    send_to(addr, &ca, headers, body).await
}

/// Sends one raw HTTP/1.1 request over TLS to `addr`, trusting the PEM `ca`.
async fn send_to(
    addr: std::net::SocketAddr,
    ca: &[u8],
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let (status, _, body) = exchange_with(addr, ca, headers, body).await;
    (status, body)
}

/// Sends one raw HTTP/1.1 request to the server's gateway and returns the status, the
/// response head's headers (names lowercased) and the body.
pub(crate) async fn exchange(
    server: &TestServer,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = server.server.https_addr().expect("gateway on");
    let ca = std::fs::read(server_data_dir(server).join("https-dev-cert.pem")).unwrap();
    exchange_with(addr, &ca, headers, body).await
}

async fn exchange_with(
    addr: std::net::SocketAddr,
    ca: &[u8],
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = connect_tls(addr, ca).await.unwrap();
    let mut head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // A refused oversize body may be answered before it is all written.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase().contains("x-kms-request-id:"),
        "{head}"
    );
    let fields = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, fields, response[split + 4..].to_vec())
}

/// A TLS connection to `addr` (as 127.0.0.1), trusting the PEM `ca` only.
async fn connect_tls(
    addr: std::net::SocketAddr,
    ca: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca) {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn server_data_dir(server: &TestServer) -> std::path::PathBuf {
    server.data_dir().to_path_buf()
}

fn error(status_and_body: &(u16, Vec<u8>)) -> ErrorBody {
    let body = ErrorBody::decode(status_and_body.1.as_slice()).expect("an Error body");
    assert_eq!(body.status_code, i32::from(status_and_body.0));
    assert_request_id(&body.request_id);
    body
}

pub(crate) fn ec_request(key_id: &str) -> Vec<u8> {
    GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.to_owned(),
        key_pair_spec: "EC_P256".into(),
        key_format: "DER".into(),
        ..Default::default()
    }
    .encode_to_vec()
}

pub(crate) const GENERATE: &str = "GenerateDataKeyPairWithoutPlaintext";

#[tokio::test]
async fn signed_requests_are_served_and_everything_else_refused() {
    let server = gateway_server(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let key_id = create_key(&server).await;
    let key = client_key(&server, "").await;
    let now = server.clock_now();
    let body = ec_request(&key_id);

    // As the SDK sends it.
    let (status, answer) = send(&server, &signed_headers(&key, GENERATE, &body, now), &body).await;
    assert_eq!(status, 200, "{:?}", ErrorBody::decode(answer.as_slice()));
    let pair = GenerateDataKeyPairWithoutPlaintextResponse::decode(answer.as_slice()).unwrap();
    assert_eq!(pair.key_id, key_id);
    assert_eq!(pair.key_pair_spec, "EC_P256");
    assert_request_id(&pair.request_id);
    // The gRPC side opens what the gateway sealed.
    let opened = server
        .crypto()
        .decrypt(DecryptRequest {
            key_id: key_id.clone(),
            ciphertext_blob: pair.private_key_ciphertext_blob,
            iv: pair.iv,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!opened.into_inner().plaintext.is_empty());

    // A signature that does not verify.
    let mut headers = signed_headers(&key, GENERATE, &body, now);
    let auth = headers
        .iter_mut()
        .find(|(n, _)| n == "authorization")
        .unwrap();
    let mut signature = BASE64.decode(&auth.1[7..]).unwrap();
    signature[5] ^= 1;
    auth.1 = format!("Bearer {}", BASE64.encode(signature));
    let refused = send(&server, &headers, &body).await;
    assert_eq!(refused.0, 401);
    assert_eq!(error(&refused).error_code, "SignatureNotMatch");

    // A body other than the one content-sha256 (and so the signature) names.
    let other = ec_request("key-someotherkey");
    let refused = send(&server, &signed_headers(&key, GENERATE, &body, now), &other).await;
    assert_eq!(refused.0, 401);
    let err = error(&refused);
    assert_eq!(err.error_code, "SignatureNotMatch");
    assert!(err.error_message.contains("content-sha256"), "{err:?}");

    // A date more than 15 minutes off, either way.
    for date in [
        now - Duration::from_secs(16 * 60),
        now + Duration::from_secs(16 * 60),
    ] {
        let refused = send(&server, &signed_headers(&key, GENERATE, &body, date), &body).await;
        assert_eq!(refused.0, 401);
        assert_eq!(error(&refused).error_code, "RequestTimeTooSkewed");
    }

    // An unknown client key.
    let unknown = ClientKey {
        id: "KAAP.00000000-0000-4000-8000-000000000000".into(),
        signer: key.signer,
    };
    let refused = send(
        &server,
        &signed_headers(&unknown, GENERATE, &body, now),
        &body,
    )
    .await;
    assert_eq!(refused.0, 401);
    assert_eq!(error(&refused).error_code, "SignatureNotMatch");
    let key = ClientKey {
        id: key.id,
        signer: unknown.signer,
    };

    // An operation the gateway does not serve, signed or not.
    for name in ["NoSuchOperation", "CreateKey", ""] {
        let refused = send(&server, &signed_headers(&key, name, &body, now), &body).await;
        assert_eq!(refused.0, 400, "{name}");
        assert_eq!(error(&refused).error_code, "Rejected.UnsupportedOperation");
    }

    // A body over the limit.
    let huge = vec![0u8; 70 * 1024];
    let refused = send(&server, &signed_headers(&key, GENERATE, &huge, now), &huge).await;
    assert_eq!(refused.0, 413);
    assert_eq!(error(&refused).error_code, "InvalidParameter");

    // A body that is not the operation's message.
    let junk = b"\xff\xff\xff".to_vec();
    let refused = send(&server, &signed_headers(&key, GENERATE, &junk, now), &junk).await;
    assert_eq!(refused.0, 400);
    assert_eq!(error(&refused).error_code, "InvalidParameter");

    // The calls are counted with their transport.
    let metrics = crate::operations::scrape(server.server.metrics_addr().unwrap()).await;
    for line in [
        r#"kmsd_requests_total{method="kms.v1.CryptoService/GenerateDataKeyPairWithoutPlaintext",code="Ok",transport="https"} 1"#,
        r#"kmsd_requests_total{method="kms.v1.CryptoService/GenerateDataKeyPairWithoutPlaintext",code="Unauthenticated",transport="https"}"#,
        r#"kmsd_requests_total{method="unknown",code="Unimplemented",transport="https"} 3"#,
        r#"kmsd_requests_total{method="kms.v1.CryptoService/Decrypt",code="Ok",transport="grpc"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // Once deleted, the key signs nothing.
    server
        .management()
        .delete_client_key(DeleteClientKeyRequest {
            client_key_id: key.id.clone(),
        })
        .await
        .unwrap();
    let refused = send(&server, &signed_headers(&key, GENERATE, &body, now), &body).await;
    assert_eq!(refused.0, 401);
}

#[tokio::test]
async fn client_keys_expire() {
    let server = gateway_server(|_| {}).await;
    let key_id = create_key(&server).await;
    let not_after =
        humantime::format_rfc3339_seconds(server.clock_now() + Duration::from_secs(3600));
    let key = client_key(&server, &not_after.to_string()).await;
    let body = ec_request(&key_id);
    let ok = send(
        &server,
        &signed_headers(&key, GENERATE, &body, server.clock_now()),
        &body,
    )
    .await;
    assert_eq!(ok.0, 200);

    server.clock.advance(Duration::from_secs(2 * 3600));
    let refused = send(
        &server,
        &signed_headers(&key, GENERATE, &body, server.clock_now()),
        &body,
    )
    .await;
    assert_eq!(refused.0, 401);
    let expired = error(&refused);
    assert_eq!(expired.error_code, "SignatureNotMatch");

    // An unauthenticated caller learns nothing about client keys: an expired key, an
    // unknown ID and a bad signature get one and the same answer (the reason is logged).
    let unknown = ClientKey {
        id: "KAAP.00000000-0000-4000-8000-000000000000".into(),
        signer: key.signer,
    };
    let refused = send(
        &server,
        &signed_headers(&unknown, GENERATE, &body, server.clock_now()),
        &body,
    )
    .await;
    let unknown_err = error(&refused);
    assert_eq!(refused.0, 401);
    let valid = client_key(&server, "").await;
    let mut headers = signed_headers(&valid, GENERATE, &body, server.clock_now());
    let auth = headers
        .iter_mut()
        .find(|(n, _)| n == "authorization")
        .unwrap();
    let mut signature = BASE64.decode(&auth.1[7..]).unwrap();
    signature[5] ^= 1;
    auth.1 = format!("Bearer {}", BASE64.encode(signature));
    let refused = send(&server, &headers, &body).await;
    let bad_signature = error(&refused);
    for err in [&unknown_err, &bad_signature] {
        assert_eq!(err.error_code, expired.error_code, "{err:?}");
        assert_eq!(err.error_message, expired.error_message, "{err:?}");
    }
    assert!(!expired.error_message.contains("expired"), "{expired:?}");
    let key = ClientKey {
        id: key.id,
        signer: unknown.signer,
    };

    let listed = server
        .management()
        .list_client_keys(ListClientKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed = listed
        .client_keys
        .iter()
        .find(|k| k.client_key_id == key.id)
        .unwrap();
    assert_eq!(listed.not_after, not_after.to_string());
}

/// A client key minted while the server had no access control is refused once it has
/// a policy, until the operator re-admits it offline; list shows who minted each key
/// and under what; a validity beyond the maximum is refused.
#[tokio::test]
async fn client_keys_minted_in_open_mode_need_readmission_under_a_policy() {
    use crate::support::security::{token_hash, write};
    let server = gateway_server(|_| {}).await;
    let key_id = create_key(&server).await;
    let key = client_key(&server, "").await;
    let listed = server
        .management()
        .list_client_keys(ListClientKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.client_keys[0].minted_under, "open");
    assert_eq!(listed.client_keys[0].minted_by, "");

    // NotAfter 9999-12-31: beyond the one-year maximum.
    let too_long = server
        .management()
        .create_client_key(CreateClientKeyRequest {
            principal: "e2e".into(),
            password: "pw-e2e-long-enough".into(),
            not_after: "9999-12-31T00:00:00Z".into(),
            ..Default::default()
        })
        .await
        .err()
        .expect("a validity beyond the maximum is refused");
    assert_eq!(too_long.code(), Code::InvalidArgument, "{too_long:?}");

    let files = temp_dir();
    let auth = write(
        files.path(),
        "auth.toml",
        &format!(
            "[[principals]]\nname = \"e2e\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\nkeys = [\"*\"]\n",
            token_hash("e2e-token"),
        ),
    );
    let with_policy = |config: &mut kmsd::config::Config| {
        config.https_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth_config = Some(auth.clone());
    };
    let stopped = server.stop().await;
    let data_dir = stopped.data_dir().to_owned();
    let server = stopped.restart_with(with_policy).await;
    let body = ec_request(&key_id);
    let refused = send(
        &server,
        &signed_headers(&key, GENERATE, &body, server.clock_now()),
        &body,
    )
    .await;
    assert_eq!(refused.0, 401, "an open-mode key works under the policy");

    let stopped = server.stop().await;
    let readmit = kmsd::admin::run(vec![
        "kmsd".into(),
        "readmit-client-key".into(),
        "--data-dir".into(),
        data_dir.clone().into(),
        "--root-key-file".into(),
        data_dir.join("root.key").into(),
        key.id.clone().into(),
    ])
    .await;
    assert_eq!(readmit, std::process::ExitCode::SUCCESS);
    let server = stopped.restart_with(with_policy).await;
    let served = send(
        &server,
        &signed_headers(&key, GENERATE, &body, server.clock_now()),
        &body,
    )
    .await;
    assert_eq!(served.0, 200, "{:?}", error(&served));
}

/// One key pair limit for both transports: while a slow Generate runs on one, the
/// other answers at once that the limit is reached.
#[tokio::test]
async fn the_key_pair_limit_is_shared_across_transports() {
    let server = gateway_server(|config| config.keypair_concurrency = 1).await;
    let key_id = create_key(&server).await;
    let key = client_key(&server, "").await;
    let rsa = GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.clone(),
        key_pair_spec: "RSA_4096".into(),
        key_format: "DER".into(),
        ..Default::default()
    };

    // gRPC in flight → HTTPS refused with 429.
    let mut seen = false;
    for _ in 0..10 {
        let mut crypto = server.crypto();
        let slow = tokio::spawn({
            let rsa = rsa.clone();
            async move { crypto.generate_data_key_pair_without_plaintext(rsa).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let body = ec_request(&key_id);
        let answer = send(
            &server,
            &signed_headers(&key, GENERATE, &body, server.clock_now()),
            &body,
        )
        .await;
        let still_running = !slow.is_finished();
        slow.await.unwrap().unwrap();
        if answer.0 == 429 && still_running {
            let err = error(&answer);
            assert_eq!(err.error_code, "Rejected.Throttling");
            assert_eq!(err.error_message, "Concurrency Limit Exceeded.");
            seen = true;
            break;
        }
    }
    assert!(
        seen,
        "an HTTPS call during a gRPC Generate was never throttled"
    );

    // HTTPS in flight → gRPC refused with RESOURCE_EXHAUSTED.
    let body = rsa.encode_to_vec();
    let mut seen = false;
    for _ in 0..10 {
        let headers = signed_headers(&key, GENERATE, &body, server.clock_now());
        let slow = {
            let body = body.clone();
            let server_ref = &server;
            async move { send(server_ref, &headers, &body).await }
        };
        let fast = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            server
                .crypto()
                .generate_data_key_pair_without_plaintext(
                    GenerateDataKeyPairWithoutPlaintextRequest {
                        key_id: key_id.clone(),
                        key_pair_spec: "EC_P256".into(),
                        key_format: "DER".into(),
                        ..Default::default()
                    },
                )
                .await
        };
        let (slow, fast) = tokio::join!(slow, fast);
        assert_eq!(slow.0, 200);
        if let Err(status) = fast {
            assert_eq!(status.code(), Code::ResourceExhausted);
            assert_eq!(reason(&status), "Rejected.Throttling");
            seen = true;
            break;
        }
    }
    assert!(
        seen,
        "a gRPC call during an HTTPS Generate was never throttled"
    );
}

/// A client key acts as its principal: the auth file's grants apply, and the audit
/// log names the principal and the transport.
#[tokio::test]
async fn a_client_key_acts_as_its_principal() {
    use crate::support::security::{audit_records, token_hash, with_token, write};
    let files = temp_dir();
    let auth = write(
        files.path(),
        "auth.toml",
        &format!(
            "[[principals]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\nkeys = [\"*\"]\n\
             [[principals]]\nname = \"payments\"\ntoken_sha256 = \"{}\"\noperations = [\"Decrypt\"]\nkeys = [\"*\"]\n\
             [[principals]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\noperations = [\"CreateClientKey\", \"ListClientKeys\", \"DeleteClientKey\"]\nkeys = [\"*\"]\n",
            token_hash("admin-token"),
            token_hash("payments-token-unused"),
            token_hash("ops-token"),
        ),
    );
    let audit = files.path().join("audit.jsonl");
    let server = gateway_server(|config| {
        config.auth_config = Some(auth.clone());
        config.audit_log = Some(audit.clone());
    })
    .await;
    let mut management = server.management();
    let key_id = management
        .create_key(with_token(CreateKeyRequest::default(), "admin-token"))
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let mut keys = Vec::new();
    for principal in ["payments", "ghost"] {
        let created = management
            .create_client_key(with_token(
                CreateClientKeyRequest {
                    principal: principal.into(),
                    password: "pw-long-enough".into(),
                    ..Default::default()
                },
                "admin-token",
            ))
            .await
            .unwrap()
            .into_inner();
        keys.push(opened(&created, "pw-long-enough"));
    }
    // A principal granted CreateClientKey but not unrestricted makes keys for itself
    // only: a key for another principal would borrow that principal's grants.
    for (principal, allowed) in [("ops", true), ("admin", false)] {
        let result = management
            .create_client_key(with_token(
                CreateClientKeyRequest {
                    principal: principal.into(),
                    password: "pw-long-enough".into(),
                    ..Default::default()
                },
                "ops-token",
            ))
            .await;
        match result {
            Ok(_) => assert!(allowed, "ops made a key for {principal}"),
            Err(status) => {
                assert!(!allowed, "{status:?}");
                assert_eq!(status.code(), Code::PermissionDenied);
            }
        }
    }

    // ... and sees and deletes only its own.
    let listed = management
        .list_client_keys(with_token(ListClientKeysRequest::default(), "ops-token"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.client_keys.len(), 1);
    assert_eq!(listed.client_keys[0].principal, "ops");
    let refused = management
        .delete_client_key(with_token(
            DeleteClientKeyRequest {
                client_key_id: keys[0].id.clone(),
            },
            "ops-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    let all = management
        .list_client_keys(with_token(ListClientKeysRequest::default(), "admin-token"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.client_keys.len(), 3);

    let now = server.clock_now();
    let generate = ec_request(&key_id);
    let decrypt = DecryptRequest {
        key_id: key_id.clone(),
        ciphertext_blob: vec![1; 40],
        iv: vec![0; 12],
        ..Default::default()
    }
    .encode_to_vec();

    // Not granted: 403.
    let refused = send(
        &server,
        &signed_headers(&keys[0], GENERATE, &generate, now),
        &generate,
    )
    .await;
    assert_eq!(refused.0, 403);
    assert_eq!(error(&refused).error_code, "Forbidden.NoPermission");
    // Granted: the call runs (and fails on its bogus ciphertext, not on access).
    let ran = send(
        &server,
        &signed_headers(&keys[0], "Decrypt", &decrypt, now),
        &decrypt,
    )
    .await;
    assert_eq!(ran.0, 400);
    assert_eq!(error(&ran).error_code, "InvalidParameter");
    // A principal the auth file does not list: 401.
    let refused = send(
        &server,
        &signed_headers(&keys[1], "Decrypt", &decrypt, now),
        &decrypt,
    )
    .await;
    assert_eq!(refused.0, 401);

    server.server.shutdown().await.unwrap();
    let records = audit_records(&audit);
    let https: Vec<_> = records
        .iter()
        .filter(|r| r.transport.as_deref() == Some("https"))
        .collect();
    assert_eq!(https.len(), 2, "{records:#?}");
    assert_eq!(https[0].principal.as_deref(), Some("payments"));
    assert_eq!(https[0].operation, GENERATE);
    assert_eq!(https[0].outcome, "PERMISSION_DENIED");
    assert_eq!(https[1].principal.as_deref(), Some("payments"));
    assert_eq!(https[1].operation, "Decrypt");
    assert_eq!(https[1].key_id.as_deref(), Some(key_id.as_str()));
    // Which client key signed: a principal may hold several.
    for record in &https {
        assert_eq!(record.client_key_id.as_deref(), Some(keys[0].id.as_str()));
    }
    let create = records
        .iter()
        .find(|r| r.operation == "CreateClientKey")
        .unwrap();
    assert_eq!(create.transport.as_deref(), Some("grpc"));
    assert_eq!(create.principal.as_deref(), Some("admin"));
    // Who the key was made for, besides who made it.
    assert_eq!(create.target_principal.as_deref(), Some("payments"));
    assert_eq!(create.key_id.as_deref(), Some(keys[0].id.as_str()));
}

/// Without a certificate the gateway is refused on a non-loopback address, before
/// anything is created; with --tls-cert it serves that certificate, and makes none.
#[tokio::test]
async fn the_gateway_serves_kmsds_certificate_and_refuses_to_improvise_one() {
    use crate::support::security::{TestCa, start_raw, tls_channel, write};
    use kmsd::config::TlsFiles;

    let dir = temp_dir();
    let mut config = test_config(&dir.path().join("data"));
    config.https_listen = Some("0.0.0.0:0".parse().unwrap());
    let err = start_raw(config).await.unwrap_err();
    assert!(err.to_string().contains("--tls-cert"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "a refused start creates nothing"
    );

    let ca = TestCa::new("gateway-test-ca");
    let pem = ca.server();
    let mut config = test_config(&dir.path().join("data"));
    config.https_listen = Some("127.0.0.1:0".parse().unwrap());
    config.tls = Some(TlsFiles {
        cert: write(dir.path(), "cert.pem", &pem.cert),
        key: write(dir.path(), "key.pem", &pem.key),
        client_ca: None,
    });
    let (server, addr) = start_raw(config).await.unwrap();
    let channel = tls_channel(addr, &ca.cert_pem(), None).await.unwrap();
    let mut management = KeyManagementServiceClient::new(channel);
    let key_id = management
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let created = management
        .create_client_key(CreateClientKeyRequest {
            principal: "e2e".into(),
            password: "pw-long-enough".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key = opened(&created, "pw-long-enough");
    let body = ec_request(&key_id);
    // The start_raw clock is the harness's start clock.
    let now = start_clock_now();
    let answer = send_to(
        server.https_addr().unwrap(),
        ca.cert_pem().as_bytes(),
        &signed_headers(&key, GENERATE, &body, now),
        &body,
    )
    .await;
    assert_eq!(
        answer.0,
        200,
        "{:?}",
        ErrorBody::decode(answer.1.as_slice())
    );
    assert!(!dir.path().join("data/https-dev-cert.pem").exists());
    server.shutdown().await.unwrap();
}

/// The mesh layout and the SDK gateway in one process: gRPC plaintext on every
/// interface (a sidecar terminates mTLS), the gateway on every interface with its own
/// certificate (`--https-tls-cert`), which a SIGHUP replaces like the others.
#[tokio::test]
async fn plaintext_grpc_and_a_gateway_with_its_own_certificate_share_one_process() {
    use crate::support::process::KmsdProcess;
    use crate::support::security::{TestCa, plain_channel, token_hash, with_token, write};

    let dir = temp_dir();
    let files = dir.path();
    let auth = write(
        files,
        "auth.toml",
        &format!(
            "[[principals]]\nname = \"app\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\nkeys = [\"*\"]\n",
            token_hash("app-token")
        ),
    );
    let gateway_ca = TestCa::new("gateway ca");
    let pem = gateway_ca.server();
    let cert = write(files, "gateway.crt", &pem.cert);
    let key = write(files, "gateway.key", &pem.key);
    let kmsd = KmsdProcess::spawn(
        &files.join("data"),
        &[
            "--listen",
            "0.0.0.0:0",
            "--allow-plaintext",
            "--auth-config",
            auth.to_str().unwrap(),
            "--https-listen",
            "0.0.0.0:0",
            "--https-tls-cert",
            cert.to_str().unwrap(),
            "--https-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let local =
        |addr: std::net::SocketAddr| std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let (grpc, https) = (
        local(kmsd.addr),
        local(kmsd.https_addr.expect("gateway on")),
    );

    // gRPC without TLS.
    let mut management = KeyManagementServiceClient::new(plain_channel(grpc).await.unwrap());
    let key_id = management
        .create_key(with_token(CreateKeyRequest::default(), "app-token"))
        .await
        .expect("plaintext gRPC")
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let created = management
        .create_client_key(with_token(
            CreateClientKeyRequest {
                principal: "app".into(),
                password: "pw-mesh-long-enough".into(),
                ..Default::default()
            },
            "app-token",
        ))
        .await
        .unwrap()
        .into_inner();
    let client_key = opened(&created, "pw-mesh-long-enough");

    // The gateway over TLS, with its own certificate.
    let call = async |ca: &str| {
        let body = ec_request(&key_id);
        let headers = signed_headers(&client_key, GENERATE, &body, SystemTime::now());
        send_to(https, ca.as_bytes(), &headers, &body).await
    };
    let (status, body) = call(&gateway_ca.cert_pem()).await;
    assert_eq!(status, 200, "{:?}", ErrorBody::decode(body.as_slice()));
    let next_ca = TestCa::new("next gateway ca");
    assert!(
        connect_tls(https, next_ca.cert_pem().as_bytes())
            .await
            .is_err()
    );

    // A new certificate, then SIGHUP: served to the next connections.
    let next = next_ca.server();
    for (name, contents) in [("gateway.key", &next.key), ("gateway.crt", &next.cert)] {
        let staged = write(files, &format!(".{name}.new"), contents);
        std::fs::rename(staged, files.join(name)).unwrap();
    }
    kmsd.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while connect_tls(https, next_ca.cert_pem().as_bytes())
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = call(&next_ca.cert_pem()).await;
    assert_eq!(status, 200);
    assert!(
        connect_tls(https, gateway_ca.cert_pem().as_bytes())
            .await
            .is_err()
    );
    // gRPC is still plaintext.
    management
        .list_keys(with_token(ListKeysRequest::default(), "app-token"))
        .await
        .expect("plaintext gRPC after the reload");
}

fn start_clock_now() -> SystemTime {
    use kmsd::clock::Clock;
    start_clock().now()
}

/// One call sent both ways: over gRPC with a principal's token, and through the
/// gateway signed with a client key of the same principal.
struct Both<'a> {
    server: &'a TestServer,
    key: &'a ClientKey,
    token: &'a str,
}

/// How a call ended, as its caller sees it: OK, or the public error code and message.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Ok,
    Refused(String, String),
}

impl Both<'_> {
    async fn grpc(&self, request: GenerateDataKeyPairWithoutPlaintextRequest, token: &str) -> Seen {
        use crate::support::security::with_token;
        match self
            .server
            .crypto()
            .generate_data_key_pair_without_plaintext(with_token(request, token))
            .await
        {
            Ok(_) => Seen::Ok,
            Err(status) => Seen::Refused(reason(&status), status.message().to_owned()),
        }
    }

    async fn https(&self, api_name: &str, body: &[u8], signed_by: &ClientKey) -> Seen {
        let now = self.server.clock_now();
        let answer = send(
            self.server,
            &signed_headers(signed_by, api_name, body, now),
            body,
        )
        .await;
        if answer.0 == 200 {
            return Seen::Ok;
        }
        let body = error(&answer);
        Seen::Refused(body.error_code, body.error_message)
    }

    /// The same request both ways; both must be seen alike.
    async fn same(&self, request: GenerateDataKeyPairWithoutPlaintextRequest) -> Seen {
        let grpc = self.grpc(request.clone(), self.token).await;
        let https = self
            .https(GENERATE, &request.encode_to_vec(), self.key)
            .await;
        assert_eq!(grpc, https, "{request:?}");
        grpc
    }
}

/// What an audit record says about a call, leaving out what differs by nature
/// (time, request ID, transport).
fn audited(record: &kmsd::audit::AuditRecord) -> String {
    format!(
        "{:?} {} {:?} {:?} {:?} {} {:?} {:?}",
        record.principal,
        record.operation,
        record.key_id,
        record.key_version_id,
        record.key_pair_spec,
        record.outcome,
        record.error_code,
        record.count
    )
}

#[tokio::test]
async fn grpc_and_the_gateway_give_the_same_answers_audit_records_and_metrics() {
    use crate::support::security::{audit_records, token_hash, with_token, write};
    let files = temp_dir();
    let auth = write(
        files.path(),
        "auth.toml",
        &format!(
            "[[principals]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\nkeys = [\"*\"]\n\
             [[principals]]\nname = \"payments\"\ntoken_sha256 = \"{}\"\n\
             operations = [\"GenerateDataKeyPairWithoutPlaintext\"]\nkeys = [\"alias/pay*\"]\n",
            token_hash("admin-token"),
            token_hash("payments-token"),
        ),
    );
    let audit = files.path().join("audit.jsonl");
    let server = gateway_server(|config| {
        config.auth_config = Some(auth.clone());
        config.audit_log = Some(audit.clone());
        config.replica = "replica-p".into();
    })
    .await;
    let mut management = server.management();
    let mut new_key = async |alias: &str| {
        let key_id = management
            .create_key(with_token(CreateKeyRequest::default(), "admin-token"))
            .await
            .unwrap()
            .into_inner()
            .key_metadata
            .unwrap()
            .key_id;
        management
            .create_alias(with_token(
                CreateAliasRequest {
                    key_id: key_id.clone(),
                    alias_name: alias.into(),
                },
                "admin-token",
            ))
            .await
            .unwrap();
        key_id
    };
    new_key("alias/payments").await;
    let other = new_key("alias/other").await;
    let created = management
        .create_client_key(with_token(
            CreateClientKeyRequest {
                principal: "payments".into(),
                password: "pw-parity-long-enough".into(),
                ..Default::default()
            },
            "admin-token",
        ))
        .await
        .unwrap()
        .into_inner();
    let key = opened(&created, "pw-parity-long-enough");
    assert!(server.server.kms().audit().unwrap().flush().await);
    let before = audit_records(&audit).len();

    let both = Both {
        server: &server,
        key: &key,
        token: "payments-token",
    };
    let request = |key_id: &str, spec: &str| GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.into(),
        key_pair_spec: spec.into(),
        key_format: "DER".into(),
        ..Default::default()
    };
    // Served; a key outside the grants; an alias that does not exist; a bad parameter.
    assert_eq!(
        both.same(request("alias/payments", "EC_P256")).await,
        Seen::Ok
    );
    let denied = both.same(request(&other, "EC_P256")).await;
    assert!(matches!(&denied, Seen::Refused(code, _) if code == "Forbidden.NoPermission"));
    let missing = both.same(request("alias/pay-missing", "EC_P256")).await;
    assert!(matches!(&missing, Seen::Refused(code, _) if code == "Forbidden.AliasNotFound"));
    let invalid = both.same(request("alias/payments", "EC_P999")).await;
    assert!(matches!(&invalid, Seen::Refused(code, _) if code == "InvalidParameter"));
    // An operation outside the grants.
    let encrypt = EncryptRequest {
        key_id: "alias/payments".into(),
        plaintext: b"secret".to_vec(),
        ..Default::default()
    };
    let grpc = match server
        .crypto()
        .encrypt(with_token(encrypt.clone(), "payments-token"))
        .await
    {
        Ok(_) => Seen::Ok,
        Err(status) => Seen::Refused(reason(&status), status.message().to_owned()),
    };
    let https = both.https("Encrypt", &encrypt.encode_to_vec(), &key).await;
    assert_eq!(grpc, https);
    assert!(matches!(&grpc, Seen::Refused(code, _) if code == "Forbidden.NoPermission"));
    // No valid credentials: a wrong token, a signature by a key the server does not know.
    let stranger = ClientKey {
        id: "ck-unknown".into(),
        ..opened(&created, "pw-parity-long-enough")
    };
    let grpc = both
        .grpc(request("alias/payments", "EC_P256"), "wrong-token")
        .await;
    let https = both
        .https(GENERATE, &ec_request("alias/payments"), &stranger)
        .await;
    assert!(
        matches!(&grpc, Seen::Refused(code, _) if code == "SignatureNotMatch"),
        "{grpc:?}"
    );
    assert!(
        matches!(&https, Seen::Refused(code, _) if code == "SignatureNotMatch"),
        "{https:?}"
    );

    // The audit log: each call twice, alike but for the transport; the unauthenticated
    // ones only in the summary line, never one line each.
    let log = server.server.kms().audit().unwrap();
    assert!(log.flush().await);
    tokio::time::sleep(Duration::from_millis(1200)).await; // the summary line's second
    assert!(log.flush().await);
    let records = audit_records(&audit).split_off(before);
    let calls: Vec<_> = records.iter().filter(|r| r.count.is_none()).collect();
    assert_eq!(calls.len(), 10, "{records:#?}");
    for pair in calls.chunks(2) {
        assert_eq!(audited(pair[0]), audited(pair[1]));
        assert_eq!(pair[0].transport.as_deref(), Some("grpc"));
        assert_eq!(pair[1].transport.as_deref(), Some("https"));
        // How each proved who it is, from where, and the alias as the caller named it.
        assert_eq!(pair[0].auth.as_deref(), Some("token"));
        assert_eq!(pair[1].auth.as_deref(), Some("client_key"));
        assert_eq!(pair[0].key_alias, pair[1].key_alias);
        for record in pair {
            let peer: std::net::SocketAddr = record.peer.as_deref().unwrap().parse().unwrap();
            assert!(peer.ip().is_loopback(), "{peer}");
            assert_eq!(record.replica.as_deref(), Some("replica-p"));
        }
    }
    let aliases: Vec<Option<&str>> = calls
        .iter()
        .step_by(2)
        .map(|r| r.key_alias.as_deref())
        .collect();
    assert_eq!(
        aliases,
        [
            Some("alias/payments"),
            None,
            Some("alias/pay-missing"),
            Some("alias/payments"),
            None, // Encrypt is refused before any key is looked at
        ]
    );
    let verified = kmsd::audit::chain::verify(std::slice::from_ref(&audit)).unwrap();
    assert_eq!(verified.records, audit_records(&audit).len() as u64);
    let summarized: u64 = records.iter().filter_map(|r| r.count).sum();
    assert_eq!(summarized, 2, "{records:#?}");

    // The metrics: the same counts on both transports.
    let metrics = server.server.kms().metrics().render().await;
    for (method, code, count) in [
        ("GenerateDataKeyPairWithoutPlaintext", "Ok", 1),
        ("GenerateDataKeyPairWithoutPlaintext", "PermissionDenied", 1),
        ("GenerateDataKeyPairWithoutPlaintext", "NotFound", 1),
        ("GenerateDataKeyPairWithoutPlaintext", "InvalidArgument", 1),
        ("GenerateDataKeyPairWithoutPlaintext", "Unauthenticated", 1),
        ("Encrypt", "PermissionDenied", 1),
    ] {
        for transport in ["grpc", "https"] {
            let line = format!(
                "kmsd_requests_total{{method=\"kms.v1.CryptoService/{method}\",code=\"{code}\",transport=\"{transport}\"}} {count}"
            );
            assert!(metrics.contains(&line), "missing {line}\n{metrics}");
        }
    }
}

/// A database writer without the root key can neither forge a client-key row nor
/// change one: the gateway refuses both; a row kmsd wrote keeps working; and root key
/// rotation signs the genuine rows again under the new key.
#[tokio::test]
async fn client_key_rows_written_without_the_root_key_are_refused() {
    use kmsd::store::{ClientKeyRecord, StoreSettings};
    let server = gateway_server(|_| {}).await;
    let key_id = create_key(&server).await;
    let genuine = client_key(&server, "").await;
    let altered = client_key(&server, "").await;
    let source = client_key(&server, "").await;
    let body = ec_request(&key_id);
    let status = async |server: &TestServer, key: &ClientKey| {
        let headers = signed_headers(key, GENERATE, &body, server.clock_now());
        send(server, &headers, &body).await.0
    };
    assert_eq!(status(&server, &altered).await, 200);

    // With the server stopped, write to the store directly, as a database writer can.
    let stopped = server.stop().await;
    let data_dir = stopped.data_dir().to_owned();
    {
        let settings = StoreSettings::Embedded {
            data_dir: data_dir.clone(),
        };
        let store = kmsd::store::open(&settings).await.unwrap();
        let row = store.get_client_key(&altered.id).await.unwrap().unwrap();
        // A longer life for a genuine row, its MAC kept.
        let longer = ClientKeyRecord {
            not_after_ms: row.not_after_ms + 10 * 365 * 24 * 3600 * 1000,
            ..row.clone()
        };
        assert!(store.replace_client_key(&longer).await.unwrap());
        // A row of its own, for a key pair it holds, with a genuine row's MAC.
        let source = store.get_client_key(&source.id).await.unwrap().unwrap();
        let forged = ClientKeyRecord {
            client_key_id: "KAAP.00000000-0000-0000-0000-000000000000".into(),
            ..source
        };
        store.insert_client_key(&forged).await.unwrap();
    }
    let server = stopped
        .restart_with(|config| {
            config.https_listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
    let forged = ClientKey {
        id: "KAAP.00000000-0000-0000-0000-000000000000".into(),
        signer: source.signer,
    };
    assert_eq!(status(&server, &genuine).await, 200, "a genuine row");
    assert_eq!(status(&server, &forged).await, 401, "a forged row");
    assert_eq!(status(&server, &altered).await, 401, "an altered row");

    // Rotation signs the genuine row again and leaves the others refused.
    let stopped = server.stop().await;
    let new_root = data_dir.join("new-root.key");
    write_root_key(&new_root, &[7u8; 32]);
    let rotated = kmsd::admin::run(vec![
        "kmsd".into(),
        "rotate-root-key".into(),
        "--data-dir".into(),
        data_dir.clone().into(),
        "--root-key-file".into(),
        data_dir.join("root.key").into(),
        "--new-root-key-file".into(),
        new_root.clone().into(),
    ])
    .await;
    assert_eq!(rotated, std::process::ExitCode::SUCCESS);
    let server = stopped
        .restart_with(|config| {
            config.https_listen = Some("127.0.0.1:0".parse().unwrap());
            config.root_key_file = Some(new_root.clone());
        })
        .await;
    assert_eq!(
        status(&server, &genuine).await,
        200,
        "signed under the new key"
    );
    assert_eq!(status(&server, &forged).await, 401);
    assert_eq!(status(&server, &altered).await, 401);
}

/// SIGTERM while a signed call is in flight: the call gets its answer before the
/// process exits (the gateway's connections are among what shutdown drains).
#[tokio::test]
async fn sigterm_lets_an_in_flight_https_call_finish() {
    use crate::support::process::KmsdProcess;
    let tmp = temp_dir();
    let mut kmsd = KmsdProcess::spawn(
        tmp.path(),
        &[
            "--pool-depth",
            "0",
            "--shutdown-grace-secs",
            "30",
            "--https-listen",
            "127.0.0.1:0",
        ],
    );
    let channel = kmsd.channel().await;
    let mut management = KeyManagementServiceClient::new(channel.clone());
    let key_id = management
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let key = client_key_on(management, "").await;
    let https = kmsd.https_addr.expect("the gateway listens");
    let ca = std::fs::read(tmp.path().join("https-dev-cert.pem")).unwrap();
    // An RSA_4096 generation (pool off): usually seconds of work, in flight at the
    // signal. Its time varies with the primes drawn, so a call that finished before
    // the signal could be sent is not a failure: send another.
    let body = GenerateDataKeyPairWithoutPlaintextRequest {
        key_id,
        key_pair_spec: "RSA_4096".into(),
        key_format: "DER".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut in_flight = None;
    for _ in 0..20 {
        let (ca, body) = (ca.clone(), body.clone());
        let headers = signed_headers(&key, GENERATE, &body, SystemTime::now());
        let call = tokio::spawn(async move { send_to(https, &ca, &headers, &body).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !call.is_finished() {
            in_flight = Some(call);
            break;
        }
        assert_eq!(call.await.unwrap().0, 200, "a call before the signal");
    }
    let in_flight = in_flight.expect("one of 20 RSA_4096 calls still running after 50 ms");
    kmsd.signal("TERM");
    let answer = tokio::time::timeout(Duration::from_secs(30), in_flight)
        .await
        .expect("answered within the grace period")
        .expect("the call got a response");
    assert_eq!(
        answer.0,
        200,
        "{:?}",
        ErrorBody::decode(answer.1.as_slice())
    );
    let status = tokio::task::spawn_blocking(move || kmsd.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A client cannot hold more than --https-max-connections open: the next connection is
/// closed at once (before any TLS) and counted; once the held ones go, it serves again.
#[tokio::test]
async fn gateway_connections_are_capped_and_refusals_counted() {
    let server = gateway_server(|config| {
        config.https_max_connections = 2;
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.server.https_addr().unwrap();
    // Two sockets that never start TLS: each holds a connection slot.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let metrics = crate::operations::scrape(server.server.metrics_addr().unwrap()).await;
    assert!(
        metrics.contains("kmsd_https_connections_refused_total 1"),
        "{metrics}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key_id = create_key(&server).await;
    let key = client_key(&server, "").await;
    let body = ec_request(&key_id);
    let answer = send(
        &server,
        &signed_headers(&key, GENERATE, &body, server.clock_now()),
        &body,
    )
    .await;
    assert_eq!(answer.0, 200);
}

/// Nothing of an unsigned request's body is waited for: a request whose body would
/// take minutes to arrive is refused as soon as its head is read.
#[tokio::test]
async fn an_unsigned_request_is_refused_without_reading_its_body() {
    let server = gateway_server(|_| {}).await;
    let addr = server.server.https_addr().unwrap();
    let ca = std::fs::read(server.data_dir().join("https-dev-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    // A 60 KiB body announced, 10 bytes of it sent, the rest never.
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 61440\r\n\
         x-kms-apiname: {GENERATE}\r\ncontent-type: application/x-protobuf\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 10]).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut response))
        .await
        .expect("answered at once, not after the body")
        .unwrap();
    let text = String::from_utf8_lossy(&response[..read]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}

/// Refusals before the caller is authenticated (no valid signature, a body over the
/// limit, a body that never arrives whole) are counted in the audit log's one summary
/// line, never written one line each.
#[tokio::test]
async fn refusals_before_authentication_are_counted_not_written_one_by_one() {
    use crate::support::security::audit_records;
    let files = temp_dir();
    let audit = files.path().join("audit.jsonl");
    let server = gateway_server(|config| config.audit_log = Some(audit.clone())).await;
    let key_id = create_key(&server).await;
    let key = client_key(&server, "").await;
    let now = server.clock_now();
    // No signature at all.
    let body = ec_request(&key_id);
    let unsigned = [("x-kms-apiname".to_owned(), GENERATE.to_owned())];
    assert_eq!(send(&server, &unsigned, &body).await.0, 401);
    // Signed, but over the size limit.
    let huge = vec![0u8; 70 * 1024];
    let refused = send(&server, &signed_headers(&key, GENERATE, &huge, now), &huge).await;
    assert_eq!(refused.0, 413);
    // Signed, and the body stops half way: the client goes away.
    let addr = server.server.https_addr().unwrap();
    let ca = std::fs::read(server.data_dir().join("https-dev-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in signed_headers(&key, GENERATE, &body, now) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    stream.shutdown().await.unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.server.shutdown().await.unwrap();
    let records = audit_records(&audit);
    let per_call: Vec<_> = records
        .iter()
        .filter(|r| r.transport.as_deref() == Some("https"))
        .collect();
    assert!(per_call.is_empty(), "{per_call:#?}");
    let counted: u64 = records
        .iter()
        .filter(|r| r.operation == kmsd::audit::UNAUTHENTICATED_OPERATION)
        .filter_map(|r| r.count)
        .sum();
    assert_eq!(counted, 3, "{records:#?}");
}
