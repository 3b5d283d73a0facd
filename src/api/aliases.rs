//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use kmsd_api::pb;

use super::{Call, page};
use crate::call::Caller;
use crate::error::KmsError;
use crate::keys::model::AliasInfo;
use crate::kms::Kms;

fn alias_to_pb(alias: AliasInfo) -> pb::Alias {
    pb::Alias {
        alias_name: alias.alias_name,
        key_id: alias.key_id,
        creation_date: alias.creation_date,
        update_date: alias.update_date,
    }
}

#[async_trait::async_trait]
impl Call for pb::CreateAliasRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<pb::CreateAliasResponse, KmsError> {
        caller.note.set_key_id(&self.key_id);
        let created = kms
            .keys(caller)
            .create_alias(&self.key_id, &self.alias_name)
            .await?;
        caller.note.set_key_id(&created.key_id);
        Ok(pb::CreateAliasResponse {
            alias: Some(alias_to_pb(created)),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::UpdateAliasRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<pb::UpdateAliasResponse, KmsError> {
        caller.note.set_key_id(&self.key_id);
        let updated = kms
            .keys(caller)
            .update_alias(&self.key_id, &self.alias_name)
            .await?;
        caller.note.set_key_id(&updated.key_id);
        Ok(pb::UpdateAliasResponse {
            alias: Some(alias_to_pb(updated)),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::DeleteAliasRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<pb::DeleteAliasResponse, KmsError> {
        caller.note.set_key_id(&self.alias_name);
        kms.keys(caller).delete_alias(&self.alias_name).await?;
        Ok(pb::DeleteAliasResponse {
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::ListAliasesRequest {
    /// All aliases, or one key's; only those the caller is granted.
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<pb::ListAliasesResponse, KmsError> {
        caller.note.set_key_id(&self.key_id);
        let request = page(self.page_size, self.page_token);
        let page = kms
            .keys(caller)
            .list_aliases(&self.key_id, &request)
            .await?;
        Ok(pb::ListAliasesResponse {
            aliases: page.items.into_iter().map(alias_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            request_id: caller.request_id.to_string(),
        })
    }
}
