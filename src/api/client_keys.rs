//! The HTTPS gateway's client keys: CreateClientKey, ListClientKeys, DeleteClientKey
//! (see [`crate::keys::client_keys`]).

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kmsd_api::pb;
use zeroize::Zeroizing;

use super::{Call, Reply};
use crate::call::Caller;
use crate::clock::format_date;
use crate::error::KmsError;
use crate::keys::client_keys::CreateClientKeyParams;
use crate::kms::Kms;
use crate::store::ClientKeyRecord;

fn client_key_to_pb(record: ClientKeyRecord) -> pb::ClientKey {
    pb::ClientKey {
        client_key_id: record.client_key_id,
        principal: record.principal,
        not_before: format_date(record.not_before_ms),
        not_after: format_date(record.not_after_ms),
        creation_date: format_date(record.created_at_ms),
        minted_by: record.minted_by,
        minted_under: record.minted_under.as_str().to_owned(),
    }
}

/// An RFC 3339 date parameter; empty is `None`, malformed `InvalidParameter`.
fn date_param(name: &str, value: &str) -> Result<Option<SystemTime>, KmsError> {
    if value.is_empty() {
        return Ok(None);
    }
    humantime::parse_rfc3339_weak(value)
        .map(Some)
        .map_err(|_| KmsError::InvalidParameter(format!("{name} must be an RFC 3339 date.")))
}

#[async_trait::async_trait]
impl Call for pb::CreateClientKeyRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_target_principal(&self.principal);
        let token = std::mem::take(&mut self.idempotency_token);
        // MACed with the password in it (a token reused with another is refused).
        let once = kms.keys(caller).once(&token, &self)?;
        let password = Zeroizing::new(std::mem::take(&mut self.password));
        let params = CreateClientKeyParams {
            principal: &self.principal,
            password: &password,
            not_before: date_param("NotBefore", &self.not_before)?,
            not_after: date_param("NotAfter", &self.not_after)?,
            max_validity: kms.client_key_max_validity(),
        };
        let created = kms
            .keys(caller)
            .create_client_key(kms.pool(), params, once.as_ref())
            .await?;
        caller.note.set_key_id(&created.record.client_key_id);
        Ok(pb::CreateClientKeyResponse {
            client_key_id: created.record.client_key_id.clone(),
            private_key_data: BASE64.encode(created.pkcs12.as_slice()),
            client_key: Some(client_key_to_pb(created.record.clone())),
            request_id: caller.request_id.to_string(),
        })
    }
}

list_call!(
    /// Under access control, only the caller's own.
    ListClientKeysRequest => ListClientKeysResponse { client_keys }, notes: [],
    |_this, keys, page| keys.list_client_keys(&page),
    client_key_to_pb,
);

#[async_trait::async_trait]
impl Call for pb::DeleteClientKeyRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.client_key_id);
        kms.keys(caller)
            .delete_client_key(&self.client_key_id)
            .await?;
        Ok(pb::DeleteClientKeyResponse {
            request_id: caller.request_id.to_string(),
        })
    }
}
