//! The secrets domain over a real registry and store (redb in a temporary directory).

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::auth::AuthPolicy;
use crate::keys::testing::{Fixture, create};

/// A principal granted every operation, the key globs `keys` and the secret globs
/// `secrets`.
fn principal(keys: &[&str], secrets: &[&str]) -> Access {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "[[principals]]\nname = \"tester\"\nspiffe_id = \"spiffe://test/tester\"\n\
         operations = [\"*\"]\nkeys = [{}]\nsecrets = [{}]\n",
        list(keys),
        list(secrets)
    );
    let policy = AuthPolicy::parse(&text, "test").unwrap();
    Access::Principal(Arc::clone(&policy.principals()[0]))
}

fn text(name: &'static str, data: &'static str) -> CreateSecretParams<'static> {
    CreateSecretParams {
        secret_name: name,
        secret_data: data,
        ..CreateSecretParams::default()
    }
}

fn put<'a>(name: &'a str, version: &'a str, data: &'a str, stages: &'a str) -> PutValueParams<'a> {
    PutValueParams {
        secret_name: name,
        version_id: version,
        secret_data: data,
        version_stages: stages,
        ..PutValueParams::default()
    }
}

async fn value(secrets: &Secrets, name: &str, stage: &str, version: &str) -> String {
    secrets
        .get_value(name, stage, version)
        .await
        .unwrap()
        .data
        .to_string()
}

async fn version_stages(secrets: &Secrets, name: &str) -> Vec<(String, Vec<String>)> {
    secrets
        .list_versions(name, true, 1, 100)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|v| (v.version_id, v.stages))
        .collect()
}

#[tokio::test]
async fn a_secret_is_sealed_at_rest_and_read_back_by_stage_and_id() {
    let fx = Fixture::new().await;
    let secrets = Secrets::new(fx.registry.clone(), Access::Open);
    let created = secrets
        .create(CreateSecretParams {
            version_id: "v1",
            extended_config: r#"{"DBName":"payments"}"#,
            ..text("db/payments", "canary-pw-1")
        })
        .await
        .unwrap();
    assert_eq!(created.versions[0].stages, ["ACSCurrent"]);
    // kmsd made its default key for it, under its alias.
    let default = fx.registry.resolve(DEFAULT_KEY_ALIAS).await.unwrap();
    assert_eq!(created.encryption_key_id, default.key_id);
    // The store holds no plaintext.
    let stored = fx
        .registry
        .store()
        .get_secret("db/payments")
        .await
        .unwrap()
        .unwrap();
    let bytes = serde_json::to_vec(&stored).unwrap();
    assert!(!bytes.windows(11).any(|w| w == b"canary-pw-1"));

    let got = secrets.get_value("db/payments", "", "").await.unwrap();
    assert_eq!(&*got.data, "canary-pw-1");
    assert_eq!(got.version_id, "v1");
    assert_eq!(
        got.secret.extended_config.as_deref(),
        Some(r#"{"DBName":"payments"}"#)
    );
    assert!(!format!("{got:?}").contains("canary"));
    assert!(matches!(
        secrets.get_value("db/missing", "", "").await,
        Err(KmsError::SecretNotFound(_))
    ));
    assert!(matches!(
        secrets.create(text("db/payments", "again")).await,
        Err(KmsError::SecretExists(_))
    ));
}

#[tokio::test]
async fn new_values_move_current_to_previous_and_stages_move_on_request() {
    let fx = Fixture::new().await;
    let secrets = Secrets::new(fx.registry.clone(), Access::Open);
    secrets
        .create(CreateSecretParams {
            version_id: "v1",
            ..text("api/token", "one")
        })
        .await
        .unwrap();
    secrets
        .put_value(put("api/token", "v2", "two", ""))
        .await
        .unwrap();
    assert_eq!(value(&secrets, "api/token", "", "").await, "two");
    assert_eq!(value(&secrets, "api/token", "ACSPrevious", "").await, "one");
    secrets
        .put_value(put("api/token", "v3", "three", r#"["blue"]"#))
        .await
        .unwrap();
    // A custom stage only: current stays where it was.
    assert_eq!(value(&secrets, "api/token", "", "").await, "two");
    assert_eq!(value(&secrets, "api/token", "blue", "v3").await, "three");
    assert!(matches!(
        secrets.get_value("api/token", "ACSCurrent", "v3").await,
        Err(KmsError::InvalidParameter(_))
    ));
    assert!(matches!(
        secrets.put_value(put("api/token", "v2", "dup", "")).await,
        Err(KmsError::SecretExists(_))
    ));
    // A rollback, then blue back to the current version.
    secrets
        .move_stage("api/token", "ACSCurrent", "v2", "v1")
        .await
        .unwrap();
    secrets
        .move_stage("api/token", "blue", "v3", "v1")
        .await
        .unwrap();
    assert_eq!(value(&secrets, "api/token", "", "").await, "one");
    assert_eq!(
        version_stages(&secrets, "api/token").await,
        [
            (
                "v1".to_owned(),
                vec!["ACSCurrent".to_owned(), "blue".to_owned()]
            ),
            ("v2".to_owned(), vec!["ACSPrevious".to_owned()]),
            ("v3".to_owned(), vec![]),
        ]
    );
    let staged = secrets
        .list_versions("api/token", false, 1, 100)
        .await
        .unwrap();
    assert_eq!(staged.total_count, 2);
}

#[tokio::test]
async fn ten_unstaged_versions_are_kept_and_older_ones_go() {
    let fx = Fixture::new().await;
    let secrets = Secrets::new(fx.registry.clone(), Access::Open);
    secrets
        .create(CreateSecretParams {
            version_id: "v0",
            ..text("cap", "0")
        })
        .await
        .unwrap();
    for i in 1..=13 {
        fx.clock.advance(Duration::from_secs(1));
        let id = format!("v{i}");
        secrets
            .put_value(put("cap", &id, &i.to_string(), ""))
            .await
            .unwrap();
    }
    let all = version_stages(&secrets, "cap").await;
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    // v13 current, v12 previous, and the ten newest unstaged: v2 to v11.
    assert_eq!(
        ids,
        [
            "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13"
        ]
    );
    assert!(matches!(
        secrets.get_value("cap", "", "v1").await,
        Err(KmsError::SecretVersionNotFound(_))
    ));
    assert_eq!(value(&secrets, "cap", "", "v2").await, "2");
}

#[tokio::test]
async fn binary_values_round_trip_in_base64() {
    let fx = Fixture::new().await;
    let secrets = Secrets::new(fx.registry.clone(), Access::Open);
    secrets
        .create(CreateSecretParams {
            secret_data_type: "binary",
            ..text("certs/tls", "AAEC/w==")
        })
        .await
        .unwrap();
    let got = secrets.get_value("certs/tls", "", "").await.unwrap();
    assert_eq!(got.data_type, DataType::Binary);
    assert_eq!(&*got.data, "AAEC/w==");
    assert!(matches!(
        secrets
            .create(CreateSecretParams {
                secret_data_type: "binary",
                ..text("certs/bad", "***")
            })
            .await,
        Err(KmsError::InvalidParameter(_))
    ));
}

#[tokio::test]
async fn deletion_waits_for_its_window_unless_forced_and_can_be_undone() {
    let fx = Fixture::new().await;
    let secrets = Secrets::new(fx.registry.clone(), Access::Open);
    secrets.create(text("old", "x")).await.unwrap();
    secrets.create(text("gone", "y")).await.unwrap();
    assert!(matches!(
        secrets.delete("old", 6, false).await,
        Err(KmsError::InvalidParameter(_))
    ));
    let at = secrets.delete("old", 7, false).await.unwrap();
    assert_eq!(at, fx.registry.now_ms() + 7 * 86_400_000);
    assert!(matches!(
        secrets.get_value("old", "", "").await,
        Err(KmsError::SecretPendingDeletion(_))
    ));
    assert_eq!(
        secrets.describe("old").await.unwrap().delete_at_ms,
        Some(at)
    );
    secrets.restore("old").await.unwrap();
    assert_eq!(value(&secrets, "old", "", "").await, "x");
    assert!(secrets.restore("old").await.is_err());

    // Forced: gone at once, with every version.
    secrets.delete("gone", 0, true).await.unwrap();
    assert!(matches!(
        secrets.describe("gone").await,
        Err(KmsError::SecretNotFound(_))
    ));
    // The window ends: maintenance deletes it.
    secrets.delete("old", 0, false).await.unwrap();
    fx.clock.advance(Duration::from_secs(29 * 86_400));
    assert_eq!(
        fx.registry.run_maintenance().await.unwrap().secrets_deleted,
        0
    );
    fx.clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        fx.registry.run_maintenance().await.unwrap().secrets_deleted,
        1
    );
    assert!(matches!(
        secrets.describe("old").await,
        Err(KmsError::SecretNotFound(_))
    ));
}

#[tokio::test]
async fn grants_by_name_pattern_decide_and_the_master_key_needs_none_to_read() {
    let fx = Fixture::new().await;
    let admin = Secrets::new(fx.registry.clone(), Access::Open);
    let key = create(&fx.registry).await;
    for name in ["db/payments/primary", "db/orders/primary"] {
        admin
            .create(CreateSecretParams {
                encryption_key_id: &key,
                ..text(name, "pw")
            })
            .await
            .unwrap();
    }
    let payments = Secrets::new(fx.registry.clone(), principal(&[], &["db/payments/*"]));
    assert_eq!(value(&payments, "db/payments/primary", "", "").await, "pw");
    for denied in ["db/orders/primary", "db/orders/missing"] {
        assert!(matches!(
            payments.get_value(denied, "", "").await,
            Err(KmsError::PermissionDenied)
        ));
    }
    let listed = payments.list(&[], 1, 10).await.unwrap();
    assert_eq!(listed.total_count, 1);
    assert_eq!(listed.items[0].secret_name, "db/payments/primary");
    // Creating under a named key needs a grant on that key.
    assert!(matches!(
        payments
            .create(CreateSecretParams {
                encryption_key_id: &key,
                ..text("db/payments/replica", "pw")
            })
            .await,
        Err(KmsError::PermissionDenied)
    ));
    let keyed = Secrets::new(fx.registry.clone(), principal(&[&key], &["db/payments/*"]));
    keyed
        .create(CreateSecretParams {
            encryption_key_id: &key,
            ..text("db/payments/replica", "pw")
        })
        .await
        .unwrap();
    // A disabled master key refuses its secrets.
    fx.registry.disable_key(&key).await.unwrap();
    assert!(matches!(
        admin.get_value("db/orders/primary", "", "").await,
        Err(KmsError::InvalidKeyState { .. })
    ));
}

#[tokio::test]
async fn seeded_secrets_are_created_once() {
    let fx = Fixture::new().await;
    let seeded = [crate::keys::seed::SeedSecret {
        name: "ci/token".into(),
        data: Zeroizing::new(b"seeded-value".to_vec()),
        binary: false,
        key: String::new(),
        description: "from the seed".into(),
        version_id: "v1".into(),
    }];
    assert_eq!(apply_seed(&fx.registry, &seeded).await.unwrap(), 1);
    assert_eq!(apply_seed(&fx.registry, &seeded).await.unwrap(), 0);
    let secrets = Secrets::new(fx.registry.clone(), Access::Open);
    assert_eq!(value(&secrets, "ci/token", "", "").await, "seeded-value");
}
