//! Key lifecycle: creating, describing and listing keys; the state transitions
//! (enable, disable, schedule and cancel deletion); the rotation policy; versions and
//! manual rotation. Every change is a read-modify-write at the key's revision,
//! retried when another writer got there first.

use zeroize::Zeroizing;

use crate::crypto::keygen::{self, KeyPair};
use crate::crypto::secret::MasterKeyMaterial;
use crate::crypto::signing_keys;
use crate::error::KmsError;
use crate::store::{Creation, KeyRecord, KeyState, StoreError};

use super::idempotency::Once;
use super::ids;
use super::model::{
    CreateKeyParams, DELETION_WINDOW_DAYS, KeyMetadata, KeySpec, KeyUsage, KeyVersionInfo,
    MAX_DESCRIPTION_LEN, Page, PageFiller, PageRequest, RotationRequest, bad_page_token,
    parse_key_spec_and_usage, parse_protection_level,
};
use super::registry::{
    KeyRegistry, MAX_CONFLICT_RETRIES, conflict_backoff, invalid_state, store_error,
};

/// Why a rotation with a token did not happen.
enum RotateError {
    /// A racing call with the same token stored its version first.
    TokenTaken,
    /// Anything else.
    Kms(KmsError),
}

impl From<KmsError> for RotateError {
    fn from(err: KmsError) -> Self {
        Self::Kms(err)
    }
}

impl KeyRegistry {
    // === keys ===

    /// Checks CreateKey's parameters before anything is generated; returns the spec
    /// and usage.
    ///
    /// # Errors
    /// `InvalidParameter` for a bad spec, usage (see [`parse_key_spec_and_usage`]),
    /// protection level, description or rotation interval;
    /// `Rejected.UnsupportedOperation` for automatic rotation of a key that does not
    /// rotate ([`KeySpec::rotates`]).
    pub fn check_create_params(params: &CreateKeyParams) -> Result<(KeySpec, KeyUsage), KmsError> {
        let (spec, usage) = parse_key_spec_and_usage(&params.key_spec, &params.key_usage)?;
        parse_protection_level(&params.protection_level)?;
        if params.description.len() > MAX_DESCRIPTION_LEN {
            return Err(KmsError::InvalidParameter(format!(
                "Description must be at most {MAX_DESCRIPTION_LEN} bytes."
            )));
        }
        params.rotation.stored_interval_secs()?;
        if params.rotation.enabled && !spec.rotates() {
            return Err(KmsError::UnsupportedOperation(format!(
                "EnableAutomaticRotation does not apply to {} keys: only {} keys rotate.",
                spec.as_str(),
                KeySpec::Aes256.as_str()
            )));
        }
        Ok((spec, usage))
    }

    /// Creates a key with fresh material as its initial (and primary) version; an
    /// asymmetric key's pair is generated here, on tokio's blocking pool within the CPU bound. The core
    /// takes pairs from the key pair pool instead ([`Self::create_key_with_pair`]).
    pub async fn create_key(&self, params: CreateKeyParams) -> Result<KeyMetadata, KmsError> {
        let (spec, _) = Self::check_create_params(&params)?;
        let pair = Self::generate_pair(spec).await?;
        self.create_key_with_pair(params, pair).await
    }

    /// A fresh key pair for an asymmetric `spec`, generated within the CPU bound ([`crate::crypto::cpu`]);
    /// `None` for the specs whose material is a random secret.
    async fn generate_pair(spec: KeySpec) -> Result<Option<KeyPair>, KmsError> {
        let Some(pair_spec) = spec.key_pair_spec() else {
            return Ok(None);
        };
        let pair = crate::crypto::cpu::run(move || keygen::generate(pair_spec))
            .await
            .map_err(KmsError::internal)?
            .map_err(KmsError::internal)?;
        Ok(Some(pair))
    }

    /// Creates a key: AES and HMAC keys with fresh random material, asymmetric keys
    /// with `key_pair` (which must be of the spec's type) as their material. Every
    /// kind is sealed under the root key before it reaches the store: the AES key,
    /// the HMAC secret, or the PKCS#8 DER of the private key.
    pub async fn create_key_with_pair(
        &self,
        params: CreateKeyParams,
        key_pair: Option<KeyPair>,
    ) -> Result<KeyMetadata, KmsError> {
        self.create_key_once(params, key_pair, None).await
    }

    /// [`Self::create_key_with_pair`] with an idempotency token: the key and the
    /// token's record are stored together. If a racing call with the token stored
    /// first, answers the key that call made (see [`super::idempotency`]); the caller
    /// asks [`Self::replayed`] before it generates anything.
    pub async fn create_key_once(
        &self,
        params: CreateKeyParams,
        key_pair: Option<KeyPair>,
        once: Option<&Once>,
    ) -> Result<KeyMetadata, KmsError> {
        let (spec, usage) = Self::check_create_params(&params)?;
        let material = Self::fresh_material(spec, key_pair)?;
        self.insert_new_key(
            ids::new_key_id()?,
            (spec, usage),
            params,
            ids::new_version_id(),
            &material,
            once,
        )
        .await
    }

    /// The key the first `CreateKey` of a token made, as it is now.
    pub async fn created_key(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let key = self.store.get_key(key_id).await.map_err(store_error)?;
        let key = key.ok_or_else(|| KmsError::KeyNotFound(key_id.to_owned()))?;
        Ok(KeyMetadata::from(&key))
    }

    /// The material of a new key of `spec`: random for AES and HMAC keys, the PKCS#8
    /// DER of `key_pair` (which must be of the spec's type) for asymmetric ones.
    fn fresh_material(
        spec: KeySpec,
        key_pair: Option<KeyPair>,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        match (spec.key_pair_spec(), key_pair) {
            (None, None) if spec == KeySpec::HmacSha256 => {
                signing_keys::generate_hmac_key().map_err(KmsError::internal)
            }
            (None, None) => {
                let aes = MasterKeyMaterial::generate().map_err(KmsError::internal)?;
                Ok(Zeroizing::new(aes.expose_secret().to_vec()))
            }
            (Some(wanted), Some(pair)) if pair.spec() == wanted => {
                Ok(Zeroizing::new(pair.private_key_der().to_vec()))
            }
            (wanted, pair) => Err(KmsError::internal(format!(
                "CreateKey {}: wanted a {wanted:?} key pair, was given {:?}",
                spec.as_str(),
                pair.map(|p| p.spec())
            ))),
        }
    }

    /// Creates the key `key_id` (checked by the caller) for a seed file: its initial
    /// version is `version_id` when given, and holds `fixed` material when given (AES
    /// keys only: a development setting), fresh material of its spec otherwise. The
    /// seed checks beforehand that neither ID is taken (the store refuses a taken key
    /// ID: an internal error).
    pub(super) async fn create_key_as(
        &self,
        key_id: String,
        params: CreateKeyParams,
        version_id: Option<String>,
        fixed: Option<&MasterKeyMaterial>,
    ) -> Result<KeyMetadata, KmsError> {
        let (spec, usage) = Self::check_create_params(&params)?;
        let material = match fixed {
            Some(fixed) if spec == KeySpec::Aes256 => {
                Zeroizing::new(fixed.expose_secret().to_vec())
            }
            Some(_) => {
                return Err(KmsError::InvalidParameter(format!(
                    "Fixed material is for {} keys only, not {}.",
                    KeySpec::Aes256.as_str(),
                    spec.as_str()
                )));
            }
            None => Self::fresh_material(spec, Self::generate_pair(spec).await?)?,
        };
        let version_id = version_id.unwrap_or_else(ids::new_version_id);
        self.insert_new_key(key_id, (spec, usage), params, version_id, &material, None)
            .await
    }

    /// Stores a new key `key_id` of `spec` and `usage` whose initial version
    /// `version_id` holds `material`, sealed under the root key here, with `once`'s
    /// token if given.
    async fn insert_new_key(
        &self,
        key_id: String,
        (spec, usage): (KeySpec, KeyUsage),
        params: CreateKeyParams,
        version_id: String,
        material: &[u8],
        once: Option<&Once>,
    ) -> Result<KeyMetadata, KmsError> {
        let rotation_interval_secs = params.rotation.stored_interval_secs()?;
        let now = self.now_ms();
        let version = self.sealed_version(&key_id, version_id, material, now)?;
        let key = KeyRecord {
            key_id,
            key_spec: spec.as_str().to_owned(),
            key_usage: usage.as_str().to_owned(),
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
        let creation = Creation::Key(key.clone(), version);
        match self.store_creation(once, &key.key_id, creation).await {
            Ok(()) => {}
            Err(StoreError::TokenTaken) => {
                return self
                    .created_key(&self.replayed_after_race(once).await?)
                    .await;
            }
            Err(err) => return Err(store_error(err)),
        }
        tracing::info!(key_id = %key.key_id, key_spec = %key.key_spec, "key created");
        Ok(KeyMetadata::from(&key))
    }

    /// Describes a key.
    pub async fn describe_key(&self, key_ref: &str) -> Result<KeyMetadata, KmsError> {
        Ok(KeyMetadata::from(&self.resolve_cached(key_ref).await?))
    }

    /// One page of the key IDs this caller may see, ordered by ID.
    ///
    /// The store is read until the page is full of visible keys or the store ends,
    /// reading at most `MAX_SCANNED_PER_PAGE` keys per call (a page cut
    /// short by that bound still has a token). The next-page token is sealed
    /// (`page_token`): it names no key, and only this caller's next `ListKeys` opens it.
    pub async fn list_keys(&self, page: &PageRequest) -> Result<Page<String>, KmsError> {
        let size = page.size()?;
        let scope = self.token_scope("ListKeys", "");
        let mut filler = PageFiller::new(size, self.open_token(&scope, &page.page_token)?);
        filler
            .fill(
                |after, limit| async move {
                    self.store
                        .list_keys(after.as_deref(), limit)
                        .await
                        .map_err(store_error)
                },
                |key| async move {
                    let visible = self.key_allowed(&key.key_id).await?;
                    Ok((key.key_id.clone(), visible.then_some(key.key_id)))
                },
            )
            .await?;
        filler.finish(|position| self.seal_token(&scope, position))
    }

    /// Enables a key. Enabling an enabled key is a no-op; a key pending deletion must
    /// have its deletion cancelled instead.
    pub async fn enable_key(&self, key_ref: &str) -> Result<KeyMetadata, KmsError> {
        self.switch_key(key_ref, KeyState::Enabled).await
    }

    /// Disables a key. Disabling a disabled key is a no-op.
    pub async fn disable_key(&self, key_ref: &str) -> Result<KeyMetadata, KmsError> {
        self.switch_key(key_ref, KeyState::Disabled).await
    }

    /// Puts an Enabled or Disabled key in `state` (Enabled or Disabled); a no-op when
    /// it is there already. A key pending deletion is refused.
    async fn switch_key(&self, key_ref: &str, state: KeyState) -> Result<KeyMetadata, KmsError> {
        self.update_key(key_ref, |key, _| match key.state {
            KeyState::PendingDeletion => Err(invalid_state(key)),
            current if current == state => Ok(false),
            _ => {
                key.state = state;
                Ok(true)
            }
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
            let spec = KeySpec::of(key)?;
            if interval.is_some() && !spec.rotates() {
                return Err(spec.no_rotation(&key.key_id));
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
        for attempt in 0..MAX_CONFLICT_RETRIES {
            conflict_backoff(attempt).await;
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
        Err(KmsError::Contended(format!("the key {key_ref}")))
    }

    // === versions ===

    /// Rotates a key: a new version becomes primary. Only Enabled keys rotate.
    pub async fn create_key_version(&self, key_ref: &str) -> Result<KeyVersionInfo, KmsError> {
        self.create_key_version_once(key_ref, None).await
    }

    /// [`Self::create_key_version`] with an idempotency token: a token seen before
    /// answers the version its first call made, and the version and the token's record
    /// are stored together.
    pub async fn create_key_version_once(
        &self,
        key_ref: &str,
        once: Option<&Once>,
    ) -> Result<KeyVersionInfo, KmsError> {
        if let Some(outcome) = self.replayed(once).await? {
            return self.created_version(&outcome).await;
        }
        for attempt in 0..MAX_CONFLICT_RETRIES {
            conflict_backoff(attempt).await;
            let key = self.resolve(key_ref).await?;
            let spec = KeySpec::of(&key)?;
            if !spec.rotates() {
                return Err(spec.no_rotation(&key.key_id));
            }
            if key.state != KeyState::Enabled {
                return Err(invalid_state(&key));
            }
            match self.rotate_once(key, once).await {
                Ok(Some(version)) => return Ok(version),
                Ok(None) => {}
                Err(RotateError::TokenTaken) => {
                    return self
                        .created_version(&self.replayed_after_race(once).await?)
                        .await;
                }
                Err(RotateError::Kms(err)) => return Err(err),
            }
        }
        Err(KmsError::Contended(format!("the key {key_ref}")))
    }

    /// The version the first `CreateKeyVersion` of a token made (`<key_id>/<version_id>`),
    /// if the caller may still see its key.
    async fn created_version(&self, outcome: &str) -> Result<KeyVersionInfo, KmsError> {
        let (key_id, version_id) = outcome.split_once('/').ok_or_else(|| {
            KmsError::internal(format!("bad CreateKeyVersion outcome {outcome:?}"))
        })?;
        let key = self.resolve(key_id).await?;
        let version = self
            .store
            .get_version(&key.key_id, version_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| KmsError::KeyVersionNotFound(version_id.to_owned()))?;
        Ok(KeyVersionInfo::from(&version))
    }

    /// Adds a version to `key` (as read at its current revision) and makes it primary.
    /// `None` when another writer changed the key first: re-read and decide again.
    pub(super) async fn rotate(&self, key: KeyRecord) -> Result<Option<KeyVersionInfo>, KmsError> {
        match self.rotate_once(key, None).await {
            Ok(done) => Ok(done),
            Err(RotateError::Kms(err)) => Err(err),
            Err(RotateError::TokenTaken) => Err(KmsError::internal("a token taken without one")),
        }
    }

    /// [`Self::rotate`], storing `once`'s token with the version when given.
    async fn rotate_once(
        &self,
        mut key: KeyRecord,
        once: Option<&Once>,
    ) -> Result<Option<KeyVersionInfo>, RotateError> {
        // New material is AES material: a key of another spec must never get it.
        let spec = KeySpec::of(&key)?;
        if !spec.rotates() {
            return Err(spec.no_rotation(&key.key_id).into());
        }
        let now = self.now_ms();
        let version = self.new_version(&key.key_id, now)?;
        key.primary_version_id = version.version_id.clone();
        key.last_rotation_ms = now;
        key.revision += 1;
        let outcome = format!("{}/{}", key.key_id, version.version_id);
        let creation = Creation::Version(key.clone(), version.clone());
        match self.store_creation(once, &outcome, creation).await {
            Ok(()) => {
                self.cache.clear_keys();
                tracing::info!(key_id = %key.key_id, key_version_id = %version.version_id, "key rotated");
                Ok(Some(KeyVersionInfo::from(&version)))
            }
            Err(StoreError::Conflict) => Ok(None),
            Err(StoreError::TokenTaken) => Err(RotateError::TokenTaken),
            Err(StoreError::NotFound) => Err(KmsError::KeyNotFound(key.key_id).into()),
            Err(err) => Err(store_error(err).into()),
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
        // the token being the last version ID of the previous page, sealed like every
        // page token, for this key and caller.
        let scope = self.token_scope("ListKeyVersions", &key.key_id);
        let start = match self.open_token(&scope, &page.page_token)? {
            None => 0,
            Some(after) => versions
                .iter()
                .position(|v| v.version_id == after)
                .map(|i| i + 1)
                .ok_or_else(bad_page_token)?,
        };
        let mut filler = PageFiller::new(size, None);
        for version in versions.iter().skip(start).take(size + 1) {
            filler.offer(&version.version_id, Some(KeyVersionInfo::from(version)));
        }
        filler.finish(|position| self.seal_token(&scope, position))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, format_date, to_unix_millis};
    use crate::keys::testing::{Fixture, create};

    const DAY: Duration = Duration::from_secs(86_400);

    /// Asserts `InvalidKeyState` naming `state`.
    fn assert_invalid_state<T: std::fmt::Debug>(result: Result<T, KmsError>, state: &str) {
        match result {
            Err(KmsError::InvalidKeyState { state: got, .. }) => assert_eq!(got, state),
            other => panic!("expected InvalidKeyState({state}), got {other:?}"),
        }
    }

    fn page(page_size: i32, page_token: &str) -> PageRequest {
        PageRequest {
            page_size,
            page_token: page_token.to_owned(),
        }
    }

    #[tokio::test]
    async fn a_new_key_is_enabled_with_one_version() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = registry
            .create_key(CreateKeyParams {
                description: "payments".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(ids::is_key_id(&key.key_id), "{}", key.key_id);
        assert_eq!(key.key_state, KeyState::Enabled);
        assert_eq!(key.description, "payments");
        assert_eq!(key.primary_key_version, key.initial_key_version);
        assert_eq!(registry.describe_key(&key.key_id).await.unwrap(), key);
        let bad_spec = CreateKeyParams {
            key_spec: "RSA_4096".into(),
            ..Default::default()
        };
        assert!(matches!(
            registry.create_key(bad_spec).await,
            Err(KmsError::InvalidParameter(_))
        ));
        let long = CreateKeyParams {
            description: "x".repeat(MAX_DESCRIPTION_LEN + 1),
            ..Default::default()
        };
        assert!(matches!(
            registry.create_key(long).await,
            Err(KmsError::InvalidParameter(_))
        ));
        assert_eq!(registry.counts().await.unwrap().keys, 1);
    }

    #[tokio::test]
    async fn enable_and_disable_switch_states_and_repeat_as_no_ops() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        for _ in 0..2 {
            let disabled = registry.disable_key(&key).await.unwrap();
            assert_eq!(disabled.key_state, KeyState::Disabled);
        }
        assert_invalid_state(registry.resolve_usable(&key).await, "Disabled");
        assert_invalid_state(registry.create_key_version(&key).await, "Disabled");
        for _ in 0..2 {
            let enabled = registry.enable_key(&key).await.unwrap();
            assert_eq!(enabled.key_state, KeyState::Enabled);
        }
        assert_eq!(registry.resolve_usable(&key).await.unwrap().key_id, key);
    }

    #[tokio::test]
    async fn a_key_pending_deletion_refuses_everything_but_cancel() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        let scheduled = registry.schedule_key_deletion(&key, 7).await.unwrap();
        assert_eq!(scheduled.key_state, KeyState::PendingDeletion);
        let delete_at = to_unix_millis(fixture.clock.now()) + 7 * 86_400_000;
        assert_eq!(scheduled.delete_date, Some(format_date(delete_at)));

        let pending = "PendingDeletion";
        assert_invalid_state(registry.enable_key(&key).await, pending);
        assert_invalid_state(registry.disable_key(&key).await, pending);
        assert_invalid_state(registry.schedule_key_deletion(&key, 7).await, pending);
        assert_invalid_state(registry.create_key_version(&key).await, pending);
        assert_invalid_state(
            registry
                .update_rotation_policy(&key, RotationRequest::default())
                .await,
            pending,
        );
        assert_invalid_state(registry.resolve_usable(&key).await, pending);

        let cancelled = registry.cancel_key_deletion(&key).await.unwrap();
        assert_eq!(cancelled.key_state, KeyState::Enabled);
        assert_eq!(cancelled.delete_date, None);
        assert_invalid_state(registry.cancel_key_deletion(&key).await, "Enabled");
    }

    #[tokio::test]
    async fn deletion_windows_are_bounded() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        assert!(matches!(
            registry.schedule_key_deletion(&key, 0).await,
            Err(KmsError::MissingParameter("PendingWindowInDays"))
        ));
        for days in [6, 367, -7] {
            assert!(
                matches!(
                    registry.schedule_key_deletion(&key, days).await,
                    Err(KmsError::InvalidParameter(_))
                ),
                "{days}"
            );
        }
        assert_eq!(
            registry.describe_key(&key).await.unwrap().key_state,
            KeyState::Enabled
        );
        let disabled = create(registry).await;
        registry.disable_key(&disabled).await.unwrap();
        let scheduled = registry
            .schedule_key_deletion(&disabled, 366)
            .await
            .unwrap();
        assert_eq!(scheduled.key_state, KeyState::PendingDeletion);
    }

    #[tokio::test]
    async fn signing_and_hmac_keys_are_created_sealed_and_never_rotate() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let kinds = KeySpec::ALL
            .into_iter()
            .flat_map(|spec| spec.usages().iter().map(move |usage| (spec, *usage)));
        for (spec, usage) in kinds {
            let meta = registry
                .create_key(CreateKeyParams {
                    key_spec: spec.as_str().into(),
                    // The default usage left out, the others named.
                    key_usage: if usage.as_str() == spec.usage() {
                        String::new()
                    } else {
                        usage.as_str().into()
                    },
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(
                (meta.key_spec.as_str(), meta.key_usage.as_str()),
                (spec.as_str(), usage.as_str())
            );
            let stored = registry
                .store
                .get_version(&meta.key_id, &meta.initial_key_version)
                .await
                .unwrap()
                .unwrap();
            let opened = registry
                .open_version(&meta.key_id, &meta.initial_key_version)
                .await
                .unwrap()
                .unwrap();
            match spec.key_pair_spec() {
                Some(pair_spec) => {
                    // PKCS#8 that parses as the spec's key, and is not in the store as is.
                    crate::crypto::signing_keys::SigningKey::from_pkcs8(pair_spec, &opened)
                        .unwrap();
                    let middle = &opened[opened.len() / 2..opened.len() / 2 + 16];
                    assert!(!stored.material.ciphertext.windows(16).any(|w| w == middle));
                }
                None => assert_eq!(opened.len(), 32),
            }
            let rotation = registry.create_key_version(&meta.key_id).await;
            let policy = registry
                .update_rotation_policy(
                    &meta.key_id,
                    RotationRequest {
                        enabled: true,
                        interval: None,
                    },
                )
                .await;
            if spec.rotates() {
                rotation.unwrap();
                policy.unwrap();
            } else {
                assert!(matches!(rotation, Err(KmsError::UnsupportedOperation(_))));
                assert!(matches!(policy, Err(KmsError::UnsupportedOperation(_))));
                let again = registry.describe_key(&meta.key_id).await.unwrap();
                assert_eq!(again.primary_key_version, again.initial_key_version);
                assert!(!again.automatic_rotation);
            }
        }
        // Automatic rotation at creation is refused for keys that do not rotate.
        let refused = registry
            .create_key(CreateKeyParams {
                key_spec: "HMAC_SHA256".into(),
                rotation: RotationRequest {
                    enabled: true,
                    interval: None,
                },
                ..Default::default()
            })
            .await;
        assert!(matches!(refused, Err(KmsError::UnsupportedOperation(_))));
        // A pair of another spec is an internal error, never a key.
        let pair = keygen::generate(crate::crypto::keygen::KeyPairSpec::EcP256).unwrap();
        let mismatched = registry
            .create_key_with_pair(
                CreateKeyParams {
                    key_spec: "EC_P256K".into(),
                    ..Default::default()
                },
                Some(pair),
            )
            .await;
        assert!(matches!(mismatched, Err(KmsError::Internal(_))));
    }

    #[tokio::test]
    async fn rotation_makes_a_new_primary_and_keeps_the_initial() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        let created = registry.describe_key(&key).await.unwrap();
        fixture.clock.advance(DAY);
        let version = registry.create_key_version(&key).await.unwrap();
        assert_eq!(version.key_id, key);
        let rotated = registry.describe_key(&key).await.unwrap();
        assert_eq!(rotated.primary_key_version, version.key_version_id);
        assert_eq!(rotated.initial_key_version, created.initial_key_version);
        assert_ne!(rotated.primary_key_version, rotated.initial_key_version);
        assert_ne!(rotated.last_rotation_date, created.last_rotation_date);
        assert_eq!(rotated.creation_date, created.creation_date);

        let versions = registry
            .list_key_versions(&key, &page(0, ""))
            .await
            .unwrap();
        let ids: Vec<&str> = versions
            .items
            .iter()
            .map(|v| v.key_version_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                created.initial_key_version.as_str(),
                version.key_version_id.as_str()
            ]
        );
        assert_eq!(
            registry
                .describe_key_version(&key, &created.initial_key_version)
                .await
                .unwrap()
                .key_version_id,
            created.initial_key_version
        );
        assert!(matches!(
            registry
                .describe_key_version(&key, &ids::new_version_id())
                .await,
            Err(KmsError::KeyVersionNotFound(_))
        ));
    }

    #[tokio::test]
    async fn the_rotation_policy_sets_and_clears_the_next_rotation() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        let on = RotationRequest {
            enabled: true,
            interval: Some(30 * DAY),
        };
        let updated = registry.update_rotation_policy(&key, on).await.unwrap();
        assert!(updated.automatic_rotation);
        assert_eq!(updated.rotation_interval, Some(30 * DAY));
        let due = to_unix_millis(fixture.clock.now()) + 30 * 86_400_000;
        assert_eq!(updated.next_rotation_date, Some(format_date(due)));
        let off = registry
            .update_rotation_policy(&key, RotationRequest::default())
            .await
            .unwrap();
        assert!(!off.automatic_rotation);
        assert_eq!(off.next_rotation_date, None);
        let too_short = RotationRequest {
            enabled: true,
            interval: Some(DAY),
        };
        assert!(matches!(
            registry.update_rotation_policy(&key, too_short).await,
            Err(KmsError::InvalidParameter(_))
        ));
    }

    #[tokio::test]
    async fn key_lists_page_in_id_order() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let mut created = Vec::new();
        for _ in 0..5 {
            created.push(create(registry).await);
        }
        created.sort();
        let mut listed = Vec::new();
        let mut sizes = Vec::new();
        let mut token = String::new();
        loop {
            let page = registry.list_keys(&page(2, &token)).await.unwrap();
            sizes.push(page.items.len());
            listed.extend(page.items);
            match page.next_page_token {
                Some(next) => token = next,
                None => break,
            }
        }
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(listed, created);
        for (size, token) in [(2, "nope"), (101, ""), (-1, "")] {
            assert!(
                matches!(
                    registry.list_keys(&page(size, token)).await,
                    Err(KmsError::InvalidParameter(_))
                ),
                "{size} {token:?}"
            );
        }
    }

    #[tokio::test]
    async fn version_lists_page_oldest_first() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        let mut versions = vec![
            registry
                .describe_key(&key)
                .await
                .unwrap()
                .initial_key_version,
        ];
        for _ in 0..3 {
            fixture.clock.advance(DAY);
            versions.push(
                registry
                    .create_key_version(&key)
                    .await
                    .unwrap()
                    .key_version_id,
            );
        }
        let first = registry
            .list_key_versions(&key, &page(3, ""))
            .await
            .unwrap();
        let token = first.next_page_token.clone().expect("a second page");
        let second = registry
            .list_key_versions(&key, &page(3, &token))
            .await
            .unwrap();
        assert_eq!(second.next_page_token, None);
        let listed: Vec<String> = first
            .items
            .into_iter()
            .chain(second.items)
            .map(|v| v.key_version_id)
            .collect();
        assert_eq!(listed, versions);
        for token in ["nope", &ids::new_version_id()] {
            assert!(
                matches!(
                    registry.list_key_versions(&key, &page(3, token)).await,
                    Err(KmsError::InvalidParameter(_))
                ),
                "{token}"
            );
        }
    }
}
