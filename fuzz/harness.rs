//! The fuzz targets' bodies, shared by `fuzz/fuzz_targets/*` (cargo fuzz) and
//! `tests/e2e/fuzz_regressions.rs` (which replays `tests/fuzz_regressions/<target>/` in
//! the ordinary test suite). Each never panics on any input; a panic is a finding.

#![allow(dead_code)]

use kmsd::crypto::blob;
use kmsd::crypto::sealer::{self, SealPurpose};
use kmsd::crypto::secret::MasterKeyMaterial;
use kmsd::data_plane::decrypt::{validate_advance_decrypt, validate_decrypt};
use kmsd::data_plane::key_pairs::validate_generate;
use kmsd::data_plane::{DecryptParams, GenerateParams, SealWith};
use kmsd::keys::ids::{self, KeyRef};
use prost::Message;

/// The target names, as directories of the regression corpus.
pub const TARGETS: [&str; 3] = ["blob_parse", "request_validation", "sealer_open"];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "blob_parse" => blob_parse(data),
        "request_validation" => request_validation(data),
        "sealer_open" => sealer_open(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Parses an AdvanceDecrypt ciphertext blob; what parses must re-encode to itself.
pub fn blob_parse(data: &[u8]) {
    if let Ok(parsed) = blob::parse(data) {
        assert!(blob::is_canonical_uuid(parsed.key_version_id.as_bytes()));
        assert!(parsed.ciphertext.len() >= 32);
        let encoded = blob::encode(
            parsed.key_version_id,
            &sealer::Sealed {
                iv: parsed.iv,
                ciphertext: parsed.ciphertext.to_vec(),
            },
        )
        .expect("a parsed version id encodes");
        assert_eq!(encoded, data);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes the first byte's choice of request message from the rest, as the server
/// would, and runs the validation the domain runs before touching a key; also the
/// KeyId, alias and version ID checks.
pub fn request_validation(data: &[u8]) {
    use kmsd_api::pb;
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            if let Ok(req) = pb::GenerateDataKeyPairRequest::decode(body) {
                let _ = validate_generate(&GenerateParams {
                    key_id: &req.key_id,
                    algorithm: &req.algorithm,
                    key_pair_spec: &req.key_pair_spec,
                    key_format: &req.key_format,
                    aad: &req.aad,
                    seal_with: SealWith::InitialVersion,
                    with_plaintext: true,
                });
                let _ = KeyRef::parse(&req.key_id);
            }
        }
        1 => {
            if let Ok(req) = pb::AdvanceGenerateDataKeyPairWithoutPlaintextRequest::decode(body) {
                let _ = validate_generate(&GenerateParams {
                    key_id: &req.key_id,
                    algorithm: "",
                    key_pair_spec: &req.key_pair_spec,
                    key_format: &req.key_format,
                    aad: &req.aad,
                    seal_with: SealWith::PrimaryVersion,
                    with_plaintext: false,
                });
            }
        }
        2 => {
            if let Ok(req) = pb::DecryptRequest::decode(body) {
                let _ = validate_decrypt(&DecryptParams {
                    key_id: &req.key_id,
                    ciphertext_blob: &req.ciphertext_blob,
                    iv: &req.iv,
                    aad: &req.aad,
                    algorithm: &req.algorithm,
                    padding_mode: &req.padding_mode,
                });
            }
        }
        3 => {
            if let Ok(req) = pb::AdvanceDecryptRequest::decode(body) {
                let params = DecryptParams {
                    key_id: &req.key_id,
                    ciphertext_blob: &req.ciphertext_blob,
                    iv: &req.iv,
                    aad: &req.aad,
                    algorithm: &req.algorithm,
                    padding_mode: &req.padding_mode,
                };
                if validate_advance_decrypt(&params).is_ok() {
                    let _ = blob::parse(params.ciphertext_blob);
                }
            }
        }
        4 => {
            if let Ok(req) = pb::CreateAliasRequest::decode(body) {
                let _ = ids::validate_alias_name(&req.alias_name);
                let _ = KeyRef::parse(&req.key_id);
            }
        }
        _ => {
            let raw = text(body);
            let _ = ids::validate_version_id(&raw);
            let _ = ids::is_key_id(&raw);
            let (pattern, name) = raw.split_once('\n').unwrap_or((&raw, ""));
            let _ = kmsd::auth::glob::matches(pattern, name);
            let _ = kmsd::auth::AuthPolicy::parse(&raw, "fuzz");
            let _ = kmsd::keys::model::parse_key_spec_and_usage(pattern, name);
            // The same bytes as a Verify request (Sign's fields and a signature).
            if let Ok(req) = pb::VerifyRequest::decode(body) {
                let _ =
                    kmsd::data_plane::signatures::validate_sign(&kmsd::data_plane::SignParams {
                        key_id: &req.key_id,
                        algorithm: &req.algorithm,
                        message_type: &req.message_type,
                        message: &req.message,
                        digest: &req.digest,
                    });
            }
        }
    }
}

fn fuzz_key() -> MasterKeyMaterial {
    MasterKeyMaterial::from_bytes(&[0x42; 32]).expect("32 bytes")
}

/// The sealer's open path on attacker bytes: a plain ciphertext (IV, AAD, ciphertext
/// cut from the input) and an Advance blob. Nothing made up may open; sealing the input
/// and opening it must round-trip.
pub fn sealer_open(data: &[u8]) {
    let key = fuzz_key();
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let iv_len = usize::from(cut % 16);
    let (iv, rest) = rest.split_at(iv_len.min(rest.len()));
    let aad_len = usize::from(rest.first().copied().unwrap_or(0) % 32).min(rest.len());
    let (aad, ciphertext) = rest.split_at(aad_len);
    assert!(
        sealer::open(&key, SealPurpose::PlainCiphertext, iv, aad, ciphertext).is_err(),
        "a ciphertext nobody sealed opened"
    );
    assert!(
        sealer::open_salted(&key, SealPurpose::PlainCiphertext, iv, aad, ciphertext).is_err(),
        "a salted ciphertext nobody sealed opened"
    );
    if let Ok(parsed) = blob::parse(data) {
        assert!(blob::open_advance(&key, &parsed, aad).is_err());
    }
    let salted = sealer::seal_salted(&key, SealPurpose::PlainCiphertext, aad, data).expect("seal");
    let opened = sealer::open_salted(
        &key,
        SealPurpose::PlainCiphertext,
        &salted.iv,
        aad,
        &salted.ciphertext,
    )
    .expect("salted round trip");
    assert_eq!(opened.as_slice(), data);
    let sealed = sealer::seal(&key, SealPurpose::PlainCiphertext, aad, data).expect("seal");
    let opened = sealer::open(
        &key,
        SealPurpose::PlainCiphertext,
        &sealed.iv,
        aad,
        &sealed.ciphertext,
    )
    .expect("round trip");
    assert_eq!(opened.as_slice(), data);
    assert!(
        sealer::open(
            &key,
            SealPurpose::KeyMaterialAtRest,
            &sealed.iv,
            aad,
            &sealed.ciphertext
        )
        .is_err()
    );
}
