//! Access: resolving a `KeyId` (key ID or alias) to a key, and the key-grant checks
//! every method that names a key goes through.
//!
//! A key grant must match the `KeyId` as sent, the resolved key ID, or an alias of the
//! key. A caller whose grants match none learns nothing: it gets
//! [`KmsError::PermissionDenied`] whether the key exists or not.

use crate::auth::Access;
use crate::error::KmsError;
use crate::store::{KeyRecord, KeyState};

use super::ids::KeyRef;
use super::registry::{KeyRegistry, store_error};

/// How many aliases of a key are read at a time when looking for a granted one.
const ALIAS_BATCH: usize = 256;

impl KeyRegistry {
    /// The key a `KeyId` parameter names (key ID or alias), in any state, if this
    /// registry's access allows it: a key grant must match `key_ref` as sent, the
    /// resolved key ID, or an alias of the key (so `alias/payments-*` grants the keys
    /// those aliases point at, however they are named in the call). A caller whose
    /// grants do not match what it sent learns nothing from the lookup: whether the key
    /// exists or not, it gets [`KmsError::PermissionDenied`].
    pub async fn resolve(&self, key_ref: &str) -> Result<KeyRecord, KmsError> {
        let found = self.resolve_unchecked(key_ref).await;
        self.authorize(key_ref, found).await
    }

    /// Applies this registry's access to the outcome of looking `key_ref` up (from
    /// the store or the cache alike): see [`Self::resolve`].
    async fn authorize(
        &self,
        key_ref: &str,
        found: Result<KeyRecord, KmsError>,
    ) -> Result<KeyRecord, KmsError> {
        let sent_allowed = self.access.allows_key(key_ref);
        let denied = || {
            tracing::info!(
                principal = self.access.principal_name().unwrap_or(""),
                "key not granted"
            );
            KmsError::PermissionDenied
        };
        match found {
            Ok(key) if sent_allowed || self.key_allowed(&key.key_id).await? => Ok(key),
            // Failures of the store are no answer about the key: passed on as they are.
            Err(err)
                if sent_allowed
                    || matches!(err, KmsError::Internal(_) | KmsError::StoreUnavailable(_)) =>
            {
                Err(err)
            }
            Ok(_) => Err(denied()),
            Err(_) => {
                // A key that does not exist costs what a key not granted costs: the
                // same lookup of its aliases (none), so the time tells nothing either.
                self.key_allowed(key_ref).await?;
                Err(denied())
            }
        }
    }

    /// Whether this registry's access grants the key `key_id`: by its ID or by one of
    /// its aliases. Costs one read of that key's aliases (the store indexes them by
    /// key), however many aliases other keys have.
    pub(super) async fn key_allowed(&self, key_id: &str) -> Result<bool, KmsError> {
        if self.access.allows_key(key_id) {
            return Ok(true);
        }
        if matches!(self.access, Access::Open) {
            return Ok(true);
        }
        let mut after: Option<String> = None;
        loop {
            let aliases = self
                .store
                .list_aliases(Some(key_id), after.as_deref(), ALIAS_BATCH)
                .await
                .map_err(store_error)?;
            if aliases
                .iter()
                .any(|a| self.access.allows_key(&a.alias_name))
            {
                return Ok(true);
            }
            match aliases.last() {
                Some(last) if aliases.len() == ALIAS_BATCH => after = Some(last.alias_name.clone()),
                _ => return Ok(false),
            }
        }
    }

    async fn resolve_unchecked(&self, key_ref: &str) -> Result<KeyRecord, KmsError> {
        let key_id = match KeyRef::parse(key_ref)? {
            KeyRef::Id(id) => id,
            KeyRef::Alias(name) => {
                self.store
                    .get_alias(&name)
                    .await
                    .map_err(store_error)?
                    .ok_or(KmsError::AliasNotFound(name))?
                    .key_id
            }
        };
        self.store
            .get_key(&key_id)
            .await
            .map_err(store_error)?
            .ok_or(KmsError::KeyNotFound(key_id))
    }

    /// [`Self::resolve`] through the key cache, for reads that change nothing (the data
    /// plane, DescribeKey): a change made through this registry shows at once, one
    /// made by another process sharing the store as soon as the store announces it, and
    /// within [`super::cache::KEY_TTL`] at worst.
    pub async fn resolve_cached(&self, key_ref: &str) -> Result<KeyRecord, KmsError> {
        // The cache is shared by every principal's view of the registry, so a cached
        // key passes the same access check as one read from the store.
        let found = match self.cache.key(key_ref) {
            Ok(key) => Ok(key),
            Err(generation) => {
                let found = self.resolve_unchecked(key_ref).await;
                if let Ok(key) = &found {
                    self.cache.fill_key(key_ref, key, generation);
                }
                found
            }
        };
        self.authorize(key_ref, found).await
    }

    /// The key a `KeyId` parameter names, if it may be used for crypto: Disabled and
    /// PendingDeletion keys refuse with `InvalidKeyState`.
    ///
    /// For the data plane: reads through the key cache, so a change made by another
    /// process sharing the store shows within [`super::cache::KEY_TTL`]; changes made
    /// through this registry show at once.
    pub async fn resolve_usable(&self, key_ref: &str) -> Result<KeyRecord, KmsError> {
        let key = self.resolve_cached(key_ref).await?;
        if key.state != KeyState::Enabled {
            return Err(KmsError::InvalidKeyState {
                key_id: key.key_id,
                state: key.state.as_str(),
            });
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::PageRequest;
    use crate::keys::testing::{Fixture, create, principal};

    /// A well-formed key ID that no store holds.
    const NO_SUCH_KEY: &str = "key-doesnotexist0000";

    /// A store with two keys, `granted` aliased `alias/x-one` and `other` aliased
    /// `alias/y-two`: (the fixture, the registry as a principal granted `alias/x-*`
    /// sees it, granted, other).
    async fn two_aliased_keys() -> (Fixture, KeyRegistry, String, String) {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let granted = create(registry).await;
        let other = create(registry).await;
        registry
            .create_alias(&granted, "alias/x-one")
            .await
            .unwrap();
        registry.create_alias(&other, "alias/y-two").await.unwrap();
        let scoped = registry.scoped(principal(&["alias/x-*"]));
        (fixture, scoped, granted, other)
    }

    /// Asserts `result` is `PermissionDenied`; `what` names the case.
    fn assert_denied<T: std::fmt::Debug>(result: Result<T, KmsError>, what: &str) {
        assert!(
            matches!(result, Err(KmsError::PermissionDenied)),
            "{what}: {result:?}"
        );
    }

    #[tokio::test]
    async fn an_alias_grant_reaches_its_key_however_it_is_named() {
        let (_fixture, scoped, granted, _) = two_aliased_keys().await;
        assert_eq!(scoped.resolve("alias/x-one").await.unwrap().key_id, granted);
        // By its ID, which no grant matches: granted through its alias.
        assert_eq!(scoped.resolve(&granted).await.unwrap().key_id, granted);
        // The data plane's path, twice: from the store, then from the cache.
        for _ in 0..2 {
            assert_eq!(
                scoped.resolve_usable(&granted).await.unwrap().key_id,
                granted
            );
        }
        // A granted name that does not exist says so.
        assert!(matches!(
            scoped.resolve("alias/x-missing").await,
            Err(KmsError::AliasNotFound(_))
        ));
    }

    #[tokio::test]
    async fn keys_not_granted_are_denied_whether_or_not_they_exist() {
        let (fixture, scoped, _, other) = two_aliased_keys().await;
        for key_ref in [
            other.as_str(),
            "alias/y-two",
            NO_SUCH_KEY,
            "alias/y-missing",
        ] {
            assert_denied(scoped.resolve(key_ref).await, key_ref);
            for _ in 0..2 {
                assert_denied(scoped.resolve_usable(key_ref).await, key_ref);
            }
            assert_denied(scoped.describe_key(key_ref).await, key_ref);
        }
        // Without access control, the same lookups find the key or say it is missing.
        assert_eq!(
            fixture.registry.resolve(&other).await.unwrap().key_id,
            other
        );
        assert!(matches!(
            fixture.registry.resolve(NO_SUCH_KEY).await,
            Err(KmsError::KeyNotFound(_))
        ));
    }

    #[tokio::test]
    async fn listings_show_only_granted_keys_and_aliases() {
        let (fixture, scoped, granted, _) = two_aliased_keys().await;
        let page = PageRequest::default();
        assert_eq!(scoped.list_keys(&page).await.unwrap().items, [granted]);
        let aliases = scoped.list_aliases("", &page).await.unwrap().items;
        let names: Vec<&str> = aliases.iter().map(|a| a.alias_name.as_str()).collect();
        assert_eq!(names, ["alias/x-one"]);
        assert_eq!(
            fixture.registry.list_keys(&page).await.unwrap().items.len(),
            2
        );
    }

    /// Walks a list page by page with `list`; returns the pages and their tokens.
    async fn walk<T, F, Fut>(list: F) -> (Vec<Vec<T>>, Vec<String>)
    where
        F: Fn(PageRequest) -> Fut,
        Fut: std::future::Future<Output = Result<crate::keys::model::Page<T>, KmsError>>,
    {
        let (mut pages, mut tokens) = (Vec::new(), Vec::new());
        let mut token = String::new();
        loop {
            let page = list(PageRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap();
            pages.push(page.items);
            match page.next_page_token {
                Some(next) => {
                    tokens.push(next.clone());
                    token = next;
                }
                None => return (pages, tokens),
            }
            assert!(pages.len() < 100, "the walk does not end");
        }
    }

    #[tokio::test]
    async fn pages_hold_visible_items_only_and_tokens_name_nothing() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let mut hidden = Vec::new();
        let mut granted = Vec::new();
        // Hidden keys before, between and after the granted ones, in ID order.
        for i in 0..9 {
            let key = create(registry).await;
            if i % 4 == 1 {
                registry
                    .create_alias(&key, &format!("alias/narrow-{i}"))
                    .await
                    .unwrap();
                granted.push(key);
            } else {
                registry
                    .create_alias(&key, &format!("alias/wide-{i}"))
                    .await
                    .unwrap();
                hidden.push(key);
            }
        }
        granted.sort();
        let scoped = registry.scoped(principal(&["alias/narrow-*"]));

        let (pages, tokens) = walk(|page| {
            let scoped = scoped.clone();
            async move { scoped.list_keys(&page).await }
        })
        .await;
        // One key per page, no empty page, no token after the last granted key.
        assert!(pages.iter().all(|page| page.len() == 1), "{pages:?}");
        assert_eq!(pages.concat(), granted);
        assert_eq!(tokens.len(), granted.len() - 1);
        let (alias_pages, alias_tokens) = walk(|page| {
            let scoped = scoped.clone();
            async move { scoped.list_aliases("", &page).await }
        })
        .await;
        let names: Vec<String> = alias_pages
            .concat()
            .into_iter()
            .map(|a| a.alias_name)
            .collect();
        assert_eq!(names, ["alias/narrow-1", "alias/narrow-5"]);
        assert_eq!(alias_tokens.len(), 1);
        for token in tokens.iter().chain(&alias_tokens) {
            for key in hidden.iter().chain(&granted) {
                assert!(!token.contains(key.as_str()), "{token} names {key}");
            }
            assert!(!token.contains("alias"), "{token}");
            assert!(!token.contains("key-"), "{token}");
        }
        // Another caller's token, or one of the other list, does not open.
        let open_tokens = walk(|page| async move { registry.list_keys(&page).await })
            .await
            .1;
        assert_eq!(open_tokens.len(), 8);
        for (token, list) in [(&open_tokens[0], "keys"), (&alias_tokens[0], "keys")] {
            let page = PageRequest {
                page_size: 1,
                page_token: token.clone(),
            };
            assert!(
                matches!(
                    scoped.list_keys(&page).await,
                    Err(KmsError::InvalidParameter(_))
                ),
                "{list}"
            );
        }
    }

    #[tokio::test]
    async fn a_grant_follows_its_alias_and_covers_alias_names() {
        let (fixture, scoped, granted, other) = two_aliased_keys().await;
        assert_eq!(
            scoped.resolve_usable(&granted).await.unwrap().key_id,
            granted
        );
        // An alias the principal may not name cannot be made, even for its key.
        assert_denied(
            scoped.create_alias(&granted, "alias/y-new").await,
            "alias/y-new",
        );
        // Re-pointed by an operator, the alias takes the grant to the other key.
        fixture
            .registry
            .update_alias(&other, "alias/x-one")
            .await
            .unwrap();
        assert_eq!(scoped.resolve(&other).await.unwrap().key_id, other);
        assert_denied(scoped.resolve_usable(&granted).await, &granted);
    }
}
