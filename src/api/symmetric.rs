//! Envelope encryption under a symmetric master key: Encrypt, GenerateDataKey,
//! Decrypt and their Advance forms (the primary version seals, the ciphertext names
//! its version, AdvanceDecrypt opens it with that version).

use zeroize::Zeroizing;

use kmsd_api::pb::{
    AdvanceDecryptRequest, AdvanceDecryptResponse, AdvanceEncryptRequest, AdvanceEncryptResponse,
    AdvanceGenerateDataKeyRequest, AdvanceGenerateDataKeyResponse, DecryptRequest, DecryptResponse,
    EncryptRequest, EncryptResponse, GenerateDataKeyRequest, GenerateDataKeyResponse,
};

use super::{AlgorithmSent, Call, Reply, sealing};
use crate::call::Caller;
use crate::crypto::blob;
use crate::data_plane::{
    ALGORITHM_AES_GCM, DataKeyParams, DecryptParams, Decrypted, EncryptParams, SealWith,
};
use crate::error::KmsError;
use crate::kms::Kms;

// === encryption ===

/// One [`Call`] of Encrypt's family: `Request => Response`, which version seals, and
/// the Advance response's `key_version_id`.
macro_rules! encrypt_call {
    ($request:ident => $response:ident, $seal_with:expr $(, $version:ident)?) => {
        #[async_trait::async_trait]
        impl Call for $request {
            async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
                let plaintext = Zeroizing::new(std::mem::take(&mut self.plaintext));
                let params = EncryptParams {
                    key_id: &self.key_id,
                    plaintext: &plaintext,
                    algorithm: &self.algorithm,
                    aad: &self.aad,
                    iv: &self.iv,
                    padding_mode: &self.padding_mode,
                    seal_with: $seal_with,
                };
                let plane = kms.data_plane(caller);
                let work = plane.encrypt(params);
                let sealed = sealing(kms, caller, &self.key_id, $seal_with, work).await?;
                Ok($response {
                    key_id: sealed.key_id,
                    ciphertext_blob: sealed.ciphertext_blob,
                    iv: sealed.iv.clone(),
                    request_id: caller.request_id.to_string(),
                    algorithm: sealed.algorithm.to_owned(),
                    padding_mode: String::new(),
                    $($version: sealed.key_version_id,)?
                })
            }
        }
    };
}

encrypt_call!(EncryptRequest => EncryptResponse, SealWith::InitialVersion);
encrypt_call!(AdvanceEncryptRequest => AdvanceEncryptResponse, SealWith::PrimaryVersion, key_version_id);

// === data keys ===

/// One [`Call`] of GenerateDataKey's family: `Request => Response`, which version
/// seals, and the Advance response's `key_version_id`.
macro_rules! data_key_call {
    ($request:ident => $response:ident, $seal_with:expr $(, $version:ident)?) => {
        #[async_trait::async_trait]
        impl Call for $request {
            async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
                let params = DataKeyParams {
                    key_id: &self.key_id,
                    algorithm: self.algorithm_sent(),
                    number_of_bytes: self.number_of_bytes,
                    aad: &self.aad,
                    seal_with: $seal_with,
                };
                let plane = kms.data_plane(caller);
                let work = plane.generate_data_key(params);
                let key = sealing(kms, caller, &self.key_id, $seal_with, work).await?;
                Ok($response {
                    key_id: key.sealed.key_id.clone(),
                    iv: key.sealed.iv.clone(),
                    plaintext: key.plaintext.to_vec(),
                    ciphertext_blob: key.sealed.ciphertext_blob.clone(),
                    request_id: caller.request_id.to_string(),
                    algorithm: ALGORITHM_AES_GCM.to_owned(),
                    $($version: key.sealed.key_version_id.clone(),)?
                })
            }
        }
    };
}

data_key_call!(GenerateDataKeyRequest => GenerateDataKeyResponse, SealWith::InitialVersion);
data_key_call!(
    AdvanceGenerateDataKeyRequest => AdvanceGenerateDataKeyResponse,
    SealWith::PrimaryVersion,
    key_version_id
);

// === decryption ===

/// Decrypt: a plain-form ciphertext, opened with the key's initial version.
async fn open(
    kms: &Kms,
    caller: &Caller,
    params: DecryptParams<'_>,
) -> Result<Decrypted, KmsError> {
    kms.data_plane(caller).decrypt(params).await
}

/// AdvanceDecrypt: a self-describing ciphertext, opened with the version it names.
async fn open_advance(
    kms: &Kms,
    caller: &Caller,
    params: DecryptParams<'_>,
) -> Result<Decrypted, KmsError> {
    if let Ok(parsed) = blob::parse(params.ciphertext_blob) {
        // Recorded even when the call fails: which version a refused blob named.
        caller.note.set_key_version_id(parsed.key_version_id);
    }
    kms.data_plane(caller).advance_decrypt(params).await
}

/// One [`Call`] of Decrypt's family: `Request => Response`, how it opens, and the
/// Advance response's `key_version_id`.
macro_rules! decrypt_call {
    ($request:ident => $response:ident, $open:ident $(, $version:ident)?) => {
        #[async_trait::async_trait]
        impl Call for $request {
            async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
                caller.note.set_key_id(&self.key_id);
                let params = DecryptParams {
                    key_id: &self.key_id,
                    ciphertext_blob: &self.ciphertext_blob,
                    iv: &self.iv,
                    aad: &self.aad,
                    algorithm: &self.algorithm,
                    padding_mode: &self.padding_mode,
                };
                let plain = $open(kms, caller, params).await?;
                caller.note.set_key_id(&plain.key_id);
                caller.note.set_key_version_id(&plain.key_version_id);
                Ok($response {
                    key_id: plain.key_id.clone(),
                    plaintext: plain.plaintext.to_vec(),
                    request_id: caller.request_id.to_string(),
                    algorithm: plain.algorithm.to_owned(),
                    padding_mode: String::new(),
                    $($version: plain.key_version_id.clone(),)?
                })
            }
        }
    };
}

decrypt_call!(DecryptRequest => DecryptResponse, open);
decrypt_call!(AdvanceDecryptRequest => AdvanceDecryptResponse, open_advance, key_version_id);
