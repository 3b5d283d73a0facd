//! The edge of the gRPC transport: where a call enters and leaves.
//!
//! [`EdgeLayer`] is the outermost tower layer. For each HTTP/2 request it
//!
//! - gives the call a fresh [`RequestId`], classifies it ONCE into a [`Route`] from
//!   its path, and starts its [`CallNote`], all three in the request's extensions,
//!   where the inner layers and the handlers read them;
//! - answers a path that is no catalogue operation and no health or reflection method
//!   with one `UNIMPLEMENTED` (`Rejected.UnsupportedOperation`), before any other layer;
//! - opens the call's tracing span, counts and times the call in [`Metrics`] by its
//!   route and outcome, and echoes the request ID in the `x-kms-request-id` header, so
//!   even a transport-level failure can be correlated with the log.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::status::{outcome_of, refuse};
use crate::call::{CallNote, Transport};
use crate::error::{KmsError, StatusCode};
use crate::metrics::Metrics;
use crate::ops::Route;
use crate::request_id::{REQUEST_ID_HEADER, RequestId};

/// The longest part of an unknown path repeated in its error message.
const MAX_ECHOED_PATH_LEN: usize = 100;

/// Tower layer of the edge; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct EdgeLayer {
    metrics: Option<Metrics>,
}

impl EdgeLayer {
    /// An edge that counts calls in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics: Some(metrics),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`EdgeLayer`].
#[derive(Clone, Debug)]
pub struct EdgeService<S> {
    inner: S,
    metrics: Option<Metrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for EdgeService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = RequestId::new();
        let path = request.uri().path().to_owned();
        let route = Route::from_method(path.strip_prefix('/').unwrap_or(&path));
        let note = CallNote::default();
        note.set_transport(Transport::Grpc);
        let extensions = request.extensions_mut();
        extensions.insert(id);
        extensions.insert(route);
        extensions.insert(note.clone());
        let span = tracing::info_span!("rpc", request_id = %id, operation = route.label());
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let answer = match route {
            // The inner service is not called, so the readiness it reported stays
            // reserved for the next call.
            Route::Unknown => {
                let shown: String = path.chars().take(MAX_ECHOED_PATH_LEN).collect();
                let refused = refuse(&KmsError::UnknownOperation(shown), request.extensions());
                tracing::debug!(parent: &span, "unknown operation");
                Answer::Refused(Some(refused))
            }
            _ => Answer::Called(self.inner.call(request)),
        };
        Box::pin(
            async move {
                let result = match answer {
                    Answer::Called(future) => future.await,
                    Answer::Refused(response) => Ok(response.unwrap_or_default()),
                };
                let code = match &result {
                    Ok(response) => outcome_of(&note, response).code,
                    Err(_) => StatusCode::Internal,
                };
                if let Some(metrics) = &metrics {
                    metrics.observe(Transport::Grpc, route, code, started.elapsed());
                }
                let mut response = result?;
                if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// What the edge does with a call: pass it on, or answer it itself.
enum Answer<F, R> {
    Called(F),
    Refused(Option<R>),
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic::Status;
    use tower::ServiceExt;

    use super::*;
    use crate::ops::Operation;

    /// Calls `path` through the edge, in front of a service that reports what the edge
    /// put in the request.
    async fn call(path: &str) -> Response<String> {
        let echo = tower::service_fn(|request: Request<()>| async move {
            let route = Route::from_extensions(request.extensions());
            let has_note = request.extensions().get::<CallNote>().is_some();
            let has_id = request.extensions().get::<RequestId>().is_some();
            Ok::<_, Infallible>(Response::new(format!("{route:?} {has_note} {has_id}")))
        });
        let request = Request::builder().uri(path).body(()).unwrap();
        let service = EdgeLayer::default().layer(echo);
        service.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn operations_are_classified_once_and_passed_on() {
        let response = call("http://kms.test/kms.v1.CryptoService/Decrypt").await;
        assert_eq!(
            response.body(),
            &format!("{:?} true true", Route::Operation(Operation::Decrypt))
        );
        assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        let response = call("http://kms.test/grpc.health.v1.Health/Check").await;
        assert!(response.body().starts_with("Infrastructure"));
    }

    #[tokio::test]
    async fn unknown_paths_get_one_unimplemented_at_the_edge() {
        for path in [
            "http://kms.test/kms.v1.CryptoService/Nope",
            "http://kms.test/x",
            "http://kms.test/",
        ] {
            let response = call(path).await;
            assert_eq!(response.body(), "", "{path}: the inner service ran");
            let status = Status::from_header_map(response.headers()).unwrap();
            assert_eq!(status.code(), tonic::Code::Unimplemented, "{path}");
            assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        }
    }
}
