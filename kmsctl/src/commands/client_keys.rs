//! Client keys of the HTTPS gateway: create one (writing the SDK's client key file),
//! list, delete.

use kmsd_api::pb;
use serde_json::json;

use crate::cli::ClientKeyCommand;
use crate::connect::Connection;
use crate::failure::Failure;
use crate::files::{read_input, write_private};
use crate::output::{Shown, date};
use crate::retry::retried;

fn client_key_json(key: &pb::ClientKey) -> serde_json::Value {
    json!({
        "ClientKeyId": key.client_key_id,
        "Principal": key.principal,
        "NotBefore": key.not_before,
        "NotAfter": key.not_after,
        "CreationDate": key.creation_date,
        "MintedBy": key.minted_by,
        "MintedUnder": key.minted_under,
    })
}

/// Who minted a key, as the list shows it: the principal, `(open)` without access
/// control, and `(readmitted)` or `(unknown)` after the name when so.
fn minted(key: &pb::ClientKey) -> String {
    match (key.minted_by.as_str(), key.minted_under.as_str()) {
        ("", "open") => "(open)".into(),
        (by, "policy") => by.into(),
        ("", under) => format!("({under})"),
        (by, under) => format!("{by} ({under})"),
    }
}

/// Runs a `client-key` command.
///
/// # Errors
///
/// The server's refusal, or a [`Failure`] reading the password or writing the file.
pub async fn client_key(conn: &Connection, cmd: ClientKeyCommand) -> Result<Shown, Failure> {
    let mut api = conn.management();
    let shown = match cmd {
        ClientKeyCommand::Create(args) => {
            let bytes = read_input(&args.password_file, "the password")?;
            let text = String::from_utf8_lossy(&bytes);
            let password = zeroize::Zeroizing::new(text.lines().next().unwrap_or("").to_owned());
            let request = pb::CreateClientKeyRequest {
                principal: args.principal,
                password: password.to_string(),
                not_before: args.not_before,
                not_after: args.not_after,
                idempotency_token: args.once.token(),
            };
            let reply = retried(|| {
                let (mut api, request) = (api.clone(), conn.request(request.clone()));
                async move { api.create_client_key(request).await }
            })
            .await?
            .into_inner();
            let file = zeroize::Zeroizing::new(
                json!({ "KeyId": reply.client_key_id, "PrivateKeyData": reply.private_key_data })
                    .to_string(),
            );
            write_private(&args.out, file.as_bytes(), "the client key file")?;
            let key = reply.client_key.unwrap_or_default();
            Shown::Fields(
                vec![
                    ("ClientKeyId", key.client_key_id.clone()),
                    ("Principal", key.principal.clone()),
                    ("NotAfter", date(&key.not_after)),
                    ("File", args.out.display().to_string()),
                ],
                client_key_json(&key),
            )
        }
        ClientKeyCommand::List(args) => {
            let mut keys = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListClientKeysRequest {
                    page_size: args.page_size,
                    page_token,
                };
                let reply = api
                    .list_client_keys(conn.request(request))
                    .await?
                    .into_inner();
                keys.extend(reply.client_keys);
                if reply.next_page_token.is_empty() {
                    break;
                }
                page_token = reply.next_page_token;
            }
            let value =
                json!({ "ClientKeys": keys.iter().map(client_key_json).collect::<Vec<_>>() });
            let rows = keys
                .iter()
                .map(|k| {
                    vec![
                        k.client_key_id.clone(),
                        k.principal.clone(),
                        date(&k.not_before),
                        date(&k.not_after),
                        minted(k),
                        date(&k.creation_date),
                    ]
                })
                .collect();
            Shown::Table(
                vec![
                    "CLIENT KEY ID",
                    "PRINCIPAL",
                    "NOT BEFORE",
                    "NOT AFTER",
                    "MINTED BY",
                    "MINTED",
                ],
                rows,
                value,
            )
        }
        ClientKeyCommand::Delete(args) => {
            let id = args.client_key_id.clone();
            let request = pb::DeleteClientKeyRequest {
                client_key_id: args.client_key_id,
            };
            let reply = api
                .delete_client_key(conn.request(request))
                .await?
                .into_inner();
            Shown::Line(
                format!("deleted {id}"),
                json!({ "ClientKeyId": id, "RequestId": reply.request_id }),
            )
        }
    };
    Ok(shown)
}
