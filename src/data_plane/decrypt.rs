//! Decrypt and AdvanceDecrypt: one plain ciphertext form and one self-describing form
//! for everything the data plane seals under AES keys (see `docs/ciphertext.md`).
//! Decrypt with an RSAES-OAEP `Algorithm` goes to [`super::rsa_encryption`].

use zeroize::Zeroizing;

use super::DataPlane;
use super::params::parse_algorithm;
use super::params::{ALGORITHM_AES_GCM, MAX_CIPHERTEXT_LEN, check_aad, check_algorithm};
use crate::crypto::blob;
use crate::crypto::sealer::{self, IV_LEN, SealPurpose};
use crate::error::KmsError;
use kmsd_api::ops::Operation;

/// Parameters of Decrypt and AdvanceDecrypt, as sent.
#[derive(Clone, Copy, Debug)]
pub struct DecryptParams<'a> {
    /// Key ID or alias; required by Decrypt, optional for AdvanceDecrypt.
    pub key_id: &'a str,
    /// The ciphertext.
    pub ciphertext_blob: &'a [u8],
    /// Decrypt: the 12-byte IV (empty with RSAES-OAEP). AdvanceDecrypt ignores it
    /// (the blob carries it).
    pub iv: &'a [u8],
    /// The AAD given when sealing (empty with RSAES-OAEP).
    pub aad: &'a [u8],
    /// Empty or `AES_GCM`; for Decrypt under an RSA encryption key
    /// `RSAES_OAEP_SHA_256` or `RSAES_OAEP_SHA_1`.
    pub algorithm: &'a str,
    /// Empty (AES-GCM has no padding).
    pub padding_mode: &'a str,
}

/// An opened ciphertext. `Debug` omits the plaintext.
pub struct Decrypted {
    /// The real key ID.
    pub key_id: String,
    /// The version that opened it.
    pub key_version_id: String,
    /// What was sealed.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The public name of the algorithm that opened it: `AES_GCM` or an RSAES one.
    pub algorithm: &'static str,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("key_id", &self.key_id)
            .field("key_version_id", &self.key_version_id)
            .field("plaintext", &"[REDACTED]")
            .finish()
    }
}

impl DataPlane {
    /// Opens a plain ciphertext with the key's initial version, or with the version
    /// the caller named ([`DataPlane::using_version`]; then `KeyId` is optional, as
    /// the transfer clients send none), or with an RSAES-OAEP `Algorithm` an RSA
    /// encryption key's ciphertext.
    pub async fn decrypt(&self, params: DecryptParams<'_>) -> Result<Decrypted, KmsError> {
        if let Some(algorithm) = parse_algorithm(params.algorithm)? {
            return self.oaep_decrypt(algorithm, &params).await;
        }
        if let Some(version_id) = &self.migration_version {
            return self.decrypt_with_version(params, version_id).await;
        }
        validate_decrypt(&params)?;
        let key = self
            .symmetric_key(params.key_id, Operation::Decrypt, params.algorithm)
            .await?;
        let version_id = key.initial_version_id.clone();
        self.open_plain(params, key, version_id).await
    }

    /// Decrypt of a version the caller named: the key that owns it, which a named
    /// `KeyId` must be. As for AdvanceDecrypt, a version nobody holds, of a key not
    /// granted, or of another key than the one named fails as any ciphertext that does
    /// not open.
    async fn decrypt_with_version(
        &self,
        params: DecryptParams<'_>,
        version_id: &str,
    ) -> Result<Decrypted, KmsError> {
        validate_plain_ciphertext(&params)?;
        super::check_migration_version(version_id)?;
        let key = self.key_owning(params.key_id, version_id).await?;
        super::require_symmetric(&key, Operation::Decrypt, params.algorithm)?;
        self.open_plain(params, key, version_id.to_owned()).await
    }

    /// Opens a plain ciphertext with `version_id` of `key`.
    async fn open_plain(
        &self,
        params: DecryptParams<'_>,
        key: crate::store::KeyRecord,
        version_id: String,
    ) -> Result<Decrypted, KmsError> {
        let material = self.material(&key, &version_id).await?;
        let plaintext = sealer::open_salted(
            &material,
            SealPurpose::PlainCiphertext,
            params.iv,
            params.aad,
            params.ciphertext_blob,
        )
        .map_err(|_| KmsError::DecryptionFailed)?;
        Ok(Decrypted {
            key_id: key.key_id,
            key_version_id: version_id,
            plaintext,
            algorithm: ALGORITHM_AES_GCM,
        })
    }

    /// Opens a self-describing ciphertext with whichever version of the key sealed it.
    /// A `KeyId`, if given, must name that key.
    ///
    /// Nothing here may tell a caller more than a wrong tag would: a blob naming a
    /// version nobody holds, a version of a key the caller is not granted, and a
    /// version of another key than the one named all fail as
    /// [`KmsError::DecryptionFailed`]. A named `KeyId` is checked first, exactly as in
    /// every other operation, so its refusal cannot depend on the blob.
    pub async fn advance_decrypt(&self, params: DecryptParams<'_>) -> Result<Decrypted, KmsError> {
        validate_advance_decrypt(&params)?;
        let parsed = blob::parse(params.ciphertext_blob).map_err(|_| KmsError::DecryptionFailed)?;
        let version_id = parsed.key_version_id.to_owned();
        let key = self.key_owning(params.key_id, &version_id).await?;
        super::require_symmetric(&key, Operation::AdvanceDecrypt, params.algorithm)?;
        let material = self.material(&key, &version_id).await?;
        let plaintext = blob::open_advance(&material, &parsed, params.aad)
            .map_err(|_| KmsError::DecryptionFailed)?;
        Ok(Decrypted {
            key_id: key.key_id,
            key_version_id: version_id,
            plaintext,
            algorithm: ALGORITHM_AES_GCM,
        })
    }
}

impl DataPlane {
    /// The usable key that owns `version_id`, which `key_ref` (if not empty) must
    /// name. A named key is resolved first, exactly as in every other operation, so
    /// its refusal cannot depend on the version; a version nobody holds, of a key not
    /// granted, or of another key is [`KmsError::DecryptionFailed`].
    async fn key_owning(
        &self,
        key_ref: &str,
        version_id: &str,
    ) -> Result<crate::store::KeyRecord, KmsError> {
        let named = match key_ref {
            "" => None,
            key_id => Some(self.registry.resolve_usable(key_id).await?),
        };
        let owner_key_id = self.registry.version_owner(version_id).await?;
        match (named, owner_key_id) {
            (Some(named), Some(owner)) if named.key_id == owner => Ok(named),
            (None, Some(owner)) => match self.registry.resolve_usable(&owner).await {
                // Not granted, or destroyed since the lookup: as if it never existed.
                Err(KmsError::PermissionDenied | KmsError::KeyNotFound(_)) => {
                    Err(KmsError::DecryptionFailed)
                }
                found => found,
            },
            _ => Err(KmsError::DecryptionFailed),
        }
    }
}

/// Checks the parameters of a Decrypt call before any key is touched.
///
/// # Errors
///
/// `MissingParameter` or `InvalidParameter` naming the parameter.
pub fn validate_decrypt(params: &DecryptParams<'_>) -> Result<(), KmsError> {
    if params.ciphertext_blob.is_empty() {
        return Err(KmsError::MissingParameter("CiphertextBlob"));
    }
    if params.key_id.is_empty() {
        return Err(KmsError::MissingParameter("KeyId"));
    }
    validate_plain_ciphertext(params)
}

/// Checks a plain ciphertext's parameters, `KeyId` aside (a Decrypt naming its key
/// version needs none).
fn validate_plain_ciphertext(params: &DecryptParams<'_>) -> Result<(), KmsError> {
    if params.ciphertext_blob.is_empty() {
        return Err(KmsError::MissingParameter("CiphertextBlob"));
    }
    if params.iv.is_empty() {
        return Err(KmsError::MissingParameter("Iv"));
    }
    if params.iv.len() != IV_LEN {
        return Err(KmsError::InvalidParameter(format!(
            "Iv must be {IV_LEN} bytes, got {}.",
            params.iv.len()
        )));
    }
    check_decrypt_params(params)
}

/// Checks the parameters of an AdvanceDecrypt call before any key is touched (the
/// blob itself is parsed afterwards).
///
/// # Errors
///
/// `MissingParameter` or `InvalidParameter` naming the parameter.
pub fn validate_advance_decrypt(params: &DecryptParams<'_>) -> Result<(), KmsError> {
    if params.ciphertext_blob.is_empty() {
        return Err(KmsError::MissingParameter("CiphertextBlob"));
    }
    check_decrypt_params(params)
}

fn check_decrypt_params(params: &DecryptParams<'_>) -> Result<(), KmsError> {
    check_algorithm(params.algorithm)?;
    check_aad(params.aad)?;
    if !params.padding_mode.is_empty() {
        return Err(KmsError::InvalidParameter(
            "PaddingMode must be empty: AES_GCM has no padding.".into(),
        ));
    }
    if params.ciphertext_blob.len() > MAX_CIPHERTEXT_LEN {
        return Err(KmsError::InvalidParameter(format!(
            "CiphertextBlob must be at most {MAX_CIPHERTEXT_LEN} bytes."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_plaintext() {
        let decrypted = Decrypted {
            key_id: "key-abc".into(),
            key_version_id: "v".into(),
            plaintext: Zeroizing::new(b"-----BEGIN PRIVATE KEY-----".to_vec()),
            algorithm: ALGORITHM_AES_GCM,
        };
        let printed = format!("{decrypted:?}");
        assert!(printed.contains("key-abc"), "{printed}");
        assert!(printed.contains("[REDACTED]"), "{printed}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
    }

    #[test]
    fn decrypt_parameters_are_checked_before_any_key_is_touched() {
        let params = DecryptParams {
            key_id: "key-a",
            ciphertext_blob: &[1],
            iv: &[0; 12],
            aad: b"",
            algorithm: "",
            padding_mode: "PKCS7",
        };
        assert!(matches!(
            check_decrypt_params(&params),
            Err(KmsError::InvalidParameter(_))
        ));
        let big = vec![0u8; MAX_CIPHERTEXT_LEN + 1];
        let params = DecryptParams {
            ciphertext_blob: &big,
            padding_mode: "",
            ..params
        };
        assert!(matches!(
            check_decrypt_params(&params),
            Err(KmsError::InvalidParameter(_))
        ));
        let params = DecryptParams {
            ciphertext_blob: &[1],
            iv: &[0; 11],
            ..params
        };
        assert!(matches!(
            validate_decrypt(&params),
            Err(KmsError::InvalidParameter(_))
        ));
        assert!(matches!(
            validate_advance_decrypt(&DecryptParams {
                ciphertext_blob: &[],
                ..params
            }),
            Err(KmsError::MissingParameter("CiphertextBlob"))
        ));
    }
}
