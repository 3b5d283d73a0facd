//! The data plane: the operations that use a master key's material, independent of
//! any transport.
//!
//! - [`key_pairs`]: the four Generate*DataKeyPair* operations.
//! - [`symmetric`]: Encrypt, AdvanceEncrypt, GenerateDataKey, AdvanceGenerateDataKey.
//! - [`decrypt`]: Decrypt (the plain form) and AdvanceDecrypt (the self-describing form)
//!   of every ciphertext the data plane makes.
//! - [`rsa_encryption`]: Encrypt and Decrypt under an RSA encryption key (RSAES-OAEP),
//!   chosen by their `Algorithm`.
//! - [`random`]: GenerateRandom and Hash, which name no key.
//! - [`signatures`]: Sign, Verify, GetPublicKey (asymmetric keys) and Hmac (HMAC keys).
//! - [`params`]: the parameter checks they share; pure, so the fuzz targets drive them.
//!
//! A call flows: validate the parameters → resolve the key (must be Enabled, and
//! granted to the caller) → pick the version (initial for the plain operations, primary
//! for the Advance ones) → open its material → seal or open. Every failure to open a
//! ciphertext is [`KmsError::DecryptionFailed`], one message. A key whose usage does not
//! fit the operation (a signing key asked to encrypt, an AES key asked to sign) is
//! `Rejected.UnsupportedOperation`.

pub mod decrypt;
pub mod key_pairs;
pub mod params;
pub mod random;
pub mod rsa_encryption;
pub mod signatures;
pub mod symmetric;

use crate::auth::Access;
use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;
use crate::keypool::KeyPairPool;
use crate::keys::KeyRegistry;
use crate::keys::model::KeySpec;
use crate::store::KeyRecord;
use kmsd_api::ops::Operation;

pub use decrypt::{DecryptParams, Decrypted};
pub use key_pairs::{GenerateParams, GeneratedKeyPair, SealWith};
pub use params::ALGORITHM_AES_GCM;
pub use random::HashAlgorithm;
pub use signatures::{
    Mac, MessageType, PublicKeyInfo, SignParams, SignatureContext, Signed, Verified, VerifyParams,
};
pub use symmetric::{DataKeyParams, EncryptParams, Encrypted, GeneratedDataKey};

/// The data plane over a registry and a key pair pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DataPlane {
    registry: KeyRegistry,
    pool: KeyPairPool,
    /// The key version the caller named ([`Self::using_version`]).
    migration_version: Option<String>,
}

impl DataPlane {
    /// The data plane over `registry` (for keys and material) and `pool` (for fresh
    /// key pairs).
    pub fn new(registry: KeyRegistry, pool: KeyPairPool) -> Self {
        Self {
            registry,
            pool,
            migration_version: None,
        }
    }

    /// The data plane acting for `access`: keys outside its grants are refused with
    /// [`KmsError::PermissionDenied`] before they are read (see
    /// [`KeyRegistry::scoped`]). AdvanceDecrypt without a `KeyId` checks the key that
    /// owns the blob's version.
    pub fn scoped(&self, access: Access) -> Self {
        Self {
            registry: self.registry.scoped(access),
            pool: self.pool.clone(),
            migration_version: None,
        }
    }

    /// The data plane using the key version a transfer client named
    /// (`x-kms-migrationkeyversionid`, [`crate::call::Caller::migration_version`]):
    /// Decrypt opens with it (its `KeyId` optional), the sealing calls seal with it,
    /// and the asymmetric and HMAC calls refuse a key it is not a version of.
    pub fn using_version(mut self, version: Option<String>) -> Self {
        self.migration_version = version;
        self
    }

    /// The version of `key` a call uses: `default`, unless the caller named one
    /// ([`Self::using_version`]), which must then be a version of `key`.
    ///
    /// # Errors
    ///
    /// `InvalidParameter` for a malformed version, or one of another key (or of none).
    async fn version_to_use(&self, key: &KeyRecord, default: &str) -> Result<String, KmsError> {
        let Some(named) = &self.migration_version else {
            return Ok(default.to_owned());
        };
        check_migration_version(named)?;
        if named == default
            || self.registry.version_owner(named).await?.as_deref() == Some(key.key_id.as_str())
        {
            return Ok(named.clone());
        }
        Err(KmsError::InvalidParameter(format!(
            "The key version {named} ({MIGRATION_HEADER}) is not a version of the key {}.",
            key.key_id
        )))
    }

    /// The usable key `key_ref` names, which must be an AES key (`ENCRYPT/DECRYPT`):
    /// `operation` and the `algorithm` sent are what the caller asked for, for the
    /// error.
    async fn symmetric_key(
        &self,
        key_ref: &str,
        operation: Operation,
        algorithm: &str,
    ) -> Result<KeyRecord, KmsError> {
        let key = self.registry.resolve_usable(key_ref).await?;
        require_symmetric(&key, operation, algorithm)?;
        Ok(key)
    }

    /// The material of `version_id` of `key`, which must exist: a key naming a missing
    /// version is an internal error.
    async fn material(
        &self,
        key: &KeyRecord,
        version_id: &str,
    ) -> Result<MasterKeyMaterial, KmsError> {
        self.registry
            .version_material(&key.key_id, version_id)
            .await?
            .ok_or_else(|| {
                KmsError::internal(format!(
                    "{} names a missing version {version_id}",
                    key.key_id
                ))
            })
    }
}

/// The header a transfer client names a key version in, for error messages.
const MIGRATION_HEADER: &str = crate::transport::MIGRATION_VERSION_HEADER;

/// Checks a version named in [`MIGRATION_HEADER`]: a version ID.
///
/// # Errors
///
/// `InvalidParameter` naming the header.
fn check_migration_version(named: &str) -> Result<(), KmsError> {
    crate::keys::ids::validate_version_id(named).map_err(|_| {
        KmsError::InvalidParameter(format!(
            "{MIGRATION_HEADER} must be a key version ID (a UUID such as \
             2ab1a983-7072-4bbc-a582-584b5bd8e6c4)."
        ))
    })
}

/// `Rejected.UnsupportedOperation` unless `key` is an AES key; an RSA encryption key
/// reached by Encrypt or Decrypt without an RSAES algorithm is told to send one
/// ([`rsa_encryption::aes_call_on_rsa_key`]).
fn require_symmetric(
    key: &KeyRecord,
    operation: Operation,
    algorithm: &str,
) -> Result<(), KmsError> {
    let spec = KeySpec::of(key)?;
    if spec == KeySpec::Aes256 {
        return Ok(());
    }
    if rsa_encryption::rsa_encryption_spec(key)?.is_some() {
        return Err(rsa_encryption::aes_call_on_rsa_key(
            key, operation, algorithm,
        ));
    }
    Err(signatures::wrong_usage(
        key,
        spec,
        operation,
        KeySpec::Aes256.usage(),
    ))
}
