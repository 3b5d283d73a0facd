//! The gRPC transport's one tower layer: every HTTP/2 request goes through
//! [`crate::pipeline::run`].
//!
//! [`AdmissionLayer`] classifies the call once from its path, reads its credentials
//! (the `authorization` header; the verified client certificate of an mTLS
//! connection), and runs the pipeline with the tonic services as its handler: the
//! call's [`Caller`] goes into the request's extensions, where the services read it.
//! Refusals are trailers-only responses with the status of [`super::status`]. Every
//! response carries the request ID in `x-kms-request-id`, and a `traceparent` naming
//! kmsd's span of the call: a child of the caller's `traceparent` metadata if it sent
//! a valid one, else in a fresh trace ([`crate::trace_context`]).
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
use crate::request_id::RequestId;
use crate::transport::{self, limits};
use kmsd_api::ops::Route;

/// The longest part of an unknown path repeated in its error message.
const MAX_ECHOED_PATH_LEN: usize = 100;

/// Tower layer of admission; see the module docs.
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    kms: Arc<Kms>,
}

impl AdmissionLayer {
    /// Admits calls to `kms`'s services by its policy, audit log, throttle and metrics.
    pub fn new(kms: Kms) -> Self {
        Self { kms: Arc::new(kms) }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            kms: Arc::clone(&self.kms),
        }
    }
}

/// The service made by [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct AdmissionService<S> {
    inner: S,
    /// Shared: each call takes a reference, one count, not a clone of the core's parts.
    kms: Arc<Kms>,
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

/// The address a request's connection came from: tonic's connect info, plaintext or
/// TLS.
fn peer_of<B>(request: &Request<B>) -> Option<std::net::SocketAddr> {
    let extensions = request.extensions();
    match extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        Some(tls) => tls.get_ref().remote_addr(),
        None => extensions.get::<TcpConnectInfo>()?.remote_addr(),
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
        let traceparent = transport::traceparent(request.headers());
        let mut inbound = Inbound::new(Transport::Grpc, route, traceparent);
        inbound.migration_version = transport::migration_version(request.headers());
        if route == Route::Unknown {
            inbound.unknown_name = path.chars().take(MAX_ECHOED_PATH_LEN).collect();
        }
        if let Some(peer) = peer_of(&request) {
            inbound.note.set_peer(peer);
        }
        let request_id = inbound.request_id;
        let trace = inbound.trace;
        let call_note = inbound.note.clone();
        let presented = GrpcCredentials::of(&request);
        // `self.inner` is the clone that was driven ready; call that one and keep a
        // fresh clone for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let kms = Arc::clone(&self.kms);
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
            transport::answer_request_id(response.headers_mut(), &request_id);
            // A refusal is a trailers-only response: its status among the headers.
            let refused = response
                .headers()
                .get("grpc-status")
                .is_some_and(|status| status.as_bytes() != b"0");
            if !refused {
                transport::answer_migration_version(response.headers_mut(), &call_note);
            }
            transport::answer_traceparent(response.headers_mut(), &trace);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Waker;

    use http_body_util::Full;
    use tonic::{Code, Status};
    use tonic_types::StatusExt;
    use tower::ServiceExt;
    use tower_test::mock::{self, Handle, Mock, SendResponse, Spawn};

    use super::*;
    use crate::clock::SystemClock;
    use crate::config::Config;
    use crate::error::{ERROR_DOMAIN, THROTTLE_RETRY_DELAY, THROTTLED_MESSAGE};
    use crate::keypool::PoolConfig;
    use crate::request_id::REQUEST_ID_HEADER;
    use crate::throttle::ThrottleStats;
    use crate::trace_context::TRACEPARENT_HEADER;

    type Body = Full<bytes::Bytes>;
    type Req = Request<Body>;
    type Res = Response<Body>;
    type Admitted = Spawn<AdmissionService<Mock<Req, Res>>>;

    const KEY_PAIR_METHODS: [&str; 4] = [
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "AdvanceGenerateDataKeyPair",
        "AdvanceGenerateDataKeyPairWithoutPlaintext",
    ];

    /// A core over a fresh store, the pool off, the key pair limit `limit`; open access.
    async fn kms(limit: usize) -> (Kms, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            pool: PoolConfig::uniform(0),
            keypair_concurrency: limit,
            ..Config::default()
        };
        let kms = Kms::open(&config, Arc::new(SystemClock)).await.unwrap();
        (kms, dir)
    }

    struct Fixture {
        service: Admitted,
        handle: Handle<Req, Res>,
        stats: Arc<ThrottleStats>,
        _kms: Kms,
        _dir: tempfile::TempDir,
    }

    async fn fixture(limit: usize) -> Fixture {
        let (kms, dir) = kms(limit).await;
        let stats = kms.throttle().stats();
        let (service, handle) = mock::spawn_layer(AdmissionLayer::new(kms.clone()));
        Fixture {
            service,
            handle,
            stats,
            _kms: kms,
            _dir: dir,
        }
    }

    fn request(path: &str) -> Req {
        Request::builder()
            .uri(format!("http://kms.test{path}"))
            .body(Body::default())
            .unwrap()
    }

    fn key_pair_request(method: &str) -> Req {
        request(&format!("/kms.v1.CryptoService/{method}"))
    }

    fn poll_now<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    impl Fixture {
        /// Calls the layer the way a server does: poll_ready (which must not wait),
        /// then call.
        fn call(
            &mut self,
            request: Req,
        ) -> BoxFuture<Res, Box<dyn std::error::Error + Send + Sync>> {
            assert!(
                matches!(self.service.poll_ready(), Poll::Ready(Ok(()))),
                "poll_ready must be ready whatever the permits"
            );
            self.service.call(request)
        }

        /// A call answered by the layer itself, at once: the handler never saw it.
        fn refused_now(&mut self, request: Req) -> Res {
            let mut future = self.call(request);
            let response = match poll_now(future.as_mut()) {
                Poll::Ready(result) => result.expect("a refusal is a response"),
                Poll::Pending => panic!("a refusal must not wait"),
            };
            assert!(
                self.handle.poll_request().is_pending(),
                "a refused call reached the handler"
            );
            response
        }

        /// An admitted call: polled once, the handler has it.
        fn admitted(
            &mut self,
            request: Req,
        ) -> (
            BoxFuture<Res, Box<dyn std::error::Error + Send + Sync>>,
            SendResponse<Res>,
        ) {
            let mut future = self.call(request);
            assert!(poll_now(future.as_mut()).is_pending());
            match self.handle.poll_request() {
                Poll::Ready(Some((_, send))) => (future, send),
                _ => panic!("the call did not reach the handler"),
            }
        }
    }

    fn status(response: &Res) -> Status {
        Status::from_header_map(response.headers()).expect("a grpc-status")
    }

    #[tokio::test]
    async fn a_second_key_pair_call_is_refused_at_once_with_the_public_error() {
        let mut f = fixture(1).await;
        let (_first, _send) = f.admitted(key_pair_request(KEY_PAIR_METHODS[0]));
        assert_eq!(f.stats.in_flight(), 1);
        for method in KEY_PAIR_METHODS {
            let response = f.refused_now(key_pair_request(method));
            let status = status(&response);
            assert_eq!(status.code(), Code::ResourceExhausted);
            assert_eq!(status.message(), THROTTLED_MESSAGE);
            let details = status.get_error_details();
            let info = details.error_info().expect("ErrorInfo present");
            assert_eq!(info.reason, "Rejected.Throttling");
            assert_eq!(info.domain, ERROR_DOMAIN);
            let id = response.headers().get(REQUEST_ID_HEADER).unwrap();
            assert_eq!(
                info.metadata.get("RequestId").unwrap(),
                id.to_str().unwrap()
            );
            assert_eq!(
                details.retry_info().expect("RetryInfo").retry_delay,
                Some(THROTTLE_RETRY_DELAY)
            );
        }
        assert_eq!(f.stats.rejected_total(), 4);
        assert_eq!(f.stats.in_flight(), 1, "a refusal takes no permit");
        // Other operations pass while the permit is held.
        let (_other, _send) = f.admitted(request("/kms.v1.CryptoService/Decrypt"));
    }

    #[tokio::test]
    async fn the_permit_is_released_when_the_handler_answers_not_when_the_body_is_read() {
        let mut f = fixture(1).await;
        let (first, send) = f.admitted(key_pair_request(KEY_PAIR_METHODS[1]));
        send.send_response(Response::new(Body::new("encoded message".into())));
        let response = first.await.unwrap();
        // The body is neither read nor dropped, yet the next call is admitted.
        assert_eq!(f.stats.in_flight(), 0);
        let (_next, _send) = f.admitted(key_pair_request(KEY_PAIR_METHODS[2]));
        assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        assert_eq!(f.stats.rejected_total(), 0);
    }

    #[tokio::test]
    async fn cancelling_or_failing_a_call_releases_the_permit() {
        let mut f = fixture(1).await;
        let (first, _send) = f.admitted(key_pair_request(KEY_PAIR_METHODS[0]));
        drop(first); // the client went away mid-call
        assert_eq!(f.stats.in_flight(), 0);
        let (second, send) = f.admitted(key_pair_request(KEY_PAIR_METHODS[0]));
        send.send_error("transport broke");
        assert!(second.await.is_err());
        assert_eq!(f.stats.in_flight(), 0);
        let (_third, _send) = f.admitted(key_pair_request(KEY_PAIR_METHODS[0]));
    }

    #[tokio::test]
    async fn a_panicking_handler_releases_the_permit() {
        let (kms, _dir) = kms(1).await;
        let stats = kms.throttle().stats();
        let service =
            AdmissionLayer::new(kms.clone()).layer(tower::service_fn(|request: Req| async move {
                if request.headers().contains_key("x-test-panic") {
                    panic!("handler bug");
                }
                Ok::<_, std::convert::Infallible>(Response::new(Body::default()))
            }));
        let mut panicking = key_pair_request(KEY_PAIR_METHODS[0]);
        panicking
            .headers_mut()
            .insert("x-test-panic", HeaderValue::from_static("1"));
        let joined = tokio::spawn(service.clone().oneshot(panicking)).await;
        assert!(joined.unwrap_err().is_panic());
        assert_eq!(stats.in_flight(), 0);
        let response = service
            .oneshot(key_pair_request(KEY_PAIR_METHODS[0]))
            .await
            .unwrap();
        assert!(Status::from_header_map(response.headers()).is_none());
    }

    #[tokio::test]
    async fn unknown_paths_get_one_unimplemented_and_never_reach_a_service() {
        let mut f = fixture(1).await;
        for path in [
            "/kms.v1.CryptoService/Nope",
            "/x",
            "/",
            "/kms.v1.KeyManagementService/Decrypt",
        ] {
            let response = f.refused_now(request(path));
            assert_eq!(status(&response).code(), Code::Unimplemented, "{path}");
            assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        }
        // Health and reflection pass without credentials, with an open caller.
        let mut health = f.call(request("/grpc.health.v1.Health/Check"));
        assert!(poll_now(health.as_mut()).is_pending());
        let Poll::Ready(Some((received, _send))) = f.handle.poll_request() else {
            panic!("health did not reach its service");
        };
        let caller = received.extensions().get::<Caller>().unwrap();
        assert!(caller.access.principal_name().is_none());
    }

    #[tokio::test]
    async fn every_admitted_call_carries_its_caller() {
        let mut f = fixture(1).await;
        let mut future = f.call(request("/kms.v1.KeyManagementService/ListKeys"));
        assert!(poll_now(future.as_mut()).is_pending());
        let Poll::Ready(Some((received, _send))) = f.handle.poll_request() else {
            panic!("the call did not reach the handler");
        };
        let caller = caller_of(received.extensions()).unwrap();
        assert_eq!(caller.note.transport(), Some(Transport::Grpc));
        assert!(caller_of(&http::Extensions::new()).is_err());
    }

    #[tokio::test]
    async fn every_response_names_kmsds_span_in_the_callers_trace_or_a_fresh_one() {
        const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (kms, _dir) = kms(1).await;
        let service =
            AdmissionLayer::new(kms).layer(tower::service_fn(|request: Req| async move {
                let trace = caller_of(request.extensions()).unwrap().note.fields().trace;
                let mut response = Response::new(Body::default());
                let noted = trace.unwrap().traceparent();
                response
                    .headers_mut()
                    .insert("x-test-noted", HeaderValue::from_str(&noted).unwrap());
                Ok::<_, std::convert::Infallible>(response)
            }));
        let answered = |response: &Res| {
            let value = response.headers().get(TRACEPARENT_HEADER).unwrap();
            crate::trace_context::parse(value.as_bytes()).expect("a valid traceparent")
        };
        let sent = crate::trace_context::parse(SENT.as_bytes()).unwrap();
        for path in ["/kms.v1.KeyManagementService/ListKeys", "/nope"] {
            let mut traced = request(path);
            traced
                .headers_mut()
                .insert(TRACEPARENT_HEADER, HeaderValue::from_static(SENT));
            let response = service.clone().oneshot(traced).await.unwrap();
            let answer = answered(&response);
            assert_eq!(answer.trace_id, sent.trace_id, "{path}");
            assert_ne!(
                answer.parent_id, sent.parent_id,
                "kmsd's span, not the caller's"
            );
            if let Some(noted) = response.headers().get("x-test-noted") {
                assert_eq!(noted, response.headers().get(TRACEPARENT_HEADER).unwrap());
            }
            // None, an invalid one, or two: a trace of kmsd's own.
            let mut twice = request(path);
            for value in [SENT, SENT] {
                twice
                    .headers_mut()
                    .append(TRACEPARENT_HEADER, HeaderValue::from_static(value));
            }
            let mut invalid = request(path);
            invalid.headers_mut().insert(
                TRACEPARENT_HEADER,
                HeaderValue::from_static("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            for untraced in [request(path), twice, invalid] {
                let response = service.clone().oneshot(untraced).await.unwrap();
                assert_ne!(answered(&response).trace_id, sent.trace_id, "{path}");
            }
        }
    }

    /// Compile-time proof that the layer sits in the tonic server stack with a `Send`
    /// serve future that can be spawned.
    #[allow(dead_code)]
    fn composes_with_the_tonic_server(kms: Kms) {
        fn assert_send<T: Send>(_: &T) {}
        let (_, health) = tonic_health::server::health_reporter();
        let router = tonic::transport::Server::builder()
            .layer(AdmissionLayer::new(kms))
            .add_service(health);
        let serve = router.serve("127.0.0.1:0".parse().unwrap());
        assert_send(&serve);
    }
}
