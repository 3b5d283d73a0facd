//! Store rows that grant access, bound to the root key. The HTTPS gateway admits a
//! caller by a client-key row, so a row must be one kmsd wrote: each client-key record
//! carries an HMAC-SHA256 over its fields (ID, principal, public key, validity, who
//! minted it and under which access control) under a key derived with HKDF-SHA256
//! from the root key. Someone who can write to the database but does not hold the
//! root key cannot make a row that verifies, nor change one (a longer validity,
//! another principal, another public key); a row that does not verify is refused as
//! unknown. Key records need no MAC: their material is sealed under the root key with
//! an AAD binding it to its key and version, so a forged one opens nothing.
//!
//! The key is derived, not stored, so a store copied by `kmsd migrate-store` verifies
//! under the same root key; `kmsd rotate-root-key` signs every client key again under
//! the new one.

use std::fmt;

use ring::{hkdf, hmac};

use crate::crypto::secret::MasterKeyMaterial;
use crate::store::ClientKeyRecord;

const HKDF_SALT: &[u8] = b"kmsd/v1/record-mac";
const HKDF_INFO: &[u8] = b"kmsd/v1/client-key-record";

/// An HMAC-SHA256 key derived from `root_key` with HKDF-SHA256 under `salt` and
/// `info`: each use of a MAC bound to the root key has its own pair.
pub(super) fn derive_mac_key(root_key: &MasterKeyMaterial, salt: &[u8], info: &[u8]) -> hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(root_key.expose_secret());
    let info = [info];
    let okm = prk
        .expand(&info, hmac::HMAC_SHA256)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    hmac::Key::from(okm)
}

/// The MAC key of client-key records under one root key; see the module docs.
pub struct RecordMac {
    key: hmac::Key,
}

impl fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordMac([REDACTED])")
    }
}

impl RecordMac {
    /// The MAC key derived from `root_key`.
    pub fn new(root_key: &MasterKeyMaterial) -> Self {
        Self {
            key: derive_mac_key(root_key, HKDF_SALT, HKDF_INFO),
        }
    }

    /// What is signed: every field but the MAC, each length-prefixed so no two
    /// records share an encoding.
    fn message(record: &ClientKeyRecord) -> Vec<u8> {
        let mut message = Vec::with_capacity(512);
        let mut field = |bytes: &[u8]| {
            message.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            message.extend_from_slice(bytes);
        };
        field(record.client_key_id.as_bytes());
        field(record.principal.as_bytes());
        field(&record.public_key_der);
        field(&record.not_before_ms.to_be_bytes());
        field(&record.not_after_ms.to_be_bytes());
        field(&record.created_at_ms.to_be_bytes());
        field(record.minted_by.as_bytes());
        field(record.minted_under.as_str().as_bytes());
        message
    }

    /// `record` with its MAC set.
    pub fn signed(&self, record: ClientKeyRecord) -> ClientKeyRecord {
        let mac = hmac::sign(&self.key, &Self::message(&record));
        ClientKeyRecord {
            mac: mac.as_ref().to_vec(),
            ..record
        }
    }

    /// Whether `record`'s MAC is this key's over its fields (constant time).
    pub fn verifies(&self, record: &ClientKeyRecord) -> bool {
        hmac::verify(&self.key, &Self::message(record), &record.mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MintedUnder;

    fn record() -> ClientKeyRecord {
        ClientKeyRecord {
            client_key_id: "KAAP.1".into(),
            principal: "payments".into(),
            public_key_der: vec![1, 2, 3],
            not_before_ms: 1,
            not_after_ms: 2,
            created_at_ms: 1,
            minted_by: "admin".into(),
            minted_under: MintedUnder::Policy,
            mac: Vec::new(),
        }
    }

    #[test]
    fn a_signed_record_verifies_and_any_change_does_not() {
        let root = MasterKeyMaterial::generate().unwrap();
        let mac = RecordMac::new(&root);
        let signed = mac.signed(record());
        assert!(mac.verifies(&signed));
        assert!(!mac.verifies(&record()), "an unsigned row");
        let changes: [fn(&mut ClientKeyRecord); 8] = [
            |r| r.client_key_id.push('x'),
            |r| r.principal = "admin".into(),
            |r| r.public_key_der.push(4),
            |r| r.not_before_ms = 0,
            |r| r.not_after_ms = u64::MAX,
            |r| r.created_at_ms = 0,
            |r| r.minted_by.clear(),
            |r| r.minted_under = MintedUnder::Readmitted,
        ];
        for change in changes {
            let mut forged = ClientKeyRecord {
                mac: signed.mac.clone(),
                ..signed.clone()
            };
            change(&mut forged);
            assert!(!mac.verifies(&forged), "{forged:?}");
        }
        // Another root key's MAC does not verify either.
        let other = RecordMac::new(&MasterKeyMaterial::generate().unwrap());
        assert!(!other.verifies(&signed));
        assert_eq!(format!("{mac:?}"), "RecordMac([REDACTED])");
    }
}
