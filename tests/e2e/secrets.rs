//! Secrets end to end: the secrets family and GetSecretValue over gRPC, with the public
//! API's fields and error codes; GetSecretValue through the HTTPS gateway as the
//! official SDK sends it; grants by secret name pattern under an auth file.

use prost::Message;
use tonic::Code;

use crate::gateway::{client_key, exchange, gateway_server, signed_headers};
use crate::support::pb::secrets_service_client::SecretsServiceClient;
use crate::support::pb::*;
use crate::support::security::{plain_channel, start_raw, token_hash, with_token, write};
use crate::support::*;

fn secrets(server: &TestServer) -> SecretsServiceClient<tonic::transport::Channel> {
    SecretsServiceClient::new(server.channel.clone())
}

async fn create(server: &TestServer, name: &str, data: &str) -> CreateSecretResponse {
    secrets(server)
        .create_secret(CreateSecretRequest {
            secret_name: name.into(),
            secret_data: data.into(),
            version_id: "v1".into(),
            extended_config: r#"{"DBName":"orders"}"#.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn get(
    server: &TestServer,
    request: GetSecretValueRequest,
) -> Result<GetSecretValueResponse, tonic::Status> {
    server
        .crypto()
        .get_secret_value(request)
        .await
        .map(tonic::Response::into_inner)
}

fn by_name(name: &str) -> GetSecretValueRequest {
    GetSecretValueRequest {
        secret_name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_secret_lifecycle_over_grpc_answers_with_the_public_fields_and_codes() {
    let server = start().await;
    let created = create(&server, "db/orders", "pw-one").await;
    assert_eq!(created.secret_type, "Generic");
    assert_eq!(created.version_id, "v1");
    assert_eq!(created.automatic_rotation, "Disabled");
    assert_request_id(&created.request_id);

    // ExtendedConfig only when asked for.
    let plain = get(&server, by_name("db/orders")).await.unwrap();
    assert_eq!(plain.secret_data, "pw-one");
    assert_eq!(plain.secret_data_type, "text");
    assert_eq!(plain.version_stages, ["ACSCurrent"]);
    assert_eq!(plain.extended_config, "");
    assert!(humantime::parse_rfc3339(&plain.create_time).is_ok());
    let asked = get(
        &server,
        GetSecretValueRequest {
            fetch_extended_config: true,
            ..by_name("db/orders")
        },
    )
    .await
    .unwrap();
    assert_eq!(asked.extended_config, r#"{"DBName":"orders"}"#);

    // A new value becomes current; the old one is ACSPrevious; binary in base64.
    let put = secrets(&server)
        .put_secret_value(PutSecretValueRequest {
            secret_name: "db/orders".into(),
            version_id: "v2".into(),
            secret_data: "AAEC/w==".into(),
            secret_data_type: "binary".into(),
            version_stages: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.version_stages, ["ACSCurrent"]);
    let current = get(&server, by_name("db/orders")).await.unwrap();
    assert_eq!(
        (
            current.secret_data.as_str(),
            current.secret_data_type.as_str()
        ),
        ("AAEC/w==", "binary")
    );
    let previous = get(
        &server,
        GetSecretValueRequest {
            version_stage: "ACSPrevious".into(),
            ..by_name("db/orders")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (previous.version_id.as_str(), previous.secret_data.as_str()),
        ("v1", "pw-one")
    );

    // Errors: a stage and an ID of different versions, a missing secret and version,
    // a name taken, a bad name, a value over 30 KiB.
    assert_error(
        get(
            &server,
            GetSecretValueRequest {
                version_stage: "ACSCurrent".into(),
                version_id: "v1".into(),
                ..by_name("db/orders")
            },
        )
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_error(
        get(&server, by_name("db/nope")).await,
        Code::NotFound,
        "Forbidden.ResourceNotFound",
    );
    assert_error(
        get(
            &server,
            GetSecretValueRequest {
                version_id: "v9".into(),
                ..by_name("db/orders")
            },
        )
        .await,
        Code::NotFound,
        "Forbidden.ResourceNotFound",
    );
    assert_error(
        secrets(&server)
            .create_secret(CreateSecretRequest {
                secret_name: "db/orders".into(),
                secret_data: "x".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "Rejected.ResourceExist",
    );
    assert_error(
        get(&server, by_name("bad name")).await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_error(
        secrets(&server)
            .put_secret_value(PutSecretValueRequest {
                secret_name: "db/orders".into(),
                version_id: "big".into(),
                secret_data: "x".repeat(30 * 1024 + 1),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );

    // Stages move; versions list with and without the unstaged ones.
    secrets(&server)
        .update_secret_version_stage(UpdateSecretVersionStageRequest {
            secret_name: "db/orders".into(),
            version_stage: "ACSCurrent".into(),
            remove_from_version: "v2".into(),
            move_to_version: "v1".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&server, by_name("db/orders")).await.unwrap().version_id,
        "v1"
    );
    let listed = secrets(&server)
        .list_secret_version_ids(ListSecretVersionIdsRequest {
            secret_name: "db/orders".into(),
            include_deprecated: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let stages: Vec<(String, Vec<String>)> = listed
        .version_ids
        .into_iter()
        .map(|v| (v.version_id, v.version_stages))
        .collect();
    assert_eq!(
        stages,
        [
            ("v1".to_owned(), vec!["ACSCurrent".to_owned()]),
            ("v2".to_owned(), vec!["ACSPrevious".to_owned()]),
        ]
    );

    // Rotation settings are recorded and reported.
    secrets(&server)
        .update_secret_rotation_policy(UpdateSecretRotationPolicyRequest {
            secret_name: "db/orders".into(),
            enable_automatic_rotation: true,
            rotation_interval: "7d".into(),
        })
        .await
        .unwrap();
    let described = secrets(&server)
        .describe_secret(DescribeSecretRequest {
            secret_name: "db/orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.automatic_rotation, "Enabled");
    assert_eq!(described.rotation_interval, "604800s");
    assert!(!described.next_rotation_date.is_empty());
    assert!(described.encryption_key_id.starts_with("key-"));

    // Deletion with a recovery window, undone; then forced.
    let scheduled = secrets(&server)
        .delete_secret(DeleteSecretRequest {
            secret_name: "db/orders".into(),
            recovery_window_in_days: 7,
            force_delete_without_recovery: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!scheduled.planned_delete_time.is_empty());
    assert_error(
        get(&server, by_name("db/orders")).await,
        Code::FailedPrecondition,
        "Rejected.InvalidSecretState",
    );
    secrets(&server)
        .restore_secret(RestoreSecretRequest {
            secret_name: "db/orders".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&server, by_name("db/orders"))
            .await
            .unwrap()
            .secret_data,
        "pw-one"
    );
    secrets(&server)
        .delete_secret(DeleteSecretRequest {
            secret_name: "db/orders".into(),
            force_delete_without_recovery: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_error(
        get(&server, by_name("db/orders")).await,
        Code::NotFound,
        "Forbidden.ResourceNotFound",
    );
    let list = secrets(&server)
        .list_secrets(ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_count, 0);
    server.stop().await;
}

#[tokio::test]
async fn get_secret_value_through_the_gateway_answers_as_grpc_does() {
    let server = gateway_server(|_| {}).await;
    create(&server, "api/token", "gateway-value").await;
    let key = client_key(&server, "").await;
    let body = GetSecretValueRequest {
        fetch_extended_config: true,
        ..by_name("api/token")
    }
    .encode_to_vec();
    let headers = signed_headers(&key, "GetSecretValue", &body, server.clock_now());
    let (status, _, answer) = exchange(&server, &headers, &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let over_https = GetSecretValueResponse::decode(answer.as_slice()).unwrap();
    let over_grpc = get(
        &server,
        GetSecretValueRequest {
            fetch_extended_config: true,
            ..by_name("api/token")
        },
    )
    .await
    .unwrap();
    assert_eq!(over_https.secret_data, "gateway-value");
    assert_eq!(over_https.extended_config, r#"{"DBName":"orders"}"#);
    for (https, grpc) in [
        (&over_https.secret_name, &over_grpc.secret_name),
        (&over_https.secret_data, &over_grpc.secret_data),
        (&over_https.version_id, &over_grpc.version_id),
        (&over_https.create_time, &over_grpc.create_time),
        (
            &over_https.automatic_rotation,
            &over_grpc.automatic_rotation,
        ),
    ] {
        assert_eq!(https, grpc);
    }
    // The secrets family itself is not the SDK's: the gateway does not serve it.
    let body = DescribeSecretRequest {
        secret_name: "api/token".into(),
    }
    .encode_to_vec();
    let headers = signed_headers(&key, "DescribeSecret", &body, server.clock_now());
    let (status, _, _) = exchange(&server, &headers, &body).await;
    assert_ne!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn secrets_are_granted_by_name_pattern() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let auth = write(
        dir,
        "auth.toml",
        &format!(
            "[[principals]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\n\
             keys = [\"*\"]\nsecrets = [\"*\"]\n\n\
             [[principals]]\nname = \"payments\"\ntoken_sha256 = \"{}\"\n\
             operations = [\"GetSecretValue\", \"ListSecrets\"]\nsecrets = [\"db/payments/*\"]\n",
            token_hash("admin-token"),
            token_hash("payments-token")
        ),
    );
    let mut config = test_config(dir);
    config.auth_config = Some(auth);
    let (server, addr) = start_raw(config).await.expect("starts");
    let channel = plain_channel(addr).await.unwrap();
    let mut admin = SecretsServiceClient::new(channel.clone());
    for name in ["db/payments/primary", "db/orders/primary"] {
        admin
            .create_secret(with_token(
                CreateSecretRequest {
                    secret_name: name.into(),
                    secret_data: format!("value of {name}"),
                    ..Default::default()
                },
                "admin-token",
            ))
            .await
            .unwrap();
    }
    let mut crypto = crypto_service_client::CryptoServiceClient::new(channel.clone());
    let read = |name: &str| with_token(by_name(name), "payments-token");
    let granted = crypto
        .get_secret_value(read("db/payments/primary"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.secret_data, "value of db/payments/primary");
    // Outside the pattern: refused, whether or not the secret exists.
    for name in ["db/orders/primary", "db/orders/missing"] {
        assert_error(
            crypto.get_secret_value(read(name)).await,
            Code::PermissionDenied,
            "Forbidden.NoPermission",
        );
    }
    // An operation not granted: refused too.
    assert_error(
        SecretsServiceClient::new(channel.clone())
            .describe_secret(with_token(
                DescribeSecretRequest {
                    secret_name: "db/payments/primary".into(),
                },
                "payments-token",
            ))
            .await,
        Code::PermissionDenied,
        "Forbidden.NoPermission",
    );
    let listed = SecretsServiceClient::new(channel)
        .list_secrets(with_token(ListSecretsRequest::default(), "payments-token"))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = listed
        .secret_list
        .into_iter()
        .map(|s| s.secret_name)
        .collect();
    assert_eq!(names, ["db/payments/primary"]);
    server.shutdown().await.unwrap();
}
