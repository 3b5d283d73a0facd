//! Request IDs: one UUID per call, returned in every response and every error.
//!
//! A transport's edge gives each call a fresh [`RequestId`] and stores it in the
//! request's extensions; the gRPC transport also echoes it in the `x-kms-request-id`
//! header, so even a transport-level failure can be correlated with the log.

use std::fmt;

use uuid::Uuid;

/// The metadata / header name that carries the request ID.
pub const REQUEST_ID_HEADER: &str = "x-kms-request-id";

/// The ID of one request: a random (v4) UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(Uuid);

impl RequestId {
    /// A fresh random request ID, from the public random values
    /// ([`crate::crypto::nonce`]); should they fail, from uuid's own generator.
    pub fn new() -> Self {
        crate::crypto::nonce::array().map_or_else(|_| Self(Uuid::new_v4()), Self::from_random)
    }

    /// The v4 UUID made of 16 random bytes drawn by the caller (its version and variant
    /// bits set).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// Writes the hyphenated form (36 characters) into `buffer` and returns it, without
    /// allocating.
    pub fn encode<'b>(&self, buffer: &'b mut [u8; 36]) -> &'b str {
        self.0.as_hyphenated().encode_lower(buffer)
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_uuids() {
        let a = RequestId::new();
        let b = RequestId::new();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 36);
        assert!(Uuid::parse_str(&a.to_string()).is_ok());
        let mut buffer = [0; 36];
        assert_eq!(a.encode(&mut buffer), a.to_string());
    }

    #[test]
    fn ids_from_random_bytes_are_v4_uuids() {
        let id = RequestId::from_random([0xff; 16]);
        let parsed = Uuid::parse_str(&id.to_string()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(
            RequestId::from_random([1; 16]),
            RequestId::from_random([2; 16])
        );
    }
}
