//! `kms.v1.CryptoService`: the data key pair operations over gRPC.

use tonic::{Request, Response, Status};

use super::pb::crypto_service_server::CryptoService;
use super::pb::{
    AdvanceDecryptRequest, AdvanceDecryptResponse, AdvanceGenerateDataKeyPairRequest,
    AdvanceGenerateDataKeyPairResponse, AdvanceGenerateDataKeyPairWithoutPlaintextRequest,
    AdvanceGenerateDataKeyPairWithoutPlaintextResponse, DecryptRequest, DecryptResponse,
    GenerateDataKeyPairRequest, GenerateDataKeyPairResponse,
    GenerateDataKeyPairWithoutPlaintextRequest, GenerateDataKeyPairWithoutPlaintextResponse,
};
use super::{access_of, note_of, request_id_of, respond, status};
use crate::audit::AuditNote;
use crate::crypto::blob;
use crate::data_key_pairs::{
    ALGORITHM_AES_GCM, DataKeyPairs, DecryptParams, GenerateParams, GeneratedKeyPair, SealWith,
};
use crate::request_id::RequestId;

/// The gRPC face of [`DataKeyPairs`].
#[derive(Clone, Debug)]
pub struct CryptoApi {
    data: DataKeyPairs,
}

impl CryptoApi {
    /// Serves `data` over gRPC.
    pub fn new(data: DataKeyPairs) -> Self {
        Self { data }
    }

    /// The request ID, the data plane scoped to the caller's access, and the audit note.
    fn begin<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(RequestId, DataKeyPairs, AuditNote), Status> {
        let request_id = request_id_of(request);
        let access = access_of(request, &request_id)?;
        Ok((request_id, self.data.scoped(access), note_of(request)))
    }

    /// Runs one of the four Generate operations for `request`, noting the key, spec
    /// and version in the call's audit record.
    async fn generate<T>(
        &self,
        request: &Request<T>,
        params: GenerateParams<'_>,
    ) -> Result<(RequestId, GeneratedKeyPair), Status> {
        let (request_id, data, note) = self.begin(request)?;
        note.set_key_id(params.key_id);
        note.set_key_pair_spec(params.key_pair_spec);
        let pair = status(data.generate(params).await, &request_id)?;
        note.set_key_id(&pair.key_id);
        note.set_key_version_id(&pair.key_version_id);
        Ok((request_id, pair))
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
        let (request_id, mut pair) = self
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
                request_id: request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
            },
            &request_id,
        ))
    }

    async fn generate_data_key_pair_without_plaintext(
        &self,
        request: Request<GenerateDataKeyPairWithoutPlaintextRequest>,
    ) -> Result<Response<GenerateDataKeyPairWithoutPlaintextResponse>, Status> {
        let req = request.get_ref();
        let (request_id, pair) = self
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
                request_id: request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
            },
            &request_id,
        ))
    }

    async fn advance_generate_data_key_pair(
        &self,
        request: Request<AdvanceGenerateDataKeyPairRequest>,
    ) -> Result<Response<AdvanceGenerateDataKeyPairResponse>, Status> {
        let req = request.get_ref();
        let (request_id, mut pair) = self
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
                request_id: request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                key_version_id: pair.key_version_id.clone(),
            },
            &request_id,
        ))
    }

    async fn advance_generate_data_key_pair_without_plaintext(
        &self,
        request: Request<AdvanceGenerateDataKeyPairWithoutPlaintextRequest>,
    ) -> Result<Response<AdvanceGenerateDataKeyPairWithoutPlaintextResponse>, Status> {
        let req = request.get_ref();
        let (request_id, pair) = self
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
                request_id: request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                key_version_id: pair.key_version_id,
            },
            &request_id,
        ))
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let (request_id, data, note) = self.begin(&request)?;
        let req = request.into_inner();
        note.set_key_id(&req.key_id);
        let opened = status(
            data.decrypt(DecryptParams {
                key_id: &req.key_id,
                ciphertext_blob: &req.ciphertext_blob,
                iv: &req.iv,
                aad: &req.aad,
                algorithm: &req.algorithm,
                padding_mode: &req.padding_mode,
            })
            .await,
            &request_id,
        )?;
        note.set_key_id(&opened.key_id);
        note.set_key_version_id(&opened.key_version_id);
        Ok(respond(
            DecryptResponse {
                key_id: opened.key_id.clone(),
                plaintext: opened.plaintext.to_vec(),
                request_id: request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                padding_mode: String::new(),
            },
            &request_id,
        ))
    }

    async fn advance_decrypt(
        &self,
        request: Request<AdvanceDecryptRequest>,
    ) -> Result<Response<AdvanceDecryptResponse>, Status> {
        let (request_id, data, note) = self.begin(&request)?;
        let req = request.into_inner();
        note.set_key_id(&req.key_id);
        if let Ok(parsed) = blob::parse(&req.ciphertext_blob) {
            // Recorded even when the call fails: which version a refused blob named.
            note.set_key_version_id(parsed.key_version_id);
        }
        let opened = status(
            data.advance_decrypt(DecryptParams {
                key_id: &req.key_id,
                ciphertext_blob: &req.ciphertext_blob,
                iv: &req.iv,
                aad: &req.aad,
                algorithm: &req.algorithm,
                padding_mode: &req.padding_mode,
            })
            .await,
            &request_id,
        )?;
        note.set_key_id(&opened.key_id);
        note.set_key_version_id(&opened.key_version_id);
        Ok(respond(
            AdvanceDecryptResponse {
                key_id: opened.key_id.clone(),
                plaintext: opened.plaintext.to_vec(),
                request_id: request_id.to_string(),
                algorithm: ALGORITHM_AES_GCM.to_owned(),
                padding_mode: String::new(),
                key_version_id: opened.key_version_id.clone(),
            },
            &request_id,
        ))
    }
}
