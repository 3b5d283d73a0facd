//! The core: one [`Kms`] built once from the [`Config`], holding what every transport
//! and every operation shares: the key registry (over the store), the data plane, the
//! key pair pool, the key pair throttle, the access policy, the audit log, the metrics
//! and the maintenance task. The server, the benchmark and the tests build it the same
//! way, with [`Kms::open`], and stop it with [`Kms::shutdown`].
//!
//! It offers handles, not operations: an operation's handler (`crate::api`) takes the
//! domain as its caller ([`Kms::data_plane`], [`Kms::keys`]) and notes in the caller's
//! [`crate::call::CallNote`] what it touched.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::auth::AuthPolicy;
use crate::backup::Backups;
use crate::call::Caller;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::secret::MasterKeyMaterial;
use crate::data_plane::DataPlane;
use crate::keypool::KeyPairPool;
use crate::keys::custody::RootKeyCustody;
use crate::keys::maintenance::{self, PassCounter};
use crate::keys::{self, KeyRegistry, OpenError, root_key};
use crate::metrics::Metrics;
use crate::secrets::Secrets;
use crate::store::StoreSettings;
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
    /// The root key's custody (an HSM) did not open it.
    #[error(transparent)]
    RootKeyCustody(#[from] crate::keys::custody::CustodyError),
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
    /// The access policy, replaced whole by a reload ([`Kms::replace_policy`]).
    policy: Option<Arc<std::sync::RwLock<Arc<AuthPolicy>>>>,
    audit: Option<AuditLog>,
    metrics: Metrics,
    maintenance: PassCounter,
    stop: watch::Sender<bool>,
    maintenance_task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Where Backup writes its snapshot: the data directory.
    data_dir: Arc<std::path::PathBuf>,
    client_key_max_validity: std::time::Duration,
    /// Backups in progress and their bounds.
    backups: Backups,
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
        Self::open_with_root_key(config, clock, None).await
    }

    /// [`Self::open`] with the root key opened already (`Some`, by a server that waited
    /// for its custody, [`crate::server`]), instead of loading it from the config.
    ///
    /// # Errors
    ///
    /// As [`Self::open`].
    pub async fn open_with_root_key(
        config: &Config,
        clock: Arc<dyn Clock>,
        root_key: Option<MasterKeyMaterial>,
    ) -> Result<Self, StartError> {
        config
            .check_combinations()
            .map_err(|err| StartError::Invalid(err.to_string()))?;
        let throttle = KeyPairThrottle::new(config.keypair_concurrency)
            .map_err(|err| StartError::Invalid(err.to_string()))?;
        let policy =
            load_policy(config)?.map(|policy| Arc::new(std::sync::RwLock::new(Arc::new(policy))));
        let audit = match &config.audit_log {
            Some(path) => Some(
                AuditLog::open(path, config.audit_required, &config.replica).map_err(|err| {
                    StartError::Invalid(format!(
                        "cannot open the audit log {}: {err}",
                        path.display()
                    ))
                })?,
            ),
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
        let root_key = match root_key {
            Some(key) => key,
            None => load_root_key(config).await?,
        };
        let registry = keys::open_registry(&settings, root_key, clock).await?;
        tracing::info!(store = %settings, "key store open");
        if let Some(seed) = &seed {
            let (keys, aliases) = seed
                .apply(&registry)
                .await
                .map_err(|err| StartError::Invalid(err.to_string()))?;
            let secrets = crate::secrets::apply_seed(&registry, seed.secrets())
                .await
                .map_err(|err| {
                    StartError::Invalid(format!("seed file {}: {}", seed.path(), err.detail()))
                })?;
            tracing::info!(
                keys,
                aliases,
                secrets,
                "seed file applied: created what was missing"
            );
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
        metrics.register(audit.as_ref().map(AuditLog::failures).unwrap_or_default());
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
            client_key_max_validity: config.client_key_max_validity,
            backups: Backups::default(),
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
            tracing::error!(audit_log = %log.target(), "AUDIT: could not flush the audit log at shutdown");
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

    /// The access policy now; `None` when access control is off. A call reads it once
    /// and is judged by it to the end, even if a reload replaces it meanwhile.
    pub fn policy(&self) -> Option<Arc<AuthPolicy>> {
        self.policy.as_ref().map(|current| {
            Arc::clone(
                &current
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        })
    }

    /// Replaces the access policy (a reload of `--auth-config`): calls from now on are
    /// judged by `policy`. Returns `false`, replacing nothing, when access control is
    /// off: a reload cannot turn it on.
    pub fn replace_policy(&self, policy: AuthPolicy) -> bool {
        let Some(current) = &self.policy else {
            return false;
        };
        *current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
        true
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

    /// The data plane acting as `caller`: it checks the caller's key grants.
    pub fn data_plane(&self, caller: &Caller) -> DataPlane {
        self.data
            .scoped(caller.access.clone())
            .using_version(caller.migration_version.clone())
    }

    /// The key registry acting as `caller`: it checks the caller's key grants.
    pub fn keys(&self, caller: &Caller) -> KeyRegistry {
        self.registry.scoped(caller.access.clone())
    }

    /// The secrets acting as `caller`: they check the caller's secret grants.
    pub fn secrets(&self, caller: &Caller) -> Secrets {
        Secrets::new(self.registry.clone(), caller.access.clone())
    }

    /// The longest validity of a client key (`--client-key-max-validity-days`).
    pub fn client_key_max_validity(&self) -> std::time::Duration {
        self.client_key_max_validity
    }

    /// The data directory, where Backup writes its snapshot.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Backups in progress: at most [`crate::backup::MAX_CONCURRENT_BACKUPS`], each
    /// streamed within its deadline.
    pub fn backups(&self) -> &Backups {
        &self.backups
    }
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

/// Logs which custody opened the root key, and how long it took.
pub fn log_unwrapped(custody: &RootKeyCustody, elapsed: std::time::Duration) {
    let elapsed_ms = elapsed.as_millis() as u64;
    match custody {
        RootKeyCustody::File(_) => {}
        RootKeyCustody::Pkcs11 { uri, .. } => tracing::info!(
            token = %uri.token_description(),
            object = %uri.object,
            elapsed_ms,
            "root key unwrapped by the HSM key"
        ),
        RootKeyCustody::Kms { target, .. } => tracing::info!(
            kms = %format!("{}:{}", target.host, target.port),
            key_id = %target.key_id,
            elapsed_ms,
            "root key unwrapped by the other KMS's key"
        ),
    }
}

async fn load_root_key(config: &Config) -> Result<MasterKeyMaterial, StartError> {
    match config.root_key_custody() {
        Some(custody) => {
            let started = std::time::Instant::now();
            let key = custody.load().await?;
            log_unwrapped(&custody, started.elapsed());
            Ok(key)
        }
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
