//! The self-describing ciphertext of the Advance operations (reference section 3).
//!
//! Layout, in order:
//!
//! | bytes | content |
//! |---|---|
//! | 1 | magic `$` (0x24) |
//! | 1 | format version (high nibble, 0) and padding mode (low nibble, 0): 0x00 |
//! | 1 | algorithm: 0x02 = AES-GCM |
//! | 36 | key version ID: a canonical lowercase hyphenated UUID, ASCII |
//! | 12 | IV |
//! | 16 | salt (kmsd's salted construction; the reference has GCM output here) |
//! | rest | GCM ciphertext || 16-byte tag |
//!
//! The first 39 bytes are the header; the first 51 (header and IV) are exactly as the
//! public API lays them out, so a client that reads the version or the IV from a blob
//! still can. Sealing uses the salted construction of [`super::sealer`]
//! ([`sealer::seal_salted`]) with purpose [`SealPurpose::AdvanceCiphertext`] and GCM AAD
//! `header || caller_aad` ([`header_aad`]): the header has a fixed length, so the
//! concatenation is unambiguous, and any edit of the header (including the key version
//! ID) makes the blob fail to open; an edit of the salt changes the derived key.

use zeroize::Zeroizing;

use super::sealer::{self, IV_LEN, SALT_LEN, SealPurpose, Sealed, TAG_LEN};
use super::secret::MasterKeyMaterial;
use super::{BlobError, CryptoError, OpenError};

/// The magic first byte, `$`.
pub const MAGIC: u8 = 0x24;
/// Format version 0 (high nibble) with padding mode 0 (low nibble).
pub const VERSION_PADDING: u8 = 0x00;
/// The algorithm byte for AES-GCM.
pub const ALG_AES_GCM: u8 = 0x02;
/// Length of the key version ID text (a hyphenated UUID).
pub const KEY_VERSION_ID_LEN: usize = 36;
/// Length of the header: magic, version/padding, algorithm, key version ID.
pub const HEADER_LEN: usize = 3 + KEY_VERSION_ID_LEN;
/// The shortest well-formed blob: header, IV, salt and tag (empty plaintext): 83 bytes.
pub const MIN_BLOB_LEN: usize = HEADER_LEN + IV_LEN + SALT_LEN + TAG_LEN;

/// A parsed self-describing blob, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvanceBlob<'a> {
    /// The key version ID (validated canonical lowercase UUID text).
    pub key_version_id: &'a str,
    /// The 39-byte header exactly as it appeared, for the AAD.
    pub header: &'a [u8; HEADER_LEN],
    /// The IV.
    pub iv: [u8; IV_LEN],
    /// Everything after the IV: salt || GCM ciphertext || tag (at least 32 bytes).
    pub ciphertext: &'a [u8],
}

/// Whether `s` is a UUID in canonical lowercase hyphenated form
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, `x` in `[0-9a-f]`).
pub fn is_canonical_uuid(s: &[u8]) -> bool {
    s.len() == KEY_VERSION_ID_LEN
        && s.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// The 39-byte header for `key_version_id`.
///
/// # Errors
/// [`BlobError::BadKeyVersionId`] unless `key_version_id` is a canonical lowercase UUID.
pub fn header(key_version_id: &str) -> Result<[u8; HEADER_LEN], BlobError> {
    let id = key_version_id.as_bytes();
    if !is_canonical_uuid(id) {
        return Err(BlobError::BadKeyVersionId);
    }
    let mut h = [0u8; HEADER_LEN];
    let (fixed, rest) = h.split_at_mut(3);
    fixed.copy_from_slice(&[MAGIC, VERSION_PADDING, ALG_AES_GCM]);
    rest.copy_from_slice(id);
    Ok(h)
}

/// The AAD given to GCM for a blob: the 39-byte header followed by the caller's AAD.
pub fn header_aad(header: &[u8; HEADER_LEN], caller_aad: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + caller_aad.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(caller_aad);
    aad
}

/// Lays out a blob: header for `key_version_id`, then `sealed.iv`, then
/// `sealed.ciphertext` (salt || ciphertext || tag).
///
/// Low level: the result only opens with [`open_advance`] if `sealed` came from
/// [`sealer::seal_salted`] with purpose [`SealPurpose::AdvanceCiphertext`] and AAD =
/// [`header_aad`] of the same header. Use [`seal_advance`] unless you have that.
///
/// # Errors
/// [`BlobError::BadKeyVersionId`] unless `key_version_id` is a canonical lowercase UUID.
pub fn encode(key_version_id: &str, sealed: &Sealed) -> Result<Vec<u8>, BlobError> {
    let h = header(key_version_id)?;
    let mut out = Vec::with_capacity(HEADER_LEN + IV_LEN + sealed.ciphertext.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(&sealed.iv);
    out.extend_from_slice(&sealed.ciphertext);
    Ok(out)
}

/// Parses a blob without decrypting it. Never panics, whatever the input.
///
/// # Errors
/// [`BlobError::TooShort`] below [`MIN_BLOB_LEN`] bytes; [`BlobError::BadMagic`],
/// [`BlobError::UnsupportedVersion`], [`BlobError::UnsupportedAlgorithm`],
/// [`BlobError::BadKeyVersionId`] for the header field that is wrong (checked in that
/// order).
pub fn parse(blob: &[u8]) -> Result<AdvanceBlob<'_>, BlobError> {
    if blob.len() < MIN_BLOB_LEN {
        return Err(BlobError::TooShort);
    }
    let (header, rest) = blob
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(BlobError::TooShort)?;
    let (iv, ciphertext) = rest
        .split_first_chunk::<IV_LEN>()
        .ok_or(BlobError::TooShort)?;
    let [magic, version, alg, id @ ..] = header;
    if *magic != MAGIC {
        return Err(BlobError::BadMagic);
    }
    if *version != VERSION_PADDING {
        return Err(BlobError::UnsupportedVersion);
    }
    if *alg != ALG_AES_GCM {
        return Err(BlobError::UnsupportedAlgorithm);
    }
    if !is_canonical_uuid(id) {
        return Err(BlobError::BadKeyVersionId);
    }
    let key_version_id = std::str::from_utf8(id).map_err(|_| BlobError::BadKeyVersionId)?;
    Ok(AdvanceBlob {
        key_version_id,
        header,
        iv: *iv,
        ciphertext,
    })
}

/// Seals `plaintext` into a self-describing blob under `key` (the material of key
/// version `key_version_id`), with GCM AAD = header || `caller_aad`.
///
/// Returns the whole blob; its IV is also at bytes 39..51 (`parse(..).iv`), which is
/// what the API returns as `Iv`.
///
/// # Errors
/// [`CryptoError::Blob`] if `key_version_id` is not a canonical lowercase UUID;
/// [`CryptoError::Random`] if no IV or salt could be drawn; [`CryptoError::Seal`] if the
/// input exceeds GCM's length limit.
pub fn seal_advance(
    key: &MasterKeyMaterial,
    key_version_id: &str,
    caller_aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let h = header(key_version_id)?;
    let aad = header_aad(&h, caller_aad);
    let sealed = sealer::seal_salted(key, SealPurpose::AdvanceCiphertext, &aad, plaintext)?;
    Ok(encode(key_version_id, &sealed)?)
}

/// Opens a parsed blob with `key` (which the caller looked up by
/// `parsed.key_version_id`) and the caller's AAD.
///
/// # Errors
/// [`OpenError`], the same whatever failed (wrong key, wrong AAD, any edited byte).
pub fn open_advance(
    key: &MasterKeyMaterial,
    parsed: &AdvanceBlob<'_>,
    caller_aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let aad = header_aad(parsed.header, caller_aad);
    sealer::open_salted(
        key,
        SealPurpose::AdvanceCiphertext,
        &parsed.iv,
        &aad,
        parsed.ciphertext,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rng::random_array;

    const VID: &str = "0b7a3c9e-2f4d-4e8a-9c1b-5d6e7f8a9b0c";

    #[test]
    fn round_trip_and_layout() {
        let k = MasterKeyMaterial::generate().unwrap();
        let blob = seal_advance(&k, VID, b"ctx", b"private key bytes").unwrap();
        assert_eq!(blob.len(), MIN_BLOB_LEN + 17);
        assert_eq!(&blob[..3], &[0x24, 0x00, 0x02]);
        assert_eq!(&blob[3..39], VID.as_bytes());
        let p = parse(&blob).unwrap();
        assert_eq!(p.key_version_id, VID);
        assert_eq!(&p.iv[..], &blob[39..51]);
        assert_eq!(p.ciphertext, &blob[51..]);
        assert_eq!(MIN_BLOB_LEN, 83);
        let pt = open_advance(&k, &p, b"ctx").unwrap();
        assert_eq!(pt.as_slice(), b"private key bytes");
        // Empty plaintext gives the minimum length.
        let empty = seal_advance(&k, VID, b"", b"").unwrap();
        assert_eq!(empty.len(), MIN_BLOB_LEN);
        assert!(
            open_advance(&k, &parse(&empty).unwrap(), b"")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn every_edited_byte_fails() {
        let k = MasterKeyMaterial::generate().unwrap();
        let blob = seal_advance(&k, VID, b"ctx", b"abc").unwrap();
        for i in 0..blob.len() {
            // Two edits per byte; for the ID, one that keeps the UUID canonical (the
            // header AAD must catch it) and one that does not (parse catches it).
            for edit in [0x01u8, 0x80] {
                let mut b = blob.clone();
                b[i] ^= edit;
                let r = parse(&b).map_err(|_| ()).and_then(|p| {
                    open_advance(&k, &p, b"ctx").map_err(|e| assert_eq!(e, OpenError))
                });
                assert!(r.is_err(), "byte {i} edit {edit:#x} still opened");
            }
        }
        // A different, still canonical, version ID: parses, fails to open.
        let mut b = blob.clone();
        b[3] = if b[3] == b'a' { b'b' } else { b'a' };
        let p = parse(&b).unwrap();
        assert_eq!(open_advance(&k, &p, b"ctx").unwrap_err(), OpenError);
        // Wrong caller AAD, wrong key, truncation.
        let p = parse(&blob).unwrap();
        assert_eq!(open_advance(&k, &p, b"ctx2").unwrap_err(), OpenError);
        let other = MasterKeyMaterial::generate().unwrap();
        assert_eq!(open_advance(&other, &p, b"ctx").unwrap_err(), OpenError);
        let short = parse(&blob[..blob.len() - 1]).unwrap();
        assert_eq!(open_advance(&k, &short, b"ctx").unwrap_err(), OpenError);
    }

    #[test]
    fn plain_seal_with_header_aad_matches_layout() {
        let k = MasterKeyMaterial::generate().unwrap();
        let h = header(VID).unwrap();
        // `m` sealed for `purpose` with the header as AAD, encoded as a blob.
        let blob_for = |purpose| {
            let sealed = sealer::seal_salted(&k, purpose, &header_aad(&h, b"a"), b"m").unwrap();
            encode(VID, &sealed).unwrap()
        };
        let blob = blob_for(SealPurpose::AdvanceCiphertext);
        let p = parse(&blob).unwrap();
        assert_eq!(open_advance(&k, &p, b"a").unwrap().as_slice(), b"m");
        // The plain form's purpose never opens an Advance ciphertext, even with the
        // header as AAD under the same key version.
        let blob = blob_for(SealPurpose::PlainCiphertext);
        assert!(open_advance(&k, &parse(&blob).unwrap(), b"a").is_err());
        let advance = blob_of(&seal_advance(&k, VID, b"a", b"m").unwrap());
        assert!(
            sealer::open_salted(
                &k,
                SealPurpose::PlainCiphertext,
                &advance.1,
                &advance.0,
                &advance.2
            )
            .is_err()
        );
    }

    /// (header AAD with empty caller AAD, IV, ciphertext) of an encoded blob.
    fn blob_of(blob: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let p = parse(blob).unwrap();
        (
            header_aad(p.header, b"a"),
            p.iv.to_vec(),
            p.ciphertext.to_vec(),
        )
    }

    #[test]
    fn parse_reports_each_header_error() {
        let mut b = vec![0u8; MIN_BLOB_LEN];
        b[..HEADER_LEN].copy_from_slice(&header(VID).unwrap());
        assert!(parse(&b).is_ok());
        assert_eq!(parse(&b[..MIN_BLOB_LEN - 1]), Err(BlobError::TooShort));
        let cases = [
            (0, b'%', BlobError::BadMagic),
            (1, 0x10, BlobError::UnsupportedVersion),
            (1, 0x01, BlobError::UnsupportedVersion),
            (2, 0x01, BlobError::UnsupportedAlgorithm),
            (3, b'A', BlobError::BadKeyVersionId),
            (11, b'x', BlobError::BadKeyVersionId),
            (11, b'0', BlobError::BadKeyVersionId),
            (38, b'-', BlobError::BadKeyVersionId),
        ];
        for (i, v, e) in cases {
            let mut c = b.clone();
            c[i] = v;
            assert_eq!(parse(&c), Err(e), "byte {i} = {v:#x}");
        }
    }

    #[test]
    fn header_rejects_non_canonical_ids() {
        for id in [
            "",
            "0B7A3C9E-2F4D-4E8A-9C1B-5D6E7F8A9B0C",
            "0b7a3c9e2f4d4e8a9c1b5d6e7f8a9b0c",
            "{0b7a3c9e-2f4d-4e8a-9c1b-5d6e7f8a9b0c}",
            "0b7a3c9e-2f4d-4e8a-9c1b-5d6e7f8a9b0g",
            "0b7a3c9e-2f4d-4e8a-9c1b-5d6e7f8a9b0\u{e9}",
        ] {
            assert_eq!(header(id), Err(BlobError::BadKeyVersionId), "{id}");
        }
        let v4 = uuid::Uuid::new_v4().to_string();
        assert!(header(&v4).is_ok());
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        let good = {
            let mut b = header(VID).unwrap().to_vec();
            b.extend_from_slice(&[0u8; IV_LEN + SALT_LEN + TAG_LEN + 4]);
            b
        };
        for i in 0..3000u32 {
            let [len_byte, pick, pos, val]: [u8; 4] = random_array().unwrap();
            let len = usize::from(len_byte) % (good.len() + 8);
            let mut b = vec![0u8; len];
            if pick % 2 == 0 {
                crate::crypto::rng::fill_random(&mut b).unwrap();
            } else {
                // Mostly-valid input with one random byte: reaches the later checks.
                let n = len.min(good.len());
                b[..n].copy_from_slice(&good[..n]);
                if len > 0 {
                    b[usize::from(pos) % len] = val;
                }
            }
            let _ = parse(&b);
            if i < 200 {
                let _ = parse(&good[..(i as usize).min(good.len())]);
            }
        }
    }
}
