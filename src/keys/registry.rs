//! The key registry: the control plane's rules over the store.
//!
//! One [`KeyRegistry`] type, its rules spread over modules with one owner each:
//!
//! - here: opening (the root key check, then the store), scoping, shared helpers;
//! - [`super::access`]: resolving a `KeyId` and the key-grant checks;
//! - [`super::material`]: new version material, sealed, and opening it;
//! - [`super::lifecycle`]: create, describe, list, states, deletion, rotation, versions;
//! - [`super::aliases`]: creating, re-pointing, deleting and listing aliases;
//! - [`super::maintenance`]: automatic rotation and the end of deletion windows.
//!
//! Material is sealed under the root key before it reaches the store and opened only
//! in memory, in types that zeroize. The data plane reads keys and material through a
//! short-lived cache ([`super::cache`]); every write clears what it could make stale.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::auth::Access;
use crate::clock::{Clock, to_unix_millis};
use crate::crypto::CryptoError;
use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;
use crate::metrics::{self, Refresh};
use crate::store::{self, KeyRecord, KeyStore, StoreCounts, StoreError, StoreSettings};

use super::cache::RegistryCache;
use super::page_token::{PageTokens, TokenScope};
use super::record_mac::RecordMac;
use super::request_mac::RequestMac;
use super::root_key;

/// How often a read-modify-write is retried when another writer got there first.
pub(crate) const MAX_CONFLICT_RETRIES: usize = 16;

/// Waits before retry `attempt` (0-based) of a read-modify-write that lost a race:
/// nothing the first time, then a jittered pause that grows to at most 32 ms, so
/// writers racing on one record spread out instead of colliding again at once (all
/// retries together stay well within a call's deadline).
pub(crate) async fn conflict_backoff(attempt: usize) {
    if attempt == 0 {
        return;
    }
    let ceiling_us = 1_000u64 << attempt.min(5);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    let pause = ceiling_us / 2 + jitter % (ceiling_us / 2);
    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
}

/// Why the registry could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The root key is not the one the store was created with.
    #[error(
        "the root key does not match this data directory: it was created with another root key \
         (check --root-key-file); nothing was changed"
    )]
    WrongRootKey,
    /// The store failed. The message carries the whole chain, as it is usually the
    /// one line a refused start prints.
    #[error("the key store failed: {}", .0.chain())]
    Store(#[from] StoreError),
    /// The root key check for a new store could not be sealed.
    #[error("cannot seal the root key check: {0}")]
    RootKeyCheck(#[source] CryptoError),
}

/// Opens the store `settings` names and the registry over it: the one call a server
/// makes.
///
/// The root key is checked first, read-only ([`store::peek_meta`]): with the wrong key
/// it fails with [`OpenError::WrongRootKey`] and nothing in the store has changed (not
/// even crash recovery). Then the store is opened for writing and, if new, records the
/// check for `root_key`. [`OpenError::Store`] if the store cannot be read or opened.
pub async fn open_registry(
    settings: &StoreSettings,
    root_key: MasterKeyMaterial,
    clock: Arc<dyn Clock>,
) -> Result<KeyRegistry, OpenError> {
    if let Some(check) = store::peek_meta(settings, root_key::CHECK_ENTRY).await?
        && !root_key::check_matches(&check, &root_key)
    {
        return Err(OpenError::WrongRootKey);
    }
    let store = store::open(settings).await?;
    KeyRegistry::open(store, root_key, clock).await
}

/// The control plane. Cheap to clone.
///
/// A registry acts for one [`Access`]: [`Access::Open`] as opened, a caller's grants
/// once [`Self::scoped`]. Every method that takes a `KeyId` checks it when it resolves
/// the key, before reading or changing anything.
#[derive(Clone, Debug)]
pub struct KeyRegistry {
    pub(super) store: Arc<dyn KeyStore>,
    pub(super) root_key: Arc<MasterKeyMaterial>,
    /// Signs and checks the store rows that grant access (client keys).
    pub(super) record_mac: Arc<RecordMac>,
    /// MACs the requests of creations made with an idempotency token.
    pub(super) request_mac: Arc<RequestMac>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) access: Access,
    pub(super) cache: Arc<RegistryCache>,
    pub(super) page_tokens: Arc<PageTokens>,
}

impl KeyRegistry {
    /// Opens the registry over an open `store`. The first open records a check value
    /// sealed under `root_key`; later opens verify it and fail with
    /// [`OpenError::WrongRootKey`], writing nothing, when the key differs. (Opening
    /// the store may itself have written; [`open_registry`] checks before that.)
    pub async fn open(
        store: Arc<dyn KeyStore>,
        root_key: MasterKeyMaterial,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        match store.get_meta(root_key::CHECK_ENTRY).await? {
            Some(check) if root_key::check_matches(&check, &root_key) => {}
            Some(_) => return Err(OpenError::WrongRootKey),
            None => {
                let check = root_key::seal_check(&root_key).map_err(OpenError::RootKeyCheck)?;
                store
                    .put_meta_if_absent(root_key::CHECK_ENTRY, &check)
                    .await?;
            }
        }
        let cache = Arc::new(RegistryCache::default());
        // A store other replicas write to announces their changes; the cache follows.
        if let Some(changes) = store.watch_changes() {
            super::cache::follow_changes(changes, Arc::downgrade(&cache));
        }
        Ok(Self {
            store,
            page_tokens: Arc::new(PageTokens::new(&root_key)),
            record_mac: Arc::new(RecordMac::new(&root_key)),
            request_mac: Arc::new(RequestMac::new(&root_key)),
            root_key: Arc::new(root_key),
            clock,
            access: Access::Open,
            cache,
        })
    }

    /// This registry acting for `access`: keys outside its grants are refused with
    /// [`KmsError::PermissionDenied`], and listings show only keys it may see.
    pub fn scoped(&self, access: Access) -> Self {
        Self {
            access,
            ..self.clone()
        }
    }

    /// The access this registry acts for.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Writes a consistent snapshot of the store to the new file `path` while serving
    /// (see [`KeyStore::snapshot`]): `false` when the backend is backed up with its own
    /// tools instead. A store failure is an internal error.
    pub async fn snapshot(&self, path: &std::path::Path) -> Result<bool, KmsError> {
        self.store.snapshot(path).await.map_err(store_error)
    }

    /// The store, for tests of the store itself.
    #[cfg(test)]
    pub(crate) fn store_for_tests(&self) -> Arc<dyn KeyStore> {
        Arc::clone(&self.store)
    }

    /// How much the store holds.
    pub async fn counts(&self) -> Result<StoreCounts, KmsError> {
        self.store.counts().await.map_err(store_error)
    }

    /// Whether the store can serve now (UNAVAILABLE if not): the health check's
    /// question.
    pub async fn check_store(&self) -> Result<(), KmsError> {
        self.store.check_available().await.map_err(store_error)
    }

    /// The store, for the secrets domain (which keeps its records there too).
    pub(crate) fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// The read cache, which the secrets domain shares.
    pub(crate) fn cache(&self) -> &RegistryCache {
        &self.cache
    }

    /// Now, Unix milliseconds, from the registry's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        to_unix_millis(self.clock.now())
    }

    /// The scope of this caller's tokens of the list `list` filtered by `filter`.
    pub(super) fn token_scope<'a>(&'a self, list: &'static str, filter: &'a str) -> TokenScope<'a> {
        TokenScope {
            list,
            filter,
            principal: self.access.principal_name().unwrap_or(""),
        }
    }

    /// The position a page token of `scope` names: `None` for the first page,
    /// `InvalidParameter` for a token this caller did not get from this list.
    pub(super) fn open_token(
        &self,
        scope: &TokenScope<'_>,
        token: &str,
    ) -> Result<Option<String>, KmsError> {
        self.page_tokens.open(scope, token)
    }

    /// A page token of `scope` for `position`.
    pub(super) fn seal_token(
        &self,
        scope: &TokenScope<'_>,
        position: &str,
    ) -> Result<String, KmsError> {
        self.page_tokens.seal(scope, position)
    }
}

/// A store failure the caller cannot act on: UNAVAILABLE while the store cannot be
/// reached (a retry may succeed), internal otherwise; the whole chain for the log.
pub(crate) fn store_error(err: StoreError) -> KmsError {
    match err {
        StoreError::Unavailable { .. } => KmsError::StoreUnavailable(Box::new(err)),
        err => KmsError::internal(err),
    }
}

/// `InvalidKeyState` for an operation `key`'s state does not allow.
pub(super) fn invalid_state(key: &KeyRecord) -> KmsError {
    KmsError::InvalidKeyState {
        key_id: key.key_id.clone(),
        state: key.state.as_str(),
    }
}

// === impl StoreMetrics ===

/// How much the store holds (`kmsd_store_*`), counted just before each scrape, and
/// whether this replica reached the store then: per replica, so each replica says
/// whether it reaches a shared store (PostgreSQL).
#[derive(Debug)]
pub struct StoreMetrics {
    registry: KeyRegistry,
    /// The last counts the store answered.
    counts: Mutex<StoreCounts>,
    available: AtomicBool,
}

impl StoreMetrics {
    /// The figures of `registry`'s store, to register with
    /// [`Metrics::register_refreshed`](crate::metrics::Metrics::register_refreshed).
    pub fn new(registry: KeyRegistry) -> Self {
        Self {
            registry,
            counts: Mutex::new(StoreCounts::default()),
            available: AtomicBool::new(true),
        }
    }
}

#[async_trait]
impl Refresh for StoreMetrics {
    async fn refresh(&self) {
        let counted = self.registry.counts().await;
        self.available.store(counted.is_ok(), Ordering::Relaxed);
        match counted {
            Ok(counts) => *self.counts.lock().unwrap_or_else(PoisonError::into_inner) = counts,
            Err(err) => tracing::warn!(error = %err, "metrics: cannot count the store"),
        }
    }
}

impl Collector for StoreMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = *self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        metrics::encode_gauge(
            &mut encoder,
            "store_keys",
            "Master keys in the store, in any state",
            metrics::saturating_i64(counts.keys),
        )?;
        metrics::encode_gauge(
            &mut encoder,
            "store_key_versions",
            "Master key versions in the store",
            metrics::saturating_i64(counts.versions),
        )?;
        metrics::encode_gauge(
            &mut encoder,
            "store_aliases",
            "Aliases in the store",
            metrics::saturating_i64(counts.aliases),
        )?;
        metrics::encode_gauge(
            &mut encoder,
            "store_available",
            "1 if this replica reached the key store at the last scrape, else 0",
            i64::from(self.available.load(Ordering::Relaxed)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{Fixture, create};
    use crate::store::redb::DB_FILE_NAME;

    #[tokio::test]
    async fn a_wrong_root_key_is_refused_without_writing() {
        let fixture = Fixture::new().await;
        let key_id = create(&fixture.registry).await;
        let (dir, clock) = fixture.close();
        let settings = StoreSettings::Embedded {
            data_dir: dir.path().to_owned(),
        };
        let db = dir.path().join(DB_FILE_NAME);
        let before = std::fs::read(&db).unwrap();

        let wrong = MasterKeyMaterial::generate().unwrap();
        let err = open_registry(&settings, wrong, Arc::new(clock.clone()))
            .await
            .unwrap_err();
        assert!(matches!(err, OpenError::WrongRootKey), "{err:?}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "the store was written");

        // The store opened directly refuses the wrong key too.
        {
            let store = store::open(&settings).await.unwrap();
            let wrong = MasterKeyMaterial::generate().unwrap();
            let err = KeyRegistry::open(store, wrong, Arc::new(clock.clone()))
                .await
                .unwrap_err();
            assert!(matches!(err, OpenError::WrongRootKey), "{err:?}");
        }

        // The right key still opens it, with the key in it.
        let registry = open_registry(&settings, Fixture::root_key(), Arc::new(clock))
            .await
            .unwrap();
        assert_eq!(registry.describe_key(&key_id).await.unwrap().key_id, key_id);
    }

    #[tokio::test]
    async fn the_first_open_records_the_root_key_check_once() {
        let fixture = Fixture::new().await;
        let check = fixture
            .registry
            .store
            .get_meta(root_key::CHECK_ENTRY)
            .await
            .unwrap()
            .expect("the check is recorded");
        assert!(root_key::check_matches(&check, &Fixture::root_key()));
        let (dir, clock) = fixture.close();
        let settings = StoreSettings::Embedded {
            data_dir: dir.path().to_owned(),
        };
        let registry = open_registry(&settings, Fixture::root_key(), Arc::new(clock))
            .await
            .unwrap();
        let again = registry
            .store
            .get_meta(root_key::CHECK_ENTRY)
            .await
            .unwrap();
        assert_eq!(again, Some(check));
    }

    #[tokio::test]
    async fn store_failures_keep_their_chain() {
        let err = store_error(StoreError::backend(
            "committing",
            std::io::Error::other("disk full"),
        ));
        assert!(
            matches!(err, KmsError::Internal(_)),
            "not internal: {err:?}"
        );
        let detail = err.detail();
        assert!(detail.contains("committing"), "{detail}");
        assert!(detail.contains("disk full"), "{detail}");
        let open = OpenError::from(StoreError::backend(
            "opening the database",
            std::io::Error::other("locked"),
        ));
        assert!(open.to_string().contains("locked"), "{open}");
        let err = store_error(StoreError::unavailable(
            "reading a key",
            std::io::Error::other("connection refused"),
        ));
        assert!(matches!(err, KmsError::StoreUnavailable(_)), "{err:?}");
        assert_eq!(err.status_code(), crate::error::StatusCode::Unavailable);
        assert!(
            err.detail().contains("connection refused"),
            "{}",
            err.detail()
        );
        assert!(!err.public_message().contains("refused"));
    }
}
