//! The core: one [`Kms`] built once from the [`Config`], offering every operation of
//! the catalogue as an async method that takes a [`Caller`] and domain parameters.
//!
//! It owns what every transport shares: the key registry (over the store), the data
//! plane, the key pair pool, the key pair throttle, the access policy, the audit log,
//! the metrics and the maintenance task. A transport decodes a request, calls one
//! method here, and encodes the result; it never reaches past this type. The server,
//! the benchmark and the tests build it the same way, with [`Kms::open`].
//!
//! Each method notes in the caller's [`crate::call::CallNote`] the key it was asked
//! for, then the key and version it used, so audit records say what a call touched
//! whichever transport carried it.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::auth::AuthPolicy;
use crate::call::Caller;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::blob;
use crate::crypto::secret::MasterKeyMaterial;
use crate::data_plane::{
    DataKeyParams, DataPlane, DecryptParams, Decrypted, EncryptParams, Encrypted, GenerateParams,
    GeneratedDataKey, GeneratedKeyPair, HashAlgorithm, SealWith, random,
};
use crate::data_plane::{Mac, PublicKeyInfo, SignParams, Signed, Verified, VerifyParams};
use crate::error::KmsError;
use crate::keypool::KeyPairPool;
use crate::keys::client_keys::{ClientKeyRefusal, CreateClientKeyParams, CreatedClientKey};
use crate::keys::maintenance::{self, PassCounter};
use crate::keys::model::{
    AliasInfo, CreateKeyParams, KeyMetadata, KeyVersionInfo, Page, PageRequest, RotationRequest,
};
use crate::keys::{self, KeyRegistry, OpenError, root_key};
use crate::metrics::Metrics;
use crate::store::{ClientKeyRecord, StoreSettings};
use crate::throttle::KeyPairThrottle;

/// Why the core could not start. Nothing on disk changed unless the message says so.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The root key could not be loaded or created.
    #[error(transparent)]
    RootKey(#[from] root_key::RootKeyError),
    /// The store could not be opened, or the root key does not match it.
    #[error(transparent)]
    Registry(#[from] OpenError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Another setting is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// The core; see the module docs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Kms {
    registry: KeyRegistry,
    data: DataPlane,
    pool: KeyPairPool,
    throttle: KeyPairThrottle,
    policy: Option<Arc<AuthPolicy>>,
    audit: Option<AuditLog>,
    metrics: Metrics,
    maintenance: PassCounter,
    stop: watch::Sender<bool>,
    maintenance_task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Where Backup writes its snapshot: the data directory.
    data_dir: Arc<std::path::PathBuf>,
}

impl Kms {
    /// Builds the core from `config`, reading time from `clock`: checks the
    /// combinations of settings ([`Config::check_combinations`]), the access policy and
    /// the audit log, creates the data directory, loads the root key, opens
    /// the store (refusing, with nothing changed, a root key other than the store's),
    /// starts the key pair pool and the maintenance task.
    ///
    /// # Errors
    ///
    /// [`StartError`] saying which setting or resource is unusable.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        config
            .check_combinations()
            .map_err(|err| StartError::Invalid(err.to_string()))?;
        let throttle = KeyPairThrottle::new(config.keypair_concurrency)
            .map_err(|err| StartError::Invalid(err.to_string()))?;
        let policy = load_policy(config)?.map(Arc::new);
        let audit = match &config.audit_log {
            Some(path) => Some(AuditLog::open(path, config.audit_required).map_err(|err| {
                StartError::Invalid(format!(
                    "cannot open the audit log {}: {err}",
                    path.display()
                ))
            })?),
            None => None,
        };

        // Read and checked before anything is created, so a bad file changes nothing.
        let seed = config
            .seed_file
            .as_deref()
            .map(|path| keys::seed::Seed::load(path, config.dev_fixed_seed_material))
            .transpose()
            .map_err(|err| StartError::Invalid(err.to_string()))?;

        let settings = config.store_settings();
        let embedded = matches!(settings, StoreSettings::Embedded { .. });
        if embedded {
            ensure_data_dir(&config.data_dir)?;
        }
        let root_key = load_root_key(config)?;
        let registry = keys::open_registry(&settings, root_key, clock).await?;
        tracing::info!(store = %settings, "key store open");
        if let Some(seed) = &seed {
            let (keys, aliases) = seed
                .apply(&registry)
                .await
                .map_err(|err| StartError::Invalid(err.to_string()))?;
            tracing::info!(keys, aliases, "seed file applied: created what was missing");
        }
        // Only once the start is sure to go ahead: a refused start changes nothing.
        if embedded {
            crate::backup::remove_leftovers(&config.data_dir);
        }

        let pool = KeyPairPool::start(config.pool.clone());
        let (stop, stop_rx) = watch::channel(false);
        let (maintenance_task, maintenance) =
            maintenance::spawn(registry.clone(), config.maintenance_interval, stop_rx);
        let metrics = Metrics::new();
        metrics.register(pool.clone());
        metrics.register(throttle.stats());
        metrics.register_refreshed(Arc::new(keys::registry::StoreMetrics::new(
            registry.clone(),
        )));
        metrics.register(maintenance::PassMetrics(maintenance.clone()));
        Ok(Self {
            data: DataPlane::new(registry.clone(), pool.clone()),
            registry,
            pool,
            throttle,
            policy,
            audit,
            metrics,
            maintenance,
            stop,
            maintenance_task: Arc::new(std::sync::Mutex::new(Some(maintenance_task))),
            data_dir: Arc::new(config.data_dir.clone()),
        })
    }

    /// Stops the background work: the maintenance task (its pass in progress ends
    /// first), then the pool's workers; and writes out the audit log.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = self
            .maintenance_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Some(log) = &self.audit
            && !log.flush().await
        {
            tracing::error!(path = %log.path().display(), "AUDIT: could not flush the audit log at shutdown");
        }
        self.pool.shutdown();
    }

    // === what the transports wire in ===

    /// The key pair pool (readiness, stats, the benchmark).
    pub fn pool(&self) -> &KeyPairPool {
        &self.pool
    }

    /// The per-instance key pair limit.
    pub fn throttle(&self) -> &KeyPairThrottle {
        &self.throttle
    }

    /// The access policy; `None` when access control is off.
    pub fn policy(&self) -> Option<&Arc<AuthPolicy>> {
        self.policy.as_ref()
    }

    /// The audit log, when one is kept.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The key registry acting with full access (metrics, maintenance, tools).
    pub fn registry(&self) -> &KeyRegistry {
        &self.registry
    }

    /// Passes of the maintenance task so far, and what they did.
    pub fn maintenance_passes(&self) -> PassCounter {
        self.maintenance.clone()
    }

    fn registry_for(&self, caller: &Caller) -> KeyRegistry {
        self.registry.scoped(caller.access.clone())
    }

    // === the data plane ===

    /// GenerateDataKeyPair and its three siblings: `params` says which version seals
    /// and whether the plaintext private key comes back.
    pub async fn generate_data_key_pair(
        &self,
        caller: &Caller,
        params: GenerateParams<'_>,
    ) -> Result<GeneratedKeyPair, KmsError> {
        caller.note.set_key_id(params.key_id);
        caller.note.set_key_pair_spec(params.key_pair_spec);
        let pair = self
            .data
            .scoped(caller.access.clone())
            .generate(params)
            .await?;
        self.sealed(caller, params.seal_with, &pair.key_id, &pair.key_version_id);
        Ok(pair)
    }

    /// Encrypt and AdvanceEncrypt: `params.seal_with` says which version seals.
    pub async fn encrypt(
        &self,
        caller: &Caller,
        params: EncryptParams<'_>,
    ) -> Result<Encrypted, KmsError> {
        caller.note.set_key_id(params.key_id);
        let sealed = self
            .data
            .scoped(caller.access.clone())
            .encrypt(params)
            .await?;
        self.sealed(
            caller,
            params.seal_with,
            &sealed.key_id,
            &sealed.key_version_id,
        );
        Ok(sealed)
    }

    /// GenerateDataKey and AdvanceGenerateDataKey.
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        params: DataKeyParams<'_>,
    ) -> Result<GeneratedDataKey, KmsError> {
        caller.note.set_key_id(params.key_id);
        let key = self
            .data
            .scoped(caller.access.clone())
            .generate_data_key(params)
            .await?;
        self.sealed(
            caller,
            params.seal_with,
            &key.sealed.key_id,
            &key.sealed.key_version_id,
        );
        Ok(key)
    }

    /// GenerateRandom: `length` random bytes. Names no key.
    pub async fn generate_random(
        &self,
        _caller: &Caller,
        length: i32,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KmsError> {
        random::generate_random(length)
    }

    /// Hash: the digest of `message`. Names no key.
    pub async fn hash(
        &self,
        _caller: &Caller,
        algorithm: &str,
        message: &[u8],
    ) -> Result<(HashAlgorithm, Vec<u8>), KmsError> {
        random::hash(algorithm, message)
    }

    // === operations on the server itself ===

    /// Backup: a consistent snapshot of the embedded store, taken while serving. Names
    /// no key. [`KmsError::UnsupportedOperation`] for a store backed up with its own
    /// tools.
    pub async fn backup(&self, _caller: &Caller) -> Result<crate::backup::Snapshot, KmsError> {
        crate::backup::Snapshot::take(&self.registry, &self.data_dir).await
    }

    /// Notes and counts a seal.
    fn sealed(&self, caller: &Caller, seal_with: SealWith, key_id: &str, key_version_id: &str) {
        caller.note.set_key_id(key_id);
        caller.note.set_key_version_id(key_version_id);
        self.metrics.count_seal(seal_with, key_version_id);
    }

    /// Decrypt: opens a plain-form ciphertext with the key's initial version.
    pub async fn decrypt(
        &self,
        caller: &Caller,
        params: DecryptParams<'_>,
    ) -> Result<Decrypted, KmsError> {
        caller.note.set_key_id(params.key_id);
        let opened = self
            .data
            .scoped(caller.access.clone())
            .decrypt(params)
            .await?;
        caller.note.set_key_id(&opened.key_id);
        caller.note.set_key_version_id(&opened.key_version_id);
        Ok(opened)
    }

    /// AdvanceDecrypt: opens a self-describing ciphertext with the version it names.
    pub async fn advance_decrypt(
        &self,
        caller: &Caller,
        params: DecryptParams<'_>,
    ) -> Result<Decrypted, KmsError> {
        caller.note.set_key_id(params.key_id);
        if let Ok(parsed) = blob::parse(params.ciphertext_blob) {
            // Recorded even when the call fails: which version a refused blob named.
            caller.note.set_key_version_id(parsed.key_version_id);
        }
        let opened = self
            .data
            .scoped(caller.access.clone())
            .advance_decrypt(params)
            .await?;
        caller.note.set_key_id(&opened.key_id);
        caller.note.set_key_version_id(&opened.key_version_id);
        Ok(opened)
    }

    // === signatures and MACs ===

    /// Sign: a signature under an asymmetric key.
    pub async fn sign(&self, caller: &Caller, params: SignParams<'_>) -> Result<Signed, KmsError> {
        caller.note.set_key_id(params.key_id);
        let signed = self.data.scoped(caller.access.clone()).sign(params).await?;
        caller.note.set_key_id(&signed.context.key_id);
        caller
            .note
            .set_key_version_id(&signed.context.key_version_id);
        Ok(signed)
    }

    /// Verify: whether a signature is valid under an asymmetric key.
    pub async fn verify(
        &self,
        caller: &Caller,
        params: VerifyParams<'_>,
    ) -> Result<Verified, KmsError> {
        caller.note.set_key_id(params.signed.key_id);
        let verified = self
            .data
            .scoped(caller.access.clone())
            .verify(params)
            .await?;
        caller.note.set_key_id(&verified.context.key_id);
        caller
            .note
            .set_key_version_id(&verified.context.key_version_id);
        Ok(verified)
    }

    /// GetPublicKey: an asymmetric key's public key.
    pub async fn get_public_key(
        &self,
        caller: &Caller,
        key_ref: &str,
    ) -> Result<PublicKeyInfo, KmsError> {
        caller.note.set_key_id(key_ref);
        let info = self
            .data
            .scoped(caller.access.clone())
            .public_key(key_ref)
            .await?;
        caller.note.set_key_id(&info.key_id);
        caller.note.set_key_version_id(&info.key_version_id);
        Ok(info)
    }

    /// Hmac: HMAC-SHA256 under an HMAC key.
    pub async fn hmac(
        &self,
        caller: &Caller,
        key_ref: &str,
        message: &[u8],
    ) -> Result<Mac, KmsError> {
        caller.note.set_key_id(key_ref);
        let mac = self
            .data
            .scoped(caller.access.clone())
            .hmac(key_ref, message)
            .await?;
        caller.note.set_key_id(&mac.key_id);
        caller.note.set_key_version_id(&mac.key_version_id);
        Ok(mac)
    }

    // === client keys of the HTTPS gateway ===

    /// CreateClientKey: a client key for a principal; see [`crate::keys::client_keys`].
    pub async fn create_client_key(
        &self,
        caller: &Caller,
        params: CreateClientKeyParams<'_>,
    ) -> Result<CreatedClientKey, KmsError> {
        let created = self
            .registry_for(caller)
            .create_client_key(&self.pool, params)
            .await?;
        caller.note.set_key_id(&created.record.client_key_id);
        Ok(created)
    }

    /// ListClientKeys.
    pub async fn list_client_keys(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<ClientKeyRecord>, KmsError> {
        self.registry_for(caller).list_client_keys(page).await
    }

    /// DeleteClientKey.
    pub async fn delete_client_key(
        &self,
        caller: &Caller,
        client_key_id: &str,
    ) -> Result<(), KmsError> {
        caller.note.set_key_id(client_key_id);
        self.registry_for(caller)
            .delete_client_key(client_key_id)
            .await
    }

    /// The client key a gateway request names, if it exists and is valid now.
    ///
    /// # Errors
    ///
    /// `Ok(Err(refusal))` says why the key is refused; `Err` is a store failure.
    pub async fn valid_client_key(
        &self,
        client_key_id: &str,
    ) -> Result<Result<ClientKeyRecord, ClientKeyRefusal>, KmsError> {
        self.registry.valid_client_key(client_key_id).await
    }

    /// The core's current time (the clock it was opened with).
    pub fn now(&self) -> std::time::SystemTime {
        self.registry.now()
    }

    // === the control plane ===

    /// CreateKey. An asymmetric key's pair comes from the key pair pool (ready, or the
    /// next one a worker finishes, or generated on the blocking pool), after every
    /// parameter has been checked.
    pub async fn create_key(
        &self,
        caller: &Caller,
        params: CreateKeyParams,
    ) -> Result<KeyMetadata, KmsError> {
        let spec = KeyRegistry::check_create_params(&params)?;
        let pair = match spec.key_pair_spec() {
            Some(pair_spec) => Some(
                self.pool
                    .take(pair_spec)
                    .await
                    .map_err(KmsError::internal)?,
            ),
            None => None,
        };
        let meta = self
            .registry_for(caller)
            .create_key_with_pair(params, pair)
            .await?;
        caller.note.set_key_id(&meta.key_id);
        Ok(meta)
    }

    /// DescribeKey.
    pub async fn describe_key(
        &self,
        caller: &Caller,
        key_ref: &str,
    ) -> Result<KeyMetadata, KmsError> {
        caller.note.set_key_id(key_ref);
        noted(
            caller,
            self.registry_for(caller).describe_key(key_ref).await,
        )
    }

    /// ListKeys: only keys the caller is granted.
    pub async fn list_keys(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<String>, KmsError> {
        self.registry_for(caller).list_keys(page).await
    }

    /// EnableKey.
    pub async fn enable_key(
        &self,
        caller: &Caller,
        key_ref: &str,
    ) -> Result<KeyMetadata, KmsError> {
        caller.note.set_key_id(key_ref);
        noted(caller, self.registry_for(caller).enable_key(key_ref).await)
    }

    /// DisableKey.
    pub async fn disable_key(
        &self,
        caller: &Caller,
        key_ref: &str,
    ) -> Result<KeyMetadata, KmsError> {
        caller.note.set_key_id(key_ref);
        noted(caller, self.registry_for(caller).disable_key(key_ref).await)
    }

    /// ScheduleKeyDeletion.
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        key_ref: &str,
        pending_window_in_days: i32,
    ) -> Result<KeyMetadata, KmsError> {
        caller.note.set_key_id(key_ref);
        let result = self
            .registry_for(caller)
            .schedule_key_deletion(key_ref, pending_window_in_days)
            .await;
        noted(caller, result)
    }

    /// CancelKeyDeletion.
    pub async fn cancel_key_deletion(
        &self,
        caller: &Caller,
        key_ref: &str,
    ) -> Result<KeyMetadata, KmsError> {
        caller.note.set_key_id(key_ref);
        noted(
            caller,
            self.registry_for(caller).cancel_key_deletion(key_ref).await,
        )
    }

    /// UpdateRotationPolicy.
    pub async fn update_rotation_policy(
        &self,
        caller: &Caller,
        key_ref: &str,
        rotation: RotationRequest,
    ) -> Result<KeyMetadata, KmsError> {
        caller.note.set_key_id(key_ref);
        let result = self
            .registry_for(caller)
            .update_rotation_policy(key_ref, rotation)
            .await;
        noted(caller, result)
    }

    /// CreateAlias.
    pub async fn create_alias(
        &self,
        caller: &Caller,
        key_ref: &str,
        alias_name: &str,
    ) -> Result<AliasInfo, KmsError> {
        caller.note.set_key_id(key_ref);
        let alias = self
            .registry_for(caller)
            .create_alias(key_ref, alias_name)
            .await?;
        caller.note.set_key_id(&alias.key_id);
        Ok(alias)
    }

    /// UpdateAlias.
    pub async fn update_alias(
        &self,
        caller: &Caller,
        key_ref: &str,
        alias_name: &str,
    ) -> Result<AliasInfo, KmsError> {
        caller.note.set_key_id(key_ref);
        let alias = self
            .registry_for(caller)
            .update_alias(key_ref, alias_name)
            .await?;
        caller.note.set_key_id(&alias.key_id);
        Ok(alias)
    }

    /// DeleteAlias.
    pub async fn delete_alias(&self, caller: &Caller, alias_name: &str) -> Result<(), KmsError> {
        caller.note.set_key_id(alias_name);
        self.registry_for(caller).delete_alias(alias_name).await
    }

    /// ListAliases: all, or one key's; only those the caller is granted.
    pub async fn list_aliases(
        &self,
        caller: &Caller,
        key_ref: &str,
        page: &PageRequest,
    ) -> Result<Page<AliasInfo>, KmsError> {
        caller.note.set_key_id(key_ref);
        self.registry_for(caller).list_aliases(key_ref, page).await
    }

    /// CreateKeyVersion: rotates the key now.
    pub async fn create_key_version(
        &self,
        caller: &Caller,
        key_ref: &str,
    ) -> Result<KeyVersionInfo, KmsError> {
        caller.note.set_key_id(key_ref);
        let version = self
            .registry_for(caller)
            .create_key_version(key_ref)
            .await?;
        caller.note.set_key_id(&version.key_id);
        caller.note.set_key_version_id(&version.key_version_id);
        Ok(version)
    }

    /// ListKeyVersions.
    pub async fn list_key_versions(
        &self,
        caller: &Caller,
        key_ref: &str,
        page: &PageRequest,
    ) -> Result<Page<KeyVersionInfo>, KmsError> {
        caller.note.set_key_id(key_ref);
        self.registry_for(caller)
            .list_key_versions(key_ref, page)
            .await
    }

    /// DescribeKeyVersion.
    pub async fn describe_key_version(
        &self,
        caller: &Caller,
        key_ref: &str,
        version_id: &str,
    ) -> Result<KeyVersionInfo, KmsError> {
        caller.note.set_key_id(key_ref);
        caller.note.set_key_version_id(version_id);
        let version = self
            .registry_for(caller)
            .describe_key_version(key_ref, version_id)
            .await?;
        caller.note.set_key_id(&version.key_id);
        caller.note.set_key_version_id(&version.key_version_id);
        Ok(version)
    }
}

/// Notes the key a control-plane operation returned.
fn noted(caller: &Caller, result: Result<KeyMetadata, KmsError>) -> Result<KeyMetadata, KmsError> {
    if let Ok(meta) = &result {
        caller.note.set_key_id(&meta.key_id);
    }
    result
}

// === start-up ===

/// Loads the auth file, or warns that the server is open.
fn load_policy(config: &Config) -> Result<Option<AuthPolicy>, StartError> {
    match &config.auth_config {
        Some(path) => {
            let policy =
                AuthPolicy::load(path).map_err(|err| StartError::Invalid(err.to_string()))?;
            tracing::info!(
                path = %path.display(),
                principals = policy.principals().len(),
                "access control on"
            );
            Ok(Some(policy))
        }
        None => {
            tracing::warn!(
                "access control is OFF (no --auth-config): anyone who can connect may use \
                 and manage every key"
            );
            Ok(None)
        }
    }
}

/// Creates the data directory (mode 0700) if it does not exist.
fn ensure_data_dir(path: &Path) -> Result<(), StartError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

fn load_root_key(config: &Config) -> Result<MasterKeyMaterial, StartError> {
    match &config.root_key_file {
        Some(path) => Ok(root_key::load(path)?),
        None => {
            let path = config.root_key_path();
            let (key, created) = root_key::load_or_create(&path)?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "created a new root key next to the data: FOR DEVELOPMENT ONLY. Anyone who \
                     can read the data directory can read every key. In production keep the root \
                     key elsewhere (a Secret, a mounted file) and pass --root-key-file"
                );
            } else {
                tracing::warn!(
                    path = %path.display(),
                    "using the root key stored next to the data: for development only; pass \
                     --root-key-file in production"
                );
            }
            Ok(key)
        }
    }
}
