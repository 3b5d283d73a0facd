//! The parameter checks of the data plane, run before any key is touched. Pure
//! functions, so the fuzz targets can drive them.

use crate::crypto::keygen::{KeyFormat, KeyPairSpec};
use crate::crypto::rsa_oaep::OaepAlgorithm;
use crate::error::KmsError;
use crate::keys::model::KeySpec;

/// The only `Algorithm`.
pub const ALGORITHM_AES_GCM: &str = "AES_GCM";
/// The largest `Aad` accepted.
pub const MAX_AAD_LEN: usize = 8192;
/// The largest ciphertext accepted: a PEM RSA-4096 private key is about 3.3 KiB.
pub const MAX_CIPHERTEXT_LEN: usize = 16 * 1024;

pub(crate) fn parse_spec(raw: &str) -> Result<KeyPairSpec, KmsError> {
    if raw.is_empty() {
        return Err(KmsError::MissingParameter("KeyPairSpec"));
    }
    // The signing-only specs (ML-DSA, Ed25519) parse as key pair specs but are not data
    // key pairs: refused with the same message as an unknown name.
    raw.parse()
        .ok()
        .filter(|spec: &KeyPairSpec| spec.is_data_key_pair())
        .ok_or_else(|| {
            let valid: Vec<&str> = KeyPairSpec::DATA_KEY_PAIRS
                .iter()
                .map(|s| s.as_str())
                .collect();
            KmsError::InvalidParameter(format!(
                "KeyPairSpec {:?} is not supported; valid values: {}.",
                truncate(raw),
                valid.join(", ")
            ))
        })
}

pub(crate) fn parse_format(raw: &str) -> Result<KeyFormat, KmsError> {
    if raw.is_empty() {
        return Err(KmsError::MissingParameter("KeyFormat"));
    }
    raw.parse().map_err(|_| {
        KmsError::InvalidParameter(format!(
            "KeyFormat {:?} is not supported; valid values: PEM, DER.",
            truncate(raw)
        ))
    })
}

pub(crate) fn check_algorithm(raw: &str) -> Result<(), KmsError> {
    match raw {
        "" | ALGORITHM_AES_GCM => Ok(()),
        other => Err(KmsError::InvalidParameter(format!(
            "Algorithm {:?} is not supported; valid values: {ALGORITHM_AES_GCM}.",
            truncate(other)
        ))),
    }
}

pub(crate) fn check_aad(aad: &[u8]) -> Result<(), KmsError> {
    if aad.len() > MAX_AAD_LEN {
        return Err(KmsError::InvalidParameter(format!(
            "Aad must be at most {MAX_AAD_LEN} bytes, got {}.",
            aad.len()
        )));
    }
    Ok(())
}

fn truncate(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// The `Algorithm` of an Encrypt or Decrypt call: AES-GCM (`AES_GCM` or empty) for AES
/// keys, or an RSAES-OAEP algorithm for RSA encryption keys.
///
/// # Errors
/// `InvalidParameter` for any other value, listing the valid ones.
pub fn parse_algorithm(raw: &str) -> Result<Option<OaepAlgorithm>, KmsError> {
    match (raw, OaepAlgorithm::from_name(raw)) {
        (_, Some(algorithm)) => Ok(Some(algorithm)),
        ("" | ALGORITHM_AES_GCM, None) => Ok(None),
        (other, None) => Err(KmsError::InvalidParameter(format!(
            "Algorithm {:?} is not supported; valid values: {ALGORITHM_AES_GCM} (for \
             {} keys), {} (for RSA keys whose usage is ENCRYPT/DECRYPT).",
            other.chars().take(40).collect::<String>(),
            KeySpec::Aes256.as_str(),
            oaep_names()
        ))),
    }
}

/// The RSAES-OAEP algorithm names, for error messages.
pub(super) fn oaep_names() -> String {
    let names: Vec<&str> = OaepAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_before_any_key_is_touched() {
        assert!(matches!(
            parse_spec(""),
            Err(KmsError::MissingParameter("KeyPairSpec"))
        ));
        for signing_only in ["ML_DSA_65", "ED25519"] {
            match parse_spec(signing_only) {
                Err(KmsError::InvalidParameter(message)) => assert_eq!(
                    message,
                    format!(
                        "KeyPairSpec \"{signing_only}\" is not supported; valid values: \
                         RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P256K."
                    )
                ),
                other => panic!("{signing_only}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_format("pem"),
            Err(KmsError::InvalidParameter(_))
        ));
        assert!(check_algorithm("AES_GCM").is_ok());
        assert!(check_algorithm("").is_ok());
        assert!(check_algorithm("SM4").is_err());
        assert!(check_aad(&[0; MAX_AAD_LEN]).is_ok());
        assert!(check_aad(&[0; MAX_AAD_LEN + 1]).is_err());
    }
}
