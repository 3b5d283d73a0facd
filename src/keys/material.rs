//! Version material: fresh AES-256 material sealed under the root key before it
//! reaches the store, and opened in memory (through the material cache) for the data
//! plane. The AAD binds sealed material to its key and version IDs, so material moved
//! to another record does not open.

use std::sync::Arc;

use crate::crypto::sealer::{self, SealPurpose};
use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;
use crate::store::{SealedMaterial, VersionRecord};

use super::ids;
use super::registry::{KeyRegistry, store_error};

/// The AAD that binds a version's sealed material to its key and version IDs.
fn material_aad(key_id: &str, version_id: &str) -> Vec<u8> {
    format!("kmsd/v1/key-material\0{key_id}\0{version_id}").into_bytes()
}

impl KeyRegistry {
    /// Fresh material for a new version of `key_id`, sealed under the root key.
    pub(super) fn new_version(&self, key_id: &str, now: u64) -> Result<VersionRecord, KmsError> {
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
}
