//! Envelope encryption under a symmetric master key: Encrypt, GenerateDataKey,
//! Decrypt and their Advance forms (the primary version seals, the ciphertext names
//! its version, AdvanceDecrypt opens it with that version).

use zeroize::Zeroizing;

use kmsd_api::pb::{
    AdvanceDecryptRequest, AdvanceDecryptResponse, AdvanceEncryptRequest, AdvanceEncryptResponse,
    AdvanceGenerateDataKeyRequest, AdvanceGenerateDataKeyResponse, DecryptRequest, DecryptResponse,
    EncryptRequest, EncryptResponse, GenerateDataKeyRequest, GenerateDataKeyResponse,
};

use super::Call;
use crate::call::Caller;
use crate::crypto::blob;
use crate::data_plane::{
    ALGORITHM_AES_GCM, DataKeyParams, DecryptParams, Decrypted, EncryptParams, Encrypted,
    GeneratedDataKey, SealWith,
};
use crate::error::KmsError;
use crate::kms::Kms;

/// Notes the key and version that sealed, and counts the seal.
pub(super) fn sealed(
    kms: &Kms,
    caller: &Caller,
    seal_with: SealWith,
    key_id: &str,
    key_version_id: &str,
) {
    caller.note.set_key_id(key_id);
    caller.note.set_key_version_id(key_version_id);
    kms.metrics().count_seal(seal_with, key_version_id);
}

// === encryption ===

/// Seals the plaintext moved out of a request (zeroized once sealed).
async fn encrypt(
    kms: &Kms,
    caller: &Caller,
    params: EncryptParams<'_>,
) -> Result<Encrypted, KmsError> {
    caller.note.set_key_id(params.key_id);
    let sealed = kms.data_plane(caller).encrypt(params).await?;
    self::sealed(
        kms,
        caller,
        params.seal_with,
        &sealed.key_id,
        &sealed.key_version_id,
    );
    Ok(sealed)
}

#[async_trait::async_trait]
impl Call for EncryptRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Result<EncryptResponse, KmsError> {
        let plaintext = Zeroizing::new(std::mem::take(&mut self.plaintext));
        let params = EncryptParams {
            key_id: &self.key_id,
            plaintext: &plaintext,
            algorithm: &self.algorithm,
            aad: &self.aad,
            iv: &self.iv,
            padding_mode: &self.padding_mode,
            seal_with: SealWith::InitialVersion,
        };
        let sealed = encrypt(kms, caller, params).await?;
        Ok(EncryptResponse {
            key_id: sealed.key_id,
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceEncryptRequest {
    async fn call(
        mut self,
        kms: &Kms,
        caller: &Caller,
    ) -> Result<AdvanceEncryptResponse, KmsError> {
        let plaintext = Zeroizing::new(std::mem::take(&mut self.plaintext));
        let params = EncryptParams {
            key_id: &self.key_id,
            plaintext: &plaintext,
            algorithm: &self.algorithm,
            aad: &self.aad,
            iv: &self.iv,
            padding_mode: &self.padding_mode,
            seal_with: SealWith::PrimaryVersion,
        };
        let sealed = encrypt(kms, caller, params).await?;
        Ok(AdvanceEncryptResponse {
            key_id: sealed.key_id,
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
            key_version_id: sealed.key_version_id,
        })
    }
}

// === data keys ===

/// A fresh data key for `params`, sealed and in plaintext.
async fn data_key(
    kms: &Kms,
    caller: &Caller,
    params: DataKeyParams<'_>,
) -> Result<GeneratedDataKey, KmsError> {
    caller.note.set_key_id(params.key_id);
    let key = kms.data_plane(caller).generate_data_key(params).await?;
    sealed(
        kms,
        caller,
        params.seal_with,
        &key.sealed.key_id,
        &key.sealed.key_version_id,
    );
    Ok(key)
}

#[async_trait::async_trait]
impl Call for GenerateDataKeyRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<GenerateDataKeyResponse, KmsError> {
        let params = DataKeyParams {
            key_id: &self.key_id,
            algorithm: &self.algorithm,
            number_of_bytes: self.number_of_bytes,
            aad: &self.aad,
            seal_with: SealWith::InitialVersion,
        };
        let key = data_key(kms, caller, params).await?;
        Ok(GenerateDataKeyResponse {
            key_id: key.sealed.key_id.clone(),
            iv: key.sealed.iv.to_vec(),
            plaintext: key.plaintext.to_vec(),
            ciphertext_blob: key.sealed.ciphertext_blob.clone(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceGenerateDataKeyRequest {
    async fn call(
        self,
        kms: &Kms,
        caller: &Caller,
    ) -> Result<AdvanceGenerateDataKeyResponse, KmsError> {
        let params = DataKeyParams {
            key_id: &self.key_id,
            algorithm: "",
            number_of_bytes: self.number_of_bytes,
            aad: &self.aad,
            seal_with: SealWith::PrimaryVersion,
        };
        let key = data_key(kms, caller, params).await?;
        Ok(AdvanceGenerateDataKeyResponse {
            key_id: key.sealed.key_id.clone(),
            iv: key.sealed.iv.to_vec(),
            plaintext: key.plaintext.to_vec(),
            ciphertext_blob: key.sealed.ciphertext_blob.clone(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            key_version_id: key.sealed.key_version_id.clone(),
        })
    }
}

// === decryption ===

/// Notes the key and version that opened a ciphertext.
fn opened(caller: &Caller, opened: &Decrypted) {
    caller.note.set_key_id(&opened.key_id);
    caller.note.set_key_version_id(&opened.key_version_id);
}

#[async_trait::async_trait]
impl Call for DecryptRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<DecryptResponse, KmsError> {
        caller.note.set_key_id(&self.key_id);
        let params = DecryptParams {
            key_id: &self.key_id,
            ciphertext_blob: &self.ciphertext_blob,
            iv: &self.iv,
            aad: &self.aad,
            algorithm: &self.algorithm,
            padding_mode: &self.padding_mode,
        };
        let plain = kms.data_plane(caller).decrypt(params).await?;
        opened(caller, &plain);
        Ok(DecryptResponse {
            key_id: plain.key_id.clone(),
            plaintext: plain.plaintext.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceDecryptRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<AdvanceDecryptResponse, KmsError> {
        caller.note.set_key_id(&self.key_id);
        if let Ok(parsed) = blob::parse(&self.ciphertext_blob) {
            // Recorded even when the call fails: which version a refused blob named.
            caller.note.set_key_version_id(parsed.key_version_id);
        }
        let params = DecryptParams {
            key_id: &self.key_id,
            ciphertext_blob: &self.ciphertext_blob,
            iv: &self.iv,
            aad: &self.aad,
            algorithm: &self.algorithm,
            padding_mode: &self.padding_mode,
        };
        let plain = kms.data_plane(caller).advance_decrypt(params).await?;
        opened(caller, &plain);
        Ok(AdvanceDecryptResponse {
            key_id: plain.key_id.clone(),
            plaintext: plain.plaintext.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
            key_version_id: plain.key_version_id.clone(),
        })
    }
}
