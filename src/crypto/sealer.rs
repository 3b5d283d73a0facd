//! The AES-256-GCM envelope (the plain ciphertext form).
//!
//! Construction, for master key material `K`, purpose `P`, caller AAD `A`, plaintext `M`:
//!
//! 1. `IV` = 12 fresh bytes from ring's `SystemRandom`.
//! 2. `k` = HKDF-SHA256(salt = `IV`, IKM = `K`, info = `P.info()`, L = 32).
//! 3. `C || T` = AES-256-GCM(key = `k`, nonce = `IV`, aad = `A`, `M`); `T` is 16 bytes.
//!
//! Why derive a key per IV: each derived GCM key is used for exactly one message, so the
//! master key itself never accumulates GCM invocations, and the per-key data limits of
//! GCM apply to one message at a time. What it does NOT change: the IV is still the only
//! randomness (the wire format fixes it at 96 bits), so two seals under one master key
//! collide with probability about n^2 / 2^97 after n seals, and a collision repeats
//! both the derived key and the nonce. The derivation confines such a collision to
//! those two messages (their XOR and a forgery under that one IV leak; the master key
//! and every other ciphertext stay safe, unlike plain GCM where a repeated nonce leaks
//! the GHASH key for all messages), but keeping that probability below 2^-32 still
//! needs fewer than about 2^32 seals per master key version: rotate before that.
//! See `docs/ciphertext.md`. The purpose string separates domains: a ciphertext sealed
//! for one [`SealPurpose`] never opens as another.
//!
//! [`open`] fails with the single [`OpenError`] whatever went wrong.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::{Zeroize, Zeroizing};

use super::secret::MasterKeyMaterial;
use super::{CryptoError, OpenError, rng};

/// Length of the GCM nonce (IV) in bytes: 96 bits.
pub const IV_LEN: usize = 12;
/// Length of the GCM authentication tag in bytes: 128 bits.
pub const TAG_LEN: usize = 16;
/// Length of an AES-256 key in bytes.
const KEY_LEN: usize = 32;

/// What a ciphertext is for; selects the HKDF `info` string (domain separation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealPurpose {
    /// Every plain-form ciphertext handed to API callers (the key pair operations
    /// now; Encrypt and GenerateDataKey next), opened again by Decrypt. One purpose for
    /// all of them, as the public API's Decrypt opens what any of them sealed.
    PlainCiphertext,
    /// Every self-describing ciphertext (the Advance operations), opened again by
    /// AdvanceDecrypt. Separate from [`Self::PlainCiphertext`] so that no ciphertext of
    /// one form ever opens as the other, even under the same key version.
    AdvanceCiphertext,
    /// Key material kept at rest in the store, sealed under the store's root key.
    KeyMaterialAtRest,
}

impl SealPurpose {
    /// The HKDF-SHA256 `info` string of this purpose.
    pub fn info(self) -> &'static [u8] {
        match self {
            SealPurpose::PlainCiphertext => b"kmsd/v1/plain-ciphertext",
            SealPurpose::AdvanceCiphertext => b"kmsd/v1/advance-ciphertext",
            SealPurpose::KeyMaterialAtRest => b"kmsd/v1/key-material-at-rest",
        }
    }
}

/// The output of [`seal`]: the IV and `ciphertext || tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The 96-bit IV (GCM nonce and HKDF salt), returned to callers as `Iv`.
    pub iv: [u8; IV_LEN],
    /// GCM ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` under a fresh IV and a key derived from `key` for `purpose`.
///
/// # Errors
/// [`CryptoError::Random`] if no IV could be drawn; [`CryptoError::Seal`] if the input
/// exceeds GCM's length limit (about 64 GiB).
pub fn seal(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, CryptoError> {
    let iv = new_iv()?;
    let ciphertext = seal_with_iv(key, purpose, &iv, aad, plaintext)?;
    Ok(Sealed { iv, ciphertext })
}

/// Opens `ciphertext` (= GCM ciphertext || tag) sealed by [`seal`] with the same key,
/// purpose and AAD, under `iv`.
///
/// # Errors
/// [`OpenError`], the same value whatever failed: `iv` not 12 bytes, `ciphertext`
/// shorter than a tag, wrong key, wrong purpose, wrong AAD, any modified byte.
pub fn open(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let iv: &[u8; IV_LEN] = iv.try_into().map_err(|_| OpenError)?;
    let k = derive_key(key, purpose, iv).map_err(|_| OpenError)?;
    aes256gcm_open_raw(&k, iv, aad, ciphertext)
}

/// A fresh IV from the system random source.
pub(crate) fn new_iv() -> Result<[u8; IV_LEN], CryptoError> {
    rng::random_array::<IV_LEN>()
}

/// [`seal`] with a caller-chosen IV; returns `ciphertext || tag`.
///
/// For the blob module, which needs the IV before it can build the AAD. The IV must come
/// from [`new_iv`]: reusing one with the same key and purpose reuses a GCM (key, nonce).
pub(crate) fn seal_with_iv(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    iv: &[u8; IV_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let k = derive_key(key, purpose, iv)?;
    aes256gcm_seal_raw(&k, iv, aad, plaintext)
}

/// The per-IV AES-256 key: HKDF-SHA256(salt = IV, IKM = master, info = purpose).
fn derive_key(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    iv: &[u8; IV_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, iv).extract(key.expose_secret());
    let info = [purpose.info()];
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // HKDF_SHA256 as the output KeyType means L = 32 bytes, within HKDF's 255*32 limit.
    prk.expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut_slice()))
        .map_err(|_| CryptoError::Seal)?;
    Ok(out)
}

fn gcm_key(key: &[u8; KEY_LEN]) -> LessSafeKey {
    // A 32-byte slice is always a valid AES-256 key; `expect` cannot fire.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

/// Raw AES-256-GCM: returns `ciphertext || tag` for `plaintext` under `key` and `nonce`.
///
/// # Errors
/// [`CryptoError::Seal`] if the input exceeds GCM's length limit.
pub(crate) fn aes256gcm_seal_raw(
    key: &[u8; KEY_LEN],
    nonce: &[u8; IV_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    // Reserve room for the tag up front: growing the Vec would free a buffer that
    // briefly held plaintext without zeroizing it.
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    match gcm_key(key).seal_in_place_append_tag(
        Nonce::assume_unique_for_key(*nonce),
        Aad::from(aad),
        &mut buf,
    ) {
        Ok(()) => Ok(buf),
        Err(_) => {
            buf.zeroize();
            Err(CryptoError::Seal)
        }
    }
}

/// Raw AES-256-GCM open of `ciphertext || tag`.
///
/// # Errors
/// [`OpenError`] if the input is shorter than a tag or does not authenticate.
pub(crate) fn aes256gcm_open_raw(
    key: &[u8; KEY_LEN],
    nonce: &[u8; IV_LEN],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if ciphertext_and_tag.len() < TAG_LEN {
        return Err(OpenError);
    }
    let mut buf = Zeroizing::new(ciphertext_and_tag.to_vec());
    let len = gcm_key(key)
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| OpenError)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKeyMaterial {
        MasterKeyMaterial::generate().unwrap()
    }

    #[test]
    fn round_trip() {
        let k = key();
        for (aad, msg) in [
            (&b""[..], &b"a private key"[..]),
            (b"aad", b"x"),
            (b"", &[0u8; 5000][..]),
        ] {
            let s = seal(&k, SealPurpose::PlainCiphertext, aad, msg).unwrap();
            assert_eq!(s.ciphertext.len(), msg.len() + TAG_LEN);
            let p = open(&k, SealPurpose::PlainCiphertext, &s.iv, aad, &s.ciphertext).unwrap();
            assert_eq!(p.as_slice(), msg);
        }
    }

    #[test]
    fn empty_plaintext() {
        let k = key();
        let s = seal(&k, SealPurpose::KeyMaterialAtRest, b"a", b"").unwrap();
        assert_eq!(s.ciphertext.len(), TAG_LEN);
        let p = open(
            &k,
            SealPurpose::KeyMaterialAtRest,
            &s.iv,
            b"a",
            &s.ciphertext,
        )
        .unwrap();
        assert!(p.is_empty());
    }

    #[test]
    fn two_seals_differ() {
        let k = key();
        let a = seal(&k, SealPurpose::PlainCiphertext, b"", b"same").unwrap();
        let b = seal(&k, SealPurpose::PlainCiphertext, b"", b"same").unwrap();
        assert_ne!(a.iv, b.iv);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn every_tamper_fails_with_the_same_error() {
        let k = key();
        let p = SealPurpose::PlainCiphertext;
        let aad = b"key-abc/v1".to_vec();
        let s = seal(&k, p, &aad, b"sixteen byte msg").unwrap();
        let ok = |iv: &[u8], aad: &[u8], ct: &[u8]| open(&k, p, iv, aad, ct);
        assert!(ok(&s.iv, &aad, &s.ciphertext).is_ok());

        let mut failures: Vec<Result<Zeroizing<Vec<u8>>, OpenError>> = Vec::new();
        for i in 0..IV_LEN {
            let mut iv = s.iv;
            iv[i] ^= 0x01;
            failures.push(ok(&iv, &aad, &s.ciphertext));
        }
        // Ciphertext region and tag region, every byte.
        for i in 0..s.ciphertext.len() {
            let mut ct = s.ciphertext.clone();
            ct[i] ^= 0x80;
            failures.push(ok(&s.iv, &aad, &ct));
        }
        for i in 0..aad.len() {
            let mut a = aad.clone();
            a[i] ^= 0x01;
            failures.push(ok(&s.iv, &a, &s.ciphertext));
        }
        failures.push(ok(&s.iv, b"", &s.ciphertext));
        failures.push(ok(&s.iv, &[aad.as_slice(), b"x"].concat(), &s.ciphertext));
        for n in [0, 1, TAG_LEN - 1, TAG_LEN, s.ciphertext.len() - 1] {
            failures.push(ok(&s.iv, &aad, &s.ciphertext[..n]));
        }
        failures.push(ok(&[s.iv.as_slice(), &[0]].concat(), &aad, &s.ciphertext));
        failures.push(ok(&s.iv[..11], &aad, &s.ciphertext));
        failures.push(ok(&[], &aad, &s.ciphertext));
        failures.push(open(&key(), p, &s.iv, &aad, &s.ciphertext));
        failures.push(open(
            &k,
            SealPurpose::KeyMaterialAtRest,
            &s.iv,
            &aad,
            &s.ciphertext,
        ));
        assert!(failures.len() > 50);
        for f in failures {
            let e = f.unwrap_err();
            assert_eq!(e, OpenError);
            assert_eq!(e.to_string(), "the ciphertext could not be decrypted");
        }
    }

    #[test]
    fn purposes_have_distinct_info() {
        let all = [
            SealPurpose::PlainCiphertext,
            SealPurpose::AdvanceCiphertext,
            SealPurpose::KeyMaterialAtRest,
        ];
        let infos: std::collections::HashSet<&[u8]> = all.iter().map(|p| p.info()).collect();
        assert_eq!(infos.len(), all.len());
        // And a ciphertext of one purpose opens under no other.
        let k = MasterKeyMaterial::generate().unwrap();
        for sealed_as in all {
            let sealed = seal(&k, sealed_as, b"aad", b"m").unwrap();
            for opened_as in all {
                let opened = open(&k, opened_as, &sealed.iv, b"aad", &sealed.ciphertext);
                assert_eq!(opened.is_ok(), sealed_as == opened_as);
            }
        }
    }

    /// Wycheproof AES-GCM vectors with a 256-bit key, 96-bit IV and 128-bit tag.
    ///
    /// `valid` vectors must seal to exactly `ct || tag` and open to `msg`; `invalid` ones
    /// must fail to open. `acceptable` would be treated as "either outcome is fine but
    /// sealing must match if opening succeeds"; the subset has none (asserted below).
    #[test]
    fn wycheproof_aes_256_gcm() {
        let file: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/data/wycheproof/aes_gcm_256_96_128.json"
        ))
        .unwrap();
        let h = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
        let (mut checked, mut valid, mut invalid) = (0usize, 0usize, 0usize);
        for group in file["testGroups"].as_array().unwrap() {
            assert_eq!(group["keySize"], 256);
            assert_eq!(group["ivSize"], 96);
            assert_eq!(group["tagSize"], 128);
            for t in group["tests"].as_array().unwrap() {
                let id = &t["tcId"];
                let key: [u8; 32] = h(&t["key"]).try_into().unwrap();
                let iv: [u8; 12] = h(&t["iv"]).try_into().unwrap();
                let (aad, msg) = (h(&t["aad"]), h(&t["msg"]));
                let ct_tag = [h(&t["ct"]), h(&t["tag"])].concat();
                let opened = aes256gcm_open_raw(&key, &iv, &aad, &ct_tag);
                match t["result"].as_str().unwrap() {
                    "valid" => {
                        let sealed = aes256gcm_seal_raw(&key, &iv, &aad, &msg).unwrap();
                        assert_eq!(sealed, ct_tag, "tcId {id}: seal");
                        assert_eq!(opened.unwrap().as_slice(), msg, "tcId {id}: open");
                        valid += 1;
                    }
                    "invalid" => {
                        assert_eq!(opened.unwrap_err(), OpenError, "tcId {id}");
                        invalid += 1;
                    }
                    other => panic!("tcId {id}: unexpected result {other:?} in the subset"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 66);
        assert_eq!(file["numberOfTests"], 66);
        assert_eq!((valid, invalid), (39, 27));
    }
}
