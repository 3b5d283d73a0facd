//! The tower layers of the audit log.
//!
//! - [`AuditLayer`]: one [`crate::audit::PendingRecord`] per call of a catalogue
//!   operation, finished with the call's outcome when its response head is ready (or
//!   `CANCELLED` if the client goes first). It sits right inside the edge, so it sees
//!   every refusal of the layers after it. With `--audit-required` it waits until the
//!   record is on disk, and answers `INTERNAL` instead if it cannot be written.
//! - [`AuditGateLayer`]: with `--audit-required`, right after authentication, writes
//!   the call's `STARTED` record to disk before the operation runs, and refuses the
//!   call (`INTERNAL`, no effect) if it cannot.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::status::{outcome_of, refuse, to_status};
use crate::audit::AuditLog;
use crate::call::CallNote;
use crate::error::{KmsError, Outcome, StatusCode};
use crate::ops::Route;
use crate::request_id::RequestId;

/// Tower layer that writes one audit record per call; without a log it passes calls
/// straight through.
#[derive(Clone, Debug, Default)]
pub struct AuditLayer {
    log: Option<AuditLog>,
}

impl AuditLayer {
    /// Records every call to `log`, if there is one.
    pub fn new(log: Option<AuditLog>) -> Self {
        Self { log }
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

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let operation = Route::from_extensions(request.extensions()).operation();
        let (Some(log), Some(operation)) = (&self.log, operation) else {
            return Box::pin(self.inner.call(request));
        };
        let note = CallNote::of(request.extensions());
        let pending = log.begin(
            operation,
            RequestId::from_extensions(request.extensions()),
            note.clone(),
        );
        let request_id = RequestId::from_extensions(request.extensions());
        let required = log.is_required();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let outcome = match &result {
                Ok(response) => outcome_of(&note, response),
                Err(_) => Outcome {
                    code: StatusCode::Unknown,
                    error_code: None,
                },
            };
            if !required {
                pending.finish(outcome);
            } else if !pending.finish_durable(outcome).await {
                let err = KmsError::internal("the call's audit record could not be written");
                return Ok(to_status(&err, &request_id).into_http());
            }
            result
        })
    }
}

// === impl AuditGateLayer ===

/// Tower layer that writes a call's `STARTED` record to disk before the call runs;
/// see the module docs. Without a required log it passes calls straight through.
#[derive(Clone, Debug, Default)]
pub struct AuditGateLayer {
    log: Option<AuditLog>,
}

impl AuditGateLayer {
    /// Gates calls on `log` when it is required (`--audit-required`).
    pub fn new(log: Option<AuditLog>) -> Self {
        Self {
            log: log.filter(AuditLog::is_required),
        }
    }
}

impl<S> Layer<S> for AuditGateLayer {
    type Service = AuditGateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditGateService {
            inner,
            log: self.log.clone(),
        }
    }
}

/// The service made by [`AuditGateLayer`].
#[derive(Clone, Debug)]
pub struct AuditGateService<S> {
    inner: S,
    log: Option<AuditLog>,
}

impl<S, B, ResB> Service<Request<B>> for AuditGateService<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let operation = Route::from_extensions(request.extensions()).operation();
        let (Some(log), Some(operation)) = (self.log.clone(), operation) else {
            return Box::pin(self.inner.call(request));
        };
        // `self.inner` is the clone that was driven ready; call that one after the
        // write and keep a fresh clone for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let request_id = RequestId::from_extensions(request.extensions());
            let note = CallNote::of(request.extensions());
            match log.record_start(operation, request_id, &note).await {
                Ok(()) => inner.call(request).await,
                Err(err) => Ok(refuse(&err, request.extensions())),
            }
        })
    }
}
