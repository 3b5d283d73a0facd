//! Client keys: the credentials of the official SDKs' HTTPS protocol.
//!
//! A client key is an RSA key pair whose private half goes to the caller once, in a
//! PKCS#12 under their password ([`crate::crypto::client_key`]); kmsd keeps the public
//! half, the principal the key acts as, and its validity ([`ClientKeyRecord`]). The
//! HTTPS gateway looks a key up by the request's `x-kms-acccesskeyid` with
//! [`KeyRegistry::valid_client_key`] and verifies the request's signature with it.
//!
//! Client key IDs are `KAAP.` and a UUID, the form the SDKs' client key files carry.

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::idempotency::Once;
use super::model::{Page, PageFiller, PageRequest};
use super::registry::{KeyRegistry, store_error};
use crate::auth::{Access, AuthPolicy};
use crate::clock::to_unix_millis;
use crate::crypto::client_key::{self, CLIENT_KEY_SPEC};
use crate::error::KmsError;
use crate::keypool::KeyPairPool;
use crate::store::{ClientKeyRecord, Creation, MintedUnder, StoreError};

/// The prefix of every client key ID.
pub const CLIENT_KEY_ID_PREFIX: &str = "KAAP.";

/// How long a client key is valid when the caller gives no `NotAfter`: one year.
pub const DEFAULT_CLIENT_KEY_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest principal name (the auth file's names are far shorter).
pub const MAX_PRINCIPAL_LEN: usize = 128;

/// The shortest PKCS#12 password accepted: the file leaves kmsd, and anyone who copies
/// it can guess passwords offline (at [`client_key::PKCS12_ITERATIONS`] derivations
/// each).
pub const MIN_PASSWORD_LEN: usize = 12;

/// The longest PKCS#12 password accepted.
pub const MAX_PASSWORD_LEN: usize = 256;

/// Parameters of CreateClientKey.
pub struct CreateClientKeyParams<'a> {
    /// The principal the key acts as.
    pub principal: &'a str,
    /// The PKCS#12 password; never stored.
    pub password: &'a str,
    /// Valid from; `None` for now.
    pub not_before: Option<SystemTime>,
    /// Valid until; `None` for [`DEFAULT_CLIENT_KEY_VALIDITY`] (at most `max_validity`)
    /// after `not_before`.
    pub not_after: Option<SystemTime>,
    /// The longest validity accepted (`--client-key-max-validity-days`).
    pub max_validity: Duration,
}

/// A new client key: its record and the caller's PKCS#12 (zeroized on drop).
pub struct CreatedClientKey {
    /// What kmsd keeps.
    pub record: ClientKeyRecord,
    /// The private key and its certificate under the caller's password.
    pub pkcs12: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for CreatedClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedClientKey")
            .field("record", &self.record)
            .field("pkcs12", &"[REDACTED]")
            .finish()
    }
}

/// Why a request's client key is refused. The gateway answers each the same way
/// (the caller learns only that its credentials do not verify); the log tells them
/// apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKeyRefusal {
    /// No client key has this ID.
    Unknown,
    /// The key's `NotBefore` is still ahead.
    NotYetValid,
    /// The key's `NotAfter` has passed.
    Expired,
}

impl ClientKeyRefusal {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown client key",
            Self::NotYetValid => "client key not yet valid",
            Self::Expired => "client key expired",
        }
    }
}

/// Whether a client key minted by `minted_by` under `minted_under` may act under the
/// server's access `policy`: one minted without access control (or before kmsd
/// recorded how) only once the operator re-admitted it (`kmsd readmit-client-key`);
/// one minted under a policy only while its minter is still a principal of it (a
/// principal removed from the auth file takes the keys it minted with it).
///
/// # Errors
///
/// Why not, for the log.
pub fn admitted_under(
    policy: &AuthPolicy,
    minted_by: &str,
    minted_under: MintedUnder,
) -> Result<(), &'static str> {
    match minted_under {
        MintedUnder::Readmitted => Ok(()),
        MintedUnder::Open => Err(
            "client key minted without access control: refused under a policy until \
             re-admitted (kmsd readmit-client-key)",
        ),
        MintedUnder::Unknown => Err(
            "client key minted before kmsd recorded how: refused under a policy until \
             re-admitted (kmsd readmit-client-key)",
        ),
        MintedUnder::Policy if policy.principals().iter().any(|p| p.name() == minted_by) => Ok(()),
        MintedUnder::Policy => Err("the principal that minted the client key is no longer listed"),
    }
}

impl KeyRegistry {
    /// Whether this registry's caller may see and manage the client keys of
    /// `principal`: without access control anyone; under it, a principal its own, and
    /// an unrestricted principal (every operation on every key) all.
    fn manages_client_keys_of(&self, principal: &str) -> bool {
        match &self.access {
            Access::Open => true,
            Access::Principal(me) => me.name() == principal || me.is_unrestricted(),
        }
    }

    /// Creates a client key for `params.principal`: an RSA-2048 pair from `pool` (made
    /// on its worker threads), packed as PKCS#12 under `params.password` on the
    /// blocking pool. Only the public key is stored, with who minted it and under
    /// which access control ([`MintedUnder`]: the gateway refuses a key minted without
    /// access control once the server has a policy).
    ///
    /// # Errors
    ///
    /// `MissingParameter` without a principal or password; `InvalidParameter` for
    /// over-long ones, a password shorter than [`MIN_PASSWORD_LEN`], a `NotAfter` not
    /// after `NotBefore` or more than `max_validity` after it or after now; `Forbidden.NoPermission`
    /// when a caller under access control asks for a key of another principal without
    /// being unrestricted itself (a client key acts as its principal, so minting one
    /// for someone else would borrow their grants); `InternalFailure` if the key
    /// cannot be made or stored.
    ///
    /// With an idempotency token, the client key and the token's record are stored
    /// together, and a token seen before is refused with `ClientKeyIssued`, naming the
    /// client key it made: the private key went out once and is not kept.
    pub async fn create_client_key(
        &self,
        pool: &KeyPairPool,
        params: CreateClientKeyParams<'_>,
        once: Option<&Once>,
    ) -> Result<CreatedClientKey, KmsError> {
        if let Some(client_key_id) = self.replayed(once).await? {
            return Err(KmsError::ClientKeyIssued(client_key_id));
        }
        if params.principal.is_empty() {
            return Err(KmsError::MissingParameter("Principal"));
        }
        if params.principal.len() > MAX_PRINCIPAL_LEN {
            return Err(KmsError::InvalidParameter(format!(
                "Principal must be at most {MAX_PRINCIPAL_LEN} bytes."
            )));
        }
        if params.password.is_empty() {
            return Err(KmsError::MissingParameter("Password"));
        }
        if !self.manages_client_keys_of(params.principal) {
            return Err(KmsError::PermissionDenied);
        }
        if params.password.chars().count() < MIN_PASSWORD_LEN {
            return Err(KmsError::InvalidParameter(format!(
                "Password must be at least {MIN_PASSWORD_LEN} characters."
            )));
        }
        if params.password.len() > MAX_PASSWORD_LEN {
            return Err(KmsError::InvalidParameter(format!(
                "Password must be at most {MAX_PASSWORD_LEN} bytes."
            )));
        }
        let now = self.clock.now();
        let not_before = params.not_before.unwrap_or(now);
        let not_after = params
            .not_after
            .unwrap_or(not_before + DEFAULT_CLIENT_KEY_VALIDITY.min(params.max_validity));
        if not_after <= not_before {
            return Err(KmsError::InvalidParameter(
                "NotAfter must be later than NotBefore.".into(),
            ));
        }
        // Measured from NotBefore, and from now: a key minted today for a later start
        // still ends within the maximum of today.
        let too_long = |from: SystemTime| {
            not_after
                .duration_since(from)
                .is_ok_and(|validity| validity > params.max_validity)
        };
        if too_long(not_before) || too_long(now) {
            return Err(KmsError::InvalidParameter(format!(
                "A client key may be valid for at most {} days from now and from NotBefore.",
                params.max_validity.as_secs() / (24 * 3600)
            )));
        }
        let (minted_by, minted_under) = match &self.access {
            Access::Open => (String::new(), MintedUnder::Open),
            Access::Principal(me) => (me.name().to_owned(), MintedUnder::Policy),
        };
        let client_key_id = format!("{CLIENT_KEY_ID_PREFIX}{}", uuid::Uuid::new_v4());
        let pair = pool
            .take(CLIENT_KEY_SPEC)
            .await
            .map_err(KmsError::internal)?;
        let password = Zeroizing::new(params.password.to_owned());
        let id = client_key_id.clone();
        let issued = crate::crypto::cpu::run(move || client_key::issue(&pair, &id, &password))
            .await
            .map_err(KmsError::internal)?
            .map_err(KmsError::internal)?;
        let record = ClientKeyRecord {
            client_key_id,
            principal: params.principal.to_owned(),
            public_key_der: issued.public_key_pkcs1_der.clone(),
            not_before_ms: to_unix_millis(not_before),
            not_after_ms: to_unix_millis(not_after),
            created_at_ms: to_unix_millis(now),
            minted_by,
            minted_under,
            mac: Vec::new(),
        };
        let record = self.record_mac.signed(record);
        let creation = Creation::ClientKey(record.clone());
        match self
            .store_creation(once, &record.client_key_id, creation)
            .await
        {
            Ok(()) => {}
            Err(StoreError::TokenTaken) => {
                let first = self.replayed_after_race(once).await?;
                return Err(KmsError::ClientKeyIssued(first));
            }
            Err(err) => return Err(store_error(err)),
        }
        Ok(CreatedClientKey {
            record,
            pkcs12: issued.pkcs12,
        })
    }

    /// A page of client keys, by ID: those the caller may manage (see
    /// [`Self::create_client_key`]).
    ///
    /// # Errors
    ///
    /// `InvalidParameter` for a bad page size or a token this caller did not get from
    /// this list.
    pub async fn list_client_keys(
        &self,
        page: &PageRequest,
    ) -> Result<Page<ClientKeyRecord>, KmsError> {
        let size = page.size()?;
        let scope = self.token_scope("ListClientKeys", "");
        let start = self.open_token(&scope, &page.page_token)?;
        let mut filler = PageFiller::new(size, start);
        let mut cursor = filler.position().map(str::to_owned);
        while !filler.done() {
            let batch = filler.next_batch();
            if batch == 0 {
                break;
            }
            let keys = self
                .store
                .list_client_keys(cursor.as_deref(), batch)
                .await
                .map_err(store_error)?;
            let exhausted = keys.len() < batch;
            for key in keys {
                let id = key.client_key_id.clone();
                let visible = self.manages_client_keys_of(&key.principal);
                filler.offer(&id, visible.then_some(key));
                cursor = Some(id);
                if filler.done() {
                    break;
                }
            }
            if exhausted {
                break;
            }
        }
        filler.finish(|position| self.seal_token(&scope, position))
    }

    /// Deletes a client key: requests signed with it are refused from now on.
    ///
    /// # Errors
    ///
    /// `MissingParameter` without an ID, `Forbidden.KeyNotFound` if there is no such
    /// client key or it is one the caller may not manage.
    pub async fn delete_client_key(&self, client_key_id: &str) -> Result<(), KmsError> {
        if client_key_id.is_empty() {
            return Err(KmsError::MissingParameter("ClientKeyId"));
        }
        let record = self
            .store
            .get_client_key(client_key_id)
            .await
            .map_err(store_error)?;
        if !record.is_some_and(|r| self.manages_client_keys_of(&r.principal)) {
            return Err(KmsError::KeyNotFound(client_key_id.to_owned()));
        }
        // Forgotten before and after: no lookup in between can bring it back.
        self.cache.forget_client_key(client_key_id);
        let deleted = self.store.delete_client_key(client_key_id).await;
        self.cache.forget_client_key(client_key_id);
        match deleted {
            Ok(true) => Ok(()),
            Ok(false) | Err(StoreError::NotFound) => {
                Err(KmsError::KeyNotFound(client_key_id.to_owned()))
            }
            Err(err) => Err(store_error(err)),
        }
    }

    /// The client key `client_key_id` if it exists and is valid now.
    ///
    /// # Errors
    ///
    /// `Ok(Err(refusal))` says why the key is refused; `Err` is a store failure.
    pub async fn valid_client_key(
        &self,
        client_key_id: &str,
    ) -> Result<Result<ClientKeyRecord, ClientKeyRefusal>, KmsError> {
        // Cached for a short while (keys::cache: CLIENT_KEY_TTL); dates checked below.
        let record = match self.cache.client_key(client_key_id) {
            Ok(record) => record,
            Err(generation) => {
                let Some(record) = self
                    .store
                    .get_client_key(client_key_id)
                    .await
                    .map_err(store_error)?
                else {
                    return Ok(Err(ClientKeyRefusal::Unknown));
                };
                self.cache.fill_client_key(&record, generation);
                record
            }
        };
        if !self.record_mac.verifies(&record) {
            // Written or changed by someone who does not hold the root key (or before
            // kmsd signed rows: `kmsd readmit-client-key` signs it).
            tracing::warn!(
                client_key_id,
                "a client-key row whose MAC does not verify: refused (forged, altered, or \
                 written before kmsd signed rows; re-admit it with kmsd readmit-client-key)"
            );
            return Ok(Err(ClientKeyRefusal::Unknown));
        }
        let now = self.now_ms();
        if now < record.not_before_ms {
            return Ok(Err(ClientKeyRefusal::NotYetValid));
        }
        if now > record.not_after_ms {
            return Ok(Err(ClientKeyRefusal::Expired));
        }
        Ok(Ok(record))
    }

    /// Re-admits client key `client_key_id` (offline, `kmsd readmit-client-key`): marks
    /// it [`MintedUnder::Readmitted`] and signs it under this registry's root key. Returns
    /// the record as it was.
    ///
    /// # Errors
    ///
    /// `Forbidden.KeyNotFound` if there is no such client key; a store failure.
    pub async fn readmit_client_key(
        &self,
        client_key_id: &str,
    ) -> Result<ClientKeyRecord, KmsError> {
        let missing = || KmsError::KeyNotFound(client_key_id.to_owned());
        let record = self
            .store
            .get_client_key(client_key_id)
            .await
            .map_err(store_error)?
            .ok_or_else(missing)?;
        let readmitted = self.record_mac.signed(ClientKeyRecord {
            minted_under: MintedUnder::Readmitted,
            ..record.clone()
        });
        if !self
            .store
            .replace_client_key(&readmitted)
            .await
            .map_err(store_error)?
        {
            return Err(missing());
        }
        Ok(record)
    }

    /// The registry's current time (the gateway's `date` check reads the same clock).
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypool::PoolConfig;
    use crate::keys::testing::Fixture;

    fn params<'a>(principal: &'a str, password: &'a str) -> CreateClientKeyParams<'a> {
        CreateClientKeyParams {
            principal,
            password,
            not_before: None,
            not_after: None,
            max_validity: DEFAULT_CLIENT_KEY_VALIDITY,
        }
    }

    #[tokio::test]
    async fn a_password_shorter_than_the_minimum_is_refused() {
        let fixture = Fixture::new().await;
        let pool = KeyPairPool::start(PoolConfig::uniform(0));
        let short = "x".repeat(MIN_PASSWORD_LEN - 1);
        let err = fixture
            .registry
            .create_client_key(&pool, params("app", &short), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, KmsError::InvalidParameter(m) if m.contains("at least 12")),
            "{err:?}"
        );
        let long_enough = "x".repeat(MIN_PASSWORD_LEN);
        fixture
            .registry
            .create_client_key(&pool, params("app", &long_enough), None)
            .await
            .unwrap();
        pool.shutdown();
    }

    #[tokio::test]
    async fn a_key_records_its_minting_and_may_not_outlive_the_maximum() {
        let fixture = Fixture::new().await;
        let pool = KeyPairPool::start(PoolConfig::uniform(0));
        let password = "long-enough-password";
        let open = fixture
            .registry
            .create_client_key(&pool, params("app", password), None)
            .await
            .unwrap();
        assert_eq!(open.record.minted_under, MintedUnder::Open);
        assert_eq!(open.record.minted_by, "");
        let admin = crate::keys::testing::principal(&["*"]);
        let minted = fixture
            .registry
            .scoped(admin)
            .create_client_key(&pool, params("tester", password), None)
            .await
            .unwrap();
        assert_eq!(minted.record.minted_under, MintedUnder::Policy);
        assert_eq!(minted.record.minted_by, "tester");
        assert_eq!(
            minted.record.not_after_ms - minted.record.not_before_ms,
            DEFAULT_CLIENT_KEY_VALIDITY.as_millis() as u64
        );

        let now = fixture.registry.now();
        let day = Duration::from_secs(24 * 3600);
        for (not_before, not_after) in [
            (None, now + 366 * day),
            (Some(now - 10 * day), now + 360 * day),
            (Some(now + 100 * day), now + 400 * day),
        ] {
            let err = fixture
                .registry
                .create_client_key(
                    &pool,
                    CreateClientKeyParams {
                        not_before,
                        not_after: Some(not_after),
                        ..params("app", password)
                    },
                    None,
                )
                .await
                .unwrap_err();
            assert!(
                matches!(&err, KmsError::InvalidParameter(m) if m.contains("365 days")),
                "{err:?}"
            );
        }
        let shorter = fixture
            .registry
            .create_client_key(
                &pool,
                CreateClientKeyParams {
                    max_validity: 30 * day,
                    ..params("app", password)
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            shorter.record.not_after_ms - shorter.record.not_before_ms,
            (30 * day).as_millis() as u64
        );
        pool.shutdown();
    }

    /// The gateway looks a client key up on every call, before it knows the caller:
    /// served from memory for a while, forgotten at once when this process deletes it.
    #[tokio::test]
    async fn client_key_lookups_are_cached_and_forgotten_on_delete() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let now_ms = registry.now_ms();
        let record = crate::store::ClientKeyRecord {
            client_key_id: "KAAP.00000000-0000-4000-8000-000000000001".into(),
            principal: "payments".into(),
            public_key_der: vec![1, 2, 3],
            not_before_ms: now_ms - 1000,
            not_after_ms: now_ms + 3_600_000,
            created_at_ms: now_ms - 1000,
            minted_by: String::new(),
            minted_under: crate::store::MintedUnder::Open,
            mac: Vec::new(),
        };
        let record = registry.record_mac.signed(record);
        registry.store.insert_client_key(&record).await.unwrap();
        let id = record.client_key_id.as_str();
        assert!(registry.valid_client_key(id).await.unwrap().is_ok());
        // Gone from the store behind the registry's back: still served, from memory.
        assert!(registry.store.delete_client_key(id).await.unwrap());
        let cached = registry.valid_client_key(id).await.unwrap();
        assert_eq!(cached.unwrap().principal, "payments");
        // Validity is checked on every use, cached or not.
        fixture.clock.advance(std::time::Duration::from_secs(7200));
        assert!(registry.valid_client_key(id).await.unwrap().is_err());

        // Deleted through this registry: refused by the very next lookup.
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        registry.store.insert_client_key(&record).await.unwrap();
        assert!(registry.valid_client_key(id).await.unwrap().is_ok());
        registry.delete_client_key(id).await.unwrap();
        assert!(registry.valid_client_key(id).await.unwrap().is_err());
    }
}
