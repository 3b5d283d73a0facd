//! Access: resolving a `KeyId` (key ID or alias) to a key, and the key-grant checks
//! every method that names a key goes through.
//!
//! A key grant must match the `KeyId` as sent, the resolved key ID, or an alias of the
//! key. A caller whose grants match none learns nothing: it gets
//! [`KmsError::PermissionDenied`] whether the key exists or not.

use crate::auth::Access;
use crate::error::KmsError;
use crate::store::{KeyRecord, KeyState};

use super::ids::KeyRef;
use super::registry::{KeyRegistry, store_error};

/// How many aliases of a key are read at a time when looking for a granted one.
const ALIAS_BATCH: usize = 256;

impl KeyRegistry {
    /// The key a `KeyId` parameter names (key ID or alias), in any state, if this
    /// registry's access allows it: a key grant must match `key_ref` as sent, the
    /// resolved key ID, or an alias of the key (so `alias/payments-*` grants the keys
    /// those aliases point at, however they are named in the call). A caller whose
    /// grants do not match what it sent learns nothing from the lookup: whether the key
    /// exists or not, it gets [`KmsError::PermissionDenied`].
    pub async fn resolve(&self, key_ref: &str) -> Result<KeyRecord, KmsError> {
        let found = self.resolve_unchecked(key_ref).await;
        self.authorize(key_ref, found).await
    }

    /// Applies this registry's access to the outcome of looking `key_ref` up (from
    /// the store or the cache alike): see [`Self::resolve`].
    async fn authorize(
        &self,
        key_ref: &str,
        found: Result<KeyRecord, KmsError>,
    ) -> Result<KeyRecord, KmsError> {
        let sent_allowed = self.access.allows_key(key_ref);
        let denied = || {
            tracing::info!(
                principal = self.access.principal_name().unwrap_or(""),
                "key not granted"
            );
            KmsError::PermissionDenied
        };
        match found {
            Ok(key) if sent_allowed || self.key_allowed(&key.key_id).await? => Ok(key),
            Err(err) if sent_allowed || matches!(err, KmsError::Internal(_)) => Err(err),
            Ok(_) | Err(_) => Err(denied()),
        }
    }

    /// Whether this registry's access grants the key `key_id`: by its ID or by one of
    /// its aliases.
    pub(super) async fn key_allowed(&self, key_id: &str) -> Result<bool, KmsError> {
        if self.access.allows_key(key_id) {
            return Ok(true);
        }
        if matches!(self.access, Access::Open) {
            return Ok(true);
        }
        let mut after: Option<String> = None;
        loop {
            let aliases = self
                .store
                .list_aliases(Some(key_id), after.as_deref(), ALIAS_BATCH)
                .await
                .map_err(store_error)?;
            if aliases
                .iter()
                .any(|a| self.access.allows_key(&a.alias_name))
            {
                return Ok(true);
            }
            match aliases.last() {
                Some(last) if aliases.len() == ALIAS_BATCH => after = Some(last.alias_name.clone()),
                _ => return Ok(false),
            }
        }
    }

    async fn resolve_unchecked(&self, key_ref: &str) -> Result<KeyRecord, KmsError> {
        let key_id = match KeyRef::parse(key_ref)? {
            KeyRef::Id(id) => id,
            KeyRef::Alias(name) => {
                self.store
                    .get_alias(&name)
                    .await
                    .map_err(store_error)?
                    .ok_or(KmsError::AliasNotFound(name))?
                    .key_id
            }
        };
        self.store
            .get_key(&key_id)
            .await
            .map_err(store_error)?
            .ok_or(KmsError::KeyNotFound(key_id))
    }

    /// The key a `KeyId` parameter names, if it may be used for crypto: Disabled and
    /// PendingDeletion keys refuse with `InvalidKeyState`.
    ///
    /// For the data plane: reads through the key cache, so a change made by another
    /// process sharing the store shows within [`super::cache::KEY_TTL`]; changes made
    /// through this registry show at once.
    pub async fn resolve_usable(&self, key_ref: &str) -> Result<KeyRecord, KmsError> {
        // The cache is shared by every principal's view of the registry, so a cached
        // key passes the same access check as one read from the store.
        let found = match self.cache.key(key_ref) {
            Ok(key) => Ok(key),
            Err(generation) => {
                let found = self.resolve_unchecked(key_ref).await;
                if let Ok(key) = &found {
                    self.cache.fill_key(key_ref, key, generation);
                }
                found
            }
        };
        let key = self.authorize(key_ref, found).await?;
        if key.state != KeyState::Enabled {
            return Err(KmsError::InvalidKeyState {
                key_id: key.key_id,
                state: key.state.as_str(),
            });
        }
        Ok(key)
    }
}
