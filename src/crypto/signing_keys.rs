//! Asymmetric signing keys and HMAC: the pure crypto behind Sign, Verify, GetPublicKey
//! and Hmac.
//!
//! **Constant-time private-key operations only.** Every operation that uses a private
//! key on caller input runs in an implementation designed to be constant time:
//!
//! | spec | `RAW` message (kmsd hashes) | `DIGEST` (caller's SHA-256) |
//! |---|---|---|
//! | `RSA_2048`, `RSA_3072` | ring `RsaKeyPair::sign` | aws-lc-rs `KeyPair::sign_digest` |
//! | `EC_P256` | ring `EcdsaKeyPair::sign` | p256 `sign_prehash` (RFC 6979) |
//! | `EC_P256K` | k256 `sign_prehash` (RFC 6979) | k256 `sign_prehash` |
//! | `ML_DSA_44/65/87` | aws-lc-rs `PqdsaKeyPair::sign` (hedged) | `EXTERNAL_MU`: ml-dsa `sign_mu_randomized` ([`super::ml_dsa`]) |
//! | `ED25519` | ring `Ed25519KeyPair::sign` | (not offered) |
//!
//! ring signs messages, never precomputed digests (briansmith/ring#253 was closed
//! without such an API), so a caller's digest cannot reach ring. For P-256 the
//! RustCrypto p256 crate (the same constant-time field arithmetic design as k256)
//! signs the digest. For RSA the `rsa` crate could, but its private-key operations are
//! not constant time (RUSTSEC-2023-0071, the Marvin attack) and must never touch
//! caller input; aws-lc-rs signs an imported digest with AWS-LC's RSA (BoringSSL's
//! constant-time, blinded implementation), with the same PSS parameters as ring (MGF1
//! SHA-256, salt length 32).
//!
//! Verification uses public keys only, so it may use RustCrypto throughout (`rsa`'s
//! public-key operations are not affected by the advisory): the digest is computed
//! here for `RAW` and every check is `verify_prehash`, one path for both message types.
//! ML-DSA verifies messages with aws-lc-rs and μ with ml-dsa; Ed25519 with ring.
//!
//! A parsed [`SigningKey`] holds its private key in the libraries' own types: the
//! RustCrypto keys zeroize on drop; ring's key pairs cannot be wiped from safe code
//! (the same caveat as `keygen`). Its `Debug` prints the spec only.

use std::fmt;

use p256::pkcs8::der::pem::LineEnding;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, KeyPair as _};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::sha2::Sha256;
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use zeroize::Zeroizing;

use super::keygen::KeyPairSpec;
use super::ml_dsa::{MU_LEN, MlDsaSigner, MlDsaVerifier};

/// The length of a SHA-256 digest: what `DIGEST` input must be.
pub const DIGEST_LEN: usize = 32;
/// The length of an HMAC-SHA256 key kmsd creates, and of its MACs.
pub const HMAC_KEY_LEN: usize = 32;

/// A signature algorithm of Sign and Verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PSS, SHA-256, MGF1 with SHA-256, salt length 32.
    RsaPssSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// ECDSA with SHA-256; the signature DER-encoded.
    EcdsaSha256,
    /// Pure ML-DSA (FIPS 204), the empty context; of the key's parameter set.
    MlDsa,
    /// Ed25519 (RFC 8032, pure).
    Ed25519,
}

impl SigningAlgorithm {
    /// Every algorithm.
    pub const ALL: [SigningAlgorithm; 5] = [
        Self::RsaPssSha256,
        Self::RsaPkcs1Sha256,
        Self::EcdsaSha256,
        Self::MlDsa,
        Self::Ed25519,
    ];

    /// The public name, e.g. `RSA_PSS_SHA_256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaPssSha256 => "RSA_PSS_SHA_256",
            Self::RsaPkcs1Sha256 => "RSA_PKCS1_SHA_256",
            Self::EcdsaSha256 => "ECDSA_SHA_256",
            Self::MlDsa => "ML_DSA",
            Self::Ed25519 => "ED25519",
        }
    }

    /// The algorithm with this public name.
    pub fn from_name(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }

    /// The algorithms a key of `spec` signs with.
    pub fn for_spec(spec: KeyPairSpec) -> &'static [SigningAlgorithm] {
        match spec {
            KeyPairSpec::Rsa2048 | KeyPairSpec::Rsa3072 | KeyPairSpec::Rsa4096 => {
                &[Self::RsaPssSha256, Self::RsaPkcs1Sha256]
            }
            KeyPairSpec::EcP256 | KeyPairSpec::EcP256k => &[Self::EcdsaSha256],
            KeyPairSpec::MlDsa44 | KeyPairSpec::MlDsa65 | KeyPairSpec::MlDsa87 => &[Self::MlDsa],
            KeyPairSpec::Ed25519 => &[Self::Ed25519],
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is signed or verified: a message (RSA and ECDSA hash it with SHA-256; ML-DSA
/// and Ed25519 sign it whole), the caller's SHA-256 digest of it (RSA, ECDSA), or the
/// caller's ML-DSA μ of it.
#[derive(Clone, Copy, Debug)]
pub enum SignInput<'a> {
    /// `MessageType` `RAW`.
    Message(&'a [u8]),
    /// `MessageType` `DIGEST`: exactly [`DIGEST_LEN`] bytes.
    Digest(&'a [u8; DIGEST_LEN]),
    /// `MessageType` `EXTERNAL_MU`: exactly [`MU_LEN`] bytes.
    Mu(&'a [u8; MU_LEN]),
}

impl SignInput<'_> {
    /// The SHA-256 digest of the input: computed for a message, as given for a digest;
    /// `None` for μ, which is no SHA-256 digest of anything.
    pub fn digest(&self) -> Option<[u8; DIGEST_LEN]> {
        match self {
            Self::Message(message) => Some(sha256(message)),
            Self::Digest(digest) => Some(**digest),
            Self::Mu(_) => None,
        }
    }
}

/// SHA-256 of `data`, with ring.
pub fn sha256(data: &[u8]) -> [u8; DIGEST_LEN] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Why a signing key could not sign. No variant carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The algorithm does not apply to the key's spec.
    #[error("{algorithm} does not apply to {spec} keys")]
    AlgorithmMismatch {
        /// What was asked for.
        algorithm: SigningAlgorithm,
        /// The key's spec.
        spec: KeyPairSpec,
    },
    /// The input's form (digest, μ) does not apply to the algorithm.
    #[error("{algorithm} does not sign or verify this form of input")]
    InputMismatch {
        /// The algorithm.
        algorithm: SigningAlgorithm,
    },
    /// The library failed (a bug or a broken key); detail-free.
    #[error("signing failed in {0}")]
    Failed(&'static str),
}

/// Why stored key material could not be parsed into a signing key. Carries the spec
/// and the step, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {spec} private key does not parse: {step}")]
pub struct KeyParseError {
    spec: KeyPairSpec,
    step: &'static str,
}

enum PrivateKey {
    Rsa {
        /// Signs messages.
        ring: ring_sig::RsaKeyPair,
        /// Signs caller digests.
        digest: aws_lc_rs::rsa::KeyPair,
    },
    P256 {
        /// Signs messages.
        ring: ring_sig::EcdsaKeyPair,
        /// Signs caller digests; zeroized on drop.
        prehash: p256::ecdsa::SigningKey,
    },
    K256(k256::ecdsa::SigningKey),
    MlDsa(MlDsaSigner),
    Ed25519(ring_sig::Ed25519KeyPair),
}

/// A parsed asymmetric private key of a master key version, with its public key.
pub struct SigningKey {
    spec: KeyPairSpec,
    private: PrivateKey,
    public: VerifyingKey,
}

impl SigningKey {
    /// Parses PKCS#8 DER of `spec` (as `keygen` makes and the store keeps, sealed).
    /// CPU work for RSA (ring validates the key): call it off the async threads.
    ///
    /// # Errors
    /// [`KeyParseError`] if the DER is not a valid key of `spec` (`RSA_4096` is not a
    /// master key spec, but parses).
    pub fn from_pkcs8(spec: KeyPairSpec, der: &[u8]) -> Result<Self, KeyParseError> {
        let fail = |step| KeyParseError { spec, step };
        let (private, public_spki) = match spec {
            KeyPairSpec::Rsa2048 | KeyPairSpec::Rsa3072 | KeyPairSpec::Rsa4096 => {
                let pair = ring_sig::RsaKeyPair::from_pkcs8(der).map_err(|_| fail("ring"))?;
                // ring gives the public key as PKCS#1 RSAPublicKey; SPKI wraps it.
                let public = rsa::PublicKey::from_pkcs1_der(pair.public().as_ref())
                    .map_err(|_| fail("public key"))?
                    .to_public_key_der()
                    .map_err(|_| fail("SPKI"))?;
                let expected_bits = match spec {
                    KeyPairSpec::Rsa2048 => 2048,
                    KeyPairSpec::Rsa3072 => 3072,
                    _ => 4096,
                };
                if pair.public().modulus_len() * 8 != expected_bits {
                    return Err(fail("modulus size"));
                }
                let digest =
                    aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|_| fail("aws-lc-rs"))?;
                (PrivateKey::Rsa { ring: pair, digest }, public.into_vec())
            }
            KeyPairSpec::EcP256 => {
                let ring = ring_sig::EcdsaKeyPair::from_pkcs8(
                    &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(|_| fail("ring"))?;
                let prehash =
                    p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| fail("p256"))?;
                let public = prehash
                    .verifying_key()
                    .to_public_key_der()
                    .map_err(|_| fail("SPKI"))?;
                (PrivateKey::P256 { ring, prehash }, public.into_vec())
            }
            KeyPairSpec::EcP256k => {
                let key = k256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| fail("k256"))?;
                let public = key
                    .verifying_key()
                    .to_public_key_der()
                    .map_err(|_| fail("SPKI"))?;
                (PrivateKey::K256(key), public.into_vec())
            }
            KeyPairSpec::MlDsa44 | KeyPairSpec::MlDsa65 | KeyPairSpec::MlDsa87 => {
                let (key, public) = MlDsaSigner::from_pkcs8(spec, der).map_err(fail)?;
                (PrivateKey::MlDsa(key), public)
            }
            KeyPairSpec::Ed25519 => {
                // v1 (RFC 8410, the seed only) as keygen makes it; v2 (with the public
                // key, which ring then checks against the private key) parses too.
                let key = ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| fail("ring"))?;
                let public = super::keygen::ed25519_spki(key.public_key().as_ref());
                (PrivateKey::Ed25519(key), public)
            }
        };
        let public = VerifyingKey::from_spki_der(spec, public_spki.as_ref())
            .map_err(|_| fail("public key"))?;
        Ok(Self {
            spec,
            private,
            public,
        })
    }

    /// The key's spec.
    pub fn spec(&self) -> KeyPairSpec {
        self.spec
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `input` with `algorithm`: a DER ECDSA signature, an RSA signature of the
    /// modulus' length, an ML-DSA signature of the parameter set's length, or a 64-byte
    /// Ed25519 signature. RSA signing takes milliseconds and ML-DSA a few hundred
    /// microseconds: call them off the async threads.
    ///
    /// # Errors
    /// [`SignError::AlgorithmMismatch`] for an algorithm of another key type;
    /// [`SignError::InputMismatch`] for a digest to ML-DSA or Ed25519, or μ to anything
    /// but ML-DSA; [`SignError::Failed`] if the library fails.
    pub fn sign(
        &self,
        algorithm: SigningAlgorithm,
        input: SignInput<'_>,
    ) -> Result<Vec<u8>, SignError> {
        if !SigningAlgorithm::for_spec(self.spec).contains(&algorithm) {
            return Err(SignError::AlgorithmMismatch {
                algorithm,
                spec: self.spec,
            });
        }
        match (&self.private, input) {
            (PrivateKey::Rsa { ring, .. }, SignInput::Message(message)) => {
                let padding: &'static dyn ring_sig::RsaEncoding = match algorithm {
                    SigningAlgorithm::RsaPssSha256 => &ring_sig::RSA_PSS_SHA256,
                    _ => &ring_sig::RSA_PKCS1_SHA256,
                };
                let mut signature = vec![0u8; ring.public().modulus_len()];
                ring.sign(padding, &SystemRandom::new(), message, &mut signature)
                    .map_err(|_| SignError::Failed("ring RSA"))?;
                Ok(signature)
            }
            (PrivateKey::Rsa { digest: pair, .. }, SignInput::Digest(digest)) => {
                use aws_lc_rs::signature as lc_sig;
                let padding: &'static dyn lc_sig::RsaEncoding = match algorithm {
                    SigningAlgorithm::RsaPssSha256 => &lc_sig::RSA_PSS_SHA256,
                    _ => &lc_sig::RSA_PKCS1_SHA256,
                };
                let imported =
                    aws_lc_rs::digest::Digest::import_less_safe(digest, &aws_lc_rs::digest::SHA256)
                        .map_err(|_| SignError::Failed("aws-lc-rs digest"))?;
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign_digest(padding, &imported, &mut signature)
                    .map_err(|_| SignError::Failed("aws-lc-rs RSA"))?;
                Ok(signature)
            }
            (PrivateKey::P256 { ring, .. }, SignInput::Message(message)) => ring
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| SignError::Failed("ring ECDSA")),
            (PrivateKey::P256 { prehash, .. }, SignInput::Digest(digest)) => {
                let signature: p256::ecdsa::Signature = prehash
                    .sign_prehash(digest)
                    .map_err(|_| SignError::Failed("p256"))?;
                Ok(signature.to_der().as_bytes().to_vec())
            }
            (PrivateKey::K256(key), input) => {
                let digest = input
                    .digest()
                    .ok_or(SignError::InputMismatch { algorithm })?;
                let signature: k256::ecdsa::Signature = key
                    .sign_prehash(&digest)
                    .map_err(|_| SignError::Failed("k256"))?;
                Ok(signature.to_der().as_bytes().to_vec())
            }
            (PrivateKey::MlDsa(key), SignInput::Message(message)) => {
                key.sign_message(message).map_err(SignError::Failed)
            }
            (PrivateKey::MlDsa(key), SignInput::Mu(mu)) => {
                key.sign_mu(mu).map_err(SignError::Failed)
            }
            (PrivateKey::Ed25519(key), SignInput::Message(message)) => {
                Ok(key.sign(message).as_ref().to_vec())
            }
            (PrivateKey::Rsa { .. } | PrivateKey::P256 { .. }, SignInput::Mu(_))
            | (PrivateKey::MlDsa(_), SignInput::Digest(_))
            | (PrivateKey::Ed25519(_), SignInput::Digest(_) | SignInput::Mu(_)) => {
                Err(SignError::InputMismatch { algorithm })
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("spec", &self.spec)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

enum PublicKey {
    Rsa(rsa::PublicKey),
    P256(p256::ecdsa::VerifyingKey),
    K256(k256::ecdsa::VerifyingKey),
    MlDsa(MlDsaVerifier),
    /// The raw 32-byte key, for ring's `ED25519` verifier.
    Ed25519([u8; 32]),
}

/// A public key that verifies signatures of Sign's algorithms, with its
/// SubjectPublicKeyInfo.
pub struct VerifyingKey {
    spec: KeyPairSpec,
    key: PublicKey,
    spki_der: Vec<u8>,
}

impl VerifyingKey {
    /// Parses an X.509 SubjectPublicKeyInfo (DER) of a key of `spec`.
    ///
    /// # Errors
    /// A detail-free `()` if it is not a public key of that type.
    #[allow(clippy::result_unit_err)]
    pub fn from_spki_der(spec: KeyPairSpec, der: &[u8]) -> Result<Self, ()> {
        let key = match spec {
            KeyPairSpec::Rsa2048 | KeyPairSpec::Rsa3072 | KeyPairSpec::Rsa4096 => {
                PublicKey::Rsa(rsa::PublicKey::from_public_key_der(der).map_err(|_| ())?)
            }
            KeyPairSpec::EcP256 => PublicKey::P256(
                p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|_| ())?,
            ),
            KeyPairSpec::EcP256k => PublicKey::K256(
                k256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|_| ())?,
            ),
            KeyPairSpec::MlDsa44 | KeyPairSpec::MlDsa65 | KeyPairSpec::MlDsa87 => {
                PublicKey::MlDsa(MlDsaVerifier::from_spki_der(spec, der)?)
            }
            KeyPairSpec::Ed25519 => {
                let raw = der
                    .strip_prefix(&super::keygen::ED25519_SPKI_PREFIX[..])
                    .ok_or(())?;
                PublicKey::Ed25519(raw.try_into().map_err(|_| ())?)
            }
        };
        Ok(Self {
            spec,
            key,
            spki_der: der.to_vec(),
        })
    }

    /// The SubjectPublicKeyInfo as PEM (`PUBLIC KEY`, LF line endings).
    pub fn to_pem(&self) -> String {
        p256::pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.spki_der)
            .unwrap_or_default()
    }

    /// The SubjectPublicKeyInfo as DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Whether `signature` is a valid `algorithm` signature of `input` under this key.
    /// Anything malformed (a non-DER ECDSA signature, a wrong length) is `false`.
    ///
    /// # Errors
    /// [`SignError::AlgorithmMismatch`] for an algorithm of another key type;
    /// [`SignError::InputMismatch`] for an input form the algorithm does not take (as
    /// [`SigningKey::sign`]).
    pub fn verify(
        &self,
        algorithm: SigningAlgorithm,
        input: SignInput<'_>,
        signature: &[u8],
    ) -> Result<bool, SignError> {
        if !SigningAlgorithm::for_spec(self.spec).contains(&algorithm) {
            return Err(SignError::AlgorithmMismatch {
                algorithm,
                spec: self.spec,
            });
        }
        let mismatch = SignError::InputMismatch { algorithm };
        let digest = || input.digest().ok_or(mismatch.clone());
        let valid = match &self.key {
            PublicKey::Rsa(key) => match algorithm {
                SigningAlgorithm::RsaPssSha256 => {
                    let digest = digest()?;
                    rsa::pss::Signature::try_from(signature).is_ok_and(|signature| {
                        rsa::pss::VerifyingKey::<Sha256>::new(key.clone())
                            .verify_prehash(&digest, &signature)
                            .is_ok()
                    })
                }
                _ => {
                    let digest = digest()?;
                    rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|signature| {
                        rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone())
                            .verify_prehash(&digest, &signature)
                            .is_ok()
                    })
                }
            },
            PublicKey::P256(key) => {
                let digest = digest()?;
                p256::ecdsa::Signature::from_der(signature)
                    .is_ok_and(|signature| key.verify_prehash(&digest, &signature).is_ok())
            }
            PublicKey::K256(key) => {
                let digest = digest()?;
                k256::ecdsa::Signature::from_der(signature)
                    .is_ok_and(|signature| key.verify_prehash(&digest, &signature).is_ok())
            }
            PublicKey::MlDsa(key) => match input {
                SignInput::Message(message) => key.verify_message(message, signature),
                SignInput::Mu(mu) => key.verify_mu(mu, signature),
                SignInput::Digest(_) => return Err(mismatch),
            },
            PublicKey::Ed25519(key) => match input {
                SignInput::Message(message) => {
                    ring_sig::UnparsedPublicKey::new(&ring_sig::ED25519, key)
                        .verify(message, signature)
                        .is_ok()
                }
                SignInput::Digest(_) | SignInput::Mu(_) => return Err(mismatch),
            },
        };
        Ok(valid)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("spec", &self.spec)
            .field("spki_der_len", &self.spki_der.len())
            .finish()
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`, with ring.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, message).as_ref().to_vec()
}

/// A fresh HMAC-SHA256 key of [`HMAC_KEY_LEN`] bytes, in zeroizing memory.
///
/// # Errors
/// [`super::CryptoError::Random`] if the system random source fails.
pub fn generate_hmac_key() -> Result<Zeroizing<Vec<u8>>, super::CryptoError> {
    let mut key = Zeroizing::new(vec![0u8; HMAC_KEY_LEN]);
    super::rng::fill_random(&mut key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keygen::{self, KeyFormat};

    fn key(spec: KeyPairSpec) -> SigningKey {
        let pair = keygen::generate(spec).unwrap();
        let key = SigningKey::from_pkcs8(spec, pair.private_key_der()).unwrap();
        assert_eq!(key.verifying_key().spki_der(), pair.public_key_der());
        assert_eq!(
            key.verifying_key().to_pem().as_bytes(),
            pair.public_key(KeyFormat::Pem)
        );
        key
    }

    #[test]
    fn every_spec_and_algorithm_signs_what_it_verifies() {
        let message = b"kmsd signs this";
        let digest = sha256(message);
        for spec in [
            KeyPairSpec::Rsa2048,
            KeyPairSpec::EcP256,
            KeyPairSpec::EcP256k,
        ] {
            let key = key(spec);
            let public = key.verifying_key();
            for &algorithm in SigningAlgorithm::for_spec(spec) {
                let signature = key.sign(algorithm, SignInput::Message(message)).unwrap();
                // A signature of the message verifies as the message and as its digest.
                for input in [SignInput::Message(message), SignInput::Digest(&digest)] {
                    assert!(public.verify(algorithm, input, &signature).unwrap());
                }
                assert!(
                    !public
                        .verify(algorithm, SignInput::Message(b"another"), &signature)
                        .unwrap()
                );
                let mut flipped = signature.clone();
                let last = flipped.len() - 1;
                flipped[last] ^= 1;
                assert!(
                    !public
                        .verify(algorithm, SignInput::Message(message), &flipped)
                        .unwrap()
                );
                assert!(
                    !public
                        .verify(algorithm, SignInput::Message(message), b"")
                        .unwrap()
                );
                // A signature of the digest verifies as the message.
                let of_digest = key.sign(algorithm, SignInput::Digest(&digest)).unwrap();
                assert!(
                    public
                        .verify(algorithm, SignInput::Message(message), &of_digest)
                        .unwrap()
                );
            }
            for algorithm in SigningAlgorithm::ALL {
                if SigningAlgorithm::for_spec(spec).contains(&algorithm) {
                    continue;
                }
                let mismatch = SignError::AlgorithmMismatch { algorithm, spec };
                assert_eq!(
                    key.sign(algorithm, SignInput::Message(message))
                        .unwrap_err(),
                    mismatch
                );
                assert_eq!(
                    public
                        .verify(algorithm, SignInput::Message(message), b"x")
                        .unwrap_err(),
                    mismatch
                );
            }
        }
    }

    #[test]
    fn keys_of_another_spec_do_not_parse_and_debug_is_redacted() {
        let pair = keygen::generate(KeyPairSpec::EcP256).unwrap();
        assert!(SigningKey::from_pkcs8(KeyPairSpec::EcP256k, pair.private_key_der()).is_err());
        assert!(SigningKey::from_pkcs8(KeyPairSpec::Rsa2048, pair.private_key_der()).is_err());
        assert!(SigningKey::from_pkcs8(KeyPairSpec::EcP256, b"junk").is_err());
        let key = SigningKey::from_pkcs8(KeyPairSpec::EcP256, pair.private_key_der()).unwrap();
        let printed = format!("{key:?} {:?}", key.verifying_key());
        assert!(printed.contains("[REDACTED]"), "{printed}");
        let der = format!("{:?}", &pair.private_key_der()[36..52]);
        assert!(!printed.contains(&der[1..der.len() - 1]), "{printed}");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(generate_hmac_key().unwrap().len(), HMAC_KEY_LEN);
    }

    /// Project Wycheproof verification vectors (see `tests/data/wycheproof/README.md`)
    /// through [`VerifyingKey::verify`], each as a message and as its digest. `valid`
    /// must verify, `invalid` must not; `acceptable` may go either way.
    #[test]
    fn wycheproof_verification() {
        use crate::crypto::wycheproof::{hex as h, vectors};
        let file = vectors("signatures_sha256.json");
        let mut checked = 0usize;
        for set in file["sets"].as_array().unwrap() {
            let name = set["name"].as_str().unwrap();
            let (spec, algorithm) = name.split_once('/').unwrap();
            let spec: KeyPairSpec = spec.parse().unwrap();
            let algorithm = SigningAlgorithm::from_name(algorithm).unwrap();
            let mut in_set = 0usize;
            for group in set["testGroups"].as_array().unwrap() {
                let key = VerifyingKey::from_spki_der(spec, &h(&group["publicKeyDer"]))
                    .unwrap_or_else(|()| panic!("{name}: group key"));
                for t in group["tests"].as_array().unwrap() {
                    let (id, message, signature) = (&t[0], h(&t[1]), h(&t[2]));
                    let digest = sha256(&message);
                    let as_message = key
                        .verify(algorithm, SignInput::Message(&message), &signature)
                        .unwrap();
                    let as_digest = key
                        .verify(algorithm, SignInput::Digest(&digest), &signature)
                        .unwrap();
                    assert_eq!(as_message, as_digest, "{name} tcId {id}");
                    match t[3].as_str().unwrap() {
                        "valid" => assert!(as_message, "{name} tcId {id}: valid"),
                        "invalid" => assert!(!as_message, "{name} tcId {id}: invalid"),
                        _ => {}
                    }
                    in_set += 1;
                }
            }
            assert_eq!(set["numberOfTests"], in_set, "{name}");
            checked += in_set;
        }
        assert_eq!(checked, 484 + 463 + 108 + 259);
    }

    /// Project Wycheproof's ML-DSA and Ed25519 vectors (see
    /// `tests/data/wycheproof/README.md`): signatures made by other implementations under
    /// their keys, through [`VerifyingKey::verify`] (ML-DSA as the message and as its μ,
    /// which must agree); and FIPS 204 seed keys through [`SigningKey::from_pkcs8`], μ
    /// and both message forms.
    #[test]
    fn wycheproof_ml_dsa_and_ed25519() {
        use crate::crypto::ml_dsa::external_mu;
        use crate::crypto::wycheproof::{hex as h, vectors};
        let file = vectors("ml_dsa_ed25519.json");
        let mut checked = 0usize;
        for set in file["verify"].as_array().unwrap() {
            let name = set["name"].as_str().unwrap();
            let (spec, algorithm) = name.split_once('/').unwrap();
            let spec: KeyPairSpec = spec.parse().unwrap();
            let algorithm = SigningAlgorithm::from_name(algorithm).unwrap();
            let mut in_set = 0usize;
            for group in set["testGroups"].as_array().unwrap() {
                let der = h(&group["publicKeyDer"]);
                let key = VerifyingKey::from_spki_der(spec, &der);
                for t in group["tests"].as_array().unwrap() {
                    let (id, message, signature) = (&t[0], h(&t[1]), h(&t[2]));
                    let result = t[3].as_str().unwrap();
                    in_set += 1;
                    let Ok(key) = &key else {
                        // A malformed public key (wrong length): never a valid test.
                        assert_eq!(result, "invalid", "{name} tcId {id}: key refused");
                        continue;
                    };
                    let valid = key
                        .verify(algorithm, SignInput::Message(&message), &signature)
                        .unwrap();
                    if spec.is_ml_dsa() {
                        let mu = external_mu(spec, &der, &message).unwrap();
                        let as_mu = key.verify(algorithm, SignInput::Mu(&mu), &signature);
                        assert_eq!(as_mu, Ok(valid), "{name} tcId {id}: as mu");
                    }
                    assert_eq!(valid, result == "valid", "{name} tcId {id}: {result}");
                }
            }
            assert_eq!(set["numberOfTests"], in_set, "{name}");
            checked += in_set;
        }
        assert_eq!(checked, 151 + 15 + 15 + 16);

        let mut seeds = 0usize;
        for set in file["sign_seed"].as_array().unwrap() {
            let spec: KeyPairSpec = set["name"].as_str().unwrap().parse().unwrap();
            for t in set["tests"].as_array().unwrap() {
                let id = &t["tcId"];
                let key = SigningKey::from_pkcs8(spec, &h(&t["privateKeyPkcs8"])).unwrap();
                let public = key.verifying_key();
                assert!(
                    public.spki_der().ends_with(&h(&t["publicKey"])),
                    "{spec} {id}"
                );
                let (message, signature) = (h(&t["msg"]), h(&t["sig"]));
                let mu: [u8; MU_LEN] = h(&t["mu"]).try_into().unwrap();
                assert_eq!(external_mu(spec, public.spki_der(), &message), Some(mu));
                for input in [SignInput::Message(&message), SignInput::Mu(&mu)] {
                    assert_eq!(
                        public.verify(SigningAlgorithm::MlDsa, input, &signature),
                        Ok(true)
                    );
                }
                // Hedged, so not their bytes: but a signature of their message.
                let ours = key
                    .sign(SigningAlgorithm::MlDsa, SignInput::Mu(&mu))
                    .unwrap();
                assert_ne!(ours, signature);
                let valid =
                    public.verify(SigningAlgorithm::MlDsa, SignInput::Message(&message), &ours);
                assert_eq!(valid, Ok(true), "{spec} {id}");
                seeds += 1;
            }
        }
        assert_eq!(seeds, 9);
    }

    #[test]
    fn ml_dsa_and_ed25519_sign_each_form_they_take_and_refuse_the_others() {
        use crate::crypto::ml_dsa::external_mu;
        let message = b"kmsd signs this";
        let digest = sha256(message);
        for spec in [
            KeyPairSpec::MlDsa44,
            KeyPairSpec::MlDsa65,
            KeyPairSpec::MlDsa87,
            KeyPairSpec::Ed25519,
        ] {
            let key = key(spec);
            let public = key.verifying_key();
            let algorithm = SigningAlgorithm::for_spec(spec)[0];
            let signature = key.sign(algorithm, SignInput::Message(message)).unwrap();
            assert_eq!(
                public.verify(algorithm, SignInput::Message(message), &signature),
                Ok(true)
            );
            let mut flipped = signature.clone();
            flipped[7] ^= 0x10;
            for (input, signature) in [
                (&b"kmsd signs that"[..], &signature[..]),
                (message, &flipped[..]),
                (message, &signature[1..]),
                (message, b""),
            ] {
                assert_eq!(
                    public.verify(algorithm, SignInput::Message(input), signature),
                    Ok(false)
                );
            }
            let mismatch = SignError::InputMismatch { algorithm };
            assert_eq!(
                key.sign(algorithm, SignInput::Digest(&digest)),
                Err(mismatch.clone())
            );
            assert_eq!(
                public.verify(algorithm, SignInput::Digest(&digest), &signature),
                Err(mismatch.clone())
            );
            match external_mu(spec, public.spki_der(), message) {
                Some(mu) => {
                    let of_mu = key.sign(algorithm, SignInput::Mu(&mu)).unwrap();
                    for signature in [&signature, &of_mu] {
                        assert_eq!(
                            public.verify(algorithm, SignInput::Mu(&mu), signature),
                            Ok(true)
                        );
                        assert_eq!(
                            public.verify(algorithm, SignInput::Message(message), signature),
                            Ok(true)
                        );
                    }
                    let mut other = mu;
                    other[63] ^= 1;
                    assert_eq!(
                        public.verify(algorithm, SignInput::Mu(&other), &of_mu),
                        Ok(false)
                    );
                }
                None => {
                    assert_eq!(spec, KeyPairSpec::Ed25519);
                    let mu = [0u8; MU_LEN];
                    assert_eq!(key.sign(algorithm, SignInput::Mu(&mu)), Err(mismatch));
                }
            }
            assert!(format!("{key:?}").contains("[REDACTED]"));
        }
    }
}
