//! Signatures and MACs under asymmetric and HMAC master keys: Sign, Verify,
//! GetPublicKey and Hmac.

use zeroize::Zeroizing;

use kmsd_api::pb::{
    GetPublicKeyRequest, GetPublicKeyResponse, HmacRequest, HmacResponse, SignRequest,
    SignResponse, VerifyRequest, VerifyResponse,
};

use super::{Call, Reply};
use crate::call::Caller;
use crate::data_plane::SignParams;
use crate::data_plane::VerifyParams;
use crate::kms::Kms;

/// Notes the key and version that answered.
fn used(caller: &Caller, key_id: &str, key_version_id: &str) {
    caller.note.set_key_id(key_id);
    caller.note.set_key_version_id(key_version_id);
}

#[async_trait::async_trait]
impl Call for SignRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let params = SignParams {
            key_id: &self.key_id,
            algorithm: &self.algorithm,
            message_type: &self.message_type,
            message: &message,
            digest: &self.digest,
        };
        let signed = kms.data_plane(caller).sign(params).await?;
        let context = signed.context;
        used(caller, &context.key_id, &context.key_version_id);
        Ok(SignResponse {
            key_id: context.key_id,
            signature: signed.signature,
            request_id: caller.request_id.to_string(),
            algorithm: context.algorithm.as_str().to_owned(),
            message_type: context.message_type.as_str().to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for VerifyRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let params = VerifyParams {
            signed: SignParams {
                key_id: &self.key_id,
                algorithm: &self.algorithm,
                message_type: &self.message_type,
                message: &message,
                digest: &self.digest,
            },
            signature: &self.signature,
        };
        let verified = kms.data_plane(caller).verify(params).await?;
        let context = verified.context;
        used(caller, &context.key_id, &context.key_version_id);
        Ok(VerifyResponse {
            key_id: context.key_id,
            value: verified.value,
            request_id: caller.request_id.to_string(),
            algorithm: context.algorithm.as_str().to_owned(),
            message_type: context.message_type.as_str().to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for GetPublicKeyRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        let info = kms.data_plane(caller).public_key(&self.key_id).await?;
        used(caller, &info.key_id, &info.key_version_id);
        Ok(GetPublicKeyResponse {
            key_id: info.key_id,
            public_key: info.public_key_pem,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for HmacRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let mac = kms.data_plane(caller).hmac(&self.key_id, &message).await?;
        used(caller, &mac.key_id, &mac.key_version_id);
        Ok(HmacResponse {
            key_id: mac.key_id,
            signature: mac.mac,
            request_id: caller.request_id.to_string(),
        })
    }
}
