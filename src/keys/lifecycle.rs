//! Key lifecycle: creating, describing and listing keys; the state transitions
//! (enable, disable, schedule and cancel deletion); the rotation policy; versions and
//! manual rotation. Every change is a read-modify-write at the key's revision,
//! retried when another writer got there first.

use crate::error::KmsError;
use crate::store::{KeyRecord, KeyState, StoreError};

use super::ids;
use super::model::{
    CreateKeyParams, DELETION_WINDOW_DAYS, KeyMetadata, KeyVersionInfo, MAX_DESCRIPTION_LEN, Page,
    PageRequest, RotationRequest, bad_page_token, page_token, paginate, parse_key_spec,
    parse_key_usage, parse_protection_level,
};
use super::registry::{KeyRegistry, MAX_CONFLICT_RETRIES, invalid_state, store_error};

impl KeyRegistry {
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
    pub(super) async fn rotate(
        &self,
        mut key: KeyRecord,
    ) -> Result<Option<KeyVersionInfo>, KmsError> {
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
}
