//! GenerateRandom and Hash: the two operations that name no key. Pure functions over
//! the system random source and ring's digests.

use ring::digest;
use zeroize::Zeroizing;

use crate::crypto::rng;
use crate::error::KmsError;

/// The longest GenerateRandom output.
pub const MAX_RANDOM_LEN: usize = 1024;

/// A digest algorithm of Hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// SHA-256 (FIPS 180-4), the default.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm, by its public name.
    pub const ALL: [HashAlgorithm; 3] = [Self::Sha256, Self::Sha384, Self::Sha512];

    /// The public name, e.g. `SHA-256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    /// The algorithm named `raw`; empty means SHA-256.
    ///
    /// # Errors
    ///
    /// `InvalidParameter` listing the valid names.
    pub fn parse(raw: &str) -> Result<Self, KmsError> {
        if raw.is_empty() {
            return Ok(Self::Sha256);
        }
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == raw)
            .ok_or_else(|| {
                KmsError::InvalidParameter(format!(
                    "Algorithm {:?} is not supported; valid values: SHA-256, SHA-384, SHA-512.",
                    raw.chars().take(40).collect::<String>()
                ))
            })
    }

    fn ring(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }
}

/// GenerateRandom: `length` bytes (1 to [`MAX_RANDOM_LEN`]) from the system random
/// source.
///
/// # Errors
///
/// `MissingParameter("Length")` for 0 (omitted); `InvalidParameter` out of range; an
/// internal error if the random source fails.
pub fn generate_random(length: i32) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    if length == 0 {
        return Err(KmsError::MissingParameter("Length"));
    }
    let len = usize::try_from(length)
        .ok()
        .filter(|n| (1..=MAX_RANDOM_LEN).contains(n))
        .ok_or_else(|| {
            KmsError::InvalidParameter(format!(
                "Length must be between 1 and {MAX_RANDOM_LEN}, got {length}."
            ))
        })?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    rng::fill_random(&mut out).map_err(KmsError::internal)?;
    Ok(out)
}

/// Hash: the digest of `message` under `algorithm` (empty means SHA-256). The message
/// is bounded by the transport (64 KiB decoded), so this is cheap enough for the async
/// threads.
///
/// # Errors
///
/// `InvalidParameter` for an unknown algorithm.
pub fn hash(algorithm: &str, message: &[u8]) -> Result<(HashAlgorithm, Vec<u8>), KmsError> {
    let algorithm = HashAlgorithm::parse(algorithm)?;
    let digest = digest::digest(algorithm.ring(), message);
    Ok((algorithm, digest.as_ref().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_lengths_and_distinctness() {
        for len in [1, 32, 1024] {
            assert_eq!(generate_random(len).unwrap().len(), len as usize);
        }
        assert_ne!(*generate_random(32).unwrap(), *generate_random(32).unwrap());
        assert!(matches!(
            generate_random(0),
            Err(KmsError::MissingParameter("Length"))
        ));
        for bad in [-1, 1025, i32::MAX, i32::MIN] {
            assert!(matches!(
                generate_random(bad),
                Err(KmsError::InvalidParameter(_))
            ));
        }
    }

    /// FIPS 180-4 example vectors for "abc".
    #[test]
    fn hash_matches_known_vectors() {
        let cases = [
            (
                "SHA-256",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "SHA-384",
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                "SHA-512",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (algorithm, expected) in cases {
            let (_, digest) = hash(algorithm, b"abc").unwrap();
            assert_eq!(hex::encode(digest), expected, "{algorithm}");
        }
        for bad in ["sha-256", "SHA256", "SM3", "MD5", "SHA-1"] {
            assert!(matches!(
                hash(bad, b"abc"),
                Err(KmsError::InvalidParameter(_))
            ));
        }
    }
}
