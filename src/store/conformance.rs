//! The conformance suite: what every [`KeyStore`] backend must do, written once.
//!
//! Each case is an async function over a [`StoreFactory`], which opens the backend's
//! storage (fresh for each case) and can open it again after the store was dropped.
//! A backend runs the whole suite with one line in its tests, which generates one
//! `#[tokio::test]` per case:
//!
//! ```ignore
//! mod conformance {
//!     crate::store::conformance::suite!(super::RedbFactory::new());
//! }
//! ```
//!
//! The factory expression is evaluated inside each (async) test, so it may `.await`.
//! A new case is a function here and its name in [`suite!`]'s list.

use std::sync::Arc;

use super::{
    AliasRecord, ClientKeyRecord, Creation, IdempotencyRecord, KeyRecord, KeyState, KeyStore,
    MintedUnder, SealedMaterial, SealedSecretData, SecretRecord, SecretVersionRecord, StoreCounts,
    StoreError, VersionRecord,
};

/// Opens one backend's storage for a test.
pub(crate) trait StoreFactory: Send + Sync {
    /// Opens the storage: empty the first time; after the previous store was dropped,
    /// with everything that store wrote. Only one store is open at a time.
    async fn open(&self) -> Arc<dyn KeyStore>;
}

/// Generates one `#[tokio::test]` per conformance case, each with a factory made by
/// the expression given.
macro_rules! suite {
    ($factory:expr) => {
        $crate::store::conformance::suite!(@cases $factory;
            keys_insert_and_read_back,
            stale_revisions_conflict,
            versions_list_oldest_first_and_are_found_by_id,
            key_lists_are_ordered_pages,
            alias_lists_are_ordered_pages_filtered_by_key,
            aliases_need_a_key_and_a_free_name,
            aliases_of_a_key_follow_every_change,
            destroy_removes_one_keys_versions_and_aliases_only,
            destroy_is_conditional_on_the_revision,
            meta_is_set_once,
            reseal_replaces_all_material_and_meta_or_nothing,
            counts_follow_writes,
            everything_survives_reopen,
            client_keys_insert_list_and_delete,
            secrets_insert_update_list_and_delete,
            secrets_survive_reopen,
            a_token_and_its_creation_commit_together,
            a_token_is_scoped_and_expires,
            racing_claims_of_one_token_make_one_object,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::store::conformance::$case($factory).await;
            }
        )*
    };
}
pub(crate) use suite;

// === fixtures ===
//
// Also the backends' own tests' records, so that every test stores the same key.

/// Key `id`: an enabled AES key whose first version is `<id>-v1`, at revision 0.
pub(crate) fn key(id: &str) -> KeyRecord {
    KeyRecord {
        key_id: id.to_owned(),
        key_spec: "Aliyun_AES_256".into(),
        key_usage: "ENCRYPT/DECRYPT".into(),
        state: KeyState::Enabled,
        description: String::new(),
        created_at_ms: 1,
        initial_version_id: format!("{id}-v1"),
        primary_version_id: format!("{id}-v1"),
        rotation_interval_secs: None,
        last_rotation_ms: 1,
        delete_at_ms: None,
        revision: 0,
    }
}

/// Version `version_id` of `key_id`, created at `at`, with fixed sealed material.
pub(crate) fn version(key_id: &str, version_id: &str, at: u64) -> VersionRecord {
    VersionRecord {
        key_id: key_id.to_owned(),
        version_id: version_id.to_owned(),
        created_at_ms: at,
        material: SealedMaterial {
            iv: vec![0; 12],
            ciphertext: vec![1; 48],
        },
    }
}

/// Alias `name` of `key_id`.
pub(crate) fn alias(name: &str, key_id: &str) -> AliasRecord {
    AliasRecord {
        alias_name: name.to_owned(),
        key_id: key_id.to_owned(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

/// Adds key `id` with its first version `<id>-v1`.
pub(crate) async fn add_key(store: &dyn KeyStore, id: &str) -> KeyRecord {
    let record = key(id);
    store
        .insert_key(&record, &version(id, &format!("{id}-v1"), 1))
        .await
        .unwrap();
    record
}

/// Rotates key `id` (as [`add_key`] left it) to its second version `<id>-v2`, made
/// at 2, at revision 1; returns the key as it is now.
async fn add_second_version(store: &dyn KeyStore, id: &str) -> KeyRecord {
    let mut rotated = key(id);
    rotated.revision = 1;
    rotated.primary_version_id = format!("{id}-v2");
    store
        .add_version(&rotated, &version(id, &format!("{id}-v2"), 2))
        .await
        .unwrap();
    rotated
}

/// Adds alias `name` of `key_id`.
async fn add_alias(store: &dyn KeyStore, name: &str, key_id: &str) {
    store.insert_alias(&alias(name, key_id)).await.unwrap();
}

fn key_ids(keys: &[KeyRecord]) -> Vec<&str> {
    keys.iter().map(|k| k.key_id.as_str()).collect()
}

/// The names `list_aliases` gives for these arguments.
async fn listed_aliases(
    store: &dyn KeyStore,
    key_id: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let aliases = store.list_aliases(key_id, after, limit).await.unwrap();
    aliases.into_iter().map(|a| a.alias_name).collect()
}

fn version_ids(versions: &[VersionRecord]) -> Vec<&str> {
    versions.iter().map(|v| v.version_id.as_str()).collect()
}

// === cases ===

/// A key reads back as written; its ID cannot be taken twice.
pub(crate) async fn keys_insert_and_read_back(factory: impl StoreFactory) {
    let store = factory.open().await;
    assert!(store.get_key("key-a").await.unwrap().is_none());
    let mut written = key("key-a");
    written.description = "payments".into();
    written.rotation_interval_secs = Some(86_400);
    store
        .insert_key(&written, &version("key-a", "key-a-v1", 1))
        .await
        .unwrap();
    assert_eq!(store.get_key("key-a").await.unwrap(), Some(written));
    let err = store
        .insert_key(&key("key-a"), &version("key-a", "key-a-v9", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    // The refused insert added no version.
    assert_eq!(
        version_ids(&store.list_versions("key-a").await.unwrap()),
        ["key-a-v1"]
    );
}

/// Updates name the revision they read; a stale or skipped revision conflicts and
/// changes nothing; a missing key is `NotFound`.
pub(crate) async fn stale_revisions_conflict(factory: impl StoreFactory) {
    let store = factory.open().await;
    add_key(&*store, "key-a").await;
    let mut update = key("key-a");
    update.revision = 1;
    update.state = KeyState::Disabled;
    store.update_key(&update).await.unwrap();
    // A second writer that also read revision 0 must not win.
    let mut stale = key("key-a");
    stale.revision = 1;
    stale.description = "lost".into();
    assert!(matches!(
        store.update_key(&stale).await,
        Err(StoreError::Conflict)
    ));
    let mut skipping = key("key-a");
    skipping.revision = 3;
    assert!(matches!(
        store.update_key(&skipping).await,
        Err(StoreError::Conflict)
    ));
    // A rotation at a stale revision adds no version either.
    assert!(matches!(
        store
            .add_version(&stale, &version("key-a", "key-a-v2", 2))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_key("key-a").await.unwrap(), Some(update));
    assert!(store.find_version("key-a-v2").await.unwrap().is_none());
    let mut missing = key("key-none");
    missing.revision = 1;
    assert!(matches!(
        store.update_key(&missing).await,
        Err(StoreError::NotFound)
    ));
}

/// Versions of a key list oldest first whatever their IDs; `get_version` needs the
/// right key; `find_version` finds a version by its ID alone.
pub(crate) async fn versions_list_oldest_first_and_are_found_by_id(factory: impl StoreFactory) {
    let store = factory.open().await;
    add_key(&*store, "key-a").await;
    add_key(&*store, "key-b").await;
    let mut rotated = key("key-a");
    for (revision, id, at) in [(1, "v9", 5), (2, "v0", 7)] {
        rotated.revision = revision;
        rotated.primary_version_id = id.into();
        store
            .add_version(&rotated, &version("key-a", id, at))
            .await
            .unwrap();
    }
    assert_eq!(store.get_key("key-a").await.unwrap(), Some(rotated));
    assert_eq!(
        version_ids(&store.list_versions("key-a").await.unwrap()),
        ["key-a-v1", "v9", "v0"]
    );
    assert_eq!(
        store.get_version("key-a", "v0").await.unwrap(),
        Some(version("key-a", "v0", 7))
    );
    assert!(store.get_version("key-b", "v0").await.unwrap().is_none());
    assert_eq!(
        store.find_version("v9").await.unwrap(),
        Some(version("key-a", "v9", 5))
    );
    assert_eq!(
        store
            .find_version("key-b-v1")
            .await
            .unwrap()
            .unwrap()
            .key_id,
        "key-b"
    );
    assert!(store.find_version("nope").await.unwrap().is_none());
    assert!(store.list_versions("key-none").await.unwrap().is_empty());
}

/// Keys list in ID order, strictly after `after` (which need not exist), at most
/// `limit` at a time.
pub(crate) async fn key_lists_are_ordered_pages(factory: impl StoreFactory) {
    let store = factory.open().await;
    assert!(store.list_keys(None, 10).await.unwrap().is_empty());
    for id in ["key-c", "key-a", "key-e", "key-b", "key-d"] {
        add_key(&*store, id).await;
    }
    let all = store.list_keys(None, 10).await.unwrap();
    assert_eq!(key_ids(&all), ["key-a", "key-b", "key-c", "key-d", "key-e"]);
    assert_eq!(
        key_ids(&store.list_keys(None, 2).await.unwrap()),
        ["key-a", "key-b"]
    );
    assert_eq!(
        key_ids(&store.list_keys(Some("key-b"), 2).await.unwrap()),
        ["key-c", "key-d"]
    );
    assert_eq!(
        key_ids(&store.list_keys(Some("key-bb"), 10).await.unwrap()),
        ["key-c", "key-d", "key-e"]
    );
    assert!(store.list_keys(Some("key-e"), 10).await.unwrap().is_empty());
    assert!(store.list_keys(None, 0).await.unwrap().is_empty());
}

/// Aliases list in name order, strictly after `after`, at most `limit`; filtered by
/// key, `limit` counts only that key's aliases.
pub(crate) async fn alias_lists_are_ordered_pages_filtered_by_key(factory: impl StoreFactory) {
    let store = factory.open().await;
    add_key(&*store, "key-a").await;
    add_key(&*store, "key-b").await;
    for (name, key_id) in [
        ("alias/d", "key-a"),
        ("alias/a", "key-a"),
        ("alias/b", "key-b"),
        ("alias/c", "key-b"),
        ("alias/e", "key-a"),
    ] {
        add_alias(&*store, name, key_id).await;
    }
    assert_eq!(
        listed_aliases(&*store, None, None, 10).await,
        ["alias/a", "alias/b", "alias/c", "alias/d", "alias/e"]
    );
    assert_eq!(
        listed_aliases(&*store, None, Some("alias/b"), 2).await,
        ["alias/c", "alias/d"]
    );
    assert_eq!(
        listed_aliases(&*store, Some("key-a"), None, 2).await,
        ["alias/a", "alias/d"]
    );
    assert_eq!(
        listed_aliases(&*store, Some("key-a"), Some("alias/a"), 10).await,
        ["alias/d", "alias/e"]
    );
    assert_eq!(
        listed_aliases(&*store, Some("key-b"), None, 10).await,
        ["alias/b", "alias/c"]
    );
    assert!(
        store
            .list_aliases(Some("key-none"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An alias needs an existing key and a free name; updates re-point existing aliases
/// only, at existing keys only; deletes say whether there was one.
pub(crate) async fn aliases_need_a_key_and_a_free_name(factory: impl StoreFactory) {
    let store = factory.open().await;
    assert!(matches!(
        store.insert_alias(&alias("alias/x", "key-none")).await,
        Err(StoreError::NotFound)
    ));
    add_key(&*store, "key-a").await;
    add_key(&*store, "key-b").await;
    add_alias(&*store, "alias/x", "key-a").await;
    assert!(matches!(
        store.insert_alias(&alias("alias/x", "key-b")).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        store.update_alias(&alias("alias/y", "key-a")).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update_alias(&alias("alias/x", "key-none")).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get_alias("alias/x").await.unwrap().unwrap().key_id,
        "key-a"
    );
    let mut moved = alias("alias/x", "key-b");
    moved.updated_at_ms = 9;
    store.update_alias(&moved).await.unwrap();
    assert_eq!(store.get_alias("alias/x").await.unwrap(), Some(moved));
    assert!(store.get_alias("alias/y").await.unwrap().is_none());
    assert!(store.delete_alias("alias/x").await.unwrap());
    assert!(!store.delete_alias("alias/x").await.unwrap());
    assert!(store.get_alias("alias/x").await.unwrap().is_none());
    // Deleting an alias leaves its key alone.
    assert!(store.get_key("key-b").await.unwrap().is_some());
}

/// Listing one key's aliases follows creation, re-pointing, deletion, destruction and
/// a reopen (a backend that indexes aliases by key keeps the index in step), and pages
/// by name from `after`, which need not exist.
pub(crate) async fn aliases_of_a_key_follow_every_change(factory: impl StoreFactory) {
    let of = |key_id: &'static str| {
        move |store: Arc<dyn KeyStore>| async move {
            let aliases = store.list_aliases(Some(key_id), None, 100).await.unwrap();
            assert!(aliases.iter().all(|a| a.key_id == key_id), "{aliases:?}");
            aliases
                .iter()
                .map(|a| a.alias_name.clone())
                .collect::<Vec<_>>()
        }
    };
    {
        let store = factory.open().await;
        // `key-a` and `key-ab`: one ID extends the other.
        for id in ["key-a", "key-ab", "key-b"] {
            add_key(&*store, id).await;
        }
        for (name, key_id) in [
            ("alias/1", "key-a"),
            ("alias/2", "key-ab"),
            ("alias/3", "key-a"),
            ("alias/4", "key-b"),
            ("alias/5", "key-a"),
        ] {
            add_alias(&*store, name, key_id).await;
        }
        assert_eq!(
            of("key-a")(store.clone()).await,
            ["alias/1", "alias/3", "alias/5"]
        );
        assert_eq!(of("key-ab")(store.clone()).await, ["alias/2"]);
        // Re-pointed: it leaves the old key's list and joins the new one's.
        store
            .update_alias(&alias("alias/3", "key-b"))
            .await
            .unwrap();
        assert_eq!(of("key-a")(store.clone()).await, ["alias/1", "alias/5"]);
        assert_eq!(of("key-b")(store.clone()).await, ["alias/3", "alias/4"]);
        // A refused update changes no list.
        assert!(
            store
                .update_alias(&alias("alias/3", "key-none"))
                .await
                .is_err()
        );
        assert_eq!(of("key-b")(store.clone()).await, ["alias/3", "alias/4"]);
        assert!(store.delete_alias("alias/1").await.unwrap());
        assert_eq!(of("key-a")(store.clone()).await, ["alias/5"]);
        // Pages of one key's aliases, after a name that is not there.
        assert_eq!(
            listed_aliases(&*store, Some("key-b"), Some("alias/35"), 10).await,
            ["alias/4"]
        );
        assert_eq!(
            listed_aliases(&*store, Some("key-b"), None, 1).await,
            ["alias/3"]
        );
        assert!(store.destroy_key("key-b", 0).await.unwrap());
        assert!(of("key-b")(store.clone()).await.is_empty());
        assert!(store.get_alias("alias/3").await.unwrap().is_none());
        assert!(store.get_alias("alias/4").await.unwrap().is_none());
    }
    let store = factory.open().await;
    assert_eq!(of("key-a")(store.clone()).await, ["alias/5"]);
    assert_eq!(of("key-ab")(store.clone()).await, ["alias/2"]);
    assert_eq!(
        listed_aliases(&*store, None, None, 10).await,
        ["alias/2", "alias/5"]
    );
}

/// Destroying a key removes it, its versions and its aliases, and nothing of its
/// neighbours (not even one whose ID extends its ID).
pub(crate) async fn destroy_removes_one_keys_versions_and_aliases_only(factory: impl StoreFactory) {
    let store = factory.open().await;
    for id in ["key-a", "key-ab", "key-b"] {
        add_key(&*store, id).await;
        add_alias(&*store, &format!("alias/{id}"), id).await;
    }
    add_second_version(&*store, "key-a").await;
    add_alias(&*store, "alias/second", "key-a").await;
    assert!(store.destroy_key("key-a", 1).await.unwrap());
    assert!(store.get_key("key-a").await.unwrap().is_none());
    assert!(store.list_versions("key-a").await.unwrap().is_empty());
    assert!(store.find_version("key-a-v1").await.unwrap().is_none());
    assert!(store.find_version("key-a-v2").await.unwrap().is_none());
    assert!(store.get_alias("alias/key-a").await.unwrap().is_none());
    assert!(store.get_alias("alias/second").await.unwrap().is_none());
    for id in ["key-ab", "key-b"] {
        assert!(store.get_key(id).await.unwrap().is_some(), "{id}");
        assert_eq!(store.list_versions(id).await.unwrap().len(), 1, "{id}");
        let (version_id, alias_name) = (format!("{id}-v1"), format!("alias/{id}"));
        assert!(
            store.find_version(&version_id).await.unwrap().is_some(),
            "{id}"
        );
        assert!(
            store.get_alias(&alias_name).await.unwrap().is_some(),
            "{id}"
        );
    }
    assert_eq!(
        listed_aliases(&*store, None, None, 10).await,
        ["alias/key-ab", "alias/key-b"]
    );
}

/// Destruction happens only at the revision named (a deletion cancelled meanwhile
/// wins); a key that is gone is `false`, not an error.
pub(crate) async fn destroy_is_conditional_on_the_revision(factory: impl StoreFactory) {
    let store = factory.open().await;
    add_key(&*store, "key-a").await;
    add_alias(&*store, "alias/a", "key-a").await;
    assert!(matches!(
        store.destroy_key("key-a", 7).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.get_key("key-a").await.unwrap().is_some());
    assert_eq!(store.list_versions("key-a").await.unwrap().len(), 1);
    assert!(store.get_alias("alias/a").await.unwrap().is_some());
    assert!(store.destroy_key("key-a", 0).await.unwrap());
    assert!(!store.destroy_key("key-a", 0).await.unwrap());
    assert!(!store.destroy_key("key-none", 0).await.unwrap());
}

/// A metadata value is set once and never replaced.
pub(crate) async fn meta_is_set_once(factory: impl StoreFactory) {
    let store = factory.open().await;
    assert!(store.get_meta("check").await.unwrap().is_none());
    assert!(store.put_meta_if_absent("check", b"one").await.unwrap());
    assert!(!store.put_meta_if_absent("check", b"two").await.unwrap());
    assert_eq!(store.get_meta("check").await.unwrap().unwrap(), b"one");
    assert!(store.get_meta("other").await.unwrap().is_none());
}

/// `reseal_all` replaces every version's material and the metadata given in one
/// transaction; a resealer that fails part way changes nothing.
pub(crate) async fn reseal_replaces_all_material_and_meta_or_nothing(factory: impl StoreFactory) {
    let store = factory.open().await;
    add_key(&*store, "key-a").await;
    add_key(&*store, "key-b").await;
    let rotated = add_second_version(&*store, "key-a").await;
    store.put_meta_if_absent("check", b"old").await.unwrap();
    let all = ["key-a-v1", "key-a-v2", "key-b-v1"];
    let resealed = |id: &str| SealedMaterial {
        iv: vec![2; 12],
        ciphertext: id.as_bytes().to_vec(),
    };

    // Fails on the second version: nothing changes, not even the first.
    let mut seen = 0;
    let failing: super::Resealer = Box::new(move |v: &VersionRecord| {
        seen += 1;
        if seen == 2 {
            Err("cannot open".into())
        } else {
            Ok(resealed(&v.version_id))
        }
    });
    let err = store
        .reseal_all(failing, vec![("check".into(), b"new".to_vec())])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    for id in all {
        let found = store.find_version(id).await.unwrap().unwrap();
        assert_eq!(found.material, version("x", "x", 0).material, "{id}");
    }
    assert_eq!(store.get_meta("check").await.unwrap().unwrap(), b"old");

    let count = store
        .reseal_all(
            Box::new(move |v: &VersionRecord| Ok(resealed(&v.version_id))),
            vec![("check".into(), b"new".to_vec())],
        )
        .await
        .unwrap();
    assert_eq!(count, 3);
    for id in all {
        let found = store.find_version(id).await.unwrap().unwrap();
        assert_eq!(found.material, resealed(id), "{id}");
        assert_eq!(found.version_id, id);
    }
    assert_eq!(store.get_meta("check").await.unwrap().unwrap(), b"new");
    // Everything else is as it was.
    assert_eq!(store.get_key("key-a").await.unwrap(), Some(rotated));
    assert_eq!(store.counts().await.unwrap().versions, 3);
}

/// Counts follow inserts, rotations, aliases and destruction.
pub(crate) async fn counts_follow_writes(factory: impl StoreFactory) {
    let store = factory.open().await;
    assert_eq!(store.counts().await.unwrap(), StoreCounts::default());
    add_key(&*store, "key-a").await;
    add_key(&*store, "key-b").await;
    add_second_version(&*store, "key-a").await;
    add_alias(&*store, "alias/a", "key-a").await;
    add_alias(&*store, "alias/b", "key-b").await;
    let counts = |keys, versions, aliases| StoreCounts {
        keys,
        versions,
        aliases,
    };
    assert_eq!(store.counts().await.unwrap(), counts(2, 3, 2));
    assert!(store.destroy_key("key-a", 1).await.unwrap());
    assert_eq!(store.counts().await.unwrap(), counts(1, 1, 1));
}

/// Everything written is there after the store is closed and opened again.
pub(crate) async fn everything_survives_reopen(factory: impl StoreFactory) {
    let rotated = {
        let store = factory.open().await;
        add_key(&*store, "key-a").await;
        let rotated = add_second_version(&*store, "key-a").await;
        add_alias(&*store, "alias/a", "key-a").await;
        store.put_meta_if_absent("check", b"one").await.unwrap();
        rotated
    };
    let store = factory.open().await;
    assert_eq!(store.get_key("key-a").await.unwrap(), Some(rotated));
    assert_eq!(
        version_ids(&store.list_versions("key-a").await.unwrap()),
        ["key-a-v1", "key-a-v2"]
    );
    assert_eq!(
        store.find_version("key-a-v2").await.unwrap(),
        Some(version("key-a", "key-a-v2", 2))
    );
    assert_eq!(
        store.get_alias("alias/a").await.unwrap(),
        Some(alias("alias/a", "key-a"))
    );
    assert_eq!(store.get_meta("check").await.unwrap().unwrap(), b"one");
    assert_eq!(
        store.counts().await.unwrap(),
        StoreCounts {
            keys: 1,
            versions: 2,
            aliases: 1
        }
    );
}

fn client_key(id: &str) -> ClientKeyRecord {
    ClientKeyRecord {
        client_key_id: id.to_owned(),
        principal: format!("principal-of-{id}"),
        public_key_der: id.as_bytes().to_vec(),
        not_before_ms: 1_000,
        not_after_ms: 2_000,
        created_at_ms: 1_500,
        minted_by: format!("minter-of-{id}"),
        minted_under: MintedUnder::Policy,
        // Any bytes: the store keeps them as they are (keys::record_mac checks them).
        mac: format!("mac-of-{id}").into_bytes(),
    }
}

/// Client keys: inserted once, read back whole, listed in ID order by pages, deleted
/// one at a time, and kept across a reopen.
pub(crate) async fn client_keys_insert_list_and_delete(factory: impl StoreFactory) {
    let store = factory.open().await;
    assert!(store.list_client_keys(None, 10).await.unwrap().is_empty());
    assert_eq!(store.get_client_key("KAAP.b").await.unwrap(), None);
    for id in ["KAAP.c", "KAAP.a", "KAAP.b"] {
        store.insert_client_key(&client_key(id)).await.unwrap();
    }
    assert!(matches!(
        store.insert_client_key(&client_key("KAAP.a")).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.get_client_key("KAAP.b").await.unwrap(),
        Some(client_key("KAAP.b"))
    );
    let first = store.list_client_keys(None, 2).await.unwrap();
    let ids: Vec<_> = first.iter().map(|k| k.client_key_id.as_str()).collect();
    assert_eq!(ids, ["KAAP.a", "KAAP.b"]);
    let rest = store.list_client_keys(Some("KAAP.b"), 2).await.unwrap();
    assert_eq!(rest, vec![client_key("KAAP.c")]);

    let readmitted = ClientKeyRecord {
        minted_under: MintedUnder::Readmitted,
        ..client_key("KAAP.b")
    };
    assert!(store.replace_client_key(&readmitted).await.unwrap());
    assert_eq!(
        store.get_client_key("KAAP.b").await.unwrap(),
        Some(readmitted)
    );
    assert!(
        !store
            .replace_client_key(&client_key("KAAP.z"))
            .await
            .unwrap()
    );
    assert_eq!(store.get_client_key("KAAP.z").await.unwrap(), None);
    assert!(store.delete_client_key("KAAP.b").await.unwrap());
    assert!(!store.delete_client_key("KAAP.b").await.unwrap());
    assert_eq!(store.get_client_key("KAAP.b").await.unwrap(), None);
    // Keys, versions and aliases are another matter: a client key is none of them.
    assert_eq!(store.counts().await.unwrap(), StoreCounts::default());
    drop(store);

    let store = factory.open().await;
    let ids: Vec<_> = store
        .list_client_keys(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.client_key_id)
        .collect();
    assert_eq!(ids, ["KAAP.a", "KAAP.c"]);
}

/// Secret `name` at revision 0 with one current version `v1` (sealed bytes made up:
/// the store keeps them as they are).
pub(crate) fn secret(name: &str) -> SecretRecord {
    SecretRecord {
        secret_name: name.to_owned(),
        secret_type: "Generic".into(),
        description: format!("description of {name}"),
        encryption_key_id: "key-a".into(),
        extended_config: Some(r#"{"a":1}"#.into()),
        automatic_rotation: true,
        rotation_interval_secs: Some(604_800),
        last_rotation_ms: 5,
        created_at_ms: 5,
        updated_at_ms: 5,
        delete_at_ms: None,
        versions: vec![secret_version("v1", 5, &["ACSCurrent"])],
        revision: 0,
    }
}

fn secret_version(version_id: &str, at: u64, stages: &[&str]) -> SecretVersionRecord {
    SecretVersionRecord {
        version_id: version_id.to_owned(),
        created_at_ms: at,
        data_type: "text".into(),
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        sealed: SealedSecretData {
            key_version_id: "key-a-v1".into(),
            key_iv: vec![1; 12],
            sealed_key: format!("key of {version_id}").into_bytes(),
            data_iv: vec![2; 12],
            sealed_data: format!("data of {version_id}").into_bytes(),
        },
    }
}

fn secret_names(secrets: &[SecretRecord]) -> Vec<&str> {
    secrets.iter().map(|s| s.secret_name.as_str()).collect()
}

/// Secrets: a name is taken once; updates name the revision they read (stale ones
/// conflict, missing secrets are NotFound); lists are ordered pages; a delete is
/// conditional on the revision and removes the secret whole.
pub(crate) async fn secrets_insert_update_list_and_delete(factory: impl StoreFactory) {
    let store = factory.open().await;
    assert_eq!(store.get_secret("db/a").await.unwrap(), None);
    for name in ["db/c", "db/a", "db/b"] {
        store.insert_secret(&secret(name)).await.unwrap();
    }
    assert!(matches!(
        store.insert_secret(&secret("db/a")).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.get_secret("db/a").await.unwrap(),
        Some(secret("db/a"))
    );

    let mut changed = secret("db/a");
    changed.revision = 1;
    changed.versions[0].stages = vec!["ACSPrevious".into()];
    changed
        .versions
        .push(secret_version("v2", 6, &["ACSCurrent", "custom"]));
    store.update_secret(&changed).await.unwrap();
    assert_eq!(
        store.get_secret("db/a").await.unwrap(),
        Some(changed.clone())
    );
    // Written at a revision already overtaken.
    assert!(matches!(
        store.update_secret(&changed).await,
        Err(StoreError::Conflict)
    ));
    let mut missing = secret("db/zz");
    missing.revision = 1;
    assert!(matches!(
        store.update_secret(&missing).await,
        Err(StoreError::NotFound)
    ));

    let first = store.list_secrets(None, 2).await.unwrap();
    assert_eq!(secret_names(&first), ["db/a", "db/b"]);
    let rest = store.list_secrets(Some("db/b"), 2).await.unwrap();
    assert_eq!(secret_names(&rest), ["db/c"]);

    assert!(matches!(
        store.delete_secret("db/a", 0).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.delete_secret("db/a", 1).await.unwrap());
    assert!(!store.delete_secret("db/a", 1).await.unwrap());
    assert_eq!(store.get_secret("db/a").await.unwrap(), None);
    assert_eq!(
        secret_names(&store.list_secrets(None, 10).await.unwrap()),
        ["db/b", "db/c"]
    );
}

/// Secrets, with their versions and sealed data, are kept across a reopen.
pub(crate) async fn secrets_survive_reopen(factory: impl StoreFactory) {
    let mut stored = secret("api/token");
    {
        let store = factory.open().await;
        store.insert_secret(&stored).await.unwrap();
        stored.revision = 1;
        stored.versions.push(secret_version("v2", 9, &[]));
        store.update_secret(&stored).await.unwrap();
    }
    let store = factory.open().await;
    assert_eq!(store.get_secret("api/token").await.unwrap(), Some(stored));
}

// === idempotency tokens ===

/// The record of `token` for `operation` by `principal`, made at `at` for 100 ms,
/// naming `outcome`.
fn token_record(
    operation: &str,
    principal: &str,
    token: &str,
    outcome: &str,
    at: u64,
) -> IdempotencyRecord {
    IdempotencyRecord {
        operation: operation.to_owned(),
        principal: principal.to_owned(),
        token: token.to_owned(),
        request_mac: vec![7; 32],
        outcome: outcome.to_owned(),
        created_at_ms: at,
        expires_at_ms: at + 100,
    }
}

/// The creation of key `id` with its first version.
fn key_creation(id: &str) -> Creation {
    Creation::Key(key(id), version(id, &format!("{id}-v1"), 1))
}

/// A token and what it made commit together: a taken token writes nothing, and a
/// creation that fails (a taken name, a stale revision) leaves the token free. Every
/// kind of creation takes a token; records survive a reopen.
pub(crate) async fn a_token_and_its_creation_commit_together(factory: impl StoreFactory) {
    {
        let store = factory.open().await;
        let first = token_record("CreateKey", "", "t1", "key-a", 10);
        store
            .create_once(&first, key_creation("key-a"))
            .await
            .unwrap();
        assert_eq!(
            store.get_idempotency("CreateKey", "", "t1").await.unwrap(),
            Some(first.clone())
        );
        // The same token again: refused, and key-b is not made.
        let again = token_record("CreateKey", "", "t1", "key-b", 20);
        assert!(matches!(
            store.create_once(&again, key_creation("key-b")).await,
            Err(StoreError::TokenTaken)
        ));
        assert_eq!(store.get_key("key-b").await.unwrap(), None);
        assert_eq!(
            store.get_idempotency("CreateKey", "", "t1").await.unwrap(),
            Some(first)
        );
        // A creation that fails takes no token.
        let taken_name = token_record("CreateKey", "", "t2", "key-a", 20);
        assert!(matches!(
            store.create_once(&taken_name, key_creation("key-a")).await,
            Err(StoreError::AlreadyExists)
        ));
        assert_eq!(
            store.get_idempotency("CreateKey", "", "t2").await.unwrap(),
            None
        );
        let stale = Creation::Version(key("key-a"), version("key-a", "key-a-v2", 2));
        let rotation = token_record("CreateKeyVersion", "", "t3", "key-a/key-a-v2", 20);
        assert!(matches!(
            store.create_once(&rotation, stale).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            store
                .get_idempotency("CreateKeyVersion", "", "t3")
                .await
                .unwrap(),
            None
        );
        // Each kind of creation.
        let mut rotated = key("key-a");
        rotated.revision = 1;
        rotated.primary_version_id = "key-a-v2".into();
        let rotation = Creation::Version(rotated, version("key-a", "key-a-v2", 2));
        store
            .create_once(
                &token_record("CreateKeyVersion", "", "t3", "key-a/key-a-v2", 20),
                rotation,
            )
            .await
            .unwrap();
        assert_eq!(store.list_versions("key-a").await.unwrap().len(), 2);
        store
            .create_once(
                &token_record("CreateSecret", "", "t4", "db/x", 20),
                Creation::Secret(secret("db/x")),
            )
            .await
            .unwrap();
        assert!(store.get_secret("db/x").await.unwrap().is_some());
        store
            .create_once(
                &token_record("CreateClientKey", "", "t5", "KAAP.t5", 20),
                Creation::ClientKey(client_key("KAAP.t5")),
            )
            .await
            .unwrap();
        assert!(store.get_client_key("KAAP.t5").await.unwrap().is_some());
    }
    let store = factory.open().await;
    let kept = store
        .get_idempotency("CreateSecret", "", "t4")
        .await
        .unwrap();
    assert_eq!(kept.map(|record| record.outcome), Some("db/x".to_owned()));
}

/// A token is scoped to its operation and principal; once expired it may be claimed
/// again, and a purge removes only expired records.
pub(crate) async fn a_token_is_scoped_and_expires(factory: impl StoreFactory) {
    let store = factory.open().await;
    store
        .create_once(
            &token_record("CreateKey", "alice", "t", "key-a", 10),
            key_creation("key-a"),
        )
        .await
        .unwrap();
    // Another principal, another operation: their own tokens.
    store
        .create_once(
            &token_record("CreateKey", "bob", "t", "key-b", 10),
            key_creation("key-b"),
        )
        .await
        .unwrap();
    store
        .create_once(
            &token_record("CreateSecret", "alice", "t", "db/a", 10),
            Creation::Secret(secret("db/a")),
        )
        .await
        .unwrap();
    // Expired at 110: claimed anew at 110, replacing the old record.
    assert!(matches!(
        store
            .create_once(
                &token_record("CreateKey", "alice", "t", "key-c", 109),
                key_creation("key-c")
            )
            .await,
        Err(StoreError::TokenTaken)
    ));
    let renewed = token_record("CreateKey", "alice", "t", "key-c", 110);
    store
        .create_once(&renewed, key_creation("key-c"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_idempotency("CreateKey", "alice", "t")
            .await
            .unwrap(),
        Some(renewed)
    );
    // At 150 bob's and the secret's records (made at 10) have expired, alice's new one not.
    assert_eq!(store.purge_idempotency(150).await.unwrap(), 2);
    assert_eq!(
        store
            .get_idempotency("CreateKey", "bob", "t")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .get_idempotency("CreateKey", "alice", "t")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.purge_idempotency(150).await.unwrap(), 0);
    // Purging records never touches what they made.
    assert!(store.get_key("key-b").await.unwrap().is_some());
}

/// Many writers claiming one token at once with different objects: exactly one
/// object is made, and every other writer is told the token is taken.
pub(crate) async fn racing_claims_of_one_token_make_one_object(factory: impl StoreFactory) {
    let store = factory.open().await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let id = format!("key-race{i}");
                let record = token_record("CreateKey", "", "race", &id, 10);
                store.create_once(&record, key_creation(&id)).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::TokenTaken) => {}
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    assert_eq!(won, 1);
    let keys = store.list_keys(None, 100).await.unwrap();
    assert_eq!(keys.len(), 1);
    let record = store
        .get_idempotency("CreateKey", "", "race")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.outcome, keys[0].key_id);
}
