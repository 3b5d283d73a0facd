//! `kms.v1.CryptoService`: the data plane over gRPC. Each handler decodes, calls
//! [`Kms`], encodes.

use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::pb::crypto_service_server::CryptoService;
use super::pb::{
    AdvanceDecryptRequest, AdvanceDecryptResponse, AdvanceEncryptRequest, AdvanceEncryptResponse,
    AdvanceGenerateDataKeyPairRequest, AdvanceGenerateDataKeyPairResponse,
    AdvanceGenerateDataKeyPairWithoutPlaintextRequest,
    AdvanceGenerateDataKeyPairWithoutPlaintextResponse, AdvanceGenerateDataKeyRequest,
    AdvanceGenerateDataKeyResponse, DecryptRequest, DecryptResponse, EncryptRequest,
    EncryptResponse, GenerateDataKeyPairRequest, GenerateDataKeyPairResponse,
    GenerateDataKeyPairWithoutPlaintextRequest, GenerateDataKeyPairWithoutPlaintextResponse,
    GenerateDataKeyRequest, GenerateDataKeyResponse, GenerateRandomRequest, GenerateRandomResponse,
    GetPublicKeyRequest, GetPublicKeyResponse, HashRequest, HashResponse, HmacRequest,
    HmacResponse, SignRequest, SignResponse, VerifyRequest, VerifyResponse,
};
use super::{caller_of, reply, respond};
use crate::call::Caller;
use crate::data_plane::{
    ALGORITHM_AES_GCM, DataKeyParams, DecryptParams, EncryptParams, Encrypted, GenerateParams,
    GeneratedDataKey, GeneratedKeyPair, SealWith, SignParams, VerifyParams,
};
use crate::kms::Kms;

/// The gRPC face of the data plane of [`Kms`].
#[derive(Clone, Debug)]
pub struct CryptoApi {
    kms: Kms,
}

impl CryptoApi {
    /// Serves `kms` over gRPC.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }

    /// Runs one of the four Generate operations for `request`.
    async fn generate<T>(
        &self,
        request: &Request<T>,
        params: GenerateParams<'_>,
    ) -> Result<(Caller, GeneratedKeyPair), Status> {
        let caller = caller_of(request)?;
        let pair = reply(
            self.kms.generate_data_key_pair(&caller, params).await,
            &caller,
        )?;
        Ok((caller, pair))
    }

    /// Runs Encrypt or AdvanceEncrypt for `request`.
    async fn encrypt<T>(
        &self,
        request: &Request<T>,
        params: EncryptParams<'_>,
    ) -> Result<(Caller, Encrypted), Status> {
        let caller = caller_of(request)?;
        let sealed = reply(self.kms.encrypt(&caller, params).await, &caller)?;
        Ok((caller, sealed))
    }

    /// Runs GenerateDataKey or AdvanceGenerateDataKey for `request`.
    async fn generate_key<T>(
        &self,
        request: &Request<T>,
        params: DataKeyParams<'_>,
    ) -> Result<(Caller, GeneratedDataKey), Status> {
        let caller = caller_of(request)?;
        let key = reply(self.kms.generate_data_key(&caller, params).await, &caller)?;
        Ok((caller, key))
    }
}

/// Takes the plaintext private key out of a generated pair (empty when not asked for).
fn take_plaintext(pair: &mut GeneratedKeyPair) -> Vec<u8> {
    pair.private_key_plaintext
        .take()
        .map(|secret| secret.to_vec())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl CryptoService for CryptoApi {
    async fn generate_data_key_pair(
        &self,
        request: Request<GenerateDataKeyPairRequest>,
    ) -> Result<Response<GenerateDataKeyPairResponse>, Status> {
        let req = request.get_ref();
        let (caller, mut pair) = self
            .generate(
                &request,
                GenerateParams {
                    key_id: &req.key_id,
                    algorithm: &req.algorithm,
                    key_pair_spec: &req.key_pair_spec,
                    key_format: &req.key_format,
                    aad: &req.aad,
                    seal_with: SealWith::InitialVersion,
                    with_plaintext: true,
                },
            )
            .await?;
        let private_key_plaintext = take_plaintext(&mut pair);
        Ok(respond(
            GenerateDataKeyPairResponse {
                key_id: pair.key_id.clone(),
                iv: pair.iv.to_vec(),
                key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
                private_key_plaintext,
                private_key_ciphertext_blob: std::mem::take(&mut pair.ciphertext_blob),
                public_key: std::mem::take(&mut pair.public_key),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
            },
            &caller,
        ))
    }

    async fn generate_data_key_pair_without_plaintext(
        &self,
        request: Request<GenerateDataKeyPairWithoutPlaintextRequest>,
    ) -> Result<Response<GenerateDataKeyPairWithoutPlaintextResponse>, Status> {
        let req = request.get_ref();
        let (caller, pair) = self
            .generate(
                &request,
                GenerateParams {
                    key_id: &req.key_id,
                    algorithm: &req.algorithm,
                    key_pair_spec: &req.key_pair_spec,
                    key_format: &req.key_format,
                    aad: &req.aad,
                    seal_with: SealWith::InitialVersion,
                    with_plaintext: false,
                },
            )
            .await?;
        Ok(respond(
            GenerateDataKeyPairWithoutPlaintextResponse {
                key_id: pair.key_id,
                iv: pair.iv.to_vec(),
                key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
                private_key_ciphertext_blob: pair.ciphertext_blob,
                public_key: pair.public_key,
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
            },
            &caller,
        ))
    }

    async fn advance_generate_data_key_pair(
        &self,
        request: Request<AdvanceGenerateDataKeyPairRequest>,
    ) -> Result<Response<AdvanceGenerateDataKeyPairResponse>, Status> {
        let req = request.get_ref();
        let (caller, mut pair) = self
            .generate(
                &request,
                GenerateParams {
                    key_id: &req.key_id,
                    algorithm: "",
                    key_pair_spec: &req.key_pair_spec,
                    key_format: &req.key_format,
                    aad: &req.aad,
                    seal_with: SealWith::PrimaryVersion,
                    with_plaintext: true,
                },
            )
            .await?;
        let private_key_plaintext = take_plaintext(&mut pair);
        Ok(respond(
            AdvanceGenerateDataKeyPairResponse {
                key_id: pair.key_id.clone(),
                iv: pair.iv.to_vec(),
                key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
                private_key_plaintext,
                private_key_ciphertext_blob: std::mem::take(&mut pair.ciphertext_blob),
                public_key: std::mem::take(&mut pair.public_key),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                key_version_id: pair.key_version_id.clone(),
            },
            &caller,
        ))
    }

    async fn advance_generate_data_key_pair_without_plaintext(
        &self,
        request: Request<AdvanceGenerateDataKeyPairWithoutPlaintextRequest>,
    ) -> Result<Response<AdvanceGenerateDataKeyPairWithoutPlaintextResponse>, Status> {
        let req = request.get_ref();
        let (caller, pair) = self
            .generate(
                &request,
                GenerateParams {
                    key_id: &req.key_id,
                    algorithm: "",
                    key_pair_spec: &req.key_pair_spec,
                    key_format: &req.key_format,
                    aad: &req.aad,
                    seal_with: SealWith::PrimaryVersion,
                    with_plaintext: false,
                },
            )
            .await?;
        Ok(respond(
            AdvanceGenerateDataKeyPairWithoutPlaintextResponse {
                key_id: pair.key_id,
                iv: pair.iv.to_vec(),
                key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
                private_key_ciphertext_blob: pair.ciphertext_blob,
                public_key: pair.public_key,
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                key_version_id: pair.key_version_id,
            },
            &caller,
        ))
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let opened = reply(
            self.kms.decrypt(&caller, decrypt_params(&req)).await,
            &caller,
        )?;
        Ok(respond(
            DecryptResponse {
                key_id: opened.key_id.clone(),
                plaintext: opened.plaintext.to_vec(),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                padding_mode: String::new(),
            },
            &caller,
        ))
    }

    async fn advance_decrypt(
        &self,
        request: Request<AdvanceDecryptRequest>,
    ) -> Result<Response<AdvanceDecryptResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let params = DecryptParams {
            key_id: &req.key_id,
            ciphertext_blob: &req.ciphertext_blob,
            iv: &req.iv,
            aad: &req.aad,
            algorithm: &req.algorithm,
            padding_mode: &req.padding_mode,
        };
        let opened = reply(self.kms.advance_decrypt(&caller, params).await, &caller)?;
        Ok(respond(
            AdvanceDecryptResponse {
                key_id: opened.key_id.clone(),
                plaintext: opened.plaintext.to_vec(),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                padding_mode: String::new(),
                key_version_id: opened.key_version_id.clone(),
            },
            &caller,
        ))
    }

    async fn encrypt(
        &self,
        mut request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let plaintext = Zeroizing::new(std::mem::take(&mut request.get_mut().plaintext));
        let req = request.get_ref();
        let (caller, sealed) = self
            .encrypt(
                &request,
                EncryptParams {
                    key_id: &req.key_id,
                    plaintext: &plaintext,
                    algorithm: &req.algorithm,
                    aad: &req.aad,
                    iv: &req.iv,
                    padding_mode: &req.padding_mode,
                    seal_with: SealWith::InitialVersion,
                },
            )
            .await?;
        Ok(respond(
            EncryptResponse {
                key_id: sealed.key_id,
                ciphertext_blob: sealed.ciphertext_blob,
                iv: sealed.iv.to_vec(),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                padding_mode: String::new(),
            },
            &caller,
        ))
    }

    async fn advance_encrypt(
        &self,
        mut request: Request<AdvanceEncryptRequest>,
    ) -> Result<Response<AdvanceEncryptResponse>, Status> {
        let plaintext = Zeroizing::new(std::mem::take(&mut request.get_mut().plaintext));
        let req = request.get_ref();
        let (caller, sealed) = self
            .encrypt(
                &request,
                EncryptParams {
                    key_id: &req.key_id,
                    plaintext: &plaintext,
                    algorithm: &req.algorithm,
                    aad: &req.aad,
                    iv: &req.iv,
                    padding_mode: &req.padding_mode,
                    seal_with: SealWith::PrimaryVersion,
                },
            )
            .await?;
        Ok(respond(
            AdvanceEncryptResponse {
                key_id: sealed.key_id,
                ciphertext_blob: sealed.ciphertext_blob,
                iv: sealed.iv.to_vec(),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                padding_mode: String::new(),
                key_version_id: sealed.key_version_id,
            },
            &caller,
        ))
    }

    async fn generate_data_key(
        &self,
        request: Request<GenerateDataKeyRequest>,
    ) -> Result<Response<GenerateDataKeyResponse>, Status> {
        let req = request.get_ref();
        let (caller, key) = self
            .generate_key(
                &request,
                DataKeyParams {
                    key_id: &req.key_id,
                    algorithm: &req.algorithm,
                    number_of_bytes: req.number_of_bytes,
                    aad: &req.aad,
                    seal_with: SealWith::InitialVersion,
                },
            )
            .await?;
        Ok(respond(
            GenerateDataKeyResponse {
                key_id: key.sealed.key_id.clone(),
                iv: key.sealed.iv.to_vec(),
                plaintext: key.plaintext.to_vec(),
                ciphertext_blob: key.sealed.ciphertext_blob.clone(),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
            },
            &caller,
        ))
    }

    async fn advance_generate_data_key(
        &self,
        request: Request<AdvanceGenerateDataKeyRequest>,
    ) -> Result<Response<AdvanceGenerateDataKeyResponse>, Status> {
        let req = request.get_ref();
        let (caller, key) = self
            .generate_key(
                &request,
                DataKeyParams {
                    key_id: &req.key_id,
                    algorithm: "",
                    number_of_bytes: req.number_of_bytes,
                    aad: &req.aad,
                    seal_with: SealWith::PrimaryVersion,
                },
            )
            .await?;
        Ok(respond(
            AdvanceGenerateDataKeyResponse {
                key_id: key.sealed.key_id.clone(),
                iv: key.sealed.iv.to_vec(),
                plaintext: key.plaintext.to_vec(),
                ciphertext_blob: key.sealed.ciphertext_blob.clone(),
                request_id: caller.request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                key_version_id: key.sealed.key_version_id.clone(),
            },
            &caller,
        ))
    }

    async fn generate_random(
        &self,
        request: Request<GenerateRandomRequest>,
    ) -> Result<Response<GenerateRandomResponse>, Status> {
        let caller = caller_of(&request)?;
        let random = reply(
            self.kms
                .generate_random(&caller, request.get_ref().length)
                .await,
            &caller,
        )?;
        Ok(respond(
            GenerateRandomResponse {
                random: random.to_vec(),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn hash(
        &self,
        mut request: Request<HashRequest>,
    ) -> Result<Response<HashResponse>, Status> {
        let message = Zeroizing::new(std::mem::take(&mut request.get_mut().message));
        let caller = caller_of(&request)?;
        let req = request.get_ref();
        let (_, digest) = reply(
            self.kms.hash(&caller, &req.algorithm, &message).await,
            &caller,
        )?;
        Ok(respond(
            HashResponse {
                digest,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn sign(
        &self,
        mut request: Request<SignRequest>,
    ) -> Result<Response<SignResponse>, Status> {
        let message = Zeroizing::new(std::mem::take(&mut request.get_mut().message));
        let caller = caller_of(&request)?;
        let req = request.get_ref();
        let params = SignParams {
            key_id: &req.key_id,
            algorithm: &req.algorithm,
            message_type: &req.message_type,
            message: &message,
            digest: &req.digest,
        };
        let signed = reply(self.kms.sign(&caller, params).await, &caller)?;
        Ok(respond(
            SignResponse {
                key_id: signed.context.key_id,
                signature: signed.signature,
                request_id: caller.request_id.to_string(),
                algorithm: signed.context.algorithm.as_str().to_owned(),
                message_type: signed.context.message_type.as_str().to_owned(),
            },
            &caller,
        ))
    }

    async fn verify(
        &self,
        mut request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let message = Zeroizing::new(std::mem::take(&mut request.get_mut().message));
        let caller = caller_of(&request)?;
        let req = request.get_ref();
        let params = VerifyParams {
            signed: SignParams {
                key_id: &req.key_id,
                algorithm: &req.algorithm,
                message_type: &req.message_type,
                message: &message,
                digest: &req.digest,
            },
            signature: &req.signature,
        };
        let verified = reply(self.kms.verify(&caller, params).await, &caller)?;
        Ok(respond(
            VerifyResponse {
                key_id: verified.context.key_id,
                value: verified.value,
                request_id: caller.request_id.to_string(),
                algorithm: verified.context.algorithm.as_str().to_owned(),
                message_type: verified.context.message_type.as_str().to_owned(),
            },
            &caller,
        ))
    }

    async fn get_public_key(
        &self,
        request: Request<GetPublicKeyRequest>,
    ) -> Result<Response<GetPublicKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        let info = reply(
            self.kms
                .get_public_key(&caller, &request.get_ref().key_id)
                .await,
            &caller,
        )?;
        Ok(respond(
            GetPublicKeyResponse {
                key_id: info.key_id,
                public_key: info.public_key_pem,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn hmac(
        &self,
        mut request: Request<HmacRequest>,
    ) -> Result<Response<HmacResponse>, Status> {
        let message = Zeroizing::new(std::mem::take(&mut request.get_mut().message));
        let caller = caller_of(&request)?;
        let mac = reply(
            self.kms
                .hmac(&caller, &request.get_ref().key_id, &message)
                .await,
            &caller,
        )?;
        Ok(respond(
            HmacResponse {
                key_id: mac.key_id,
                signature: mac.mac,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }
}

/// The parameters of a Decrypt request, as sent.
fn decrypt_params(req: &DecryptRequest) -> DecryptParams<'_> {
    DecryptParams {
        key_id: &req.key_id,
        ciphertext_blob: &req.ciphertext_blob,
        iv: &req.iv,
        aad: &req.aad,
        algorithm: &req.algorithm,
        padding_mode: &req.padding_mode,
    }
}
