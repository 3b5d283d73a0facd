//! The tower layer of access control: [`crate::auth::authorize`] in front of the
//! tonic services.
//!
//! It reads the call's [`Route`] (set by the edge), takes the credentials from the
//! gRPC request (the `authorization` header; the verified client certificate of an
//! mTLS connection), and leaves the decided [`Access`] in the request's extensions for
//! the handlers, or answers the refusal itself. Health and reflection need no
//! principal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use super::status::refuse;
use crate::auth::{Access, AuthPolicy, Credentials, authorize};
use crate::call::CallNote;
use crate::error::KmsError;
use crate::ops::Route;

/// Tower layer of access control; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct AuthLayer {
    policy: Option<Arc<AuthPolicy>>,
}

impl AuthLayer {
    /// Access control by `policy`; `None` lets every call in with [`Access::Open`].
    pub fn new(policy: Option<Arc<AuthPolicy>>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    policy: Option<Arc<AuthPolicy>>,
}

/// Decides a gRPC call: the [`Access`] it runs with, or why it is refused.
fn decide<B>(policy: Option<&AuthPolicy>, request: &Request<B>) -> Result<Access, KmsError> {
    let operation = match Route::from_extensions(request.extensions()) {
        Route::Operation(operation) => operation,
        Route::Infrastructure(_) => return Ok(Access::Open),
        // The edge answers unknown paths; reaching here means it did not run.
        Route::Unknown => return Err(KmsError::Unauthenticated),
    };
    let mut headers = request.headers().get_all(AUTHORIZATION).iter();
    let authorization = headers.next().map(|first| match headers.next() {
        None => Ok(first.as_bytes()),
        Some(_) => Err(()),
    });
    let leaf = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|certs| certs.first().map(|cert| cert.as_ref().to_vec()));
    let credentials = Credentials {
        authorization,
        client_certificate: leaf.as_deref(),
    };
    authorize(
        policy,
        operation,
        &credentials,
        &CallNote::of(request.extensions()),
    )
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match decide(self.policy.as_deref(), &request) {
            Ok(access) => {
                request.extensions_mut().insert(access);
                Box::pin(self.inner.call(request))
            }
            Err(err) => {
                tracing::debug!(code = err.error_code(), "call refused");
                let response = refuse(&err, request.extensions());
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
