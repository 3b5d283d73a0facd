//! Idempotency tokens: creation that is safe to retry.
//!
//! `CreateKey`, `CreateKeyVersion`, `CreateSecret` and `CreateClientKey` take an
//! optional `IdempotencyToken` (1 to [`MAX_TOKEN_LEN`] printable ASCII characters).
//! A token is scoped to the operation and the caller's principal (everyone is one
//! caller without access control) and lives for [`IDEMPOTENCY_WINDOW`] from the first
//! call. Within it, the same token with the same request answers what the first call
//! made (the object as it is now); with other parameters it is refused
//! (`InvalidParameter`), never a second object. The token's record commits in the same
//! store transaction as the object it names, under a unique key, so replicas racing on
//! one token make one object and the losers answer the winner's.
//!
//! The record keeps an HMAC of the request under a key derived from the root key, not
//! the request: a `CreateSecret` request holds the secret's value, and a
//! `CreateClientKey` request the PKCS#12 password. For the same reason a replayed
//! `CreateClientKey` cannot answer the private key, which kmsd never keeps: it is
//! refused, naming the client key the first call made ([`KmsError::ClientKeyIssued`]),
//! so the caller can delete it and create a new one.

use std::fmt;
use std::time::Duration;

use kmsd_api::ops::{Operation, OperationRequest};
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::store::{Creation, IdempotencyRecord, StoreResult};

use super::registry::{KeyRegistry, store_error};

/// How long a token names the first call's answer.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The longest token, in characters.
pub const MAX_TOKEN_LEN: usize = 64;

/// A creation's token, checked, with the MAC of the request it came with.
#[derive(Clone)]
pub struct Once {
    operation: Operation,
    principal: String,
    token: String,
    request_mac: Vec<u8>,
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("operation", &self.operation.name())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Checks an `IdempotencyToken`: 1 to [`MAX_TOKEN_LEN`] printable ASCII characters
/// (space excluded).
///
/// # Errors
/// `InvalidParameter` otherwise.
pub fn check_token(token: &str) -> Result<(), KmsError> {
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !printable {
        return Err(KmsError::InvalidParameter(format!(
            "IdempotencyToken must be 1 to {MAX_TOKEN_LEN} printable ASCII characters."
        )));
    }
    Ok(())
}

impl KeyRegistry {
    /// The token of a creation request, `None` when `token` is empty. `request` is
    /// the request with its token field emptied; its encoding is MACed, then zeroized
    /// (it may hold a secret's value).
    ///
    /// # Errors
    /// `InvalidParameter` for a malformed token.
    pub fn once<R: OperationRequest>(
        &self,
        token: &str,
        request: &R,
    ) -> Result<Option<Once>, KmsError> {
        if token.is_empty() {
            return Ok(None);
        }
        let operation = R::OPERATION;
        check_token(token)?;
        let principal = self.access.principal_name().unwrap_or("").to_owned();
        let encoded = Zeroizing::new(request.encode_to_vec());
        let request_mac = self
            .request_mac
            .sign(operation.name(), &principal, &encoded);
        Ok(Some(Once {
            operation,
            principal,
            token: token.to_owned(),
            request_mac,
        }))
    }

    /// What the first call with `once`'s token made, while the token is live: `None`
    /// for a new token (or an expired one).
    ///
    /// # Errors
    /// `InvalidParameter` if the token came with other parameters; UNAVAILABLE or
    /// internal if the store fails.
    pub async fn replayed(&self, once: Option<&Once>) -> Result<Option<String>, KmsError> {
        let Some(once) = once else { return Ok(None) };
        let found = self
            .store
            .get_idempotency(once.operation.name(), &once.principal, &once.token)
            .await
            .map_err(store_error)?;
        let Some(found) = found.filter(|found| found.expires_at_ms > self.now_ms()) else {
            return Ok(None);
        };
        if found.request_mac != once.request_mac {
            return Err(KmsError::InvalidParameter(format!(
                "This IdempotencyToken was used for a {} request with other parameters; \
                 use a new token for a new request.",
                once.operation.name()
            )));
        }
        Ok(Some(found.outcome))
    }

    /// What a call that lost the race for its token answers: the winner's outcome.
    ///
    /// # Errors
    /// As [`Self::replayed`]; `Contended` (a retryable ABORTED) if the winner's record
    /// is already gone.
    pub async fn replayed_after_race(&self, once: Option<&Once>) -> Result<String, KmsError> {
        self.replayed(once).await?.ok_or_else(|| {
            KmsError::Contended(format!(
                "the IdempotencyToken {}",
                once.map_or("", |once| once.token.as_str())
            ))
        })
    }

    /// Stores `creation`, with `once`'s token naming `outcome` in the same transaction
    /// when there is a token. [`StoreError::TokenTaken`] if a racing call with the
    /// token committed first (see [`Self::replayed_after_race`]); otherwise the errors
    /// of the plain insert.
    pub(crate) async fn store_creation(
        &self,
        once: Option<&Once>,
        outcome: &str,
        creation: Creation,
    ) -> StoreResult<()> {
        let Some(once) = once else {
            return match creation {
                Creation::Key(key, initial) => self.store.insert_key(&key, &initial).await,
                Creation::Version(key, version) => self.store.add_version(&key, &version).await,
                Creation::Secret(secret) => self.store.insert_secret(&secret).await,
                Creation::ClientKey(key) => self.store.insert_client_key(&key).await,
            };
        };
        let now = self.now_ms();
        let window = u64::try_from(IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let record = IdempotencyRecord {
            operation: once.operation.name().to_owned(),
            principal: once.principal.clone(),
            token: once.token.clone(),
            request_mac: once.request_mac.clone(),
            outcome: outcome.to_owned(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(window),
        };
        self.store.create_once(&record, creation).await
    }

    /// Removes the token records whose window has ended; returns how many.
    ///
    /// # Errors
    /// UNAVAILABLE or internal if the store fails.
    pub async fn purge_idempotency(&self) -> Result<u64, KmsError> {
        self.store
            .purge_idempotency(self.now_ms())
            .await
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_short_printable_ascii() {
        for good in [
            "a",
            "0f8c2a1e-7d33-4b8e-9c55-2b5f9d6e1a00",
            &"x".repeat(64),
            "~!@#",
        ] {
            check_token(good).unwrap();
        }
        for bad in ["", &"x".repeat(65), "a b", "tab\t", "é", "nul\0"] {
            assert!(
                matches!(check_token(bad), Err(KmsError::InvalidParameter(_))),
                "{bad:?}"
            );
        }
    }
}
