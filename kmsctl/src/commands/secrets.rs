//! Secrets: create, put, get, describe, list, versions, update, stage, rotation-policy,
//! delete, restore. Values are read from files or stdin and written to files (mode
//! 0600) or, when asked, stdout: never taken from or shown in arguments or output.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kmsd_api::pb;
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::{SecretCommand, SecretValueIn};
use crate::connect::Connection;
use crate::failure::Failure;
use crate::files::{read_input, write_private};
use crate::output::{Shown, date};
use crate::retry::retried;

/// Largest page kmsctl asks for while listing.
const PAGE_SIZE: i32 = 100;

/// The value in `input` as the API takes it (`SecretData`, `SecretDataType`): text as
/// it is (it must be UTF-8), bytes in base64 with `--binary`.
fn read_value(input: &SecretValueIn) -> Result<(Zeroizing<String>, &'static str), Failure> {
    let bytes = read_input(&input.input, "the secret value")?;
    if input.binary {
        return Ok((Zeroizing::new(BASE64.encode(&bytes)), "binary"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Failure::Usage(format!(
            "{} is not UTF-8 text: pass --binary to store bytes",
            input.input.display()
        ))
    })?;
    Ok((Zeroizing::new(text.to_owned()), "text"))
}

fn version_json(version: &pb::SecretVersionId) -> serde_json::Value {
    json!({
        "VersionId": version.version_id,
        "CreateTime": version.create_time,
        "VersionStages": version.version_stages,
    })
}

/// Runs a `secret` command.
///
/// # Errors
///
/// The server's refusal, or a [`Failure`] reading the value or writing the file.
pub async fn secret(conn: &Connection, cmd: SecretCommand) -> Result<Shown, Failure> {
    let mut api = conn.secrets();
    let shown = match cmd {
        SecretCommand::Create(args) => {
            let (data, data_type) = read_value(&args.value)?;
            let request = pb::CreateSecretRequest {
                secret_name: args.secret_name,
                secret_data: data.to_string(),
                secret_data_type: data_type.into(),
                version_id: args.version_id,
                encryption_key_id: args.key,
                description: args.description,
                extended_config: args.extended_config,
                enable_automatic_rotation: args.rotate_every.is_some(),
                rotation_interval: args.rotate_every.unwrap_or_default(),
                idempotency_token: args.once.token(),
                ..Default::default()
            };
            let reply = retried(|| {
                let (mut api, request) = (api.clone(), conn.request(request.clone()));
                async move { api.create_secret(request).await }
            })
            .await?
            .into_inner();
            Shown::Fields(
                vec![
                    ("SecretName", reply.secret_name.clone()),
                    ("VersionId", reply.version_id.clone()),
                    ("AutomaticRotation", reply.automatic_rotation.clone()),
                    ("NextRotationDate", date(&reply.next_rotation_date)),
                ],
                json!({
                    "SecretName": reply.secret_name,
                    "SecretType": reply.secret_type,
                    "VersionId": reply.version_id,
                    "AutomaticRotation": reply.automatic_rotation,
                    "RotationInterval": reply.rotation_interval,
                    "NextRotationDate": reply.next_rotation_date,
                    "RequestId": reply.request_id,
                }),
            )
        }
        SecretCommand::Put(args) => {
            let (data, data_type) = read_value(&args.value)?;
            let stages = if args.stages.is_empty() {
                String::new()
            } else {
                json!(args.stages).to_string()
            };
            let request = pb::PutSecretValueRequest {
                secret_name: args.secret_name,
                version_id: args.version_id,
                secret_data: data.to_string(),
                secret_data_type: data_type.into(),
                version_stages: stages,
            };
            let reply = api
                .put_secret_value(conn.request(request))
                .await?
                .into_inner();
            Shown::Fields(
                vec![
                    ("SecretName", reply.secret_name.clone()),
                    ("VersionId", reply.version_id.clone()),
                    ("VersionStages", reply.version_stages.join(", ")),
                ],
                json!({
                    "SecretName": reply.secret_name,
                    "VersionId": reply.version_id,
                    "VersionStages": reply.version_stages,
                    "RequestId": reply.request_id,
                }),
            )
        }
        SecretCommand::Get(args) => {
            let request = pb::GetSecretValueRequest {
                secret_name: args.secret_name,
                version_stage: args.stage,
                version_id: args.version_id,
                fetch_extended_config: args.extended_config,
            };
            let mut reply = conn
                .crypto()
                .get_secret_value(conn.request(request))
                .await?
                .into_inner();
            let data = Zeroizing::new(std::mem::take(&mut reply.secret_data));
            let bytes = match reply.secret_data_type.as_str() {
                "binary" => Zeroizing::new(BASE64.decode(data.as_bytes()).map_err(|_| {
                    Failure::Usage("the server sent binary data that is not base64".into())
                })?),
                _ => Zeroizing::new(data.as_bytes().to_vec()),
            };
            let out = args.out.unwrap_or_else(|| "-".into());
            write_private(&out, &bytes, "the secret value")?;
            let value = json!({
                "SecretName": reply.secret_name,
                "VersionId": reply.version_id,
                "VersionStages": reply.version_stages,
                "SecretDataType": reply.secret_data_type,
                "CreateTime": reply.create_time,
                "ExtendedConfig": reply.extended_config,
                "File": out.display().to_string(),
                "RequestId": reply.request_id,
            });
            if out.as_os_str() == "-" {
                // The value went to stdout (--stdout, or --out -): nothing else may.
                Shown::Nothing
            } else {
                let mut fields = vec![
                    ("SecretName", reply.secret_name.clone()),
                    ("VersionId", reply.version_id.clone()),
                    ("VersionStages", reply.version_stages.join(", ")),
                    ("File", out.display().to_string()),
                ];
                if args.extended_config {
                    fields.push(("ExtendedConfig", reply.extended_config.clone()));
                }
                Shown::Fields(fields, value)
            }
        }
        SecretCommand::Describe(args) => {
            let request = pb::DescribeSecretRequest {
                secret_name: args.secret_name,
            };
            let reply = api
                .describe_secret(conn.request(request))
                .await?
                .into_inner();
            Shown::Fields(
                vec![
                    ("SecretName", reply.secret_name.clone()),
                    ("SecretType", reply.secret_type.clone()),
                    ("Description", reply.description.clone()),
                    ("EncryptionKeyId", reply.encryption_key_id.clone()),
                    ("CreateTime", date(&reply.create_time)),
                    ("UpdateTime", date(&reply.update_time)),
                    ("PlannedDeleteTime", date(&reply.planned_delete_time)),
                    ("AutomaticRotation", reply.automatic_rotation.clone()),
                    ("RotationInterval", reply.rotation_interval.clone()),
                    ("NextRotationDate", date(&reply.next_rotation_date)),
                ],
                json!({
                    "SecretName": reply.secret_name,
                    "SecretType": reply.secret_type,
                    "Description": reply.description,
                    "EncryptionKeyId": reply.encryption_key_id,
                    "CreateTime": reply.create_time,
                    "UpdateTime": reply.update_time,
                    "PlannedDeleteTime": reply.planned_delete_time,
                    "AutomaticRotation": reply.automatic_rotation,
                    "RotationInterval": reply.rotation_interval,
                    "LastRotationDate": reply.last_rotation_date,
                    "NextRotationDate": reply.next_rotation_date,
                    "ExtendedConfig": reply.extended_config,
                    "RequestId": reply.request_id,
                }),
            )
        }
        SecretCommand::List(args) => {
            let filters = if args.prefix.is_empty() {
                String::new()
            } else {
                json!([{ "Key": "SecretName", "Values": [args.prefix] }]).to_string()
            };
            let mut secrets = Vec::new();
            for page_number in 1.. {
                let request = pb::ListSecretsRequest {
                    page_number,
                    page_size: PAGE_SIZE,
                    filters: filters.clone(),
                };
                let reply = api.list_secrets(conn.request(request)).await?.into_inner();
                let done = reply.secret_list.is_empty()
                    || secrets.len() + reply.secret_list.len() >= reply.total_count as usize;
                secrets.extend(reply.secret_list);
                if done {
                    break;
                }
            }
            let value = json!({ "SecretList": secrets.iter().map(|s| json!({
                "SecretName": s.secret_name,
                "SecretType": s.secret_type,
                "CreateTime": s.create_time,
                "UpdateTime": s.update_time,
                "PlannedDeleteTime": s.planned_delete_time,
            })).collect::<Vec<_>>() });
            let rows = secrets
                .iter()
                .map(|s| {
                    vec![
                        s.secret_name.clone(),
                        date(&s.update_time),
                        date(&s.planned_delete_time),
                    ]
                })
                .collect();
            Shown::Table(vec!["SECRET", "UPDATED", "DELETION"], rows, value)
        }
        SecretCommand::Versions(args) => {
            let mut versions = Vec::new();
            for page_number in 1.. {
                let request = pb::ListSecretVersionIdsRequest {
                    secret_name: args.secret_name.clone(),
                    include_deprecated: args.all,
                    page_number,
                    page_size: PAGE_SIZE,
                };
                let reply = api
                    .list_secret_version_ids(conn.request(request))
                    .await?
                    .into_inner();
                let done = reply.version_ids.is_empty()
                    || versions.len() + reply.version_ids.len() >= reply.total_count as usize;
                versions.extend(reply.version_ids);
                if done {
                    break;
                }
            }
            let value = json!({
                "SecretName": args.secret_name,
                "VersionIds": versions.iter().map(version_json).collect::<Vec<_>>(),
            });
            let rows = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version_id.clone(),
                        date(&v.create_time),
                        v.version_stages.join(", "),
                    ]
                })
                .collect();
            Shown::Table(vec!["VERSION", "CREATED", "STAGES"], rows, value)
        }
        SecretCommand::Update(args) => {
            let request = pb::UpdateSecretRequest {
                secret_name: args.secret_name.clone(),
                description: args.description.clone(),
                extended_config: args.extended_config.clone(),
            };
            let reply = api.update_secret(conn.request(request)).await?.into_inner();
            Shown::Line(
                format!("updated {}", args.secret_name),
                json!({
                    "SecretName": args.secret_name,
                    "Description": args.description,
                    "ExtendedConfig": args.extended_config,
                    "RequestId": reply.request_id,
                }),
            )
        }
        SecretCommand::Stage(args) => {
            let line = format!(
                "moved {} of {}{}{}",
                args.stage,
                args.secret_name,
                if args.from.is_empty() {
                    String::new()
                } else {
                    format!(" from {}", args.from)
                },
                if args.to.is_empty() {
                    String::new()
                } else {
                    format!(" to {}", args.to)
                },
            );
            let request = pb::UpdateSecretVersionStageRequest {
                secret_name: args.secret_name.clone(),
                version_stage: args.stage.clone(),
                remove_from_version: args.from.clone(),
                move_to_version: args.to.clone(),
            };
            let reply = api
                .update_secret_version_stage(conn.request(request))
                .await?
                .into_inner();
            Shown::Line(
                line,
                json!({
                    "SecretName": args.secret_name,
                    "VersionStage": args.stage,
                    "RemoveFromVersion": args.from,
                    "MoveToVersion": args.to,
                    "RequestId": reply.request_id,
                }),
            )
        }
        SecretCommand::RotationPolicy(args) => {
            let enable = args.every.is_some();
            let request = pb::UpdateSecretRotationPolicyRequest {
                secret_name: args.secret_name.clone(),
                enable_automatic_rotation: enable,
                rotation_interval: args.every.clone().unwrap_or_default(),
            };
            let reply = api
                .update_secret_rotation_policy(conn.request(request))
                .await?
                .into_inner();
            let line = match &args.every {
                Some(every) => format!("automatic rotation of {} every {every}", args.secret_name),
                None => format!("automatic rotation of {} off", args.secret_name),
            };
            Shown::Line(
                line,
                json!({
                    "SecretName": args.secret_name,
                    "EnableAutomaticRotation": enable,
                    "RotationInterval": args.every,
                    "RequestId": reply.request_id,
                }),
            )
        }
        SecretCommand::Delete(args) => {
            let request = pb::DeleteSecretRequest {
                secret_name: args.secret_name,
                recovery_window_in_days: args.days.unwrap_or(0),
                force_delete_without_recovery: args.force,
            };
            let reply = api.delete_secret(conn.request(request)).await?.into_inner();
            let line = if args.force {
                format!("deleted {}", reply.secret_name)
            } else {
                format!(
                    "{} will be deleted at {}",
                    reply.secret_name,
                    date(&reply.planned_delete_time)
                )
            };
            Shown::Line(
                line,
                json!({
                    "SecretName": reply.secret_name,
                    "PlannedDeleteTime": reply.planned_delete_time,
                    "RequestId": reply.request_id,
                }),
            )
        }
        SecretCommand::Restore(args) => {
            let request = pb::RestoreSecretRequest {
                secret_name: args.secret_name,
            };
            let reply = api
                .restore_secret(conn.request(request))
                .await?
                .into_inner();
            Shown::Line(
                format!("restored {}", reply.secret_name),
                json!({ "SecretName": reply.secret_name, "RequestId": reply.request_id }),
            )
        }
    };
    Ok(shown)
}
