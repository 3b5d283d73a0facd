//! The envelope of a secret version's data, pure: a fresh 256-bit data key per version
//! seals the data, and a version of the secret's master key seals the data key, both
//! with the salted construction of `crypto::sealer` under purposes of their own
//! ([`SealPurpose::SecretData`], [`SealPurpose::SecretDataKey`]), so no API ciphertext
//! opens as either. Both seals bind the secret's name and the version's ID as AAD: a
//! sealed value moved to another secret or version (by whoever can write the store)
//! does not open.
//!
//! The master key's material is itself sealed under the root key, so a secret shares
//! its guarantees: sealed at rest, re-sealed with `kmsd rotate-root-key` (which
//! re-seals the master keys) and unreadable once its master key is destroyed.

use zeroize::Zeroizing;

use crate::crypto::sealer::{self, SealPurpose};
use crate::crypto::secret::MasterKeyMaterial;
use crate::crypto::{CryptoError, OpenError};
use crate::store::SealedSecretData;

/// The AAD of both seals: a label, then the secret name and the version ID, each with
/// its length first, so no two (name, version) pairs give the same bytes.
fn aad(secret_name: &str, version_id: &str) -> Vec<u8> {
    let mut aad = b"kmsd/secret-version".to_vec();
    for part in [secret_name, version_id] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Seals `data` of version `version_id` of the secret `secret_name` under a fresh data
/// key, itself sealed under `master` (the master key version `key_version_id`).
///
/// # Errors
/// [`CryptoError`] if no key, IV or salt could be drawn.
pub fn seal(
    master: &MasterKeyMaterial,
    key_version_id: &str,
    secret_name: &str,
    version_id: &str,
    data: &[u8],
) -> Result<SealedSecretData, CryptoError> {
    let aad = aad(secret_name, version_id);
    let data_key = MasterKeyMaterial::generate()?;
    let sealed_data = sealer::seal_salted(&data_key, SealPurpose::SecretData, &aad, data)?;
    let sealed_key = sealer::seal_salted(
        master,
        SealPurpose::SecretDataKey,
        &aad,
        data_key.expose_secret(),
    )?;
    Ok(SealedSecretData {
        key_version_id: key_version_id.to_owned(),
        key_iv: sealed_key.iv.to_vec(),
        sealed_key: sealed_key.ciphertext,
        data_iv: sealed_data.iv.to_vec(),
        sealed_data: sealed_data.ciphertext,
    })
}

/// Opens what [`seal`] sealed for the same secret and version, with the material of
/// the master key version `sealed.key_version_id`.
///
/// # Errors
/// [`OpenError`], whatever failed (wrong key, name, version, any modified byte).
pub fn open(
    master: &MasterKeyMaterial,
    secret_name: &str,
    version_id: &str,
    sealed: &SealedSecretData,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let aad = aad(secret_name, version_id);
    let key = sealer::open_salted(
        master,
        SealPurpose::SecretDataKey,
        &sealed.key_iv,
        &aad,
        &sealed.sealed_key,
    )?;
    let data_key = MasterKeyMaterial::from_bytes(&key).map_err(|_| OpenError)?;
    sealer::open_salted(
        &data_key,
        SealPurpose::SecretData,
        &sealed.data_iv,
        &aad,
        &sealed.sealed_data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_opens_only_as_itself_under_its_master_key() {
        let master = MasterKeyMaterial::generate().unwrap();
        let sealed = seal(&master, "kv-1", "db/a", "v1", b"hunter2").unwrap();
        assert_eq!(sealed.key_version_id, "kv-1");
        assert_eq!(&*open(&master, "db/a", "v1", &sealed).unwrap(), b"hunter2");
        // Neither the data nor its key appears in what is stored.
        let stored = serde_json::to_vec(&sealed).unwrap();
        assert!(!stored.windows(7).any(|w| w == b"hunter2"));

        let other = MasterKeyMaterial::generate().unwrap();
        assert!(open(&other, "db/a", "v1", &sealed).is_err());
        assert!(open(&master, "db/b", "v1", &sealed).is_err());
        assert!(open(&master, "db/a", "v2", &sealed).is_err());
        // Moving the boundary between name and version changes the AAD.
        let split = seal(&master, "kv-1", "db/av", "1", b"x").unwrap();
        assert!(open(&master, "db/a", "v1", &split).is_err());
        for field in 0..4 {
            let mut tampered = sealed.clone();
            let bytes = match field {
                0 => &mut tampered.key_iv,
                1 => &mut tampered.sealed_key,
                2 => &mut tampered.data_iv,
                _ => &mut tampered.sealed_data,
            };
            bytes[0] ^= 1;
            assert!(open(&master, "db/a", "v1", &tampered).is_err(), "{field}");
        }
    }

    #[test]
    fn every_version_gets_its_own_data_key() {
        let master = MasterKeyMaterial::generate().unwrap();
        let a = seal(&master, "kv-1", "db/a", "v1", b"same").unwrap();
        let b = seal(&master, "kv-1", "db/a", "v1", b"same").unwrap();
        assert_ne!(a.sealed_key, b.sealed_key);
        assert_ne!(a.sealed_data, b.sealed_data);
    }
}
