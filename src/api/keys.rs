//! Master keys: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! ScheduleKeyDeletion, CancelKeyDeletion, UpdateRotationPolicy; and the key metadata
//! and durations of their messages.

use std::time::Duration;

use kmsd_api::pb;

use super::{Call, Reply};
use crate::call::Caller;
use crate::error::KmsError;
use crate::keys::KeyRegistry;
use crate::keys::model::{CreateKeyParams, KeyMetadata, RotationRequest};
use crate::kms::Kms;

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

/// The key's metadata as a message, noting the key in the call's note.
fn metadata(caller: &Caller, meta: KeyMetadata) -> Option<pb::KeyMetadata> {
    caller.note.set_key_id(&meta.key_id);
    Some(pb::KeyMetadata {
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
    })
}

// === the operations ===

#[async_trait::async_trait]
impl Call for pb::CreateKeyRequest {
    /// An asymmetric key's pair comes from the key pair pool (ready, or the next one a
    /// worker finishes, or generated on the blocking pool), after every parameter has
    /// been checked, and only when the idempotency token (if any) is new.
    async fn call(mut self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        let keys = kms.keys(caller);
        let token = std::mem::take(&mut self.idempotency_token);
        let once = keys.once(&token, &self)?;
        if let Some(key_id) = keys.replayed(once.as_ref()).await? {
            return Ok(pb::CreateKeyResponse {
                key_metadata: metadata(caller, keys.created_key(&key_id).await?),
                request_id: caller.request_id.to_string(),
            });
        }
        let params = CreateKeyParams {
            key_spec: self.key_spec,
            key_usage: self.key_usage,
            protection_level: self.protection_level,
            description: self.description,
            rotation: RotationRequest {
                enabled: self.enable_automatic_rotation,
                interval: duration_from_pb(self.rotation_interval)?,
            },
        };
        let (spec, _) = KeyRegistry::check_create_params(&params)?;
        let pair = match spec.key_pair_spec() {
            Some(pair_spec) => Some(
                kms.pool()
                    .take(pair_spec)
                    .await
                    .map_err(KmsError::internal)?,
            ),
            None => None,
        };
        let meta = keys.create_key_once(params, pair, once.as_ref()).await?;
        Ok(pb::CreateKeyResponse {
            key_metadata: metadata(caller, meta),
            request_id: caller.request_id.to_string(),
        })
    }
}

list_call!(
    /// Only the keys the caller is granted.
    ListKeysRequest => ListKeysResponse { keys }, notes: [],
    |_this, keys, page| keys.list_keys(&page),
    |key_id| pb::KeyListEntry { key_id },
);

#[async_trait::async_trait]
impl Call for pb::ScheduleKeyDeletionRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        let meta = kms
            .keys(caller)
            .schedule_key_deletion(&self.key_id, self.pending_window_in_days)
            .await?;
        Ok(pb::ScheduleKeyDeletionResponse {
            key_metadata: metadata(caller, meta),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for pb::UpdateRotationPolicyRequest {
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
        caller.note.set_key_id(&self.key_id);
        let rotation = RotationRequest {
            enabled: self.enable_automatic_rotation,
            interval: duration_from_pb(self.rotation_interval)?,
        };
        let meta = kms
            .keys(caller)
            .update_rotation_policy(&self.key_id, rotation)
            .await?;
        Ok(pb::UpdateRotationPolicyResponse {
            key_metadata: metadata(caller, meta),
            request_id: caller.request_id.to_string(),
        })
    }
}

/// The operations that take a `KeyId` alone and answer the key's metadata:
/// `Request => Response, registry method;`.
macro_rules! key_metadata_calls {
    ($( $request:ident => $response:ident, $method:ident; )*) => {$(
        #[async_trait::async_trait]
        impl Call for pb::$request {
            async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
                caller.note.set_key_id(&self.key_id);
                let meta = kms.keys(caller).$method(&self.key_id).await?;
                Ok(pb::$response {
                    key_metadata: metadata(caller, meta),
                    request_id: caller.request_id.to_string(),
                })
            }
        }
    )*};
}

key_metadata_calls! {
    DescribeKeyRequest => DescribeKeyResponse, describe_key;
    EnableKeyRequest => EnableKeyResponse, enable_key;
    DisableKeyRequest => DisableKeyResponse, disable_key;
    CancelKeyDeletionRequest => CancelKeyDeletionResponse, cancel_key_deletion;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_intervals_must_be_positive_durations() {
        let ok = prost_types::Duration {
            seconds: 86_400,
            nanos: 0,
        };
        assert_eq!(
            duration_from_pb(Some(ok)).unwrap(),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(duration_from_pb(None).unwrap(), None);
        for (seconds, nanos) in [(-1, 0), (1, -1), (1, 1_000_000_000)] {
            let bad = prost_types::Duration { seconds, nanos };
            assert!(matches!(
                duration_from_pb(Some(bad)),
                Err(KmsError::InvalidParameter(_))
            ));
        }
    }
}
