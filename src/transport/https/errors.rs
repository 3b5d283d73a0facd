//! The one place a refusal becomes an HTTP status and a protobuf `Error` body, as the
//! official SDKs read it (reference sections 5 and 6).

use bytes::Bytes;
use http::StatusCode as HttpStatus;

use crate::error::{ErrorCode, KmsError, Outcome, StatusCode};
use crate::logging::failures::log_failed_call;
use crate::request_id::RequestId;

/// The public API's error message body: what the SDKs decode from a 4xx/5xx response
/// (their `Code` is `ErrorCode`, and a `Rejected.Throttling` one is retried).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    #[prost(int32, tag = "1")]
    pub status_code: i32,
    /// The public error code, e.g. `Forbidden.KeyNotFound`.
    #[prost(string, tag = "2")]
    pub error_code: String,
    /// The message for the caller (fixed for internal failures).
    #[prost(string, tag = "3")]
    pub error_message: String,
    /// The call's request ID.
    #[prost(string, tag = "4")]
    pub request_id: String,
}

/// A call the gateway answers with an error: its HTTP status, its canonical code (for
/// audit and metrics), its public error code and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status sent.
    pub http: HttpStatus,
    /// The canonical code audit and metrics record.
    pub code: StatusCode,
    /// The public error code.
    pub error_code: ErrorCode,
    /// The message.
    pub message: String,
}

impl Refusal {
    /// The refusal of a core or check error: its canonical code, mapped to HTTP as
    /// reference section 5 says. An internal error's detail is logged here and never
    /// sent.
    pub fn of(err: &KmsError, request_id: &RequestId) -> Self {
        log_failed_call(err, request_id);
        let code = err.status_code();
        Self {
            http: http_status(code),
            code,
            error_code: err.error_code(),
            message: err.public_message(),
        }
    }

    /// A refusal of the request's authentication (401): the signature, its headers, or
    /// the client key.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            http: HttpStatus::UNAUTHORIZED,
            code: StatusCode::Unauthenticated,
            error_code: KmsError::Unauthenticated.error_code(),
            message: message.into(),
        }
    }

    /// A request whose `date` is too far from the server's clock (401).
    pub fn skewed(message: impl Into<String>) -> Self {
        Self {
            error_code: ErrorCode::RequestTimeTooSkewed,
            ..Self::unauthenticated(message)
        }
    }

    /// A body over the size limit (413).
    pub fn too_large(limit: usize) -> Self {
        Self {
            http: HttpStatus::PAYLOAD_TOO_LARGE,
            code: StatusCode::InvalidArgument,
            error_code: ErrorCode::InvalidParameter,
            message: format!("The request body is larger than {limit} bytes."),
        }
    }

    /// What audit and metrics record of this refusal.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            code: self.code,
            error_code: Some(self.error_code),
        }
    }

    /// The encoded `Error` body.
    pub fn body(&self, request_id: &RequestId) -> Bytes {
        let body = ErrorBody {
            status_code: i32::from(self.http.as_u16()),
            error_code: self.error_code.as_str().to_owned(),
            error_message: self.message.clone(),
            request_id: request_id.to_string(),
        };
        Bytes::from(prost::Message::encode_to_vec(&body))
    }
}

/// The HTTP status of a canonical code: reference section 5's table (400 for the
/// caller's parameters and for operations that do not apply, 401, 403, 404, 429,
/// 500), and the usual statuses for the rest.
pub fn http_status(code: StatusCode) -> HttpStatus {
    match code {
        StatusCode::Ok => HttpStatus::OK,
        StatusCode::InvalidArgument
        | StatusCode::OutOfRange
        | StatusCode::FailedPrecondition
        | StatusCode::Unimplemented => HttpStatus::BAD_REQUEST,
        StatusCode::Unauthenticated => HttpStatus::UNAUTHORIZED,
        StatusCode::PermissionDenied => HttpStatus::FORBIDDEN,
        StatusCode::NotFound => HttpStatus::NOT_FOUND,
        StatusCode::AlreadyExists | StatusCode::Aborted => HttpStatus::CONFLICT,
        StatusCode::ResourceExhausted => HttpStatus::TOO_MANY_REQUESTS,
        StatusCode::Unavailable => HttpStatus::SERVICE_UNAVAILABLE,
        StatusCode::DeadlineExceeded | StatusCode::Cancelled => HttpStatus::GATEWAY_TIMEOUT,
        StatusCode::Internal | StatusCode::Unknown | StatusCode::DataLoss => {
            HttpStatus::INTERNAL_SERVER_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{INTERNAL_MESSAGE, THROTTLED_MESSAGE};

    fn decode(refusal: &Refusal, id: &RequestId) -> ErrorBody {
        <ErrorBody as prost::Message>::decode(refusal.body(id)).unwrap()
    }

    #[test]
    fn errors_map_to_the_public_statuses_and_codes() {
        let id = RequestId::new();
        for (err, http, code) in [
            (KmsError::MissingParameter("KeyId"), 400, "MissingParameter"),
            (
                KmsError::KeyNotFound("key-x".into()),
                404,
                "Forbidden.KeyNotFound",
            ),
            (
                KmsError::AliasNotFound("alias/x".into()),
                404,
                "Forbidden.AliasNotFound",
            ),
            (KmsError::PermissionDenied, 403, "Forbidden.NoPermission"),
            (KmsError::Unauthenticated, 401, "SignatureNotMatch"),
            (KmsError::Throttled, 429, "Rejected.Throttling"),
            (
                KmsError::UnknownOperation("Nope".into()),
                400,
                "Rejected.UnsupportedOperation",
            ),
            (KmsError::DecryptionFailed, 400, "InvalidParameter"),
        ] {
            let refusal = Refusal::of(&err, &id);
            assert_eq!(refusal.http.as_u16(), http, "{err:?}");
            let body = decode(&refusal, &id);
            assert_eq!(body.status_code, i32::from(http));
            assert_eq!(body.error_code, code);
            assert_eq!(body.request_id, id.to_string());
        }
        let throttled = decode(&Refusal::of(&KmsError::Throttled, &id), &id);
        assert_eq!(throttled.error_message, THROTTLED_MESSAGE);
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let id = RequestId::new();
        let refusal = Refusal::of(&KmsError::internal("disk /secret is on fire"), &id);
        assert_eq!(refusal.http, HttpStatus::INTERNAL_SERVER_ERROR);
        let body = decode(&refusal, &id);
        assert_eq!(body.error_message, INTERNAL_MESSAGE);
        assert_eq!(body.error_code, "InternalFailure");
    }

    #[test]
    fn transport_refusals() {
        assert_eq!(Refusal::too_large(10).http, HttpStatus::PAYLOAD_TOO_LARGE);
        let skewed = Refusal::skewed("late");
        assert_eq!(skewed.http, HttpStatus::UNAUTHORIZED);
        assert_eq!(skewed.error_code, ErrorCode::RequestTimeTooSkewed);
        assert_eq!(skewed.outcome().code, StatusCode::Unauthenticated);
    }
}
