//! The four data key pair operations (reference section 1): a fresh key pair from the
//! pool, its PKCS#8 private key sealed under the key's initial version (plain form) or
//! primary version (self-describing form), the public key in the clear, and the
//! plaintext private key only when the operation says so.

use zeroize::Zeroizing;

use super::DataPlane;
use super::params::{check_aad, check_algorithm, parse_format, parse_spec};
use crate::crypto::blob;
use crate::crypto::keygen::{KeyFormat, KeyPairSpec};
use crate::crypto::sealer::{self, IV_LEN, SealPurpose};
use crate::error::KmsError;
use crate::metrics::SealForm;
use kmsd_api::ops::Operation;

/// Which version seals, and so which ciphertext form comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealWith {
    /// The key's initial version; plain ciphertext with the IV apart.
    InitialVersion,
    /// The key's primary version; self-describing blob (reference section 3).
    PrimaryVersion,
}

impl From<SealWith> for SealForm {
    fn from(seal_with: SealWith) -> Self {
        match seal_with {
            SealWith::InitialVersion => Self::Plain,
            SealWith::PrimaryVersion => Self::Advance,
        }
    }
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
    /// The sealed private key: salt||ciphertext||tag, or the self-describing blob.
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

impl DataPlane {
    /// Generates a key pair and seals its private key; see the module docs.
    pub async fn generate(&self, params: GenerateParams<'_>) -> Result<GeneratedKeyPair, KmsError> {
        let (spec, format) = validate_generate(&params)?;
        let key = self
            .symmetric_key(params.key_id, Operation::GenerateDataKeyPair, "")
            .await?;
        let default = match params.seal_with {
            SealWith::InitialVersion => &key.initial_version_id,
            SealWith::PrimaryVersion => &key.primary_version_id,
        };
        let version_id = self.version_to_use(&key, default).await?;
        let material = self.material(&key, &version_id).await?;
        let key_pair = self.pool.take(spec).await.map_err(KmsError::internal)?;
        let private_key = key_pair.private_key_pkcs8(format);
        let public_key = key_pair.public_key(format);
        drop(key_pair);
        let (iv, ciphertext_blob) = match params.seal_with {
            SealWith::InitialVersion => {
                let sealed = sealer::seal_salted(
                    &material,
                    SealPurpose::PlainCiphertext,
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
}

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
            private_key_plaintext: Some(Zeroizing::new(secret)),
        };
        let printed = format!("{generated:?}");
        assert!(printed.contains("key-abc"), "{printed}");
        assert!(printed.contains("[REDACTED]"), "{printed}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
        assert!(!printed.contains("77, 73, 71"), "{printed}");
    }
}
