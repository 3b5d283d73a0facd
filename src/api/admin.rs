//! Operations on the server itself: Backup. Its response is a stream of pieces, so it
//! is not a [`super::Call`]: the handler takes the snapshot and the gRPC transport
//! streams it (`transport::grpc::admin`).

use kmsd_api::pb::BackupRequest;

use crate::backup::Snapshot;
use crate::call::Caller;
use crate::error::KmsError;
use crate::kms::Kms;

/// Backup: a consistent snapshot of the embedded store, taken while serving. It holds
/// every key record and every client key, so it needs a grant on every key (`"*"`):
/// [`KmsError::PermissionDenied`] otherwise. [`KmsError::Throttled`] while
/// [`crate::backup::MAX_CONCURRENT_BACKUPS`] are streamed;
/// [`KmsError::UnsupportedOperation`] for a store backed up with its own tools.
pub async fn backup(
    kms: &Kms,
    caller: &Caller,
    _request: BackupRequest,
) -> Result<Snapshot, KmsError> {
    if !caller.access.has_every_key() {
        tracing::info!("backup refused: the principal's key grants are not \"*\"");
        return Err(KmsError::PermissionDenied);
    }
    kms.backups().take(kms.registry(), kms.data_dir()).await
}
