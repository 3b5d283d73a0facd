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
    let kms = server.server.kms();
    kms.metrics().render(kms.registry()).await
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
            r#"kmsd_requests_total{method="kms.v1.CryptoService/Decrypt",code="InvalidArgument"} 1"#
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
        metrics.contains(r#"kmsd_requests_total{method="unknown",code="Unimplemented"} 4"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("Nope"),
        "made-up names never become labels"
    );
}
