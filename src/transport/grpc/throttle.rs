//! The tower layer of the key pair throttle: [`crate::throttle::KeyPairThrottle`] in
//! front of the tonic services.
//!
//! - The call's [`Route`] (set by the edge) decides; the layer never reads the path.
//!   Operations outside the limit go straight through without touching it.
//! - A call over the limit is answered at once with the status of
//!   [`crate::error::KmsError::Throttled`]; it never waits, neither in `call` nor in `poll_ready`
//!   (which only asks the inner service).
//! - The permit is owned by the response future and released as soon as the handler
//!   has answered (its work, the key pair generation and sealing, is done), when the
//!   future fails, or when it is dropped (client cancel, or the handler's task
//!   unwinding from a panic). It is NOT held while the response body is sent: the limit
//!   counts work in progress, not slow readers, so a client that never reads its
//!   response (an HTTP/2 window of 0) cannot hold the instance's only permit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::status::refuse;
use crate::ops::Route;
use crate::throttle::{KeyPairPermit, KeyPairThrottle};

// === impl ThrottleLayer ===

/// Tower layer that limits concurrent key pair calls per instance; see the module docs.
/// Every service made by one layer shares its throttle.
#[derive(Clone, Debug)]
pub struct ThrottleLayer {
    throttle: KeyPairThrottle,
}

impl ThrottleLayer {
    /// The layer enforcing `throttle`.
    pub fn new(throttle: KeyPairThrottle) -> Self {
        Self { throttle }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = ThrottleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ThrottleService {
            inner,
            throttle: self.throttle.clone(),
        }
    }
}

// === impl ThrottleService ===

/// The service made by [`ThrottleLayer`].
///
/// Generic over the request and response bodies. The inner response body must be
/// `Default`, as a rejection is a trailers-only gRPC response with an empty body.
#[derive(Clone, Debug)]
pub struct ThrottleService<S> {
    inner: S,
    throttle: KeyPairThrottle,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ThrottleService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never wait for a permit here: that would queue calls instead of rejecting them.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let permit = match Route::from_extensions(request.extensions()).operation() {
            None => None,
            Some(operation) => match self.throttle.admit(operation) {
                Ok(permit) => permit,
                // The inner service is not called, so the readiness it reported stays
                // reserved for the next call.
                Err(err) => {
                    tracing::debug!(%operation, "key pair call rejected: concurrency limit reached");
                    return ResponseFuture {
                        state: State::Rejected {
                            response: Some(refuse(&err, request.extensions())),
                        },
                    };
                }
            },
        };
        // `self.inner` is the clone that was driven ready; call that one and keep a
        // fresh clone for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Called {
                future: inner.call(request),
                permit,
            },
        }
    }
}

// === impl ResponseFuture ===

pin_project! {
    /// The future of [`ThrottleService`]: the inner call holding its permit, or a
    /// rejection that is ready at once.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Called {
            #[pin]
            future: F,
            // Owned here so that dropping the future (cancel, panic unwind) releases it.
            permit: Option<KeyPairPermit>,
        },
        Rejected {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                // The handler has answered or failed: its work is over.
                drop(permit.take());
                Poll::Ready(result)
            }
            StateProj::Rejected { response } => {
                let response = response
                    .take()
                    .expect("throttle ResponseFuture polled after completion");
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    use tonic::body::Body;
    use tonic::{Code, Status};
    use tonic_types::StatusExt;
    use tower::ServiceExt;
    use tower_test::mock::{self, Handle, Mock, SendResponse, Spawn};

    use super::*;
    use crate::error::{ERROR_DOMAIN, THROTTLE_RETRY_DELAY, THROTTLED_MESSAGE};
    use crate::request_id::RequestId;
    use crate::throttle::{DEFAULT_KEYPAIR_CONCURRENCY, ThrottleStats};

    const THROTTLED_SERVICE: &str = "kms.v1.CryptoService";
    const THROTTLED_METHODS: [&str; 4] = [
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "AdvanceGenerateDataKeyPair",
        "AdvanceGenerateDataKeyPairWithoutPlaintext",
    ];

    type Req = Request<Body>;
    type Res = Response<Body>;
    type Throttled = Spawn<ThrottleService<Mock<Req, Res>>>;
    type CallFuture = <ThrottleService<Mock<Req, Res>> as Service<Req>>::Future;

    fn path(method: &str) -> String {
        format!("/{THROTTLED_SERVICE}/{method}")
    }

    /// A request as the edge hands it on: classified once, the route in its extensions.
    fn request(path: &str) -> Req {
        let mut request = Request::builder()
            .uri(format!("http://kms.test{path}"))
            .body(Body::empty())
            .unwrap();
        let route = Route::from_method(path.strip_prefix('/').unwrap_or(path));
        request.extensions_mut().insert(route);
        request
    }

    fn layer(limit: usize) -> ThrottleLayer {
        ThrottleLayer::new(KeyPairThrottle::new(limit).unwrap())
    }

    fn key_pair_request() -> Req {
        request(&path("GenerateDataKeyPair"))
    }

    fn ok_response() -> Res {
        Response::new(Body::new(String::from("encoded message")))
    }

    fn throttle(limit: usize) -> (Throttled, Handle<Req, Res>, Arc<ThrottleStats>) {
        let layer = layer(limit);
        let stats = layer.throttle.stats();
        let (service, handle) = mock::spawn_layer(layer);
        (service, handle, stats)
    }

    /// Calls the service the way a server does: poll_ready (which must not wait), then call.
    fn call(service: &mut Throttled, request: Req) -> CallFuture {
        assert!(
            matches!(service.poll_ready(), Poll::Ready(Ok(()))),
            "poll_ready must be ready whatever the permits"
        );
        service.call(request)
    }

    /// Polls once, proving the outcome is available without waiting.
    fn poll_now<F: Future>(future: F) -> Poll<F::Output> {
        let mut future = std::pin::pin!(future);
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A call the throttle turned away: ready at once, and the inner service never saw it.
    fn assert_rejected_now(
        service: &mut Throttled,
        handle: &mut Handle<Req, Res>,
        request: Req,
    ) -> Response<Body> {
        let response = match poll_now(call(service, request)) {
            Poll::Ready(result) => result.expect("a rejection is a response, not an error"),
            Poll::Pending => panic!("a throttled call must be rejected at once, not queued"),
        };
        assert!(
            handle.poll_request().is_pending(),
            "a rejected call reached the handler"
        );
        assert_eq!(
            Status::from_header_map(response.headers()).map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        response
    }

    /// The request the inner service has received, without waiting: the mock hands it
    /// over inside `call`, so a rejected call fails here instead of hanging the test.
    fn received(handle: &mut Handle<Req, Res>) -> (Req, SendResponse<Res>) {
        match handle.poll_request() {
            Poll::Ready(Some(received)) => received,
            _ => panic!("the call did not reach the handler"),
        }
    }

    /// An admitted call: the inner service received it.
    fn assert_admitted(
        service: &mut Throttled,
        handle: &mut Handle<Req, Res>,
        request: Req,
    ) -> (CallFuture, SendResponse<Res>) {
        let future = call(service, request);
        let (_, send) = received(handle);
        (future, send)
    }

    /// Reads a body to its end the way hyper does, without dropping it.
    async fn read_to_end<B: http_body::Body + Unpin>(body: &mut B) -> usize
    where
        B::Error: std::fmt::Debug,
    {
        let mut frames = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
        {
            frame.unwrap();
            frames += 1;
        }
        frames
    }

    #[tokio::test]
    async fn second_concurrent_call_is_rejected_at_once_with_the_public_error() {
        let (mut service, mut handle, stats) = throttle(1);
        let (_first, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        assert_eq!(stats.in_flight(), 1);

        let id = RequestId::new();
        let mut second = request(&path("AdvanceGenerateDataKeyPairWithoutPlaintext"));
        second.extensions_mut().insert(id);
        let response = assert_rejected_now(&mut service, &mut handle, second);

        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), THROTTLED_MESSAGE);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo present");
        assert_eq!(info.reason, "Rejected.Throttling");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata.get("RequestId"), Some(&id.to_string()));
        assert_eq!(
            details.retry_info().expect("RetryInfo present").retry_delay,
            Some(THROTTLE_RETRY_DELAY)
        );
        assert_eq!(
            response.headers().get("x-kms-request-id").unwrap(),
            id.to_string().as_str()
        );
        assert_eq!(
            response.headers().get(http::header::CONTENT_TYPE).unwrap(),
            "application/grpc"
        );
        assert_eq!(stats.rejected_total(), 1);
        assert_eq!(stats.in_flight(), 1, "a rejection takes no permit");
    }

    #[tokio::test]
    async fn the_four_methods_share_one_limit() {
        let (mut service, mut handle, stats) = throttle(1);
        let (_first, _send) = assert_admitted(
            &mut service,
            &mut handle,
            request(&path(THROTTLED_METHODS[3])),
        );
        for method in THROTTLED_METHODS {
            assert_rejected_now(&mut service, &mut handle, request(&path(method)));
        }
        assert_eq!(stats.rejected_total(), 4);
    }

    #[tokio::test]
    async fn the_permit_is_released_when_the_handler_answers_not_when_the_body_is_read() {
        let (mut service, mut handle, stats) = throttle(1);
        let (first, send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        assert_eq!(stats.in_flight(), 1, "held while the handler works");
        assert_rejected_now(&mut service, &mut handle, key_pair_request());
        send.send_response(ok_response());
        let response = first.await.unwrap();

        // The body is neither read nor dropped (a client that never opens its window),
        // yet the next call is admitted.
        assert_eq!(stats.in_flight(), 0);
        let (_next, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        assert_eq!(stats.rejected_total(), 1);
        let mut body = response.into_body();
        assert_eq!(read_to_end(&mut body).await, 1, "the response is intact");
    }

    #[tokio::test]
    async fn cancelling_the_call_releases_the_permit() {
        let (mut service, mut handle, stats) = throttle(1);
        let (first, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        assert!(poll_now(first).is_pending(), "the handler has not answered");
        // poll_now dropped the future: the client went away mid-call.
        assert_eq!(stats.in_flight(), 0);
        let (_next, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
    }

    #[tokio::test]
    async fn a_failed_call_releases_the_permit() {
        let (mut service, mut handle, stats) = throttle(1);
        let (first, send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        send.send_error("transport broke");
        assert!(first.await.is_err());
        assert_eq!(stats.in_flight(), 0);
        let (_next, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
    }

    #[tokio::test]
    async fn a_panicking_handler_releases_the_permit() {
        let layer = layer(1);
        let stats = layer.throttle.stats();
        let seen_in_flight = Arc::new(AtomicUsize::new(usize::MAX));
        let service = layer.layer(tower::service_fn({
            let stats = Arc::clone(&stats);
            let seen_in_flight = Arc::clone(&seen_in_flight);
            move |request: Req| {
                let stats = Arc::clone(&stats);
                let seen_in_flight = Arc::clone(&seen_in_flight);
                async move {
                    if request.headers().contains_key("x-test-panic") {
                        seen_in_flight.store(stats.in_flight(), Ordering::SeqCst);
                        panic!("handler bug");
                    }
                    Ok::<_, Infallible>(ok_response())
                }
            }
        }));

        let mut panicking = key_pair_request();
        panicking
            .headers_mut()
            .insert("x-test-panic", http::HeaderValue::from_static("1"));
        let joined = tokio::spawn(service.clone().oneshot(panicking)).await;
        assert!(joined.unwrap_err().is_panic());
        assert_eq!(
            seen_in_flight.load(Ordering::SeqCst),
            1,
            "the call held the permit"
        );
        assert_eq!(stats.in_flight(), 0);

        let response = service.oneshot(key_pair_request()).await.unwrap();
        assert!(
            Status::from_header_map(response.headers()).is_none(),
            "admitted"
        );
        assert_eq!(stats.rejected_total(), 0);
    }

    #[tokio::test]
    async fn other_paths_pass_while_the_permit_is_held() {
        let (mut service, mut handle, stats) = throttle(1);
        let (_first, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        for other in [
            "/kms.v1.CryptoService/GenerateDataKeyPairX",
            "/kms.v1.CryptoService/Encrypt",
            "/kms.v1.CryptoService/GenerateDataKey",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            let future = call(&mut service, request(other));
            let (seen, send) = received(&mut handle);
            assert_eq!(seen.uri().path(), other);
            send.send_response(ok_response());
            let response = future.await.unwrap();
            assert!(
                Status::from_header_map(response.headers()).is_none(),
                "{other}"
            );
            assert_eq!(stats.in_flight(), 1, "{other} touched the semaphore");
        }
        assert_eq!(stats.rejected_total(), 0);
    }

    #[tokio::test]
    async fn a_limit_of_four_admits_four_and_rejects_the_fifth() {
        let (mut service, mut handle, stats) = throttle(4);
        let mut admitted = Vec::new();
        for method in THROTTLED_METHODS {
            admitted.push(assert_admitted(
                &mut service,
                &mut handle,
                request(&path(method)),
            ));
        }
        assert_eq!(stats.in_flight(), 4);
        assert_rejected_now(&mut service, &mut handle, key_pair_request());
        assert_eq!(stats.rejected_total(), 1);

        admitted.pop();
        assert_eq!(stats.in_flight(), 3);
        let (_fifth, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        assert_eq!(stats.in_flight(), 4);
        assert_eq!(stats.rejected_total(), 1);
    }

    #[tokio::test]
    async fn services_made_by_one_layer_share_its_limit() {
        let layer = layer(1);
        let (mock_a, mut handle_a) = mock::pair::<Req, Res>();
        let (mock_b, mut handle_b) = mock::pair::<Req, Res>();
        let mut a = Spawn::new(layer.layer(mock_a));
        let mut b = Spawn::new(layer.layer(mock_b));
        let (_first, _send) = assert_admitted(&mut a, &mut handle_a, key_pair_request());
        assert_rejected_now(&mut b, &mut handle_b, key_pair_request());
        assert_eq!(layer.throttle.stats().rejected_total(), 1);
    }

    /// Compile-time proof that the layer sits in the server stack the integrator builds,
    /// with a `Send` serve future that can be spawned.
    #[test]
    fn composes_with_the_tonic_server() {
        fn assert_send<T: Send>(_: &T) {}
        let layer = layer(DEFAULT_KEYPAIR_CONCURRENCY);
        let (_reporter, health) = tonic_health::server::health_reporter();
        let serve = tonic::transport::Server::builder()
            .layer(super::super::edge::EdgeLayer::default())
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tokio_stream::empty::<
                Result<tokio::net::TcpStream, std::io::Error>,
            >());
        assert_send(&serve);
    }
}
