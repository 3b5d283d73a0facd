//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use kmsd_api::pb;

use super::{Call, Reply};
use crate::call::Caller;
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

/// CreateAlias and UpdateAlias: `Request => Response, registry method;`, both naming
/// a key and an alias, both answering the alias.
macro_rules! alias_calls {
    ($( $request:ident => $response:ident, $method:ident; )*) => {$(
        #[async_trait::async_trait]
        impl Call for pb::$request {
            async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
                caller.note.set_key_id(&self.key_id);
                let alias = kms.keys(caller).$method(&self.key_id, &self.alias_name).await?;
                caller.note.set_key_id(&alias.key_id);
                Ok(pb::$response {
                    alias: Some(alias_to_pb(alias)),
                    request_id: caller.request_id.to_string(),
                })
            }
        }
    )*};
}

alias_calls! {
    CreateAliasRequest => CreateAliasResponse, create_alias;
    UpdateAliasRequest => UpdateAliasResponse, update_alias;
}

#[async_trait::async_trait]
impl Call for pb::DeleteAliasRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.alias_name);
        kms.keys(caller).delete_alias(&self.alias_name).await?;
        Ok(pb::DeleteAliasResponse {
            request_id: caller.request_id.to_string(),
        })
    }
}

list_call!(
    /// All aliases, or one key's; only those the caller is granted.
    ListAliasesRequest => ListAliasesResponse { aliases }, notes: [key_id],
    |this, keys, page| keys.list_aliases(&this.key_id, &page),
    alias_to_pb,
);
