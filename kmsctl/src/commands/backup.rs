//! `kmsctl backup`: streams the server's snapshot into a file, checks its size and
//! SHA-256 against the server's last piece, and only then puts it in place. With
//! `--out-dir` the file is named by its time and `--keep N` prunes older ones, for a
//! scheduled job (deploy/kubernetes/backup).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kmsd_api::pb::BackupRequest;
use kmsd_api::pb::admin_service_client::AdminServiceClient;
use serde_json::json;

use crate::cli::BackupArgs;
use crate::connect::Connection;
use crate::failure::Failure;
use crate::output::Shown;

/// Runs `backup`.
pub async fn backup(conn: &Connection, args: BackupArgs) -> Result<Shown, Failure> {
    let out = match (&args.out, &args.out_dir) {
        (Some(out), _) => out.clone(),
        (None, Some(dir)) => dir.join(timed_name(SystemTime::now())),
        (None, None) => return Err(Failure::Usage("name --out or --out-dir".into())),
    };
    let mut shown = write_backup(conn, &out).await?;
    if let (Some(dir), Some(keep)) = (&args.out_dir, args.keep) {
        let removed = prune(dir, keep as usize)
            .map_err(|err| Failure::file("removing older backups in", dir, err))?;
        if let Shown::Fields(fields, json) = &mut shown {
            fields.push(("Removed", removed.len().to_string()));
            json["Removed"] = serde_json::Value::from(
                removed
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(shown)
}

/// The prefix and suffix of the names `--out-dir` gives backups.
const TIMED_PREFIX: &str = "kmsd-";
const TIMED_SUFFIX: &str = ".redb";

/// `kmsd-YYYYMMDDTHHMMSSZ.redb` for `at`: names that sort as their times do.
fn timed_name(at: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{TIMED_PREFIX}{stamp}{TIMED_SUFFIX}")
}

/// Whether `name` is one [`timed_name`] makes.
fn is_timed_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix(TIMED_PREFIX)
        .and_then(|rest| rest.strip_suffix(TIMED_SUFFIX))
    else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
}

/// Removes all but the newest `keep` timed backups in `dir`; returns what it removed.
fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut timed: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_timed_name(name))
        .collect();
    timed.sort();
    let excess = timed.len().saturating_sub(keep);
    let mut removed = Vec::with_capacity(excess);
    for name in timed.into_iter().take(excess) {
        let path = dir.join(name);
        std::fs::remove_file(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

/// Streams the backup into `out`, whole or not at all.
async fn write_backup(conn: &Connection, out: &Path) -> Result<Shown, Failure> {
    let doing = "writing the backup to";
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    remove_leftovers(&dir);
    let file = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(private())
        .tempfile_in(&dir)
        .map_err(|err| Failure::file(doing, out, err))?;
    // Held while this run lives: a later run removes only files nobody holds.
    file.as_file()
        .try_lock()
        .map_err(|err| Failure::file(doing, out, std::io::Error::other(err)))?;
    // SIGINT or SIGTERM drops the temporary file (removing it) and ends the run.
    tokio::select! {
        result = stream_into(conn, file, out) => result,
        signal = interrupted() => Err(Failure::Interrupted(format!(
            "{signal}: the backup was interrupted; nothing was written"
        ))),
    }
}

/// The prefix of the temporary file a backup is streamed into.
const TEMP_PREFIX: &str = ".kmsctl-backup-";

/// Removes the temporary files of runs that ended without cleaning up (SIGKILL, a
/// crash) from `dir`: those no running kmsctl holds locked. Best effort.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TEMP_PREFIX));
        if !is_temp {
            continue;
        }
        let path = entry.path();
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path)
            && file.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Resolves with the signal's name on the first SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default actions stay: never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Streams the backup into the temporary `file`, checks it, and renames it to `out`.
async fn stream_into(
    conn: &Connection,
    mut file: tempfile::NamedTempFile,
    out: &Path,
) -> Result<Shown, Failure> {
    let doing = "writing the backup to";
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
            .map_err(|err| Failure::file(doing, out, err))?;
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
        .map_err(|err| Failure::file(doing, out, err))?;
    file.persist(out)
        .map_err(|err| Failure::file(doing, out, err.error))?;
    Ok(Shown::Fields(
        vec![
            ("Backup", out.display().to_string()),
            ("Size", format!("{size} bytes")),
            ("SHA-256", sha256.clone()),
            ("Request ID", request_id.clone()),
        ],
        json!({
            "File": out.display().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timed_names_sort_by_time_and_only_they_are_pruned() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(timed_name(at), "kmsd-20270115T080000Z.redb");
        assert!(is_timed_name(&timed_name(at)));
        for other in [
            "kmsd-latest.redb",
            "kmsd-20270115T080000Z.redb.bak",
            "notes.txt",
        ] {
            assert!(!is_timed_name(other), "{other}");
        }
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..5)
            .map(|i| timed_name(at + Duration::from_secs(i * 3600)))
            .collect();
        for name in names.iter().chain(["notes.txt".to_owned()].iter()) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = prune(dir.path(), 2).unwrap();
        assert_eq!(
            removed,
            names[..3]
                .iter()
                .map(|n| dir.path().join(n))
                .collect::<Vec<_>>()
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [names[3].clone(), names[4].clone(), "notes.txt".to_owned()]
        );
    }
}
