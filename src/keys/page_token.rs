//! Page tokens: where the next page of a list starts, sealed so that a token tells
//! its holder nothing and cannot be forged.
//!
//! A plain position (the last key ID or alias name of a page) would name items a
//! caller may not see: the list filters by the caller's grants, but a position taken
//! before filtering, or from a hidden item the scan skipped, would leak it. So a token
//! is `base64url(nonce || AES-256-GCM(position padded to a fixed length))`, under a key
//! derived from the root key with HKDF-SHA256 (info `kmsd/v1/page-token`): the key
//! never leaves the process and never seals anything else. The AAD binds the token to
//! its list (`ListKeys`, `ListAliases` of one key or of all, `ListKeyVersions` of one
//! key) and to the principal that got it, so a token of one list or caller does not
//! open for another. Positions are padded to [`PADDED_LEN`] bytes, so the token's
//! length does not tell a long alias name from a short one. A token that does not open
//! (tampered, made up, from another list, caller or root key) is `InvalidParameter`.
//!
//! Tokens do not expire: a position is harmless to its holder, and a list resumed
//! after the item was deleted resumes after where it was.

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

use crate::crypto::rng;
use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;

use super::model::bad_page_token;

/// Every position is padded to this many bytes before sealing: longer than any key
/// ID, version ID or alias name (`alias/` and at most 255 characters).
const PADDED_LEN: usize = 272;
/// The HKDF salt and info that derive the token key from the root key.
const HKDF_SALT: &[u8] = b"kmsd/v1/page-token-salt";
const HKDF_INFO: &[u8] = b"kmsd/v1/page-token";
/// The most base64 a token of ours can be; longer input is refused before decoding.
const MAX_TOKEN_LEN: usize = 512;

/// Seals and opens page tokens under a key derived from the root key.
pub(super) struct PageTokens {
    key: LessSafeKey,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens([REDACTED])")
    }
}

/// Which list a token belongs to, and for whom: the token's AAD.
pub(super) struct TokenScope<'a> {
    /// `ListKeys`, `ListAliases`, `ListKeyVersions`.
    pub list: &'static str,
    /// What the list is filtered by (a key ID), or empty.
    pub filter: &'a str,
    /// The principal's name, or empty without access control.
    pub principal: &'a str,
}

impl TokenScope<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "kmsd/v1/page-token\0{}\0{}\0{}",
            self.list, self.filter, self.principal
        )
        .into_bytes()
    }
}

impl PageTokens {
    /// The token key for `root_key`.
    pub(super) fn new(root_key: &MasterKeyMaterial) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT);
        let prk = salt.extract(root_key.expose_secret());
        let okm = prk
            .expand(&[HKDF_INFO], &AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// A token for `position` in the list `scope` names. Internal error if the
    /// random source fails or the position is longer than any name.
    pub(super) fn seal(&self, scope: &TokenScope<'_>, position: &str) -> Result<String, KmsError> {
        if position.len() > PADDED_LEN || position.contains('\0') {
            return Err(KmsError::internal("a page position too long to seal"));
        }
        let nonce = rng::random_array::<NONCE_LEN>().map_err(KmsError::internal)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + PADDED_LEN + 16);
        sealed.extend_from_slice(&nonce);
        let mut body = position.as_bytes().to_vec();
        body.resize(PADDED_LEN, 0);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(scope.aad()),
                &mut body,
            )
            .map_err(|_| KmsError::internal("sealing a page token failed"))?;
        sealed.extend_from_slice(&body);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The position of `token`, a token [`Self::seal`] made for `scope`; `None` for
    /// the empty token (the first page). `InvalidParameter` for anything else.
    pub(super) fn open(
        &self,
        scope: &TokenScope<'_>,
        token: &str,
    ) -> Result<Option<String>, KmsError> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad_page_token());
        }
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad_page_token())?;
        if raw.len() <= NONCE_LEN {
            return Err(bad_page_token());
        }
        let mut body = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).map_err(|_| bad_page_token())?;
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(scope.aad()), &mut body)
            .map_err(|_| bad_page_token())?;
        let end = opened.iter().position(|&b| b == 0).unwrap_or(opened.len());
        let position = std::str::from_utf8(&opened[..end]).map_err(|_| bad_page_token())?;
        if position.is_empty() {
            return Err(bad_page_token());
        }
        Ok(Some(position.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(list: &'static str, filter: &'a str, principal: &'a str) -> TokenScope<'a> {
        TokenScope {
            list,
            filter,
            principal,
        }
    }

    #[test]
    fn tokens_open_for_their_list_and_caller_only_and_hide_their_position() {
        let tokens = PageTokens::new(&MasterKeyMaterial::from_bytes(&[1; 32]).unwrap());
        let keys = scope("ListKeys", "", "alice");
        let short = tokens.seal(&keys, "key-abc").unwrap();
        let long = tokens
            .seal(&keys, &format!("alias/{}", "x".repeat(255)))
            .unwrap();
        assert_eq!(
            tokens.open(&keys, &short).unwrap().as_deref(),
            Some("key-abc")
        );
        assert_eq!(short.len(), long.len(), "the length tells nothing");
        assert!(!short.contains("key-abc"));
        // Fresh nonces: one position gives different tokens.
        assert_ne!(short, tokens.seal(&keys, "key-abc").unwrap());
        assert_eq!(tokens.open(&keys, "").unwrap(), None);

        for other in [
            scope("ListAliases", "", "alice"),
            scope("ListKeys", "key-abc", "alice"),
            scope("ListKeys", "", "bob"),
        ] {
            assert!(matches!(
                tokens.open(&other, &short),
                Err(KmsError::InvalidParameter(_))
            ));
        }
        let foreign = PageTokens::new(&MasterKeyMaterial::from_bytes(&[2; 32]).unwrap());
        assert!(matches!(
            foreign.open(&keys, &short),
            Err(KmsError::InvalidParameter(_))
        ));
        // Every flipped character, and made-up tokens, are refused.
        let mut chars: Vec<char> = short.chars().collect();
        for i in 0..chars.len() {
            let was = chars[i];
            chars[i] = if was == 'A' { 'B' } else { 'A' };
            let tampered: String = chars.iter().collect();
            assert!(tokens.open(&keys, &tampered).is_err(), "{i}");
            chars[i] = was;
        }
        for made_up in ["key-abc", "alias/a", "AAAA", "!!", &"A".repeat(4000)] {
            assert!(matches!(
                tokens.open(&keys, made_up),
                Err(KmsError::InvalidParameter(_))
            ));
        }
    }

    #[test]
    fn the_token_key_is_redacted() {
        let tokens = PageTokens::new(&MasterKeyMaterial::from_bytes(&[1; 32]).unwrap());
        assert_eq!(format!("{tokens:?}"), "PageTokens([REDACTED])");
    }
}
