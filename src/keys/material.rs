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

/// `version`'s material, opened under `old` and sealed again under `new` (fresh IV,
/// same AAD): for root key rotation. Fails, naming the version, if it does not open
/// under `old`. The plaintext lives only in zeroizing buffers.
pub fn reseal(
    old: &MasterKeyMaterial,
    new: &MasterKeyMaterial,
    version: &VersionRecord,
) -> Result<SealedMaterial, String> {
    let aad = material_aad(&version.key_id, &version.version_id);
    let opened = sealer::open(
        old,
        SealPurpose::KeyMaterialAtRest,
        &version.material.iv,
        &aad,
        &version.material.ciphertext,
    )
    .map_err(|_| {
        format!(
            "the material of {}/{} does not open under the old root key",
            version.key_id, version.version_id
        )
    })?;
    let sealed = sealer::seal(new, SealPurpose::KeyMaterialAtRest, &aad, &opened)
        .map_err(|err| format!("cannot seal under the new root key: {err}"))?;
    Ok(SealedMaterial {
        iv: sealed.iv.to_vec(),
        ciphertext: sealed.ciphertext,
    })
}

impl KeyRegistry {
    /// Fresh material for a new version of `key_id`, sealed under the root key.
    pub(super) fn new_version(&self, key_id: &str, now: u64) -> Result<VersionRecord, KmsError> {
        let material = MasterKeyMaterial::generate().map_err(KmsError::internal)?;
        self.sealed_version(key_id, ids::new_version_id(), &material, now)
    }

    /// A version of `key_id` named `version_id` holding `material`, sealed under the
    /// root key: fresh material ([`Self::new_version`]) or a seed file's.
    pub(super) fn sealed_version(
        &self,
        key_id: &str,
        version_id: String,
        material: &MasterKeyMaterial,
        now: u64,
    ) -> Result<VersionRecord, KmsError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{Fixture, create};

    #[tokio::test]
    async fn each_version_has_its_own_material_which_opens_again() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        let initial = registry.resolve(&key).await.unwrap().initial_version_id;
        let rotated = registry
            .create_key_version(&key)
            .await
            .unwrap()
            .key_version_id;
        let first = registry
            .version_material(&key, &initial)
            .await
            .unwrap()
            .unwrap();
        // The second read comes from the cache, and is the same material.
        let again = registry
            .version_material(&key, &initial)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.expose_secret(), again.expose_secret());
        let second = registry
            .version_material(&key, &rotated)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(first.expose_secret(), second.expose_secret());
        // What the store holds is sealed, not the material.
        let stored = registry
            .store
            .get_version(&key, &initial)
            .await
            .unwrap()
            .unwrap();
        assert!(
            !stored
                .material
                .ciphertext
                .windows(first.expose_secret().len())
                .any(|w| w == first.expose_secret().as_slice())
        );
        let unknown = ids::new_version_id();
        assert!(
            registry
                .version_material(&key, &unknown)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(registry.version_owner(&rotated).await.unwrap(), Some(key));
        assert_eq!(registry.version_owner(&unknown).await.unwrap(), None);
    }

    #[tokio::test]
    async fn material_moved_to_another_key_does_not_open() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        // Material sealed for `key`, stored as the only version of another key.
        let sealed = registry.new_version(&key, registry.now_ms()).unwrap();
        let mut other = registry.resolve(&key).await.unwrap();
        other.key_id = "key-moved".into();
        other.initial_version_id = sealed.version_id.clone();
        other.primary_version_id = sealed.version_id.clone();
        other.revision = 0;
        let moved = VersionRecord {
            key_id: other.key_id.clone(),
            ..sealed
        };
        registry.store.insert_key(&other, &moved).await.unwrap();
        assert!(matches!(
            registry
                .version_material("key-moved", &moved.version_id)
                .await,
            Err(KmsError::Internal(_))
        ));
    }
}
