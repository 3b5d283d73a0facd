//! Aliases: names (`alias/...`) that point at keys. Creating, re-pointing and
//! deleting one needs a key grant on the alias name as well as on its key.

use crate::error::KmsError;
use crate::store::{AliasRecord, StoreError};

use super::ids;
use super::model::{AliasInfo, Page, PageRequest, page_token, paginate};
use super::registry::{KeyRegistry, store_error};

impl KeyRegistry {
    /// Creates an alias for the key `key_ref` names.
    pub async fn create_alias(
        &self,
        key_ref: &str,
        alias_name: &str,
    ) -> Result<AliasInfo, KmsError> {
        ids::validate_alias_name(alias_name)?;
        self.access.check_key(alias_name)?;
        let key = self.resolve(key_ref).await?;
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
        ids::validate_alias_name(alias_name)?;
        self.access.check_key(alias_name)?;
        let key = self.resolve(key_ref).await?;
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

    /// One page of aliases ordered by name, optionally only those of one key.
    pub async fn list_aliases(
        &self,
        key_ref: &str,
        page: &PageRequest,
    ) -> Result<Page<AliasInfo>, KmsError> {
        let size = page.size()?;
        let after = page_token(&page.page_token, |t| ids::validate_alias_name(t).is_ok())?;
        let key_id = if key_ref.is_empty() {
            None
        } else {
            Some(self.resolve(key_ref).await?.key_id)
        };
        let aliases = self
            .store
            .list_aliases(key_id.as_deref(), after, size + 1)
            .await
            .map_err(store_error)?;
        let infos = aliases.iter().map(AliasInfo::from).collect();
        let mut page = paginate(infos, size, |a: &AliasInfo| a.alias_name.clone());
        // As in list_keys: filtered after paging.
        page.items.retain(|alias| {
            self.access
                .allows_resolved_key(&alias.alias_name, &alias.key_id)
        });
        Ok(page)
    }
}
