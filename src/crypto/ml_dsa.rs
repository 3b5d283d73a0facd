//! ML-DSA (FIPS 204) master keys: pure ML-DSA over a message with aws-lc-rs, and over a
//! caller's μ ("external μ", `MessageType` `EXTERNAL_MU`) with RustCrypto's ml-dsa.
//!
//! aws-lc-rs (AWS-LC's ML-DSA, of the FIPS-validated lineage) signs and verifies
//! messages: pure ML-DSA with the empty context string, hedged (randomized) signing.
//! Its safe API cannot sign or verify a μ (aws-lc-rs 1.19, the version kmsd builds, says so
//! in its `signature` module docs; AWS-LC's `EVP_PKEY_sign` can, but only through FFI,
//! which kmsd forbids). RustCrypto's ml-dsa (0.1.2) exposes both as safe functions
//! (`ExpandedSigningKey::sign_mu_randomized`, `VerifyingKey::verify_mu`), so `EXTERNAL_MU`
//! goes there; its arithmetic is written to be constant time (Barrett reduction instead
//! of division, constant-time NTT; the pre-releases' timing flaw was fixed in rc.3), but unlike
//! AWS-LC it has never been independently audited (its README says so; SECURITY.md
//! repeats it). Both parse the same stored key: PKCS#8 v1 of the 32-byte seed.
//!
//! μ (FIPS 204 §6.2, Algorithm 7 line 6, the empty context):
//! `μ = SHAKE256(SHAKE256(pk, 64) || 0x00 || 0x00 || M, 64)`, 64 bytes, where `pk` is
//! the raw public key (the SPKI's BIT STRING). A signature of μ is a signature of `M`:
//! either form verifies it.

use aws_lc_rs::signature::{self as lc_sig, KeyPair as _, ParsedPublicKey, PqdsaKeyPair};
use ml_dsa::{MlDsa44, MlDsa65, MlDsa87, MlDsaParams};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

use super::keygen::KeyPairSpec;
use super::rng::RingRng;

/// The length of μ, the message representative `EXTERNAL_MU` carries.
pub const MU_LEN: usize = 64;

/// One of ml-dsa's key types, for each parameter set.
enum PerSet<T44, T65, T87> {
    L44(T44),
    L65(T65),
    L87(T87),
}

/// ml-dsa's private key of one parameter set (zeroized on drop).
type MuSigningKey = PerSet<
    Box<ml_dsa::SigningKey<MlDsa44>>,
    Box<ml_dsa::SigningKey<MlDsa65>>,
    Box<ml_dsa::SigningKey<MlDsa87>>,
>;

/// ml-dsa's public key of one parameter set.
type MuVerifyingKey = PerSet<
    Box<ml_dsa::VerifyingKey<MlDsa44>>,
    Box<ml_dsa::VerifyingKey<MlDsa65>>,
    Box<ml_dsa::VerifyingKey<MlDsa87>>,
>;

/// An ML-DSA private key: AWS-LC's for messages, ml-dsa's (zeroized on drop) for μ.
pub(super) struct MlDsaSigner {
    message: PqdsaKeyPair,
    mu: MuSigningKey,
}

impl MlDsaSigner {
    /// Parses PKCS#8 DER of an ML-DSA `spec` key; returns it and its SPKI DER. Both
    /// libraries must accept the key, and derive the same public key.
    ///
    /// # Errors
    /// The step that failed (never key bytes).
    pub(super) fn from_pkcs8(
        spec: KeyPairSpec,
        der: &[u8],
    ) -> Result<(Self, Vec<u8>), &'static str> {
        use aws_lc_rs::encoding::AsDer;
        use p256::pkcs8::EncodePublicKey;
        let algorithm = spec.ml_dsa_signing().ok_or("not ML-DSA")?;
        let message = PqdsaKeyPair::from_pkcs8(algorithm, der).map_err(|_| "aws-lc-rs")?;
        let spki = message
            .public_key()
            .as_der()
            .map_err(|_| "SPKI")?
            .as_ref()
            .to_vec();
        fn parse<P>(der: &[u8]) -> Result<(Box<ml_dsa::SigningKey<P>>, Vec<u8>), &'static str>
        where
            P: MlDsaParams,
            ml_dsa::SigningKey<P>: DecodePrivateKey,
            ml_dsa::VerifyingKey<P>: EncodePublicKey,
        {
            let key = ml_dsa::SigningKey::<P>::from_pkcs8_der(der).map_err(|_| "ml-dsa")?;
            let spki = key
                .expanded_key()
                .verifying_key()
                .to_public_key_der()
                .map_err(|_| "ml-dsa SPKI")?;
            Ok((Box::new(key), spki.into_vec()))
        }
        let (mu, mu_spki) = match spec {
            KeyPairSpec::MlDsa44 => parse::<MlDsa44>(der).map(|(k, s)| (PerSet::L44(k), s))?,
            KeyPairSpec::MlDsa65 => parse::<MlDsa65>(der).map(|(k, s)| (PerSet::L65(k), s))?,
            _ => parse::<MlDsa87>(der).map(|(k, s)| (PerSet::L87(k), s))?,
        };
        if mu_spki != spki {
            return Err("the libraries derive different public keys");
        }
        Ok((Self { message, mu }, spki))
    }

    /// Pure ML-DSA of `message`, empty context, hedged: AWS-LC.
    pub(super) fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, &'static str> {
        let mut signature = vec![0u8; self.message.algorithm().signature_len()];
        let len = self
            .message
            .sign(message, &mut signature)
            .map_err(|_| "aws-lc-rs ML-DSA")?;
        signature.truncate(len);
        Ok(signature)
    }

    /// ML-DSA of a caller's μ, hedged (fresh randomness from ring's `SystemRandom`):
    /// ml-dsa.
    pub(super) fn sign_mu(&self, mu: &[u8; MU_LEN]) -> Result<Vec<u8>, &'static str> {
        fn sign<P: MlDsaParams>(
            key: &ml_dsa::SigningKey<P>,
            mu: &[u8; MU_LEN],
        ) -> Result<Vec<u8>, &'static str> {
            key.expanded_key()
                .sign_mu_randomized(&(*mu).into(), &mut RingRng)
                .map(|signature| signature.encode().to_vec())
                .map_err(|_| "ml-dsa")
        }
        match &self.mu {
            PerSet::L44(key) => sign(key, mu),
            PerSet::L65(key) => sign(key, mu),
            PerSet::L87(key) => sign(key, mu),
        }
    }
}

/// An ML-DSA public key: AWS-LC verifies messages, ml-dsa verifies μ.
pub(super) struct MlDsaVerifier {
    message: ParsedPublicKey,
    mu: MuVerifyingKey,
}

impl MlDsaVerifier {
    /// Parses the SubjectPublicKeyInfo DER of an ML-DSA `spec` key (the LAMPS OID of
    /// that parameter set, no parameters).
    pub(super) fn from_spki_der(spec: KeyPairSpec, der: &[u8]) -> Result<Self, ()> {
        let algorithm: &'static lc_sig::PqdsaVerificationAlgorithm = match spec {
            KeyPairSpec::MlDsa44 => &lc_sig::ML_DSA_44,
            KeyPairSpec::MlDsa65 => &lc_sig::ML_DSA_65,
            KeyPairSpec::MlDsa87 => &lc_sig::ML_DSA_87,
            _ => return Err(()),
        };
        // aws-lc-rs also takes a raw key: only a DER SPKI is accepted here.
        if der.first() != Some(&0x30) {
            return Err(());
        }
        let message = ParsedPublicKey::new(algorithm, der).map_err(|_| ())?;
        fn parse<P>(der: &[u8]) -> Result<Box<ml_dsa::VerifyingKey<P>>, ()>
        where
            P: MlDsaParams,
            ml_dsa::VerifyingKey<P>: DecodePublicKey,
        {
            ml_dsa::VerifyingKey::<P>::from_public_key_der(der)
                .map(Box::new)
                .map_err(|_| ())
        }
        let mu = match spec {
            KeyPairSpec::MlDsa44 => PerSet::L44(parse::<MlDsa44>(der)?),
            KeyPairSpec::MlDsa65 => PerSet::L65(parse::<MlDsa65>(der)?),
            _ => PerSet::L87(parse::<MlDsa87>(der)?),
        };
        Ok(Self { message, mu })
    }

    /// Whether `signature` is a pure ML-DSA signature of `message` (empty context).
    pub(super) fn verify_message(&self, message: &[u8], signature: &[u8]) -> bool {
        self.message.verify_sig(message, signature).is_ok()
    }

    /// Whether `signature` is an ML-DSA signature of μ. A signature of the wrong length
    /// or encoding is `false`.
    pub(super) fn verify_mu(&self, mu: &[u8; MU_LEN], signature: &[u8]) -> bool {
        fn verify<P: MlDsaParams>(
            key: &ml_dsa::VerifyingKey<P>,
            mu: &[u8; MU_LEN],
            signature: &[u8],
        ) -> bool {
            ml_dsa::Signature::<P>::try_from(signature)
                .is_ok_and(|signature| key.verify_mu(&(*mu).into(), &signature))
        }
        match &self.mu {
            PerSet::L44(key) => verify(key, mu, signature),
            PerSet::L65(key) => verify(key, mu, signature),
            PerSet::L87(key) => verify(key, mu, signature),
        }
    }
}

/// μ of `message` under the ML-DSA public key `spki_der` (pure ML-DSA, the empty
/// context), as a caller computes it for `EXTERNAL_MU`; `None` if the SPKI is not an
/// ML-DSA key of `spec`. For tests and tools: kmsd itself never computes μ.
pub fn external_mu(spec: KeyPairSpec, spki_der: &[u8], message: &[u8]) -> Option<[u8; MU_LEN]> {
    use ml_dsa::signature::digest::Update;
    fn mu<P>(der: &[u8], message: &[u8]) -> Option<[u8; MU_LEN]>
    where
        P: MlDsaParams,
        ml_dsa::VerifyingKey<P>: DecodePublicKey,
    {
        let key = ml_dsa::VerifyingKey::<P>::from_public_key_der(der).ok()?;
        let mu = key
            .compute_mu(
                |shake| {
                    shake.update(message);
                    Ok(())
                },
                &[],
            )
            .ok()?;
        Some(mu.into())
    }
    match spec {
        KeyPairSpec::MlDsa44 => mu::<MlDsa44>(spki_der, message),
        KeyPairSpec::MlDsa65 => mu::<MlDsa65>(spki_der, message),
        KeyPairSpec::MlDsa87 => mu::<MlDsa87>(spki_der, message),
        _ => None,
    }
}
