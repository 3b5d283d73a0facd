//! One HTTPS call, from request head to response, through the same admission
//! pipeline as gRPC ([`crate::pipeline`]):
//!
//! 1. `POST /` with an `x-kms-apiname` the catalogue serves through the gateway
//!    becomes its [`Route`]; anything else is refused by the pipeline.
//! 2. What the caller presented, before any of the body is read: the signature
//!    headers ([`request_signature`]), the date window, the client key (valid now),
//!    the RSA signature over the string-to-sign (verification only). Then the body is
//!    read, up to the size limit (else 413), and its digest checked against the signed
//!    `content-sha256`. The client key's principal is the caller.
//! 3. The pipeline: authenticate the principal under the policy, audit, authorize,
//!    audit gate, throttle (the same limit gRPC shares), then the dispatch table
//!    ([`dispatch`], generated from the catalogue's list) runs the operation's
//!    [`Call`](crate::api::Call).
//!
//! The caller's `traceparent` header (not signed: it is not an `x-kms-` header) makes
//! kmsd's span a child of the caller's; the response's `traceparent` names that span
//! ([`crate::trace_context`]).

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::errors::Refusal;
use super::request_signature::{self, API_NAME_HEADER, PROTOBUF};
use crate::api::call_encoded;
use crate::auth::{self, AuthPolicy, Identity};
use crate::call::{CallNote, Caller, Transport};
use crate::crypto::client_key;
use crate::error::{ErrorCode, KmsError, Outcome};
use crate::keys::client_keys;
use crate::kms::Kms;
use crate::pipeline::{self, Answer, Inbound, Presented};
use crate::request_id::RequestId;
use crate::store::ClientKeyRecord;
use crate::transport::{self, limits::MAX_DECODING_MESSAGE_SIZE};
use kmsd_api::ops::{Operation, Route};

/// The largest request body accepted: the gRPC transport's limit, so both take the
/// same requests.
pub const MAX_BODY_SIZE: usize = MAX_DECODING_MESSAGE_SIZE;

/// The longest part of an unknown operation name repeated in its error message.
const MAX_ECHOED_NAME_LEN: usize = 100;

/// The one answer to a request whose client key or signature does not check out,
/// whatever the reason: an unauthenticated caller must not learn whether a client
/// key ID exists, has expired or is not valid yet (the reason is logged at info).
pub const NOT_AUTHENTICATED: &str =
    "The request signature does not verify, or its client key is not valid.";

/// Runs `op` on `kms` from its encoded request: the gateway's one dispatch table,
/// generated from the catalogue's list. `None` for an operation without a message
/// handler (Backup streams).
pub async fn dispatch(
    op: Operation,
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Option<Result<Vec<u8>, KmsError>> {
    macro_rules! table {
        (
            Crypto { $( $c_op:ident: $c_req:ident => $c_resp:ident, $c_method:ident, $($c_flag:literal),*; )* }
            KeyManagement { $( $k_op:ident: $k_req:ident => $k_resp:ident, $k_method:ident, $($k_flag:literal),*; )* }
            Secrets { $( $s_op:ident: $s_req:ident => $s_resp:ident, $s_method:ident, $($s_flag:literal),*; )* }
            Admin { $($admin:tt)* }
        ) => {
            match op {
                $( Operation::$c_op => Some(call_encoded::<kmsd_api::pb::$c_req>(kms, caller, body).await), )*
                $( Operation::$k_op => Some(call_encoded::<kmsd_api::pb::$k_req>(kms, caller, body).await), )*
                $( Operation::$s_op => Some(call_encoded::<kmsd_api::pb::$s_req>(kms, caller, body).await), )*
                _ => None,
            }
        };
    }
    kmsd_api::for_each_operation!(table)
}

/// The route of an HTTPS request: `POST /` with the `x-kms-apiname` of an operation
/// the gateway serves, else [`Route::Unknown`] and the name as sent (for the error
/// message).
fn classify<B>(request: &Request<B>) -> (Route, String) {
    if request.method() != Method::POST || request.uri().path() != "/" {
        let shown = format!("{} {}", request.method(), request.uri().path());
        return (
            Route::Unknown,
            shown.chars().take(MAX_ECHOED_NAME_LEN).collect(),
        );
    }
    let name = request
        .headers()
        .get(API_NAME_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim();
    match Operation::from_name(name).filter(|op| op.is_served_by_gateway()) {
        Some(op) => (Route::Operation(op), String::new()),
        None => (
            Route::Unknown,
            name.chars().take(MAX_ECHOED_NAME_LEN).collect(),
        ),
    }
}

/// The gateway's answer: the encoded response message, or a refusal.
type GatewayAnswer = Result<Vec<u8>, Refusal>;

impl Answer for GatewayAnswer {
    fn refused(err: &KmsError, request_id: &RequestId) -> Self {
        Err(Refusal::of(err, request_id))
    }

    fn outcome(&self, _note: &CallNote) -> Outcome {
        match self {
            Ok(_) => Outcome::OK,
            Err(refusal) => refusal.outcome(),
        }
    }
}

/// The client key that signed the request: its principal, and how it was minted.
struct ClientKeyPrincipal(ClientKeyRecord);

impl Presented for ClientKeyPrincipal {
    /// Under a policy, the key must have been minted under one (or re-admitted) by a
    /// principal still listed ([`client_keys::admitted_under`]), and act as one.
    fn identify(&self, policy: Option<&AuthPolicy>) -> Result<Identity, KmsError> {
        let key = &self.0;
        if let Some(policy) = policy
            && let Err(reason) =
                client_keys::admitted_under(policy, &key.minted_by, key.minted_under)
        {
            tracing::info!(client_key_id = %key.client_key_id, reason, "client key refused");
            return Err(KmsError::Unauthenticated);
        }
        auth::identify_principal(policy, &key.principal)
    }
}

/// Answers one HTTPS request from `peer`; never fails (every failure is an `Error`
/// body).
pub async fn handle(
    kms: Kms,
    peer: std::net::SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (route, name) = classify(&request);
    let traceparent = transport::traceparent(request.headers());
    let mut inbound = Inbound::new(Transport::Https, route, traceparent);
    inbound.unknown_name = name;
    inbound.migration_version = transport::migration_version(request.headers());
    inbound.note.set_peer(peer);
    let id = inbound.request_id;
    let trace = inbound.trace;
    let operation = route.operation();
    // A request whose signature or body does not check out is answered with its refusal.
    let note = inbound.note.clone();
    let presented = async { verify(&kms, id, &note, request).await.map_err(Err) };
    let answer: GatewayAnswer = pipeline::run(&kms, inbound, presented, |caller, body| {
        let kms = &kms;
        async move {
            let Some(op) = operation else {
                return Err(Refusal::of(&KmsError::internal("no operation"), &id));
            };
            let result = dispatch(op, kms, &caller, &body)
                .await
                .unwrap_or_else(|| Err(KmsError::UnknownOperation(op.name().to_owned())));
            result.map_err(|err| Refusal::of(&err, &id))
        }
    })
    .await;
    let answered = answer.is_ok();
    let (status, body) = match answer {
        Ok(body) => (http::StatusCode::OK, Bytes::from(body)),
        Err(refusal) => (refusal.http, refusal.body(&id)),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if answered {
        transport::answer_migration_version(headers, &note);
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    transport::answer_request_id(headers, &id);
    transport::answer_traceparent(headers, &trace);
    response
}

/// The answer to a call that ran past [`crate::transport::limits::REQUEST_TIMEOUT`]
/// (its audit record, dropped unfinished, says `CANCELLED`; no request ID reached this
/// point).
pub fn timed_out() -> Response<Full<Bytes>> {
    let id = RequestId::new();
    let refusal = Refusal {
        http: http::StatusCode::GATEWAY_TIMEOUT,
        code: crate::error::StatusCode::DeadlineExceeded,
        error_code: ErrorCode::InternalFailure,
        message: "The call took too long and was abandoned.".into(),
    };
    let mut response = Response::new(Full::new(refusal.body(&id)));
    *response.status_mut() = refusal.http;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    response
}

/// Step 2 of the module docs: the signature from the headers first, then the body and
/// its digest. Returns the signer's principal and the body; the client key goes into
/// `note` once its signature verified.
async fn verify(
    kms: &Kms,
    id: RequestId,
    note: &CallNote,
    request: Request<Incoming>,
) -> Result<(ClientKeyPrincipal, Bytes), Refusal> {
    let (head, body) = request.into_parts();
    let signed = request_signature::read(&head.headers)?;
    request_signature::check_date(signed.date, kms.registry().now())?;
    let record = match kms
        .registry()
        .valid_client_key(&signed.client_key_id)
        .await
        .map_err(|err| Refusal::of(&err, &id))?
    {
        Ok(record) => record,
        Err(refusal) => {
            // Which it was (unknown, not yet valid, expired) is for the operator's log
            // only: the caller is not authenticated yet.
            tracing::info!(
                client_key_id = %signed.client_key_id,
                reason = refusal.as_str(),
                "client key refused"
            );
            return Err(Refusal::unauthenticated(NOT_AUTHENTICATED));
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
        return Err(Refusal::unauthenticated(NOT_AUTHENTICATED));
    }
    // Proven now: the record of the call names the key that signed it.
    note.set_client_key_id(&record.client_key_id);
    let body = read_body(&head, body, &id).await?;
    request_signature::check_body(&signed.content_sha256, &body)?;
    Ok((ClientKeyPrincipal(record), body))
}

/// The body, up to [`MAX_BODY_SIZE`] (413 beyond, whatever `content-length` says).
async fn read_body(
    head: &http::request::Parts,
    body: Incoming,
    id: &RequestId,
) -> Result<Bytes, Refusal> {
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_SIZE as u64) {
        return Err(Refusal::too_large(MAX_BODY_SIZE));
    }
    match Limited::new(body, MAX_BODY_SIZE).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(Refusal::too_large(MAX_BODY_SIZE))
        }
        Err(err) => {
            tracing::debug!(error = %err, "request body not read");
            Err(Refusal::of(
                &KmsError::InvalidParameter("The request body could not be read.".into()),
                id,
            ))
        }
    }
}
