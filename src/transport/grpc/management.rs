//! `kms.v1.KeyManagementService`: the control plane over gRPC. Each handler decodes,
//! calls [`Kms`], encodes.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use tonic::{Request, Response, Status};

use super::pb;
use super::pb::key_management_service_server::KeyManagementService;
use super::{caller_of, reply, respond};
use crate::clock::format_date;
use crate::error::KmsError;
use crate::keys::client_keys::CreateClientKeyParams;
use crate::keys::model::{
    AliasInfo, CreateKeyParams, KeyMetadata, KeyVersionInfo, PageRequest, RotationRequest,
};
use crate::kms::Kms;
use crate::store::ClientKeyRecord;

/// The gRPC face of the control plane of [`Kms`].
#[derive(Clone, Debug)]
pub struct ManagementApi {
    kms: Kms,
}

impl ManagementApi {
    /// Serves `kms` over gRPC.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }
}

// === encoding ===

fn duration_to_pb(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// A `RotationInterval` parameter; negative or malformed → `InvalidParameter`.
fn duration_from_pb(duration: Option<prost_types::Duration>) -> Result<Option<Duration>, KmsError> {
    let Some(duration) = duration else {
        return Ok(None);
    };
    let seconds = u64::try_from(duration.seconds);
    let nanos = u32::try_from(duration.nanos);
    match (seconds, nanos) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => {
            Ok(Some(Duration::new(seconds, nanos)))
        }
        _ => Err(KmsError::InvalidParameter(
            "RotationInterval must be a positive duration.".into(),
        )),
    }
}

fn metadata_to_pb(meta: KeyMetadata) -> pb::KeyMetadata {
    pb::KeyMetadata {
        key_id: meta.key_id,
        key_spec: meta.key_spec,
        key_usage: meta.key_usage,
        key_state: meta.key_state.as_str().to_owned(),
        description: meta.description,
        creation_date: meta.creation_date,
        primary_key_version: meta.primary_key_version,
        automatic_rotation: meta.automatic_rotation,
        rotation_interval: meta.rotation_interval.map(duration_to_pb),
        last_rotation_date: meta.last_rotation_date,
        next_rotation_date: meta.next_rotation_date.unwrap_or_default(),
        delete_date: meta.delete_date.unwrap_or_default(),
        protection_level: meta.protection_level,
        initial_key_version: meta.initial_key_version,
    }
}

fn version_to_pb(version: KeyVersionInfo) -> pb::KeyVersion {
    pb::KeyVersion {
        key_id: version.key_id,
        key_version_id: version.key_version_id,
        creation_date: version.creation_date,
    }
}

fn alias_to_pb(alias: AliasInfo) -> pb::Alias {
    pb::Alias {
        alias_name: alias.alias_name,
        key_id: alias.key_id,
        creation_date: alias.creation_date,
        update_date: alias.update_date,
    }
}

// === impl KeyManagementService ===

#[tonic::async_trait]
impl KeyManagementService for ManagementApi {
    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let result = async {
            let rotation = RotationRequest {
                enabled: req.enable_automatic_rotation,
                interval: duration_from_pb(req.rotation_interval)?,
            };
            self.kms
                .create_key(
                    &caller,
                    CreateKeyParams {
                        key_spec: req.key_spec,
                        key_usage: req.key_usage,
                        protection_level: req.protection_level,
                        description: req.description,
                        rotation,
                    },
                )
                .await
        }
        .await;
        let meta = reply(result, &caller)?;
        Ok(respond(
            pb::CreateKeyResponse {
                key_metadata: Some(metadata_to_pb(meta)),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn describe_key(
        &self,
        request: Request<pb::DescribeKeyRequest>,
    ) -> Result<Response<pb::DescribeKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        let key_metadata = Some(metadata_to_pb(reply(
            self.kms
                .describe_key(&caller, &request.get_ref().key_id)
                .await,
            &caller,
        )?));
        Ok(respond(
            pb::DescribeKeyResponse {
                key_metadata,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let page = reply(
            self.kms
                .list_keys(
                    &caller,
                    &PageRequest {
                        page_size: req.page_size,
                        page_token: req.page_token,
                    },
                )
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::ListKeysResponse {
                keys: page
                    .items
                    .into_iter()
                    .map(|key_id| pb::KeyListEntry { key_id })
                    .collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn enable_key(
        &self,
        request: Request<pb::EnableKeyRequest>,
    ) -> Result<Response<pb::EnableKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        let key_metadata = Some(metadata_to_pb(reply(
            self.kms
                .enable_key(&caller, &request.get_ref().key_id)
                .await,
            &caller,
        )?));
        Ok(respond(
            pb::EnableKeyResponse {
                key_metadata,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn disable_key(
        &self,
        request: Request<pb::DisableKeyRequest>,
    ) -> Result<Response<pb::DisableKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        let key_metadata = Some(metadata_to_pb(reply(
            self.kms
                .disable_key(&caller, &request.get_ref().key_id)
                .await,
            &caller,
        )?));
        Ok(respond(
            pb::DisableKeyResponse {
                key_metadata,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<pb::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<pb::ScheduleKeyDeletionResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.get_ref();
        let key_metadata = Some(metadata_to_pb(reply(
            self.kms
                .schedule_key_deletion(&caller, &req.key_id, req.pending_window_in_days)
                .await,
            &caller,
        )?));
        Ok(respond(
            pb::ScheduleKeyDeletionResponse {
                key_metadata,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn cancel_key_deletion(
        &self,
        request: Request<pb::CancelKeyDeletionRequest>,
    ) -> Result<Response<pb::CancelKeyDeletionResponse>, Status> {
        let caller = caller_of(&request)?;
        let key_metadata = Some(metadata_to_pb(reply(
            self.kms
                .cancel_key_deletion(&caller, &request.get_ref().key_id)
                .await,
            &caller,
        )?));
        Ok(respond(
            pb::CancelKeyDeletionResponse {
                key_metadata,
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn create_alias(
        &self,
        request: Request<pb::CreateAliasRequest>,
    ) -> Result<Response<pb::CreateAliasResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.get_ref();
        let alias = reply(
            self.kms
                .create_alias(&caller, &req.key_id, &req.alias_name)
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::CreateAliasResponse {
                alias: Some(alias_to_pb(alias)),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn update_alias(
        &self,
        request: Request<pb::UpdateAliasRequest>,
    ) -> Result<Response<pb::UpdateAliasResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.get_ref();
        let alias = reply(
            self.kms
                .update_alias(&caller, &req.key_id, &req.alias_name)
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::UpdateAliasResponse {
                alias: Some(alias_to_pb(alias)),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        let caller = caller_of(&request)?;
        reply(
            self.kms
                .delete_alias(&caller, &request.get_ref().alias_name)
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::DeleteAliasResponse {
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let page = reply(
            self.kms
                .list_aliases(
                    &caller,
                    &req.key_id,
                    &PageRequest {
                        page_size: req.page_size,
                        page_token: req.page_token,
                    },
                )
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::ListAliasesResponse {
                aliases: page.items.into_iter().map(alias_to_pb).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn create_key_version(
        &self,
        request: Request<pb::CreateKeyVersionRequest>,
    ) -> Result<Response<pb::CreateKeyVersionResponse>, Status> {
        let caller = caller_of(&request)?;
        let version = reply(
            self.kms
                .create_key_version(&caller, &request.get_ref().key_id)
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::CreateKeyVersionResponse {
                key_version: Some(version_to_pb(version)),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn list_key_versions(
        &self,
        request: Request<pb::ListKeyVersionsRequest>,
    ) -> Result<Response<pb::ListKeyVersionsResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let page = reply(
            self.kms
                .list_key_versions(
                    &caller,
                    &req.key_id,
                    &PageRequest {
                        page_size: req.page_size,
                        page_token: req.page_token,
                    },
                )
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::ListKeyVersionsResponse {
                key_versions: page.items.into_iter().map(version_to_pb).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn describe_key_version(
        &self,
        request: Request<pb::DescribeKeyVersionRequest>,
    ) -> Result<Response<pb::DescribeKeyVersionResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.get_ref();
        let version = reply(
            self.kms
                .describe_key_version(&caller, &req.key_id, &req.key_version_id)
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::DescribeKeyVersionResponse {
                key_version: Some(version_to_pb(version)),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn update_rotation_policy(
        &self,
        request: Request<pb::UpdateRotationPolicyRequest>,
    ) -> Result<Response<pb::UpdateRotationPolicyResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let result = async {
            let rotation = RotationRequest {
                enabled: req.enable_automatic_rotation,
                interval: duration_from_pb(req.rotation_interval)?,
            };
            self.kms
                .update_rotation_policy(&caller, &req.key_id, rotation)
                .await
        }
        .await;
        let meta = reply(result, &caller)?;
        Ok(respond(
            pb::UpdateRotationPolicyResponse {
                key_metadata: Some(metadata_to_pb(meta)),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn create_client_key(
        &self,
        mut request: Request<pb::CreateClientKeyRequest>,
    ) -> Result<Response<pb::CreateClientKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        let password = Zeroizing::new(std::mem::take(&mut request.get_mut().password));
        let req = request.get_ref();
        let params = reply(client_key_params(req, &password), &caller)?;
        let created = reply(self.kms.create_client_key(&caller, params).await, &caller)?;
        Ok(respond(
            pb::CreateClientKeyResponse {
                client_key_id: created.record.client_key_id.clone(),
                private_key_data: BASE64.encode(created.pkcs12.as_slice()),
                client_key: Some(client_key_to_pb(created.record.clone())),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn list_client_keys(
        &self,
        request: Request<pb::ListClientKeysRequest>,
    ) -> Result<Response<pb::ListClientKeysResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let page = PageRequest {
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let page = reply(self.kms.list_client_keys(&caller, &page).await, &caller)?;
        Ok(respond(
            pb::ListClientKeysResponse {
                client_keys: page.items.into_iter().map(client_key_to_pb).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }

    async fn delete_client_key(
        &self,
        request: Request<pb::DeleteClientKeyRequest>,
    ) -> Result<Response<pb::DeleteClientKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        reply(
            self.kms
                .delete_client_key(&caller, &request.get_ref().client_key_id)
                .await,
            &caller,
        )?;
        Ok(respond(
            pb::DeleteClientKeyResponse {
                request_id: caller.request_id.to_string(),
            },
            &caller,
        ))
    }
}

// === client keys ===

fn client_key_to_pb(record: ClientKeyRecord) -> pb::ClientKey {
    pb::ClientKey {
        client_key_id: record.client_key_id,
        principal: record.principal,
        not_before: format_date(record.not_before_ms),
        not_after: format_date(record.not_after_ms),
        creation_date: format_date(record.created_at_ms),
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

fn client_key_params<'a>(
    req: &'a pb::CreateClientKeyRequest,
    password: &'a str,
) -> Result<CreateClientKeyParams<'a>, KmsError> {
    Ok(CreateClientKeyParams {
        principal: &req.principal,
        password,
        not_before: date_param("NotBefore", &req.not_before)?,
        not_after: date_param("NotAfter", &req.not_after)?,
    })
}
