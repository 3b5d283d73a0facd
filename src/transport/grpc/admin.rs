//! `kms.v1.AdminService`: operations on the server itself over gRPC. Backup streams
//! the snapshot [`crate::api::admin::backup`] took, in pieces, and the size and
//! SHA-256 at the end.

use std::pin::Pin;

use tokio::io::AsyncReadExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::services::{admitted, reply, respond};
use crate::backup::Snapshot;
use crate::error::KmsError;
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
        // A small queue: the reader waits for a slow client instead of filling memory.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let request_id = caller.request_id;
        tokio::spawn(async move {
            if let Err(err) = stream_snapshot(&snapshot, &tx, &request_id).await {
                let err = KmsError::internal(format!("streaming the snapshot: {err}"));
                let _ = tx
                    .send(Err(super::status::to_status(&err, &request_id)))
                    .await;
            }
            // The snapshot (and its directory) goes once everything is sent.
            drop(snapshot);
        });
        let stream: BackupStream = Box::pin(ReceiverStream::new(rx));
        Ok(respond(stream, &caller))
    }
}

/// Sends the snapshot's bytes in order, then a last piece with its size and digest.
/// A client that went away ends it quietly.
async fn stream_snapshot(
    snapshot: &Snapshot,
    tx: &tokio::sync::mpsc::Sender<Result<BackupChunk, Status>>,
    request_id: &RequestId,
) -> std::io::Result<()> {
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
            break;
        }
        data.truncate(filled);
        let chunk = BackupChunk {
            data,
            request_id: request_id.to_string(),
            ..Default::default()
        };
        if tx.send(Ok(chunk)).await.is_err() {
            return Ok(());
        }
    }
    let last = BackupChunk {
        data: Vec::new(),
        size: snapshot.size(),
        sha256: snapshot.sha256().to_owned(),
        request_id: request_id.to_string(),
    };
    let _ = tx.send(Ok(last)).await;
    Ok(())
}
