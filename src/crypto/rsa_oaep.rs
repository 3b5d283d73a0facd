//! RSA encryption keys (`RSA_2048`, `RSA_3072` with usage `ENCRYPT/DECRYPT`):
//! RSAES-OAEP (RFC 8017 §7.1) for Encrypt and Decrypt.
//!
//! **aws-lc-rs does every operation, and the private key meets caller input only in
//! [`OaepKey::decrypt`]**, which is AWS-LC's `EVP_PKEY_decrypt` with OAEP padding: a
//! blinded RSA private-key operation and a constant-time padding check (BoringSSL's
//! `RSA_padding_check_PKCS1_OAEP_mgf1`). The `rsa` crate's private-key operations are
//! not constant time (RUSTSEC-2023-0071, the Marvin attack): it never sees these keys.
//!
//! **One failure.** Whatever is wrong with a ciphertext (its length, its value not
//! below the modulus, a padding, label or hash mismatch, another key's ciphertext,
//! another algorithm's), decryption fails with the one detail-free [`OpenError`], and
//! the data plane answers it with the one `InvalidParameter` decryption error: a
//! caller learns nothing that could serve as a padding oracle.
//!
//! **No label.** The public API has no OAEP label parameter; kmsd encrypts and decrypts
//! with the empty label (as the official SDKs and `openssl pkeyutl` without
//! `rsa_oaep_label` do). A ciphertext made with another label fails like any other.
//!
//! Both algorithms use the same hash for OAEP and MGF1: `RSAES_OAEP_SHA_256` is SHA-256
//! with MGF1-SHA-256, `RSAES_OAEP_SHA_1` SHA-1 with MGF1-SHA-1.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use zeroize::Zeroizing;

use super::OpenError;
use super::keygen::KeyPairSpec;
use super::signing_keys::VerifyingKey;

/// An encryption algorithm of RSA encryption keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OaepAlgorithm {
    /// RSAES-OAEP, SHA-256, MGF1 with SHA-256.
    Sha256,
    /// RSAES-OAEP, SHA-1, MGF1 with SHA-1.
    Sha1,
}

impl OaepAlgorithm {
    /// Every algorithm, in the order error messages list them.
    pub const ALL: [OaepAlgorithm; 2] = [Self::Sha256, Self::Sha1];

    /// The public name: `RSAES_OAEP_SHA_256` or `RSAES_OAEP_SHA_1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "RSAES_OAEP_SHA_256",
            Self::Sha1 => "RSAES_OAEP_SHA_1",
        }
    }

    /// The algorithm with this public name.
    pub fn from_name(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }

    /// The hash's output length: 32 or 20 bytes.
    pub fn hash_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha1 => 20,
        }
    }

    /// The longest plaintext a key of `modulus_len` bytes seals: `k - 2*hLen - 2`
    /// (RFC 8017 §7.1.1): 190 and 214 bytes for RSA_2048, 318 and 342 for RSA_3072.
    pub fn max_plaintext_len(self, modulus_len: usize) -> usize {
        modulus_len.saturating_sub(2 * self.hash_len() + 2)
    }

    fn lc(self) -> &'static aws_lc_rs::rsa::OaepAlgorithm {
        match self {
            Self::Sha256 => &OAEP_SHA256_MGF1SHA256,
            Self::Sha1 => &OAEP_SHA1_MGF1SHA1,
        }
    }
}

impl fmt::Display for OaepAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a plaintext could not be sealed. No variant carries key or plaintext bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OaepSealError {
    /// Longer than the algorithm's limit for this key.
    #[error("the plaintext is {len} bytes; at most {max} fit")]
    TooLong {
        /// The plaintext's length.
        len: usize,
        /// The limit, [`OaepAlgorithm::max_plaintext_len`].
        max: usize,
    },
    /// aws-lc-rs failed (a bug or a broken key).
    #[error("RSAES-OAEP encryption failed in aws-lc-rs")]
    Failed,
}

/// Why stored key material could not be parsed into an RSA encryption key. Carries
/// the spec and the step, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {spec} RSA encryption key does not parse: {step}")]
pub struct OaepKeyError {
    spec: KeyPairSpec,
    step: &'static str,
}

/// A parsed RSA encryption key of a master key version: its private key for
/// decryption, its public key for encryption and GetPublicKey. `Debug` prints the
/// spec only; the private key lives in AWS-LC's memory, freed (not wiped from safe
/// code, the same caveat as ring's keys in `signing_keys`) when dropped.
pub struct OaepKey {
    spec: KeyPairSpec,
    private: OaepPrivateDecryptingKey,
    public: OaepPublicEncryptingKey,
    spki: VerifyingKey,
}

impl OaepKey {
    /// Parses PKCS#8 DER of an `RSA_2048` or `RSA_3072` key (as `keygen` makes and the
    /// store keeps, sealed). CPU work (AWS-LC checks the key): call it off the async
    /// threads.
    ///
    /// # Errors
    /// [`OaepKeyError`] if the DER is not an RSA key of `spec`'s modulus size.
    pub fn from_pkcs8(spec: KeyPairSpec, der: &[u8]) -> Result<Self, OaepKeyError> {
        let fail = |step| OaepKeyError { spec, step };
        let bits = match spec {
            KeyPairSpec::Rsa2048 => 2048,
            KeyPairSpec::Rsa3072 => 3072,
            _ => return Err(fail("not an RSA encryption key spec")),
        };
        let private = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| fail("aws-lc-rs"))?;
        if private.key_size_bits() != bits {
            return Err(fail("modulus size"));
        }
        let public = private.public_key();
        let spki_der = public.as_der().map_err(|_| fail("SPKI"))?;
        let spki =
            VerifyingKey::from_spki_der(spec, spki_der.as_ref()).map_err(|_| fail("SPKI"))?;
        Ok(Self {
            spec,
            private: OaepPrivateDecryptingKey::new(private).map_err(|_| fail("OAEP"))?,
            public: OaepPublicEncryptingKey::new(public).map_err(|_| fail("OAEP"))?,
            spki,
        })
    }

    /// The key's spec.
    pub fn spec(&self) -> KeyPairSpec {
        self.spec
    }

    /// The modulus' length in bytes: every ciphertext's length.
    pub fn modulus_len(&self) -> usize {
        self.public.key_size_bytes()
    }

    /// The longest plaintext `algorithm` seals under this key.
    pub fn max_plaintext_len(&self, algorithm: OaepAlgorithm) -> usize {
        algorithm.max_plaintext_len(self.modulus_len())
    }

    /// The public key (X.509 SubjectPublicKeyInfo), for GetPublicKey.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.spki
    }

    /// Seals `plaintext` with the public key: a fresh random seed each call, so the
    /// same plaintext never gives the same ciphertext. The ciphertext is
    /// [`modulus_len`](Self::modulus_len) bytes. A public-key operation (tens of
    /// microseconds): fine on the async threads.
    ///
    /// # Errors
    /// [`OaepSealError::TooLong`] beyond [`max_plaintext_len`](Self::max_plaintext_len);
    /// [`OaepSealError::Failed`] if aws-lc-rs fails.
    pub fn encrypt(
        &self,
        algorithm: OaepAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, OaepSealError> {
        let max = self.max_plaintext_len(algorithm);
        if plaintext.len() > max {
            return Err(OaepSealError::TooLong {
                len: plaintext.len(),
                max,
            });
        }
        let mut ciphertext = vec![0u8; self.public.ciphertext_size()];
        let len = self
            .public
            .encrypt(algorithm.lc(), plaintext, &mut ciphertext, None)
            .map_err(|_| OaepSealError::Failed)?
            .len();
        ciphertext.truncate(len);
        Ok(ciphertext)
    }

    /// Opens `ciphertext` with the private key (aws-lc-rs, constant time; see the
    /// module docs). A private-key operation (about a millisecond for RSA_2048):
    /// call it off the async threads.
    ///
    /// # Errors
    /// [`OpenError`], whatever is wrong with the ciphertext.
    pub fn decrypt(
        &self,
        algorithm: OaepAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let mut plaintext = Zeroizing::new(vec![0u8; self.private.min_output_size()]);
        let len = self
            .private
            .decrypt(algorithm.lc(), ciphertext, &mut plaintext, None)
            .map_err(|_| OpenError)?
            .len();
        plaintext.truncate(len);
        Ok(plaintext)
    }
}

impl fmt::Debug for OaepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OaepKey")
            .field("spec", &self.spec)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keygen;
    use crate::crypto::wycheproof::{hex, vectors};

    fn key(spec: KeyPairSpec) -> OaepKey {
        let pair = keygen::generate(spec).unwrap();
        OaepKey::from_pkcs8(spec, pair.private_key_der()).unwrap()
    }

    #[test]
    fn round_trips_up_to_the_oaep_limit_and_refuses_beyond_it() {
        for (spec, limits) in [
            (KeyPairSpec::Rsa2048, [190, 214]),
            (KeyPairSpec::Rsa3072, [318, 342]),
        ] {
            let key = key(spec);
            for (algorithm, max) in OaepAlgorithm::ALL.into_iter().zip(limits) {
                assert_eq!(key.max_plaintext_len(algorithm), max, "{spec} {algorithm}");
                for len in [1, max] {
                    let plaintext = vec![0x5a; len];
                    let sealed = key.encrypt(algorithm, &plaintext).unwrap();
                    assert_eq!(sealed.len(), key.modulus_len());
                    let again = key.encrypt(algorithm, &plaintext).unwrap();
                    assert!(sealed != again, "a fresh seed each time");
                    assert!(*key.decrypt(algorithm, &sealed).unwrap() == plaintext);
                }
                assert_eq!(
                    key.encrypt(algorithm, &vec![0; max + 1]),
                    Err(OaepSealError::TooLong { len: max + 1, max })
                );
            }
        }
    }

    #[test]
    fn every_damaged_ciphertext_fails_the_same_way() {
        let key = key(KeyPairSpec::Rsa2048);
        let other = self::key(KeyPairSpec::Rsa2048);
        let sealed = key.encrypt(OaepAlgorithm::Sha256, b"secret").unwrap();
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        let mut longer = sealed.clone();
        longer.push(0);
        let damaged: [(&str, &[u8], OaepAlgorithm, &OaepKey); 6] = [
            ("bit flip", &flipped, OaepAlgorithm::Sha256, &key),
            ("truncated", &sealed[..255], OaepAlgorithm::Sha256, &key),
            ("longer", &longer, OaepAlgorithm::Sha256, &key),
            ("empty", b"", OaepAlgorithm::Sha256, &key),
            ("wrong algorithm", &sealed, OaepAlgorithm::Sha1, &key),
            ("wrong key", &sealed, OaepAlgorithm::Sha256, &other),
        ];
        for (what, ciphertext, algorithm, key) in damaged {
            assert_eq!(key.decrypt(algorithm, ciphertext), Err(OpenError), "{what}");
        }
        // The modulus itself (not below the modulus) and all ones.
        let modulus_sized = vec![0xff; 256];
        assert_eq!(
            key.decrypt(OaepAlgorithm::Sha256, &modulus_sized),
            Err(OpenError)
        );
    }

    #[test]
    fn only_rsa_keys_of_the_spec_parse_and_debug_is_redacted() {
        let rsa = keygen::generate(KeyPairSpec::Rsa2048).unwrap();
        assert!(OaepKey::from_pkcs8(KeyPairSpec::Rsa3072, rsa.private_key_der()).is_err());
        let ec = keygen::generate(KeyPairSpec::EcP256).unwrap();
        assert!(OaepKey::from_pkcs8(KeyPairSpec::Rsa2048, ec.private_key_der()).is_err());
        assert!(OaepKey::from_pkcs8(KeyPairSpec::EcP256, ec.private_key_der()).is_err());
        let key = OaepKey::from_pkcs8(KeyPairSpec::Rsa2048, rsa.private_key_der()).unwrap();
        let printed = format!("{key:?}");
        assert!(printed.contains("[REDACTED]"), "{printed}");
        assert!(
            key.public_key()
                .to_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
    }

    /// Every vector of Wycheproof's RSA-OAEP decryption files kmsd's algorithms cover,
    /// through [`OaepKey::decrypt`] (`tests/data/wycheproof/README.md` names the files).
    ///
    /// kmsd has no OAEP label (the public API has no such parameter): it decrypts with
    /// the empty label. Label-less vectors are checked fully: `valid` ones must open to
    /// their message, `invalid` ones must fail with the one [`OpenError`]. A vector with
    /// a non-empty label is a ciphertext made for another label, so under the empty
    /// label its label hash does not match and it must fail like any damaged
    /// ciphertext; accepting it would mean the label is ignored.
    #[test]
    fn wycheproof_rsa_oaep_decryption() {
        let mut checked = [0usize; 3]; // opened, refused, refused for their label
        for (file, algorithm) in [
            (
                "rsa_oaep_2048_sha256_mgf1sha256_test.json",
                OaepAlgorithm::Sha256,
            ),
            (
                "rsa_oaep_3072_sha256_mgf1sha256_test.json",
                OaepAlgorithm::Sha256,
            ),
            ("rsa_oaep_2048_sha1_mgf1sha1_test.json", OaepAlgorithm::Sha1),
        ] {
            let doc = vectors(file);
            for group in doc["testGroups"].as_array().unwrap() {
                let bits = group["keySize"].as_u64().unwrap();
                let spec = match bits {
                    2048 => KeyPairSpec::Rsa2048,
                    3072 => KeyPairSpec::Rsa3072,
                    other => panic!("{file}: key size {other}"),
                };
                let key = OaepKey::from_pkcs8(spec, &hex(&group["privateKeyPkcs8"])).unwrap();
                for test in group["tests"].as_array().unwrap() {
                    let id = test["tcId"].as_u64().unwrap();
                    let ciphertext = hex(&test["ct"]);
                    let labelled = !hex(&test["label"]).is_empty();
                    let result = key.decrypt(algorithm, &ciphertext);
                    match (test["result"].as_str().unwrap(), labelled) {
                        ("valid", false) => {
                            let opened = result.unwrap_or_else(|_| panic!("{file} #{id}"));
                            assert!(*opened == hex(&test["msg"]), "{file} #{id}");
                            checked[0] += 1;
                        }
                        ("invalid", false) => {
                            assert_eq!(result, Err(OpenError), "{file} #{id}");
                            checked[1] += 1;
                        }
                        (_, true) => {
                            assert_eq!(result, Err(OpenError), "{file} #{id}: labelled");
                            checked[2] += 1;
                        }
                        (other, _) => panic!("{file} #{id}: result {other}"),
                    }
                }
            }
        }
        // 30 label-less valid, 57 invalid, 23 labelled: a file that stopped loading, or
        // a vector skipped, shows here.
        assert_eq!(checked, [30, 57, 23]);
    }
}
