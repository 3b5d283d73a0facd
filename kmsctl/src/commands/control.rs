//! The control plane: keys, aliases, versions.

use kmsd_api::pb;
use serde_json::json;

use crate::cli::{AliasCommand, KeyCommand, VersionCommand};
use crate::connect::Connection;
use crate::failure::Failure;
use crate::output::{self, Shown, alias_json, date, version_json};
use crate::retry::retried;

/// A duration flag as the API's `google.protobuf.Duration`.
fn proto_duration(value: humantime::Duration) -> prost_types::Duration {
    let value: std::time::Duration = value.into();
    prost_types::Duration {
        seconds: i64::try_from(value.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// Runs a `key` command.
pub async fn key(conn: &Connection, cmd: KeyCommand) -> Result<Shown, Failure> {
    let mut api = conn.management();
    let shown = match cmd {
        KeyCommand::Create(args) => {
            let request = pb::CreateKeyRequest {
                key_spec: args.spec,
                key_usage: args.usage,
                description: args.description,
                enable_automatic_rotation: args.rotate_every.is_some(),
                rotation_interval: args.rotate_every.map(proto_duration),
                protection_level: args.protection_level,
                idempotency_token: args.once.token(),
            };
            let reply = retried(|| {
                let (mut api, request) = (api.clone(), conn.request(request.clone()));
                async move { api.create_key(request).await }
            })
            .await?
            .into_inner();
            output::key(reply.key_metadata.as_ref())
        }
        KeyCommand::Describe(args) => {
            let request = pb::DescribeKeyRequest { key_id: args.key };
            let reply = api.describe_key(conn.request(request)).await?.into_inner();
            output::key(reply.key_metadata.as_ref())
        }
        KeyCommand::List(args) => {
            let mut ids = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListKeysRequest {
                    page_size: args.page_size,
                    page_token,
                };
                let reply = api.list_keys(conn.request(request)).await?.into_inner();
                ids.extend(reply.keys.into_iter().map(|k| k.key_id));
                if reply.next_page_token.is_empty() {
                    break;
                }
                page_token = reply.next_page_token;
            }
            let value =
                json!({ "Keys": ids.iter().map(|id| json!({"KeyId": id})).collect::<Vec<_>>() });
            Shown::Table(
                vec!["KEY ID"],
                ids.into_iter().map(|id| vec![id]).collect(),
                value,
            )
        }
        KeyCommand::Enable(args) => {
            let request = pb::EnableKeyRequest { key_id: args.key };
            let reply = api.enable_key(conn.request(request)).await?.into_inner();
            output::key(reply.key_metadata.as_ref())
        }
        KeyCommand::Disable(args) => {
            let request = pb::DisableKeyRequest { key_id: args.key };
            let reply = api.disable_key(conn.request(request)).await?.into_inner();
            output::key(reply.key_metadata.as_ref())
        }
        KeyCommand::ScheduleDeletion(args) => {
            let request = pb::ScheduleKeyDeletionRequest {
                key_id: args.key,
                pending_window_in_days: args.days,
            };
            let reply = api
                .schedule_key_deletion(conn.request(request))
                .await?
                .into_inner();
            output::key(reply.key_metadata.as_ref())
        }
        KeyCommand::CancelDeletion(args) => {
            let request = pb::CancelKeyDeletionRequest { key_id: args.key };
            let reply = api
                .cancel_key_deletion(conn.request(request))
                .await?
                .into_inner();
            output::key(reply.key_metadata.as_ref())
        }
        KeyCommand::Rotate(args) => {
            let request = pb::CreateKeyVersionRequest {
                key_id: args.key,
                idempotency_token: args.once.token(),
            };
            let reply = retried(|| {
                let (mut api, request) = (api.clone(), conn.request(request.clone()));
                async move { api.create_key_version(request).await }
            })
            .await?
            .into_inner();
            version(reply.key_version.unwrap_or_default())
        }
        KeyCommand::RotationPolicy(args) => {
            let request = pb::UpdateRotationPolicyRequest {
                key_id: args.key,
                enable_automatic_rotation: args.every.is_some() && !args.off,
                rotation_interval: args.every.map(proto_duration),
            };
            let reply = api
                .update_rotation_policy(conn.request(request))
                .await?
                .into_inner();
            output::key(reply.key_metadata.as_ref())
        }
    };
    Ok(shown)
}

fn version(version: pb::KeyVersion) -> Shown {
    Shown::Fields(
        vec![
            ("Key ID", version.key_id.clone()),
            ("Version ID", version.key_version_id.clone()),
            ("Created", date(&version.creation_date)),
        ],
        json!({ "KeyVersion": version_json(&version) }),
    )
}

fn alias(alias: pb::Alias) -> Shown {
    Shown::Fields(
        vec![
            ("Alias", alias.alias_name.clone()),
            ("Key ID", alias.key_id.clone()),
            ("Created", date(&alias.creation_date)),
            ("Updated", date(&alias.update_date)),
        ],
        json!({ "Alias": alias_json(&alias) }),
    )
}

/// Runs an `alias` command.
pub async fn alias_command(conn: &Connection, cmd: AliasCommand) -> Result<Shown, Failure> {
    let mut api = conn.management();
    let shown = match cmd {
        AliasCommand::Create(args) => {
            let request = pb::CreateAliasRequest {
                key_id: args.key,
                alias_name: args.alias,
            };
            let reply = api.create_alias(conn.request(request)).await?.into_inner();
            alias(reply.alias.unwrap_or_default())
        }
        AliasCommand::Update(args) => {
            let request = pb::UpdateAliasRequest {
                key_id: args.key,
                alias_name: args.alias,
            };
            let reply = api.update_alias(conn.request(request)).await?.into_inner();
            alias(reply.alias.unwrap_or_default())
        }
        AliasCommand::Delete(args) => {
            let name = args.alias.clone();
            let request = pb::DeleteAliasRequest {
                alias_name: args.alias,
            };
            let reply = api.delete_alias(conn.request(request)).await?.into_inner();
            Shown::Line(
                format!("deleted {name}"),
                json!({ "AliasName": name, "RequestId": reply.request_id }),
            )
        }
        AliasCommand::List(args) => {
            let mut aliases = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListAliasesRequest {
                    key_id: args.key.clone().unwrap_or_default(),
                    page_size: args.page_size,
                    page_token,
                };
                let reply = api.list_aliases(conn.request(request)).await?.into_inner();
                aliases.extend(reply.aliases);
                if reply.next_page_token.is_empty() {
                    break;
                }
                page_token = reply.next_page_token;
            }
            let value = json!({ "Aliases": aliases.iter().map(alias_json).collect::<Vec<_>>() });
            let rows = aliases
                .iter()
                .map(|a| {
                    vec![
                        a.alias_name.clone(),
                        a.key_id.clone(),
                        date(&a.creation_date),
                        date(&a.update_date),
                    ]
                })
                .collect();
            Shown::Table(vec!["ALIAS", "KEY ID", "CREATED", "UPDATED"], rows, value)
        }
    };
    Ok(shown)
}

/// Runs a `version` command.
pub async fn version_command(conn: &Connection, cmd: VersionCommand) -> Result<Shown, Failure> {
    let mut api = conn.management();
    let shown = match cmd {
        VersionCommand::List(args) => {
            let mut versions = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListKeyVersionsRequest {
                    key_id: args.key.clone(),
                    page_size: 100,
                    page_token,
                };
                let reply = api
                    .list_key_versions(conn.request(request))
                    .await?
                    .into_inner();
                versions.extend(reply.key_versions);
                if reply.next_page_token.is_empty() {
                    break;
                }
                page_token = reply.next_page_token;
            }
            let value =
                json!({ "KeyVersions": versions.iter().map(version_json).collect::<Vec<_>>() });
            let rows = versions
                .iter()
                .map(|v| {
                    vec![
                        v.key_version_id.clone(),
                        v.key_id.clone(),
                        date(&v.creation_date),
                    ]
                })
                .collect();
            Shown::Table(vec!["VERSION ID", "KEY ID", "CREATED"], rows, value)
        }
        VersionCommand::Describe(args) => {
            let request = pb::DescribeKeyVersionRequest {
                key_id: args.key,
                key_version_id: args.version,
            };
            let reply = api
                .describe_key_version(conn.request(request))
                .await?
                .into_inner();
            version(reply.key_version.unwrap_or_default())
        }
    };
    Ok(shown)
}
