//! Identifiers (reference section 4): key IDs, alias names, key version IDs, and the
//! `KeyId` parameter that takes either a key ID or an alias.

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::KmsError;

/// Prefix of every key ID.
pub const KEY_ID_PREFIX: &str = "key-";
/// Prefix of every alias name.
pub const ALIAS_PREFIX: &str = "alias/";
/// Length of the random part of a key ID.
const KEY_ID_RANDOM_LEN: usize = 21;
/// Longest accepted key ID (the prefix and up to 64 letters and digits).
const KEY_ID_MAX_LEN: usize = 4 + 64;
/// Longest alias suffix.
const ALIAS_MAX_LEN: usize = 255;
const KEY_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What a `KeyId` parameter names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// A key ID, `key-...`.
    Id(String),
    /// An alias, `alias/...`.
    Alias(String),
}

impl KeyRef {
    /// Parses a `KeyId` parameter. Empty → `MissingParameter`; neither a well-formed
    /// key ID nor a well-formed alias → `InvalidParameter`.
    pub fn parse(raw: &str) -> Result<Self, KmsError> {
        if raw.is_empty() {
            return Err(KmsError::MissingParameter("KeyId"));
        }
        if raw.starts_with(ALIAS_PREFIX) {
            validate_alias_name(raw)?;
            return Ok(Self::Alias(raw.to_owned()));
        }
        if is_key_id(raw) {
            return Ok(Self::Id(raw.to_owned()));
        }
        Err(KmsError::InvalidParameter(format!(
            "KeyId must be a key ID (key-...) or an alias (alias/...), got {:?}.",
            truncate_for_message(raw)
        )))
    }
}

/// A fresh random key ID: `key-` and 21 lowercase letters and digits.
pub fn new_key_id() -> Result<String, KmsError> {
    let rng = SystemRandom::new();
    let mut id = String::with_capacity(KEY_ID_PREFIX.len() + KEY_ID_RANDOM_LEN);
    id.push_str(KEY_ID_PREFIX);
    while id.len() < KEY_ID_PREFIX.len() + KEY_ID_RANDOM_LEN {
        let mut byte = [0u8; 1];
        rng.fill(&mut byte)
            .map_err(|_| KmsError::internal("the system random source failed"))?;
        // 252 = 7 * 36: reject the tail so every character is equally likely.
        if byte[0] < 252 {
            id.push(char::from(KEY_ID_ALPHABET[usize::from(byte[0] % 36)]));
        }
    }
    Ok(id)
}

/// Whether `raw` is a well-formed key ID.
pub fn is_key_id(raw: &str) -> bool {
    raw.len() <= KEY_ID_MAX_LEN
        && raw.strip_prefix(KEY_ID_PREFIX).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Checks an alias name: `alias/` and 1 to 255 of `[a-zA-Z0-9:/_-]`.
pub fn validate_alias_name(raw: &str) -> Result<(), KmsError> {
    if raw.is_empty() {
        return Err(KmsError::MissingParameter("AliasName"));
    }
    let valid = raw.strip_prefix(ALIAS_PREFIX).is_some_and(|rest| {
        (1..=ALIAS_MAX_LEN).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
    });
    if valid {
        Ok(())
    } else {
        Err(KmsError::InvalidParameter(format!(
            "AliasName must be alias/ followed by 1 to 255 of [a-zA-Z0-9:/_-], got {:?}.",
            truncate_for_message(raw)
        )))
    }
}

/// Checks a key version ID: a UUID in its 36-character lowercase hyphenated form.
pub fn validate_version_id(raw: &str) -> Result<(), KmsError> {
    if raw.is_empty() {
        return Err(KmsError::MissingParameter("KeyVersionId"));
    }
    match uuid::Uuid::try_parse(raw) {
        Ok(uuid) if uuid.as_hyphenated().to_string() == raw => Ok(()),
        _ => Err(KmsError::InvalidParameter(format!(
            "KeyVersionId must be a UUID such as 2ab1a983-7072-4bbc-a582-584b5bd8e6c4, got {:?}.",
            truncate_for_message(raw)
        ))),
    }
}

/// A fresh key version ID.
pub fn new_version_id() -> String {
    uuid::Uuid::new_v4().as_hyphenated().to_string()
}

/// Keeps error messages short when a caller sends something huge.
fn truncate_for_message(raw: &str) -> String {
    raw.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_key_ids_are_well_formed_and_distinct() {
        let a = new_key_id().unwrap();
        let b = new_key_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 25);
        assert!(is_key_id(&a), "{a}");
    }

    #[test]
    fn key_refs_parse() {
        assert_eq!(
            KeyRef::parse("key-hzz62f1cb66fa42qo6a7x").unwrap(),
            KeyRef::Id("key-hzz62f1cb66fa42qo6a7x".into())
        );
        assert_eq!(
            KeyRef::parse("alias/app:prod/db_key-1").unwrap(),
            KeyRef::Alias("alias/app:prod/db_key-1".into())
        );
        assert!(matches!(
            KeyRef::parse(""),
            Err(KmsError::MissingParameter("KeyId"))
        ));
        for bad in [
            "key-",
            "key-ABC",
            "kee-abc",
            "alias/",
            "alias/sp ace",
            "key-a.b",
        ] {
            assert!(
                matches!(KeyRef::parse(bad), Err(KmsError::InvalidParameter(_))),
                "{bad}"
            );
        }
        let long_alias = format!("alias/{}", "a".repeat(256));
        assert!(KeyRef::parse(&long_alias).is_err());
        assert!(KeyRef::parse(&format!("alias/{}", "a".repeat(255))).is_ok());
    }

    #[test]
    fn version_ids_must_be_canonical_uuids() {
        assert!(validate_version_id(&new_version_id()).is_ok());
        assert!(validate_version_id("2AB1A983-7072-4BBC-A582-584B5BD8E6C4").is_err());
        assert!(validate_version_id("2ab1a9837072").is_err());
        assert!(matches!(
            validate_version_id(""),
            Err(KmsError::MissingParameter(_))
        ));
    }
}
