//! The audit log (`--audit-log FILE`): one JSON line per RPC, health and reflection
//! excepted.
//!
//! ```json
//! {"time":"2026-01-01T00:00:00.000Z","request_id":"…","principal":"payments",
//!  "operation":"AdvanceDecrypt","key_id":"key-…","key_version_id":"…",
//!  "key_pair_spec":null,"outcome":"OK","error_code":null}
//! ```
//!
//! - [`AuditLayer`] (right after the request ID, so it sees every refusal of the inner
//!   layers) puts an [`AuditNote`] in the request's extensions; the auth layer writes
//!   the principal into it, the handlers the key ID (as sent, then as resolved), the
//!   version and the key pair spec. When the response head is ready, the layer reads
//!   the gRPC code and the public error code (the `ErrorInfo` reason) from it; a call
//!   dropped before that (client gone) is recorded as `CANCELLED`.
//! - What is never written: plaintext, private keys, ciphertexts, tokens, AAD. The
//!   note has no field that could hold them.
//! - Lines go through a bounded queue to one writer thread, which appends batches to
//!   the file (`O_APPEND`, so restarts add to it) and never blocks an async thread. A
//!   failed write or a full queue is logged at error level with the number of records
//!   lost; [`AuditLog::flush`] waits until everything queued so far is written.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{Route, route};
use crate::request_id::RequestId;

/// Records queued for the writer at most; beyond it records are dropped (and that is
/// logged) rather than making callers wait for the disk.
pub const AUDIT_QUEUE_CAPACITY: usize = 16 * 1024;

/// The longest value taken from a request into a record (a `KeyId` as sent).
pub const MAX_AUDIT_FIELD_LEN: usize = 256;

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
    /// The operation (the gRPC method name, e.g. `Decrypt`).
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

/// The gRPC code's canonical name (`PERMISSION_DENIED`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

// === impl AuditNote ===

#[derive(Debug, Default)]
struct NoteFields {
    principal: Option<String>,
    key_id: Option<String>,
    key_version_id: Option<String>,
    key_pair_spec: Option<String>,
}

/// The per-call part of an audit record that inner layers and handlers fill in. Cheap
/// to clone (shared); a note that is not in a request's extensions goes nowhere.
#[derive(Clone, Debug, Default)]
pub struct AuditNote(Arc<Mutex<NoteFields>>);

fn bounded(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    Some(value.chars().take(MAX_AUDIT_FIELD_LEN).collect())
}

impl AuditNote {
    /// The note [`AuditLayer`] put in these extensions, if any.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<Self> {
        extensions.get::<Self>().cloned()
    }

    /// The note of these extensions, or a detached one when the call is not audited.
    pub fn of(extensions: &http::Extensions) -> Self {
        Self::from_extensions(extensions).unwrap_or_default()
    }

    fn update(&self, apply: impl FnOnce(&mut NoteFields)) {
        let mut fields = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        apply(&mut fields);
    }

    /// Records the principal's name.
    pub fn set_principal(&self, name: &str) {
        self.update(|f| f.principal = bounded(name));
    }

    /// Records the key (as sent, or resolved); empty leaves the note unchanged.
    pub fn set_key_id(&self, key_id: &str) {
        if let Some(value) = bounded(key_id) {
            self.update(|f| f.key_id = Some(value));
        }
    }

    /// Records the key version; empty leaves the note unchanged.
    pub fn set_key_version_id(&self, version_id: &str) {
        if let Some(value) = bounded(version_id) {
            self.update(|f| f.key_version_id = Some(value));
        }
    }

    /// Records the key pair spec; empty leaves the note unchanged.
    pub fn set_key_pair_spec(&self, spec: &str) {
        if let Some(value) = bounded(spec) {
            self.update(|f| f.key_pair_spec = Some(value));
        }
    }

    fn take(&self) -> NoteFields {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
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

    /// The layer that records every call to this log.
    pub fn layer(&self) -> AuditLayer {
        AuditLayer {
            log: Some(self.clone()),
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

// === impl AuditLayer ===

/// Tower layer that writes one [`AuditRecord`] per audited call; see the module docs.
/// Without a log it passes calls straight through.
#[derive(Clone, Debug, Default)]
pub struct AuditLayer {
    log: Option<AuditLog>,
}

impl AuditLayer {
    /// A layer that records nothing.
    pub fn disabled() -> Self {
        Self { log: None }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            log: self.log.clone(),
        }
    }
}

/// The service made by [`AuditLayer`].
#[derive(Clone, Debug)]
pub struct AuditService<S> {
    inner: S,
    log: Option<AuditLog>,
}

/// A call being audited; records `CANCELLED` if dropped before [`Self::finish`].
struct PendingRecord {
    log: AuditLog,
    note: AuditNote,
    request_id: RequestId,
    operation: String,
    finished: bool,
}

impl PendingRecord {
    fn finish(&mut self, outcome: Code, error_code: Option<String>) {
        self.finished = true;
        let fields = self.note.take();
        self.log.record(&AuditRecord {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            request_id: self.request_id.to_string(),
            principal: fields.principal,
            operation: std::mem::take(&mut self.operation),
            key_id: fields.key_id,
            key_version_id: fields.key_version_id,
            key_pair_spec: fields.key_pair_spec,
            outcome: code_name(outcome).to_owned(),
            error_code,
        });
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Code::Cancelled, None);
        }
    }
}

/// The outcome a response head carries: no `grpc-status` header means the status comes
/// in the trailers after a message, i.e. the call succeeded.
fn outcome_of<B>(response: &Response<B>) -> (Code, Option<String>) {
    match tonic::Status::from_header_map(response.headers()) {
        None => (Code::Ok, None),
        Some(status) if status.code() == Code::Ok => (Code::Ok, None),
        Some(status) => {
            let reason = status
                .get_error_details()
                .error_info()
                .map(|info| info.reason.clone());
            (status.code(), reason)
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(log) = self.log.clone() else {
            return Box::pin(self.inner.call(request));
        };
        let operation = match route(request.uri().path()) {
            Route::Exempt => return Box::pin(self.inner.call(request)),
            Route::Guarded(method) => bounded(method).unwrap_or_default(),
        };
        let note = AuditNote::default();
        request.extensions_mut().insert(note.clone());
        let mut pending = PendingRecord {
            log,
            note,
            request_id: RequestId::from_extensions(request.extensions()),
            operation,
            finished: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(response) => {
                    let (code, error_code) = outcome_of(response);
                    pending.finish(code, error_code);
                }
                Err(_) => pending.finish(Code::Unknown, None),
            }
            result
        })
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

    #[test]
    fn notes_bound_what_they_keep() {
        let note = AuditNote::default();
        note.set_key_id(&"k".repeat(10_000));
        note.set_key_id("");
        note.set_key_pair_spec("EC_P256");
        let fields = note.take();
        assert_eq!(fields.key_id.unwrap().len(), MAX_AUDIT_FIELD_LEN);
        assert_eq!(fields.key_pair_spec.as_deref(), Some("EC_P256"));
        assert!(note.take().key_pair_spec.is_none(), "take empties the note");
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
