//! The key registry: the control plane's rules over the store.
//!
//! One [`KeyRegistry`] type, its rules spread over modules with one owner each:
//!
//! - here: opening (checking the root key), scoping, shared helpers;
//! - [`super::access`]: resolving a `KeyId` and the key-grant checks;
//! - [`super::material`]: sealing version material under the root key and opening it;
//! - [`super::lifecycle`]: create, describe, list, states, deletion, rotation, versions;
//! - [`super::aliases`]: creating, re-pointing, deleting and listing aliases;
//! - [`super::maintenance`]: automatic rotation and the end of deletion windows.
//!
//! Material is sealed under the root key before it reaches the store and opened only
//! in memory, in types that zeroize. The data plane reads keys and material through a
//! short-lived cache ([`super::cache`]); every write clears what it could make stale.

use std::sync::Arc;

use crate::auth::Access;
use crate::clock::{Clock, to_unix_millis};
use crate::crypto::sealer::{self, SealPurpose};
use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;
use crate::store::{KeyRecord, KeyStore, SealedMaterial, StoreCounts, StoreError};

use super::cache::RegistryCache;

// Defined with the pass that uses them; still reachable where they used to live.
pub use super::maintenance::{DEFAULT_MAINTENANCE_INTERVAL, MaintenanceReport};

/// The store metadata entry that proves which root key a store was made with.
const ROOT_KEY_CHECK: &str = "root_key_check";
/// What the root key check seals, and the AAD it seals it with.
const ROOT_KEY_CHECK_PLAINTEXT: &[u8] = b"kmsd root key check v1";
const ROOT_KEY_CHECK_AAD: &[u8] = b"kmsd/v1/root-key-check";
/// How often a read-modify-write is retried when another writer got there first.
pub(super) const MAX_CONFLICT_RETRIES: usize = 16;

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
}

/// The store metadata entry that [`verify_root_key`] reads.
pub const ROOT_KEY_CHECK_ENTRY: &str = ROOT_KEY_CHECK;

/// Checks a store's root key check value (`None` for a store that has none yet, which
/// passes) against `root_key`. [`OpenError::WrongRootKey`] if it does not open.
pub fn verify_root_key(
    check: Option<&[u8]>,
    root_key: &MasterKeyMaterial,
) -> Result<(), OpenError> {
    let Some(check) = check else {
        return Ok(());
    };
    let sealed: SealedMaterial =
        serde_json::from_slice(check).map_err(|_| OpenError::WrongRootKey)?;
    let opened = sealer::open(
        root_key,
        SealPurpose::KeyMaterialAtRest,
        &sealed.iv,
        ROOT_KEY_CHECK_AAD,
        &sealed.ciphertext,
    )
    .map_err(|_| OpenError::WrongRootKey)?;
    if opened.as_slice() == ROOT_KEY_CHECK_PLAINTEXT {
        Ok(())
    } else {
        Err(OpenError::WrongRootKey)
    }
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
    pub(super) clock: Arc<dyn Clock>,
    pub(super) access: Access,
    pub(super) cache: Arc<RegistryCache>,
}

impl KeyRegistry {
    /// Opens the registry over `store`. The first open records a check value sealed
    /// under `root_key`; later opens verify it and fail with
    /// [`OpenError::WrongRootKey`], writing nothing, when the key differs.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        root_key: MasterKeyMaterial,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        match store.get_meta(ROOT_KEY_CHECK).await? {
            Some(check) => verify_root_key(Some(&check), &root_key)?,
            None => {
                let sealed = sealer::seal(
                    &root_key,
                    SealPurpose::KeyMaterialAtRest,
                    ROOT_KEY_CHECK_AAD,
                    ROOT_KEY_CHECK_PLAINTEXT,
                )
                .map_err(|err| StoreError::backend("sealing the root key check", err))?;
                let record = SealedMaterial {
                    iv: sealed.iv.to_vec(),
                    ciphertext: sealed.ciphertext,
                };
                let encoded = serde_json::to_vec(&record)
                    .map_err(|err| StoreError::backend("encoding the root key check", err))?;
                store.put_meta_if_absent(ROOT_KEY_CHECK, &encoded).await?;
            }
        }
        Ok(Self {
            store,
            root_key: Arc::new(root_key),
            clock,
            access: Access::Open,
            cache: Arc::new(RegistryCache::default()),
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

    pub(super) fn now_ms(&self) -> u64 {
        to_unix_millis(self.clock.now())
    }

    /// How much the store holds.
    pub async fn counts(&self) -> Result<StoreCounts, KmsError> {
        self.store.counts().await.map_err(store_error)
    }
}

/// An unexpected store failure, with its whole chain for the log.
pub(super) fn store_error(err: StoreError) -> KmsError {
    KmsError::internal(format!("key store: {}", err.chain()))
}

/// `InvalidKeyState` for an operation `key`'s state does not allow.
pub(super) fn invalid_state(key: &KeyRecord) -> KmsError {
    KmsError::InvalidKeyState {
        key_id: key.key_id.clone(),
        state: key.state.as_str(),
    }
}
