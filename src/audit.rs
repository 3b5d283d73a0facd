//! The audit log (`--audit-log`): one JSON line per RPC, health and reflection
//! excepted, to a file, stdout or syslog ([`output`]).
//!
//! ```json
//! {"time":"2026-01-01T00:00:00.000Z","request_id":"…","principal":"payments",
//!  "operation":"AdvanceDecrypt","key_id":"key-…","key_version_id":"…",
//!  "key_pair_spec":null,"outcome":"OK","error_code":null,"transport":"grpc",
//!  "peer":"10.0.0.7:51234","auth":"token","key_alias":"alias/payments",
//!  "replica":"kmsd-0","prev_sha256":"…"}
//! ```
//!
//! A gateway call's record adds `transport: "https"` and the `client_key_id` that
//! signed it; CreateClientKey's adds the `target_principal` the key was made for; a
//! secret operation's names the `secret_name` and the `secret_version_id` it read or
//! wrote (never the data).
//! Every call's record has the W3C `trace_id` it ran under (the caller's
//! `traceparent`, or the fresh trace kmsd started) and kmsd's `span_id` in it: the
//! trace ID joins the record with the caller's trace, the span ID with kmsd's log lines
//! and the `traceparent` it answered. Every call's record names the caller's `peer`
//! address (as kmsd's socket saw it: a proxy's or sidecar's if there is one), how it
//! authenticated (`auth`: `token`, `mtls`, `client_key`, or `none` without access
//! control) and the `key_alias` when it named a key by alias. Every line, summary lines
//! too, names the `replica` that wrote it (`--replica-id`, else the host name) and the
//! SHA-256 of the line before it (`prev_sha256`, the hash chain: [`chain`]).
//!
//! - A transport starts a [`PendingRecord`] for each call of a catalogue operation
//!   ([`AuditLog::begin`]); authentication writes the principal into the call's
//!   [`CallNote`], the core the key ID (as sent, then as resolved), the version and the
//!   key pair spec. When the call ends the transport finishes the record with its
//!   [`Outcome`]; a call dropped before that (client gone) is recorded as `CANCELLED`.
//!   The gRPC transport's tower layer is `transport::grpc::audit`.
//! - What is never written: plaintext, private keys, ciphertexts, tokens, AAD. The
//!   note has no field that could hold them.
//! - Records go through a bounded queue to one writer thread, which encodes and chains
//!   them and appends batches to the output (a file with `O_APPEND`, so restarts add to
//!   it) and never blocks an async thread. A record reaches the disk (`fdatasync`, for
//!   a file) within [`AUDIT_SYNC_INTERVAL`] of being queued. A failed write or a full
//!   queue is logged at error level with the number of records lost, counted in
//!   `kmsd_audit_records_dropped_total`, and, once the output takes lines again, told
//!   in the log itself by a summary line with `operation` `(records dropped)` and
//!   `count` (a write that failed also breaks the chain there). [`AuditLog::flush`]
//!   waits until everything queued so far is written.
//! - [`AuditLog::reopen`] (SIGHUP) writes out and syncs what was queued before it to
//!   the old file, then opens the path again: after logrotate's `mv`, every later record
//!   goes to the new file, and its first names the old file's last line.
//! - `--audit-required` ([`AuditLog::is_required`]): no call takes effect unless its
//!   request is written, and no response is sent unless its outcome is (Vault's rule),
//!   with the guarantee of its output ([`output`]: on disk for a file, in the pipe for
//!   stdout, on the syslog daemon's socket).
//!   The transport writes a `STARTED` record with [`AuditLog::record_start`] after
//!   authentication and before the operation runs, and finishes the record with
//!   [`PendingRecord::finish_durable`]; either failing fails the call with an internal
//!   error. These writes wait for the output, and are grouped into one `fdatasync` per
//!   batch.
//! - Calls refused before their caller was authenticated (no valid credentials; on
//!   the gateway also a body over the limit or cut short) are not recorded one by one (a
//!   flood of them would crowd out the real records, and with `--audit-required` force
//!   a disk write each): they are counted, and the writer appends one summary line a
//!   second while there are any, with `operation` `(unauthenticated)` and `count`.

pub mod chain;
pub mod output;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use self::output::{Output, Target};
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

/// The `operation` of the summary line of records lost (a full queue, a failed write).
pub const DROPPED_OPERATION: &str = "(records dropped)";

/// The `outcome` of the summary line of records lost.
pub const DROPPED_OUTCOME: &str = "DROPPED";

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
    /// How many calls (or lost records) a summary line stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The address the call came from, as kmsd's socket saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// How the caller authenticated: `token`, `mtls`, `client_key`, or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The alias the call named its key by (`alias/…`), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_alias: Option<String>,
    /// The replica that wrote the line (`--replica-id`, else the host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// The SHA-256 (hex) of the line before this one ([`chain`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_sha256: Option<String>,
}

// === impl AuditLog ===

enum Message {
    Record(Box<AuditRecord>),
    /// A record the sender waits for: acknowledged once written and synced (or not).
    Durable(Box<AuditRecord>, mpsc::Sender<bool>),
    Barrier(mpsc::Sender<()>),
    /// Reopen the output once what was queued before is written; acknowledged with
    /// whether it reopened.
    Reopen(mpsc::Sender<bool>),
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Record(_) => f.write_str("Record"),
            Self::Durable(..) => f.write_str("Durable"),
            Self::Barrier(_) => f.write_str("Barrier"),
            Self::Reopen(_) => f.write_str("Reopen"),
        }
    }
}

/// The audit log's queue and writer thread. Cheap to clone; the writer stops when the
/// last clone is dropped, after writing what was queued.
#[derive(Clone, Debug)]
pub struct AuditLog {
    sender: SyncSender<Message>,
    target: Arc<Target>,
    required: bool,
    unauthenticated: Arc<AtomicU64>,
    failures: AuditFailures,
}

/// Audit records lost or not made durable, exported as `kmsd_audit_failures_total`
/// (a full queue, a stopped writer, a record that does not encode, a failed write or
/// sync, a durable write that timed out) and, of those, the records known never to
/// have been written as `kmsd_audit_records_dropped_total`. Registered with the
/// metrics whether or not there is an audit log, so the alerts' series always exist.
#[derive(Clone, Debug, Default)]
pub struct AuditFailures {
    failures: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    /// Dropped records not yet told in the log's summary line.
    untold: Arc<AtomicU64>,
}

impl AuditFailures {
    fn count(&self, failures: u64) {
        self.failures.fetch_add(failures, Ordering::Relaxed);
    }

    /// Counts `records` lost for good (also as failures).
    fn count_dropped(&self, records: u64) {
        self.count(records);
        self.dropped.fetch_add(records, Ordering::Relaxed);
        self.untold.fetch_add(records, Ordering::Relaxed);
    }

    /// Failures so far.
    pub fn total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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
        )?;
        crate::metrics::encode_counter(
            &mut encoder,
            "audit_records_dropped",
            "Audit records never written: queue full, writer stopped, write failed",
            self.dropped(),
        )
    }
}

impl AuditLog {
    /// Opens the output `--audit-log` names (a file is created with mode 0600 if
    /// missing; see [`output`]) and starts the writer thread. `required` is
    /// `--audit-required`; `replica` names this server in every line. The hash chain
    /// continues from a file's last line, if it has one.
    ///
    /// # Errors
    ///
    /// The target is not a valid `--audit-log` value, the output cannot be opened, or
    /// the thread cannot be started.
    pub fn open(value: &Path, required: bool, replica: &str) -> std::io::Result<Self> {
        let target = Target::parse(value).map_err(std::io::Error::other)?;
        let mut output = Output::open(&target, replica)?;
        let last = match target.file() {
            Some(path) => output::last_line(path)?,
            None => None,
        };
        if let Some(tail) = &last
            && !tail.terminated
        {
            // A write cut short (a crash, a full disk): the cut line stays as it is,
            // where `verify` shows it, and the next record starts a line of its own.
            output.write(&["\n".to_owned()])?;
        }
        let (sender, receiver) = mpsc::sync_channel(AUDIT_QUEUE_CAPACITY);
        let unauthenticated = Arc::new(AtomicU64::new(0));
        let failures = AuditFailures::default();
        let writer = Writer {
            output,
            target: target.to_string(),
            replica: replica.to_owned(),
            chain: last.map_or_else(
                || chain::GENESIS.to_owned(),
                |tail| chain::line_sha256(&tail.line),
            ),
            unauthenticated: Arc::clone(&unauthenticated),
            failures: failures.clone(),
            unsynced: false,
            last_sync: Instant::now(),
        };
        std::thread::Builder::new()
            .name("kmsd-audit".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(Self {
            sender,
            target: Arc::new(target),
            required,
            unauthenticated,
            failures,
        })
    }

    /// The count of lost or undurable records, for the metrics.
    pub fn failures(&self) -> AuditFailures {
        self.failures.clone()
    }

    /// Where the records go.
    pub fn target(&self) -> &Target {
        &self.target
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
        let mut record = record_of(note, operation, request_id, STARTED_OUTCOME);
        (record.key_id, record.key_version_id, record.key_pair_spec) = (None, None, None);
        (record.secret_name, record.secret_version_id) = (None, None);
        record.target_principal = None;
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
        let sent = self
            .sender
            .try_send(Message::Record(Box::new(record.clone())));
        if sent.is_err() {
            self.failures.count_dropped(1);
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::error!(
                audit_log = %self.target,
                request_id = %record.request_id,
                "AUDIT: the audit queue is full (the output is too slow or stuck); record lost"
            ),
            Err(TrySendError::Disconnected(_)) => tracing::error!(
                audit_log = %self.target,
                request_id = %record.request_id,
                "AUDIT: the audit writer has stopped; record lost"
            ),
        }
    }

    /// Writes one record and waits (on a blocking thread, at most
    /// [`AUDIT_FLUSH_TIMEOUT`]) until it is written and synced. Returns whether it was.
    pub async fn record_durable(&self, record: &AuditRecord) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        let sender = self.sender.clone();
        let message = Message::Durable(Box::new(record.clone()), done_tx);
        let failures = self.failures.clone();
        let written = tokio::task::spawn_blocking(move || {
            if !sender.send_timeout_compat(message) {
                failures.count_dropped(1);
                return false;
            }
            match done_rx.recv_timeout(AUDIT_FLUSH_TIMEOUT) {
                Ok(written) => written,
                Err(_) => {
                    // Counted here when the writer is stuck (a timeout): the alert must
                    // see an output that hangs as well as one that errs.
                    failures.count(1);
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        if !written {
            tracing::error!(
                audit_log = %self.target,
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
    /// queued before the call has been handed to the output. Returns whether it was.
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

    /// Reopens the output (SIGHUP): what was queued before is written and synced to
    /// the old file, later records go to the file now at the path (created if it was
    /// moved away). Waits at most [`AUDIT_FLUSH_TIMEOUT`]; returns whether it reopened.
    /// A file that cannot be opened is logged, and the old one kept.
    pub async fn reopen(&self) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        let sender = self.sender.clone();
        let reopened = tokio::task::spawn_blocking(move || {
            let queued = sender.send_timeout_compat(Message::Reopen(done_tx));
            queued && done_rx.recv_timeout(AUDIT_FLUSH_TIMEOUT).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if reopened {
            tracing::info!(audit_log = %self.target, "audit log reopened");
        }
        reopened
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A call's record from its note (without the line's replica and chain, which the
/// writer adds).
fn record_of(
    note: &CallNote,
    operation: Operation,
    request_id: RequestId,
    outcome: &str,
) -> AuditRecord {
    let fields = note.fields();
    AuditRecord {
        time: now_rfc3339(),
        request_id: request_id.to_string(),
        principal: fields.principal,
        operation: operation.name().to_owned(),
        key_id: fields.key_id,
        key_version_id: fields.key_version_id,
        key_pair_spec: fields.key_pair_spec,
        outcome: outcome.to_owned(),
        error_code: None,
        transport: fields.transport.map(|t| t.as_str().to_owned()),
        client_key_id: fields.client_key_id,
        target_principal: fields.target_principal,
        secret_name: fields.secret_name,
        secret_version_id: fields.secret_version_id,
        trace_id: fields.trace.map(|t| t.trace_id.to_string()),
        span_id: fields.trace.map(|t| t.span_id.to_string()),
        count: None,
        peer: fields.peer.as_ref().map(SocketAddr::to_string),
        auth: fields.auth.map(|method| method.as_str().to_owned()),
        key_alias: fields.key_alias,
        replica: None,
        prev_sha256: None,
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
    output: Output,
    /// The target, for log lines.
    target: String,
    replica: String,
    /// The SHA-256 of the last line encoded: the next line's `prev_sha256`.
    chain: String,
    unauthenticated: Arc<AtomicU64>,
    failures: AuditFailures,
    /// Whether bytes were written since the last fsync.
    unsynced: bool,
    last_sync: Instant,
}

/// Lines about to be written together, and who waits for them.
#[derive(Default)]
struct Batch {
    lines: Vec<String>,
    bytes: usize,
    durable: Vec<mpsc::Sender<bool>>,
    barriers: Vec<mpsc::Sender<()>>,
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
            self.write_summaries();
            if self.unsynced && self.last_sync.elapsed() >= AUDIT_SYNC_INTERVAL {
                self.sync();
            }
        }
        self.write_summaries();
        if self.unsynced {
            self.sync();
        }
    }

    /// Writes `first` and whatever else is queued (up to 1 MiB, or up to a reopen,
    /// which then happens once the batch is synced).
    fn write_batch(&mut self, first: Message, receiver: &Receiver<Message>) {
        let mut batch = Batch::default();
        let mut reopen = None;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(record) => {
                    self.add(&mut batch, *record);
                }
                Message::Durable(record, done) => {
                    if self.add(&mut batch, *record) {
                        batch.durable.push(done);
                    } else {
                        let _ = done.send(false);
                    }
                }
                Message::Barrier(done) => batch.barriers.push(done),
                Message::Reopen(done) => {
                    reopen = Some(done);
                    break;
                }
            }
            next = if batch.bytes < 1 << 20 {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        let records = batch.lines.len() as u64;
        let mut written = self.write(&batch.lines, records);
        if written && (!batch.durable.is_empty() || reopen.is_some()) {
            written = self.sync();
        }
        for done in batch.durable {
            let _ = done.send(written);
        }
        for done in batch.barriers {
            let _ = done.send(());
        }
        if let Some(done) = reopen {
            let _ = done.send(self.reopen());
        }
    }

    /// Encodes `record` as the next line of the chain, into `batch`; false (counted
    /// and logged) if it does not encode.
    fn add(&mut self, batch: &mut Batch, mut record: AuditRecord) -> bool {
        record.replica = Some(self.replica.clone());
        record.prev_sha256 = Some(self.chain.clone());
        match serde_json::to_string(&record) {
            Ok(mut line) => {
                self.chain = chain::line_sha256(&line);
                line.push('\n');
                batch.bytes += line.len();
                batch.lines.push(line);
                true
            }
            Err(err) => {
                self.failures.count_dropped(1);
                tracing::error!(error = %err, "AUDIT: cannot encode a record; it is lost");
                false
            }
        }
    }

    /// Appends `lines`; false (counted and logged) if it failed.
    fn write(&mut self, lines: &[String], records: u64) -> bool {
        if lines.is_empty() {
            return true;
        }
        match self.output.write(lines) {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(err) => {
                self.failures.count_dropped(records);
                tracing::error!(
                    audit_log = %self.target,
                    error = %err,
                    lost = records,
                    lost_total = self.failures.dropped(),
                    "AUDIT LOG WRITE FAILED: audit records are being lost"
                );
                false
            }
        }
    }

    /// Syncs the output; false (and logged) if it failed.
    fn sync(&mut self) -> bool {
        self.last_sync = Instant::now();
        match self.output.sync() {
            Ok(()) => {
                self.unsynced = false;
                true
            }
            Err(err) => {
                self.failures.count(1);
                tracing::error!(
                    audit_log = %self.target,
                    error = %err,
                    "AUDIT LOG SYNC FAILED: audit records may not be on disk"
                );
                false
            }
        }
    }

    /// Reopens the output (everything before was written and synced).
    fn reopen(&mut self) -> bool {
        match self.output.reopen() {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(
                    audit_log = %self.target,
                    error = %err,
                    "AUDIT: cannot reopen the audit log; still writing the old one"
                );
                false
            }
        }
    }

    /// The summary lines: unauthenticated calls and dropped records counted since the
    /// last ones, if any.
    fn write_summaries(&mut self) {
        let mut batch = Batch::default();
        let unauthenticated = self.unauthenticated.swap(0, Ordering::Relaxed);
        if unauthenticated > 0 {
            let record = AuditRecord {
                time: now_rfc3339(),
                operation: UNAUTHENTICATED_OPERATION.to_owned(),
                outcome: StatusCode::Unauthenticated.name().to_owned(),
                error_code: Some(KmsError::Unauthenticated.error_code().as_str().to_owned()),
                count: Some(unauthenticated),
                ..AuditRecord::default()
            };
            self.add(&mut batch, record);
        }
        let dropped = self.failures.untold.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let record = AuditRecord {
                time: now_rfc3339(),
                operation: DROPPED_OPERATION.to_owned(),
                outcome: DROPPED_OUTCOME.to_owned(),
                count: Some(dropped),
                ..AuditRecord::default()
            };
            self.add(&mut batch, record);
        }
        if !self.write(&batch.lines, unauthenticated) {
            // Told again with the next summary, once the output takes lines.
            self.failures.untold.fetch_add(dropped, Ordering::Relaxed);
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
        let mut record = record_of(
            &self.note,
            self.operation,
            self.request_id,
            outcome.code.name(),
        );
        record.error_code = outcome.error_code.map(|code| code.as_str().to_owned());
        record
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
        let log = AuditLog::open(&path, false, "r1").unwrap();
        log.record(&record("a"));
        assert!(log.flush().await);
        drop(log);
        let log = AuditLog::open(&path, false, "r1").unwrap();
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
        let log = AuditLog::open(&path, false, "r1").unwrap();
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
        let log = AuditLog::open(&path, true, "r1").unwrap();
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
            let full = AuditLog::open(Path::new("/dev/full"), true, "r1").unwrap();
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
            assert!(
                full.failures().dropped() >= 1,
                "a record not written is dropped"
            );
            assert!(
                encoded.contains(&format!(
                    "audit_records_dropped_total {}",
                    full.failures().dropped()
                )),
                "{encoded}"
            );
        }
    }

    fn ids(path: &Path) -> Vec<String> {
        read_records(path)
            .into_iter()
            .map(|r| r.request_id)
            .collect()
    }

    #[tokio::test]
    async fn the_chain_runs_across_a_reopen_and_a_restart_and_shows_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let log = AuditLog::open(&path, false, "replica-1").unwrap();
        log.record(&record("a"));
        assert!(log.flush().await);
        // logrotate: mv, then SIGHUP. What was queued before the reopen goes to the
        // old file, what comes after to the new one.
        std::fs::rename(&path, &rotated).unwrap();
        log.record(&record("b"));
        assert!(log.reopen().await);
        log.record(&record("c"));
        assert!(log.flush().await);
        drop(log);
        // A restart appends, and chains from the file's last line.
        let log = AuditLog::open(&path, false, "replica-1").unwrap();
        log.record(&record("d"));
        assert!(log.flush().await);
        drop(log);

        assert_eq!(ids(&rotated), ["a", "b"]);
        assert_eq!(ids(&path), ["c", "d"]);
        let first = &read_records(&rotated)[0];
        assert_eq!(first.prev_sha256.as_deref(), Some(chain::GENESIS));
        assert_eq!(first.replica.as_deref(), Some("replica-1"));
        let files = [rotated.clone(), path.clone()];
        let verified = chain::verify(&files).unwrap();
        assert_eq!((verified.records, verified.files), (4, 2));
        assert!(verified.restarts.is_empty());
        let last = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            verified.last_sha256,
            chain::line_sha256(last.lines().last().unwrap())
        );

        // Out of order: a file that does not follow the one before breaks the chain;
        // the oldest file's first record (a new chain) is reported where it lands.
        let copy = dir.path().join("copy.jsonl");
        std::fs::copy(&path, &copy).unwrap();
        let err = chain::verify(&[path.clone(), copy]).unwrap_err();
        assert!(err.contains("copy.jsonl:1: the chain is broken"), "{err}");
        let reversed = chain::verify(&[path.clone(), rotated.clone()]).unwrap();
        assert_eq!(reversed.restarts, [format!("{}:1", rotated.display())]);
        assert!(reversed.to_string().contains("new chain"), "{reversed}");
        // A line edited, a line deleted: each named where it shows.
        let original = std::fs::read_to_string(&rotated).unwrap();
        std::fs::write(&rotated, original.replacen("\"a\"", "\"x\"", 1)).unwrap();
        let err = chain::verify(&files).unwrap_err();
        assert!(
            err.contains("audit.jsonl.1:2: the chain is broken"),
            "{err}"
        );
        let second_only: String = original.lines().skip(1).map(|l| format!("{l}\n")).collect();
        std::fs::write(&rotated, &second_only).unwrap();
        chain::verify(&files).expect("the oldest file's first lines may have been removed");
        let first_only = format!("{}\n", original.lines().next().unwrap());
        std::fs::write(&rotated, first_only).unwrap();
        let err = chain::verify(&files).unwrap_err();
        assert!(err.contains("audit.jsonl:1: the chain is broken"), "{err}");
        let mut lines: Vec<&str> = original.lines().collect();
        lines.push(lines[1]);
        std::fs::write(&rotated, lines.join("\n") + "\n").unwrap();
        let err = chain::verify(&files).unwrap_err();
        assert!(
            err.contains("audit.jsonl.1:3: the chain is broken"),
            "{err}"
        );
        std::fs::write(&rotated, "not json\n").unwrap();
        let err = chain::verify(&files).unwrap_err();
        assert!(
            err.contains("audit.jsonl.1:1: not an audit record"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_restart_after_a_cut_write_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false, "r1").unwrap();
        log.record(&record("a"));
        assert!(log.flush().await);
        drop(log);
        // A crash in the middle of a line.
        let whole = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{whole}{{\"time\":\"cut")).unwrap();
        let log = AuditLog::open(&path, false, "r1").unwrap();
        log.record(&record("b"));
        assert!(log.flush().await);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "{\"time\":\"cut");
        let next: AuditRecord = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(next.request_id, "b");
        assert_eq!(next.prev_sha256, Some(chain::line_sha256(lines[1])));
        let err = chain::verify(&[path]).unwrap_err();
        assert!(err.contains("audit.jsonl:2: not an audit record"), "{err}");
    }

    #[tokio::test]
    async fn unauthenticated_calls_are_counted_in_one_summary_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false, "r1").unwrap();
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
