//! `kmsctl backup`: streams the server's snapshot into a file, checks its size and
//! SHA-256 against the server's last piece, and only then puts it in place.

use std::io::Write;
use std::path::PathBuf;

use kmsd_api::pb::BackupRequest;
use kmsd_api::pb::admin_service_client::AdminServiceClient;
use serde_json::json;

use crate::cli::BackupArgs;
use crate::connect::Connection;
use crate::failure::Failure;
use crate::output::Shown;

/// Runs `backup`.
pub async fn backup(conn: &Connection, args: BackupArgs) -> Result<Shown, Failure> {
    let doing = "writing the backup to";
    let dir = match args.out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".kmsctl-backup-")
        .permissions(private())
        .tempfile_in(&dir)
        .map_err(|err| Failure::file(doing, &args.out, err))?;
    // A backup has no deadline of its own: its size decides how long it takes.
    let mut request = conn.request(BackupRequest {});
    request.set_timeout(std::time::Duration::from_secs(24 * 3600));
    let mut stream = AdminServiceClient::new(conn.channel())
        .backup(request)
        .await?
        .into_inner();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut written = 0u64;
    let mut last = None;
    let mut request_id = String::new();
    while let Some(chunk) = stream.message().await? {
        file.write_all(&chunk.data)
            .map_err(|err| Failure::file(doing, &args.out, err))?;
        digest.update(&chunk.data);
        written += chunk.data.len() as u64;
        request_id = chunk.request_id;
        if !chunk.sha256.is_empty() {
            last = Some((chunk.size, chunk.sha256));
            break;
        }
    }
    let Some((size, sha256)) = last else {
        return Err(Failure::Connect(
            "the backup stream ended before its last piece; nothing was written".into(),
        ));
    };
    let ours: String = digest
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if size != written || sha256 != ours {
        return Err(Failure::Connect(format!(
            "the backup arrived damaged ({written} of {size} bytes, SHA-256 {ours}, the \
             server's {sha256}); nothing was written"
        )));
    }
    file.as_file()
        .sync_all()
        .map_err(|err| Failure::file(doing, &args.out, err))?;
    file.persist(&args.out)
        .map_err(|err| Failure::file(doing, &args.out, err.error))?;
    Ok(Shown::Fields(
        vec![
            ("Backup", args.out.display().to_string()),
            ("Size", format!("{size} bytes")),
            ("SHA-256", sha256.clone()),
            ("Request ID", request_id.clone()),
        ],
        json!({
            "File": args.out.display().to_string(),
            "Size": size,
            "Sha256": sha256,
            "RequestId": request_id,
        }),
    ))
}

#[cfg(unix)]
fn private() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o600)
}

#[cfg(not(unix))]
fn private() -> std::fs::Permissions {
    std::fs::metadata(".").map(|m| m.permissions()).unwrap()
}
