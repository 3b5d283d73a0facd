//! Idempotency tokens on the creation operations, over gRPC against the embedded store:
//! a retried call with the same token makes one object and answers the first call's;
//! another token makes another; the same token with other parameters is refused; the
//! token is scoped per operation; and a replayed CreateClientKey never answers a
//! private key twice. The replicas' race is in `postgres.rs`.

use tonic::Code;

use crate::support::pb::secrets_service_client::SecretsServiceClient;
use crate::support::pb::{
    CreateClientKeyRequest, CreateKeyRequest, CreateKeyVersionRequest, CreateSecretRequest,
    ListClientKeysRequest, ListKeyVersionsRequest, ListKeysRequest, ListSecretsRequest,
};
use crate::support::*;

async fn key_count(server: &TestServer) -> usize {
    server
        .management()
        .list_keys(ListKeysRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .keys
        .len()
}

fn create_key_request(token: &str, key_spec: &str) -> CreateKeyRequest {
    CreateKeyRequest {
        key_spec: key_spec.into(),
        description: "made once".into(),
        idempotency_token: token.into(),
        ..Default::default()
    }
}

async fn create_key_once(
    server: &TestServer,
    request: CreateKeyRequest,
) -> Result<pb::KeyMetadata, tonic::Status> {
    server
        .management()
        .create_key(request)
        .await
        .map(|response| response.into_inner().key_metadata.expect("KeyMetadata"))
}

#[tokio::test]
async fn a_retried_create_key_with_one_token_makes_one_key() {
    let server = start().await;
    let before = key_count(&server).await;
    let first = create_key_once(&server, create_key_request("tok-1", ""))
        .await
        .unwrap();
    let retried = create_key_once(&server, create_key_request("tok-1", ""))
        .await
        .unwrap();
    assert_eq!(retried, first, "the first call's answer");
    assert_eq!(key_count(&server).await, before + 1, "one key");

    // Another token: another key.
    let second = create_key_once(&server, create_key_request("tok-2", ""))
        .await
        .unwrap();
    assert_ne!(second.key_id, first.key_id);
    assert_eq!(key_count(&server).await, before + 2);

    // The same token with other parameters: refused, nothing made.
    for other in [
        create_key_request("tok-1", "EC_P256"),
        CreateKeyRequest {
            description: "another description".into(),
            ..create_key_request("tok-1", "")
        },
    ] {
        let status = assert_error(
            create_key_once(&server, other).await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
        assert!(status.message().contains("IdempotencyToken"), "{status:?}");
    }
    assert_eq!(key_count(&server).await, before + 2);

    // Malformed tokens.
    for bad in ["has space", &"x".repeat(65), "é"] {
        assert_error(
            create_key_once(&server, create_key_request(bad, "")).await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
    // Without a token every call creates.
    create_key(&server).await;
    create_key(&server).await;
    assert_eq!(key_count(&server).await, before + 4);

    // The token survives a restart (it is in the store, not in memory).
    let server = server.stop().await.restart().await;
    let after_restart = create_key_once(&server, create_key_request("tok-1", ""))
        .await
        .unwrap();
    assert_eq!(after_restart.key_id, first.key_id);
    assert_eq!(key_count(&server).await, before + 4);
}

#[tokio::test]
async fn concurrent_create_keys_with_one_token_make_one_key() {
    let server = start().await;
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let mut management = server.management();
            tokio::spawn(async move {
                management
                    .create_key(create_key_request("race", ""))
                    .await
                    .map(|r| r.into_inner().key_metadata.unwrap().key_id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().expect("every call answers the key"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(key_count(&server).await, 1);
}

#[tokio::test]
async fn a_retried_create_key_version_with_one_token_adds_one_version() {
    let server = start().await;
    let key = create_key(&server).await;
    let other_key = create_key(&server).await;
    let rotate = |key_id: &str, token: &str| {
        let mut management = server.management();
        let request = CreateKeyVersionRequest {
            key_id: key_id.into(),
            idempotency_token: token.into(),
        };
        async move {
            management
                .create_key_version(request)
                .await
                .map(|r| r.into_inner().key_version.unwrap())
        }
    };
    let versions = async |key_id: &str| {
        server
            .management()
            .list_key_versions(ListKeyVersionsRequest {
                key_id: key_id.into(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .key_versions
            .len()
    };
    let first = rotate(&key, "v-1").await.unwrap();
    let again = rotate(&key, "v-1").await.unwrap();
    assert_eq!(again, first);
    assert_eq!(versions(&key).await, 2, "one version added");
    assert_ne!(rotate(&key, "v-2").await.unwrap(), first);
    assert_eq!(versions(&key).await, 3);
    // The same token for another key is another request: refused.
    assert_error(
        rotate(&other_key, "v-1").await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_eq!(versions(&other_key).await, 1);
    // Tokens are scoped per operation: CreateKey's "v-1" is a new token there.
    let made = create_key_once(&server, create_key_request("v-1", ""))
        .await
        .unwrap();
    assert_ne!(made.key_id, key);
}

#[tokio::test]
async fn a_retried_create_secret_with_one_token_makes_one_secret() {
    let server = start().await;
    let mut secrets = SecretsServiceClient::new(server.channel.clone());
    let request = |name: &str, data: &str, token: &str| CreateSecretRequest {
        secret_name: name.into(),
        secret_data: data.into(),
        idempotency_token: token.into(),
        ..Default::default()
    };
    let first = secrets
        .create_secret(request("db/once", "s3cret", "s-1"))
        .await
        .unwrap()
        .into_inner();
    // Without a token the name is taken; with it, the retry answers the first call.
    assert_error(
        secrets
            .create_secret(request("db/once", "s3cret", ""))
            .await,
        Code::AlreadyExists,
        "Rejected.ResourceExist",
    );
    let again = secrets
        .create_secret(request("db/once", "s3cret", "s-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.secret_name, first.secret_name);
    assert_eq!(again.version_id, first.version_id);
    assert_ne!(again.request_id, first.request_id);
    // Another value with the same token: refused, the value unchanged.
    let status = assert_error(
        secrets
            .create_secret(request("db/once", "other", "s-1"))
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert!(!status.message().contains("s3cret"), "{status:?}");
    let value = server
        .crypto()
        .get_secret_value(pb::GetSecretValueRequest {
            secret_name: "db/once".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value.secret_data, "s3cret");
    // Another token, another name: another secret.
    secrets
        .create_secret(request("db/twice", "s3cret", "s-2"))
        .await
        .unwrap();
    let listed = secrets
        .list_secrets(ListSecretsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed
        .secret_list
        .iter()
        .map(|s| s.secret_name.as_str())
        .collect();
    assert!(
        names.contains(&"db/once") && names.contains(&"db/twice"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_replayed_create_client_key_names_its_key_and_never_answers_a_private_key_twice() {
    let server = start().await;
    let request = |password: &str, token: &str| CreateClientKeyRequest {
        principal: "e2e".into(),
        password: password.into(),
        idempotency_token: token.into(),
        ..Default::default()
    };
    let first = server
        .management()
        .create_client_key(request("pw-e2e-long-enough", "ck-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.private_key_data.is_empty());
    let status = assert_error(
        server
            .management()
            .create_client_key(request("pw-e2e-long-enough", "ck-1"))
            .await
            .map(|_| ()),
        Code::AlreadyExists,
        "Rejected.ResourceExist",
    );
    assert!(
        status.message().contains(&first.client_key_id),
        "{status:?}"
    );
    // Another password with the token: another request, refused as such.
    assert_error(
        server
            .management()
            .create_client_key(request("another-password!", "ck-1"))
            .await
            .map(|_| ()),
        Code::InvalidArgument,
        "InvalidParameter",
    );
    let listed = server
        .management()
        .list_client_keys(ListClientKeysRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.client_keys.len(), 1, "one client key");
}

#[tokio::test]
async fn a_token_names_its_key_for_a_day_then_makes_a_new_one() {
    let server = start().await;
    let first = create_key_once(&server, create_key_request("daily", ""))
        .await
        .unwrap();
    server
        .clock
        .advance(DAY - std::time::Duration::from_secs(1));
    let within = create_key_once(&server, create_key_request("daily", ""))
        .await
        .unwrap();
    assert_eq!(within.key_id, first.key_id, "within the window");
    server.clock.advance(std::time::Duration::from_secs(1));
    // The maintenance pass purges the expired token; either way it is free again.
    server.wait_for_maintenance_passes(1).await;
    let after = create_key_once(&server, create_key_request("daily", ""))
        .await
        .unwrap();
    assert_ne!(after.key_id, first.key_id, "a new key after the window");
    assert_eq!(key_count(&server).await, 2);
    // And the token now names the new key.
    let again = create_key_once(&server, create_key_request("daily", ""))
        .await
        .unwrap();
    assert_eq!(again.key_id, after.key_id);
}
