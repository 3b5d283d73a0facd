//! Online backups of the embedded store: the Backup operation's snapshot.
//!
//! A snapshot is a redb database file written from one read transaction of the live
//! store ([`crate::store::KeyStore::snapshot`]), so it is consistent while writers go
//! on. It is written into a private temporary directory inside the data directory (the
//! one place a server can always write: containers run with a read-only root file
//! system) and removed when the [`Snapshot`] is dropped, i.e. once it has been sent.
//! It holds what the store holds: records and key material sealed under the root
//! key, never the root key, so it is useless without the root key.
//!
//! Bounds ([`Backups`]): a snapshot is a full copy of the store on disk for as long as
//! its stream lasts, so at most [`MAX_CONCURRENT_BACKUPS`] exist at a time (another
//! Backup is `Rejected.Throttling`), and a stream not delivered within
//! [`BACKUP_STREAM_DEADLINE`] is abandoned and its snapshot removed: a client that
//! never reads cannot fill the disk.
//!
//! Restoring: with the server stopped, the snapshot becomes `<data-dir>/kmsd.redb` of
//! a data directory and the server starts with the same root key (README: Backups).
//! [`verify`] checks a backup offline first (`kmsd backup verify`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::KmsError;
use crate::keys::KeyRegistry;

pub mod verify;

/// Prefix of the temporary directories snapshots are written in.
pub const SNAPSHOT_DIR_PREFIX: &str = ".backup-";

/// Snapshots that may exist at once: each is a full copy of the store on disk.
pub const MAX_CONCURRENT_BACKUPS: usize = 2;

/// How long a Backup stream may take to be delivered before it is abandoned and its
/// snapshot removed: minutes for a store of gigabytes over a slow link, not the hours
/// a client that stopped reading would hold it.
pub const BACKUP_STREAM_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// The backups of one server: their slots and their stream deadline. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Backups {
    slots: Arc<Semaphore>,
    deadline_ms: Arc<AtomicU64>,
}

impl Default for Backups {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_BACKUPS)),
            deadline_ms: Arc::new(AtomicU64::new(
                u64::try_from(BACKUP_STREAM_DEADLINE.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }
}

impl Backups {
    /// Takes a snapshot in a free slot, held until the [`Snapshot`] is dropped.
    ///
    /// # Errors
    ///
    /// [`KmsError::Throttled`] when [`MAX_CONCURRENT_BACKUPS`] are in progress; else
    /// those of [`Snapshot::take`].
    pub async fn take(
        &self,
        registry: &KeyRegistry,
        data_dir: &Path,
    ) -> Result<Snapshot, KmsError> {
        let slot = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            tracing::info!(
                max = MAX_CONCURRENT_BACKUPS,
                "backup refused: the other snapshots are still being streamed"
            );
            KmsError::Throttled
        })?;
        let mut snapshot = Snapshot::take(registry, data_dir).await?;
        snapshot._slot = Some(slot);
        Ok(snapshot)
    }

    /// How long a stream may take to be delivered ([`BACKUP_STREAM_DEADLINE`]).
    pub fn stream_deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms.load(Ordering::Relaxed))
    }

    /// Sets the stream deadline: for tests, which cannot wait minutes.
    pub fn set_stream_deadline(&self, deadline: Duration) {
        let millis = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self.deadline_ms.store(millis, Ordering::Relaxed);
    }
}

/// A snapshot on disk, with its size and digest; its file is removed on drop (and its
/// slot of [`Backups`] freed).
#[derive(Debug)]
pub struct Snapshot {
    _slot: Option<OwnedSemaphorePermit>,
    _dir: TempDir,
    path: PathBuf,
    size: u64,
    sha256: String,
}

impl Snapshot {
    /// Takes a snapshot of `registry`'s store in a temporary directory under
    /// `data_dir`.
    ///
    /// # Errors
    ///
    /// [`KmsError::UnsupportedOperation`] when the store is not backed up this way
    /// (PostgreSQL: its own tools); an internal error if the snapshot cannot be written.
    pub async fn take(registry: &KeyRegistry, data_dir: &Path) -> Result<Self, KmsError> {
        let dir = tempfile::Builder::new()
            .prefix(SNAPSHOT_DIR_PREFIX)
            .tempdir_in(data_dir)
            .map_err(|err| KmsError::internal(format!("creating the snapshot directory: {err}")))?;
        // Only the server's user may enter, whatever the umask (it is still empty).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(
                |err| KmsError::internal(format!("securing the snapshot directory: {err}")),
            )?;
        }
        let path = dir.path().join(crate::store::redb::DB_FILE_NAME);
        if !registry.snapshot(&path).await? {
            return Err(KmsError::UnsupportedOperation(
                "Backup streams the embedded store; this server's store is backed up with \
                 its database's own tools."
                    .into(),
            ));
        }
        let (size, sha256) = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || digest_file(&path))
                .await
                .map_err(KmsError::internal)?
                .map_err(|err| KmsError::internal(format!("reading the snapshot: {err}")))?
        };
        tracing::info!(size, "backup: snapshot taken");
        Ok(Self {
            _slot: None,
            _dir: dir,
            path,
            size,
            sha256,
        })
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its SHA-256, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Removes the snapshot directories a server that stopped mid-backup (a crash, a
/// SIGKILL) left in `data_dir`. Run at start, before serving; a directory that cannot
/// be removed is logged and left.
pub fn remove_leftovers(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_snapshot = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(SNAPSHOT_DIR_PREFIX));
        if is_snapshot && entry.file_type().is_ok_and(|t| t.is_dir()) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed an unfinished backup snapshot")
                }
                Err(err) => {
                    tracing::warn!(path = %entry.path().display(), error = %err, "cannot remove an unfinished backup snapshot")
                }
            }
        }
    }
}

/// The size and SHA-256 (hex) of a file.
fn digest_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        context.update(&buffer[..read]);
    }
    let hex = context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{Fixture, create};

    #[tokio::test]
    async fn a_snapshot_is_private_digested_and_removed_when_dropped() {
        let fixture = Fixture::new().await;
        create(&fixture.registry).await;
        let data_dir = tempfile::tempdir().unwrap();
        let snapshot = Snapshot::take(&fixture.registry, data_dir.path())
            .await
            .unwrap();
        let bytes = std::fs::read(snapshot.path()).unwrap();
        assert_eq!(bytes.len() as u64, snapshot.size());
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(snapshot.sha256(), hex);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = snapshot.path().parent().unwrap();
            let mode = std::fs::metadata(dir).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "only the server's user may enter: {mode:o}"
            );
        }
        // Sealed material only: the root key's bytes are nowhere in it.
        let root = Fixture::root_key();
        assert!(
            !bytes
                .windows(32)
                .any(|w| w == root.expose_secret().as_slice())
        );
        let dir = snapshot.path().parent().unwrap().to_owned();
        drop(snapshot);
        assert!(!dir.exists());
    }

    #[test]
    fn leftover_snapshots_are_removed_and_nothing_else() {
        let data_dir = tempfile::tempdir().unwrap();
        let leftover = data_dir.path().join(format!("{SNAPSHOT_DIR_PREFIX}abc123"));
        std::fs::create_dir(&leftover).unwrap();
        std::fs::write(leftover.join("kmsd.redb"), b"half a snapshot").unwrap();
        std::fs::write(data_dir.path().join("kmsd.redb"), b"the store").unwrap();
        std::fs::write(data_dir.path().join(".backup-note"), b"a file, not ours").unwrap();
        remove_leftovers(data_dir.path());
        assert!(!leftover.exists());
        assert!(data_dir.path().join("kmsd.redb").exists());
        assert!(data_dir.path().join(".backup-note").exists());
    }
}
