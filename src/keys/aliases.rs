//! Aliases: names (`alias/...`) that point at keys. Creating, re-pointing and
//! deleting one needs a key grant on the alias name as well as on its key.

use crate::error::KmsError;
use crate::store::{AliasRecord, KeyRecord, StoreError};

use super::ids;
use super::model::{AliasInfo, Page, PageFiller, PageRequest};
use super::registry::{KeyRegistry, store_error};

impl KeyRegistry {
    /// Creates an alias for the key `key_ref` names.
    pub async fn create_alias(
        &self,
        key_ref: &str,
        alias_name: &str,
    ) -> Result<AliasInfo, KmsError> {
        let key = self.alias_target(alias_name, key_ref).await?;
        let now = self.now_ms();
        let alias = AliasRecord {
            alias_name: alias_name.to_owned(),
            key_id: key.key_id,
            created_at_ms: now,
            updated_at_ms: now,
        };
        match self.store.insert_alias(&alias).await {
            Ok(()) => {
                self.cache.clear_keys();
                Ok(AliasInfo::from(&alias))
            }
            Err(StoreError::AlreadyExists) => Err(KmsError::AliasExists(alias.alias_name)),
            Err(StoreError::NotFound) => Err(KmsError::KeyNotFound(alias.key_id)),
            Err(err) => Err(store_error(err)),
        }
    }

    /// Points an existing alias at the key `key_ref` names.
    pub async fn update_alias(
        &self,
        key_ref: &str,
        alias_name: &str,
    ) -> Result<AliasInfo, KmsError> {
        let key = self.alias_target(alias_name, key_ref).await?;
        let existing = self
            .store
            .get_alias(alias_name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| KmsError::AliasNotFound(alias_name.to_owned()))?;
        let alias = AliasRecord {
            key_id: key.key_id,
            updated_at_ms: self.now_ms(),
            ..existing
        };
        match self.store.update_alias(&alias).await {
            Ok(()) => {
                self.cache.clear_keys();
                Ok(AliasInfo::from(&alias))
            }
            Err(StoreError::NotFound) => match self.store.get_alias(alias_name).await {
                Ok(None) => Err(KmsError::AliasNotFound(alias.alias_name)),
                _ => Err(KmsError::KeyNotFound(alias.key_id)),
            },
            Err(err) => Err(store_error(err)),
        }
    }

    /// Checks the alias name and the caller's grant on it, then resolves `key_ref`,
    /// the key the alias is to point at.
    async fn alias_target(&self, alias_name: &str, key_ref: &str) -> Result<KeyRecord, KmsError> {
        ids::validate_alias_name(alias_name)?;
        self.access.check_key(alias_name)?;
        self.resolve(key_ref).await
    }

    /// Deletes an alias; the key is untouched.
    pub async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        ids::validate_alias_name(alias_name)?;
        self.access.check_key(alias_name)?;
        if self
            .store
            .delete_alias(alias_name)
            .await
            .map_err(store_error)?
        {
            self.cache.clear_keys();
            Ok(())
        } else {
            Err(KmsError::AliasNotFound(alias_name.to_owned()))
        }
    }

    /// One page of the aliases this caller may see (a grant matches the alias or its
    /// key), ordered by name, optionally only those of one key. Pages fill and tokens
    /// are sealed as in [`Self::list_keys`].
    pub async fn list_aliases(
        &self,
        key_ref: &str,
        page: &PageRequest,
    ) -> Result<Page<AliasInfo>, KmsError> {
        let size = page.size()?;
        let key_id = if key_ref.is_empty() {
            None
        } else {
            Some(self.resolve(key_ref).await?.key_id)
        };
        let scope = self.token_scope("ListAliases", key_id.as_deref().unwrap_or(""));
        let mut filler = PageFiller::new(size, self.open_token(&scope, &page.page_token)?);
        let key_id = key_id.as_deref();
        filler
            .fill(
                |after, limit| async move {
                    self.store
                        .list_aliases(key_id, after.as_deref(), limit)
                        .await
                        .map_err(store_error)
                },
                |alias| async move {
                    let visible = self
                        .access
                        .allows_resolved_key(&alias.alias_name, &alias.key_id);
                    let item = visible.then(|| AliasInfo::from(&alias));
                    Ok((alias.alias_name, item))
                },
            )
            .await?;
        filler.finish(|position| self.seal_token(&scope, position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{Fixture, create};

    const NO_SUCH_KEY: &str = "key-doesnotexist0000";

    fn names(page: &Page<AliasInfo>) -> Vec<&str> {
        page.items.iter().map(|a| a.alias_name.as_str()).collect()
    }

    #[tokio::test]
    async fn creating_an_alias_needs_a_valid_free_name_and_a_key() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        let alias = registry.create_alias(&key, "alias/a").await.unwrap();
        assert_eq!(
            (alias.alias_name.as_str(), alias.key_id.as_str()),
            ("alias/a", key.as_str())
        );
        assert_eq!(registry.resolve("alias/a").await.unwrap().key_id, key);
        assert!(matches!(
            registry.create_alias(&key, "alias/a").await,
            Err(KmsError::AliasExists(name)) if name == "alias/a"
        ));
        assert!(matches!(
            registry.create_alias(NO_SUCH_KEY, "alias/b").await,
            Err(KmsError::KeyNotFound(_))
        ));
        assert!(matches!(
            registry.create_alias(&key, "a").await,
            Err(KmsError::InvalidParameter(_))
        ));
        assert!(matches!(
            registry.create_alias(&key, "").await,
            Err(KmsError::MissingParameter("AliasName"))
        ));
        assert_eq!(registry.counts().await.unwrap().aliases, 1);
    }

    #[tokio::test]
    async fn updating_an_alias_re_points_an_existing_one_only() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let first = create(registry).await;
        let second = create(registry).await;
        registry.create_alias(&first, "alias/a").await.unwrap();
        assert!(matches!(
            registry.update_alias(&second, "alias/missing").await,
            Err(KmsError::AliasNotFound(_))
        ));
        assert!(matches!(
            registry.update_alias(NO_SUCH_KEY, "alias/a").await,
            Err(KmsError::KeyNotFound(_))
        ));
        assert_eq!(registry.resolve("alias/a").await.unwrap().key_id, first);
        fixture.clock.advance(std::time::Duration::from_secs(60));
        let moved = registry.update_alias(&second, "alias/a").await.unwrap();
        assert_eq!(moved.key_id, second);
        assert_ne!(moved.update_date, moved.creation_date);
        assert_eq!(registry.resolve("alias/a").await.unwrap().key_id, second);
        // The data plane sees the move at once.
        assert_eq!(
            registry.resolve_usable("alias/a").await.unwrap().key_id,
            second
        );
    }

    #[tokio::test]
    async fn deleting_an_alias_leaves_its_key() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let key = create(registry).await;
        registry.create_alias(&key, "alias/a").await.unwrap();
        assert_eq!(
            registry.resolve_usable("alias/a").await.unwrap().key_id,
            key
        );
        registry.delete_alias("alias/a").await.unwrap();
        assert!(matches!(
            registry.delete_alias("alias/a").await,
            Err(KmsError::AliasNotFound(_))
        ));
        assert!(matches!(
            registry.resolve_usable("alias/a").await,
            Err(KmsError::AliasNotFound(_))
        ));
        assert_eq!(registry.resolve(&key).await.unwrap().key_id, key);
    }

    #[tokio::test]
    async fn alias_lists_page_by_name_and_filter_by_key() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let first = create(registry).await;
        let second = create(registry).await;
        for name in ["alias/a3", "alias/a1", "alias/a2"] {
            registry.create_alias(&first, name).await.unwrap();
        }
        registry.create_alias(&second, "alias/b1").await.unwrap();
        let page = |page_size, page_token: &str| PageRequest {
            page_size,
            page_token: page_token.to_owned(),
        };
        let one = registry.list_aliases("", &page(2, "")).await.unwrap();
        assert_eq!(names(&one), ["alias/a1", "alias/a2"]);
        let token = one.next_page_token.expect("a second page");
        assert!(!token.contains("alias"), "{token}");
        let two = registry.list_aliases("", &page(2, &token)).await.unwrap();
        assert_eq!(names(&two), ["alias/a3", "alias/b1"]);
        assert_eq!(two.next_page_token, None);
        let of_first = registry.list_aliases(&first, &page(0, "")).await.unwrap();
        assert_eq!(names(&of_first), ["alias/a1", "alias/a2", "alias/a3"]);
        // The key may be named by an alias too.
        let of_second = registry
            .list_aliases("alias/b1", &page(0, ""))
            .await
            .unwrap();
        assert_eq!(names(&of_second), ["alias/b1"]);
        for bad in ["not-an-alias", "alias/a2"] {
            assert!(matches!(
                registry.list_aliases("", &page(2, bad)).await,
                Err(KmsError::InvalidParameter(_))
            ));
        }
        // A token of the list of all aliases does not page one key's aliases.
        assert!(matches!(
            registry.list_aliases(&first, &page(2, &token)).await,
            Err(KmsError::InvalidParameter(_))
        ));
        assert!(matches!(
            registry.list_aliases(NO_SUCH_KEY, &page(0, "")).await,
            Err(KmsError::KeyNotFound(_))
        ));
    }
}
