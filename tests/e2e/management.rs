//! End-to-end tests of the control plane over real gRPC.

use std::collections::BTreeSet;

use tonic::Code;

use crate::support::pb::*;
use crate::support::*;

fn key_req(key_id: &str) -> DescribeKeyRequest {
    DescribeKeyRequest {
        key_id: key_id.to_owned(),
    }
}

#[tokio::test]
async fn key_lifecycle_enable_disable_delete_cancel() {
    let server = start().await;
    let mut kms = server.management();
    let created = kms
        .create_key(CreateKeyRequest {
            description: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_request_id(&created.request_id);
    let meta = created.key_metadata.unwrap();
    assert!(meta.key_id.starts_with("key-"));
    assert_eq!(meta.key_spec, "Aliyun_AES_256");
    assert_eq!(meta.key_usage, "ENCRYPT/DECRYPT");
    assert_eq!(meta.key_state, "Enabled");
    assert_eq!(meta.protection_level, "SOFTWARE");
    assert_eq!(meta.description, "payments");
    assert_eq!(meta.primary_key_version, meta.initial_key_version);
    assert!(!meta.automatic_rotation);
    assert!(meta.creation_date.ends_with('Z'));
    assert!(meta.delete_date.is_empty());
    let key_id = meta.key_id;

    let disabled = kms
        .disable_key(DisableKeyRequest {
            key_id: key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.key_metadata.unwrap().key_state, "Disabled");
    assert_eq!(describe(&server, &key_id).await.key_state, "Disabled");
    // Rotation of a disabled key is refused.
    assert_error(
        kms.create_key_version(CreateKeyVersionRequest {
            key_id: key_id.clone(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "Rejected.InvalidKeyState",
    );
    let enabled = kms
        .enable_key(EnableKeyRequest {
            key_id: key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enabled.key_metadata.unwrap().key_state, "Enabled");

    for bad_window in [6, 367, -7] {
        assert_error(
            kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
                key_id: key_id.clone(),
                pending_window_in_days: bad_window,
            })
            .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
    assert_error(
        kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
            key_id: key_id.clone(),
            pending_window_in_days: 0,
        })
        .await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    let pending = kms
        .schedule_key_deletion(ScheduleKeyDeletionRequest {
            key_id: key_id.clone(),
            pending_window_in_days: 7,
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(pending.key_state, "PendingDeletion");
    let delete_at = humantime::parse_rfc3339(&pending.delete_date).unwrap();
    assert_eq!(delete_at, server.clock_now() + 7 * DAY);
    for refused in [
        kms.enable_key(EnableKeyRequest {
            key_id: key_id.clone(),
        })
        .await
        .map(|_| ()),
        kms.disable_key(DisableKeyRequest {
            key_id: key_id.clone(),
        })
        .await
        .map(|_| ()),
        kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
            key_id: key_id.clone(),
            pending_window_in_days: 7,
        })
        .await
        .map(|_| ()),
    ] {
        assert_error(
            refused,
            Code::FailedPrecondition,
            "Rejected.InvalidKeyState",
        );
    }
    let cancelled = kms
        .cancel_key_deletion(CancelKeyDeletionRequest {
            key_id: key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(cancelled.key_state, "Enabled");
    assert!(cancelled.delete_date.is_empty());
    assert_error(
        kms.cancel_key_deletion(CancelKeyDeletionRequest { key_id })
            .await,
        Code::FailedPrecondition,
        "Rejected.InvalidKeyState",
    );
}

#[tokio::test]
async fn alias_lifecycle() {
    let server = start().await;
    let mut kms = server.management();
    let first = create_key(&server).await;
    let second = create_key(&server).await;
    let created = kms
        .create_alias(CreateAliasRequest {
            key_id: first.clone(),
            alias_name: "alias/app:prod/db_key-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_request_id(&created.request_id);
    assert_eq!(created.alias.unwrap().key_id, first);
    assert_eq!(
        describe(&server, "alias/app:prod/db_key-1").await.key_id,
        first
    );

    assert_error(
        kms.create_alias(CreateAliasRequest {
            key_id: second.clone(),
            alias_name: "alias/app:prod/db_key-1".into(),
        })
        .await,
        Code::AlreadyExists,
        "InvalidParameter",
    );
    // An alias may name its key by another alias.
    kms.create_alias(CreateAliasRequest {
        key_id: "alias/app:prod/db_key-1".into(),
        alias_name: "alias/second-name".into(),
    })
    .await
    .unwrap();
    let updated = kms
        .update_alias(UpdateAliasRequest {
            key_id: second.clone(),
            alias_name: "alias/app:prod/db_key-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alias
        .unwrap();
    assert_eq!(updated.key_id, second);
    assert_eq!(
        describe(&server, "alias/app:prod/db_key-1").await.key_id,
        second
    );

    let of_first = kms
        .list_aliases(ListAliasesRequest {
            key_id: first.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        of_first
            .aliases
            .iter()
            .map(|a| a.alias_name.as_str())
            .collect::<Vec<_>>(),
        ["alias/second-name"]
    );
    let all = kms
        .list_aliases(ListAliasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.aliases.len(), 2);

    kms.delete_alias(DeleteAliasRequest {
        alias_name: "alias/app:prod/db_key-1".into(),
    })
    .await
    .unwrap();
    assert_error(
        kms.describe_key(key_req("alias/app:prod/db_key-1")).await,
        Code::NotFound,
        "Forbidden.AliasNotFound",
    );
    assert_error(
        kms.delete_alias(DeleteAliasRequest {
            alias_name: "alias/app:prod/db_key-1".into(),
        })
        .await,
        Code::NotFound,
        "Forbidden.AliasNotFound",
    );
    assert_error(
        kms.update_alias(UpdateAliasRequest {
            key_id: first.clone(),
            alias_name: "alias/never-made".into(),
        })
        .await,
        Code::NotFound,
        "Forbidden.AliasNotFound",
    );
    for bad in [
        "alias/",
        "alias/has space",
        "noprefix",
        &format!("alias/{}", "a".repeat(256)),
    ] {
        assert_error(
            kms.create_alias(CreateAliasRequest {
                key_id: first.clone(),
                alias_name: bad.to_owned(),
            })
            .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
    assert_error(
        kms.create_alias(CreateAliasRequest {
            key_id: first,
            alias_name: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    assert_error(
        kms.create_alias(CreateAliasRequest {
            key_id: "key-doesnotexist1".into(),
            alias_name: "alias/orphan".into(),
        })
        .await,
        Code::NotFound,
        "Forbidden.KeyNotFound",
    );
}

#[tokio::test]
async fn lists_paginate() {
    let server = start().await;
    let mut kms = server.management();
    let mut created = BTreeSet::new();
    for _ in 0..5 {
        created.insert(create_key(&server).await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = kms
            .list_keys(ListKeysRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_request_id(&page.request_id);
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.into_iter().map(|k| k.key_id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5, "no key twice: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);

    let all = kms
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.keys.len(), 5);
    assert!(all.next_page_token.is_empty());

    for page_size in [-1, 101] {
        assert_error(
            kms.list_keys(ListKeysRequest {
                page_size,
                page_token: String::new(),
            })
            .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
    assert_error(
        kms.list_keys(ListKeysRequest {
            page_size: 2,
            page_token: "not a token".into(),
        })
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
}

#[tokio::test]
async fn manual_rotation_adds_primary_versions_and_keeps_the_initial() {
    let server = start().await;
    let mut kms = server.management();
    let key_id = create_key(&server).await;
    let initial = describe(&server, &key_id).await.initial_key_version;
    let mut made = vec![initial.clone()];
    for _ in 0..2 {
        server.clock.advance(DAY);
        let version = kms
            .create_key_version(CreateKeyVersionRequest {
                key_id: key_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .key_version
            .unwrap();
        assert_eq!(version.key_id, key_id);
        assert!(uuid::Uuid::parse_str(&version.key_version_id).is_ok());
        made.push(version.key_version_id);
    }
    let meta = describe(&server, &key_id).await;
    assert_eq!(meta.primary_key_version, made[2]);
    assert_eq!(meta.initial_key_version, initial);

    let listed = kms
        .list_key_versions(ListKeyVersionsRequest {
            key_id: key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let listed_ids: Vec<String> = listed
        .key_versions
        .iter()
        .map(|v| v.key_version_id.clone())
        .collect();
    assert_eq!(listed_ids, made, "oldest first");

    let first_page = kms
        .list_key_versions(ListKeyVersionsRequest {
            key_id: key_id.clone(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.key_versions.len(), 2);
    let second_page = kms
        .list_key_versions(ListKeyVersionsRequest {
            key_id: key_id.clone(),
            page_size: 2,
            page_token: first_page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second_page.key_versions[0].key_version_id, made[2]);
    assert!(second_page.next_page_token.is_empty());

    let described = kms
        .describe_key_version(DescribeKeyVersionRequest {
            key_id: key_id.clone(),
            key_version_id: made[1].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_version
        .unwrap();
    assert_eq!(described.key_version_id, made[1]);
    assert_error(
        kms.describe_key_version(DescribeKeyVersionRequest {
            key_id: key_id.clone(),
            key_version_id: uuid::Uuid::new_v4().to_string(),
        })
        .await,
        Code::NotFound,
        "Forbidden.KeyNotFound",
    );
    assert_error(
        kms.describe_key_version(DescribeKeyVersionRequest {
            key_id,
            key_version_id: "not-a-uuid".into(),
        })
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
}

#[tokio::test]
async fn automatic_rotation_follows_the_clock() {
    let server = start().await;
    let mut kms = server.management();
    let key_id = create_key_with(
        &server,
        CreateKeyRequest {
            enable_automatic_rotation: true,
            rotation_interval: Some(prost_types::Duration {
                seconds: 7 * 86_400,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;
    let before = describe(&server, &key_id).await;
    assert!(before.automatic_rotation);
    assert_eq!(before.rotation_interval.unwrap().seconds, 7 * 86_400);
    assert_eq!(
        humantime::parse_rfc3339(&before.next_rotation_date).unwrap(),
        server.clock_now() + 7 * DAY
    );

    // Not yet due: passes change nothing.
    server
        .clock
        .advance(7 * DAY - std::time::Duration::from_secs(1));
    server.wait_for_maintenance_passes(2).await;
    assert_eq!(
        describe(&server, &key_id).await.primary_key_version,
        before.primary_key_version
    );

    server.clock.advance(std::time::Duration::from_secs(2));
    server.wait_for_maintenance_passes(2).await;
    let after = describe(&server, &key_id).await;
    assert_ne!(after.primary_key_version, before.primary_key_version);
    assert_eq!(after.initial_key_version, before.initial_key_version);
    assert_eq!(
        humantime::parse_rfc3339(&after.last_rotation_date).unwrap(),
        server.clock_now()
    );

    // Turning rotation off stops it.
    kms.update_rotation_policy(UpdateRotationPolicyRequest {
        key_id: key_id.clone(),
        enable_automatic_rotation: false,
        rotation_interval: None,
    })
    .await
    .unwrap();
    server.clock.advance(30 * DAY);
    server.wait_for_maintenance_passes(2).await;
    let off = describe(&server, &key_id).await;
    assert_eq!(off.primary_key_version, after.primary_key_version);
    assert!(!off.automatic_rotation);
    assert!(off.next_rotation_date.is_empty());

    for (seconds, nanos) in [(86_400, 0), (366 * 86_400, 0), (-5, 0)] {
        assert_error(
            kms.update_rotation_policy(UpdateRotationPolicyRequest {
                key_id: key_id.clone(),
                enable_automatic_rotation: true,
                rotation_interval: Some(prost_types::Duration { seconds, nanos }),
            })
            .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
}

#[tokio::test]
async fn rotations_due_while_down_happen_at_startup() {
    let server = start().await;
    let key_id = create_key_with(
        &server,
        CreateKeyRequest {
            enable_automatic_rotation: true,
            rotation_interval: Some(prost_types::Duration {
                seconds: 10 * 86_400,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;
    let primary = describe(&server, &key_id).await.primary_key_version;
    let stopped = server.stop().await;
    // Down for 25 days: two intervals and a half.
    stopped.clock.advance(25 * DAY);
    let server = stopped.restart().await;
    server.wait_for_maintenance_passes(1).await;
    let meta = describe(&server, &key_id).await;
    assert_ne!(meta.primary_key_version, primary);
    let versions = server
        .management()
        .list_key_versions(ListKeyVersionsRequest {
            key_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_versions;
    assert_eq!(
        versions.len(),
        2,
        "one catch-up rotation, not one per missed interval"
    );
}

#[tokio::test]
async fn deletion_window_end_destroys_key_versions_and_aliases() {
    let server = start().await;
    let mut kms = server.management();
    let doomed = create_key(&server).await;
    let survivor = create_key(&server).await;
    kms.create_alias(CreateAliasRequest {
        key_id: doomed.clone(),
        alias_name: "alias/doomed".into(),
    })
    .await
    .unwrap();
    kms.create_key_version(CreateKeyVersionRequest {
        key_id: doomed.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
        key_id: doomed.clone(),
        pending_window_in_days: 7,
    })
    .await
    .unwrap();

    server
        .clock
        .advance(7 * DAY - std::time::Duration::from_secs(60));
    server.wait_for_maintenance_passes(2).await;
    assert_eq!(
        describe(&server, &doomed).await.key_state,
        "PendingDeletion"
    );

    server.clock.advance(std::time::Duration::from_secs(61));
    server.wait_for_maintenance_passes(2).await;
    assert_error(
        kms.describe_key(key_req(&doomed)).await,
        Code::NotFound,
        "Forbidden.KeyNotFound",
    );
    assert_error(
        kms.describe_key(key_req("alias/doomed")).await,
        Code::NotFound,
        "Forbidden.AliasNotFound",
    );
    assert_error(
        kms.list_key_versions(ListKeyVersionsRequest {
            key_id: doomed,
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "Forbidden.KeyNotFound",
    );
    let keys = kms
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(
        keys.into_iter().map(|k| k.key_id).collect::<Vec<_>>(),
        [survivor]
    );
    assert!(
        kms.list_aliases(ListAliasesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .aliases
            .is_empty()
    );
}

#[tokio::test]
async fn everything_persists_across_a_restart() {
    let server = start().await;
    let mut kms = server.management();
    let key_id = create_key(&server).await;
    kms.create_alias(CreateAliasRequest {
        key_id: key_id.clone(),
        alias_name: "alias/kept".into(),
    })
    .await
    .unwrap();
    kms.create_key_version(CreateKeyVersionRequest {
        key_id: key_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    kms.disable_key(DisableKeyRequest {
        key_id: key_id.clone(),
    })
    .await
    .unwrap();
    let before = describe(&server, &key_id).await;
    let stopped = server.stop().await;

    let server = stopped.restart().await;
    let after = describe(&server, "alias/kept").await;
    assert_eq!(after, before);
    let versions = server
        .management()
        .list_key_versions(ListKeyVersionsRequest {
            key_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_versions;
    assert_eq!(versions.len(), 2);
}

#[tokio::test]
async fn a_wrong_root_key_is_refused_and_nothing_changes() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let key_a = dir.join("a.key");
    let key_b = dir.join("b.key");
    write_root_key(&key_a, &[1u8; 32]);
    write_root_key(&key_b, &[2u8; 32]);
    let data_dir = dir.join("data");
    let mut config = test_config(&data_dir);
    config.root_key_file = Some(key_a.clone());
    let server = try_start(config.clone(), start_clock()).await.unwrap();
    create_key(&server).await;
    server.stop().await;

    let db = data_dir.join("kmsd.redb");
    let before = std::fs::read(&db).unwrap();
    let mut wrong = config.clone();
    wrong.root_key_file = Some(key_b);
    let err = match try_start(wrong, start_clock()).await {
        Ok(_) => panic!("a wrong root key must be refused"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("root key does not match"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the store was not modified"
    );

    // The right key still opens it.
    let server = try_start(config, start_clock()).await.unwrap();
    let keys = server
        .management()
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
}

#[tokio::test]
async fn bad_inputs_get_their_codes() {
    let server = start().await;
    let mut kms = server.management();
    assert_error(
        kms.describe_key(key_req("")).await,
        Code::InvalidArgument,
        "MissingParameter",
    );
    for malformed in ["key-UPPER", "nokey", "key-", "key-a b"] {
        assert_error(
            kms.describe_key(key_req(malformed)).await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
    assert_error(
        kms.describe_key(key_req("key-doesnotexist0000000")).await,
        Code::NotFound,
        "Forbidden.KeyNotFound",
    );
    assert_error(
        kms.describe_key(key_req("alias/none")).await,
        Code::NotFound,
        "Forbidden.AliasNotFound",
    );
    let status = assert_error(
        kms.create_key(CreateKeyRequest {
            key_spec: "RSA_4096".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert!(status.message().contains("Aliyun_AES_256"), "{status:?}");
    assert_error(
        kms.create_key(CreateKeyRequest {
            key_usage: "SIGN/VERIFY".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_error(
        kms.create_key(CreateKeyRequest {
            description: "x".repeat(8193),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    assert_error(
        kms.create_key(CreateKeyRequest {
            enable_automatic_rotation: false,
            rotation_interval: Some(prost_types::Duration {
                seconds: 30 * 86_400,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
    // The request ID of an error is also in the response metadata.
    let status = kms.describe_key(key_req("key-nope")).await.unwrap_err();
    let header = status
        .metadata()
        .get("x-kms-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_request_id(header);
    assert_eq!(
        tonic_types::StatusExt::get_error_details(&status)
            .error_info()
            .unwrap()
            .metadata["RequestId"],
        header
    );
}

/// Issue #27's contention over the embedded store: 16 CreateKeyVersion and 16
/// UpdateRotationPolicy calls on one key, released together. Every answer is OK or a
/// retryable ABORTED with RetryInfo (never INTERNAL), and the data is right: one new
/// version per rotation that answered OK, and the policy one of those that did.
#[tokio::test]
async fn concurrent_rotations_and_policy_updates_of_one_key_are_ok_or_retryable() {
    use std::sync::Arc;
    use tonic_types::StatusExt;
    let server = start().await;
    let key_id = create_key(&server).await;
    let n = 32;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let mut kms = server.management();
            let (key_id, barrier) = (key_id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                if i % 2 == 0 {
                    kms.create_key_version(CreateKeyVersionRequest {
                        key_id,
                        ..Default::default()
                    })
                    .await
                    .map(|_| None)
                } else {
                    let days = 7 + i as i64;
                    kms.update_rotation_policy(UpdateRotationPolicyRequest {
                        key_id,
                        enable_automatic_rotation: true,
                        rotation_interval: Some(prost_types::Duration {
                            seconds: days * 86_400,
                            nanos: 0,
                        }),
                    })
                    .await
                    .map(|_| Some(days * 86_400))
                }
            })
        })
        .collect();
    let (mut rotated, mut intervals) = (0, Vec::new());
    for call in calls {
        match call.await.unwrap() {
            Ok(None) => rotated += 1,
            Ok(Some(interval)) => intervals.push(interval),
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                assert_eq!(reason(&status), "Rejected.Throttling");
                assert!(status.get_details_retry_info().is_some(), "{status:?}");
            }
        }
    }
    let versions = server
        .management()
        .list_key_versions(ListKeyVersionsRequest {
            key_id: key_id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_versions;
    assert_eq!(versions.len(), rotated + 1, "one version per OK rotation");
    let meta = describe(&server, &key_id).await;
    let interval = meta.rotation_interval.map(|d| d.seconds);
    let right = match interval {
        Some(seconds) => intervals.contains(&seconds),
        None => intervals.is_empty(),
    };
    assert!(
        right,
        "{interval:?} is not one of the updates that went through: {intervals:?}"
    );
    eprintln!(
        "embedded store: {rotated} of 16 rotations and {} of 16 policy updates went through at once",
        intervals.len()
    );
}
