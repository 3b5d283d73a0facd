//! Envelope encryption under a master key (reference section 2 / 2b): Encrypt and
//! AdvanceEncrypt seal caller data of at most 6 KiB; GenerateDataKey and
//! AdvanceGenerateDataKey seal a fresh random data key and return it in plaintext too.
//!
//! Both seal with the salted construction (`docs/ciphertext.md`): the plain operations
//! under the key's initial version (`S || C || T`, the IV apart), the Advance ones under
//! its primary version into the self-describing blob. Decrypt and AdvanceDecrypt
//! ([`super::decrypt`]) open them, as they open the data key pair ciphertexts.
//! Encrypt with an RSAES-OAEP `Algorithm` goes to [`super::rsa_encryption`] instead.

use zeroize::Zeroizing;

use super::DataPlane;
use super::key_pairs::SealWith;
use super::params::parse_algorithm;
use super::params::{ALGORITHM_AES_GCM, check_aad, check_algorithm};
use crate::crypto::sealer::{self, SealPurpose};
use crate::crypto::{blob, rng};
use crate::error::KmsError;
use kmsd_api::ops::Operation;

/// The largest `Plaintext` Encrypt takes: 6 KiB. Larger data is encrypted locally under a
/// data key from GenerateDataKey (envelope encryption).
pub const MAX_PLAINTEXT_LEN: usize = 6 * 1024;
/// The data key length when `NumberOfBytes` is omitted (0): an AES-256 key.
pub const DEFAULT_DATA_KEY_LEN: usize = 32;
/// The longest data key GenerateDataKey makes.
pub const MAX_DATA_KEY_LEN: usize = 1024;

/// Parameters of Encrypt and AdvanceEncrypt, as sent.
#[derive(Clone, Copy)]
pub struct EncryptParams<'a> {
    /// Key ID or alias.
    pub key_id: &'a str,
    /// What to seal: 1 to [`MAX_PLAINTEXT_LEN`] bytes.
    pub plaintext: &'a [u8],
    /// Empty or `AES_GCM`; for Encrypt under an RSA encryption key
    /// `RSAES_OAEP_SHA_256` or `RSAES_OAEP_SHA_1`.
    pub algorithm: &'a str,
    /// Optional AAD (must be empty with RSAES-OAEP).
    pub aad: &'a [u8],
    /// Must be empty: kmsd chooses every IV.
    pub iv: &'a [u8],
    /// Must be empty (AES-GCM has no padding).
    pub padding_mode: &'a str,
    /// Which version seals: initial for Encrypt, primary for AdvanceEncrypt.
    pub seal_with: SealWith,
}

impl std::fmt::Debug for EncryptParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptParams")
            .field("key_id", &self.key_id)
            .field("plaintext", &"[REDACTED]")
            .field("seal_with", &self.seal_with)
            .finish_non_exhaustive()
    }
}

/// Parameters of GenerateDataKey and AdvanceGenerateDataKey, as sent.
#[derive(Clone, Copy, Debug)]
pub struct DataKeyParams<'a> {
    /// Key ID or alias.
    pub key_id: &'a str,
    /// Empty or `AES_GCM` (AdvanceGenerateDataKey has no such parameter: pass "").
    pub algorithm: &'a str,
    /// 1 to [`MAX_DATA_KEY_LEN`]; 0 means [`DEFAULT_DATA_KEY_LEN`].
    pub number_of_bytes: i32,
    /// Optional AAD.
    pub aad: &'a [u8],
    /// Which version seals.
    pub seal_with: SealWith,
}

/// A sealed plaintext as returned to the caller.
#[derive(Clone, Debug)]
pub struct Encrypted {
    /// The real key ID, even when an alias was sent.
    pub key_id: String,
    /// The version that sealed.
    pub key_version_id: String,
    /// The GCM IV (also inside the blob for the Advance form); empty for RSAES-OAEP.
    pub iv: Vec<u8>,
    /// `S || C || T` (plain form), the self-describing blob, or the RSAES-OAEP
    /// ciphertext.
    pub ciphertext_blob: Vec<u8>,
    /// The public name of the algorithm that sealed: `AES_GCM` or an RSAES one.
    pub algorithm: &'static str,
}

/// A data key, sealed and in plaintext. `Debug` omits the plaintext.
pub struct GeneratedDataKey {
    /// How it was sealed.
    pub sealed: Encrypted,
    /// The data key itself.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for GeneratedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedDataKey")
            .field("sealed", &self.sealed)
            .field("plaintext", &"[REDACTED]")
            .finish()
    }
}

impl DataPlane {
    /// Encrypt / AdvanceEncrypt: seals `params.plaintext`; see the module docs.
    pub async fn encrypt(&self, params: EncryptParams<'_>) -> Result<Encrypted, KmsError> {
        if params.seal_with == SealWith::InitialVersion
            && let Some(algorithm) = parse_algorithm(params.algorithm)?
        {
            return self.oaep_encrypt(algorithm, &params).await;
        }
        validate_encrypt(&params)?;
        let operation = match params.seal_with {
            SealWith::InitialVersion => Operation::Encrypt,
            SealWith::PrimaryVersion => Operation::AdvanceEncrypt,
        };
        self.seal(
            (operation, params.algorithm),
            params.key_id,
            params.seal_with,
            params.aad,
            params.plaintext,
        )
        .await
    }

    /// GenerateDataKey / AdvanceGenerateDataKey: a fresh data key of the asked length,
    /// sealed and in plaintext.
    pub async fn generate_data_key(
        &self,
        params: DataKeyParams<'_>,
    ) -> Result<GeneratedDataKey, KmsError> {
        let len = validate_data_key(&params)?;
        let mut plaintext = Zeroizing::new(vec![0u8; len]);
        rng::fill_random(&mut plaintext).map_err(KmsError::internal)?;
        let operation = match params.seal_with {
            SealWith::InitialVersion => Operation::GenerateDataKey,
            SealWith::PrimaryVersion => Operation::AdvanceGenerateDataKey,
        };
        let sealed = self
            .seal(
                (operation, params.algorithm),
                params.key_id,
                params.seal_with,
                params.aad,
                &plaintext,
            )
            .await?;
        Ok(GeneratedDataKey { sealed, plaintext })
    }

    /// Resolves `key_ref` (enabled, granted), picks the version `seal_with` names and
    /// seals `plaintext` in that version's form. `operation` and the algorithm sent
    /// are for the error if the key is no AES key.
    pub(super) async fn seal(
        &self,
        (operation, algorithm): (Operation, &str),
        key_ref: &str,
        seal_with: SealWith,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Encrypted, KmsError> {
        let key = self.symmetric_key(key_ref, operation, algorithm).await?;
        let default = match seal_with {
            SealWith::InitialVersion => &key.initial_version_id,
            SealWith::PrimaryVersion => &key.primary_version_id,
        };
        let version_id = self.version_to_use(&key, default).await?;
        let material = self.material(&key, &version_id).await?;
        let (iv, ciphertext_blob) = match seal_with {
            SealWith::InitialVersion => {
                let sealed =
                    sealer::seal_salted(&material, SealPurpose::PlainCiphertext, aad, plaintext)
                        .map_err(KmsError::internal)?;
                (sealed.iv.to_vec(), sealed.ciphertext)
            }
            SealWith::PrimaryVersion => {
                let blob = blob::seal_advance(&material, &version_id, aad, plaintext)
                    .map_err(KmsError::internal)?;
                let iv = blob::parse(&blob).map_err(KmsError::internal)?.iv.to_vec();
                (iv, blob)
            }
        };
        Ok(Encrypted {
            key_id: key.key_id,
            key_version_id: version_id,
            iv,
            ciphertext_blob,
            algorithm: ALGORITHM_AES_GCM,
        })
    }
}

/// Checks the parameters of an Encrypt call before any key is touched.
///
/// # Errors
///
/// `MissingParameter` or `InvalidParameter` naming the parameter (and, for a plaintext
/// over the limit, the limit and GenerateDataKey).
pub fn validate_encrypt(params: &EncryptParams<'_>) -> Result<(), KmsError> {
    if params.key_id.is_empty() {
        return Err(KmsError::MissingParameter("KeyId"));
    }
    if params.plaintext.is_empty() {
        return Err(KmsError::MissingParameter("Plaintext"));
    }
    if params.plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(KmsError::InvalidParameter(format!(
            "Plaintext must be at most {MAX_PLAINTEXT_LEN} bytes (6 KiB), got {}. To encrypt \
             more, call GenerateDataKey and encrypt the data locally with the data key.",
            params.plaintext.len()
        )));
    }
    if !params.iv.is_empty() {
        return Err(KmsError::InvalidParameter(
            "Iv must be empty: kmsd chooses every IV.".into(),
        ));
    }
    check_algorithm(params.algorithm)?;
    if !params.padding_mode.is_empty() {
        return Err(KmsError::InvalidParameter(
            "PaddingMode must be empty: AES_GCM has no padding.".into(),
        ));
    }
    check_aad(params.aad)
}

/// Checks the parameters of a GenerateDataKey call before any key is touched; returns
/// the data key length.
///
/// # Errors
///
/// `MissingParameter` or `InvalidParameter` naming the parameter.
pub fn validate_data_key(params: &DataKeyParams<'_>) -> Result<usize, KmsError> {
    if params.key_id.is_empty() {
        return Err(KmsError::MissingParameter("KeyId"));
    }
    check_algorithm(params.algorithm)?;
    check_aad(params.aad)?;
    match params.number_of_bytes {
        0 => Ok(DEFAULT_DATA_KEY_LEN),
        n => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_DATA_KEY_LEN).contains(n))
            .ok_or_else(|| {
                KmsError::InvalidParameter(format!(
                    "NumberOfBytes must be between 1 and {MAX_DATA_KEY_LEN}, got {n}."
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sealer::IV_LEN;

    fn encrypt(plaintext: &[u8]) -> EncryptParams<'_> {
        EncryptParams {
            key_id: "key-a",
            plaintext,
            algorithm: "",
            aad: b"",
            iv: b"",
            padding_mode: "",
            seal_with: SealWith::InitialVersion,
        }
    }

    fn data_key(number_of_bytes: i32) -> DataKeyParams<'static> {
        DataKeyParams {
            key_id: "key-a",
            algorithm: "AES_GCM",
            number_of_bytes,
            aad: b"",
            seal_with: SealWith::PrimaryVersion,
        }
    }

    fn message(result: Result<impl std::fmt::Debug, KmsError>) -> String {
        match result.unwrap_err() {
            KmsError::InvalidParameter(message) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encrypt_parameters_are_checked_before_any_key_is_touched() {
        assert!(validate_encrypt(&encrypt(b"x")).is_ok());
        assert!(validate_encrypt(&encrypt(&[0; MAX_PLAINTEXT_LEN])).is_ok());
        let big = message(validate_encrypt(&encrypt(&[0; MAX_PLAINTEXT_LEN + 1])));
        assert!(
            big.contains("6144") && big.contains("GenerateDataKey"),
            "{big}"
        );
        assert!(matches!(
            validate_encrypt(&encrypt(b"")),
            Err(KmsError::MissingParameter("Plaintext"))
        ));
        assert!(matches!(
            validate_encrypt(&EncryptParams {
                key_id: "",
                ..encrypt(b"x")
            }),
            Err(KmsError::MissingParameter("KeyId"))
        ));
        let iv = message(validate_encrypt(&EncryptParams {
            iv: &[0; 12],
            ..encrypt(b"x")
        }));
        assert!(iv.contains("Iv"), "{iv}");
        for bad in [
            EncryptParams {
                algorithm: "SM4",
                ..encrypt(b"x")
            },
            EncryptParams {
                padding_mode: "PKCS7",
                ..encrypt(b"x")
            },
            EncryptParams {
                aad: &[0; 8193],
                ..encrypt(b"x")
            },
        ] {
            assert!(matches!(
                validate_encrypt(&bad),
                Err(KmsError::InvalidParameter(_))
            ));
        }
    }

    #[test]
    fn data_key_lengths() {
        assert_eq!(validate_data_key(&data_key(0)).unwrap(), 32);
        assert_eq!(validate_data_key(&data_key(1)).unwrap(), 1);
        assert_eq!(validate_data_key(&data_key(1024)).unwrap(), 1024);
        for bad in [-1, 1025, i32::MIN, i32::MAX] {
            let text = message(validate_data_key(&data_key(bad)));
            assert!(text.contains("NumberOfBytes"), "{text}");
        }
        assert!(matches!(
            validate_data_key(&DataKeyParams {
                key_id: "",
                ..data_key(0)
            }),
            Err(KmsError::MissingParameter("KeyId"))
        ));
    }

    #[test]
    fn debug_never_prints_plaintext() {
        let key = GeneratedDataKey {
            sealed: Encrypted {
                key_id: "key-abc".into(),
                key_version_id: "v".into(),
                iv: vec![0; IV_LEN],
                ciphertext_blob: vec![1],
                algorithm: ALGORITHM_AES_GCM,
            },
            plaintext: Zeroizing::new(b"canary-data-key".to_vec()),
        };
        let params = encrypt(b"canary-plaintext");
        for printed in [format!("{key:?}"), format!("{params:?}")] {
            assert!(printed.contains("[REDACTED]"), "{printed}");
            assert!(!printed.contains("canary"), "{printed}");
            assert!(!printed.contains("99, 97, 110"), "{printed}");
        }
    }
}
