//! The per-instance throttle of the key pair operations.
//!
//! The public API processes one GenerateDataKeyPair-family call at a time per instance
//! and rejects extra concurrent calls at once with `Rejected.Throttling`, "Concurrency
//! Limit Exceeded." (reference section 1). [`KeyPairThrottleLayer`] does that for the
//! whole tonic server:
//!
//! ```text
//! Server::builder().layer(RequestIdLayer).layer(KeyPairThrottleLayer::new(limit)?)
//! ```
//!
//! - Only the exact paths `/kms.v1.CryptoService/{m}` for `m` in [`THROTTLED_METHODS`]
//!   are counted, together, against one semaphore shared by every connection and every
//!   clone of the service. Every other path goes straight through without touching it.
//! - A call over the limit is answered at once with the status of
//!   [`KmsError::Throttled`]; it never waits, neither in `call` nor in `poll_ready`
//!   (which only asks the inner service).
//! - The permit is owned by the response future, then moved into the response body
//!   ([`PermitBody`]). It is released when the body has sent its last frame, fails, or
//!   is dropped; or, if no response is produced, when the future resolves to an error
//!   or is dropped (client cancel, or the handler's task unwinding from a panic). So a
//!   call counts until its response has been sent, not merely until the handler
//!   returns, and no path can leak a permit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::KmsError;
use crate::request_id::RequestId;

/// The gRPC service whose key pair methods are throttled.
pub const THROTTLED_SERVICE: &str = "kms.v1.CryptoService";

/// The methods of [`THROTTLED_SERVICE`] that share the per-instance limit.
pub const THROTTLED_METHODS: [&str; 4] = [
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "AdvanceGenerateDataKeyPair",
    "AdvanceGenerateDataKeyPairWithoutPlaintext",
];

/// The limit of the public API: one key pair call at a time per instance.
pub const DEFAULT_KEYPAIR_CONCURRENCY: usize = 1;

/// The throttled method a request path names, if any. Matches the exact path
/// `/kms.v1.CryptoService/{method}`, nothing looser.
pub fn throttled_method(path: &str) -> Option<&'static str> {
    let method = path
        .strip_prefix('/')?
        .strip_prefix(THROTTLED_SERVICE)?
        .strip_prefix('/')?;
    THROTTLED_METHODS.into_iter().find(|m| *m == method)
}

/// A concurrency limit the throttle cannot enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ThrottleLimitError {
    /// A limit of 0 would reject every key pair call.
    #[error("the key pair concurrency limit must be at least 1")]
    Zero,
    /// More permits than a tokio semaphore can hold.
    #[error("the key pair concurrency limit must be at most {max}, got {0}", max = Semaphore::MAX_PERMITS)]
    TooLarge(usize),
}

// === impl ThrottleStats ===

/// The throttle's live numbers, shared by the layer and every service it made.
///
/// Read them through [`KeyPairThrottleLayer::stats`]; a metrics exporter can hold the
/// `Arc` for the life of the server.
#[derive(Debug)]
pub struct ThrottleStats {
    limit: usize,
    permits: Arc<Semaphore>,
    rejected: AtomicU64,
}

impl ThrottleStats {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            rejected: AtomicU64::new(0),
        }
    }

    /// The configured limit (`--keypair-concurrency`).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Key pair calls admitted and not yet complete. Read from the semaphore itself, so
    /// it cannot drift from what the throttle enforces.
    pub fn in_flight(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    /// Key pair calls rejected since the server started.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

// === impl KeyPairThrottleLayer ===

/// Tower layer that limits concurrent key pair calls per instance; see the module docs.
///
/// Every service made by one layer shares its limit.
#[derive(Clone, Debug)]
pub struct KeyPairThrottleLayer {
    stats: Arc<ThrottleStats>,
}

impl KeyPairThrottleLayer {
    /// A throttle admitting `limit` concurrent key pair calls.
    ///
    /// # Errors
    ///
    /// [`ThrottleLimitError::Zero`] for 0, [`ThrottleLimitError::TooLarge`] above
    /// [`Semaphore::MAX_PERMITS`].
    pub fn new(limit: usize) -> Result<Self, ThrottleLimitError> {
        if limit == 0 {
            return Err(ThrottleLimitError::Zero);
        }
        if limit > Semaphore::MAX_PERMITS {
            return Err(ThrottleLimitError::TooLarge(limit));
        }
        Ok(Self {
            stats: Arc::new(ThrottleStats::new(limit)),
        })
    }

    /// The live numbers of this throttle.
    pub fn stats(&self) -> Arc<ThrottleStats> {
        Arc::clone(&self.stats)
    }
}

impl<S> Layer<S> for KeyPairThrottleLayer {
    type Service = KeyPairThrottle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyPairThrottle {
            inner,
            stats: Arc::clone(&self.stats),
        }
    }
}

// === impl KeyPairThrottle ===

/// The service made by [`KeyPairThrottleLayer`].
///
/// Generic over the request and response bodies, so it sits anywhere in tonic's stack:
/// in front of the router it answers `Response<PermitBody<tonic::body::Body>>`. The
/// inner response body must be `Default`, as a rejection is a trailers-only gRPC
/// response (`Status::into_http`) with an empty body.
#[derive(Clone, Debug)]
pub struct KeyPairThrottle<S> {
    inner: S,
    stats: Arc<ThrottleStats>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeyPairThrottle<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<PermitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never wait for a permit here: that would queue calls instead of rejecting them.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let permit = match throttled_method(request.uri().path()) {
            None => None,
            Some(method) => match Arc::clone(&self.stats.permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                // The inner service is not called, so the readiness it reported stays
                // reserved for the next call.
                Err(_) => return self.reject(method, &request),
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

impl<S> KeyPairThrottle<S> {
    fn reject<ReqBody, ResBody, F>(
        &self,
        method: &'static str,
        request: &Request<ReqBody>,
    ) -> ResponseFuture<F, ResBody>
    where
        ResBody: Default,
    {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        let request_id = RequestId::from_extensions(request.extensions());
        tracing::debug!(%request_id, method, "key pair call rejected: concurrency limit reached");
        let response = KmsError::Throttled.to_status(&request_id).into_http();
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

// === impl ResponseFuture ===

pin_project! {
    /// The future of [`KeyPairThrottle`]: the inner call holding its permit, or a
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
            permit: Option<OwnedSemaphorePermit>,
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
    type Output = Result<Response<PermitBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                // On error the permit is dropped here; on success the body carries it.
                let permit = permit.take();
                Poll::Ready(
                    result.map(|response| response.map(|body| PermitBody::new(body, permit))),
                )
            }
            StateProj::Rejected { response } => {
                let response = response
                    .take()
                    .expect("throttle ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(|body| PermitBody::new(body, None))))
            }
        }
    }
}

// === impl PermitBody ===

pin_project! {
    /// A response body that holds its call's throttle permit (if any) until the body
    /// has yielded its last frame, failed, or been dropped.
    #[derive(Debug, Default)]
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<B> PermitBody<B> {
    fn new(inner: B, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self { inner, permit }
    }
}

impl<B: http_body::Body> http_body::Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let finished = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
        };
        if finished {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;

    use tonic::body::Body;
    use tonic::{Code, Status};
    use tonic_types::StatusExt;
    use tower::ServiceExt;
    use tower_test::mock::{self, Handle, Mock, SendResponse, Spawn};

    use super::*;
    use crate::error::{ERROR_DOMAIN, THROTTLE_RETRY_DELAY, THROTTLED_MESSAGE};

    type Req = Request<Body>;
    type Res = Response<Body>;
    type Throttled = Spawn<KeyPairThrottle<Mock<Req, Res>>>;
    type CallFuture = <KeyPairThrottle<Mock<Req, Res>> as Service<Req>>::Future;

    fn path(method: &str) -> String {
        format!("/{THROTTLED_SERVICE}/{method}")
    }

    fn request(path: &str) -> Req {
        Request::builder()
            .uri(format!("http://kms.test{path}"))
            .body(Body::empty())
            .unwrap()
    }

    fn key_pair_request() -> Req {
        request(&path("GenerateDataKeyPair"))
    }

    fn ok_response() -> Res {
        Response::new(Body::new(String::from("encoded message")))
    }

    fn throttle(limit: usize) -> (Throttled, Handle<Req, Res>, Arc<ThrottleStats>) {
        let layer = KeyPairThrottleLayer::new(limit).unwrap();
        let stats = layer.stats();
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
    ) -> Response<PermitBody<Body>> {
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

    #[test]
    fn only_the_four_exact_paths_are_throttled() {
        for method in THROTTLED_METHODS {
            assert_eq!(throttled_method(&path(method)), Some(method));
        }
        for other in [
            "/kms.v1.CryptoService/GenerateDataKeyPairX",
            "/kms.v1.CryptoService/GenerateDataKey",
            "/kms.v1.CryptoService/Encrypt",
            "/kms.v1.CryptoService/GenerateDataKeyPair/",
            "/kms.v1.CryptoService/generatedatakeypair",
            "/kms.v1.CryptoServiceX/GenerateDataKeyPair",
            "/kms.v2.CryptoService/GenerateDataKeyPair",
            "kms.v1.CryptoService/GenerateDataKeyPair",
            "/GenerateDataKeyPair",
            "/grpc.health.v1.Health/Check",
            "/",
        ] {
            assert_eq!(throttled_method(other), None, "{other}");
        }
    }

    #[test]
    fn a_zero_limit_is_refused() {
        assert_eq!(
            KeyPairThrottleLayer::new(0).unwrap_err(),
            ThrottleLimitError::Zero
        );
        assert_eq!(
            KeyPairThrottleLayer::new(usize::MAX).unwrap_err(),
            ThrottleLimitError::TooLarge(usize::MAX)
        );
        assert_eq!(KeyPairThrottleLayer::new(1).unwrap().stats().limit(), 1);
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
    async fn the_permit_is_held_until_the_response_body_is_finished() {
        let (mut service, mut handle, stats) = throttle(1);
        let (first, send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        send.send_response(ok_response());
        let response = first.await.unwrap();

        // The handler has returned, but the response has not been sent yet.
        assert_eq!(stats.in_flight(), 1);
        assert_rejected_now(&mut service, &mut handle, key_pair_request());

        // Finished, not dropped: the permit goes back when the last frame is read.
        let mut body = response.into_body();
        assert_eq!(read_to_end(&mut body).await, 1);
        assert_eq!(stats.in_flight(), 0);
        let (_next, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        assert_eq!(stats.rejected_total(), 1);
        drop(body);
    }

    #[tokio::test]
    async fn dropping_the_unread_body_releases_the_permit() {
        let (mut service, mut handle, stats) = throttle(1);
        let (first, send) = assert_admitted(&mut service, &mut handle, key_pair_request());
        send.send_response(ok_response());
        let response = first.await.unwrap();
        assert_eq!(stats.in_flight(), 1);

        drop(response);
        assert_eq!(stats.in_flight(), 0);
        let (_next, _send) = assert_admitted(&mut service, &mut handle, key_pair_request());
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
        let layer = KeyPairThrottleLayer::new(1).unwrap();
        let stats = layer.stats();
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
        let layer = KeyPairThrottleLayer::new(1).unwrap();
        let (mock_a, mut handle_a) = mock::pair::<Req, Res>();
        let (mock_b, mut handle_b) = mock::pair::<Req, Res>();
        let mut a = Spawn::new(layer.layer(mock_a));
        let mut b = Spawn::new(layer.layer(mock_b));
        let (_first, _send) = assert_admitted(&mut a, &mut handle_a, key_pair_request());
        assert_rejected_now(&mut b, &mut handle_b, key_pair_request());
        assert_eq!(layer.stats().rejected_total(), 1);
    }

    /// Compile-time proof that the layer sits in the server stack the integrator builds,
    /// with a `Send` serve future that can be spawned.
    #[test]
    fn composes_with_the_tonic_server() {
        fn assert_send<T: Send>(_: &T) {}
        let layer = KeyPairThrottleLayer::new(DEFAULT_KEYPAIR_CONCURRENCY).unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let serve = tonic::transport::Server::builder()
            .layer(crate::request_id::RequestIdLayer)
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tokio_stream::empty::<
                Result<tokio::net::TcpStream, std::io::Error>,
            >());
        assert_send(&serve);
    }
}
