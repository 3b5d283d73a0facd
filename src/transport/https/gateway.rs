//! One HTTPS call, from request head to response: the same steps, through the same
//! functions, as the gRPC stack's layers (`docs/architecture.md`).
//!
//! 1. A [`RequestId`], a [`CallNote`] marked `https`, a tracing span, a timer.
//! 2. `POST /` with `x-kms-apiname` naming a data plane operation of the catalogue
//!    becomes its [`Route`]; anything else is answered with an `Error` body.
//! 3. The audit record starts ([`crate::audit::AuditLog::begin`]).
//! 4. The body is read, up to the size limit (else 413).
//! 5. Authentication: the signature headers ([`signing`]), the date window, the
//!    client key ([`Kms::valid_client_key`]), the RSA signature (verification only),
//!    the body digest; then [`crate::auth::authorize_principal`] as the key's
//!    principal.
//! 6. With `--audit-required`, the `STARTED` record reaches the disk first.
//! 7. The key pair throttle ([`crate::throttle::KeyPairThrottle::admit`], the one the
//!    gRPC transport uses, so a call in flight on either answers the other 429).
//! 8. The dispatch table ([`dispatch`], generated from [`crate::data_plane_calls!`])
//!    runs the operation's shared [`crate::transport::calls::Call`].
//! 9. The outcome goes to the audit record and the metrics.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::Instrument;

use super::errors::Refusal;
use super::signing::{self, API_NAME_HEADER};
use crate::auth::authorize_principal;
use crate::call::{CallNote, Caller, Transport};
use crate::crypto::client_key;
use crate::error::{KmsError, Outcome};
use crate::kms::Kms;
use crate::ops::{Operation, Route, Service};
use crate::request_id::{REQUEST_ID_HEADER, RequestId};
use crate::transport::calls::call_encoded;

/// The largest request body accepted: the gRPC transport's limit, so both take the
/// same requests.
pub const MAX_BODY_SIZE: usize = crate::server::MAX_DECODING_MESSAGE_SIZE;

/// The longest part of an unknown operation name repeated in its error message.
const MAX_ECHOED_NAME_LEN: usize = 100;

/// The content type of every body, request and response.
pub const PROTOBUF: &str = "application/x-protobuf";

/// Runs `op` on `kms` from its encoded request: the gateway's one dispatch table,
/// generated from the data plane's list. `None` for an operation outside it.
pub async fn dispatch(
    op: Operation,
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Option<Result<Vec<u8>, KmsError>> {
    macro_rules! table {
        ($( $op:ident => $request:ident, $method:ident; )*) => {
            match op {
                $( Operation::$op => Some(
                    call_encoded::<crate::transport::grpc::pb::$request>(kms, caller, body).await
                ), )*
                _ => None,
            }
        };
    }
    crate::data_plane_calls!(table)
}

/// The route of an HTTPS request: `POST /` with the `x-kms-apiname` of a data plane
/// operation, else [`Route::Unknown`] and the name as sent (for the error message).
fn classify<B>(request: &Request<B>) -> (Route, String) {
    let name = request
        .headers()
        .get(API_NAME_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim();
    let shown: String = name.chars().take(MAX_ECHOED_NAME_LEN).collect();
    if request.method() != Method::POST || request.uri().path() != "/" {
        let shown = format!("{} {}", request.method(), request.uri().path());
        return (
            Route::Unknown,
            shown.chars().take(MAX_ECHOED_NAME_LEN).collect(),
        );
    }
    let route =
        Operation::of_service(Service::Crypto, name).map_or(Route::Unknown, Route::Operation);
    (route, shown)
}

/// Answers one HTTPS request; never fails (every failure is an `Error` body).
pub async fn handle(kms: Kms, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let id = RequestId::new();
    let note = CallNote::default();
    note.set_transport(Transport::Https);
    let started = Instant::now();
    let (route, name) = classify(&request);
    let span = tracing::info_span!("https", request_id = %id, operation = route.label());
    let answer = async {
        match route {
            Route::Operation(op) => run(&kms, op, id, &note, request).await,
            _ => {
                tracing::debug!("unknown operation");
                Err(Refusal::of(&KmsError::UnknownOperation(name), &id))
            }
        }
    }
    .instrument(span)
    .await;
    let (status, body, code) = match answer {
        Ok(body) => (http::StatusCode::OK, Bytes::from(body), Outcome::OK.code),
        Err(refusal) => (refusal.http, refusal.body(&id), refusal.code),
    };
    kms.metrics()
        .observe(Transport::Https, route, code, started.elapsed());
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The answer to a call that ran past [`super::REQUEST_TIMEOUT`] (its audit record,
/// dropped unfinished, says `CANCELLED`; no request ID reached this point).
pub fn timed_out() -> Response<Full<Bytes>> {
    let id = RequestId::new();
    let refusal = Refusal {
        http: http::StatusCode::GATEWAY_TIMEOUT,
        code: crate::error::StatusCode::DeadlineExceeded,
        error_code: "InternalFailure",
        message: "The call took too long and was abandoned.".into(),
    };
    let mut response = Response::new(Full::new(refusal.body(&id)));
    *response.status_mut() = refusal.http;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    response
}

/// Steps 3 to 9 of the module docs for a call of `op`.
async fn run(
    kms: &Kms,
    op: Operation,
    id: RequestId,
    note: &CallNote,
    request: Request<Incoming>,
) -> Result<Vec<u8>, Refusal> {
    let pending = kms.audit().map(|log| log.begin(op, id, note.clone()));
    let result = authorized_call(kms, op, id, note, request).await;
    let outcome = match &result {
        Ok(_) => Outcome::OK,
        Err(refusal) => refusal.outcome(),
    };
    note.set_outcome(outcome);
    if let Some(pending) = pending {
        if kms.audit().is_some_and(|log| log.is_required()) {
            if !pending.finish_durable(outcome).await {
                let err = KmsError::internal("the call's audit record could not be written");
                return Err(Refusal::of(&err, &id));
            }
        } else {
            pending.finish(outcome);
        }
    }
    result
}

async fn authorized_call(
    kms: &Kms,
    op: Operation,
    id: RequestId,
    note: &CallNote,
    request: Request<Incoming>,
) -> Result<Vec<u8>, Refusal> {
    let (head, body) = request.into_parts();
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_SIZE as u64) {
        return Err(Refusal::too_large(MAX_BODY_SIZE));
    }
    let body = match Limited::new(body, MAX_BODY_SIZE).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(Refusal::too_large(MAX_BODY_SIZE));
        }
        Err(err) => {
            tracing::debug!(error = %err, "request body not read");
            return Err(Refusal::of(
                &KmsError::InvalidParameter("The request body could not be read.".into()),
                &id,
            ));
        }
    };

    let signed = signing::read(&head.headers)?;
    signing::check_date(signed.date, kms.now())?;
    let record = match kms
        .valid_client_key(&signed.client_key_id)
        .await
        .map_err(|err| Refusal::of(&err, &id))?
    {
        Ok(record) => record,
        Err(refusal) => {
            tracing::info!(reason = refusal.as_str(), "client key refused");
            return Err(Refusal::unauthenticated(match refusal {
                crate::keys::client_keys::ClientKeyRefusal::Unknown => "The client key is unknown.",
                crate::keys::client_keys::ClientKeyRefusal::NotYetValid => {
                    "The client key is not valid yet."
                }
                crate::keys::client_keys::ClientKeyRefusal::Expired => {
                    "The client key has expired."
                }
            }));
        }
    };
    // RSA verification is ~30 µs for a 2048-bit key: cheap enough for the executor
    // (the private-key operations are what must stay off it).
    if !client_key::verify(
        &record.public_key_der,
        signed.string_to_sign.as_bytes(),
        &signed.signature,
    ) {
        tracing::info!(client_key_id = %record.client_key_id, "signature does not verify");
        return Err(Refusal::unauthenticated(
            "The request signature does not verify.",
        ));
    }
    signing::check_body(&signed.content_sha256, &body)?;
    let access = authorize_principal(
        kms.policy().map(|p| p.as_ref()),
        op,
        &record.principal,
        note,
    )
    .map_err(|err| Refusal::of(&err, &id))?;

    if let Some(log) = kms.audit().filter(|log| log.is_required()) {
        log.record_start(op, id, note)
            .await
            .map_err(|err| Refusal::of(&err, &id))?;
    }
    let permit = kms.throttle().admit(op).map_err(|err| {
        tracing::debug!(%op, "key pair call rejected: concurrency limit reached");
        Refusal::of(&err, &id)
    })?;
    let caller = Caller {
        request_id: id,
        access,
        note: note.clone(),
    };
    let result = dispatch(op, kms, &caller, &body)
        .await
        .unwrap_or_else(|| Err(KmsError::UnknownOperation(op.name().to_owned())));
    // The work is done: the limit counts work in progress, not the response's sending.
    drop(permit);
    result.map_err(|err| Refusal::of(&err, &id))
}
