//! The audit log (`--audit-log FILE`): one JSON line per RPC, health and reflection
//! excepted.
//!
//! ```json
//! {"time":"2026-01-01T00:00:00.000Z","request_id":"…","principal":"payments",
//!  "operation":"AdvanceDecrypt","key_id":"key-…","key_version_id":"…",
//!  "key_pair_spec":null,"outcome":"OK","error_code":null}
//! ```
//!
//! - A transport starts a [`PendingRecord`] for each call of a catalogue operation
//!   ([`AuditLog::begin`]); authentication writes the principal into the call's
//!   [`CallNote`], the core the key ID (as sent, then as resolved), the version and the
//!   key pair spec. When the call ends the transport finishes the record with its
//!   [`Outcome`]; a call dropped before that (client gone) is recorded as `CANCELLED`.
//!   The gRPC transport's tower layer is `transport::grpc::audit`.
//! - What is never written: plaintext, private keys, ciphertexts, tokens, AAD. The
//!   note has no field that could hold them.
//! - Lines go through a bounded queue to one writer thread, which appends batches to
//!   the file (`O_APPEND`, so restarts add to it) and never blocks an async thread. A
//!   failed write or a full queue is logged at error level with the number of records
//!   lost; [`AuditLog::flush`] waits until everything queued so far is written.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::call::CallNote;
use crate::error::Outcome;
use crate::ops::Operation;
use crate::request_id::RequestId;

/// Records queued for the writer at most; beyond it records are dropped (and that is
/// logged) rather than making callers wait for the disk.
pub const AUDIT_QUEUE_CAPACITY: usize = 16 * 1024;

/// How long [`AuditLog::flush`] waits for the writer.
pub const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When the call completed, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The call's request ID.
    pub request_id: String,
    /// The principal's name; `null` when access control is off or nobody was recognised.
    pub principal: Option<String>,
    /// The operation's catalogue name, e.g. `Decrypt`.
    pub operation: String,
    /// The key: the resolved key ID when the call got that far, else the `KeyId` as sent.
    pub key_id: Option<String>,
    /// The key version used or named.
    pub key_version_id: Option<String>,
    /// The key pair spec of a Generate call.
    pub key_pair_spec: Option<String>,
    /// `OK` or the gRPC code, e.g. `PERMISSION_DENIED`.
    pub outcome: String,
    /// The public error code (e.g. `Forbidden.NoPermission`) of a failed call.
    pub error_code: Option<String>,
}

// === impl AuditLog ===

enum Message {
    Line(String),
    Barrier(mpsc::Sender<()>),
}

/// The audit log's queue and writer thread. Cheap to clone; the writer stops when the
/// last clone is dropped, after writing what was queued.
#[derive(Clone, Debug)]
pub struct AuditLog {
    sender: SyncSender<Message>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line(_) => f.write_str("Line"),
            Self::Barrier(_) => f.write_str("Barrier"),
        }
    }
}

impl AuditLog {
    /// Opens `path` for appending (created with mode 0600 if missing) and starts the
    /// writer thread.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, or the thread cannot be started.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        let (sender, receiver) = mpsc::sync_channel(AUDIT_QUEUE_CAPACITY);
        let path = Arc::new(path.to_path_buf());
        let thread_path = Arc::clone(&path);
        std::thread::Builder::new()
            .name("kmsd-audit".into())
            .spawn(move || write_loop(file, &receiver, &thread_path))?;
        Ok(Self { sender, path })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the record of one call of `operation`; see [`PendingRecord`].
    pub fn begin(
        &self,
        operation: Operation,
        request_id: RequestId,
        note: CallNote,
    ) -> PendingRecord {
        PendingRecord {
            log: self.clone(),
            note,
            request_id,
            operation,
            finished: false,
        }
    }

    /// Queues one record; never waits. A full or stopped queue loses the record, and
    /// says so at error level.
    pub fn record(&self, record: &AuditRecord) {
        let mut line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!(error = %err, "AUDIT: cannot encode a record; it is lost");
                return;
            }
        };
        line.push('\n');
        match self.sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::error!(
                path = %self.path.display(),
                request_id = %record.request_id,
                "AUDIT: the audit queue is full (the disk is too slow or stuck); record lost"
            ),
            Err(TrySendError::Disconnected(_)) => tracing::error!(
                path = %self.path.display(),
                request_id = %record.request_id,
                "AUDIT: the audit writer has stopped; record lost"
            ),
        }
    }

    /// Waits (on a blocking thread, at most [`AUDIT_FLUSH_TIMEOUT`]) until every record
    /// queued before the call has been handed to the file. Returns whether it was.
    pub async fn flush(&self) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        let sender = self.sender.clone();
        tokio::task::spawn_blocking(move || {
            let queued = sender.send_timeout_compat(Message::Barrier(done_tx));
            queued && done_rx.recv_timeout(AUDIT_FLUSH_TIMEOUT).is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

trait SendTimeoutCompat {
    fn send_timeout_compat(&self, message: Message) -> bool;
}

impl SendTimeoutCompat for SyncSender<Message> {
    /// `SyncSender::send` with a deadline (std has none on stable): retries `try_send`.
    fn send_timeout_compat(&self, mut message: Message) -> bool {
        let deadline = std::time::Instant::now() + AUDIT_FLUSH_TIMEOUT;
        loop {
            match self.try_send(message) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

fn write_loop(mut file: File, receiver: &Receiver<Message>, path: &Path) {
    let mut lost_total: u64 = 0;
    while let Ok(first) = receiver.recv() {
        let mut batch = String::new();
        let mut records: u64 = 0;
        let mut barriers = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    batch.push_str(&line);
                    records += 1;
                }
                Message::Barrier(done) => barriers.push(done),
            }
            next = if batch.len() < 1 << 20 {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty()
            && let Err(err) = file.write_all(batch.as_bytes())
        {
            lost_total += records;
            tracing::error!(
                path = %path.display(),
                error = %err,
                lost = records,
                lost_total,
                "AUDIT LOG WRITE FAILED: audit records are being lost"
            );
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}

// === impl PendingRecord ===

/// The audit record of a call under way. [`Self::finish`] writes it with the call's
/// outcome; dropped unfinished (the client went away), it is written as `CANCELLED`.
#[derive(Debug)]
pub struct PendingRecord {
    log: AuditLog,
    note: CallNote,
    request_id: RequestId,
    operation: Operation,
    finished: bool,
}

impl PendingRecord {
    /// Writes the record with `outcome` and the fields noted so far.
    pub fn finish(mut self, outcome: Outcome) {
        self.write(outcome);
    }

    fn write(&mut self, outcome: Outcome) {
        self.finished = true;
        let fields = self.note.fields();
        self.log.record(&AuditRecord {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            request_id: self.request_id.to_string(),
            principal: fields.principal,
            operation: self.operation.name().to_owned(),
            key_id: fields.key_id,
            key_version_id: fields.key_version_id,
            key_pair_spec: fields.key_pair_spec,
            outcome: outcome.code.name().to_owned(),
            error_code: outcome.error_code.map(str::to_owned),
        });
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if !self.finished {
            self.write(Outcome::CANCELLED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_records(path: &Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn record(id: &str) -> AuditRecord {
        AuditRecord {
            time: "t".into(),
            request_id: id.into(),
            operation: "Decrypt".into(),
            outcome: "OK".into(),
            ..AuditRecord::default()
        }
    }

    #[tokio::test]
    async fn appends_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.record(&record("a"));
        assert!(log.flush().await);
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.record(&record("b"));
        assert!(log.flush().await);
        let ids: Vec<String> = read_records(&path)
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[tokio::test]
    async fn pending_records_carry_the_note_and_the_outcome_or_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let note = CallNote::default();
        note.set_principal("payments");
        note.set_key_id("key-abc");
        let failed = crate::error::KmsError::PermissionDenied;
        log.begin(Operation::Decrypt, RequestId::new(), note)
            .finish(Outcome::of_error(&failed));
        drop(log.begin(Operation::CreateKey, RequestId::new(), CallNote::default()));
        assert!(log.flush().await);
        let records = read_records(&path);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].operation, "Decrypt");
        assert_eq!(records[0].principal.as_deref(), Some("payments"));
        assert_eq!(records[0].key_id.as_deref(), Some("key-abc"));
        assert_eq!(records[0].outcome, "PERMISSION_DENIED");
        assert_eq!(
            records[0].error_code.as_deref(),
            Some("Forbidden.NoPermission")
        );
        assert_eq!(records[1].operation, "CreateKey");
        assert_eq!(records[1].outcome, "CANCELLED");
        assert_eq!(records[1].error_code, None);
    }
}
