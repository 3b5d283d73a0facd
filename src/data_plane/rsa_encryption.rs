//! Encrypt and Decrypt under an RSA encryption key (`RSA_2048`, `RSA_3072` with usage
//! `ENCRYPT/DECRYPT`), with `Algorithm` `RSAES_OAEP_SHA_256` or `RSAES_OAEP_SHA_1`
//! (reference section 6b: the transfer clients' `AsymmetricEncrypt` and
//! `AsymmetricDecrypt`).
//!
//! Encrypt seals up to the OAEP limit (`k - 2*hLen - 2` bytes: 190 or 214 for
//! RSA_2048, 318 or 342 for RSA_3072) with the public key; the ciphertext is the bare
//! RSAES-OAEP ciphertext (the modulus' length), `Iv` empty, so a ciphertext made
//! locally with GetPublicKey's key opens too. Decrypt opens it with the private key on
//! the CPU pool ([`crate::crypto::cpu`]), with aws-lc-rs ([`crate::crypto::rsa_oaep`]).
//! `Iv`, `Aad` and `PaddingMode` must be empty (OAEP has no IV, kmsd no OAEP label, and
//! the algorithm names the padding): refused before the key is read.
//!
//! **No padding oracle**: every failure to open a ciphertext, whatever went wrong, is
//! [`KmsError::DecryptionFailed`], the one `InvalidParameter` answer every Decrypt
//! gives for a ciphertext that does not open.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::decrypt::{DecryptParams, Decrypted};
use super::params::{ALGORITHM_AES_GCM, MAX_CIPHERTEXT_LEN, oaep_names};
use super::symmetric::{EncryptParams, Encrypted};
use super::{DataPlane, signatures};
use crate::crypto::keygen::KeyPairSpec;
use crate::crypto::rsa_oaep::{OaepAlgorithm, OaepKey, OaepSealError};
use crate::error::KmsError;
use crate::keys::model::{KeySpec, KeyUsage};
use crate::store::KeyRecord;
use kmsd_api::ops::Operation;

/// The key pair type of `key` if it is an RSA encryption key; `None` for every other
/// key.
pub(super) fn rsa_encryption_spec(key: &KeyRecord) -> Result<Option<KeyPairSpec>, KmsError> {
    let spec = KeySpec::of(key)?;
    if KeyUsage::of(key)? != KeyUsage::EncryptDecrypt {
        return Ok(None);
    }
    Ok(match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 => spec.key_pair_spec(),
        _ => None,
    })
}

/// The error for an RSA encryption key reached by an AES operation: Encrypt and
/// Decrypt without an RSAES algorithm are told which to send; every other operation
/// is `Rejected.UnsupportedOperation`.
pub(super) fn aes_call_on_rsa_key(
    key: &KeyRecord,
    operation: Operation,
    algorithm: &str,
) -> KmsError {
    let spec = key.key_spec.as_str();
    match (operation, algorithm) {
        (Operation::Encrypt | Operation::Decrypt, "") => KmsError::MissingParameter("Algorithm"),
        (Operation::Encrypt | Operation::Decrypt, other) => KmsError::InvalidParameter(format!(
            "Algorithm {other} does not apply to the {spec} key {} (ENCRYPT/DECRYPT); \
                 valid values: {}.",
            key.key_id,
            oaep_names()
        )),
        _ => KmsError::UnsupportedOperation(format!(
            "The key {} is an {spec} encryption key: it encrypts and decrypts with Encrypt \
             and Decrypt and Algorithm {}; {operation} needs an {} key.",
            key.key_id,
            oaep_names(),
            KeySpec::Aes256.as_str()
        )),
    }
}

/// What must be empty with RSAES-OAEP; checked before any key is touched.
fn check_empty(iv: &[u8], aad: &[u8], padding_mode: &str) -> Result<(), KmsError> {
    if !iv.is_empty() {
        return Err(KmsError::InvalidParameter(
            "Iv must be empty with RSAES-OAEP, which has no IV.".into(),
        ));
    }
    if !aad.is_empty() {
        return Err(KmsError::InvalidParameter(
            "Aad must be empty with RSAES-OAEP: kmsd uses no OAEP label.".into(),
        ));
    }
    if !padding_mode.is_empty() {
        return Err(KmsError::InvalidParameter(
            "PaddingMode must be empty: the Algorithm names the padding (RSAES-OAEP).".into(),
        ));
    }
    Ok(())
}

/// Checks an RSAES-OAEP Encrypt call before any key is touched (the plaintext's limit
/// depends on the key, checked once it is known).
///
/// # Errors
/// `MissingParameter` or `InvalidParameter` naming the parameter.
pub fn validate_oaep_encrypt(params: &EncryptParams<'_>) -> Result<(), KmsError> {
    if params.key_id.is_empty() {
        return Err(KmsError::MissingParameter("KeyId"));
    }
    if params.plaintext.is_empty() {
        return Err(KmsError::MissingParameter("Plaintext"));
    }
    check_empty(params.iv, params.aad, params.padding_mode)
}

/// Checks an RSAES-OAEP Decrypt call before any key is touched.
///
/// # Errors
/// `MissingParameter` or `InvalidParameter` naming the parameter.
pub fn validate_oaep_decrypt(params: &DecryptParams<'_>) -> Result<(), KmsError> {
    if params.ciphertext_blob.is_empty() {
        return Err(KmsError::MissingParameter("CiphertextBlob"));
    }
    if params.key_id.is_empty() {
        return Err(KmsError::MissingParameter("KeyId"));
    }
    if params.ciphertext_blob.len() > MAX_CIPHERTEXT_LEN {
        return Err(KmsError::InvalidParameter(format!(
            "CiphertextBlob must be at most {MAX_CIPHERTEXT_LEN} bytes."
        )));
    }
    check_empty(params.iv, params.aad, params.padding_mode)
}

impl DataPlane {
    /// Encrypt with an RSAES-OAEP `algorithm`: seals with the public key of the RSA
    /// encryption key `params.key_id` names.
    pub(super) async fn oaep_encrypt(
        &self,
        algorithm: OaepAlgorithm,
        params: &EncryptParams<'_>,
    ) -> Result<Encrypted, KmsError> {
        validate_oaep_encrypt(params)?;
        let (key, oaep) = self
            .rsa_encryption_key(params.key_id, Operation::Encrypt, algorithm)
            .await?;
        let ciphertext_blob =
            oaep.encrypt(algorithm, params.plaintext)
                .map_err(|err| match err {
                    OaepSealError::TooLong { len, max } => KmsError::InvalidParameter(format!(
                        "Plaintext is {len} bytes; {algorithm} under the {} key {} seals at most \
                     {max} (the OAEP limit: modulus length - 2 * hash length - 2). To encrypt \
                     more, encrypt a data key with it and the data under the data key.",
                        key.key_spec, key.key_id
                    )),
                    OaepSealError::Failed => KmsError::internal(err),
                })?;
        Ok(Encrypted {
            key_version_id: key.primary_version_id,
            key_id: key.key_id,
            iv: Vec::new(),
            ciphertext_blob,
            algorithm: algorithm.as_str(),
        })
    }

    /// Decrypt with an RSAES-OAEP `algorithm`: opens with the private key, off the
    /// async threads. Every failure to open is [`KmsError::DecryptionFailed`].
    pub(super) async fn oaep_decrypt(
        &self,
        algorithm: OaepAlgorithm,
        params: &DecryptParams<'_>,
    ) -> Result<Decrypted, KmsError> {
        validate_oaep_decrypt(params)?;
        let (key, oaep) = self
            .rsa_encryption_key(params.key_id, Operation::Decrypt, algorithm)
            .await?;
        let ciphertext = Zeroizing::new(params.ciphertext_blob.to_vec());
        let plaintext = crate::crypto::cpu::run(move || oaep.decrypt(algorithm, &ciphertext))
            .await
            .map_err(KmsError::internal)?
            .map_err(|_| KmsError::DecryptionFailed)?;
        Ok(Decrypted {
            key_version_id: key.primary_version_id,
            key_id: key.key_id,
            plaintext,
            algorithm: algorithm.as_str(),
        })
    }

    /// The usable RSA encryption key `key_ref` names, and its parsed key (cached). An
    /// AES key is told the algorithm does not apply; any other key that it needs an
    /// RSA encryption key.
    async fn rsa_encryption_key(
        &self,
        key_ref: &str,
        operation: Operation,
        algorithm: OaepAlgorithm,
    ) -> Result<(KeyRecord, Arc<OaepKey>), KmsError> {
        let key = self.registry.resolve_usable(key_ref).await?;
        let Some(spec) = rsa_encryption_spec(&key)? else {
            let key_spec = KeySpec::of(&key)?;
            return Err(if key_spec == KeySpec::Aes256 {
                KmsError::InvalidParameter(format!(
                    "Algorithm {algorithm} does not apply to the {} key {}; valid values: \
                     {ALGORITHM_AES_GCM}.",
                    key.key_spec, key.key_id
                ))
            } else {
                signatures::wrong_usage(
                    &key,
                    key_spec,
                    operation,
                    "ENCRYPT/DECRYPT (RSA_2048 or RSA_3072)",
                )
            });
        };
        // The key's one version, which a version the caller named must be.
        let version_id = &self.version_to_use(&key, &key.primary_version_id).await?;
        let oaep = self
            .registry
            .oaep_key(&key.key_id, version_id, spec)
            .await?
            .ok_or_else(|| {
                KmsError::internal(format!(
                    "{} names a missing version {version_id}",
                    key.key_id
                ))
            })?;
        Ok((key, oaep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::params::parse_algorithm;

    #[test]
    fn algorithms_and_empty_parameters_are_checked_before_any_key_is_touched() {
        assert_eq!(parse_algorithm("").unwrap(), None);
        assert_eq!(parse_algorithm("AES_GCM").unwrap(), None);
        assert_eq!(
            parse_algorithm("RSAES_OAEP_SHA_256").unwrap(),
            Some(OaepAlgorithm::Sha256)
        );
        assert_eq!(
            parse_algorithm("RSAES_OAEP_SHA_1").unwrap(),
            Some(OaepAlgorithm::Sha1)
        );
        match parse_algorithm("RSAES_OAEP_SHA_512") {
            Err(KmsError::InvalidParameter(message)) => assert!(
                message.contains("AES_GCM")
                    && message.contains("RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        let decrypt = DecryptParams {
            key_id: "key-a",
            ciphertext_blob: &[1; 256],
            iv: b"",
            aad: b"",
            algorithm: "RSAES_OAEP_SHA_256",
            padding_mode: "",
        };
        assert!(validate_oaep_decrypt(&decrypt).is_ok());
        for (bad, what) in [
            (
                DecryptParams {
                    iv: &[0; 12],
                    ..decrypt
                },
                "Iv",
            ),
            (
                DecryptParams {
                    aad: b"x",
                    ..decrypt
                },
                "Aad",
            ),
            (
                DecryptParams {
                    padding_mode: "PKCS1",
                    ..decrypt
                },
                "PaddingMode",
            ),
            (
                DecryptParams {
                    ciphertext_blob: &[0; MAX_CIPHERTEXT_LEN + 1],
                    ..decrypt
                },
                "CiphertextBlob",
            ),
        ] {
            match validate_oaep_decrypt(&bad) {
                Err(KmsError::InvalidParameter(message)) => {
                    assert!(message.starts_with(what), "{message}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        assert!(matches!(
            validate_oaep_decrypt(&DecryptParams {
                ciphertext_blob: b"",
                ..decrypt
            }),
            Err(KmsError::MissingParameter("CiphertextBlob"))
        ));
    }
}
