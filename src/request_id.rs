//! Request IDs: one UUID per RPC, returned in every response and every error.
//!
//! [`RequestIdLayer`] is the outermost tower layer of the server. It gives each HTTP/2
//! request a fresh [`RequestId`], stores it in the request's extensions (tonic hands
//! them to the handlers, and inner layers such as the throttle read them there), opens
//! the tracing span of the call, and echoes the ID in the `x-kms-request-id` response
//! header so even a transport-level failure can be correlated with the log.

use std::fmt;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tonic::metadata::{MetadataMap, MetadataValue};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use uuid::Uuid;

/// The metadata / header name that carries the request ID.
pub const REQUEST_ID_HEADER: &str = "x-kms-request-id";

/// The ID of one request: a random (v4) UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(Uuid);

impl RequestId {
    /// A fresh random request ID.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The ID stored in a request's extensions by [`RequestIdLayer`], or a fresh one
    /// when the request did not pass through the layer (e.g. in unit tests).
    pub fn from_extensions(extensions: &http::Extensions) -> Self {
        extensions.get::<Self>().copied().unwrap_or_default()
    }

    /// Adds the ID to gRPC metadata as `x-kms-request-id`.
    pub fn insert_into(&self, metadata: &mut MetadataMap) {
        if let Ok(value) = MetadataValue::try_from(self.to_string()) {
            metadata.insert(REQUEST_ID_HEADER, value);
        }
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// Tower layer that assigns a [`RequestId`] to every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, ResB> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = RequestId::new();
        request.extensions_mut().insert(id);
        let span = tracing::info_span!("rpc", request_id = %id, method = %request.uri().path());
        let future = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let mut response = future.await?;
            if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_uuids() {
        let a = RequestId::new();
        let b = RequestId::new();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 36);
        assert!(Uuid::parse_str(&a.to_string()).is_ok());
    }

    #[test]
    fn extension_round_trip() {
        let mut ext = http::Extensions::new();
        let id = RequestId::new();
        ext.insert(id);
        assert_eq!(RequestId::from_extensions(&ext), id);
    }
}
