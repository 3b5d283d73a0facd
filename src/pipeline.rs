//! Admission: the one path every call takes, whichever transport carried it.
//!
//! ```text
//! request ID, route ─▶ authenticate ─▶ audit begin ─▶ authorize ─▶ audit gate
//!     ─▶ throttle ─▶ handler ─▶ outcome to audit and metrics
//! ```
//!
//! A transport makes an [`Inbound`] (request ID, [`Route`], note, trace context,
//! clock), hands
//! [`run`] a future that reads what the caller presented ([`Presented`]: a gRPC
//! call's token or client certificate; a gateway call's verified client key, whose
//! body has been read and digested by then) and a handler, and gets back its own
//! [`Answer`]:
//!
//! 1. An unknown route is refused (`UNIMPLEMENTED`); health and reflection run their
//!    handler without a principal and without audit.
//! 2. **Authenticate**: a refusal here (bad credentials, or on the gateway a body
//!    over the limit or one that never arrives whole) is not audited one by one, only
//!    counted in the audit log's summary line (a flood of them must not crowd out the
//!    real records, nor force a disk write each under `--audit-required`).
//! 3. **Audit begin**: from here on, every call has its record, finished with its
//!    outcome (or `CANCELLED` if the client goes away first).
//! 4. **Authorize** the operation for the principal (`Forbidden.NoPermission`).
//! 5. **Audit gate**: with `--audit-required`, the `STARTED` record reaches the disk
//!    before the operation runs, or the call is refused with no effect.
//! 6. **Throttle**: a key pair call over the per-instance limit is refused at once
//!    (`Rejected.Throttling`); the permit is released as soon as the handler answers.
//! 7. The **handler**, with the call's [`Caller`].
//! 8. The **outcome** goes to the audit record (with `--audit-required`, on disk before
//!    the answer leaves, else the answer becomes an internal error) and the metrics.
//!    A handler whose answer is a stream still to be delivered (Backup) defers it
//!    ([`CallNote::defer_outcome`]): the record is written when the stream ends, with
//!    how it ended.
//!
//! The call's tracing span (`call`) is a child of the caller's W3C trace when it sent a
//! `traceparent` ([`TraceContext`]): it carries `trace_id`, `span_id` and
//! `parent_span_id`, so every log line of the call names the trace, and the note
//! carries the context to the audit record.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

use crate::auth::{self, AuthPolicy, Identity};
use crate::call::{CallNote, Caller, Transport};
use crate::error::{KmsError, Outcome};
use crate::kms::Kms;
use crate::request_id::RequestId;
use crate::trace_context::TraceContext;
use kmsd_api::ops::{Operation, Route};

/// A call as it enters: decided by its transport's edge before anything else runs.
#[derive(Debug)]
pub struct Inbound {
    /// The call's fresh request ID.
    pub request_id: RequestId,
    /// What the call is.
    pub route: Route,
    /// The call's note, its transport and trace context set.
    pub note: CallNote,
    /// The call's trace: the caller's, or a fresh one; kmsd's span in it.
    pub trace: TraceContext,
    /// For [`Route::Unknown`], the name asked for, as it may be echoed (bounded).
    pub unknown_name: String,
    /// When the call arrived (metrics time from here).
    pub started: Instant,
    /// The key version its `x-kms-migrationkeyversionid` header names, if any
    /// ([`crate::transport::migration_version`]).
    pub migration_version: Option<String>,
}

impl Inbound {
    /// A call of `route` arriving now over `transport`, with the `traceparent` it
    /// sent if any (see [`TraceContext::start`]).
    pub fn new(transport: Transport, route: Route, traceparent: Option<&[u8]>) -> Self {
        let note = CallNote::default();
        note.set_transport(transport);
        let request_id = RequestId::new();
        let trace = TraceContext::start(traceparent);
        note.set_trace(trace);
        Self {
            request_id,
            route,
            note,
            trace,
            unknown_name: String::new(),
            started: Instant::now(),
            migration_version: None,
        }
    }
}

/// What a caller presented, as its transport read it: identifies the caller under
/// the access policy.
pub trait Presented {
    /// The caller's identity under `policy` (`None`: access control is off).
    ///
    /// # Errors
    ///
    /// [`KmsError::Unauthenticated`] when the credentials prove no principal.
    fn identify(&self, policy: Option<&AuthPolicy>) -> Result<Identity, KmsError>;
}

/// A transport's answer to a call.
pub trait Answer: Sized {
    /// The answer to a call refused by admission (or by its audit record).
    fn refused(err: &KmsError, request_id: &RequestId) -> Self;

    /// How the call ended, as audit and metrics record it.
    fn outcome(&self, note: &CallNote) -> Outcome;
}

/// Runs one call through admission; see the module docs. `presented` reads the
/// caller's credentials (and whatever the handler needs, `T`), or answers a request
/// whose credentials cannot even be read; `handler` runs the operation.
pub async fn run<A, P, T, H, F>(
    kms: &Kms,
    call: Inbound,
    presented: impl Future<Output = Result<(P, T), A>>,
    handler: H,
) -> A
where
    A: Answer,
    P: Presented,
    H: FnOnce(Caller, T) -> F,
    F: Future<Output = A>,
{
    let Inbound {
        request_id,
        route,
        note,
        trace,
        unknown_name,
        started,
        migration_version,
    } = call;
    // The IDs as text written on the stack, recorded for display (unquoted in text
    // logs, as the IDs' own `Display` wrote them).
    let (mut id, mut trace_id, mut span_id, mut parent_id) = ([0; 36], [0; 32], [0; 16], [0; 16]);
    let span = tracing::info_span!(
        "call",
        request_id = display(request_id.encode(&mut id)),
        operation = route.label(),
        trace_id = display(trace.trace_id.encode(&mut trace_id)),
        span_id = display(trace.span_id.encode(&mut span_id)),
        parent_span_id = trace
            .parent_id
            .map(|parent| display(parent.encode(&mut parent_id))),
    );
    // The answer, and the outcome it stands for when it is not the one the call
    // noted (a call whose audit record could not be written is answered INTERNAL).
    let (answer, replaced) = async {
        let operation = match route {
            Route::Operation(operation) => operation,
            Route::Infrastructure(_) => {
                let answer = match presented.await {
                    Ok((_, payload)) => {
                        handler(Caller::open(request_id, note.clone()), payload).await
                    }
                    Err(answer) => answer,
                };
                return (answer, None);
            }
            Route::Unknown => {
                tracing::debug!("unknown operation");
                let err = KmsError::UnknownOperation(unknown_name);
                return (refuse(&err, &request_id, &note), None);
            }
        };
        let authenticated = match presented.await {
            Ok((presented, payload)) => presented
                .identify(kms.policy().as_deref())
                .map(|identity| (identity, payload))
                .map_err(|err| refuse(&err, &request_id, &note)),
            Err(answer) => Err(answer),
        };
        let (identity, payload) = match authenticated {
            Ok(authenticated) => authenticated,
            Err(answer) => {
                let outcome = answer.outcome(&note);
                note.set_outcome(outcome);
                // Whatever the refusal (no valid credentials, a gateway body over the
                // limit or never arriving whole), nobody has been identified yet:
                // counted in the summary line, never a record each.
                if let Some(log) = kms.audit() {
                    log.count_unauthenticated();
                }
                tracing::debug!(code = ?outcome.code, "call refused before authentication");
                return (answer, None);
            }
        };
        if let Some(name) = &identity.name {
            note.set_principal(name);
        }
        note.set_auth(identity.method);
        let pending = kms
            .audit()
            .map(|log| log.begin(operation, request_id, note.clone()));
        let caller = Caller {
            request_id,
            access: identity.access,
            note: note.clone(),
            migration_version,
        };
        let answer = admitted(kms, operation, caller, payload, handler).await;
        let outcome = answer.outcome(&note);
        note.set_outcome(outcome);
        // A call that answered with a stream (Backup) ends when the stream has been
        // delivered or abandoned: its record waits for that outcome.
        if let Some(deferred) = note.take_deferred()
            && outcome == Outcome::OK
        {
            if let Some(pending) = pending {
                let required = kms.audit().is_some_and(|log| log.is_required());
                tokio::spawn(async move {
                    let outcome = deferred.await.unwrap_or(Outcome::CANCELLED);
                    if required {
                        // The stream has gone; a record that cannot be written is logged
                        // at error level by the audit log.
                        pending.finish_durable(outcome).await;
                    } else {
                        pending.finish(outcome);
                    }
                });
            }
            return (answer, None);
        }
        match pending {
            Some(pending) if kms.audit().is_some_and(|log| log.is_required()) => {
                if pending.finish_durable(outcome).await {
                    (answer, None)
                } else {
                    let err = KmsError::internal("the call's audit record could not be written");
                    (A::refused(&err, &request_id), Some(Outcome::of_error(&err)))
                }
            }
            Some(pending) => {
                pending.finish(outcome);
                (answer, None)
            }
            None => (answer, None),
        }
    }
    .instrument(span)
    .await;
    let code = replaced.unwrap_or_else(|| answer.outcome(&note)).code;
    kms.metrics()
        .observe(transport_of(&note), route, code, started.elapsed());
    answer
}

/// Steps 4 to 7: authorize, audit gate, throttle, handler.
async fn admitted<A, T, H, F>(
    kms: &Kms,
    operation: Operation,
    caller: Caller,
    payload: T,
    handler: H,
) -> A
where
    A: Answer,
    H: FnOnce(Caller, T) -> F,
    F: Future<Output = A>,
{
    let (request_id, note) = (&caller.request_id, &caller.note);
    if let Err(err) = auth::authorize(&caller.access, operation) {
        return refuse(&err, request_id, note);
    }
    if let Some(log) = kms.audit().filter(|log| log.is_required())
        && let Err(err) = log.record_start(operation, *request_id, note).await
    {
        return refuse(&err, request_id, note);
    }
    let permit = match kms.throttle().admit(operation) {
        Ok(permit) => permit,
        Err(err) => {
            tracing::debug!(%operation, "key pair call rejected: concurrency limit reached");
            return refuse(&err, request_id, note);
        }
    };
    let answer = handler(caller, payload).await;
    // The work is done: the limit counts work in progress, not the answer's sending.
    drop(permit);
    answer
}

/// Refuses a call: its outcome noted, the transport's answer built.
fn refuse<A: Answer>(err: &KmsError, request_id: &RequestId, note: &CallNote) -> A {
    note.set_outcome(Outcome::of_error(err));
    A::refused(err, request_id)
}

/// The transport a call's note names (its edge always sets it).
fn transport_of(note: &CallNote) -> Transport {
    note.transport().unwrap_or_default()
}
