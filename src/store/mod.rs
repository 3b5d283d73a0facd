//! The durable key store: the [`KeyStore`] trait and its backends.
//!
//! The store keeps records only; it knows nothing of crypto, states or rules. Key
//! material arrives already sealed under the root key ([`SealedMaterial`]), so no
//! backend ever sees it in plaintext. Every write is acknowledged only once it is
//! durable. Backends: [`redb`] (embedded, the default) and [`postgres`] (`--store URL`,
//! one database behind many replicas); nothing SQL- or file-shaped leaks past the trait.
//!
//! Concurrency: key records carry a `revision`; updates name the revision they were
//! read at and fail with [`StoreError::Conflict`] if another writer got there first,
//! so read-modify-write is safe across threads and, later, replicas.
//!
//! The one door: [`StoreSettings`] names a backend, [`open`] opens it, and
//! [`peek_meta`] reads one metadata value without changing anything, so startup checks
//! (the root key) can refuse before the store is opened for writing. Adding a backend
//! is one [`StoreSettings`] variant and one match arm in each; it must pass the
//! backend-independent suite in `conformance.rs`.

#[cfg(test)]
pub(crate) mod conformance;
pub mod postgres;
pub mod redb;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use postgres::PostgresSettings;

// === the door ===

/// Which backend holds the keys, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSettings {
    /// The embedded redb store: one file in `data_dir`, which must exist.
    Embedded {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A PostgreSQL database shared by any number of replicas (`--store URL`).
    Postgres(PostgresSettings),
}

impl fmt::Display for StoreSettings {
    /// For logs: where the store is, without secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded { data_dir } => write!(f, "embedded store in {}", data_dir.display()),
            Self::Postgres(settings) => write!(f, "PostgreSQL store at {settings}"),
        }
    }
}

/// Opens the store `settings` names, for reading and writing.
///
/// Opening may write (redb recovers a file left by a crash; a new store gets its
/// tables), so a check that must leave the store untouched reads with [`peek_meta`]
/// first. Fails with [`StoreError::Backend`] if the store cannot be opened, e.g.
/// because another process holds the embedded store.
pub async fn open(settings: &StoreSettings) -> StoreResult<Arc<dyn KeyStore>> {
    match settings {
        StoreSettings::Embedded { data_dir } => {
            let data_dir = data_dir.clone();
            let store = redb::blocking(move || redb::RedbStore::open(&data_dir)).await?;
            Ok(Arc::new(store))
        }
        StoreSettings::Postgres(settings) => Ok(Arc::new(postgres::PgStore::open(settings).await?)),
    }
}

/// Compacts the store `settings` names, which no process may have open, so that
/// space freed by deletions (destroyed keys' sealed material among it) is given back
/// and no longer in the file (PostgreSQL: `VACUUM FULL` of kmsd's tables, which drops
/// the dead row versions that still held old sealings). Returns the size before and
/// after, in bytes.
/// [`StoreError::Backend`] if the store cannot be opened (e.g. a server holds it).
pub async fn compact(settings: &StoreSettings) -> StoreResult<(u64, u64)> {
    match settings {
        StoreSettings::Embedded { data_dir } => {
            let data_dir = data_dir.clone();
            redb::blocking(move || redb::RedbStore::compact_file(&data_dir)).await
        }
        StoreSettings::Postgres(settings) => postgres::compact(settings).await,
    }
}

/// Reads the metadata value `name` without changing anything in the store: `None` if
/// there is no such value, or no store yet. [`StoreError::Backend`] if the store
/// exists but cannot be read.
pub async fn peek_meta(settings: &StoreSettings, name: &str) -> StoreResult<Option<Vec<u8>>> {
    match settings {
        StoreSettings::Embedded { data_dir } => {
            let data_dir = data_dir.clone();
            let name = name.to_owned();
            redb::blocking(move || redb::RedbStore::peek_meta(&data_dir, &name)).await
        }
        StoreSettings::Postgres(settings) => postgres::peek_meta(settings, name.to_owned()).await,
    }
}

// === errors ===

/// The error of a backend's driver, file system or runtime.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record was changed by another writer since it was read; re-read and retry.
    #[error("the record was modified concurrently")]
    Conflict,
    /// A record with this name already exists.
    #[error("the record already exists")]
    AlreadyExists,
    /// [`KeyStore::create_once`]: a live record of this idempotency token exists (an
    /// earlier call, or a racing one that committed first); nothing was written. Read
    /// it with [`KeyStore::get_idempotency`].
    #[error("the idempotency token is taken")]
    TokenTaken,
    /// The record (or the key it refers to) does not exist.
    #[error("the record does not exist")]
    NotFound,
    /// The backend failed (I/O, corruption, ...) while doing `context`; the source is
    /// the backend's own error. For the log only.
    #[error("store backend failure while {context}")]
    Backend {
        /// What the store was doing, e.g. `committing`.
        context: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The backend cannot be reached now (a database outage, a connection lost, no free
    /// connection or a statement over its time limit) while doing `context`: nothing
    /// was acknowledged, and the same call may succeed later. Callers see UNAVAILABLE.
    #[error("store unavailable while {context}")]
    Unavailable {
        /// What the store was doing.
        context: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// A [`StoreError::Backend`]: `source` failed while the store was doing `context`.
    pub fn backend(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            context,
            source: source.into(),
        }
    }

    /// A [`StoreError::Unavailable`]: the backend could not be reached while doing
    /// `context`.
    pub fn unavailable(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            context,
            source: source.into(),
        }
    }

    /// This error and each of its sources, joined by `: `: the whole story on one line,
    /// for a log field or a message printed once.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(err) = next {
            out.push_str(": ");
            out.push_str(&err.to_string());
            next = err.source();
        }
        out
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// What [`KeyStore::reseal_all`] calls for each version: its material sealed anew, or
/// an error that aborts the whole change.
pub type Resealer = Box<dyn FnMut(&VersionRecord) -> Result<SealedMaterial, BoxError> + Send>;

/// The lifecycle state of a key, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable for every operation.
    Enabled,
    /// Refuses crypto operations until enabled again.
    Disabled,
    /// Refuses crypto operations; destroyed when its deletion window ends.
    PendingDeletion,
}

impl KeyState {
    /// The state as the public API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
        }
    }
}

/// A master key's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `key-` followed by lowercase letters and digits.
    pub key_id: String,
    /// The key spec, e.g. `Aliyun_AES_256`.
    pub key_spec: String,
    /// The key usage, e.g. `ENCRYPT/DECRYPT`.
    pub key_usage: String,
    /// The lifecycle state.
    pub state: KeyState,
    /// Free text given at creation.
    pub description: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// The first version: used by the plain (non-Advance) operations forever.
    pub initial_version_id: String,
    /// The newest version: used by the Advance operations.
    pub primary_version_id: String,
    /// Automatic rotation interval in seconds; `None` when automatic rotation is off.
    pub rotation_interval_secs: Option<u64>,
    /// When the primary version was created, Unix milliseconds.
    pub last_rotation_ms: u64,
    /// When a pending deletion destroys the key, Unix milliseconds.
    pub delete_at_ms: Option<u64>,
    /// Bumped by every update; see the module docs.
    pub revision: u64,
}

/// Key material sealed under the root key (AES-256-GCM; see `docs/ciphertext.md`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedMaterial {
    /// The 12-byte GCM IV.
    pub iv: Vec<u8>,
    /// GCM ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedMaterial(..)")
    }
}

/// One version of a master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The key it belongs to.
    pub key_id: String,
    /// A UUID in its 36-character text form.
    pub version_id: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// The version's AES-256 material, sealed under the root key.
    pub material: SealedMaterial,
}

/// An alias bound to a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// `alias/...`.
    pub alias_name: String,
    /// The key it points at.
    pub key_id: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Last time it was pointed at a key, Unix milliseconds.
    pub updated_at_ms: u64,
}

/// A client key of the official SDKs' HTTPS protocol: its ID, the principal it acts
/// as, its validity, and only its public key (the private key went to the caller once,
/// in a password-protected PKCS#12, and was never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKeyRecord {
    /// `KAAP.` followed by a UUID: the SDK's `KeyId` and `x-kms-acccesskeyid`.
    pub client_key_id: String,
    /// The principal the key acts as (a name of the auth file, when there is one).
    pub principal: String,
    /// The RSA public key, PKCS#1 `RSAPublicKey` DER.
    pub public_key_der: Vec<u8>,
    /// Not valid before this time, Unix milliseconds.
    pub not_before_ms: u64,
    /// Not valid after this time, Unix milliseconds.
    pub not_after_ms: u64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// The principal that minted the key; empty when minted without access control
    /// (or before kmsd recorded it).
    #[serde(default)]
    pub minted_by: String,
    /// The access-control configuration the key was minted under.
    #[serde(default)]
    pub minted_under: MintedUnder,
    /// HMAC-SHA256 over the other fields under a key derived from the root key
    /// (`keys::record_mac`); empty in rows written before kmsd signed them.
    #[serde(default)]
    pub mac: Vec<u8>,
}

/// The access-control configuration a client key was minted under: what decides
/// whether the gateway accepts it under the server's configuration now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MintedUnder {
    /// Not recorded: minted before kmsd recorded it.
    #[default]
    Unknown,
    /// Without `--auth-config`: anyone who could connect could mint it.
    Open,
    /// Under an access policy, by the principal `minted_by`.
    Policy,
    /// Re-admitted by the operator (`kmsd readmit-client-key`) after it was minted
    /// without a policy, or before kmsd recorded how.
    Readmitted,
}

impl MintedUnder {
    /// As stored and as `ListClientKeys` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Open => "open",
            Self::Policy => "policy",
            Self::Readmitted => "readmitted",
        }
    }

    /// The value [`Self::as_str`] gives; anything else is [`Self::Unknown`].
    pub fn parse(text: &str) -> Self {
        match text {
            "open" => Self::Open,
            "policy" => Self::Policy,
            "readmitted" => Self::Readmitted,
            _ => Self::Unknown,
        }
    }
}

/// A secret: its metadata, and its versions with their data sealed under its master
/// key (`secrets::envelope`), never in plaintext. One record, written whole, so a new
/// version, its stages and the versions it pushes out change in one write; it holds at
/// most the staged versions and `secrets::MAX_UNSTAGED_VERSIONS` more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// 1 to 192 of `[A-Za-z0-9/_+=.@-]`.
    pub secret_name: String,
    /// `Generic`.
    pub secret_type: String,
    /// Free text.
    pub description: String,
    /// The master key (its ID) whose versions seal the data keys.
    pub encryption_key_id: String,
    /// A JSON object, returned only when asked for; `None` when not given.
    pub extended_config: Option<String>,
    /// Whether automatic rotation is on (recorded; kmsd cannot invent a Generic value).
    pub automatic_rotation: bool,
    /// The rotation interval in seconds, when set.
    pub rotation_interval_secs: Option<u64>,
    /// When the current version was made current, Unix milliseconds.
    pub last_rotation_ms: u64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Last change of metadata or versions, Unix milliseconds.
    pub updated_at_ms: u64,
    /// When a scheduled deletion removes the secret, Unix milliseconds.
    pub delete_at_ms: Option<u64>,
    /// The versions, oldest first.
    pub versions: Vec<SecretVersionRecord>,
    /// Bumped by every update, as for keys (see the module docs).
    pub revision: u64,
}

/// One version of a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersionRecord {
    /// Caller-chosen or generated; unique within the secret.
    pub version_id: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// `text` or `binary`.
    pub data_type: String,
    /// The stages on this version (`ACSCurrent`, `ACSPrevious`, custom ones).
    pub stages: Vec<String>,
    /// The data, sealed.
    pub sealed: SealedSecretData,
}

/// A secret version's data under its envelope: a fresh data key sealed under a master
/// key version, and the data sealed under that data key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecretData {
    /// The master key version that sealed the data key.
    pub key_version_id: String,
    /// The data key's IV.
    pub key_iv: Vec<u8>,
    /// The data key, sealed (salted construction).
    pub sealed_key: Vec<u8>,
    /// The data's IV.
    pub data_iv: Vec<u8>,
    /// The data, sealed under the data key (salted construction).
    pub sealed_data: Vec<u8>,
}

impl std::fmt::Debug for SealedSecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecretData")
            .field("key_version_id", &self.key_version_id)
            .finish_non_exhaustive()
    }
}

/// A creation made with an idempotency token: the token, whom and what it is scoped to,
/// a MAC of the request it came with (never the request: it may hold secret data), and
/// what the creation made. Written in the same transaction as the object it made, so a
/// token names one object or none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The operation, e.g. `CreateKey`.
    pub operation: String,
    /// The caller's principal; empty without access control.
    pub principal: String,
    /// The caller's token: 1 to 64 printable ASCII characters.
    pub token: String,
    /// HMAC-SHA256 of the request without its token, under a key derived from the root
    /// key: the same token with other parameters is told apart, and nothing about a
    /// secret's value can be guessed from it.
    pub request_mac: Vec<u8>,
    /// What the first call made: a key ID, `<key_id>/<version_id>`, `<secret>/<version>`
    /// or a client key ID.
    pub outcome: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// From this time on the token is free again, Unix milliseconds.
    pub expires_at_ms: u64,
}

/// What [`KeyStore::create_once`] creates, as the plain insert methods would.
#[derive(Clone, Debug)]
pub enum Creation {
    /// [`KeyStore::insert_key`]'s key and initial version.
    Key(KeyRecord, VersionRecord),
    /// [`KeyStore::add_version`]'s key (at its next revision) and new version.
    Version(KeyRecord, VersionRecord),
    /// [`KeyStore::insert_secret`]'s secret.
    Secret(SecretRecord),
    /// [`KeyStore::insert_client_key`]'s client key.
    ClientKey(ClientKeyRecord),
}

/// How much the store holds (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Keys in any state.
    pub keys: u64,
    /// Versions of all keys.
    pub versions: u64,
    /// Aliases.
    pub aliases: u64,
}

/// A durable home for keys, versions, aliases and a little metadata.
///
/// Every method that writes returns only after the change is durable. Methods that
/// name a key revision fail with [`StoreError::Conflict`] when the stored key has moved
/// on. Lists are ordered by name and start strictly after `after`.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug + 'static {
    /// Adds a new key with its first version. [`StoreError::AlreadyExists`] if the ID
    /// is taken.
    async fn insert_key(&self, key: &KeyRecord, initial: &VersionRecord) -> StoreResult<()>;

    /// The key with this ID.
    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>>;

    /// Up to `limit` keys ordered by ID, after `after`.
    async fn list_keys(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>>;

    /// Replaces a key whose stored revision is `key.revision - 1`.
    async fn update_key(&self, key: &KeyRecord) -> StoreResult<()>;

    /// Replaces a key as [`update_key`](Self::update_key) does and adds `version` to
    /// it, in one transaction.
    async fn add_version(&self, key: &KeyRecord, version: &VersionRecord) -> StoreResult<()>;

    /// One version of a key.
    async fn get_version(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> StoreResult<Option<VersionRecord>>;

    /// A version found by its ID alone (version IDs are unique across keys), as the
    /// self-describing ciphertexts name only the version.
    async fn find_version(&self, version_id: &str) -> StoreResult<Option<VersionRecord>>;

    /// Every version of a key, oldest first.
    async fn list_versions(&self, key_id: &str) -> StoreResult<Vec<VersionRecord>>;

    /// Destroys a key, its versions and its aliases for good, in one transaction, if
    /// the stored key is still at `revision` (else [`StoreError::Conflict`]: e.g. its
    /// deletion was cancelled meanwhile). Returns false if there was no such key.
    async fn destroy_key(&self, key_id: &str, revision: u64) -> StoreResult<bool>;

    /// Adds an alias. [`StoreError::AlreadyExists`] if the name is taken,
    /// [`StoreError::NotFound`] if its key does not exist.
    async fn insert_alias(&self, alias: &AliasRecord) -> StoreResult<()>;

    /// Re-points an existing alias. [`StoreError::NotFound`] if the alias or its new
    /// key does not exist.
    async fn update_alias(&self, alias: &AliasRecord) -> StoreResult<()>;

    /// Removes an alias; false if there was none.
    async fn delete_alias(&self, alias_name: &str) -> StoreResult<bool>;

    /// The alias with this name.
    async fn get_alias(&self, alias_name: &str) -> StoreResult<Option<AliasRecord>>;

    /// Up to `limit` aliases ordered by name after `after`, optionally only those of
    /// one key.
    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AliasRecord>>;

    /// Adds a client key. [`StoreError::AlreadyExists`] if the ID is taken.
    async fn insert_client_key(&self, key: &ClientKeyRecord) -> StoreResult<()>;

    /// The client key with this ID.
    async fn get_client_key(&self, client_key_id: &str) -> StoreResult<Option<ClientKeyRecord>>;

    /// Up to `limit` client keys ordered by ID, after `after`.
    async fn list_client_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<ClientKeyRecord>>;

    /// Replaces the client key with `key`'s ID by `key`; false if there was none.
    async fn replace_client_key(&self, key: &ClientKeyRecord) -> StoreResult<bool>;

    /// Removes a client key; false if there was none.
    async fn delete_client_key(&self, client_key_id: &str) -> StoreResult<bool>;

    /// A metadata value (e.g. the root key check).
    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Sets a metadata value unless it exists; returns whether it was set.
    async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<bool>;

    /// Adds a secret. [`StoreError::AlreadyExists`] if the name is taken.
    async fn insert_secret(&self, secret: &SecretRecord) -> StoreResult<()>;

    /// The secret with this name.
    async fn get_secret(&self, secret_name: &str) -> StoreResult<Option<SecretRecord>>;

    /// Up to `limit` secrets ordered by name, after `after`.
    async fn list_secrets(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<SecretRecord>>;

    /// Replaces a secret whose stored revision is `secret.revision - 1`
    /// ([`StoreError::Conflict`] otherwise, [`StoreError::NotFound`] if there is none).
    async fn update_secret(&self, secret: &SecretRecord) -> StoreResult<()>;

    /// Removes a secret with its versions if the stored one is still at `revision`
    /// (else [`StoreError::Conflict`]). Returns false if there was no such secret.
    async fn delete_secret(&self, secret_name: &str, revision: u64) -> StoreResult<bool>;

    /// Claims `token` and makes `creation` in one transaction: either both are
    /// written or neither. [`StoreError::TokenTaken`] if a record of the token's
    /// operation, principal and token exists that has not expired at
    /// `token.created_at_ms` (an expired one is replaced); otherwise the errors of the
    /// insert method `creation` stands for.
    async fn create_once(&self, token: &IdempotencyRecord, creation: Creation) -> StoreResult<()>;

    /// The record of a token, expired or not.
    async fn get_idempotency(
        &self,
        operation: &str,
        principal: &str,
        token: &str,
    ) -> StoreResult<Option<IdempotencyRecord>>;

    /// Removes the token records expired at `now_ms`; returns how many.
    async fn purge_idempotency(&self, now_ms: u64) -> StoreResult<u64>;

    /// Counts of what the store holds.
    async fn counts(&self) -> StoreResult<StoreCounts>;

    /// Replaces the sealed material of every version with what `reseal` makes of it,
    /// and sets (replacing) each metadata value of `meta`, in one transaction: either
    /// everything changed or nothing did. An error from `reseal` aborts it and comes
    /// back as [`StoreError::Backend`]. Returns the number of versions resealed. For
    /// root key rotation (`kmsd rotate-root-key`), with no server running.
    async fn reseal_all(&self, reseal: Resealer, meta: Vec<(String, Vec<u8>)>) -> StoreResult<u64>;

    /// Writes a consistent snapshot of the whole store (every table as of one moment)
    /// to the new, empty file `path`, while the store keeps serving: an online backup.
    /// The snapshot holds what the store holds: records and material sealed under the
    /// root key, never the root key. Returns `false` when this backend is not backed up
    /// this way (a database server's data is backed up with the database's own tools);
    /// that is the default.
    async fn snapshot(&self, path: &std::path::Path) -> StoreResult<bool> {
        let _ = path;
        Ok(false)
    }

    // === many replicas over one store ===
    //
    // Defaults for a store that one process holds alone (the embedded store): always
    // available once open, nobody else changes it, maintenance is always ours.

    /// Whether the store can serve now ([`StoreError::Unavailable`] if not); health
    /// checks ask it every second, so it must be cheap and bounded in time.
    async fn check_available(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Changes committed to keys, aliases and secrets by any process, this one included, as
    /// they happen; `None` for a store no other process can change. Receivers that
    /// lag, or a lost connection, see [`StoreChange::Missed`].
    fn watch_changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        None
    }

    /// Tries to become, for one maintenance pass, the one process that rotates and
    /// destroys keys: `Some` lease if this process may (drop it when the pass ends),
    /// `None` if another process holds it now.
    async fn try_lease_maintenance(&self) -> StoreResult<Option<MaintenanceLease>> {
        Ok(Some(MaintenanceLease::sole()))
    }
}

/// A change committed to the store, announced to every process that watches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    /// A key changed (state, rotation, a new version, deletion scheduled) or was added.
    Key(String),
    /// A key was destroyed, with its versions and aliases.
    KeyDestroyed(String),
    /// An alias was created, re-pointed or deleted.
    Alias(String),
    /// A secret was created, changed or deleted.
    Secret(String),
    /// Changes may have been missed (a lost connection, a lagging receiver): whatever
    /// was cached from the store may be stale.
    Missed,
}

/// The right to run one maintenance pass; see [`KeyStore::try_lease_maintenance`].
/// Dropping it gives the right up.
pub struct MaintenanceLease(#[allow(dead_code)] Option<Box<dyn Send>>);

impl MaintenanceLease {
    /// The lease of a store one process holds alone: nothing to give back.
    pub fn sole() -> Self {
        Self(None)
    }

    /// A lease held as long as `guard` lives (e.g. a database session holding a lock).
    pub fn held_by(guard: impl Send + 'static) -> Self {
        Self(Some(Box::new(guard)))
    }
}

impl fmt::Debug for MaintenanceLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaintenanceLease")
    }
}
