//! Secrets: named, versioned values sealed under a master key, read with
//! GetSecretValue (the official instance SDK's 15th operation) and managed with the
//! public API's secret operations (reference section 7).
//!
//! - [`model`]: the rules, pure: names, stages and their moves, the version cap.
//! - [`envelope`]: each version's data under a fresh data key, sealed under a version
//!   of the secret's master key, bound to the secret name and version ID.
//!
//! [`Secrets`] acts for one caller: a secret is touched only if one of the caller's
//! secret grants (`secrets = [...]` in the auth file) matches its name, whether or not
//! it exists. Using a secret needs no grant on its master key (kmsd opens it on the
//! secret's behalf); creating one under a named key needs a grant on that key. A
//! secret is one store record, changed by read-modify-write with a revision check, so
//! concurrent writers (and replicas) never lose each other's versions. GetSecretValue
//! reads through the registry's cache (`keys::cache`: one second at most, and every
//! write, here or announced by another replica, forgets the secret at once).

pub mod envelope;
pub mod model;

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::auth::Access;
use crate::error::KmsError;
use crate::keys::KeyRegistry;
use crate::keys::idempotency::Once;
use crate::keys::model::{CreateKeyParams, KeySpec};
use crate::keys::registry::{MAX_CONFLICT_RETRIES, conflict_backoff, store_error};
use crate::keys::seed::SeedSecret;
use crate::store::{Creation, KeyRecord, SecretRecord, SecretVersionRecord, StoreError};
use model::{DataType, STAGE_CURRENT};

/// The alias of the master key kmsd creates for secrets created without an
/// `EncryptionKeyId`.
pub const DEFAULT_KEY_ALIAS: &str = "alias/kmsd/secrets";

/// The largest page of ListSecrets and ListSecretVersionIds.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 10;

/// Secrets read per store call while listing.
const LIST_BATCH: usize = 256;

/// CreateSecret's parameters, as sent. `Debug` leaves out the data.
#[derive(Clone, Copy, Default)]
pub struct CreateSecretParams<'a> {
    /// The new secret's name.
    pub secret_name: &'a str,
    /// Its first value: text, or base64 for binary.
    pub secret_data: &'a str,
    /// `text` (default) or `binary`.
    pub secret_data_type: &'a str,
    /// The first version's ID; generated when empty.
    pub version_id: &'a str,
    /// A key ID or alias of an ENCRYPT/DECRYPT key; [`DEFAULT_KEY_ALIAS`] when empty.
    pub encryption_key_id: &'a str,
    /// Free text.
    pub description: &'a str,
    /// `Generic` (default).
    pub secret_type: &'a str,
    /// A JSON object, or empty.
    pub extended_config: &'a str,
    /// Whether automatic rotation is on.
    pub enable_automatic_rotation: bool,
    /// E.g. `604800s`; needed when rotation is on.
    pub rotation_interval: &'a str,
}

impl std::fmt::Debug for CreateSecretParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSecretParams")
            .field("secret_name", &self.secret_name)
            .field("secret_data", &"[REDACTED]")
            .field("version_id", &self.version_id)
            .field("encryption_key_id", &self.encryption_key_id)
            .finish_non_exhaustive()
    }
}

/// PutSecretValue's parameters, as sent. `Debug` leaves out the data.
#[derive(Clone, Copy, Default)]
pub struct PutValueParams<'a> {
    /// The secret.
    pub secret_name: &'a str,
    /// The new version's ID (required, as in the public API).
    pub version_id: &'a str,
    /// The value: text, or base64 for binary.
    pub secret_data: &'a str,
    /// `text` (default) or `binary`.
    pub secret_data_type: &'a str,
    /// A JSON list of stages; `["ACSCurrent"]` when empty.
    pub version_stages: &'a str,
}

impl std::fmt::Debug for PutValueParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutValueParams")
            .field("secret_name", &self.secret_name)
            .field("version_id", &self.version_id)
            .field("secret_data", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// One version's value as GetSecretValue answers it. `Debug` leaves out the data.
pub struct SecretValue {
    /// The secret, as stored (its versions' data sealed).
    pub secret: Arc<SecretRecord>,
    /// The version read.
    pub version_id: String,
    /// Its stages.
    pub version_stages: Vec<String>,
    /// Its creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// How the data is given back.
    pub data_type: DataType,
    /// The data: text, or base64 for binary.
    pub data: Zeroizing<String>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("secret_name", &self.secret.secret_name)
            .field("version_id", &self.version_id)
            .field("data", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A page of a list: its items and how many there are in all.
#[derive(Debug)]
pub struct Paged<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// Items on every page together.
    pub total_count: usize,
    /// The page number answered (from 1).
    pub page_number: u32,
    /// The page size answered.
    pub page_size: u32,
}

/// When automatic rotation of `secret` is next due, Unix milliseconds.
pub fn next_rotation_ms(secret: &SecretRecord) -> Option<u64> {
    let interval = secret.rotation_interval_secs?;
    secret.automatic_rotation.then(|| {
        secret
            .last_rotation_ms
            .saturating_add(interval.saturating_mul(1000))
    })
}

/// The secrets handle, acting for one caller; see the module docs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// The registry with open access: master keys are opened on a secret's behalf.
    registry: KeyRegistry,
    /// The caller's grants.
    access: Access,
}

impl Secrets {
    /// Secrets over `registry` (its store, cache and master keys), for `access`.
    pub fn new(registry: KeyRegistry, access: Access) -> Self {
        Self {
            registry: registry.scoped(Access::Open),
            access,
        }
    }

    /// CreateSecret: a new secret with its first version, current.
    ///
    /// # Errors
    /// Parameter errors; `PermissionDenied` without a grant on the name (or on a named
    /// key); `SecretExists`; the key's errors (not found, not usable, not AES).
    pub async fn create(&self, params: CreateSecretParams<'_>) -> Result<SecretRecord, KmsError> {
        Ok(self.create_once(params, None).await?.0)
    }

    /// [`Self::create`] with an idempotency token: a token seen before answers the
    /// secret its first call made (as it is now), and the secret and the token's record
    /// are stored together. Returns the secret and the ID of the version the call made.
    ///
    /// # Errors
    /// As [`Self::create`]; `InvalidParameter` for a token used with other parameters.
    pub async fn create_once(
        &self,
        params: CreateSecretParams<'_>,
        once: Option<&Once>,
    ) -> Result<(SecretRecord, String), KmsError> {
        if let Some(version_id) = self.registry.replayed(once).await? {
            return self.created(params.secret_name, version_id).await;
        }
        model::check_name(params.secret_name)?;
        let data_type = DataType::parse(params.secret_data_type)?;
        let data = data_type.decode(params.secret_data)?;
        model::check_type(params.secret_type)?;
        model::check_description(params.description)?;
        let version_id = match params.version_id {
            "" => crate::keys::ids::new_version_id(),
            given => {
                model::check_label("VersionId", given)?;
                given.to_owned()
            }
        };
        let extended_config = match params.extended_config {
            "" => None,
            config => {
                model::check_extended_config(config)?;
                Some(config.to_owned())
            }
        };
        let interval = model::parse_rotation_interval(params.rotation_interval)?;
        if params.enable_automatic_rotation && interval.is_none() {
            return Err(KmsError::MissingParameter("RotationInterval"));
        }
        self.access.check_secret(params.secret_name)?;
        let key = match params.encryption_key_id {
            "" => self.default_key().await?,
            named => {
                self.registry
                    .scoped(self.access.clone())
                    .resolve_usable(named)
                    .await?
            }
        };
        require_encryption_key(&key)?;
        let now = self.registry.now_ms();
        let version = self
            .seal_version(&key, params.secret_name, &version_id, data_type, &data, now)
            .await?;
        let mut record = SecretRecord {
            secret_name: params.secret_name.to_owned(),
            secret_type: model::TYPE_GENERIC.to_owned(),
            description: params.description.to_owned(),
            encryption_key_id: key.key_id,
            extended_config,
            automatic_rotation: params.enable_automatic_rotation,
            rotation_interval_secs: interval.map(|i| i.as_secs()),
            last_rotation_ms: now,
            created_at_ms: now,
            updated_at_ms: now,
            delete_at_ms: None,
            versions: vec![version],
            revision: 0,
        };
        model::give_stage(&mut record.versions, 0, STAGE_CURRENT);
        let creation = Creation::Secret(record.clone());
        match self
            .registry
            .store_creation(once, &version_id, creation)
            .await
        {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                return Err(KmsError::SecretExists(record.secret_name));
            }
            Err(StoreError::TokenTaken) => {
                let first = self.registry.replayed_after_race(once).await?;
                return self.created(params.secret_name, first).await;
            }
            Err(err) => return Err(store_error(err)),
        }
        self.registry.cache().forget_secret(&record.secret_name);
        Ok((record, version_id))
    }

    /// The secret the first `CreateSecret` of a token made, as it is now, and the
    /// version that call made.
    async fn created(
        &self,
        secret_name: &str,
        version_id: String,
    ) -> Result<(SecretRecord, String), KmsError> {
        self.access.check_secret(secret_name)?;
        let secret = self
            .registry
            .store()
            .get_secret(secret_name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| KmsError::SecretNotFound(secret_name.to_owned()))?;
        Ok((secret, version_id))
    }

    /// PutSecretValue: a new version with the stages asked for (`ACSCurrent` by
    /// default, which moves the old current version to `ACSPrevious`); unstaged
    /// versions past [`model::MAX_UNSTAGED_VERSIONS`] go, oldest first. Returns the
    /// new version.
    ///
    /// # Errors
    /// Parameter errors; `SecretNotFound`; `SecretExists` for a version ID the secret
    /// has; `SecretPendingDeletion`.
    pub async fn put_value(
        &self,
        params: PutValueParams<'_>,
    ) -> Result<SecretVersionRecord, KmsError> {
        model::check_name(params.secret_name)?;
        if params.version_id.is_empty() {
            return Err(KmsError::MissingParameter("VersionId"));
        }
        model::check_label("VersionId", params.version_id)?;
        let data_type = DataType::parse(params.secret_data_type)?;
        let data = data_type.decode(params.secret_data)?;
        let stages = model::parse_stages(params.version_stages)?;
        self.access.check_secret(params.secret_name)?;
        let secret = self.read(params.secret_name).await?;
        require_active(&secret)?;
        let key = self
            .registry
            .resolve_usable(&secret.encryption_key_id)
            .await?;
        let now = self.registry.now_ms();
        let version = self
            .seal_version(
                &key,
                params.secret_name,
                params.version_id,
                data_type,
                &data,
                now,
            )
            .await?;
        self.modify(params.secret_name, |secret, now| {
            require_active(secret)?;
            if secret
                .versions
                .iter()
                .any(|v| v.version_id == version.version_id)
            {
                return Err(KmsError::SecretExists(format!(
                    "{} version {}",
                    secret.secret_name, version.version_id
                )));
            }
            secret.versions.push(version.clone());
            let index = secret.versions.len() - 1;
            for stage in &stages {
                model::give_stage(&mut secret.versions, index, stage);
            }
            if stages.iter().any(|s| s == STAGE_CURRENT) {
                secret.last_rotation_ms = now;
            }
            // Taken before the cap, which shifts the indices of the versions after it.
            let added = secret.versions[index].clone();
            model::drop_excess_unstaged(&mut secret.versions);
            Ok(added)
        })
        .await
    }

    /// GetSecretValue: the version `version_id` names, or the one with `stage`
    /// (`ACSCurrent` when neither is given), opened.
    ///
    /// # Errors
    /// Parameter errors; `PermissionDenied` without a grant on the name;
    /// `SecretNotFound`, `SecretVersionNotFound`; `SecretPendingDeletion`; the master
    /// key's state (a disabled key refuses).
    pub async fn get_value(
        &self,
        secret_name: &str,
        stage: &str,
        version_id: &str,
    ) -> Result<SecretValue, KmsError> {
        model::check_name(secret_name)?;
        self.access.check_secret(secret_name)?;
        let secret = self.read_cached(secret_name).await?;
        require_active(&secret)?;
        let version = model::pick_version(&secret.versions, stage, version_id)?;
        let key = self
            .registry
            .resolve_usable(&secret.encryption_key_id)
            .await?;
        let material = self
            .registry
            .version_material(&key.key_id, &version.sealed.key_version_id)
            .await?
            .ok_or_else(|| KmsError::internal("a secret names a missing master key version"))?;
        let data = envelope::open(&material, secret_name, &version.version_id, &version.sealed)
            .map_err(|_| KmsError::internal("a secret version does not open"))?;
        let data_type = DataType::parse(&version.data_type)?;
        let data = data_type.encode(&data)?;
        Ok(SecretValue {
            version_id: version.version_id.clone(),
            version_stages: version.stages.clone(),
            created_at_ms: version.created_at_ms,
            data_type,
            data,
            secret,
        })
    }

    /// DescribeSecret: the secret's record, read from the store (its data sealed).
    ///
    /// # Errors
    /// `PermissionDenied`, `SecretNotFound`.
    pub async fn describe(&self, secret_name: &str) -> Result<SecretRecord, KmsError> {
        model::check_name(secret_name)?;
        self.access.check_secret(secret_name)?;
        self.read(secret_name).await
    }

    /// ListSecrets: the secrets the caller is granted whose names start with one of
    /// `prefixes` (all of them when empty), in name order, page `page_number` (from 1)
    /// of `page_size`.
    ///
    /// # Errors
    /// `InvalidParameter` for a page out of range; store failures.
    pub async fn list(
        &self,
        prefixes: &[String],
        page_number: u32,
        page_size: u32,
    ) -> Result<Paged<SecretRecord>, KmsError> {
        let (page_number, page_size) = page(page_number, page_size)?;
        let mut visible = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = self
                .registry
                .store()
                .list_secrets(after.as_deref(), LIST_BATCH)
                .await
                .map_err(store_error)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.secret_name.clone());
            visible.extend(batch.into_iter().filter(|s| {
                self.access.allows_secret(&s.secret_name)
                    && (prefixes.is_empty()
                        || prefixes.iter().any(|p| s.secret_name.starts_with(p)))
            }));
        }
        Ok(paged(visible, page_number, page_size))
    }

    /// ListSecretVersionIds: the secret's versions, oldest first; only staged ones
    /// unless `include_deprecated`.
    ///
    /// # Errors
    /// `PermissionDenied`, `SecretNotFound`, a page out of range.
    pub async fn list_versions(
        &self,
        secret_name: &str,
        include_deprecated: bool,
        page_number: u32,
        page_size: u32,
    ) -> Result<Paged<SecretVersionRecord>, KmsError> {
        let (page_number, page_size) = page(page_number, page_size)?;
        let secret = self.describe(secret_name).await?;
        let versions = secret
            .versions
            .into_iter()
            .filter(|v| include_deprecated || !v.stages.is_empty())
            .collect();
        Ok(paged(versions, page_number, page_size))
    }

    /// UpdateSecret: sets the description and/or ExtendedConfig (each when given).
    ///
    /// # Errors
    /// Parameter errors, `PermissionDenied`, `SecretNotFound`, `SecretPendingDeletion`.
    pub async fn update(
        &self,
        secret_name: &str,
        description: Option<&str>,
        extended_config: Option<&str>,
    ) -> Result<SecretRecord, KmsError> {
        model::check_name(secret_name)?;
        if let Some(description) = description {
            model::check_description(description)?;
        }
        if let Some(config) = extended_config {
            model::check_extended_config(config)?;
        }
        self.access.check_secret(secret_name)?;
        self.modify(secret_name, |secret, _| {
            require_active(secret)?;
            if let Some(description) = description {
                secret.description = description.to_owned();
            }
            if let Some(config) = extended_config {
                secret.extended_config = Some(config.to_owned());
            }
            Ok(secret.clone())
        })
        .await
    }

    /// UpdateSecretVersionStage: moves `stage` (see [`model::move_stage`]).
    ///
    /// # Errors
    /// Parameter errors, `PermissionDenied`, `SecretNotFound`,
    /// `SecretVersionNotFound`, `SecretPendingDeletion`.
    pub async fn move_stage(
        &self,
        secret_name: &str,
        stage: &str,
        remove_from: &str,
        move_to: &str,
    ) -> Result<(), KmsError> {
        model::check_name(secret_name)?;
        if stage.is_empty() {
            return Err(KmsError::MissingParameter("VersionStage"));
        }
        model::check_movable_stage(stage)?;
        self.access.check_secret(secret_name)?;
        self.modify(secret_name, |secret, now| {
            require_active(secret)?;
            model::move_stage(&mut secret.versions, stage, remove_from, move_to)?;
            if stage == STAGE_CURRENT {
                secret.last_rotation_ms = now;
            }
            model::drop_excess_unstaged(&mut secret.versions);
            Ok(())
        })
        .await
    }

    /// UpdateSecretRotationPolicy: records whether rotation is on and its interval
    /// (kmsd cannot invent a Generic secret's next value; it reports the due date).
    ///
    /// # Errors
    /// Parameter errors (turning rotation on needs an interval, given now or before),
    /// `PermissionDenied`, `SecretNotFound`, `SecretPendingDeletion`.
    pub async fn update_rotation(
        &self,
        secret_name: &str,
        enable: bool,
        rotation_interval: &str,
    ) -> Result<SecretRecord, KmsError> {
        model::check_name(secret_name)?;
        let interval = model::parse_rotation_interval(rotation_interval)?;
        self.access.check_secret(secret_name)?;
        self.modify(secret_name, |secret, _| {
            require_active(secret)?;
            if let Some(interval) = interval {
                secret.rotation_interval_secs = Some(interval.as_secs());
            }
            if enable && secret.rotation_interval_secs.is_none() {
                return Err(KmsError::MissingParameter("RotationInterval"));
            }
            secret.automatic_rotation = enable;
            Ok(secret.clone())
        })
        .await
    }

    /// DeleteSecret: schedules the deletion `recovery_window_days` (7 to 30; 30 when 0)
    /// from now, or removes the secret with every version at once when `force`.
    /// Returns when it is (or was) deleted, Unix milliseconds.
    ///
    /// # Errors
    /// Parameter errors, `PermissionDenied`, `SecretNotFound`, `SecretPendingDeletion`
    /// for a scheduled deletion of a secret already scheduled.
    pub async fn delete(
        &self,
        secret_name: &str,
        recovery_window_days: u32,
        force: bool,
    ) -> Result<u64, KmsError> {
        model::check_name(secret_name)?;
        let days = match recovery_window_days {
            0 => model::DEFAULT_RECOVERY_WINDOW_DAYS,
            days if model::RECOVERY_WINDOW_DAYS.contains(&days) => days,
            days => {
                return Err(KmsError::InvalidParameter(format!(
                    "RecoveryWindowInDays must be 7 to 30, got {days}."
                )));
            }
        };
        self.access.check_secret(secret_name)?;
        if !force {
            return self
                .modify(secret_name, |secret, now| {
                    require_active(secret)?;
                    let at = now.saturating_add(u64::from(days) * 86_400_000);
                    secret.delete_at_ms = Some(at);
                    Ok(at)
                })
                .await;
        }
        for attempt in 0..MAX_CONFLICT_RETRIES {
            conflict_backoff(attempt).await;
            let secret = self.read(secret_name).await?;
            let store = self.registry.store();
            match store.delete_secret(secret_name, secret.revision).await {
                Ok(true) => {
                    self.registry.cache().forget_secret(secret_name);
                    return Ok(self.registry.now_ms());
                }
                Ok(false) => return Err(KmsError::SecretNotFound(secret_name.to_owned())),
                Err(StoreError::Conflict) => continue,
                Err(err) => return Err(store_error(err)),
            }
        }
        Err(KmsError::Contended(format!("the secret {secret_name}")))
    }

    /// RestoreSecret: cancels a scheduled deletion.
    ///
    /// # Errors
    /// `PermissionDenied`, `SecretNotFound`, `InvalidParameter` for a secret not
    /// scheduled for deletion.
    pub async fn restore(&self, secret_name: &str) -> Result<(), KmsError> {
        model::check_name(secret_name)?;
        self.access.check_secret(secret_name)?;
        self.modify(secret_name, |secret, _| {
            if secret.delete_at_ms.take().is_none() {
                return Err(KmsError::InvalidParameter(format!(
                    "The secret {secret_name} is not scheduled for deletion."
                )));
            }
            Ok(())
        })
        .await
    }

    // === helpers ===

    /// The secret, from the store.
    async fn read(&self, secret_name: &str) -> Result<SecretRecord, KmsError> {
        self.registry
            .store()
            .get_secret(secret_name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| KmsError::SecretNotFound(secret_name.to_owned()))
    }

    /// The secret, through the cache (GetSecretValue's path).
    async fn read_cached(&self, secret_name: &str) -> Result<Arc<SecretRecord>, KmsError> {
        let cache = self.registry.cache();
        match cache.secret(secret_name) {
            Ok(secret) => Ok(secret),
            Err(generation) => {
                let secret = Arc::new(self.read(secret_name).await?);
                cache.fill_secret(Arc::clone(&secret), generation);
                Ok(secret)
            }
        }
    }

    /// Applies `change` to the stored secret (given the time) and writes it at the next
    /// revision; re-reads and re-applies when another writer got there first.
    async fn modify<T>(
        &self,
        secret_name: &str,
        mut change: impl FnMut(&mut SecretRecord, u64) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        for attempt in 0..MAX_CONFLICT_RETRIES {
            conflict_backoff(attempt).await;
            let mut secret = self.read(secret_name).await?;
            let now = self.registry.now_ms();
            let out = change(&mut secret, now)?;
            secret.revision += 1;
            secret.updated_at_ms = now;
            match self.registry.store().update_secret(&secret).await {
                Ok(()) => {
                    self.registry.cache().forget_secret(secret_name);
                    return Ok(out);
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => {
                    return Err(KmsError::SecretNotFound(secret_name.to_owned()));
                }
                Err(err) => return Err(store_error(err)),
            }
        }
        Err(KmsError::Contended(format!("the secret {secret_name}")))
    }

    /// A version of `secret_name` holding `data`, sealed under `key`'s primary version.
    async fn seal_version(
        &self,
        key: &KeyRecord,
        secret_name: &str,
        version_id: &str,
        data_type: DataType,
        data: &[u8],
        now: u64,
    ) -> Result<SecretVersionRecord, KmsError> {
        let material = self
            .registry
            .version_material(&key.key_id, &key.primary_version_id)
            .await?
            .ok_or_else(|| KmsError::internal("a key names a missing primary version"))?;
        let sealed = envelope::seal(
            &material,
            &key.primary_version_id,
            secret_name,
            version_id,
            data,
        )
        .map_err(KmsError::internal)?;
        Ok(SecretVersionRecord {
            version_id: version_id.to_owned(),
            created_at_ms: now,
            data_type: data_type.as_str().to_owned(),
            stages: Vec::new(),
            sealed,
        })
    }

    /// The master key of secrets created without one: [`DEFAULT_KEY_ALIAS`], created
    /// (an AES key and the alias) the first time it is needed.
    async fn default_key(&self) -> Result<KeyRecord, KmsError> {
        match self.registry.resolve_usable(DEFAULT_KEY_ALIAS).await {
            Err(KmsError::AliasNotFound(_)) => {}
            found => return found,
        }
        let created = self
            .registry
            .create_key(CreateKeyParams {
                description: "The default master key of secrets (created by kmsd).".into(),
                ..CreateKeyParams::default()
            })
            .await?;
        match self
            .registry
            .create_alias(&created.key_id, DEFAULT_KEY_ALIAS)
            .await
        {
            // Another call created it meanwhile: use theirs (the key made here stays
            // unused).
            Ok(_) | Err(KmsError::AliasExists(_)) => {}
            Err(err) => return Err(err),
        }
        self.registry.resolve_usable(DEFAULT_KEY_ALIAS).await
    }
}

/// Creates the secrets of a seed file that the store lacks (one that exists is left
/// as it is, whatever its value); returns how many were created.
///
/// # Errors
/// The first secret that cannot be created (a bad name or value, a missing key).
pub async fn apply_seed(registry: &KeyRegistry, seeded: &[SeedSecret]) -> Result<usize, KmsError> {
    use base64::Engine;
    let secrets = Secrets::new(registry.clone(), Access::Open);
    let mut created = 0;
    for seed in seeded {
        let (data, data_type) = if seed.binary {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&seed.data);
            (Zeroizing::new(encoded), "binary")
        } else {
            let text = std::str::from_utf8(&seed.data).map_err(|_| {
                KmsError::InvalidParameter(format!(
                    "the seed value of {} is not UTF-8 text: set binary = true",
                    seed.name
                ))
            })?;
            (Zeroizing::new(text.to_owned()), "text")
        };
        let result = secrets
            .create(CreateSecretParams {
                secret_name: &seed.name,
                secret_data: &data,
                secret_data_type: data_type,
                version_id: &seed.version_id,
                encryption_key_id: &seed.key,
                description: &seed.description,
                ..CreateSecretParams::default()
            })
            .await;
        match result {
            Ok(_) => {
                tracing::info!(secret_name = %seed.name, "seed: secret created");
                created += 1;
            }
            Err(KmsError::SecretExists(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(created)
}

/// `Rejected.UnsupportedOperation` unless `key` is an AES (ENCRYPT/DECRYPT) key.
fn require_encryption_key(key: &KeyRecord) -> Result<(), KmsError> {
    if KeySpec::of(key)? == KeySpec::Aes256 {
        return Ok(());
    }
    Err(KmsError::UnsupportedOperation(format!(
        "The key {} cannot encrypt secrets: EncryptionKeyId must name an ENCRYPT/DECRYPT \
         (Aliyun_AES_256) key.",
        key.key_id
    )))
}

/// `SecretPendingDeletion` for a secret scheduled for deletion.
fn require_active(secret: &SecretRecord) -> Result<(), KmsError> {
    match secret.delete_at_ms {
        Some(_) => Err(KmsError::SecretPendingDeletion(secret.secret_name.clone())),
        None => Ok(()),
    }
}

/// The page asked for, with defaults: number from 1, size 1 to [`MAX_PAGE_SIZE`].
fn page(number: u32, size: u32) -> Result<(u32, u32), KmsError> {
    let number = number.max(1);
    let size = if size == 0 { DEFAULT_PAGE_SIZE } else { size };
    if size > MAX_PAGE_SIZE {
        return Err(KmsError::InvalidParameter(format!(
            "PageSize must be 1 to {MAX_PAGE_SIZE}, got {size}."
        )));
    }
    Ok((number, size))
}

fn paged<T>(all: Vec<T>, page_number: u32, page_size: u32) -> Paged<T> {
    let total_count = all.len();
    let skip = (page_number as usize - 1).saturating_mul(page_size as usize);
    Paged {
        items: all
            .into_iter()
            .skip(skip)
            .take(page_size as usize)
            .collect(),
        total_count,
        page_number,
        page_size,
    }
}

#[cfg(test)]
mod tests;
