//! Key versions: CreateKeyVersion (rotate now), ListKeyVersions, DescribeKeyVersion.

use kmsd_api::pb;

use super::{Call, Reply};
use crate::call::Caller;
use crate::keys::model::KeyVersionInfo;
use crate::kms::Kms;

fn version_to_pb(version: KeyVersionInfo) -> pb::KeyVersion {
    pb::KeyVersion {
        key_id: version.key_id,
        key_version_id: version.key_version_id,
        creation_date: version.creation_date,
    }
}

/// The version as a message, noting it and its key.
fn noted(caller: &Caller, version: KeyVersionInfo) -> Option<pb::KeyVersion> {
    caller.note.set_key_id(&version.key_id);
    caller.note.set_key_version_id(&version.key_version_id);
    Some(version_to_pb(version))
}

#[async_trait::async_trait]
impl Call for pb::CreateKeyVersionRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        let keys = kms.keys(caller);
        let token = std::mem::take(&mut self.idempotency_token);
        let once = keys.once(&token, &self)?;
        let version = keys
            .create_key_version_once(&self.key_id, once.as_ref())
            .await?;
        Ok(pb::CreateKeyVersionResponse {
            key_version: noted(caller, version),
            request_id: caller.request_id.to_string(),
        })
    }
}

list_call!(
    ListKeyVersionsRequest => ListKeyVersionsResponse { key_versions }, notes: [key_id],
    |this, keys, page| keys.list_key_versions(&this.key_id, &page),
    version_to_pb,
);

#[async_trait::async_trait]
impl Call for pb::DescribeKeyVersionRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        caller.note.set_key_version_id(&self.key_version_id);
        let version = kms
            .keys(caller)
            .describe_key_version(&self.key_id, &self.key_version_id)
            .await?;
        Ok(pb::DescribeKeyVersionResponse {
            key_version: noted(caller, version),
            request_id: caller.request_id.to_string(),
        })
    }
}
