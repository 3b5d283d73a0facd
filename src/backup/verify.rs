//! `kmsd backup verify`: a backup checked offline, the way a restore would use it.
//!
//! The snapshot is copied into a private temporary directory (the file itself is never
//! opened for writing: an older store format would be migrated on open) and opened
//! like a data directory: its format must be one this build reads, the root key must
//! be the one it was sealed under, every key version's material must unseal, every
//! alias must name a key, every secret version must open under its master key, and
//! client keys are counted by whether their MAC verifies.
//! What a restore of it would serve is then known before anyone needs it.

use std::path::Path;

use crate::crypto::secret::MasterKeyMaterial;
use crate::keys::{material_at_rest, record_mac::RecordMac, root_key};
use crate::secrets::envelope;
use crate::store::redb::DB_FILE_NAME;
use crate::store::{self, StoreError, StoreSettings};

/// Records read per store call.
const PAGE: usize = 500;

/// What a verified backup holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Keys in any state.
    pub keys: u64,
    /// Key versions, each of whose material unsealed.
    pub versions: u64,
    /// Aliases, each naming a key of the backup.
    pub aliases: u64,
    /// Secrets in any state.
    pub secrets: u64,
    /// Secret versions, each of whose data opened under its master key version.
    pub secret_versions: u64,
    /// Client keys whose MAC verifies under the root key.
    pub client_keys: u64,
    /// Client keys whose MAC does not verify (refused by a server until re-admitted).
    pub client_keys_unverified: u64,
}

/// Why a backup did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file cannot be read or copied.
    #[error("cannot read the backup: {0}")]
    Read(#[source] std::io::Error),
    /// The snapshot is not a store this build can open (corrupt, truncated, newer).
    #[error("the backup does not open as a key store: {}", .0.chain())]
    Store(#[from] StoreError),
    /// The snapshot has no root key check: not a kmsd store.
    #[error("the backup holds no root key check: not a kmsd store, or an empty one")]
    NoCheck,
    /// The root key given is not the one the backup is sealed under.
    #[error("the root key does not match this backup (check --root-key-file)")]
    WrongRootKey,
    /// A version's material does not unseal: the backup is damaged.
    #[error(
        "the material of version {version_id} of key {key_id} does not unseal: the backup is damaged"
    )]
    Damaged {
        /// The key.
        key_id: String,
        /// The version.
        version_id: String,
    },
    /// A secret version does not open under the master key version it names.
    #[error(
        "version {version_id} of secret {secret_name} does not open under its master key: \
         the backup is damaged"
    )]
    DamagedSecret {
        /// The secret.
        secret_name: String,
        /// The version.
        version_id: String,
    },
    /// An alias names a key the backup does not hold.
    #[error("alias {alias_name} names key {key_id}, which the backup does not hold")]
    DanglingAlias {
        /// The alias.
        alias_name: String,
        /// The key it names.
        key_id: String,
    },
}

/// Checks the backup `snapshot` under `root_key`; see the module docs.
pub async fn verify(
    snapshot: &Path,
    root_key: &MasterKeyMaterial,
) -> Result<Verified, VerifyError> {
    let dir = tempfile::tempdir().map_err(VerifyError::Read)?;
    std::fs::copy(snapshot, dir.path().join(DB_FILE_NAME)).map_err(VerifyError::Read)?;
    let settings = StoreSettings::Embedded {
        data_dir: dir.path().to_path_buf(),
    };
    match store::peek_meta(&settings, root_key::CHECK_ENTRY).await? {
        None => return Err(VerifyError::NoCheck),
        Some(check) if root_key::check_matches(&check, root_key) => {}
        Some(_) => return Err(VerifyError::WrongRootKey),
    }
    let store = store::open(&settings).await?;
    let mut verified = Verified::default();
    let mut after: Option<String> = None;
    loop {
        let keys = store.list_keys(after.as_deref(), PAGE).await?;
        let Some(last) = keys.last() else { break };
        after = Some(last.key_id.clone());
        for key in keys {
            verified.keys += 1;
            for version in store.list_versions(&key.key_id).await? {
                material_at_rest::open(
                    root_key,
                    &version.key_id,
                    &version.version_id,
                    &version.material,
                )
                .map_err(|_| VerifyError::Damaged {
                    key_id: version.key_id.clone(),
                    version_id: version.version_id.clone(),
                })?;
                verified.versions += 1;
            }
        }
    }
    let mut after: Option<String> = None;
    loop {
        let aliases = store.list_aliases(None, after.as_deref(), PAGE).await?;
        let Some(last) = aliases.last() else { break };
        after = Some(last.alias_name.clone());
        for alias in aliases {
            if store.get_key(&alias.key_id).await?.is_none() {
                return Err(VerifyError::DanglingAlias {
                    alias_name: alias.alias_name,
                    key_id: alias.key_id,
                });
            }
            verified.aliases += 1;
        }
    }
    let mut after: Option<String> = None;
    loop {
        let secrets = store.list_secrets(after.as_deref(), PAGE).await?;
        let Some(last) = secrets.last() else { break };
        after = Some(last.secret_name.clone());
        for secret in secrets {
            verified.secrets += 1;
            for version in &secret.versions {
                let damaged = || VerifyError::DamagedSecret {
                    secret_name: secret.secret_name.clone(),
                    version_id: version.version_id.clone(),
                };
                let key_version_id = &version.sealed.key_version_id;
                let master = store
                    .get_version(&secret.encryption_key_id, key_version_id)
                    .await?
                    .ok_or_else(damaged)?;
                let material = material_at_rest::open(
                    root_key,
                    &master.key_id,
                    &master.version_id,
                    &master.material,
                )
                .map_err(|_| damaged())?;
                let material = MasterKeyMaterial::from_bytes(&material).map_err(|_| damaged())?;
                envelope::open(
                    &material,
                    &secret.secret_name,
                    &version.version_id,
                    &version.sealed,
                )
                .map_err(|_| damaged())?;
                verified.secret_versions += 1;
            }
        }
    }
    let mac = RecordMac::new(root_key);
    let mut after: Option<String> = None;
    loop {
        let page = store.list_client_keys(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.client_key_id.clone());
        for record in page {
            if mac.verifies(&record) {
                verified.client_keys += 1;
            } else {
                verified.client_keys_unverified += 1;
            }
        }
    }
    Ok(verified)
}
