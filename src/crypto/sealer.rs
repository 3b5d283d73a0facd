//! The AES-256-GCM envelope: the salted construction of every API ciphertext, and the
//! unsalted one kept for key material at rest.
//!
//! **Salted** ([`seal_salted`], [`open_salted`]): for master key material `K`, purpose
//! `P`, caller AAD `A`, plaintext `M`:
//!
//! 1. `IV` = 12 fresh bytes and `S` = 16 fresh bytes, from ring's `SystemRandom` (drawn a block
//!    at a time: [`super::nonce`]).
//! 2. `k` = HKDF-SHA256(salt = `IV || S`, IKM = `K`, info = `P.salted_info()`, L = 32).
//! 3. `C || T` = AES-256-GCM(key = `k`, nonce = `IV`, aad = `A`, `M`); `T` is 16 bytes.
//! 4. The output is `IV` and `S || C || T`.
//!
//! Every seal's AES key comes from 224 random bits (`IV || S`), so a repeated
//! (GCM key, nonce) needs two seals to draw the same 224 bits: about n^2 / 2^225 after n
//! seals under one master key version, 2^-129 after 2^48 seals. Nothing in the API's
//! forms bounds the number of seals per version any more; see `docs/ciphertext.md`.
//!
//! **Unsalted** ([`seal`], [`open`]): as above without `S` (HKDF salt = `IV`, info =
//! `P.info()`). Two seals collide with probability about n^2 / 2^97 after n seals, so it
//! needs fewer than about 2^32 seals per key: fine for [`SealPurpose::KeyMaterialAtRest`]
//! (one seal per key version, under the root key), and kept in that form so that stores
//! written before the salted form still open. API ciphertexts never use it.
//!
//! Both constructions derive one AES key per message, so no GCM key ever encrypts more
//! than one message. The purpose string separates domains, and the `v1`/`v2` prefix of
//! [`SealPurpose::info`] / [`SealPurpose::salted_info`] separates the constructions: a
//! ciphertext sealed for one purpose or construction never opens as another.
//!
//! Opening fails with the single [`OpenError`] whatever went wrong.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::{Zeroize, Zeroizing};

use super::secret::MasterKeyMaterial;
use super::{CryptoError, OpenError, nonce};

/// Length of the GCM nonce (IV) in bytes: 96 bits.
pub const IV_LEN: usize = 12;
/// Length of the GCM authentication tag in bytes: 128 bits.
pub const TAG_LEN: usize = 16;
/// Length of the per-seal random salt of the salted construction: 128 bits.
pub const SALT_LEN: usize = 16;
/// Length of an AES-256 key in bytes.
const KEY_LEN: usize = 32;

/// What a ciphertext is for; selects the HKDF `info` string (domain separation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealPurpose {
    /// Every plain-form ciphertext handed to API callers (Encrypt, GenerateDataKey and
    /// the plain data key pair operations), opened again by Decrypt. One purpose for
    /// all of them, as the public API's Decrypt opens what any of them sealed.
    PlainCiphertext,
    /// Every self-describing ciphertext (the Advance operations), opened again by
    /// AdvanceDecrypt. Separate from [`Self::PlainCiphertext`] so that no ciphertext of
    /// one form ever opens as the other, even under the same key version.
    AdvanceCiphertext,
    /// Key material kept at rest in the store, sealed under the store's root key.
    KeyMaterialAtRest,
    /// A secret version's data key, sealed under a version of the secret's master key
    /// (never handed to callers, so no API ciphertext opens as one).
    SecretDataKey,
    /// A secret version's data, sealed under its data key.
    SecretData,
}

impl SealPurpose {
    /// The HKDF-SHA256 `info` string of this purpose in the unsalted construction.
    pub fn info(self) -> &'static [u8] {
        match self {
            SealPurpose::PlainCiphertext => b"kmsd/v1/plain-ciphertext",
            SealPurpose::AdvanceCiphertext => b"kmsd/v1/advance-ciphertext",
            SealPurpose::KeyMaterialAtRest => b"kmsd/v1/key-material-at-rest",
            SealPurpose::SecretDataKey => b"kmsd/v1/secret-data-key",
            SealPurpose::SecretData => b"kmsd/v1/secret-data",
        }
    }

    /// The HKDF-SHA256 `info` string of this purpose in the salted construction.
    ///
    /// Distinct from every [`Self::info`]: HMAC zero-pads a short salt, so HKDF with
    /// salt `IV` and with salt `IV || 0^16` extract the same key; a different `info`
    /// keeps the two constructions apart even for that salt.
    pub fn salted_info(self) -> &'static [u8] {
        match self {
            SealPurpose::PlainCiphertext => b"kmsd/v2/plain-ciphertext",
            SealPurpose::AdvanceCiphertext => b"kmsd/v2/advance-ciphertext",
            SealPurpose::KeyMaterialAtRest => b"kmsd/v2/key-material-at-rest",
            SealPurpose::SecretDataKey => b"kmsd/v2/secret-data-key",
            SealPurpose::SecretData => b"kmsd/v2/secret-data",
        }
    }
}

/// The output of [`seal`] and [`seal_salted`]: the IV and the bytes that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The 96-bit IV (GCM nonce, and HKDF salt or its first part), returned to callers
    /// as `Iv`.
    pub iv: [u8; IV_LEN],
    /// [`seal`]: GCM ciphertext followed by the 16-byte tag (`C || T`).
    /// [`seal_salted`]: the 16-byte salt, then ciphertext and tag (`S || C || T`).
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` under a fresh IV, a fresh 128-bit salt and the key derived from
/// `key`, both of them and `purpose`: the salted construction of every API ciphertext (module
/// docs). `ciphertext` of the result is `S || C || T`.
///
/// # Errors
/// [`CryptoError::Random`] if no IV or salt could be drawn; [`CryptoError::Seal`] if the
/// input exceeds GCM's length limit (about 64 GiB).
pub fn seal_salted(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, CryptoError> {
    let iv = new_iv()?;
    let salt = nonce::array::<SALT_LEN>()?;
    seal_salted_with(key, purpose, &iv, &salt, aad, plaintext)
}

/// [`seal_salted`] with a given IV and salt (fresh random ones, or a test's fixed ones).
fn seal_salted_with(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    iv: &[u8; IV_LEN],
    salt: &[u8; SALT_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, CryptoError> {
    let k = derive_salted_key(key, purpose, iv, salt)?;
    // C || T holds no secret, so copying it behind the salt leaves none behind.
    let sealed = aes256gcm_seal_raw(&k, iv, aad, plaintext)?;
    let mut ciphertext = Vec::with_capacity(SALT_LEN + sealed.len());
    ciphertext.extend_from_slice(salt);
    ciphertext.extend_from_slice(&sealed);
    Ok(Sealed {
        iv: *iv,
        ciphertext,
    })
}

/// Opens `salted` (= `S || C || T`) sealed by [`seal_salted`] with the same key, purpose
/// and AAD, under `iv`.
///
/// # Errors
/// [`OpenError`], the same value whatever failed: `iv` not 12 bytes, `salted` shorter
/// than salt and tag, wrong key, wrong purpose, wrong AAD, any modified byte.
pub fn open_salted(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    iv: &[u8],
    aad: &[u8],
    salted: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let iv: &[u8; IV_LEN] = iv.try_into().map_err(|_| OpenError)?;
    let (salt, ciphertext) = salted.split_first_chunk::<SALT_LEN>().ok_or(OpenError)?;
    let k = derive_salted_key(key, purpose, iv, salt).map_err(|_| OpenError)?;
    aes256gcm_open_raw(&k, iv, aad, ciphertext)
}

/// Seals `plaintext` under a fresh IV and a key derived from `key` for `purpose`, in the
/// unsalted construction: for key material at rest only (module docs).
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
    let k = derive_key(key, purpose, &iv)?;
    let ciphertext = aes256gcm_seal_raw(&k, &iv, aad, plaintext)?;
    Ok(Sealed { iv, ciphertext })
}

/// Opens `ciphertext` (= GCM ciphertext || tag) sealed by [`seal`] (unsalted) with the same key,
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

/// A fresh IV ([`nonce`]: the system source, a block at a time).
pub(crate) fn new_iv() -> Result<[u8; IV_LEN], CryptoError> {
    nonce::array::<IV_LEN>()
}

/// The per-IV AES-256 key: HKDF-SHA256(salt = IV, IKM = master, info = purpose).
fn derive_key(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    iv: &[u8; IV_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    hkdf_sha256(key, iv, purpose.info())
}

/// The per-seal AES-256 key of the salted construction:
/// HKDF-SHA256(salt = IV || S, IKM = master, info = purpose's salted info).
fn derive_salted_key(
    key: &MasterKeyMaterial,
    purpose: SealPurpose,
    iv: &[u8; IV_LEN],
    salt: &[u8; SALT_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut hkdf_salt = [0u8; IV_LEN + SALT_LEN];
    hkdf_salt[..IV_LEN].copy_from_slice(iv);
    hkdf_salt[IV_LEN..].copy_from_slice(salt);
    hkdf_sha256(key, &hkdf_salt, purpose.salted_info())
}

/// HKDF-SHA256(salt, IKM = master, info): an AES-256 key.
fn hkdf_sha256(
    key: &MasterKeyMaterial,
    salt: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(key.expose_secret());
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // HKDF_SHA256 as the output KeyType means L = 32 bytes, within HKDF's 255*32 limit.
    prk.expand(&[info], hkdf::HKDF_SHA256)
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
            SealPurpose::SecretDataKey,
            SealPurpose::SecretData,
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

    #[test]
    fn salted_round_trip_and_layout() {
        let k = key();
        for purpose in [SealPurpose::PlainCiphertext, SealPurpose::AdvanceCiphertext] {
            for (aad, msg) in [
                (&b""[..], &b""[..]),
                (b"aad", b"x"),
                (b"", &[7u8; 6144][..]),
            ] {
                let s = seal_salted(&k, purpose, aad, msg).unwrap();
                assert_eq!(s.ciphertext.len(), SALT_LEN + msg.len() + TAG_LEN);
                let p = open_salted(&k, purpose, &s.iv, aad, &s.ciphertext).unwrap();
                assert_eq!(p.as_slice(), msg);
            }
        }
        // Fresh IV and fresh salt every time.
        let a = seal_salted(&k, SealPurpose::PlainCiphertext, b"", b"same").unwrap();
        let b = seal_salted(&k, SealPurpose::PlainCiphertext, b"", b"same").unwrap();
        assert_ne!(a.iv, b.iv);
        assert_ne!(a.ciphertext[..SALT_LEN], b.ciphertext[..SALT_LEN]);
    }

    /// The construction, recomputed from its definition with ring's HMAC (RFC 5869 by
    /// hand) instead of its HKDF, for a fixed IV and salt.
    #[test]
    fn salted_key_is_hkdf_of_iv_and_salt() {
        use ring::hmac;
        let k = MasterKeyMaterial::from_bytes(&[0x11; 32]).unwrap();
        let iv = [0x22; IV_LEN];
        let salt = [0x33; SALT_LEN];
        let sealed =
            seal_salted_with(&k, SealPurpose::PlainCiphertext, &iv, &salt, b"a", b"msg").unwrap();
        let prk = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &[iv.as_slice(), &salt].concat()),
            &[0x11; 32],
        );
        let okm = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()),
            &[&b"kmsd/v2/plain-ciphertext"[..], &[1]].concat(),
        );
        let derived: [u8; 32] = okm.as_ref().try_into().unwrap();
        let expected = aes256gcm_seal_raw(&derived, &iv, b"a", b"msg").unwrap();
        assert_eq!(sealed.iv, iv);
        assert_eq!(&sealed.ciphertext[..SALT_LEN], &salt);
        assert_eq!(&sealed.ciphertext[SALT_LEN..], expected.as_slice());
        // Another salt, same IV: another key, so another ciphertext.
        let other = seal_salted_with(
            &k,
            SealPurpose::PlainCiphertext,
            &iv,
            &[0x34; 16],
            b"a",
            b"msg",
        )
        .unwrap();
        assert_ne!(other.ciphertext[SALT_LEN..], sealed.ciphertext[SALT_LEN..]);
    }

    #[test]
    fn every_salted_tamper_fails_with_the_same_error() {
        let k = key();
        let p = SealPurpose::PlainCiphertext;
        let s = seal_salted(&k, p, b"ctx", b"sixteen byte msg").unwrap();
        let ok = |iv: &[u8], aad: &[u8], ct: &[u8]| open_salted(&k, p, iv, aad, ct);
        assert!(ok(&s.iv, b"ctx", &s.ciphertext).is_ok());
        let mut failures = Vec::new();
        for i in 0..IV_LEN {
            let mut iv = s.iv;
            iv[i] ^= 0x01;
            failures.push(ok(&iv, b"ctx", &s.ciphertext));
        }
        // Salt, ciphertext and tag: every byte.
        for i in 0..s.ciphertext.len() {
            let mut ct = s.ciphertext.clone();
            ct[i] ^= 0x80;
            failures.push(ok(&s.iv, b"ctx", &ct));
        }
        failures.push(ok(&s.iv, b"ctx2", &s.ciphertext));
        failures.push(ok(&s.iv, b"", &s.ciphertext));
        for n in [
            0,
            1,
            SALT_LEN,
            SALT_LEN + TAG_LEN - 1,
            s.ciphertext.len() - 1,
        ] {
            failures.push(ok(&s.iv, b"ctx", &s.ciphertext[..n]));
        }
        failures.push(ok(&s.iv[..11], b"ctx", &s.ciphertext));
        failures.push(open_salted(&key(), p, &s.iv, b"ctx", &s.ciphertext));
        // Salt removed: the unsalted construction does not open it either.
        failures.push(open(&k, p, &s.iv, b"ctx", &s.ciphertext[SALT_LEN..]));
        for other in [
            SealPurpose::AdvanceCiphertext,
            SealPurpose::KeyMaterialAtRest,
        ] {
            failures.push(open_salted(&k, other, &s.iv, b"ctx", &s.ciphertext));
        }
        assert!(failures.len() > 60);
        for f in failures {
            assert_eq!(f.unwrap_err(), OpenError);
        }
    }

    #[test]
    fn the_two_constructions_never_open_each_other() {
        let k = key();
        let all = [
            SealPurpose::PlainCiphertext,
            SealPurpose::AdvanceCiphertext,
            SealPurpose::KeyMaterialAtRest,
            SealPurpose::SecretDataKey,
            SealPurpose::SecretData,
        ];
        let mut infos: std::collections::HashSet<&[u8]> = all.iter().map(|p| p.info()).collect();
        infos.extend(all.iter().map(|p| p.salted_info()));
        assert_eq!(infos.len(), 2 * all.len());
        for purpose in all {
            // An unsalted seal, presented with a zero salt in front (which HMAC's key
            // padding would make equivalent if the info strings were shared).
            let unsalted = seal(&k, purpose, b"a", b"m").unwrap();
            let mut zero_salted = vec![0u8; SALT_LEN];
            zero_salted.extend_from_slice(&unsalted.ciphertext);
            assert!(open_salted(&k, purpose, &unsalted.iv, b"a", &zero_salted).is_err());
            let salted =
                seal_salted_with(&k, purpose, &unsalted.iv, &[0; SALT_LEN], b"a", b"m").unwrap();
            assert!(
                open(
                    &k,
                    purpose,
                    &salted.iv,
                    b"a",
                    &salted.ciphertext[SALT_LEN..]
                )
                .is_err()
            );
        }
    }

    /// Wycheproof AES-GCM vectors with a 256-bit key, 96-bit IV and 128-bit tag.
    ///
    /// `valid` vectors must seal to exactly `ct || tag` and open to `msg`; `invalid` ones
    /// must fail to open. `acceptable` would be treated as "either outcome is fine but
    /// sealing must match if opening succeeds"; the subset has none (asserted below).
    #[test]
    fn wycheproof_aes_256_gcm() {
        use crate::crypto::wycheproof::{hex as h, vectors};
        let file = vectors("aes_gcm_256_96_128.json");
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
