//! Operations on the server itself: Backup. Its response is a stream of pieces, so it
//! is not a [`super::Call`]: the handler takes the snapshot and the gRPC transport
//! streams it (`transport::grpc::admin`).

use kmsd_api::pb::BackupRequest;

use crate::backup::Snapshot;
use crate::call::Caller;
use crate::error::KmsError;
use crate::kms::Kms;

/// Backup: a consistent snapshot of the embedded store, taken while serving. Names no
/// key. [`KmsError::UnsupportedOperation`] for a store backed up with its own tools.
pub async fn backup(
    kms: &Kms,
    _caller: &Caller,
    _request: BackupRequest,
) -> Result<Snapshot, KmsError> {
    Snapshot::take(kms.registry(), kms.data_dir()).await
}
