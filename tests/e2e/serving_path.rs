//! End-to-end tests of what the performance work changed on the serving path: TCP
//! settings, and the data plane's cache of key records staying correct under every
//! kind of write (docs/performance.md, src/keys/cache.rs).

use std::time::{Duration, Instant};

use tonic::Code;

use crate::support::pb::*;
use crate::support::*;

fn ec(key_id: &str) -> AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
    AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.to_owned(),
        key_pair_spec: "EC_P256".into(),
        key_format: "DER".into(),
        aad: Vec::new(),
    }
}

/// Without TCP_NODELAY on the server's sockets, Nagle's algorithm held back the end
/// of most responses until the client's delayed ACK: 40 ms on Linux, for a call that
/// takes about a millisecond even in a debug build.
#[tokio::test]
async fn calls_are_not_held_back_by_nagles_algorithm() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let mut took = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        crypto
            .advance_generate_data_key_pair_without_plaintext(ec(&key_id))
            .await
            .unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median {median:?} of {took:?}"
    );
}

/// The cached alias resolution follows UpdateAlias and DeleteAlias on the next call.
#[tokio::test]
async fn alias_changes_are_seen_by_the_next_call() {
    let server = start().await;
    let first = create_key(&server).await;
    let second = create_key(&server).await;
    let mut kms = server.management();
    let mut crypto = server.crypto();
    let alias = "alias/moving".to_owned();
    kms.create_alias(CreateAliasRequest {
        key_id: first.clone(),
        alias_name: alias.clone(),
    })
    .await
    .unwrap();
    for _ in 0..2 {
        let served = crypto
            .advance_generate_data_key_pair_without_plaintext(ec(&alias))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(served.key_id, first);
    }
    kms.update_alias(UpdateAliasRequest {
        key_id: second.clone(),
        alias_name: alias.clone(),
    })
    .await
    .unwrap();
    let served = crypto
        .advance_generate_data_key_pair_without_plaintext(ec(&alias))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.key_id, second, "the alias moved");
    kms.delete_alias(DeleteAliasRequest {
        alias_name: alias.clone(),
    })
    .await
    .unwrap();
    assert_error(
        crypto
            .advance_generate_data_key_pair_without_plaintext(ec(&alias))
            .await,
        Code::NotFound,
        "Forbidden.AliasNotFound",
    );
}

/// A key destroyed by the maintenance task (not by a call) is refused by the next
/// call, with its ciphertexts: the cached record and material go with it.
#[tokio::test]
async fn a_destroyed_key_is_refused_at_once() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut kms = server.management();
    let mut crypto = server.crypto();
    let blob = crypto
        .advance_generate_data_key_pair_without_plaintext(ec(&key_id))
        .await
        .unwrap()
        .into_inner()
        .private_key_ciphertext_blob;
    let opened = crypto
        .advance_decrypt(AdvanceDecryptRequest {
            ciphertext_blob: blob.clone(),
            ..Default::default()
        })
        .await;
    assert!(opened.is_ok(), "{opened:?}");
    kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
        key_id: key_id.clone(),
        pending_window_in_days: 7,
    })
    .await
    .unwrap();
    server.clock.advance(8 * DAY);
    server.wait_for_maintenance_passes(2).await;

    assert_error(
        crypto
            .advance_generate_data_key_pair_without_plaintext(ec(&key_id))
            .await,
        Code::NotFound,
        "Forbidden.KeyNotFound",
    );
    assert_error(
        crypto
            .advance_decrypt(AdvanceDecryptRequest {
                ciphertext_blob: blob,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
}
