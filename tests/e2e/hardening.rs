//! What a hostile or broken client can do at the HTTP/2 and protobuf level, checked
//! with a raw HTTP/2 client (h2) that sends what tonic's client never would.

use bytes::Bytes;
use http::{HeaderMap, Request};
use prost::Message;
use tokio::net::TcpStream;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{self, create_key, pb};

/// A raw HTTP/2 connection to the server; `window` is the stream window it
/// advertises (0: the server may send no response body at all).
async fn raw_client(server: &support::TestServer, window: u32) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(server.server.local_addr())
        .await
        .expect("connect");
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.ready().await.expect("ready")
}

/// Sends one gRPC call with `body` as its message bytes (framed, uncompressed) and
/// returns the response head and the body stream, unread.
async fn raw_call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    message: &[u8],
) -> http::Response<h2::RecvStream> {
    let request = Request::builder()
        .method("POST")
        .uri(format!("http://kms.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).expect("send");
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    send.send_data(Bytes::from(frame), true).expect("send body");
    response.await.expect("response head")
}

/// The gRPC status of a trailers-only response head.
fn status_of(headers: &HeaderMap) -> tonic::Status {
    tonic::Status::from_header_map(headers).expect("a trailers-only error response")
}

async fn metrics_text(server: &support::TestServer) -> String {
    server.server.kms().metrics().render().await
}

#[tokio::test]
async fn a_reader_that_never_opens_its_window_does_not_hold_the_key_pair_permit() {
    let server = support::start().await;
    let key_id = create_key(&server).await;
    let request = pb::GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.clone(),
        key_pair_spec: "EC_P256".into(),
        key_format: "DER".into(),
        ..Default::default()
    };

    // A client whose stream window is 0 gets the response head but never the body.
    let mut stalled = raw_client(&server, 0).await;
    let response = raw_call(
        &mut stalled,
        "/kms.v1.CryptoService/GenerateDataKeyPairWithoutPlaintext",
        &request.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        tonic::Status::from_header_map(response.headers()).is_none(),
        "the stalled call itself succeeded"
    );

    // While its body is stuck, everyone else's key pair calls are served.
    for _ in 0..4 {
        server
            .crypto()
            .generate_data_key_pair_without_plaintext(request.clone())
            .await
            .expect("not throttled by a slow reader");
    }
    let stats = server.server.kms().throttle().stats();
    assert_eq!(stats.in_flight(), 0);
    assert_eq!(stats.rejected_total(), 0);
    drop(response);
}

#[tokio::test]
async fn a_body_that_is_not_protobuf_is_the_callers_fault() {
    let server = support::start().await;
    let mut client = raw_client(&server, 65_535).await;
    // Field 1 as a length-delimited value 255 bytes long, with 3 bytes present.
    let response = raw_call(
        &mut client,
        "/kms.v1.CryptoService/Decrypt",
        &[0x0a, 0xff, 0x01, 1, 2, 3],
    )
    .await;
    let status = match tonic::Status::from_header_map(response.headers()) {
        Some(status) => status,
        None => {
            let mut body = response.into_body();
            while body.data().await.is_some() {}
            let trailers = body.trailers().await.unwrap().expect("trailers");
            status_of(&trailers)
        }
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "InvalidParameter"
    );
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains(
            r#"kmsd_requests_total{method="kms.v1.CryptoService/Decrypt",code="InvalidArgument",transport="grpc"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unknown_method_is_one_unimplemented_with_one_label() {
    let server = support::start().await;
    let mut client = raw_client(&server, 65_535).await;
    for path in [
        "/kms.v1.CryptoService/Nope",
        "/kms.v1.KeyManagementService/Decrypt",
        "/grpc.health.v1.Health/Nope",
        "/x",
    ] {
        let response = raw_call(&mut client, path, &[]).await;
        let status = status_of(response.headers());
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "Rejected.UnsupportedOperation",
            "{path}"
        );
        assert!(
            response.headers().contains_key("x-kms-request-id"),
            "{path}"
        );
    }
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains(
            r#"kmsd_requests_total{method="unknown",code="Unimplemented",transport="grpc"} 4"#
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("Nope"),
        "made-up names never become labels"
    );
}

#[tokio::test]
async fn with_audit_required_a_call_that_cannot_be_audited_has_no_effect() {
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let server = support::start_with(|config| {
        config.audit_log = Some("/dev/full".into());
        config.audit_required = true;
    })
    .await;
    let created = server
        .management()
        .create_key(pb::CreateKeyRequest::default())
        .await;
    support::assert_error(created, Code::Internal, "InternalFailure");
    let missing = server
        .management()
        .describe_key(pb::DescribeKeyRequest {
            key_id: "key-doesnotexist000000000".into(),
        })
        .await;
    support::assert_error(missing, Code::Internal, "InternalFailure");
    let counts = server.server.kms().registry().counts().await.unwrap();
    assert_eq!(counts.keys, 0, "the refused CreateKey changed nothing");
    // Health needs no audit record and keeps answering.
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok());
}

#[tokio::test]
async fn with_audit_required_each_call_is_on_disk_before_its_response() {
    use crate::support::security::{audit_records, token_hash, with_token, write};

    let dir = support::temp_dir();
    let audit = dir.path().join("audit.jsonl");
    let auth = write(
        dir.path(),
        "auth.toml",
        &format!(
            "[[principals]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\nkeys = [\"*\"]\n",
            token_hash("ops-token")
        ),
    );
    let data = dir.path().join("data");
    let mut config = support::test_config(&data);
    config.audit_log = Some(audit.clone());
    config.audit_required = true;
    config.auth_config = Some(auth);
    let server = support::try_start(config, support::start_clock())
        .await
        .expect("server starts");

    let created = server
        .management()
        .create_key(with_token(pb::CreateKeyRequest::default(), "ops-token"))
        .await
        .expect("audited call")
        .into_inner();
    // Read at once, with no flush: the response was sent after both lines were synced.
    let records = audit_records(&audit);
    let ours: Vec<_> = records
        .iter()
        .filter(|r| r.request_id == created.request_id)
        .map(|r| (r.operation.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(ours, [("CreateKey", "STARTED"), ("CreateKey", "OK")]);

    // Callers without credentials are counted, not written one by one.
    for _ in 0..20 {
        let refused = server
            .management()
            .list_keys(pb::ListKeysRequest::default())
            .await;
        support::assert_error(refused, Code::Unauthenticated, "SignatureNotMatch");
    }
    // Summary lines (one per writer tick while there are any) add up to the 20 calls.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let records = audit_records(&audit);
        assert!(
            !records.iter().any(|r| r.operation == "ListKeys"),
            "no line per unauthenticated call"
        );
        let summaries: Vec<_> = records.iter().filter(|r| r.count.is_some()).collect();
        assert!(summaries.iter().all(|r| r.outcome == "UNAUTHENTICATED"));
        let counted: u64 = summaries.iter().filter_map(|r| r.count).sum();
        assert!(counted <= 20, "{counted}");
        if counted == 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counted {counted} of 20"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn audit_required_without_an_audit_log_is_refused_at_start() {
    let dir = support::temp_dir();
    let mut config = support::test_config(dir.path());
    config.audit_required = true;
    let refused = support::try_start(config, support::start_clock()).await;
    let Err(err) = refused else {
        panic!("the start must be refused");
    };
    assert!(err.to_string().contains("--audit-log"), "{err}");
}
