//! The data key pair operations (reference sections 1-3), independent of any transport.
//!
//! A call flows: validate the parameters → resolve the key (must be Enabled) → pick the
//! version (initial for the plain operations, primary for the Advance ones) → open its
//! material → take a key pair from the pool → seal the PKCS#8 private key with AES-GCM
//! under that version → return the public key, the ciphertext and, only when asked,
//! the plaintext private key. Decrypt and AdvanceDecrypt run the seal backwards.
//! Every failure to open a ciphertext is [`KmsError::DecryptionFailed`], one message.

use zeroize::Zeroizing;

use crate::crypto::blob;
use crate::crypto::keygen::{KeyFormat, KeyPairSpec};
use crate::crypto::pool::KeyPairPool;
use crate::crypto::sealer::{self, IV_LEN, SealPurpose};
use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;
use crate::keys::KeyRegistry;
use crate::store::KeyRecord;

/// The only `Algorithm`.
pub const ALGORITHM_AES_GCM: &str = "AES_GCM";
/// The largest `Aad` accepted.
pub const MAX_AAD_LEN: usize = 8192;
/// The largest ciphertext accepted: a PEM RSA-4096 private key is about 3.3 KiB.
pub const MAX_CIPHERTEXT_LEN: usize = 16 * 1024;

/// Which version seals, and so which ciphertext form comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealWith {
    /// The key's initial version; plain ciphertext with the IV apart.
    InitialVersion,
    /// The key's primary version; self-describing blob (reference section 3).
    PrimaryVersion,
}

/// Parameters of the four Generate operations, as sent.
#[derive(Clone, Copy, Debug)]
pub struct GenerateParams<'a> {
    /// Key ID or alias.
    pub key_id: &'a str,
    /// Empty or `AES_GCM` (the Advance operations have no such parameter: pass "").
    pub algorithm: &'a str,
    /// e.g. `RSA_2048`.
    pub key_pair_spec: &'a str,
    /// `PEM` or `DER`.
    pub key_format: &'a str,
    /// Optional AAD.
    pub aad: &'a [u8],
    /// Which version seals.
    pub seal_with: SealWith,
    /// Whether the caller gets the plaintext private key.
    pub with_plaintext: bool,
}

/// A generated key pair as returned to the caller. `Debug` omits the private key.
pub struct GeneratedKeyPair {
    /// The real key ID, even when an alias was sent.
    pub key_id: String,
    /// The version that sealed the private key.
    pub key_version_id: String,
    /// The spec generated.
    pub key_pair_spec: KeyPairSpec,
    /// The GCM IV (also inside the blob for the Advance form).
    pub iv: [u8; IV_LEN],
    /// The sealed private key: ciphertext||tag, or the self-describing blob.
    pub ciphertext_blob: Vec<u8>,
    /// X.509 SubjectPublicKeyInfo in the requested format.
    pub public_key: Vec<u8>,
    /// PKCS#8 in the requested format, only when asked for.
    pub private_key_plaintext: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("key_id", &self.key_id)
            .field("key_version_id", &self.key_version_id)
            .field("key_pair_spec", &self.key_pair_spec)
            .field(
                "private_key_plaintext",
                &self.private_key_plaintext.as_ref().map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

/// Parameters of Decrypt and AdvanceDecrypt, as sent.
#[derive(Clone, Copy, Debug)]
pub struct DecryptParams<'a> {
    /// Key ID or alias; required by Decrypt, optional for AdvanceDecrypt.
    pub key_id: &'a str,
    /// The ciphertext.
    pub ciphertext_blob: &'a [u8],
    /// Decrypt: the 12-byte IV. AdvanceDecrypt ignores it (the blob carries it).
    pub iv: &'a [u8],
    /// The AAD given when sealing.
    pub aad: &'a [u8],
    /// Empty or `AES_GCM`.
    pub algorithm: &'a str,
    /// Empty (AES-GCM has no padding).
    pub padding_mode: &'a str,
}

/// An opened private key. `Debug` omits it.
pub struct DecryptedKey {
    /// The real key ID.
    pub key_id: String,
    /// The version that opened it.
    pub key_version_id: String,
    /// The PKCS#8 private key, as sealed.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DecryptedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptedKey")
            .field("key_id", &self.key_id)
            .field("key_version_id", &self.key_version_id)
            .field("plaintext", &"[REDACTED]")
            .finish()
    }
}

/// The data plane: the four Generate operations, Decrypt and AdvanceDecrypt.
#[derive(Clone, Debug)]
pub struct DataKeyPairs {
    registry: KeyRegistry,
    pool: KeyPairPool,
}

impl DataKeyPairs {
    /// The data plane over a registry and a key pair pool.
    pub fn new(registry: KeyRegistry, pool: KeyPairPool) -> Self {
        Self { registry, pool }
    }

    /// The data plane acting for `access`: keys outside its grants are refused with
    /// [`KmsError::PermissionDenied`] before they are read (see
    /// [`KeyRegistry::scoped`]). AdvanceDecrypt without a `KeyId` checks the key that
    /// owns the blob's version.
    pub fn scoped(&self, access: crate::auth::Access) -> Self {
        Self {
            registry: self.registry.scoped(access),
            pool: self.pool.clone(),
        }
    }

    /// The pool, for readiness and metrics.
    pub fn pool(&self) -> &KeyPairPool {
        &self.pool
    }

    /// Generates a key pair and seals its private key; see the module docs.
    pub async fn generate(&self, params: GenerateParams<'_>) -> Result<GeneratedKeyPair, KmsError> {
        let (spec, format) = validate_generate(&params)?;
        let key = self.registry.resolve_usable(params.key_id).await?;
        let version_id = match params.seal_with {
            SealWith::InitialVersion => key.initial_version_id.clone(),
            SealWith::PrimaryVersion => key.primary_version_id.clone(),
        };
        let material = self.material(&key, &version_id).await?;
        let key_pair = self.pool.take(spec).await.map_err(KmsError::internal)?;
        let private_key = key_pair.private_key_pkcs8(format);
        let public_key = key_pair.public_key(format);
        drop(key_pair);
        let (iv, ciphertext_blob) = match params.seal_with {
            SealWith::InitialVersion => {
                let sealed = sealer::seal(
                    &material,
                    SealPurpose::DataKeyPair,
                    params.aad,
                    &private_key,
                )
                .map_err(KmsError::internal)?;
                (sealed.iv, sealed.ciphertext)
            }
            SealWith::PrimaryVersion => {
                let blob = blob::seal_advance(&material, &version_id, params.aad, &private_key)
                    .map_err(KmsError::internal)?;
                let iv = blob::parse(&blob).map_err(KmsError::internal)?.iv;
                (iv, blob)
            }
        };
        tracing::debug!(key_id = %key.key_id, key_version_id = %version_id, spec = spec.as_str(), "data key pair generated");
        Ok(GeneratedKeyPair {
            key_id: key.key_id,
            key_version_id: version_id,
            key_pair_spec: spec,
            iv,
            ciphertext_blob,
            public_key,
            private_key_plaintext: params.with_plaintext.then_some(private_key),
        })
    }

    /// Opens a plain ciphertext with the key's initial version.
    pub async fn decrypt(&self, params: DecryptParams<'_>) -> Result<DecryptedKey, KmsError> {
        validate_decrypt(&params)?;
        let key = self.registry.resolve_usable(params.key_id).await?;
        let version_id = key.initial_version_id.clone();
        let material = self.material(&key, &version_id).await?;
        let plaintext = sealer::open(
            &material,
            SealPurpose::DataKeyPair,
            params.iv,
            params.aad,
            params.ciphertext_blob,
        )
        .map_err(|_| KmsError::DecryptionFailed)?;
        Ok(DecryptedKey {
            key_id: key.key_id,
            key_version_id: version_id,
            plaintext,
        })
    }

    /// Opens a self-describing ciphertext with whichever version of the key sealed it.
    /// A `KeyId`, if given, must name that key.
    pub async fn advance_decrypt(
        &self,
        params: DecryptParams<'_>,
    ) -> Result<DecryptedKey, KmsError> {
        validate_advance_decrypt(&params)?;
        let parsed = blob::parse(params.ciphertext_blob).map_err(|_| KmsError::DecryptionFailed)?;
        let version_id = parsed.key_version_id.to_owned();
        // A blob naming no version we hold is a ciphertext that does not open: the
        // caller learns nothing more than from a wrong tag.
        let owner_key_id = self
            .registry
            .version_owner(&version_id)
            .await?
            .ok_or(KmsError::DecryptionFailed)?;
        let key = if params.key_id.is_empty() {
            self.registry.resolve_usable(&owner_key_id).await?
        } else {
            let named = self.registry.resolve_usable(params.key_id).await?;
            if named.key_id != owner_key_id {
                return Err(KmsError::DecryptionFailed);
            }
            named
        };
        let material = self.material(&key, &version_id).await?;
        let plaintext = blob::open_advance(&material, &parsed, params.aad)
            .map_err(|_| KmsError::DecryptionFailed)?;
        Ok(DecryptedKey {
            key_id: key.key_id,
            key_version_id: version_id,
            plaintext,
        })
    }

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

// === validation: pure, so the fuzz targets can drive it ===

/// Checks the parameters of a Generate call before any key is touched; returns the
/// spec and format asked for.
///
/// # Errors
///
/// `MissingParameter` or `InvalidParameter` naming the parameter.
pub fn validate_generate(
    params: &GenerateParams<'_>,
) -> Result<(KeyPairSpec, KeyFormat), KmsError> {
    if params.key_id.is_empty() {
        return Err(KmsError::MissingParameter("KeyId"));
    }
    let spec = parse_spec(params.key_pair_spec)?;
    let format = parse_format(params.key_format)?;
    check_algorithm(params.algorithm)?;
    check_aad(params.aad)?;
    Ok((spec, format))
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

fn parse_spec(raw: &str) -> Result<KeyPairSpec, KmsError> {
    if raw.is_empty() {
        return Err(KmsError::MissingParameter("KeyPairSpec"));
    }
    raw.parse().map_err(|_| {
        let valid: Vec<&str> = KeyPairSpec::ALL.iter().map(|s| s.as_str()).collect();
        KmsError::InvalidParameter(format!(
            "KeyPairSpec {:?} is not supported; valid values: {}.",
            truncate(raw),
            valid.join(", ")
        ))
    })
}

fn parse_format(raw: &str) -> Result<KeyFormat, KmsError> {
    if raw.is_empty() {
        return Err(KmsError::MissingParameter("KeyFormat"));
    }
    raw.parse().map_err(|_| {
        KmsError::InvalidParameter(format!(
            "KeyFormat {:?} is not supported; valid values: PEM, DER.",
            truncate(raw)
        ))
    })
}

fn check_algorithm(raw: &str) -> Result<(), KmsError> {
    match raw {
        "" | ALGORITHM_AES_GCM => Ok(()),
        other => Err(KmsError::InvalidParameter(format!(
            "Algorithm {:?} is not supported; valid values: {ALGORITHM_AES_GCM}.",
            truncate(other)
        ))),
    }
}

fn check_aad(aad: &[u8]) -> Result<(), KmsError> {
    if aad.len() > MAX_AAD_LEN {
        return Err(KmsError::InvalidParameter(format!(
            "Aad must be at most {MAX_AAD_LEN} bytes, got {}.",
            aad.len()
        )));
    }
    Ok(())
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

fn truncate(raw: &str) -> String {
    raw.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_private_keys() {
        let secret = b"-----BEGIN PRIVATE KEY-----MIGHAgEAMBMG".to_vec();
        let generated = GeneratedKeyPair {
            key_id: "key-abc".into(),
            key_version_id: "v".into(),
            key_pair_spec: KeyPairSpec::EcP256,
            iv: [0; IV_LEN],
            ciphertext_blob: vec![1, 2, 3],
            public_key: vec![4, 5, 6],
            private_key_plaintext: Some(Zeroizing::new(secret.clone())),
        };
        let decrypted = DecryptedKey {
            key_id: "key-abc".into(),
            key_version_id: "v".into(),
            plaintext: Zeroizing::new(secret),
        };
        for printed in [format!("{generated:?}"), format!("{decrypted:?}")] {
            assert!(printed.contains("key-abc"), "{printed}");
            assert!(printed.contains("[REDACTED]"), "{printed}");
            assert!(!printed.contains("PRIVATE"), "{printed}");
            assert!(!printed.contains("77, 73, 71"), "{printed}");
        }
    }

    #[test]
    fn parameters_are_checked_before_any_key_is_touched() {
        assert!(matches!(
            parse_spec(""),
            Err(KmsError::MissingParameter("KeyPairSpec"))
        ));
        assert!(matches!(
            parse_format("pem"),
            Err(KmsError::InvalidParameter(_))
        ));
        assert!(check_algorithm("AES_GCM").is_ok());
        assert!(check_algorithm("").is_ok());
        assert!(check_aad(&[0; MAX_AAD_LEN]).is_ok());
        assert!(check_aad(&[0; MAX_AAD_LEN + 1]).is_err());
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
    }
}
