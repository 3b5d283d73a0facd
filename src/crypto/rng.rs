//! Randomness: ring's `SystemRandom` for everything.
//!
//! [`RingRng`] adapts ring's `SystemRandom` to rand_core 0.10's [`TryRng`] and
//! [`TryCryptoRng`] so the RustCrypto key generators (rsa, p256, k256) draw from the same
//! source as the sealer's IVs. Failures surface as errors, never panics.

use rand_core::{TryCryptoRng, TryRng};
use ring::rand::{SecureRandom, SystemRandom};

use super::CryptoError;

/// The system random source failed (ring reports no further detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random source failed")]
pub struct RngError;

impl From<RngError> for CryptoError {
    fn from(_: RngError) -> Self {
        CryptoError::Random
    }
}

/// ring's [`SystemRandom`] as a rand_core 0.10 cryptographic RNG.
///
/// A unit struct: `SystemRandom` is stateless, so there is nothing to hold or construct;
/// write `&mut RingRng` where an RNG is wanted.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingRng;

impl TryRng for RingRng {
    type Error = RngError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        SystemRandom::new().fill(dst).map_err(|_| RngError)
    }
}

impl TryCryptoRng for RingRng {}

/// Fills `dst` from the system random source.
///
/// # Errors
/// [`CryptoError::Random`] if the system random source fails.
pub fn fill_random(dst: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(dst)
        .map_err(|_| CryptoError::Random)
}

/// An array of `N` bytes from the system random source, for IVs and key material.
///
/// The caller owns the result; wrap it in `Zeroizing` (or a secret type) if it is a key.
///
/// # Errors
/// [`CryptoError::Random`] if the system random source fails.
pub fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_arrays_differ() {
        let a: [u8; 32] = random_array().unwrap();
        let b: [u8; 32] = random_array().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn ring_rng_fills_and_words_vary() {
        let mut rng = RingRng;
        let mut buf = [0u8; 64];
        rng.try_fill_bytes(&mut buf).unwrap();
        assert_ne!(buf, [0u8; 64]);
        let words: Vec<u64> = (0..4).map(|_| rng.try_next_u64().unwrap()).collect();
        assert!(words.windows(2).any(|w| w[0] != w[1]));
        let _ = rng.try_next_u32().unwrap();
    }
}
