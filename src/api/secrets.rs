//! Secrets: GetSecretValue (the instance service's, also served by the HTTPS gateway)
//! and the secrets family: CreateSecret, PutSecretValue, DescribeSecret, ListSecrets,
//! ListSecretVersionIds, UpdateSecret, UpdateSecretVersionStage,
//! UpdateSecretRotationPolicy, DeleteSecret, RestoreSecret. Each notes the secret (and
//! the version it read or wrote) for the audit log; never the data.

use kmsd_api::pb;
use zeroize::Zeroizing;

use super::{Call, Reply};
use crate::call::Caller;
use crate::clock::format_date;
use crate::error::KmsError;
use crate::kms::Kms;
use crate::secrets::model::format_rotation_interval;
use crate::secrets::{CreateSecretParams, PutValueParams, next_rotation_ms};
use crate::store::SecretRecord;

/// `Enabled` or `Disabled`, as the public API reports automatic rotation.
fn automatic_rotation(secret: &SecretRecord) -> String {
    if secret.automatic_rotation {
        "Enabled"
    } else {
        "Disabled"
    }
    .to_owned()
}

fn rotation_interval(secret: &SecretRecord) -> String {
    secret
        .rotation_interval_secs
        .map(format_rotation_interval)
        .unwrap_or_default()
}

fn next_rotation_date(secret: &SecretRecord) -> String {
    next_rotation_ms(secret)
        .map(format_date)
        .unwrap_or_default()
}

fn planned_delete_time(secret: &SecretRecord) -> String {
    secret.delete_at_ms.map(format_date).unwrap_or_default()
}

/// A page request's number or size as sent: negative values are refused.
fn page_field(name: &str, value: i32) -> Result<u32, KmsError> {
    u32::try_from(value)
        .map_err(|_| KmsError::InvalidParameter(format!("{name} must not be negative.")))
}

/// A count or page number as the response's `int32`.
fn count(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

/// The name prefixes of ListSecrets' `Filters`: `[{"Key":"SecretName","Values":[..]}]`.
fn name_prefixes(filters: &str) -> Result<Vec<String>, KmsError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Filter {
        key: String,
        values: Vec<String>,
    }
    if filters.trim().is_empty() {
        return Ok(Vec::new());
    }
    let invalid = || {
        KmsError::InvalidParameter(
            "Filters must be a JSON list like [{\"Key\":\"SecretName\",\"Values\":[\"db/\"]}]."
                .into(),
        )
    };
    let parsed: Vec<Filter> = serde_json::from_str(filters).map_err(|_| invalid())?;
    let mut prefixes = Vec::new();
    for filter in parsed {
        if filter.key != "SecretName" {
            return Err(KmsError::InvalidParameter(
                "Filters supports the key SecretName only.".into(),
            ));
        }
        prefixes.extend(filter.values);
    }
    Ok(prefixes)
}

#[async_trait::async_trait]
impl Call for pb::GetSecretValueRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        let value = kms
            .secrets(caller)
            .get_value(&self.secret_name, &self.version_stage, &self.version_id)
            .await?;
        caller.note.set_secret_version_id(&value.version_id);
        let secret = &value.secret;
        let extended_config = if self.fetch_extended_config {
            secret.extended_config.clone().unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::GetSecretValueResponse {
            secret_name: secret.secret_name.clone(),
            secret_type: secret.secret_type.clone(),
            secret_data: value.data.to_string(),
            secret_data_type: value.data_type.as_str().to_owned(),
            version_stages: value.version_stages.clone(),
            version_id: value.version_id.clone(),
            create_time: format_date(value.created_at_ms),
            request_id: caller.request_id.to_string(),
            last_rotation_date: format_date(secret.last_rotation_ms),
            next_rotation_date: next_rotation_date(secret),
            extended_config,
            automatic_rotation: automatic_rotation(secret),
            rotation_interval: rotation_interval(secret),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::CreateSecretRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        let token = std::mem::take(&mut self.idempotency_token);
        // MACed with the data in it (a token reused with another value is refused).
        let once = kms.keys(caller).once(&token, &self)?;
        let data = Zeroizing::new(std::mem::take(&mut self.secret_data));
        let (secret, version_id) = kms
            .secrets(caller)
            .create_once(
                CreateSecretParams {
                    secret_name: &self.secret_name,
                    secret_data: &data,
                    secret_data_type: &self.secret_data_type,
                    version_id: &self.version_id,
                    encryption_key_id: &self.encryption_key_id,
                    description: &self.description,
                    secret_type: &self.secret_type,
                    extended_config: &self.extended_config,
                    enable_automatic_rotation: self.enable_automatic_rotation,
                    rotation_interval: &self.rotation_interval,
                },
                once.as_ref(),
            )
            .await?;
        caller.note.set_secret_version_id(&version_id);
        caller.note.set_key_id(&secret.encryption_key_id);
        Ok(pb::CreateSecretResponse {
            secret_name: secret.secret_name.clone(),
            secret_type: secret.secret_type.clone(),
            version_id,
            automatic_rotation: automatic_rotation(&secret),
            rotation_interval: rotation_interval(&secret),
            next_rotation_date: next_rotation_date(&secret),
            extended_config: secret.extended_config.clone().unwrap_or_default(),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::PutSecretValueRequest {
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        caller.note.set_secret_version_id(&self.version_id);
        let data = Zeroizing::new(std::mem::take(&mut self.secret_data));
        let version = kms
            .secrets(caller)
            .put_value(PutValueParams {
                secret_name: &self.secret_name,
                version_id: &self.version_id,
                secret_data: &data,
                secret_data_type: &self.secret_data_type,
                version_stages: &self.version_stages,
            })
            .await?;
        Ok(pb::PutSecretValueResponse {
            secret_name: self.secret_name,
            version_id: version.version_id,
            version_stages: version.stages,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::DescribeSecretRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        let secret = kms.secrets(caller).describe(&self.secret_name).await?;
        Ok(pb::DescribeSecretResponse {
            secret_type: secret.secret_type.clone(),
            description: secret.description.clone(),
            encryption_key_id: secret.encryption_key_id.clone(),
            create_time: format_date(secret.created_at_ms),
            update_time: format_date(secret.updated_at_ms),
            planned_delete_time: planned_delete_time(&secret),
            automatic_rotation: automatic_rotation(&secret),
            rotation_interval: rotation_interval(&secret),
            last_rotation_date: format_date(secret.last_rotation_ms),
            next_rotation_date: next_rotation_date(&secret),
            extended_config: secret.extended_config.clone().unwrap_or_default(),
            secret_name: secret.secret_name,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::ListSecretsRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        let prefixes = name_prefixes(&self.filters)?;
        let page = kms
            .secrets(caller)
            .list(
                &prefixes,
                page_field("PageNumber", self.page_number)?,
                page_field("PageSize", self.page_size)?,
            )
            .await?;
        Ok(pb::ListSecretsResponse {
            secret_list: page
                .items
                .iter()
                .map(|secret| pb::SecretListEntry {
                    secret_name: secret.secret_name.clone(),
                    secret_type: secret.secret_type.clone(),
                    create_time: format_date(secret.created_at_ms),
                    update_time: format_date(secret.updated_at_ms),
                    planned_delete_time: planned_delete_time(secret),
                })
                .collect(),
            total_count: count(page.total_count),
            page_number: count(page.page_number),
            page_size: count(page.page_size),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::ListSecretVersionIdsRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        let page = kms
            .secrets(caller)
            .list_versions(
                &self.secret_name,
                self.include_deprecated,
                page_field("PageNumber", self.page_number)?,
                page_field("PageSize", self.page_size)?,
            )
            .await?;
        Ok(pb::ListSecretVersionIdsResponse {
            secret_name: self.secret_name,
            version_ids: page
                .items
                .into_iter()
                .map(|version| pb::SecretVersionId {
                    version_id: version.version_id,
                    create_time: format_date(version.created_at_ms),
                    version_stages: version.stages,
                })
                .collect(),
            total_count: count(page.total_count),
            page_number: count(page.page_number),
            page_size: count(page.page_size),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::UpdateSecretRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        kms.secrets(caller)
            .update(
                &self.secret_name,
                self.description.as_deref(),
                self.extended_config.as_deref(),
            )
            .await?;
        Ok(pb::UpdateSecretResponse {
            secret_name: self.secret_name,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::UpdateSecretVersionStageRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        caller.note.set_secret_version_id(&self.move_to_version);
        kms.secrets(caller)
            .move_stage(
                &self.secret_name,
                &self.version_stage,
                &self.remove_from_version,
                &self.move_to_version,
            )
            .await?;
        Ok(pb::UpdateSecretVersionStageResponse {
            secret_name: self.secret_name,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::UpdateSecretRotationPolicyRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        kms.secrets(caller)
            .update_rotation(
                &self.secret_name,
                self.enable_automatic_rotation,
                &self.rotation_interval,
            )
            .await?;
        Ok(pb::UpdateSecretRotationPolicyResponse {
            secret_name: self.secret_name,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::DeleteSecretRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        let days = page_field("RecoveryWindowInDays", self.recovery_window_in_days)?;
        let at = kms
            .secrets(caller)
            .delete(&self.secret_name, days, self.force_delete_without_recovery)
            .await?;
        Ok(pb::DeleteSecretResponse {
            secret_name: self.secret_name,
            planned_delete_time: format_date(at),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::RestoreSecretRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_secret_name(&self.secret_name);
        kms.secrets(caller).restore(&self.secret_name).await?;
        Ok(pb::RestoreSecretResponse {
            secret_name: self.secret_name,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_give_name_prefixes() {
        assert!(name_prefixes("").unwrap().is_empty());
        assert_eq!(
            name_prefixes(r#"[{"Key":"SecretName","Values":["db/","api/"]}]"#).unwrap(),
            ["db/", "api/"]
        );
        assert!(name_prefixes(r#"[{"Key":"Tag","Values":["x"]}]"#).is_err());
        assert!(name_prefixes("db/").is_err());
    }
}
