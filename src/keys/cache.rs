//! The data plane's read cache: key records for a short time, opened version material
//! for as long as it is used.
//!
//! Every data key pair call resolves its key (a store read) and opens a version's
//! material (a store read and an AES-GCM open under the root key). Each store read is
//! a hop to tokio's blocking pool, about 30 us of a call that is otherwise a few
//! microseconds of crypto; kmsd-bench showed the two reads to be most of the serving
//! path (docs/performance.md). What is cached, and why it stays correct:
//!
//! - **Key records** (by the `KeyId` as sent: key ID or alias), for at most
//!   [`KEY_TTL`]. Key state must not be cached long: a shared store (a PostgreSQL
//!   backend behind several replicas) changes under us. Every write this registry makes
//!   (state changes, rotation, destruction, alias changes) clears the whole key cache
//!   once it is durable, so on one instance a disabled or deleted key is refused by the
//!   very next call. A change made by another replica sharing the store is announced by
//!   the store ([`follow_changes`]: PostgreSQL's `LISTEN/NOTIFY`, milliseconds) and
//!   drops the entries it concerns; [`KEY_TTL`] bounds staleness when an announcement
//!   is lost. A read that raced a write or an announcement is not cached: fills carry
//!   the generation they started in and are dropped if anything was forgotten since.
//!   The data plane and DescribeKey read through the cache (DescribeKey is the control
//!   plane's hot read: about 3x less server CPU at saturation, docs/performance.md);
//!   updates always read the store.
//! - **Opened version material** (by key ID and version ID). A version's material
//!   never changes, so an entry cannot go stale; it is only used after the key itself
//!   was resolved as usable, so a disabled or destroyed key's material is never used.
//!   Entries of a key are dropped when this registry destroys it; the cache holds at
//!   most [`MATERIAL_CAPACITY`] versions (then starts over). Material is 32 bytes,
//!   zeroized when dropped, like every other copy.
//! - **Parsed private keys** of asymmetric keys (signing keys and RSA encryption
//!   keys), by the same rules as material.
//! - **Client keys** (by client-key ID), for at most [`CLIENT_KEY_TTL`]: the gateway
//!   looks one up on every call before it knows who is calling, and in PostgreSQL mode
//!   each lookup would be a database round trip. A client key deleted through this
//!   process is forgotten at once (the next call is refused); one deleted through
//!   another replica sharing the store is still honoured here for at most
//!   [`CLIENT_KEY_TTL`] (client keys are not announced by the store). Validity dates
//!   are checked on every use, cached or not. Only keys that exist are cached.
//! - **Secret records** (by name; their versions' data stays sealed), for at most
//!   [`SECRET_TTL`], read by GetSecretValue only, by the rules of key records: every
//!   write of this process forgets the secret once durable, another replica's write is
//!   announced by the store, and a read that raced a write is not cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::RecvError};

use crate::crypto::rsa_oaep::OaepKey;
use crate::crypto::secret::MasterKeyMaterial;
use crate::crypto::signing_keys::SigningKey;
use crate::store::{ClientKeyRecord, KeyRecord, SecretRecord, StoreChange};

/// How long a key record is served from the cache.
pub const KEY_TTL: Duration = Duration::from_secs(1);
/// Most key records cached (by `KeyId` as sent); the cache starts over when full.
pub const KEY_CAPACITY: usize = 4096;
/// How long a client key is served from the cache; see the module docs.
pub const CLIENT_KEY_TTL: Duration = Duration::from_secs(30);
/// Most client keys cached; the cache starts over when full.
pub const CLIENT_KEY_CAPACITY: usize = 4096;
/// How long a secret record is served from the cache.
pub const SECRET_TTL: Duration = Duration::from_secs(1);
/// Most secret records cached; the cache starts over when full.
pub const SECRET_CAPACITY: usize = 4096;
/// Most versions' material cached; the cache starts over when full.
pub const MATERIAL_CAPACITY: usize = 4096;

/// The generation a fill started in; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation(u64);

#[derive(Default)]
struct Keys {
    generation: u64,
    entries: HashMap<String, (Instant, KeyRecord)>,
}

#[derive(Default)]
struct ClientKeys {
    generation: u64,
    entries: HashMap<String, (Instant, ClientKeyRecord)>,
}

#[derive(Default)]
struct Secrets {
    generation: u64,
    entries: HashMap<String, (Instant, Arc<SecretRecord>)>,
}

/// The cache; shared by every clone of a registry.
#[derive(Default)]
pub struct RegistryCache {
    keys: Mutex<Keys>,
    client_keys: Mutex<ClientKeys>,
    secrets: Mutex<Secrets>,
    material: PerVersion<MasterKeyMaterial>,
    signing_keys: PerVersion<SigningKey>,
    oaep_keys: PerVersion<OaepKey>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps: consistent even if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What is cached per key version (opened material, parsed private keys): at most
/// [`MATERIAL_CAPACITY`] entries, starting over when full.
struct PerVersion<T>(Mutex<HashMap<(String, String), Arc<T>>>);

impl<T> Default for PerVersion<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T> PerVersion<T> {
    fn get(&self, key_id: &str, version_id: &str) -> Option<Arc<T>> {
        lock(&self.0)
            .get(&(key_id.to_owned(), version_id.to_owned()))
            .cloned()
    }

    fn fill(&self, key_id: &str, version_id: &str, value: Arc<T>) {
        let mut cached = lock(&self.0);
        if cached.len() >= MATERIAL_CAPACITY {
            cached.clear();
        }
        cached.insert((key_id.to_owned(), version_id.to_owned()), value);
    }

    fn forget_key(&self, key_id: &str) {
        lock(&self.0).retain(|(k, _), _| k != key_id);
    }

    fn clear(&self) {
        lock(&self.0).clear();
    }

    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

impl RegistryCache {
    /// The record cached for `key_ref` if younger than [`KEY_TTL`], else the
    /// generation to hand to [`fill_key`](Self::fill_key) after reading the store.
    pub fn key(&self, key_ref: &str) -> Result<KeyRecord, Generation> {
        let keys = lock(&self.keys);
        match keys.entries.get(key_ref) {
            Some((at, record)) if at.elapsed() < KEY_TTL => Ok(record.clone()),
            _ => Err(Generation(keys.generation)),
        }
    }

    /// Caches `record` for `key_ref`, unless the cache was cleared since `generation`.
    pub fn fill_key(&self, key_ref: &str, record: &KeyRecord, generation: Generation) {
        let mut keys = lock(&self.keys);
        if keys.generation != generation.0 {
            return;
        }
        if keys.entries.len() >= KEY_CAPACITY {
            keys.entries.clear();
        }
        keys.entries
            .insert(key_ref.to_owned(), (Instant::now(), record.clone()));
    }

    /// Forgets every key record; called after each write of this registry.
    pub fn clear_keys(&self) {
        let mut keys = lock(&self.keys);
        keys.generation += 1;
        keys.entries.clear();
    }

    /// Forgets the records of `key_id`, cached by its ID or by any alias.
    pub fn forget_key(&self, key_id: &str) {
        let mut keys = lock(&self.keys);
        keys.generation += 1;
        keys.entries
            .retain(|_, (_, record)| record.key_id != key_id);
    }

    /// Forgets the record cached for the alias `alias_name`.
    pub fn forget_alias(&self, alias_name: &str) {
        let mut keys = lock(&self.keys);
        keys.generation += 1;
        keys.entries.remove(alias_name);
    }

    /// The client key cached as `client_key_id` if younger than [`CLIENT_KEY_TTL`],
    /// else the generation to hand to [`fill_client_key`](Self::fill_client_key).
    pub fn client_key(&self, client_key_id: &str) -> Result<ClientKeyRecord, Generation> {
        let cached = lock(&self.client_keys);
        match cached.entries.get(client_key_id) {
            Some((at, record)) if at.elapsed() < CLIENT_KEY_TTL => Ok(record.clone()),
            _ => Err(Generation(cached.generation)),
        }
    }

    /// Caches `record`, unless a client key was forgotten since `generation` (a
    /// lookup that raced a delete must not bring the key back).
    pub fn fill_client_key(&self, record: &ClientKeyRecord, generation: Generation) {
        let mut cached = lock(&self.client_keys);
        if cached.generation != generation.0 {
            return;
        }
        if cached.entries.len() >= CLIENT_KEY_CAPACITY {
            cached.entries.clear();
        }
        cached.entries.insert(
            record.client_key_id.clone(),
            (Instant::now(), record.clone()),
        );
    }

    /// Forgets the client key `client_key_id`; called when this registry deletes it.
    pub fn forget_client_key(&self, client_key_id: &str) {
        let mut cached = lock(&self.client_keys);
        cached.generation += 1;
        cached.entries.remove(client_key_id);
    }

    /// The secret cached as `secret_name` if younger than [`SECRET_TTL`], else the
    /// generation to hand to [`fill_secret`](Self::fill_secret).
    pub fn secret(&self, secret_name: &str) -> Result<Arc<SecretRecord>, Generation> {
        let cached = lock(&self.secrets);
        match cached.entries.get(secret_name) {
            Some((at, record)) if at.elapsed() < SECRET_TTL => Ok(Arc::clone(record)),
            _ => Err(Generation(cached.generation)),
        }
    }

    /// Caches `record`, unless a secret was forgotten since `generation`.
    pub fn fill_secret(&self, record: Arc<SecretRecord>, generation: Generation) {
        let mut cached = lock(&self.secrets);
        if cached.generation != generation.0 {
            return;
        }
        if cached.entries.len() >= SECRET_CAPACITY {
            cached.entries.clear();
        }
        cached
            .entries
            .insert(record.secret_name.clone(), (Instant::now(), record));
    }

    /// Forgets the secret `secret_name`; called after each write of it.
    pub fn forget_secret(&self, secret_name: &str) {
        let mut cached = lock(&self.secrets);
        cached.generation += 1;
        cached.entries.remove(secret_name);
    }

    /// Forgets everything: key records, client keys, secrets, opened material and
    /// parsed private keys.
    pub fn clear_all(&self) {
        self.clear_keys();
        {
            let mut cached = lock(&self.secrets);
            cached.generation += 1;
            cached.entries.clear();
        }
        {
            let mut cached = lock(&self.client_keys);
            cached.generation += 1;
            cached.entries.clear();
        }
        self.material.clear();
        self.signing_keys.clear();
        self.oaep_keys.clear();
    }

    /// Applies one announced change of the store.
    pub fn apply(&self, change: &StoreChange) {
        match change {
            StoreChange::Key(key_id) => self.forget_key(key_id),
            StoreChange::KeyDestroyed(key_id) => {
                self.forget_key(key_id);
                self.forget_material(key_id);
            }
            StoreChange::Alias(alias_name) => self.forget_alias(alias_name),
            StoreChange::Secret(secret_name) => self.forget_secret(secret_name),
            StoreChange::Missed => self.clear_all(),
        }
    }

    /// The opened material of a version, if cached.
    pub fn material(&self, key_id: &str, version_id: &str) -> Option<Arc<MasterKeyMaterial>> {
        self.material.get(key_id, version_id)
    }

    /// Caches the opened material of a version.
    pub fn fill_material(&self, key_id: &str, version_id: &str, material: Arc<MasterKeyMaterial>) {
        self.material.fill(key_id, version_id, material);
    }

    /// The parsed private key of a version of an asymmetric key, if cached.
    pub fn signing_key(&self, key_id: &str, version_id: &str) -> Option<Arc<SigningKey>> {
        self.signing_keys.get(key_id, version_id)
    }

    /// Caches the parsed private key of a version. Parsing is the costly part of an
    /// asymmetric key's first use (ring validates RSA keys), so it is kept like
    /// material, under the same bound.
    pub fn fill_signing_key(&self, key_id: &str, version_id: &str, key: Arc<SigningKey>) {
        self.signing_keys.fill(key_id, version_id, key);
    }

    /// The parsed private key of a version of an RSA encryption key, if cached.
    pub fn oaep_key(&self, key_id: &str, version_id: &str) -> Option<Arc<OaepKey>> {
        self.oaep_keys.get(key_id, version_id)
    }

    /// Caches the parsed private key of a version of an RSA encryption key, as
    /// [`fill_signing_key`](Self::fill_signing_key) does for signing keys.
    pub fn fill_oaep_key(&self, key_id: &str, version_id: &str, key: Arc<OaepKey>) {
        self.oaep_keys.fill(key_id, version_id, key);
    }

    /// Forgets the material and parsed private keys of every version of `key_id` (the
    /// key was destroyed).
    pub fn forget_material(&self, key_id: &str) {
        self.material.forget_key(key_id);
        self.signing_keys.forget_key(key_id);
        self.oaep_keys.forget_key(key_id);
    }
}

/// Spawns the task that applies the store's announced changes to `cache` until the
/// cache is dropped or the announcements end. A lagging receiver missed some: it
/// forgets everything.
pub fn follow_changes(
    mut changes: broadcast::Receiver<StoreChange>,
    cache: Weak<RegistryCache>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let change = changes.recv().await;
            let Some(cache) = cache.upgrade() else { break };
            match change {
                Ok(change) => cache.apply(&change),
                Err(RecvError::Lagged(_)) => cache.apply(&StoreChange::Missed),
                Err(RecvError::Closed) => break,
            }
        }
    })
}

impl std::fmt::Debug for RegistryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCache")
            .field("keys", &lock(&self.keys).entries.len())
            .field("material", &self.material.len())
            .field("signing_keys", &self.signing_keys.len())
            .field("oaep_keys", &self.oaep_keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyState;

    fn record(key_id: &str, state: KeyState) -> KeyRecord {
        KeyRecord {
            key_id: key_id.into(),
            key_spec: "Aliyun_AES_256".into(),
            key_usage: "ENCRYPT/DECRYPT".into(),
            state,
            description: String::new(),
            created_at_ms: 0,
            initial_version_id: "v1".into(),
            primary_version_id: "v1".into(),
            rotation_interval_secs: None,
            last_rotation_ms: 0,
            delete_at_ms: None,
            revision: 0,
        }
    }

    #[test]
    fn a_fill_that_raced_a_clear_is_dropped() {
        let cache = RegistryCache::default();
        let generation = cache.key("key-a").unwrap_err();
        // A write lands (and clears) while the read was in flight.
        cache.clear_keys();
        cache.fill_key("key-a", &record("key-a", KeyState::Enabled), generation);
        assert!(
            cache.key("key-a").is_err(),
            "a stale read must not be cached"
        );

        let generation = cache.key("key-a").unwrap_err();
        cache.fill_key("key-a", &record("key-a", KeyState::Enabled), generation);
        assert_eq!(cache.key("key-a").unwrap().state, KeyState::Enabled);
        cache.clear_keys();
        assert!(cache.key("key-a").is_err(), "a write clears every record");
    }

    #[test]
    fn material_is_kept_per_version_and_forgotten_per_key() {
        let cache = RegistryCache::default();
        let m = Arc::new(MasterKeyMaterial::generate().unwrap());
        cache.fill_material("key-a", "v1", Arc::clone(&m));
        cache.fill_material("key-b", "v1", Arc::clone(&m));
        assert!(cache.material("key-a", "v1").is_some());
        assert!(cache.material("key-a", "v2").is_none());
        cache.forget_material("key-a");
        assert!(cache.material("key-a", "v1").is_none());
        assert!(cache.material("key-b", "v1").is_some());
        assert!(!format!("{cache:?}").contains(&format!("{:?}", m.expose_secret())));
    }

    #[test]
    fn announced_changes_forget_what_they_concern_and_drop_racing_fills() {
        let cache = RegistryCache::default();
        let fill = |key_ref: &str, key_id: &str| {
            let generation = cache.key(key_ref).unwrap_err();
            cache.fill_key(key_ref, &record(key_id, KeyState::Enabled), generation);
        };
        fill("key-a", "key-a");
        fill("alias/a", "key-a");
        fill("key-b", "key-b");
        fill("alias/b", "key-b");
        let m = Arc::new(MasterKeyMaterial::generate().unwrap());
        cache.fill_material("key-a", "v1", Arc::clone(&m));
        cache.fill_material("key-b", "v1", Arc::clone(&m));

        // Another replica disabled key-a: by ID and by alias, it is gone; key-b stays.
        let racing = cache.key("key-c").unwrap_err();
        cache.apply(&StoreChange::Key("key-a".into()));
        assert!(cache.key("key-a").is_err() && cache.key("alias/a").is_err());
        assert!(cache.key("key-b").is_ok() && cache.key("alias/b").is_ok());
        cache.fill_key("key-c", &record("key-c", KeyState::Enabled), racing);
        assert!(
            cache.key("key-c").is_err(),
            "a read that raced it is not cached"
        );

        cache.apply(&StoreChange::Alias("alias/b".into()));
        assert!(cache.key("alias/b").is_err() && cache.key("key-b").is_ok());
        cache.apply(&StoreChange::KeyDestroyed("key-a".into()));
        assert!(cache.material("key-a", "v1").is_none());
        assert!(cache.material("key-b", "v1").is_some());
        cache.apply(&StoreChange::Missed);
        assert!(cache.key("key-b").is_err() && cache.material("key-b", "v1").is_none());
    }

    #[tokio::test]
    async fn the_follower_applies_announcements_and_ends_with_the_cache() {
        let (tx, rx) = broadcast::channel(4);
        let cache = Arc::new(RegistryCache::default());
        let task = follow_changes(rx, Arc::downgrade(&cache));
        let generation = cache.key("key-a").unwrap_err();
        cache.fill_key("key-a", &record("key-a", KeyState::Enabled), generation);
        tx.send(StoreChange::Key("key-a".into())).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while cache.key("key-a").is_ok() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("applied");
        drop(cache);
        tx.send(StoreChange::Missed).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the follower ends with its cache")
            .unwrap();
    }

    #[test]
    fn both_caches_are_bounded() {
        let cache = RegistryCache::default();
        for i in 0..=KEY_CAPACITY {
            let generation = cache.key(&format!("key-{i}")).unwrap_err();
            cache.fill_key(
                &format!("key-{i}"),
                &record("key-x", KeyState::Enabled),
                generation,
            );
        }
        assert!(lock(&cache.keys).entries.len() <= KEY_CAPACITY);
        let m = Arc::new(MasterKeyMaterial::generate().unwrap());
        for i in 0..=MATERIAL_CAPACITY {
            cache.fill_material("key-a", &i.to_string(), Arc::clone(&m));
        }
        assert!(cache.material.len() <= MATERIAL_CAPACITY);
    }
}
