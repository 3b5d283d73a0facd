//! How version material is kept at rest: sealed under the root key with an AAD that
//! binds it to its key and version IDs, so material moved to another record does not
//! open. Pure functions over a root key and a record, below both their users: the
//! registry's reads and writes ([`super::material`]) and the offline root key rotation
//! ([`super::root_key::rotate`]).

use zeroize::Zeroizing;

use crate::crypto::sealer::{self, SealPurpose};
use crate::crypto::secret::MasterKeyMaterial;
use crate::crypto::{CryptoError, OpenError};
use crate::store::{SealedMaterial, VersionRecord};

/// The AAD that binds a version's sealed material to its key and version IDs.
fn aad(key_id: &str, version_id: &str) -> Vec<u8> {
    format!("kmsd/v1/key-material\0{key_id}\0{version_id}").into_bytes()
}

/// `material` of version `version_id` of `key_id`, sealed under `root_key` (fresh IV).
///
/// # Errors
///
/// [`sealer::seal`]'s: no IV could be drawn.
pub fn seal(
    root_key: &MasterKeyMaterial,
    key_id: &str,
    version_id: &str,
    material: &[u8],
) -> Result<SealedMaterial, CryptoError> {
    let sealed = sealer::seal(
        root_key,
        SealPurpose::KeyMaterialAtRest,
        &aad(key_id, version_id),
        material,
    )?;
    Ok(SealedMaterial {
        iv: sealed.iv.to_vec(),
        ciphertext: sealed.ciphertext,
    })
}

/// The material `sealed` holds for version `version_id` of `key_id`, opened under
/// `root_key` into a zeroizing buffer.
///
/// # Errors
///
/// [`OpenError`], whatever failed: sealed under another key or for another record,
/// or changed.
pub fn open(
    root_key: &MasterKeyMaterial,
    key_id: &str,
    version_id: &str,
    sealed: &SealedMaterial,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    sealer::open(
        root_key,
        SealPurpose::KeyMaterialAtRest,
        &sealed.iv,
        &aad(key_id, version_id),
        &sealed.ciphertext,
    )
}

/// `version`'s material, opened under `old` and sealed again under `new` (fresh IV,
/// same AAD): for root key rotation. Fails, naming the version, if it does not open
/// under `old`. The plaintext lives only in zeroizing buffers.
pub fn reseal(
    old: &MasterKeyMaterial,
    new: &MasterKeyMaterial,
    version: &VersionRecord,
) -> Result<SealedMaterial, String> {
    let (key_id, version_id) = (&version.key_id, &version.version_id);
    let opened = open(old, key_id, version_id, &version.material).map_err(|_| {
        format!("the material of {key_id}/{version_id} does not open under the old root key")
    })?;
    seal(new, key_id, version_id, &opened)
        .map_err(|err| format!("cannot seal under the new root key: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_opens_only_for_its_record_and_under_its_root_key() {
        let (root, other) = (
            MasterKeyMaterial::generate().unwrap(),
            MasterKeyMaterial::generate().unwrap(),
        );
        let sealed = seal(&root, "key-a", "v-1", b"material").unwrap();
        assert_eq!(
            open(&root, "key-a", "v-1", &sealed).unwrap().as_slice(),
            b"material"
        );
        assert!(open(&root, "key-b", "v-1", &sealed).is_err());
        assert!(open(&root, "key-a", "v-2", &sealed).is_err());
        assert!(open(&other, "key-a", "v-1", &sealed).is_err());

        let version = VersionRecord {
            key_id: "key-a".into(),
            version_id: "v-1".into(),
            created_at_ms: 0,
            material: sealed,
        };
        let resealed = reseal(&root, &other, &version).unwrap();
        assert_eq!(
            open(&other, "key-a", "v-1", &resealed).unwrap().as_slice(),
            b"material"
        );
        assert!(open(&root, "key-a", "v-1", &resealed).is_err());
        let err = reseal(&other, &root, &version).unwrap_err();
        assert!(err.contains("key-a/v-1"), "{err}");
    }
}
