//! The tower layer of the audit log: one [`crate::audit::PendingRecord`] per call of a
//! catalogue operation, finished with the call's outcome when its response head is
//! ready (or `CANCELLED` if the client goes first). It sits right inside the edge, so
//! it sees every refusal of the layers after it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::status::outcome_of;
use crate::audit::AuditLog;
use crate::call::CallNote;
use crate::error::{Outcome, StatusCode};
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
    ResB: Send + 'static,
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
            pending.finish(outcome);
            result
        })
    }
}
