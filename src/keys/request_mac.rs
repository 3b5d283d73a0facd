//! The MAC of a creation request made with an idempotency token
//! ([`super::idempotency`]): HMAC-SHA256 under a key derived with HKDF-SHA256 from the
//! root key, so the store keeps a value that tells two requests apart without keeping
//! the request (which may hold a secret's value or a PKCS#12 password), and that nobody
//! without the root key can compute for a guessed request.

use std::fmt;

use ring::hmac;

use super::record_mac::derive_mac_key;
use crate::crypto::secret::MasterKeyMaterial;

const HKDF_SALT: &[u8] = b"kmsd/v1/idempotency";
const HKDF_INFO: &[u8] = b"kmsd/v1/idempotency-request";

/// The MAC key of requests made with a token, derived from the root key.
pub struct RequestMac {
    key: hmac::Key,
}

impl fmt::Debug for RequestMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestMac([REDACTED])")
    }
}

impl RequestMac {
    /// The MAC key derived from `root_key`.
    pub fn new(root_key: &MasterKeyMaterial) -> Self {
        Self {
            key: derive_mac_key(root_key, HKDF_SALT, HKDF_INFO),
        }
    }

    /// The MAC of `request` (encoded, without its token) sent to `operation` by
    /// `principal`, each part length-prefixed.
    pub(super) fn sign(&self, operation: &str, principal: &str, request: &[u8]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [operation.as_bytes(), principal.as_bytes(), request] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        context.sign().as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_binds_operation_principal_and_request_and_is_redacted() {
        let mac = RequestMac::new(&MasterKeyMaterial::generate().unwrap());
        let base = mac.sign("CreateKey", "alice", b"request");
        assert_eq!(base, mac.sign("CreateKey", "alice", b"request"));
        assert_ne!(base, mac.sign("CreateSecret", "alice", b"request"));
        assert_ne!(base, mac.sign("CreateKey", "bob", b"request"));
        assert_ne!(base, mac.sign("CreateKey", "alice", b"requesT"));
        // Length prefixes: moving bytes between parts changes the MAC.
        assert_ne!(
            mac.sign("CreateKey", "alicer", b"equest"),
            mac.sign("CreateKey", "alice", b"request")
        );
        let other = RequestMac::new(&MasterKeyMaterial::generate().unwrap());
        assert_ne!(base, other.sign("CreateKey", "alice", b"request"));
        assert_eq!(format!("{mac:?}"), "RequestMac([REDACTED])");
    }
}
