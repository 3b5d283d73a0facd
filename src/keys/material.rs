//! Version material: fresh AES-256 material, an HMAC secret or an asymmetric private
//! key (PKCS#8 DER), sealed under the root key before it reaches the store
//! ([`super::material_at_rest`]: bound to its key and version IDs), and opened in
//! memory (through the material cache) for the data plane.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::keygen::KeyPairSpec;
use crate::crypto::rsa_oaep::OaepKey;
use crate::crypto::secret::MasterKeyMaterial;
use crate::crypto::signing_keys::SigningKey;
use crate::error::KmsError;
use crate::store::VersionRecord;

use super::registry::{KeyRegistry, store_error};
use super::{ids, material_at_rest};

impl KeyRegistry {
    /// Fresh AES material for a new version of `key_id`, sealed under the root key.
    pub(super) fn new_version(&self, key_id: &str, now: u64) -> Result<VersionRecord, KmsError> {
        let material = MasterKeyMaterial::generate().map_err(KmsError::internal)?;
        self.sealed_version(key_id, ids::new_version_id(), material.expose_secret(), now)
    }

    /// A version of `key_id` named `version_id` holding `material` (AES material, an
    /// HMAC secret or a PKCS#8 private key), sealed under the root key: fresh material
    /// or a seed file's.
    pub(super) fn sealed_version(
        &self,
        key_id: &str,
        version_id: String,
        material: &[u8],
        now: u64,
    ) -> Result<VersionRecord, KmsError> {
        let material = material_at_rest::seal(&self.root_key, key_id, &version_id, material)
            .map_err(KmsError::internal)?;
        Ok(VersionRecord {
            key_id: key_id.to_owned(),
            version_id,
            created_at_ms: now,
            material,
        })
    }

    /// The sealed material of one version, opened, whatever its kind. `None` if the
    /// version does not exist; material that does not open under the root key is an
    /// internal error (corruption or tampering of the store).
    pub(super) async fn open_version(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KmsError> {
        let Some(version) = self
            .store
            .get_version(key_id, version_id)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let opened = material_at_rest::open(&self.root_key, key_id, version_id, &version.material)
            .map_err(|_| {
                KmsError::internal(format!(
                    "the material of {key_id}/{version_id} does not open under the root key"
                ))
            })?;
        Ok(Some(opened))
    }

    /// The material of one version, opened in memory: AES material, or an HMAC
    /// secret (also 32 bytes). `None` if the version does not exist. A version whose
    /// material does not open under the root key, or is not 32 bytes, is an internal
    /// error. Served from the material cache once opened (a version's material never
    /// changes); call it only for a key just resolved as usable.
    pub async fn version_material(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> Result<Option<MasterKeyMaterial>, KmsError> {
        if let Some(cached) = self.cache.material(key_id, version_id) {
            return Ok(Some(cached.clone_secret()));
        }
        let Some(opened) = self.open_version(key_id, version_id).await? else {
            return Ok(None);
        };
        let material = MasterKeyMaterial::from_bytes(&opened).map_err(KmsError::internal)?;
        self.cache
            .fill_material(key_id, version_id, Arc::new(material.clone_secret()));
        Ok(Some(material))
    }

    /// The private key of one version of an asymmetric key of `spec`, parsed (on
    /// tokio's blocking pool: ring validates RSA keys) and cached like material.
    /// `None` if the version does not exist; material that does not open or parse is
    /// an internal error. Call it only for a key just resolved as usable.
    pub async fn signing_key(
        &self,
        key_id: &str,
        version_id: &str,
        spec: KeyPairSpec,
    ) -> Result<Option<Arc<SigningKey>>, KmsError> {
        if let Some(cached) = self.cache.signing_key(key_id, version_id) {
            return Ok(Some(cached));
        }
        let Some(opened) = self.open_version(key_id, version_id).await? else {
            return Ok(None);
        };
        let parsed = crate::crypto::cpu::run(move || SigningKey::from_pkcs8(spec, &opened))
            .await
            .map_err(KmsError::internal)?
            .map_err(KmsError::internal)?;
        let parsed = Arc::new(parsed);
        self.cache
            .fill_signing_key(key_id, version_id, Arc::clone(&parsed));
        Ok(Some(parsed))
    }

    /// The private key of one version of an RSA encryption key of `spec`, parsed by
    /// aws-lc-rs (within the CPU bound) and cached like material. `None` if the
    /// version does not exist; material that does not open or parse is an internal
    /// error. Call it only for a key just resolved as usable.
    pub async fn oaep_key(
        &self,
        key_id: &str,
        version_id: &str,
        spec: KeyPairSpec,
    ) -> Result<Option<Arc<OaepKey>>, KmsError> {
        if let Some(cached) = self.cache.oaep_key(key_id, version_id) {
            return Ok(Some(cached));
        }
        let Some(opened) = self.open_version(key_id, version_id).await? else {
            return Ok(None);
        };
        let parsed = crate::crypto::cpu::run(move || OaepKey::from_pkcs8(spec, &opened))
            .await
            .map_err(KmsError::internal)?
            .map_err(KmsError::internal)?;
        let parsed = Arc::new(parsed);
        self.cache
            .fill_oaep_key(key_id, version_id, Arc::clone(&parsed));
        Ok(Some(parsed))
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
        let material = async |version: &str| {
            let material = registry.version_material(&key, version).await.unwrap();
            material.expect("the version's material")
        };
        let first = material(&initial).await;
        // The second read comes from the cache, and is the same material.
        let again = material(&initial).await;
        assert_eq!(first.expose_secret(), again.expose_secret());
        let second = material(&rotated).await;
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
