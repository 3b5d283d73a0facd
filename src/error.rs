//! The one domain error type, and the one place it becomes a gRPC status.
//!
//! Domain code (`keys`, `ops`, `store`, the throttle) returns [`KmsError`]. Only
//! [`KmsError::to_status`] decides the gRPC code, the public API's error code (sent as a
//! `google.rpc.ErrorInfo` reason in domain `kms`) and the message the caller sees. It
//! matches variants, never message text. Internal detail is logged here and never sent.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::request_id::RequestId;

/// The `google.rpc.ErrorInfo` domain of every kmsd error.
pub const ERROR_DOMAIN: &str = "kms";

/// The message of every failure to open a ciphertext, whatever the cause.
pub const DECRYPTION_FAILED_MESSAGE: &str = "The ciphertext could not be decrypted.";

/// The message of a throttled key pair call, as the public API words it.
pub const THROTTLED_MESSAGE: &str = "Concurrency Limit Exceeded.";

/// The message of every internal failure; the detail goes to the log only.
pub const INTERNAL_MESSAGE: &str = "An internal error occurred.";

/// How long a throttled caller is told to wait before retrying.
pub const THROTTLE_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Everything that can go wrong in a kmsd operation, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// A parameter is present but malformed or out of range (`InvalidParameter`).
    #[error("{0}")]
    InvalidParameter(String),
    /// A required parameter is absent; holds its public name (`MissingParameter`).
    #[error("The parameter {0} is required.")]
    MissingParameter(&'static str),
    /// No key has this ID (`Forbidden.KeyNotFound`).
    #[error("The key {0} was not found.")]
    KeyNotFound(String),
    /// The key has no version with this ID (`Forbidden.KeyNotFound`).
    #[error("The key version {0} was not found.")]
    KeyVersionNotFound(String),
    /// No alias has this name (`Forbidden.AliasNotFound`).
    #[error("The alias {0} was not found.")]
    AliasNotFound(String),
    /// The alias name is taken (`InvalidParameter`, ALREADY_EXISTS).
    #[error("The alias {0} already exists.")]
    AliasExists(String),
    /// The key's state forbids the operation, e.g. a disabled key asked to encrypt.
    #[error("The key {key_id} is {state} and cannot be used for this operation.")]
    InvalidKeyState {
        /// The key that refused.
        key_id: String,
        /// Its state, as the public API spells it.
        state: &'static str,
    },
    /// The operation does not apply to this key (`Rejected.UnsupportedOperation`).
    #[error("{0}")]
    UnsupportedOperation(String),
    /// A ciphertext did not open. One message whatever failed.
    #[error("{}", DECRYPTION_FAILED_MESSAGE)]
    DecryptionFailed,
    /// Too many key pair calls at once (`Rejected.Throttling`).
    #[error("{}", THROTTLED_MESSAGE)]
    Throttled,
    /// No credentials, or credentials that do not verify.
    #[error("The request carries no valid credentials.")]
    Unauthenticated,
    /// The caller may not do this (`Forbidden.NoPermission`).
    #[error("The caller is not allowed to perform this operation.")]
    PermissionDenied,
    /// The server is shutting down and takes no new calls.
    #[error("The server is shutting down.")]
    ShuttingDown,
    /// Anything unexpected. The detail is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl KmsError {
    /// Wraps an unexpected failure; `detail` goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// The gRPC status code of this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidParameter(_)
            | Self::MissingParameter(_)
            | Self::UnsupportedOperation(_)
            | Self::DecryptionFailed => Code::InvalidArgument,
            Self::KeyNotFound(_) | Self::KeyVersionNotFound(_) | Self::AliasNotFound(_) => {
                Code::NotFound
            }
            Self::AliasExists(_) => Code::AlreadyExists,
            Self::InvalidKeyState { .. } => Code::FailedPrecondition,
            Self::Throttled => Code::ResourceExhausted,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::ShuttingDown => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The public API's error code (reference section 5), sent as the ErrorInfo reason.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::InvalidParameter(_) | Self::AliasExists(_) | Self::DecryptionFailed => {
                "InvalidParameter"
            }
            Self::MissingParameter(_) => "MissingParameter",
            Self::KeyNotFound(_) | Self::KeyVersionNotFound(_) => "Forbidden.KeyNotFound",
            Self::AliasNotFound(_) => "Forbidden.AliasNotFound",
            Self::InvalidKeyState { .. } => "Rejected.InvalidKeyState",
            Self::UnsupportedOperation(_) => "Rejected.UnsupportedOperation",
            Self::Throttled => "Rejected.Throttling",
            Self::Unauthenticated => "SignatureNotMatch",
            Self::PermissionDenied => "Forbidden.NoPermission",
            Self::ShuttingDown => "Rejected.ServiceUnavailable",
            Self::Internal(_) => "InternalFailure",
        }
    }

    /// The message the caller sees: fixed for internal failures.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => INTERNAL_MESSAGE.to_owned(),
            other => other.to_string(),
        }
    }

    /// Turns this error into the status sent to the caller: code, message, a
    /// `google.rpc.ErrorInfo` (reason = public error code, domain `kms`, the request ID in
    /// its metadata), a `google.rpc.RequestInfo`, a `google.rpc.RetryInfo` when a retry
    /// helps, and the request ID in the `x-kms-request-id` metadata header.
    pub fn to_status(&self, request_id: &RequestId) -> Status {
        if let Self::Internal(detail) = self {
            tracing::error!(request_id = %request_id, %detail, "internal error");
        }
        let metadata = HashMap::from([("RequestId".to_owned(), request_id.to_string())]);
        let mut details = ErrorDetails::with_error_info(self.error_code(), ERROR_DOMAIN, metadata);
        details.set_request_info(request_id.to_string(), "");
        if matches!(self, Self::Throttled) {
            details.set_retry_info(Some(THROTTLE_RETRY_DELAY));
        }
        let mut status = Status::with_error_details(self.code(), self.public_message(), details);
        request_id.insert_into(status.metadata_mut());
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(err: KmsError) -> (Status, RequestId) {
        let id = RequestId::new();
        (err.to_status(&id), id)
    }

    #[test]
    fn status_carries_code_reason_and_request_id() {
        let (status, id) = status_of(KmsError::KeyNotFound("key-abc".into()));
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
        let (status, _) = status_of(KmsError::internal("disk /secret/path is on fire"));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), INTERNAL_MESSAGE);
        assert!(!format!("{status:?}").contains("on fire"));
    }

    #[test]
    fn throttling_suggests_a_retry_delay() {
        let (status, _) = status_of(KmsError::Throttled);
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
    fn every_variant_maps_to_a_public_code() {
        let cases = [
            (
                KmsError::InvalidParameter("x".into()),
                Code::InvalidArgument,
                "InvalidParameter",
            ),
            (
                KmsError::MissingParameter("KeyId"),
                Code::InvalidArgument,
                "MissingParameter",
            ),
            (
                KmsError::AliasNotFound("alias/a".into()),
                Code::NotFound,
                "Forbidden.AliasNotFound",
            ),
            (
                KmsError::AliasExists("alias/a".into()),
                Code::AlreadyExists,
                "InvalidParameter",
            ),
            (
                KmsError::InvalidKeyState {
                    key_id: "key-a".into(),
                    state: "Disabled",
                },
                Code::FailedPrecondition,
                "Rejected.InvalidKeyState",
            ),
            (
                KmsError::DecryptionFailed,
                Code::InvalidArgument,
                "InvalidParameter",
            ),
            (
                KmsError::PermissionDenied,
                Code::PermissionDenied,
                "Forbidden.NoPermission",
            ),
            (
                KmsError::Unauthenticated,
                Code::Unauthenticated,
                "SignatureNotMatch",
            ),
        ];
        for (err, code, reason) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.error_code(), reason, "{err:?}");
        }
    }
}
