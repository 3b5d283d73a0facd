//! Secret key material types.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{CryptoError, rng};

/// Length of a master key version's material: AES-256.
pub const MASTER_KEY_LEN: usize = 32;

/// The 32 bytes of AES-256 key material of one master key version.
///
/// Zeroized on drop. Not `Clone`: copies of a key are explicit via
/// [`MasterKeyMaterial::clone_secret`]. `Debug` prints `MasterKeyMaterial([REDACTED])`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKeyMaterial {
    bytes: [u8; MASTER_KEY_LEN],
}

impl MasterKeyMaterial {
    /// Fresh key material from ring's `SystemRandom`.
    ///
    /// # Errors
    /// [`CryptoError::Random`] if the system random source fails.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Self {
            bytes: [0u8; MASTER_KEY_LEN],
        };
        rng::fill_random(&mut key.bytes)?;
        Ok(key)
    }

    /// Key material from exactly 32 bytes (e.g. read back from the store).
    ///
    /// The caller remains responsible for zeroizing its own copy of `bytes`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyLength`] unless `bytes` is exactly 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; MASTER_KEY_LEN] =
            bytes
                .try_into()
                .map_err(|_| CryptoError::InvalidKeyLength {
                    expected: MASTER_KEY_LEN,
                    actual: bytes.len(),
                })?;
        Ok(Self { bytes })
    }

    /// The raw key bytes, for the sealer and for persisting (sealed) to the store.
    pub fn expose_secret(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }

    /// An explicit copy of the key material (also zeroized on drop).
    ///
    /// Named so that copying a secret is visible at the call site; prefer borrowing.
    pub fn clone_secret(&self) -> Self {
        Self { bytes: self.bytes }
    }
}

impl fmt::Debug for MasterKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKeyMaterial([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_key_bytes() {
        let key = MasterKeyMaterial::from_bytes(&[0xAB; 32]).unwrap();
        let s = format!("{key:?}");
        assert_eq!(s, "MasterKeyMaterial([REDACTED])");
        let pretty = format!("{key:#?}");
        assert_eq!(pretty, "MasterKeyMaterial([REDACTED])");
        for k in [MasterKeyMaterial::generate().unwrap(), key] {
            let s = format!("{k:?}");
            let hex = hex::encode(k.expose_secret());
            assert!(!s.to_lowercase().contains(&hex[..8]));
            assert!(!s.contains(&format!("{}, {}", k.bytes[0], k.bytes[1])));
            assert!(!s.contains("171"), "decimal of 0xAB");
        }
    }

    #[test]
    fn from_bytes_requires_exactly_32() {
        for len in [0, 1, 16, 31, 33, 64] {
            assert_eq!(
                MasterKeyMaterial::from_bytes(&vec![7u8; len]).unwrap_err(),
                CryptoError::InvalidKeyLength {
                    expected: 32,
                    actual: len
                }
            );
        }
        let k = MasterKeyMaterial::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(k.expose_secret(), &[7u8; 32]);
        assert_eq!(k.clone_secret().expose_secret(), &[7u8; 32]);
    }

    #[test]
    fn generated_keys_differ() {
        let a = MasterKeyMaterial::generate().unwrap();
        let b = MasterKeyMaterial::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
