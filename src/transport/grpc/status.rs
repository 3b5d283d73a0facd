//! The one place a [`KmsError`] becomes a gRPC status, and a status an [`Outcome`].

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::call::CallNote;
use crate::error::{ERROR_DOMAIN, KmsError, Outcome, StatusCode};
use crate::logging::failures::log_failed_call;
use crate::request_id::{REQUEST_ID_HEADER, RequestId};

/// The tonic code of a canonical status code (the numbers are the same).
pub fn code_of(code: StatusCode) -> Code {
    Code::from_i32(code as i32)
}

/// Turns `err` into the status sent to the caller: code, message, a
/// `google.rpc.ErrorInfo` (reason = public error code, domain `kms`, the request ID in
/// its metadata), a `google.rpc.RequestInfo`, a `google.rpc.RetryInfo` when a retry
/// helps, and the request ID in the `x-kms-request-id` metadata. An internal error's
/// detail, with its sources, is logged here ([`log_failed_call`]) and never sent.
pub fn to_status(err: &KmsError, request_id: &RequestId) -> Status {
    log_failed_call(err, request_id);
    let metadata = HashMap::from([("RequestId".to_owned(), request_id.to_string())]);
    let mut details =
        ErrorDetails::with_error_info(err.error_code().as_str(), ERROR_DOMAIN, metadata);
    details.set_request_info(request_id.to_string(), "");
    if let Some(delay) = err.retry_delay() {
        details.set_retry_info(Some(delay));
    }
    let mut status =
        Status::with_error_details(code_of(err.status_code()), err.public_message(), details);
    insert_request_id(status.metadata_mut(), request_id);
    status
}

/// Adds the request ID to gRPC metadata as `x-kms-request-id`.
pub fn insert_request_id(metadata: &mut tonic::metadata::MetadataMap, request_id: &RequestId) {
    let mut encoded = [0; 36];
    if let Ok(mut value) = MetadataValue::try_from(request_id.encode(&mut encoded)) {
        // Never indexed by HTTP/2's header compression: see transport::unique_value.
        value.set_sensitive(true);
        metadata.insert(REQUEST_ID_HEADER, value);
    }
}

/// Maps a core result to a status for this call, recording the outcome of a failure
/// in the call's note.
pub fn reply<T>(
    result: Result<T, KmsError>,
    request_id: &RequestId,
    note: &CallNote,
) -> Result<T, Status> {
    result.map_err(|err| {
        note.set_outcome(Outcome::of_error(&err));
        to_status(&err, request_id)
    })
}

/// How a call ended: the outcome kmsd recorded, or else the status in the response
/// head. Only failures kmsd did not produce itself (tonic's own, e.g. a body that is
/// not protobuf) are read from the head; a head without `grpc-status` carries a
/// message, so the call succeeded.
pub fn outcome_of<B>(note: &CallNote, response: &http::Response<B>) -> Outcome {
    if let Some(outcome) = note.outcome() {
        return outcome;
    }
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(StatusCode::Ok, StatusCode::from_i32);
    Outcome {
        code,
        error_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{INTERNAL_MESSAGE, THROTTLE_RETRY_DELAY, THROTTLED_MESSAGE};

    #[test]
    fn status_carries_code_reason_and_request_id() {
        let id = RequestId::new();
        let status = to_status(&KmsError::KeyNotFound("key-abc".into()), &id);
        assert_eq!(status.code(), Code::NotFound);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo present");
        assert_eq!(info.reason, "Forbidden.KeyNotFound");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata.get("RequestId"), Some(&id.to_string()));
        assert_eq!(
            details.request_info().map(|r| r.request_id.clone()),
            Some(id.to_string())
        );
        assert_eq!(
            status.metadata().get("x-kms-request-id").unwrap(),
            id.to_string().as_str()
        );
        assert!(details.retry_info().is_none());
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let status = to_status(
            &KmsError::internal("disk /secret/path is on fire"),
            &RequestId::new(),
        );
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), INTERNAL_MESSAGE);
        assert!(!format!("{status:?}").contains("on fire"));
    }

    #[test]
    fn throttling_suggests_a_retry_delay() {
        let status = to_status(&KmsError::Throttled, &RequestId::new());
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), THROTTLED_MESSAGE);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "Rejected.Throttling");
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(THROTTLE_RETRY_DELAY)
        );
    }

    #[test]
    fn every_canonical_code_has_the_same_tonic_number() {
        for code in StatusCode::ALL {
            assert_eq!(code_of(code) as i32, code as i32, "{code:?}");
            assert_eq!(format!("{:?}", code_of(code)), format!("{code:?}"));
        }
    }

    #[test]
    fn outcomes_prefer_the_note_then_the_head() {
        let note = CallNote::default();
        assert_eq!(outcome_of(&note, &http::Response::new(())), Outcome::OK);
        let mut failed = http::Response::new(());
        failed
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("13"));
        assert_eq!(outcome_of(&note, &failed).code, StatusCode::Internal);
        note.set_outcome(Outcome::of_error(&KmsError::PermissionDenied));
        assert_eq!(
            outcome_of(&note, &failed).error_code,
            Some(crate::error::ErrorCode::NoPermission)
        );
    }
}
