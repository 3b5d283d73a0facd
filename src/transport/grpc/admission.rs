//! The gRPC transport's one tower layer: every HTTP/2 request goes through
//! [`crate::pipeline::run`].
//!
//! [`AdmissionLayer`] classifies the call once from its path, reads its credentials
//! (the `authorization` header; the verified client certificate of an mTLS
//! connection), and runs the pipeline with the tonic services as its handler: the
//! call's [`Caller`] goes into the request's extensions, where the services read it.
//! Refusals are trailers-only responses with the status of [`super::status`]. Every
//! response carries the request ID in `x-kms-request-id`.
//!
//! `poll_ready` only asks the inner service, never the throttle: a call over the key
//! pair limit is refused when it is called, at once, not queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use rustls_pki_types::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use super::status::{outcome_of, to_status};
use crate::auth::{self, AuthPolicy, Credentials, Identity};
use crate::call::{CallNote, Caller, Transport};
use crate::error::{KmsError, Outcome, StatusCode};
use crate::kms::Kms;
use crate::pipeline::{self, Answer, Inbound, Presented};
use crate::request_id::{REQUEST_ID_HEADER, RequestId};
use crate::transport::limits;
use kmsd_api::ops::Route;

/// The longest part of an unknown path repeated in its error message.
const MAX_ECHOED_PATH_LEN: usize = 100;

/// Tower layer of admission; see the module docs.
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    kms: Kms,
}

impl AdmissionLayer {
    /// Admits calls to `kms`'s services by its policy, audit log, throttle and metrics.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            kms: self.kms.clone(),
        }
    }
}

/// The service made by [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct AdmissionService<S> {
    inner: S,
    kms: Kms,
}

/// What a gRPC caller presented: the `authorization` header (several → `Err`) and the
/// certificates the TLS layer verified.
struct GrpcCredentials {
    authorization: Option<Result<HeaderValue, ()>>,
    certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl GrpcCredentials {
    fn of<B>(request: &Request<B>) -> Self {
        let mut headers = request.headers().get_all(AUTHORIZATION).iter();
        let authorization = headers.next().map(|first| match headers.next() {
            None => Ok(first.clone()),
            Some(_) => Err(()),
        });
        let certificates = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs());
        Self {
            authorization,
            certificates,
        }
    }
}

impl Presented for GrpcCredentials {
    fn identify(&self, policy: Option<&AuthPolicy>) -> Result<Identity, KmsError> {
        let authorization = self
            .authorization
            .as_ref()
            .map(|header| header.as_ref().map(HeaderValue::as_bytes).map_err(|_| ()));
        let client_certificate = self
            .certificates
            .as_ref()
            .and_then(|certs| certs.first())
            .map(|cert| cert.as_ref());
        auth::identify(
            policy,
            &Credentials {
                authorization,
                client_certificate,
            },
        )
    }
}

/// The inner service's answer, or a refusal's trailers-only response.
struct GrpcAnswer<B, E>(Result<Response<B>, E>);

impl<B: Default, E> Answer for GrpcAnswer<B, E> {
    fn refused(err: &KmsError, request_id: &RequestId) -> Self {
        Self(Ok(to_status(err, request_id).into_http()))
    }

    fn outcome(&self, note: &CallNote) -> Outcome {
        match &self.0 {
            Ok(response) => outcome_of(note, response),
            Err(_) => Outcome {
                code: StatusCode::Internal,
                error_code: None,
            },
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for AdmissionService<S>
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
        let path = request.uri().path();
        let route = Route::from_method(path.strip_prefix('/').unwrap_or(path));
        let mut inbound = Inbound::new(Transport::Grpc, route);
        if route == Route::Unknown {
            inbound.unknown_name = path.chars().take(MAX_ECHOED_PATH_LEN).collect();
        }
        let request_id = inbound.request_id;
        let presented = GrpcCredentials::of(&request);
        // `self.inner` is the clone that was driven ready; call that one and keep a
        // fresh clone for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let kms = self.kms.clone();
        Box::pin(async move {
            let credentials =
                async move { Ok::<_, GrpcAnswer<ResB, S::Error>>((presented, request)) };
            let answer: GrpcAnswer<ResB, S::Error> = pipeline::run(
                &kms,
                inbound,
                credentials,
                |caller, mut request| async move {
                    let note = caller.note.clone();
                    request.extensions_mut().insert(caller);
                    let response = inner.call(request).await;
                    GrpcAnswer(response.map(|response| {
                        over_the_limit(response, &note, route.operation(), &request_id)
                    }))
                },
            )
            .await;
            let mut response = answer.0?;
            if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        })
    }
}

/// tonic refuses a request message over the decoding limit inside the generated
/// service, with a bare `OUT_OF_RANGE` ("decoded message length too large"); kmsd
/// never answers `OUT_OF_RANGE` itself (an answer of its own is in the note). Such a
/// response becomes the caller's error of the public API: `INVALID_ARGUMENT` /
/// `InvalidParameter` with `ErrorInfo` and the request ID, naming the limit
/// ([`limits::request_too_large`]).
fn over_the_limit<B: Default>(
    response: Response<B>,
    note: &CallNote,
    operation: Option<kmsd_api::ops::Operation>,
    request_id: &RequestId,
) -> Response<B> {
    let tonic_out_of_range = note.outcome().is_none()
        && response
            .headers()
            .get("grpc-status")
            .is_some_and(|status| status.as_bytes() == b"11");
    if !tonic_out_of_range {
        return response;
    }
    let err = limits::request_too_large(operation);
    note.set_outcome(Outcome::of_error(&err));
    to_status(&err, request_id).into_http()
}

/// The caller the admission layer left in a request's extensions. Fails closed: a
/// call that did not pass admission is `UNAUTHENTICATED`.
pub fn caller_of(extensions: &http::Extensions) -> Result<Caller, KmsError> {
    extensions
        .get::<Caller>()
        .cloned()
        .ok_or(KmsError::Unauthenticated)
}
