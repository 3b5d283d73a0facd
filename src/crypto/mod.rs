//! Domain cryptography for kmsd: pure functions and types, no gRPC.
//!
//! A map of the module:
//!
//! - [`rng`]: [`rng::RingRng`], ring's `SystemRandom` behind the rand_core 0.10 traits, so
//!   every key (AES, RSA, EC) and IV is drawn from one audited source.
//! - [`nonce`]: the public random values (IVs, salts, request and trace IDs), from the
//!   same source a block at a time.
//! - [`secret`]: [`secret::MasterKeyMaterial`], the 32 bytes of a master key version;
//!   zeroized on drop, never printed.
//! - [`sealer`]: the AES-256-GCM envelope. Each API seal draws a fresh 96-bit IV and a
//!   fresh 128-bit salt and derives a one-time AES key from the master material with
//!   HKDF-SHA256 (salt = IV || salt, info = the [`sealer::SealPurpose`]): the plain
//!   ciphertext form is `salt || ciphertext || tag`, the IV returned separately. Key
//!   material at rest keeps the unsalted form (HKDF salt = IV).
//! - [`blob`]: the self-describing ciphertext of the Advance operations: a 39-byte header
//!   (`$`, version/padding, algorithm, key version UUID), the IV, the salt, then
//!   ciphertext and tag; the header is authenticated as part of the GCM AAD.
//! - [`keygen`]: key pair specs (`RSA_2048` .. `EC_P256K`, `ML_DSA_*`, `ED25519`), generation, and PKCS#8 /
//!   SubjectPublicKeyInfo encodings in PEM or DER.
//! - [`signing_keys`]: asymmetric master keys (Sign, Verify, GetPublicKey) with constant-time
//!   private-key operations only, and HMAC-SHA256; [`ml_dsa`]: its ML-DSA keys (aws-lc-rs
//!   for messages, ml-dsa for a caller's μ).
//!
//! - [`rsa_oaep`]: RSA encryption keys (Encrypt, Decrypt with `RSAES_OAEP_SHA_256` /
//!   `RSAES_OAEP_SHA_1`): aws-lc-rs for every operation, constant-time decryption,
//!   one detail-free failure.
//! - [`cpu`]: where the CPU-heavy work of calls runs: one task per core at a time.
//!
//! The exact byte-level constructions are written up in `docs/ciphertext.md`.

#![warn(missing_docs)]

pub mod blob;
pub mod client_key;
pub mod cpu;
pub mod keygen;
pub mod ml_dsa;
pub mod nonce;
pub mod rng;
pub mod rsa_oaep;
pub mod sealer;
pub mod secret;
pub mod signing_keys;

/// Project Wycheproof test vectors, as the crypto tests read them.
#[cfg(test)]
pub(crate) mod wycheproof {
    use std::path::Path;

    /// The vector file `name` of `tests/data/wycheproof/` (its README says where the
    /// files come from and under which licence), parsed.
    pub(crate) fn vectors(name: &str) -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/wycheproof")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// A hex string of a vector file, as bytes.
    pub(crate) fn hex(value: &serde_json::Value) -> Vec<u8> {
        hex::decode(value.as_str().unwrap()).unwrap()
    }
}

/// Errors of the crypto layer other than decryption failure.
///
/// None of the variants carries secret material: messages may be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The system random source (ring's `SystemRandom`, i.e. `getrandom`) failed.
    #[error("the system random source failed")]
    Random,
    /// Key material of the wrong length was supplied (lengths are not secret).
    #[error("invalid key material length: expected {expected} bytes, got {actual}")]
    InvalidKeyLength {
        /// The length the key type requires.
        expected: usize,
        /// The length that was supplied.
        actual: usize,
    },
    /// Key pair generation failed; the string describes the failure (never key bytes).
    #[error("key pair generation failed: {0}")]
    KeyGeneration(String),
    /// DER or PEM encoding of a key failed; the string names the step (never key bytes).
    #[error("key encoding failed: {0}")]
    Encoding(String),
    /// AES-GCM sealing failed (only possible for inputs beyond GCM's length limit).
    #[error("AES-GCM sealing failed")]
    Seal,
    /// The key version ID given for a self-describing blob is not a canonical UUID.
    #[error("invalid ciphertext blob: {0}")]
    Blob(#[from] BlobError),
}

/// Decryption failed.
///
/// Deliberately carries no detail: a wrong IV length, a truncated ciphertext, a bad tag,
/// the wrong key, the wrong purpose and the wrong AAD all give this same value and
/// message, so a caller cannot use the error as an oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ciphertext could not be decrypted")]
pub struct OpenError;

/// A self-describing ciphertext blob is malformed.
///
/// The blob layout is public, so saying which structural check failed leaks nothing;
/// cryptographic failures (tag mismatch) are reported as [`OpenError`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Shorter than header + IV + salt + tag (39 + 12 + 16 + 16 = 83 bytes).
    #[error("the ciphertext blob is too short")]
    TooShort,
    /// The first byte is not the magic `$` (0x24).
    #[error("the ciphertext blob does not start with the magic byte")]
    BadMagic,
    /// The cipher format version or padding mode byte is not 0x00.
    #[error("the ciphertext blob has an unsupported format version or padding mode")]
    UnsupportedVersion,
    /// The algorithm byte is not 0x02 (AES-GCM).
    #[error("the ciphertext blob names an unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The 36 key version bytes are not a canonical lowercase hyphenated UUID.
    #[error("the ciphertext blob has a malformed key version ID")]
    BadKeyVersionId,
}
