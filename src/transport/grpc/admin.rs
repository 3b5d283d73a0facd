//! `kms.v1.AdminService`: operations on the server itself over gRPC. Backup streams
//! the snapshot [`crate::api::admin::backup`] took, in pieces, and the size and
//! SHA-256 at the end.

use std::pin::Pin;

use tokio::io::AsyncReadExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::services::{admitted, reply};
use crate::backup::Snapshot;
use crate::error::{KmsError, Outcome, StatusCode};
use crate::kms::Kms;
use crate::request_id::RequestId;
use kmsd_api::pb::admin_service_server::AdminService;
use kmsd_api::pb::{BackupChunk, BackupRequest};

/// Bytes per streamed piece: well under any client's default message limit (4 MiB).
pub const BACKUP_CHUNK_LEN: usize = 64 * 1024;

/// The gRPC face of the operations on the server itself.
#[derive(Clone, Debug)]
pub struct AdminApi {
    kms: Kms,
}

impl AdminApi {
    /// Serves `kms` over gRPC.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }
}

/// The stream of a Backup response.
pub type BackupStream = Pin<Box<dyn Stream<Item = Result<BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl AdminService for AdminApi {
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        request: Request<BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        let caller = admitted(&request)?;
        let backup = crate::api::admin::backup(&self.kms, &caller, request.into_inner()).await;
        let snapshot = reply(backup, &caller)?;
        // The call ends when the stream has been delivered, not now: its audit record
        // waits for that.
        let ended = caller.note.defer_outcome();
        let deadline = self.kms.backups().stream_deadline();
        // A small queue: the reader waits for a slow client instead of filling memory.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // Fired when the transport takes the last piece: everything before it is with
        // the client's connection, so the backup counts as delivered.
        let (taken_tx, taken_rx) = tokio::sync::oneshot::channel::<()>();
        let mut taken_tx = Some(taken_tx);
        let request_id = caller.request_id;
        tokio::spawn(async move {
            let delivery = async {
                // The last piece's slot, held from the start: always room for it.
                let Ok(last_slot) = tx.reserve().await else {
                    return Outcome::CANCELLED;
                };
                match stream_snapshot(&snapshot, &tx, &request_id).await {
                    Ok(true) => {}
                    Ok(false) => return Outcome::CANCELLED,
                    Err(err) => {
                        let err = KmsError::internal(format!("streaming the snapshot: {err}"));
                        last_slot.send(Err(super::status::to_status(&err, &request_id)));
                        return Outcome::of_error(&err);
                    }
                }
                last_slot.send(Ok(last_piece(&snapshot, &request_id)));
                match taken_rx.await {
                    Ok(()) => Outcome::OK,
                    Err(_) => Outcome::CANCELLED,
                }
            };
            let outcome = match tokio::time::timeout(deadline, delivery).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(
                        %request_id,
                        deadline_secs = deadline.as_secs(),
                        "backup abandoned: its stream was not read within the deadline; snapshot removed"
                    );
                    let _ = tx.try_send(Err(Status::deadline_exceeded(format!(
                        "The backup was not read within {} s and was abandoned.",
                        deadline.as_secs()
                    ))));
                    Outcome {
                        code: StatusCode::DeadlineExceeded,
                        error_code: None,
                    }
                }
            };
            // The snapshot (and its directory, and its slot) goes now, whatever happened.
            drop(snapshot);
            ended.deliver(outcome);
        });
        let stream = ReceiverStream::new(rx).map(move |item| {
            if matches!(&item, Ok(chunk) if !chunk.sha256.is_empty())
                && let Some(taken) = taken_tx.take()
            {
                let _ = taken.send(());
            }
            item
        });
        let stream: BackupStream = Box::pin(stream);
        Ok(Response::new(stream))
    }
}

/// Sends the snapshot's bytes in order; `Ok(false)` when the client went away.
async fn stream_snapshot(
    snapshot: &Snapshot,
    tx: &tokio::sync::mpsc::Sender<Result<BackupChunk, Status>>,
    request_id: &RequestId,
) -> std::io::Result<bool> {
    let mut file = tokio::fs::File::open(snapshot.path()).await?;
    loop {
        let mut data = vec![0u8; BACKUP_CHUNK_LEN];
        let mut filled = 0;
        while filled < data.len() {
            let read = file.read(&mut data[filled..]).await?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        if filled == 0 {
            return Ok(true);
        }
        data.truncate(filled);
        let chunk = BackupChunk {
            data,
            request_id: request_id.to_string(),
            ..Default::default()
        };
        if tx.send(Ok(chunk)).await.is_err() {
            return Ok(false);
        }
    }
}

/// The last piece: no data, the snapshot's size and digest.
fn last_piece(snapshot: &Snapshot, request_id: &RequestId) -> BackupChunk {
    BackupChunk {
        data: Vec::new(),
        size: snapshot.size(),
        sha256: snapshot.sha256().to_owned(),
        request_id: request_id.to_string(),
    }
}
