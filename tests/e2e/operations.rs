//! End-to-end tests of what operators rely on: health and readiness, reflection,
//! and the Prometheus endpoint.

use std::time::Duration;

use kmsd::crypto::keygen::KeyPairSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::pb::*;
use crate::support::*;

async fn health(server: &TestServer, service: &str) -> ServingStatus {
    HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

const SERVICES: [&str; 3] = ["", "kms.v1.CryptoService", "kms.v1.KeyManagementService"];

#[tokio::test]
async fn health_turns_serving_once_the_pool_is_primed() {
    // One pooled RSA_4096 pair takes long enough to see NOT_SERVING first.
    let mut pool = PoolConfig::uniform(0);
    pool.depths.insert(KeyPairSpec::Rsa4096, 1);
    pool.depths.insert(KeyPairSpec::EcP256, 2);
    let server = start_with(|config| config.pool = pool).await;
    let first = health(&server, "").await;
    let mut status = first;
    for _ in 0..300 {
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = health(&server, "").await;
    }
    assert_eq!(status, ServingStatus::Serving, "primed within 15 s");
    assert_eq!(
        first,
        ServingStatus::NotServing,
        "not ready before the pool has RSA_4096"
    );
    for service in SERVICES {
        assert_eq!(
            health(&server, service).await,
            ServingStatus::Serving,
            "{service}"
        );
    }
}

#[tokio::test]
async fn health_is_serving_at_once_with_the_pool_off_and_stops_on_shutdown() {
    let server = start().await;
    for service in SERVICES {
        assert_eq!(
            health(&server, service).await,
            ServingStatus::Serving,
            "{service}"
        );
    }
    let mut watch = HealthClient::new(server.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    server.server.begin_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
}

#[tokio::test]
async fn reflection_lists_every_service_in_both_versions() {
    let server = start().await;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(server.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "kms.v1.CryptoService",
        "kms.v1.KeyManagementService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "kms.v1.CryptoService".into(),
        )),
    };
    let mut responses = AlphaClient::new(server.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(
        matches!(response.message_response, Some(AlphaResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
        "v1alpha serves the descriptor of kms.v1.CryptoService"
    );
}

/// grpcurl and other reflection clients decode an error's details by asking for the
/// file that declares `google.rpc.ErrorInfo`; without it they print "not recognized".
#[tokio::test]
async fn reflection_serves_the_error_detail_types() {
    use prost::Message;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let server = start().await;
    for (request, file) in [
        (
            MessageRequest::FileContainingSymbol("google.rpc.ErrorInfo".into()),
            "google/rpc/error_details.proto",
        ),
        (
            MessageRequest::FileContainingSymbol("google.rpc.RequestInfo".into()),
            "google/rpc/error_details.proto",
        ),
        (
            MessageRequest::FileContainingSymbol("google.rpc.Status".into()),
            "google/rpc/status.proto",
        ),
        (
            MessageRequest::FileByFilename("google/protobuf/any.proto".into()),
            "google/protobuf/any.proto",
        ),
    ] {
        let asked = format!("{request:?}");
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut responses = ServerReflectionClient::new(server.channel.clone())
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("{asked}: {:?}", response.message_response);
        };
        let first =
            prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
                .unwrap();
        assert_eq!(first.name(), file, "{asked}");
    }
}

pub(crate) async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: kmsd\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

fn value_of(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_calls_codes_pool_store_and_throttle() {
    let mut pool = PoolConfig::uniform(0);
    pool.depths.insert(KeyPairSpec::EcP256, 3);
    let server = start_with(|config| {
        config.pool = pool;
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.server.metrics_addr().expect("metrics are served");
    let key_id = create_key(&server).await;
    let mut kms = server.management();
    let _ = kms
        .describe_key(DescribeKeyRequest {
            key_id: "key-nosuchkey".into(),
        })
        .await
        .unwrap_err();
    kms.create_key_version(CreateKeyVersionRequest {
        key_id: key_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut crypto = server.crypto();
    for _ in 0..2 {
        crypto
            .generate_data_key_pair_without_plaintext(GenerateDataKeyPairWithoutPlaintextRequest {
                key_id: key_id.clone(),
                key_pair_spec: "EC_P256".into(),
                key_format: "DER".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // A throttled call: two RSA_4096 calls at once with the pool off for RSA.
    let request = GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.clone(),
        key_pair_spec: "RSA_4096".into(),
        key_format: "DER".into(),
        ..Default::default()
    };
    let (mut first, mut second) = (server.crypto(), server.crypto());
    let (a, b) = tokio::join!(
        first.generate_data_key_pair_without_plaintext(request.clone()),
        second.generate_data_key_pair_without_plaintext(request),
    );
    assert_eq!(
        usize::from(a.is_err()) + usize::from(b.is_err()),
        1,
        "one of two throttled"
    );

    let metrics = scrape(addr).await;
    assert_eq!(
        value_of(
            &metrics,
            r#"kmsd_requests_total{method="kms.v1.KeyManagementService/CreateKey",code="Ok",transport="grpc"}"#
        ),
        1.0
    );
    assert_eq!(
        value_of(
            &metrics,
            r#"kmsd_requests_total{method="kms.v1.KeyManagementService/DescribeKey",code="NotFound",transport="grpc"}"#
        ),
        1.0
    );
    assert_eq!(
        value_of(
            &metrics,
            r#"kmsd_requests_total{method="kms.v1.CryptoService/GenerateDataKeyPairWithoutPlaintext",code="Ok",transport="grpc"}"#
        ),
        3.0
    );
    assert_eq!(
        value_of(
            &metrics,
            r#"kmsd_requests_total{method="kms.v1.CryptoService/GenerateDataKeyPairWithoutPlaintext",code="ResourceExhausted",transport="grpc"}"#
        ),
        1.0
    );
    assert_eq!(value_of(&metrics, "kmsd_throttle_rejections_total"), 1.0);
    assert_eq!(value_of(&metrics, "kmsd_keypair_concurrency_limit"), 1.0);
    assert_eq!(
        value_of(&metrics, r#"kmsd_pool_capacity{spec="EC_P256"}"#),
        3.0
    );
    assert_eq!(
        value_of(&metrics, r#"kmsd_pool_capacity{spec="RSA_4096"}"#),
        0.0
    );
    assert_eq!(
        value_of(&metrics, r#"kmsd_pool_misses_total{spec="RSA_4096"}"#),
        1.0
    );
    assert!(value_of(&metrics, r#"kmsd_keygen_total{spec="EC_P256"}"#) >= 3.0);
    assert!(value_of(&metrics, r#"kmsd_keygen_seconds_total{spec="EC_P256"}"#) > 0.0);
    assert_eq!(value_of(&metrics, "kmsd_store_keys"), 1.0);
    assert_eq!(value_of(&metrics, "kmsd_store_available"), 1.0);
    assert_eq!(value_of(&metrics, "kmsd_store_key_versions"), 2.0);
    assert_eq!(
        value_of(&metrics, r#"kmsd_build_info{version="0.1.0"}"#),
        1.0
    );
    assert!(metrics.contains(r#"kmsd_request_duration_seconds_bucket{le="+Inf",method="kms.v1.KeyManagementService/CreateKey",transport="grpc"}"#)
        || metrics.contains(r#"kmsd_request_duration_seconds_bucket{method="kms.v1.KeyManagementService/CreateKey",transport="grpc",le="+Inf"}"#),
        "{metrics}");
    assert!(metrics.contains("kmsd_automatic_rotations_total"));
}
