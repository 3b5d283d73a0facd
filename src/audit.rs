//! The audit log (`--audit-log FILE`): one JSON line per RPC, health and reflection
//! excepted.
//!
//! ```json
//! {"time":"2026-01-01T00:00:00.000Z","request_id":"…","principal":"payments",
//!  "operation":"AdvanceDecrypt","key_id":"key-…","key_version_id":"…",
//!  "key_pair_spec":null,"outcome":"OK","error_code":null}
//! ```
//!
//! A gateway call's record adds `transport: "https"` and the `client_key_id` that
//! signed it; CreateClientKey's adds the `target_principal` the key was made for; a
//! secret operation's names the `secret_name` and the `secret_version_id` it read or
//! wrote (never the data).
//! Every call's record has the W3C `trace_id` it ran under (the caller's
//! `traceparent`, or the fresh trace kmsd started) and kmsd's `span_id` in it: the
//! trace ID joins the record with the caller's trace, the span ID with kmsd's log lines
//! and the `traceparent` it answered.
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
//!   record reaches the disk (`fdatasync`) within [`AUDIT_SYNC_INTERVAL`] of being
//!   queued. A failed write or a full queue is logged at error level with the number of
//!   records lost; [`AuditLog::flush`] waits until everything queued so far is written.
//! - `--audit-required` ([`AuditLog::is_required`]): no call takes effect unless its
//!   request is on disk, and no response is sent unless its outcome is (Vault's rule).
//!   The transport writes a `STARTED` record with [`AuditLog::record_start`] after
//!   authentication and before the operation runs, and finishes the record with
//!   [`PendingRecord::finish_durable`]; either failing fails the call with an internal
//!   error. These writes wait for the disk, and are grouped into one `fdatasync` per
//!   batch.
//! - Calls refused before their caller was authenticated (no valid credentials; on
//!   the gateway also a body over the limit or cut short) are not recorded one by one (a
//!   flood of them would crowd out the real records, and with `--audit-required` force
//!   a disk write each): they are counted, and the writer appends one summary line a
//!   second while there are any, with `operation` `(unauthenticated)` and `count`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::call::CallNote;
use crate::error::{KmsError, Outcome, StatusCode};
use crate::request_id::RequestId;
use kmsd_api::ops::Operation;

/// Records queued for the writer at most; beyond it records are dropped (and that is
/// logged) rather than making callers wait for the disk.
pub const AUDIT_QUEUE_CAPACITY: usize = 16 * 1024;

/// How long [`AuditLog::flush`] and a durable write wait for the writer.
pub const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a queued record waits before it is fsync'd.
pub const AUDIT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The `operation` of the summary line of unauthenticated calls.
pub const UNAUTHENTICATED_OPERATION: &str = "(unauthenticated)";

/// The `outcome` of the request record `--audit-required` writes before a call runs.
pub const STARTED_OUTCOME: &str = "STARTED";

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
    /// The transport that carried the call: `grpc` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The client key that signed an HTTPS gateway call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    /// The principal a call acted on for someone else (CreateClientKey's principal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_principal: Option<String>,
    /// The secret a secret operation named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The secret version it read or wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version_id: Option<String>,
    /// The W3C trace ID the call ran under (32 lowercase hex digits): the caller's,
    /// or the trace kmsd started. Absent from the summary line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// kmsd's span ID for the call (16 lowercase hex digits), as its response's
    /// `traceparent` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// How many calls a summary line stands for (unauthenticated calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

// === impl AuditLog ===

enum Message {
    Line(String),
    /// A line the sender waits for: acknowledged once written and fsync'd (or not).
    Durable(String, mpsc::Sender<bool>),
    Barrier(mpsc::Sender<()>),
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line(_) => f.write_str("Line"),
            Self::Durable(..) => f.write_str("Durable"),
            Self::Barrier(_) => f.write_str("Barrier"),
        }
    }
}

/// The audit log's queue and writer thread. Cheap to clone; the writer stops when the
/// last clone is dropped, after writing what was queued.
#[derive(Clone, Debug)]
pub struct AuditLog {
    sender: SyncSender<Message>,
    path: Arc<PathBuf>,
    required: bool,
    unauthenticated: Arc<AtomicU64>,
    failures: AuditFailures,
}

/// Audit records lost or not made durable (a full queue, a stopped writer, a record
/// that does not encode, a failed write or fsync), exported as
/// `kmsd_audit_failures_total`. Registered with the metrics whether or not there is an
/// audit log, so the alert's series always exists.
#[derive(Clone, Debug, Default)]
pub struct AuditFailures(Arc<AtomicU64>);

impl AuditFailures {
    fn count(&self, failures: u64) {
        self.0.fetch_add(failures, Ordering::Relaxed);
    }

    /// Failures so far.
    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl prometheus_client::collector::Collector for AuditFailures {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        crate::metrics::encode_counter(
            &mut encoder,
            "audit_failures",
            "Audit records lost or not made durable: queue full, writer stopped, write or fsync failed",
            self.total(),
        )
    }
}

impl AuditLog {
    /// Opens `path` for appending (created with mode 0600 if missing) and starts the
    /// writer thread. `required` is `--audit-required`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, or the thread cannot be started.
    pub fn open(path: &Path, required: bool) -> std::io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        let (sender, receiver) = mpsc::sync_channel(AUDIT_QUEUE_CAPACITY);
        let path = Arc::new(path.to_path_buf());
        let unauthenticated = Arc::new(AtomicU64::new(0));
        let failures = AuditFailures::default();
        let writer = Writer {
            file,
            path: Arc::clone(&path),
            unauthenticated: Arc::clone(&unauthenticated),
            failures: failures.clone(),
            lost_total: 0,
            unsynced: false,
            last_sync: Instant::now(),
        };
        std::thread::Builder::new()
            .name("kmsd-audit".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(Self {
            sender,
            path,
            required,
            unauthenticated,
            failures,
        })
    }

    /// The count of lost or undurable records, for the metrics.
    pub fn failures(&self) -> AuditFailures {
        self.failures.clone()
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether calls fail when their records cannot be written (`--audit-required`).
    pub fn is_required(&self) -> bool {
        self.required
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

    /// Writes the `STARTED` record of a call about to run and waits until it is on
    /// disk. For `--audit-required`: call it after authentication, before the
    /// operation has any effect.
    ///
    /// # Errors
    ///
    /// An internal error when the record could not be written and synced in
    /// [`AUDIT_FLUSH_TIMEOUT`]: the call must not run.
    pub async fn record_start(
        &self,
        operation: Operation,
        request_id: RequestId,
        note: &CallNote,
    ) -> Result<(), KmsError> {
        let fields = note.fields();
        let record = AuditRecord {
            time: now_rfc3339(),
            request_id: request_id.to_string(),
            principal: fields.principal,
            operation: operation.name().to_owned(),
            key_id: None,
            key_version_id: None,
            key_pair_spec: None,
            outcome: STARTED_OUTCOME.to_owned(),
            error_code: None,
            transport: fields.transport.map(|t| t.as_str().to_owned()),
            client_key_id: fields.client_key_id,
            target_principal: None,
            secret_name: None,
            secret_version_id: None,
            trace_id: fields.trace.map(|t| t.trace_id.to_string()),
            span_id: fields.trace.map(|t| t.span_id.to_string()),
            count: None,
        };
        if self.record_durable(&record).await {
            Ok(())
        } else {
            Err(KmsError::internal(
                "the audit log cannot be written (--audit-required): call refused",
            ))
        }
    }

    /// Queues one record; never waits. A full or stopped queue loses the record, and
    /// says so at error level.
    pub fn record(&self, record: &AuditRecord) {
        let Some(line) = encode(record) else {
            self.failures.count(1);
            return;
        };
        let sent = self.sender.try_send(Message::Line(line));
        if sent.is_err() {
            self.failures.count(1);
        }
        match sent {
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

    /// Writes one record and waits (on a blocking thread, at most
    /// [`AUDIT_FLUSH_TIMEOUT`]) until it is written and fsync'd. Returns whether it was.
    pub async fn record_durable(&self, record: &AuditRecord) -> bool {
        let Some(line) = encode(record) else {
            self.failures.count(1);
            return false;
        };
        let (done_tx, done_rx) = mpsc::channel();
        let sender = self.sender.clone();
        let written = tokio::task::spawn_blocking(move || {
            sender.send_timeout_compat(Message::Durable(line, done_tx))
                && done_rx.recv_timeout(AUDIT_FLUSH_TIMEOUT).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !written {
            // Counted here too when the writer is stuck (a timeout): the alert must see
            // a disk that hangs as well as one that errs.
            self.failures.count(1);
            tracing::error!(
                path = %self.path.display(),
                request_id = %record.request_id,
                "AUDIT LOG WRITE FAILED: a required audit record could not be written; the call fails"
            );
        }
        written
    }

    /// Counts a call refused for want of valid credentials; see the module docs.
    pub fn count_unauthenticated(&self) {
        self.unauthenticated.fetch_add(1, Ordering::Relaxed);
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

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A record as one line, or `None` (logged) if it cannot be encoded.
fn encode(record: &AuditRecord) -> Option<String> {
    match serde_json::to_string(record) {
        Ok(mut line) => {
            line.push('\n');
            Some(line)
        }
        Err(err) => {
            tracing::error!(error = %err, "AUDIT: cannot encode a record; it is lost");
            None
        }
    }
}

trait SendTimeoutCompat {
    fn send_timeout_compat(&self, message: Message) -> bool;
}

impl SendTimeoutCompat for SyncSender<Message> {
    /// `SyncSender::send` with a deadline (std has none on stable): retries `try_send`.
    fn send_timeout_compat(&self, mut message: Message) -> bool {
        let deadline = Instant::now() + AUDIT_FLUSH_TIMEOUT;
        loop {
            match self.try_send(message) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

// === impl Writer ===

/// The writer thread's state.
struct Writer {
    file: File,
    path: Arc<PathBuf>,
    unauthenticated: Arc<AtomicU64>,
    failures: AuditFailures,
    lost_total: u64,
    /// Whether bytes were written since the last fsync.
    unsynced: bool,
    last_sync: Instant,
}

impl Writer {
    /// Writes batches until every sender is gone, syncing at least every
    /// [`AUDIT_SYNC_INTERVAL`] and before acknowledging a durable line.
    fn run(mut self, receiver: &Receiver<Message>) {
        loop {
            match receiver.recv_timeout(AUDIT_SYNC_INTERVAL) {
                Ok(first) => self.write_batch(first, receiver),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.write_unauthenticated_summary();
            if self.unsynced && self.last_sync.elapsed() >= AUDIT_SYNC_INTERVAL {
                self.sync();
            }
        }
        self.write_unauthenticated_summary();
        if self.unsynced {
            self.sync();
        }
    }

    fn write_batch(&mut self, first: Message, receiver: &Receiver<Message>) {
        let mut batch = String::new();
        let mut records: u64 = 0;
        let mut barriers = Vec::new();
        let mut durable = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    batch.push_str(&line);
                    records += 1;
                }
                Message::Durable(line, done) => {
                    batch.push_str(&line);
                    records += 1;
                    durable.push(done);
                }
                Message::Barrier(done) => barriers.push(done),
            }
            next = if batch.len() < 1 << 20 {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        let mut written = self.write(&batch, records);
        if written && !durable.is_empty() {
            written = self.sync();
        }
        for done in durable {
            let _ = done.send(written);
        }
        for done in barriers {
            let _ = done.send(());
        }
    }

    /// Appends `batch`; false (and logged) if it failed.
    fn write(&mut self, batch: &str, records: u64) -> bool {
        if batch.is_empty() {
            return true;
        }
        match self.file.write_all(batch.as_bytes()) {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(err) => {
                self.lost_total += records;
                self.failures.count(records);
                tracing::error!(
                    path = %self.path.display(),
                    error = %err,
                    lost = records,
                    lost_total = self.lost_total,
                    "AUDIT LOG WRITE FAILED: audit records are being lost"
                );
                false
            }
        }
    }

    /// fsyncs the file; false (and logged) if it failed.
    fn sync(&mut self) -> bool {
        self.last_sync = Instant::now();
        match self.file.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                true
            }
            Err(err) => {
                self.failures.count(1);
                tracing::error!(
                    path = %self.path.display(),
                    error = %err,
                    "AUDIT LOG SYNC FAILED: audit records may not be on disk"
                );
                false
            }
        }
    }

    /// One line for the unauthenticated calls counted since the last one, if any.
    fn write_unauthenticated_summary(&mut self) {
        let count = self.unauthenticated.swap(0, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        let record = AuditRecord {
            time: now_rfc3339(),
            operation: UNAUTHENTICATED_OPERATION.to_owned(),
            outcome: StatusCode::Unauthenticated.name().to_owned(),
            error_code: Some(KmsError::Unauthenticated.error_code().as_str().to_owned()),
            count: Some(count),
            ..AuditRecord::default()
        };
        if let Some(line) = encode(&record) {
            self.write(&line, count);
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

    /// Writes the record as [`Self::finish`] does, and waits until it is on disk
    /// (`--audit-required`). Returns whether it is; a call whose record is not must
    /// not report success.
    pub async fn finish_durable(mut self, outcome: Outcome) -> bool {
        self.finished = true;
        if outcome.code == StatusCode::Unauthenticated {
            self.log.count_unauthenticated();
            return true;
        }
        let record = self.record(outcome);
        self.log.record_durable(&record).await
    }

    fn write(&mut self, outcome: Outcome) {
        self.finished = true;
        if outcome.code == StatusCode::Unauthenticated {
            self.log.count_unauthenticated();
            return;
        }
        let record = self.record(outcome);
        self.log.record(&record);
    }

    fn record(&self, outcome: Outcome) -> AuditRecord {
        let fields = self.note.fields();
        AuditRecord {
            time: now_rfc3339(),
            request_id: self.request_id.to_string(),
            principal: fields.principal,
            operation: self.operation.name().to_owned(),
            key_id: fields.key_id,
            key_version_id: fields.key_version_id,
            key_pair_spec: fields.key_pair_spec,
            outcome: outcome.code.name().to_owned(),
            error_code: outcome.error_code.map(|code| code.as_str().to_owned()),
            transport: fields.transport.map(|t| t.as_str().to_owned()),
            client_key_id: fields.client_key_id,
            target_principal: fields.target_principal,
            secret_name: fields.secret_name,
            secret_version_id: fields.secret_version_id,
            trace_id: fields.trace.map(|t| t.trace_id.to_string()),
            span_id: fields.trace.map(|t| t.span_id.to_string()),
            count: None,
        }
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
        let log = AuditLog::open(&path, false).unwrap();
        log.record(&record("a"));
        assert!(log.flush().await);
        drop(log);
        let log = AuditLog::open(&path, false).unwrap();
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
        let log = AuditLog::open(&path, false).unwrap();
        let note = CallNote::default();
        note.set_principal("payments");
        note.set_key_id("key-abc");
        let trace = crate::trace_context::TraceContext::start(None);
        note.set_trace(trace);
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
        assert_eq!(records[0].trace_id, Some(trace.trace_id.to_string()));
        assert_eq!(records[0].span_id, Some(trace.span_id.to_string()));
        assert_eq!(records[0].outcome, "PERMISSION_DENIED");
        assert_eq!(
            records[0].error_code.as_deref(),
            Some("Forbidden.NoPermission")
        );
        assert_eq!(records[1].operation, "CreateKey");
        assert_eq!(records[1].outcome, "CANCELLED");
        assert_eq!(records[1].error_code, None);
    }

    #[tokio::test]
    async fn durable_records_report_whether_they_reached_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, true).unwrap();
        assert!(log.is_required());
        assert!(log.record_durable(&record("durable")).await);
        assert_eq!(read_records(&path)[0].request_id, "durable");
        let note = CallNote::default();
        note.set_principal("ops");
        log.record_start(Operation::CreateKey, RequestId::new(), &note)
            .await
            .unwrap();
        let started = read_records(&path).pop().unwrap();
        assert_eq!(
            (started.outcome.as_str(), started.operation.as_str()),
            (STARTED_OUTCOME, "CreateKey")
        );
        assert_eq!(started.principal.as_deref(), Some("ops"));

        if Path::new("/dev/full").exists() {
            let full = AuditLog::open(Path::new("/dev/full"), true).unwrap();
            assert_eq!(full.failures().total(), 0);
            assert!(!full.record_durable(&record("lost")).await);
            assert!(full.failures().total() >= 1, "a lost record is counted");
            let refused = full
                .record_start(Operation::CreateKey, RequestId::new(), &note)
                .await;
            assert!(matches!(refused, Err(KmsError::Internal(_))));
            let pending = full.begin(Operation::Decrypt, RequestId::new(), CallNote::default());
            assert!(!pending.finish_durable(Outcome::OK).await);
            let mut encoded = String::new();
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(full.failures()));
            prometheus_client::encoding::text::encode(&mut encoded, &registry).unwrap();
            assert!(
                encoded.contains(&format!("audit_failures_total {}", full.failures().total())),
                "{encoded}"
            );
        }
    }

    #[tokio::test]
    async fn unauthenticated_calls_are_counted_in_one_summary_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        let refused = Outcome::of_error(&KmsError::Unauthenticated);
        for _ in 0..50 {
            log.begin(Operation::Decrypt, RequestId::new(), CallNote::default())
                .finish(refused);
        }
        log.begin(Operation::Decrypt, RequestId::new(), CallNote::default())
            .finish(Outcome::OK);
        // Summary lines come on the writer's ticks while there is something to count.
        let deadline = Instant::now() + AUDIT_SYNC_INTERVAL * 3;
        let records = loop {
            assert!(log.flush().await);
            let records = read_records(&path);
            let counted: u64 = records.iter().filter_map(|r| r.count).sum();
            if counted >= 50 || Instant::now() > deadline {
                break records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let summaries: Vec<_> = records
            .iter()
            .filter(|r| r.operation == UNAUTHENTICATED_OPERATION)
            .collect();
        assert_eq!(summaries.iter().filter_map(|r| r.count).sum::<u64>(), 50);
        for summary in &summaries {
            assert_eq!(summary.outcome, "UNAUTHENTICATED");
            assert_eq!(summary.error_code.as_deref(), Some("SignatureNotMatch"));
        }
        assert_eq!(records.len(), summaries.len() + 1, "{records:?}");
        assert!(
            records
                .iter()
                .any(|r| r.operation == "Decrypt" && r.outcome == "OK")
        );
    }
}
