//! Data key pair generation and encodings.
//!
//! [`generate`] draws every key from ring's `SystemRandom` (via [`RingRng`] for the
//! RustCrypto generators) and returns a [`KeyPair`]: the private key as PKCS#8
//! (`PrivateKeyInfo`, RFC 5958 v1) DER in zeroizing memory, and the public key as X.509
//! `SubjectPublicKeyInfo` DER. [`KeyPair::public_key`] and
//! [`KeyPair::private_key_pkcs8`] render either as DER or PEM (labels `PUBLIC KEY` and
//! `PRIVATE KEY`, LF line endings, 64-column base64).
//!
//! RSA keys use e = 65537 and two primes (rsa 0.10 `PrivateKey::new`). `EC_P256`
//! uses ring's generator, measured about 4x faster than RustCrypto's p256 (30 vs
//! 130 us/op in release; `compare_p256_generators` reproduces it); `EC_P256K` uses k256.
//! Both PKCS#8 forms name the curve in the algorithm identifier and carry the public
//! key; OpenSSL and the RustCrypto decoders accept them (tested). The signing-only specs
//! (master keys, never data key pairs): `ML_DSA_44/65/87` with aws-lc-rs
//! (`PqdsaKeyPair`; the PKCS#8 holds the 32-byte seed, the SPKI names id-ml-dsa-44/65/87
//! of the IETF LAMPS drafts, OIDs 2.16.840.1.101.3.4.3.17-19), `ED25519` with aws-lc-rs
//! (PKCS#8 v1 of the seed; the SPKI is RFC 8410's, OID 1.3.101.112). Generation is blocking and, for RSA, CPU heavy (hundreds of milliseconds to
//! seconds): call it from a dedicated thread or `spawn_blocking`, or use
//! the key pair pool ([`crate::keypool`]).

use std::fmt;
use std::str::FromStr;

use p256::elliptic_curve::Generate;
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::CryptoError;
use super::rng::RingRng;

/// PEM label of an X.509 SubjectPublicKeyInfo.
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// PEM label of an unencrypted PKCS#8 PrivateKeyInfo.
const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";

/// A key pair type kmsd generates: the data key pairs of the `KeyPairSpec` request
/// parameter ([`KeyPairSpec::DATA_KEY_PAIRS`]), and the signing-only pairs of
/// asymmetric master keys (ML-DSA, Ed25519). The key pair pool keeps all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPairSpec {
    /// RSA with a 2048-bit modulus, e = 65537.
    Rsa2048,
    /// RSA with a 3072-bit modulus, e = 65537.
    Rsa3072,
    /// RSA with a 4096-bit modulus, e = 65537.
    Rsa4096,
    /// ECDSA/ECDH key on NIST P-256 (secp256r1).
    EcP256,
    /// Key on secp256k1.
    EcP256k,
    /// ML-DSA-44 (FIPS 204), signing only.
    MlDsa44,
    /// ML-DSA-65 (FIPS 204), signing only.
    MlDsa65,
    /// ML-DSA-87 (FIPS 204), signing only.
    MlDsa87,
    /// Ed25519 (RFC 8032), signing only.
    Ed25519,
}

impl KeyPairSpec {
    /// Every spec, in a fixed order (also the order of [`KeyPairSpec::index`]).
    pub const ALL: [KeyPairSpec; 9] = [
        KeyPairSpec::Rsa2048,
        KeyPairSpec::Rsa3072,
        KeyPairSpec::Rsa4096,
        KeyPairSpec::EcP256,
        KeyPairSpec::EcP256k,
        KeyPairSpec::MlDsa44,
        KeyPairSpec::MlDsa65,
        KeyPairSpec::MlDsa87,
        KeyPairSpec::Ed25519,
    ];

    /// The specs of data key pairs (GenerateDataKeyPair and its kin): the public API's
    /// `KeyPairSpec` values. The others are signing-only master key pairs.
    pub const DATA_KEY_PAIRS: [KeyPairSpec; 5] = [
        KeyPairSpec::Rsa2048,
        KeyPairSpec::Rsa3072,
        KeyPairSpec::Rsa4096,
        KeyPairSpec::EcP256,
        KeyPairSpec::EcP256k,
    ];

    /// The API name: `RSA_2048`, `RSA_3072`, `RSA_4096`, `EC_P256`, `EC_P256K`,
    /// `ML_DSA_44`, `ML_DSA_65`, `ML_DSA_87` or `ED25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPairSpec::Rsa2048 => "RSA_2048",
            KeyPairSpec::Rsa3072 => "RSA_3072",
            KeyPairSpec::Rsa4096 => "RSA_4096",
            KeyPairSpec::EcP256 => "EC_P256",
            KeyPairSpec::EcP256k => "EC_P256K",
            KeyPairSpec::MlDsa44 => "ML_DSA_44",
            KeyPairSpec::MlDsa65 => "ML_DSA_65",
            KeyPairSpec::MlDsa87 => "ML_DSA_87",
            KeyPairSpec::Ed25519 => "ED25519",
        }
    }

    /// The position of this spec in [`KeyPairSpec::ALL`] (0..9), for per-spec arrays.
    pub fn index(self) -> usize {
        match self {
            KeyPairSpec::Rsa2048 => 0,
            KeyPairSpec::Rsa3072 => 1,
            KeyPairSpec::Rsa4096 => 2,
            KeyPairSpec::EcP256 => 3,
            KeyPairSpec::EcP256k => 4,
            KeyPairSpec::MlDsa44 => 5,
            KeyPairSpec::MlDsa65 => 6,
            KeyPairSpec::MlDsa87 => 7,
            KeyPairSpec::Ed25519 => 8,
        }
    }

    /// Whether GenerateDataKeyPair offers this spec (see [`KeyPairSpec::DATA_KEY_PAIRS`]).
    pub fn is_data_key_pair(self) -> bool {
        Self::DATA_KEY_PAIRS.contains(&self)
    }

    /// Whether this is an ML-DSA spec.
    pub fn is_ml_dsa(self) -> bool {
        matches!(
            self,
            KeyPairSpec::MlDsa44 | KeyPairSpec::MlDsa65 | KeyPairSpec::MlDsa87
        )
    }

    /// aws-lc-rs's signing parameters of an ML-DSA spec; `None` for the others.
    pub fn ml_dsa_signing(self) -> Option<&'static aws_lc_rs::signature::PqdsaSigningAlgorithm> {
        use aws_lc_rs::signature::{ML_DSA_44_SIGNING, ML_DSA_65_SIGNING, ML_DSA_87_SIGNING};
        match self {
            KeyPairSpec::MlDsa44 => Some(&ML_DSA_44_SIGNING),
            KeyPairSpec::MlDsa65 => Some(&ML_DSA_65_SIGNING),
            KeyPairSpec::MlDsa87 => Some(&ML_DSA_87_SIGNING),
            _ => None,
        }
    }

    /// Approximate cost of generating one pair, relative to `RSA_2048` = 100.
    ///
    /// Measured on the development machine in release builds with the
    /// `keygen_timings` ignored test (mean of 10 RSA runs; RSA time varies a lot from
    /// run to run with the prime search): RSA_2048 40 ms, RSA_3072 189 ms, RSA_4096
    /// 489 ms, EC 0.03-0.13 ms; ML-DSA and Ed25519 are as cheap as EC (well under a
    /// millisecond). Those are given the minimum weight of 1. The pool uses this to
    /// refill cheap specs first; only the ratios matter.
    pub fn relative_cost(self) -> u32 {
        match self {
            KeyPairSpec::Rsa2048 => 100,
            KeyPairSpec::Rsa3072 => 470,
            KeyPairSpec::Rsa4096 => 1200,
            KeyPairSpec::EcP256
            | KeyPairSpec::EcP256k
            | KeyPairSpec::MlDsa44
            | KeyPairSpec::MlDsa65
            | KeyPairSpec::MlDsa87
            | KeyPairSpec::Ed25519 => 1,
        }
    }

    /// Whether a pair of this spec made on demand is made on the calling thread: its
    /// generation (ring's P-256, about 10 us) costs less than handing it to another
    /// thread and back. Every other spec is generated off the async threads.
    pub fn generates_in_place(self) -> bool {
        self == KeyPairSpec::EcP256
    }

    /// Whether this is an RSA spec.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyPairSpec::Rsa2048 | KeyPairSpec::Rsa3072 | KeyPairSpec::Rsa4096
        )
    }
}

impl fmt::Display for KeyPairSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`KeyPairSpec`] or [`KeyFormat`].
///
/// Carries nothing from the input (which is caller-controlled), only which parameter
/// it was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown {0}")]
pub struct UnknownName(
    /// The parameter: `"KeyPairSpec"` or `"KeyFormat"`.
    pub &'static str,
);

impl FromStr for KeyPairSpec {
    type Err = UnknownName;

    /// Exact, case-sensitive match of the API names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyPairSpec::ALL
            .into_iter()
            .find(|spec| spec.as_str() == s)
            .ok_or(UnknownName("KeyPairSpec"))
    }
}

/// The encoding of returned keys (`KeyFormat` request parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFormat {
    /// RFC 7468 PEM text (`-----BEGIN PUBLIC KEY-----` / `PRIVATE KEY`), LF endings.
    Pem,
    /// Raw DER bytes.
    Der,
}

impl KeyFormat {
    /// The API name: `PEM` or `DER`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFormat::Pem => "PEM",
            KeyFormat::Der => "DER",
        }
    }
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyFormat {
    type Err = UnknownName;

    /// Exact, case-sensitive match of `PEM` or `DER`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PEM" => Ok(KeyFormat::Pem),
            "DER" => Ok(KeyFormat::Der),
            _ => Err(UnknownName("KeyFormat")),
        }
    }
}

/// A freshly generated key pair.
///
/// The private key is zeroized on drop; there is no `Clone` (a pooled pair must be
/// handed out exactly once), and `Debug` shows only the spec and the public key size.
pub struct KeyPair {
    spec: KeyPairSpec,
    private_pkcs8_der: Zeroizing<Vec<u8>>,
    public_spki_der: Vec<u8>,
}

impl KeyPair {
    /// The spec this pair was generated for.
    pub fn spec(&self) -> KeyPairSpec {
        self.spec
    }

    /// The public key as X.509 SubjectPublicKeyInfo, DER or PEM (`PUBLIC KEY`).
    pub fn public_key(&self, format: KeyFormat) -> Vec<u8> {
        match format {
            KeyFormat::Der => self.public_spki_der.clone(),
            KeyFormat::Pem => pem_encode(PUBLIC_KEY_LABEL, &self.public_spki_der).to_vec(),
        }
    }

    /// The public key as SubjectPublicKeyInfo DER, borrowed.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_spki_der
    }

    /// The private key as PKCS#8 PrivateKeyInfo, DER or PEM (`PRIVATE KEY`), in memory
    /// that is zeroized on drop.
    pub fn private_key_pkcs8(&self, format: KeyFormat) -> Zeroizing<Vec<u8>> {
        match format {
            KeyFormat::Der => self.private_pkcs8_der.clone(),
            KeyFormat::Pem => pem_encode(PRIVATE_KEY_LABEL, &self.private_pkcs8_der),
        }
    }

    /// The private key as PKCS#8 DER, borrowed (e.g. to seal it without a copy).
    pub fn private_key_der(&self) -> &[u8] {
        &self.private_pkcs8_der
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("spec", &self.spec)
            .field("public_key_der_len", &self.public_spki_der.len())
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

/// RFC 7468 PEM of `der` into a zeroizing buffer sized exactly by the encoder.
fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<Vec<u8>> {
    // Both errors of the encoder (length overflow, bad label) are impossible for our
    // fixed labels and key-sized inputs, so an empty result would signal a bug; we
    // still avoid panicking and never produce a partially written buffer.
    let Ok(len) = pem::encoded_len(label, LineEnding::LF, der) else {
        return Zeroizing::new(Vec::new());
    };
    let mut buf = Zeroizing::new(vec![0u8; len]);
    match pem::encode(label, LineEnding::LF, der, &mut buf) {
        Ok(written) => {
            let n = written.len();
            buf.truncate(n);
            buf
        }
        Err(_) => Zeroizing::new(Vec::new()),
    }
}

/// Generates a key pair of `spec`. Blocking and CPU heavy for RSA.
///
/// # Errors
/// [`CryptoError::KeyGeneration`] if the generator fails (including a failing random
/// source, reported by rsa/elliptic-curve as a generation error) and
/// [`CryptoError::Encoding`] if DER encoding fails.
pub fn generate(spec: KeyPairSpec) -> Result<KeyPair, CryptoError> {
    match spec {
        KeyPairSpec::Rsa2048 => generate_rsa(spec, 2048),
        KeyPairSpec::Rsa3072 => generate_rsa(spec, 3072),
        KeyPairSpec::Rsa4096 => generate_rsa(spec, 4096),
        KeyPairSpec::EcP256 => generate_p256_ring(),
        KeyPairSpec::EcP256k => {
            let sk = k256::SecretKey::try_generate_from_rng(&mut RingRng)
                .map_err(|_| CryptoError::Random)?;
            ec_pair(spec, sk.to_pkcs8_der(), sk.public_key().to_public_key_der())
        }
        KeyPairSpec::MlDsa44 | KeyPairSpec::MlDsa65 | KeyPairSpec::MlDsa87 => generate_ml_dsa(spec),
        KeyPairSpec::Ed25519 => generate_ed25519(),
    }
}

/// ML-DSA with aws-lc-rs: the PKCS#8 v1 holds the seed form of the private key (32
/// bytes, FIPS 204's xi), the SPKI names the parameter set's IETF LAMPS OID.
///
/// Caveat: aws-lc-rs returns both encodings as plain buffers (`Document`, `Buffer`)
/// without `Zeroize`; one copy of the 54-byte PKCS#8 is dropped unwiped (the same
/// caveat as ring's P-256 document below). The key inside AWS-LC is wiped when the
/// `EVP_PKEY` is freed (AWS-LC's `OPENSSL_free` cleanses). Our copy lives in
/// `Zeroizing` from here on.
fn generate_ml_dsa(spec: KeyPairSpec) -> Result<KeyPair, CryptoError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair as _, PqdsaKeyPair};
    let algorithm = spec
        .ml_dsa_signing()
        .ok_or_else(|| CryptoError::KeyGeneration(format!("{spec} is not ML-DSA")))?;
    let pair = PqdsaKeyPair::generate(algorithm)
        .map_err(|_| CryptoError::KeyGeneration(format!("{spec} (aws-lc-rs)")))?;
    let private = pair
        .to_pkcs8v1()
        .map_err(|_| CryptoError::Encoding(format!("{spec} PKCS#8")))?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| CryptoError::Encoding(format!("{spec} SPKI")))?;
    Ok(KeyPair {
        spec,
        private_pkcs8_der: Zeroizing::new(private.as_ref().to_vec()),
        public_spki_der: public.as_ref().to_vec(),
    })
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 section 4: the
/// algorithm id-Ed25519, 1.3.101.112, no parameters), before the 32-byte key.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The SubjectPublicKeyInfo DER of a raw 32-byte Ed25519 public key.
pub fn ed25519_spki(public_key: &[u8]) -> Vec<u8> {
    [&ED25519_SPKI_PREFIX[..], public_key].concat()
}

/// Ed25519, generated with aws-lc-rs: PKCS#8 v1 (RFC 8410, the 32-byte seed only),
/// which OpenSSL 3.0 reads (it refuses ring's v2 form with the public key). kmsd signs
/// with ring, which parses v1. Same unwiped-document caveat as [`generate_ml_dsa`].
fn generate_ed25519() -> Result<KeyPair, CryptoError> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    let pair = Ed25519KeyPair::generate()
        .map_err(|_| CryptoError::KeyGeneration("ED25519 (aws-lc-rs)".into()))?;
    let private = pair
        .to_pkcs8v1()
        .map_err(|_| CryptoError::Encoding("ED25519 PKCS#8".into()))?;
    Ok(KeyPair {
        spec: KeyPairSpec::Ed25519,
        private_pkcs8_der: Zeroizing::new(private.as_ref().to_vec()),
        public_spki_der: ed25519_spki(pair.public_key().as_ref()),
    })
}

fn generate_rsa(spec: KeyPairSpec, bits: usize) -> Result<KeyPair, CryptoError> {
    let sk = rsa::PrivateKey::new(&mut RingRng, bits)
        .map_err(|e| CryptoError::KeyGeneration(format!("{spec}: {e}")))?;
    let private = sk
        .to_pkcs8_der()
        .map_err(|e| CryptoError::Encoding(format!("{spec} PKCS#8: {e}")))?;
    let public = sk
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| CryptoError::Encoding(format!("{spec} SPKI: {e}")))?;
    Ok(KeyPair {
        spec,
        private_pkcs8_der: private.to_bytes(),
        public_spki_der: public.into_vec(),
    })
}

fn ec_pair(
    spec: KeyPairSpec,
    private: p256::pkcs8::Result<p256::pkcs8::SecretDocument>,
    public: p256::pkcs8::spki::Result<p256::pkcs8::Document>,
) -> Result<KeyPair, CryptoError> {
    let private = private.map_err(|e| CryptoError::Encoding(format!("{spec} PKCS#8: {e}")))?;
    let public = public.map_err(|e| CryptoError::Encoding(format!("{spec} SPKI: {e}")))?;
    Ok(KeyPair {
        spec,
        private_pkcs8_der: private.to_bytes(),
        public_spki_der: public.into_vec(),
    })
}

/// `EC_P256` with RustCrypto's p256, kept for the comparison test: about 4x slower
/// than ring's generator, but its `SecretKey` zeroizes on drop.
#[cfg(test)]
fn generate_p256_rustcrypto() -> Result<KeyPair, CryptoError> {
    let sk =
        p256::SecretKey::try_generate_from_rng(&mut RingRng).map_err(|_| CryptoError::Random)?;
    ec_pair(
        KeyPairSpec::EcP256,
        sk.to_pkcs8_der(),
        sk.public_key().to_public_key_der(),
    )
}

/// `EC_P256` with ring's generator: the one [`generate`] uses (the faster; see
/// `compare_p256_generators`).
///
/// ring returns the PKCS#8 and we parse it back with `EcdsaKeyPair::from_pkcs8`, which
/// also checks that the public key matches the private key, to get the public point
/// (included in the measured time). Caveat: ring's `pkcs8::Document` is a plain array
/// without `Zeroize` and cannot be wiped from safe code, so one copy of the 138-byte
/// PKCS#8 is left in the dropped stack frame (overwritten by later calls, not wiped).
/// Our copy lives in `Zeroizing` from here on.
fn generate_p256_ring() -> Result<KeyPair, CryptoError> {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| CryptoError::KeyGeneration("EC_P256 (ring)".into()))?;
    // The public point is in the document ring just made: reading it there saves the
    // second scalar multiplication that parsing the document would cost (half of a
    // pair's generation time). Should ring ever lay its document out otherwise, the
    // point is computed from the private key instead.
    let point = match p256_public_point_of_ring_pkcs8(doc.as_ref()) {
        Some(point) => point.to_vec(),
        None => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng)
            .map_err(|e| CryptoError::KeyGeneration(format!("EC_P256 (ring): {e}")))?
            .public_key()
            .as_ref()
            .to_vec(),
    };
    // Checks the point is on the curve (a field computation, no scalar multiplication).
    p256::PublicKey::from_sec1_bytes(&point)
        .map_err(|_| CryptoError::Encoding("EC_P256 (ring) public point".into()))?;
    Ok(KeyPair {
        spec: KeyPairSpec::EcP256,
        private_pkcs8_der: Zeroizing::new(doc.as_ref().to_vec()),
        public_spki_der: [P256_SPKI_PREFIX.as_slice(), &point].concat(),
    })
}

/// What comes before the uncompressed point in every P-256 SubjectPublicKeyInfo
/// (RFC 5480): SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 0x00 ..
/// }. Written out, it saves building each key's DER with the `der` crate (about a
/// microsecond a pair); `p256_spki_prefix_is_what_the_der_crate_writes` checks it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed public point ring writes at the end of its P-256 PKCS#8 v1
/// document: the ECPrivateKey's `[1] { BIT STRING 0x00 0x04 X Y }`. `None` when the
/// document does not end that way.
fn p256_public_point_of_ring_pkcs8(doc: &[u8]) -> Option<&[u8]> {
    const POINT_LEN: usize = 65;
    // [1] (0xa1, length 68) { BIT STRING (0x03, length 66) 0x00 (no unused bits) ...
    const PREFIX: [u8; 5] = [0xa1, 0x44, 0x03, 0x42, 0x00];
    let start = doc.len().checked_sub(POINT_LEN)?;
    let prefix = doc.get(start.checked_sub(PREFIX.len())?..start)?;
    let point = &doc[start..];
    (prefix == PREFIX && point[0] == 0x04).then_some(point)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
    use rsa::traits::PublicKeyParts;

    use super::*;

    #[test]
    fn p256_spki_prefix_is_what_the_der_crate_writes() {
        for _ in 0..16 {
            let pair = generate(KeyPairSpec::EcP256).unwrap();
            let point = &pair.public_key_der()[P256_SPKI_PREFIX.len()..];
            let from_der_crate = p256::PublicKey::from_sec1_bytes(point)
                .unwrap()
                .to_public_key_der()
                .unwrap();
            assert_eq!(pair.public_key_der(), from_der_crate.as_bytes());
            let pkcs8 = p256::SecretKey::from_pkcs8_der(pair.private_key_der()).unwrap();
            assert_eq!(
                pkcs8.public_key().to_public_key_der().unwrap().as_bytes(),
                pair.public_key_der(),
                "the SPKI is the private key's"
            );
        }
    }

    /// The point read from ring's document is the one ring derives from the private
    /// key, for many fresh keys.
    #[test]
    fn p256_public_points_read_from_ring_documents_match_the_private_keys() {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        for _ in 0..64 {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            let read = p256_public_point_of_ring_pkcs8(doc.as_ref()).expect("ring's layout");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng)
                    .unwrap();
            assert!(read == pair.public_key().as_ref());
            let generated = generate(KeyPairSpec::EcP256).unwrap();
            let parsed = p256::SecretKey::from_pkcs8_der(generated.private_key_der()).unwrap();
            let spki = parsed.public_key().to_public_key_der().unwrap();
            assert!(spki.as_bytes() == generated.public_key_der());
        }
        assert!(p256_public_point_of_ring_pkcs8(&[0; 10]).is_none());
        assert!(p256_public_point_of_ring_pkcs8(&[0xa1; 100]).is_none());
    }

    #[test]
    fn names_round_trip_exactly() {
        for spec in KeyPairSpec::ALL {
            assert_eq!(spec.as_str().parse::<KeyPairSpec>(), Ok(spec));
            assert_eq!(spec.to_string(), spec.as_str());
            assert_eq!(KeyPairSpec::ALL[spec.index()], spec);
        }
        for bad in [
            "rsa_2048", "RSA2048", "EC_P256k", " EC_P256", "", "RSA_1024",
        ] {
            let err = bad.parse::<KeyPairSpec>().unwrap_err();
            assert_eq!(err.to_string(), "unknown KeyPairSpec");
        }
        for f in [KeyFormat::Pem, KeyFormat::Der] {
            assert_eq!(f.as_str().parse::<KeyFormat>(), Ok(f));
        }
        assert!("pem".parse::<KeyFormat>().is_err());
    }

    /// Decodes both keys with the RustCrypto crates as the spec's algorithm and size,
    /// checks the private key's public half equals the SPKI, and that PEM and DER agree.
    fn check_pair(kp: &KeyPair) {
        let spec = kp.spec();
        let der = kp.private_key_pkcs8(KeyFormat::Der);
        let pem_priv = kp.private_key_pkcs8(KeyFormat::Pem);
        let pem_priv = std::str::from_utf8(&pem_priv).unwrap();
        assert!(pem_priv.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem_priv.ends_with("-----END PRIVATE KEY-----\n"));
        let spki = kp.public_key(KeyFormat::Der);
        let pem_pub = String::from_utf8(kp.public_key(KeyFormat::Pem)).unwrap();
        assert!(pem_pub.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        // The EC checks, the same for both curves: `$curve`'s crate decodes the pair
        // (PEM and DER agree, the public half is the SPKI); `$other`'s refuses it.
        macro_rules! check_ec {
            ($curve:ident, not $other:ident) => {{
                let sk = $curve::SecretKey::from_pkcs8_der(&der).unwrap();
                assert_eq!(sk, $curve::SecretKey::from_pkcs8_pem(pem_priv).unwrap());
                let pk = $curve::PublicKey::from_public_key_der(&spki).unwrap();
                assert_eq!(
                    pk,
                    $curve::PublicKey::from_public_key_pem(&pem_pub).unwrap()
                );
                assert_eq!(sk.public_key(), pk);
                let wrong = $other::SecretKey::from_pkcs8_der(&der);
                assert!(wrong.is_err(), "wrong curve");
            }};
        }
        match spec {
            KeyPairSpec::Rsa2048 | KeyPairSpec::Rsa3072 | KeyPairSpec::Rsa4096 => {
                let bits = match spec {
                    KeyPairSpec::Rsa2048 => 2048,
                    KeyPairSpec::Rsa3072 => 3072,
                    _ => 4096,
                };
                let sk = rsa::PrivateKey::from_pkcs8_der(&der).unwrap();
                assert_eq!(sk, rsa::PrivateKey::from_pkcs8_pem(pem_priv).unwrap());
                sk.validate().unwrap();
                assert_eq!(sk.size() * 8, bits);
                assert_eq!(sk.e(), &rsa::BoxedUint::from(65537u32));
                let pk = rsa::PublicKey::from_public_key_der(&spki).unwrap();
                assert_eq!(pk, rsa::PublicKey::from_public_key_pem(&pem_pub).unwrap());
                assert_eq!(sk.to_public_key(), pk);
            }
            KeyPairSpec::EcP256 => check_ec!(p256, not k256),
            KeyPairSpec::EcP256k => check_ec!(k256, not p256),
            KeyPairSpec::MlDsa44 | KeyPairSpec::MlDsa65 | KeyPairSpec::MlDsa87 => {
                use aws_lc_rs::encoding::AsDer;
                use aws_lc_rs::signature::{KeyPair as _, PqdsaKeyPair};
                // The seed form: SEQUENCE { 0, AlgorithmIdentifier, OCTET STRING { [0] seed } }.
                assert_eq!(der.len(), 54, "{spec} PKCS#8 of a 32-byte seed");
                let pair = PqdsaKeyPair::from_pkcs8(spec.ml_dsa_signing().unwrap(), &der).unwrap();
                assert_eq!(pair.public_key().as_der().unwrap().as_ref(), &spki[..]);
                let other = match spec {
                    KeyPairSpec::MlDsa65 => KeyPairSpec::MlDsa44,
                    _ => KeyPairSpec::MlDsa65,
                };
                assert!(PqdsaKeyPair::from_pkcs8(other.ml_dsa_signing().unwrap(), &der).is_err());
                // The LAMPS OIDs 2.16.840.1.101.3.4.3.17, .18, .19, no parameters.
                let last = match spec {
                    KeyPairSpec::MlDsa44 => 0x11,
                    KeyPairSpec::MlDsa65 => 0x12,
                    _ => 0x13,
                };
                let algorithm = [
                    0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, last,
                ];
                assert_eq!(&spki[4..17], &algorithm, "{spec} SPKI algorithm");
            }
            KeyPairSpec::Ed25519 => {
                use ring::signature::{Ed25519KeyPair, KeyPair as _};
                // ring, which signs, derives the same public key from the v1 PKCS#8.
                assert_eq!(der.len(), 48, "PKCS#8 v1 of a 32-byte seed");
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
                assert_eq!(spki, ed25519_spki(pair.public_key().as_ref()));
                assert_eq!(spki.len(), 44);
            }
        }
    }

    fn check_spec(spec: KeyPairSpec) {
        let a = generate(spec).unwrap();
        let b = generate(spec).unwrap();
        assert_eq!(a.spec(), spec);
        check_pair(&a);
        check_pair(&b);
        assert_ne!(a.public_key_der(), b.public_key_der());
        assert_ne!(a.private_key_der(), b.private_key_der());
    }

    /// One test per spec (each its own test, so the slow RSA ones run in parallel).
    macro_rules! spec_tests {
        ($($name:ident: $spec:ident,)*) => {$(
            #[test]
            fn $name() {
                check_spec(KeyPairSpec::$spec);
            }
        )*};
    }

    spec_tests! {
        rsa_2048: Rsa2048,
        rsa_3072: Rsa3072,
        rsa_4096: Rsa4096,
        ec_p256: EcP256,
        ec_p256k: EcP256k,
        ml_dsa_44: MlDsa44,
        ml_dsa_65: MlDsa65,
        ml_dsa_87: MlDsa87,
        ed25519: Ed25519,
    }

    #[test]
    fn rustcrypto_p256_generator_is_also_valid() {
        check_pair(&generate_p256_rustcrypto().unwrap());
    }

    #[test]
    fn debug_shows_spec_not_private_bytes() {
        let kp = generate(KeyPairSpec::EcP256).unwrap();
        let s = format!("{kp:?}");
        assert!(s.contains("EcP256") && s.contains("[REDACTED]"), "{s}");
        let der = kp.private_key_der();
        // The 32-byte scalar sits inside the DER; no 4-byte window of the DER (hex or
        // decimal list) may appear in the output.
        for w in der.windows(4) {
            assert!(!s.contains(&hex::encode(w)));
            assert!(!s.contains(&format!("{}, {}, {}, {}", w[0], w[1], w[2], w[3])));
        }
    }

    /// Runs `openssl pkey` on the PKCS#8 (DER and PEM) and checks `-pubout` equals our SPKI.
    fn openssl_check(kp: &KeyPair) -> bool {
        use std::process::{Command, Stdio};
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("SKIPPED: `openssl` is not installed; OpenSSL interop not checked");
            return false;
        }
        let dir = tempfile::tempdir().unwrap();
        for (format, inform) in [(KeyFormat::Der, "DER"), (KeyFormat::Pem, "PEM")] {
            let path = dir.path().join(format!("key.{inform}"));
            std::fs::write(&path, kp.private_key_pkcs8(format)).unwrap();
            let text = Command::new("openssl")
                .args(["pkey", "-inform", inform, "-noout", "-text", "-in"])
                .arg(&path)
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(text.status.success(), "openssl rejected {inform} PKCS#8");
            let out = Command::new("openssl")
                .args([
                    "pkey", "-inform", inform, "-pubout", "-outform", "DER", "-in",
                ])
                .arg(&path)
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, kp.public_key_der(), "{} {inform}", kp.spec());
        }
        true
    }

    #[test]
    fn openssl_accepts_rsa_ec_and_ed25519_keys() {
        for kp in [
            generate(KeyPairSpec::Rsa2048).unwrap(),
            generate(KeyPairSpec::EcP256).unwrap(),
            generate(KeyPairSpec::EcP256k).unwrap(),
            generate_p256_rustcrypto().unwrap(),
            // OpenSSL 3.0 (Debian 12) knows Ed25519; ML-DSA needs OpenSSL 3.5, so those
            // keys are checked with Python's cryptography in clients/ (test_pq_signing.py).
            generate(KeyPairSpec::Ed25519).unwrap(),
        ] {
            if !openssl_check(&kp) {
                return;
            }
        }
    }

    fn micros_per_op(n: u32, f: impl Fn() -> KeyPair) -> f64 {
        let _ = f();
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(f());
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    }

    /// `cargo test --release --lib -- --ignored --nocapture compare_p256`
    #[test]
    #[ignore = "timing comparison; run in release with --nocapture"]
    fn compare_p256_generators() {
        let n = 2000;
        let rc = micros_per_op(n, || generate_p256_rustcrypto().unwrap());
        let ring = micros_per_op(n, || generate_p256_ring().unwrap());
        println!("EC_P256 over {n} runs: RustCrypto p256 {rc:.1} us/op, ring {ring:.1} us/op");
        println!("generate(EC_P256) uses ring (measured 30 vs 130 us/op when chosen)");
    }

    /// `cargo test --release --lib -- --ignored --nocapture keygen_timings`
    #[test]
    #[ignore = "timing; run in release with --nocapture"]
    fn keygen_timings() {
        for spec in KeyPairSpec::ALL {
            let n = if spec.is_rsa() { 10 } else { 1000 };
            let us = micros_per_op(n, || generate(spec).unwrap());
            println!("{spec}: {:.1} ms/op over {n} runs", us / 1000.0);
        }
    }
}
