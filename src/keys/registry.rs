//! The key registry: the control plane's rules over the store.
//!
//! It owns key lifecycle (create, enable, disable, schedule and cancel deletion,
//! destroy), versions (manual and automatic rotation), aliases, and access to a
//! version's material for the data plane. Material is sealed under the root key before
//! it reaches the store and opened only in memory, in types that zeroize. The data
//! plane reads keys and material through a short-lived cache ([`super::cache`]); every
//! write here clears what it could make stale.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Access;
use crate::clock::{Clock, to_unix_millis};
use crate::crypto::sealer::{self, SealPurpose};
use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;
use crate::store::{
    AliasRecord, KeyRecord, KeyState, KeyStore, SealedMaterial, StoreCounts, StoreError,
    VersionRecord,
};

use super::cache::RegistryCache;
use super::ids::{self, KeyRef};
use super::model::{
    AliasInfo, CreateKeyParams, DELETION_WINDOW_DAYS, KeyMetadata, KeyVersionInfo,
    MAX_DESCRIPTION_LEN, Page, PageRequest, RotationRequest, next_rotation_ms, parse_key_spec,
    parse_key_usage, parse_protection_level,
};

/// The store metadata entry that proves which root key a store was made with.
const ROOT_KEY_CHECK: &str = "root_key_check";
/// What the root key check seals, and the AAD it seals it with.
const ROOT_KEY_CHECK_PLAINTEXT: &[u8] = b"kmsd root key check v1";
const ROOT_KEY_CHECK_AAD: &[u8] = b"kmsd/v1/root-key-check";
/// How often a read-modify-write is retried when another writer got there first.
const MAX_CONFLICT_RETRIES: usize = 16;

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

/// What one maintenance pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Keys automatically rotated.
    pub rotated: u64,
    /// Keys destroyed at the end of their deletion window.
    pub destroyed: u64,
}

/// The control plane. Cheap to clone.
///
/// A registry acts for one [`Access`]: [`Access::Open`] as opened, a caller's grants
/// once [`Self::scoped`]. Every method that takes a `KeyId` checks it when it resolves
/// the key, before reading or changing anything.
#[derive(Clone, Debug)]
pub struct KeyRegistry {
    store: Arc<dyn KeyStore>,
    root_key: Arc<MasterKeyMaterial>,
    clock: Arc<dyn Clock>,
    access: Access,
    cache: Arc<RegistryCache>,
}

fn store_error(err: StoreError) -> KmsError {
    KmsError::internal(format!("key store: {}", err.chain()))
}

/// The AAD that binds a version's sealed material to its key and version IDs.
fn material_aad(key_id: &str, version_id: &str) -> Vec<u8> {
    format!("kmsd/v1/key-material\0{key_id}\0{version_id}").into_bytes()
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

    fn now_ms(&self) -> u64 {
        to_unix_millis(self.clock.now())
    }

    // === keys ===

    /// Creates a key with fresh material as its initial (and primary) version.
    pub async fn create_key(&self, params: CreateKeyParams) -> Result<KeyMetadata, KmsError> {
        let key_spec = parse_key_spec(&params.key_spec)?;
        let key_usage = parse_key_usage(&params.key_usage)?;
        parse_protection_level(&params.protection_level)?;
        if params.description.len() > MAX_DESCRIPTION_LEN {
            return Err(KmsError::InvalidParameter(format!(
                "Description must be at most {MAX_DESCRIPTION_LEN} bytes."
            )));
        }
        let rotation_interval_secs = params.rotation.stored_interval_secs()?;
        let now = self.now_ms();
        let key_id = ids::new_key_id()?;
        let version = self.new_version(&key_id, now)?;
        let key = KeyRecord {
            key_id,
            key_spec: key_spec.to_owned(),
            key_usage: key_usage.to_owned(),
            state: KeyState::Enabled,
            description: params.description,
            created_at_ms: now,
            initial_version_id: version.version_id.clone(),
            primary_version_id: version.version_id.clone(),
            rotation_interval_secs,
            last_rotation_ms: now,
            delete_at_ms: None,
            revision: 0,
        };
        self.store
            .insert_key(&key, &version)
            .await
            .map_err(store_error)?;
        tracing::info!(key_id = %key.key_id, "key created");
        Ok(KeyMetadata::from(&key))
    }

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
    async fn key_allowed(&self, key_id: &str) -> Result<bool, KmsError> {
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
                .list_aliases(Some(key_id), after.as_deref(), 256)
                .await
                .map_err(store_error)?;
            if aliases
                .iter()
                .any(|a| self.access.allows_key(&a.alias_name))
            {
                return Ok(true);
            }
            match aliases.last() {
                Some(last) if aliases.len() == 256 => after = Some(last.alias_name.clone()),
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

    /// Describes a key.
    pub async fn describe_key(&self, key_ref: &str) -> Result<KeyMetadata, KmsError> {
        Ok(KeyMetadata::from(&self.resolve(key_ref).await?))
    }

    /// One page of key IDs, ordered by ID.
    pub async fn list_keys(&self, page: &PageRequest) -> Result<Page<String>, KmsError> {
        let size = page.size()?;
        let after = page_token(&page.page_token, ids::is_key_id)?;
        let keys = self
            .store
            .list_keys(after, size + 1)
            .await
            .map_err(store_error)?;
        let mut page = paginate(keys.into_iter().map(|k| k.key_id).collect(), size, |id| {
            id.clone()
        });
        // Filtered after paging, so the page token stays a plain position: a caller
        // with narrow grants may get short (even empty) pages with a next token.
        let mut visible = Vec::with_capacity(page.items.len());
        for id in std::mem::take(&mut page.items) {
            if self.key_allowed(&id).await? {
                visible.push(id);
            }
        }
        page.items = visible;
        Ok(page)
    }

    /// Enables a key. Enabling an enabled key is a no-op; a key pending deletion must
    /// have its deletion cancelled instead.
    pub async fn enable_key(&self, key_ref: &str) -> Result<KeyMetadata, KmsError> {
        self.update_key(key_ref, |key, _| match key.state {
            KeyState::Enabled => Ok(false),
            KeyState::Disabled => {
                key.state = KeyState::Enabled;
                Ok(true)
            }
            KeyState::PendingDeletion => Err(invalid_state(key)),
        })
        .await
    }

    /// Disables a key. Disabling a disabled key is a no-op.
    pub async fn disable_key(&self, key_ref: &str) -> Result<KeyMetadata, KmsError> {
        self.update_key(key_ref, |key, _| match key.state {
            KeyState::Disabled => Ok(false),
            KeyState::Enabled => {
                key.state = KeyState::Disabled;
                Ok(true)
            }
            KeyState::PendingDeletion => Err(invalid_state(key)),
        })
        .await
    }

    /// Schedules a key's destruction in `pending_window_in_days` (7 to 366) days.
    pub async fn schedule_key_deletion(
        &self,
        key_ref: &str,
        pending_window_in_days: i32,
    ) -> Result<KeyMetadata, KmsError> {
        if pending_window_in_days == 0 {
            return Err(KmsError::MissingParameter("PendingWindowInDays"));
        }
        if !DELETION_WINDOW_DAYS.contains(&pending_window_in_days) {
            return Err(KmsError::InvalidParameter(format!(
                "PendingWindowInDays must be from 7 to 366, got {pending_window_in_days}."
            )));
        }
        let window_ms = u64::from(pending_window_in_days.unsigned_abs()) * 86_400_000;
        self.update_key(key_ref, |key, now| {
            if key.state == KeyState::PendingDeletion {
                return Err(invalid_state(key));
            }
            key.state = KeyState::PendingDeletion;
            key.delete_at_ms = Some(now.saturating_add(window_ms));
            Ok(true)
        })
        .await
    }

    /// Cancels a pending deletion; the key becomes Enabled.
    pub async fn cancel_key_deletion(&self, key_ref: &str) -> Result<KeyMetadata, KmsError> {
        self.update_key(key_ref, |key, _| {
            if key.state != KeyState::PendingDeletion {
                return Err(invalid_state(key));
            }
            key.state = KeyState::Enabled;
            key.delete_at_ms = None;
            Ok(true)
        })
        .await
    }

    /// Turns automatic rotation on or off.
    pub async fn update_rotation_policy(
        &self,
        key_ref: &str,
        rotation: RotationRequest,
    ) -> Result<KeyMetadata, KmsError> {
        let interval = rotation.stored_interval_secs()?;
        self.update_key(key_ref, |key, _| {
            if key.state == KeyState::PendingDeletion {
                return Err(invalid_state(key));
            }
            key.rotation_interval_secs = interval;
            Ok(true)
        })
        .await
    }

    /// Read-modify-write of one key, retried when another writer interleaves.
    /// `change` returns whether it changed anything.
    async fn update_key(
        &self,
        key_ref: &str,
        mut change: impl FnMut(&mut KeyRecord, u64) -> Result<bool, KmsError>,
    ) -> Result<KeyMetadata, KmsError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut key = self.resolve(key_ref).await?;
            if !change(&mut key, self.now_ms())? {
                return Ok(KeyMetadata::from(&key));
            }
            key.revision += 1;
            match self.store.update_key(&key).await {
                Ok(()) => {
                    self.cache.clear_keys();
                    tracing::info!(key_id = %key.key_id, state = key.state.as_str(), "key updated");
                    return Ok(KeyMetadata::from(&key));
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(KmsError::KeyNotFound(key.key_id)),
                Err(err) => return Err(store_error(err)),
            }
        }
        Err(KmsError::internal("too many concurrent updates of one key"))
    }

    // === versions ===

    /// Fresh material for a new version of `key_id`, sealed under the root key.
    fn new_version(&self, key_id: &str, now: u64) -> Result<VersionRecord, KmsError> {
        let version_id = ids::new_version_id();
        let material = MasterKeyMaterial::generate().map_err(KmsError::internal)?;
        let sealed = sealer::seal(
            &self.root_key,
            SealPurpose::KeyMaterialAtRest,
            &material_aad(key_id, &version_id),
            material.expose_secret(),
        )
        .map_err(KmsError::internal)?;
        Ok(VersionRecord {
            key_id: key_id.to_owned(),
            version_id,
            created_at_ms: now,
            material: SealedMaterial {
                iv: sealed.iv.to_vec(),
                ciphertext: sealed.ciphertext,
            },
        })
    }

    /// Rotates a key: a new version becomes primary. Only Enabled keys rotate.
    pub async fn create_key_version(&self, key_ref: &str) -> Result<KeyVersionInfo, KmsError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let key = self.resolve(key_ref).await?;
            if key.state != KeyState::Enabled {
                return Err(invalid_state(&key));
            }
            if let Some(version) = self.rotate(key).await? {
                return Ok(version);
            }
        }
        Err(KmsError::internal("too many concurrent updates of one key"))
    }

    /// Adds a version to `key` (as read at its current revision) and makes it primary.
    /// `None` when another writer changed the key first: re-read and decide again.
    async fn rotate(&self, mut key: KeyRecord) -> Result<Option<KeyVersionInfo>, KmsError> {
        let now = self.now_ms();
        let version = self.new_version(&key.key_id, now)?;
        key.primary_version_id = version.version_id.clone();
        key.last_rotation_ms = now;
        key.revision += 1;
        match self.store.add_version(&key, &version).await {
            Ok(()) => {
                self.cache.clear_keys();
                tracing::info!(key_id = %key.key_id, key_version_id = %version.version_id, "key rotated");
                Ok(Some(KeyVersionInfo::from(&version)))
            }
            Err(StoreError::Conflict) => Ok(None),
            Err(StoreError::NotFound) => Err(KmsError::KeyNotFound(key.key_id)),
            Err(err) => Err(store_error(err)),
        }
    }

    /// One page of a key's versions, oldest first.
    pub async fn list_key_versions(
        &self,
        key_ref: &str,
        page: &PageRequest,
    ) -> Result<Page<KeyVersionInfo>, KmsError> {
        let size = page.size()?;
        let key = self.resolve(key_ref).await?;
        let versions = self
            .store
            .list_versions(&key.key_id)
            .await
            .map_err(store_error)?;
        // Versions are few (one per rotation): page over the ordered list in memory,
        // the token being the last version ID of the previous page.
        let start = if page.page_token.is_empty() {
            0
        } else {
            ids::validate_version_id(&page.page_token).map_err(|_| bad_page_token())?;
            versions
                .iter()
                .position(|v| v.version_id == page.page_token)
                .map(|i| i + 1)
                .ok_or_else(bad_page_token)?
        };
        let rest: Vec<KeyVersionInfo> = versions
            .iter()
            .skip(start)
            .take(size + 1)
            .map(KeyVersionInfo::from)
            .collect();
        Ok(paginate(rest, size, |v| v.key_version_id.clone()))
    }

    /// Describes one version of a key.
    pub async fn describe_key_version(
        &self,
        key_ref: &str,
        version_id: &str,
    ) -> Result<KeyVersionInfo, KmsError> {
        ids::validate_version_id(version_id)?;
        let key = self.resolve(key_ref).await?;
        let version = self
            .store
            .get_version(&key.key_id, version_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| KmsError::KeyVersionNotFound(format!("{}/{version_id}", key.key_id)))?;
        Ok(KeyVersionInfo::from(&version))
    }

    /// The material of one version, opened in memory. `None` if the version does not
    /// exist. A version whose material does not open under the root key is an
    /// internal error (corruption or tampering of the store). Served from the material
    /// cache once opened (a version's material never changes); call it only for a key
    /// just resolved as usable.
    pub async fn version_material(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> Result<Option<MasterKeyMaterial>, KmsError> {
        if let Some(cached) = self.cache.material(key_id, version_id) {
            return Ok(Some(cached.clone_secret()));
        }
        let Some(version) = self
            .store
            .get_version(key_id, version_id)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let opened = sealer::open(
            &self.root_key,
            SealPurpose::KeyMaterialAtRest,
            &version.material.iv,
            &material_aad(key_id, version_id),
            &version.material.ciphertext,
        )
        .map_err(|_| {
            KmsError::internal(format!(
                "the material of {key_id}/{version_id} does not open under the root key"
            ))
        })?;
        let material = MasterKeyMaterial::from_bytes(&opened).map_err(KmsError::internal)?;
        self.cache
            .fill_material(key_id, version_id, Arc::new(material.clone_secret()));
        Ok(Some(material))
    }

    /// The ID of the key that owns a version, found by the version ID alone.
    pub async fn version_owner(&self, version_id: &str) -> Result<Option<String>, KmsError> {
        Ok(self
            .store
            .find_version(version_id)
            .await
            .map_err(store_error)?
            .map(|version| version.key_id))
    }

    // === aliases ===

    /// Creates an alias for the key `key_ref` names.
    pub async fn create_alias(
        &self,
        key_ref: &str,
        alias_name: &str,
    ) -> Result<AliasInfo, KmsError> {
        ids::validate_alias_name(alias_name)?;
        self.access.check_key(alias_name)?;
        let key = self.resolve(key_ref).await?;
        let now = self.now_ms();
        let alias = AliasRecord {
            alias_name: alias_name.to_owned(),
            key_id: key.key_id,
            created_at_ms: now,
            updated_at_ms: now,
        };
        match self.store.insert_alias(&alias).await {
            Ok(()) => {
                self.cache.clear_keys();
                Ok(AliasInfo::from(&alias))
            }
            Err(StoreError::AlreadyExists) => Err(KmsError::AliasExists(alias.alias_name)),
            Err(StoreError::NotFound) => Err(KmsError::KeyNotFound(alias.key_id)),
            Err(err) => Err(store_error(err)),
        }
    }

    /// Points an existing alias at the key `key_ref` names.
    pub async fn update_alias(
        &self,
        key_ref: &str,
        alias_name: &str,
    ) -> Result<AliasInfo, KmsError> {
        ids::validate_alias_name(alias_name)?;
        self.access.check_key(alias_name)?;
        let key = self.resolve(key_ref).await?;
        let existing = self
            .store
            .get_alias(alias_name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| KmsError::AliasNotFound(alias_name.to_owned()))?;
        let alias = AliasRecord {
            key_id: key.key_id,
            updated_at_ms: self.now_ms(),
            ..existing
        };
        match self.store.update_alias(&alias).await {
            Ok(()) => {
                self.cache.clear_keys();
                Ok(AliasInfo::from(&alias))
            }
            Err(StoreError::NotFound) => match self.store.get_alias(alias_name).await {
                Ok(None) => Err(KmsError::AliasNotFound(alias.alias_name)),
                _ => Err(KmsError::KeyNotFound(alias.key_id)),
            },
            Err(err) => Err(store_error(err)),
        }
    }

    /// Deletes an alias; the key is untouched.
    pub async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        ids::validate_alias_name(alias_name)?;
        self.access.check_key(alias_name)?;
        if self
            .store
            .delete_alias(alias_name)
            .await
            .map_err(store_error)?
        {
            self.cache.clear_keys();
            Ok(())
        } else {
            Err(KmsError::AliasNotFound(alias_name.to_owned()))
        }
    }

    /// One page of aliases ordered by name, optionally only those of one key.
    pub async fn list_aliases(
        &self,
        key_ref: &str,
        page: &PageRequest,
    ) -> Result<Page<AliasInfo>, KmsError> {
        let size = page.size()?;
        let after = page_token(&page.page_token, |t| ids::validate_alias_name(t).is_ok())?;
        let key_id = if key_ref.is_empty() {
            None
        } else {
            Some(self.resolve(key_ref).await?.key_id)
        };
        let aliases = self
            .store
            .list_aliases(key_id.as_deref(), after, size + 1)
            .await
            .map_err(store_error)?;
        let infos = aliases.iter().map(AliasInfo::from).collect();
        let mut page = paginate(infos, size, |a: &AliasInfo| a.alias_name.clone());
        // As in list_keys: filtered after paging.
        page.items.retain(|alias| {
            self.access
                .allows_resolved_key(&alias.alias_name, &alias.key_id)
        });
        Ok(page)
    }

    // === maintenance ===

    /// Rotates every enabled key whose rotation is due (once, however overdue: a key
    /// that fell due while the server was down rotates once on the next pass) and
    /// destroys every key whose deletion window has ended.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, KmsError> {
        let mut report = MaintenanceReport::default();
        let mut after: Option<String> = None;
        loop {
            let keys = self
                .store
                .list_keys(after.as_deref(), 256)
                .await
                .map_err(store_error)?;
            let Some(last) = keys.last() else { break };
            after = Some(last.key_id.clone());
            for key in keys {
                let now = self.now_ms();
                match (key.state, key.rotation_interval_secs, key.delete_at_ms) {
                    (KeyState::PendingDeletion, _, Some(delete_at)) if delete_at <= now => {
                        // Only the revision we saw: a deletion cancelled meanwhile wins.
                        match self.store.destroy_key(&key.key_id, key.revision).await {
                            Ok(true) => {
                                self.cache.clear_keys();
                                self.cache.forget_material(&key.key_id);
                                tracing::info!(key_id = %key.key_id, "key destroyed: deletion window ended");
                                report.destroyed += 1;
                            }
                            Ok(false) | Err(StoreError::Conflict) => {}
                            Err(err) => return Err(store_error(err)),
                        }
                    }
                    (KeyState::Enabled, Some(interval), _)
                        if next_rotation_ms(key.last_rotation_ms, interval) <= now =>
                    {
                        match self.rotate(key).await {
                            Ok(Some(_)) => report.rotated += 1,
                            // Changed or destroyed under us: the next pass decides.
                            Ok(None) | Err(KmsError::KeyNotFound(_)) => {}
                            Err(err) => return Err(err),
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(report)
    }

    /// How much the store holds.
    pub async fn counts(&self) -> Result<StoreCounts, KmsError> {
        self.store.counts().await.map_err(store_error)
    }
}

fn invalid_state(key: &KeyRecord) -> KmsError {
    KmsError::InvalidKeyState {
        key_id: key.key_id.clone(),
        state: key.state.as_str(),
    }
}

fn bad_page_token() -> KmsError {
    KmsError::InvalidParameter("PageToken is not a token this list returned.".into())
}

/// The name to list after, from a page token that must look like a name of the list.
fn page_token(token: &str, valid: impl Fn(&str) -> bool) -> Result<Option<&str>, KmsError> {
    match token {
        "" => Ok(None),
        token if valid(token) => Ok(Some(token)),
        _ => Err(bad_page_token()),
    }
}

/// Cuts `items` (fetched with one extra) to `size`, with a next-page token when the
/// extra one shows there is more.
fn paginate<T>(mut items: Vec<T>, size: usize, token_of: impl Fn(&T) -> String) -> Page<T> {
    let has_more = items.len() > size;
    items.truncate(size);
    let next_page_token = if has_more {
        items.last().map(token_of)
    } else {
        None
    };
    Page {
        items,
        next_page_token,
    }
}

/// Used by the rotation scheduler to space its passes.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
