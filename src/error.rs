//! The one domain error type, and what each error means to a caller.
//!
//! Domain code (`keys`, `data_plane`, `store`, the throttle, auth) returns [`KmsError`].
//! Each variant has one canonical [`StatusCode`] (the codes of `google.rpc.Code`, which
//! gRPC sends as they are and an HTTP transport maps to HTTP statuses), one public API
//! error code (reference section 5) and one message for the caller. The transports turn
//! that into their wire form in one place each (`transport::grpc::status`); nothing
//! here knows a transport. Internal detail keeps its source for the log and is never
//! sent.

use std::error::Error as StdError;
use std::time::Duration;

pub use kmsd_api::{ERROR_DOMAIN, ErrorCode};

/// The message of every failure to open a ciphertext, whatever the cause.
pub const DECRYPTION_FAILED_MESSAGE: &str = "The ciphertext could not be decrypted.";

/// The message of a throttled key pair call, as the public API words it.
pub const THROTTLED_MESSAGE: &str = "Concurrency Limit Exceeded.";

/// The message of every internal failure; the detail goes to the log only.
pub const INTERNAL_MESSAGE: &str = "An internal error occurred.";

/// The message of a call refused because the key store cannot be reached.
pub const STORE_UNAVAILABLE_MESSAGE: &str =
    "The key store is temporarily unavailable; retry later.";

/// How long a caller refused for an unreachable key store is told to wait: about one
/// health check, after which a recovered store serves again.
pub const STORE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long a throttled caller is told to wait before retrying.
pub const THROTTLE_RETRY_DELAY: Duration = Duration::from_millis(50);

/// The delay RetryInfo suggests after a call lost every retry to concurrent writers.
pub const CONTENTION_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The canonical status codes (`google.rpc.Code`), independent of any transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum StatusCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl StatusCode {
    /// Every code, by number.
    pub const ALL: [StatusCode; 17] = [
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    /// The code with this number; unknown numbers are [`StatusCode::Unknown`].
    pub fn from_i32(value: i32) -> Self {
        usize::try_from(value)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(Self::Unknown)
    }

    /// The metrics label, e.g. `PermissionDenied` (the variant's name).
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "Ok",
            Self::Cancelled => "Cancelled",
            Self::Unknown => "Unknown",
            Self::InvalidArgument => "InvalidArgument",
            Self::DeadlineExceeded => "DeadlineExceeded",
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::PermissionDenied => "PermissionDenied",
            Self::ResourceExhausted => "ResourceExhausted",
            Self::FailedPrecondition => "FailedPrecondition",
            Self::Aborted => "Aborted",
            Self::OutOfRange => "OutOfRange",
            Self::Unimplemented => "Unimplemented",
            Self::Internal => "Internal",
            Self::Unavailable => "Unavailable",
            Self::DataLoss => "DataLoss",
            Self::Unauthenticated => "Unauthenticated",
        }
    }

    /// The canonical name, e.g. `PERMISSION_DENIED` (the audit log's `outcome`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Cancelled => "CANCELLED",
            Self::Unknown => "UNKNOWN",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Aborted => "ABORTED",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::DataLoss => "DATA_LOSS",
            Self::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// How a call ended, in transport-independent terms: what audit and metrics record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The canonical status.
    pub code: StatusCode,
    /// The public API error code of a failed call (e.g. `Forbidden.NoPermission`);
    /// `None` on success and for failures kmsd did not produce (a transport's own).
    pub error_code: Option<ErrorCode>,
}

impl Outcome {
    /// A successful call.
    pub const OK: Outcome = Outcome {
        code: StatusCode::Ok,
        error_code: None,
    };

    /// A call the client abandoned before its response.
    pub const CANCELLED: Outcome = Outcome {
        code: StatusCode::Cancelled,
        error_code: None,
    };

    /// The outcome of a call that failed with `err`.
    pub fn of_error(err: &KmsError) -> Self {
        Self {
            code: err.status_code(),
            error_code: Some(err.error_code()),
        }
    }
}

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
    /// No secret has this name (`Forbidden.ResourceNotFound`).
    #[error("The secret {0} was not found.")]
    SecretNotFound(String),
    /// The secret has no version with this ID or stage (`Forbidden.ResourceNotFound`).
    #[error("The secret version {0} was not found.")]
    SecretVersionNotFound(String),
    /// The secret name, or the version ID within the secret, is taken
    /// (`Rejected.ResourceExist`, ALREADY_EXISTS).
    #[error("The secret {0} already exists.")]
    SecretExists(String),
    /// A `CreateClientKey` replayed with the token of the call that made this client
    /// key: its private key was returned once and is not kept, so it cannot be
    /// answered again (`Rejected.ResourceExist`, ALREADY_EXISTS).
    #[error(
        "The client key {0} was already created with this IdempotencyToken; its private key \
         is returned only once. If that answer was lost, delete the client key and create \
         a new one with a new token."
    )]
    ClientKeyIssued(String),
    /// The secret is scheduled for deletion: only DescribeSecret, ListSecrets,
    /// RestoreSecret and a forced DeleteSecret apply (`Rejected.InvalidSecretState`).
    #[error("The secret {0} is scheduled for deletion; restore it first.")]
    SecretPendingDeletion(String),
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
    /// No operation of this name is served (`UnsupportedOperation`, UNIMPLEMENTED).
    #[error("The operation {0} is not supported.")]
    UnknownOperation(String),
    /// Other writers kept changing the same key (or secret) between this call's read
    /// and its write, through every retry: nothing was changed, and a retry after
    /// RetryInfo's delay will most likely go through (ABORTED, `Rejected.Throttling`).
    #[error("Too many concurrent updates of {0}; nothing was changed. Retry.")]
    Contended(String),
    /// The server is shutting down and takes no new calls.
    #[error("The server is shutting down.")]
    ShuttingDown,
    /// The key store cannot be reached now (a database outage); nothing was changed
    /// and the call may be retried. The source is logged, never returned.
    #[error("{}", STORE_UNAVAILABLE_MESSAGE)]
    StoreUnavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// Anything unexpected. The source is logged, never returned.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl KmsError {
    /// Wraps an unexpected failure (an error, or a message); it goes to the log only.
    pub fn internal(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal(source.into())
    }

    /// The canonical status code of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidParameter(_)
            | Self::MissingParameter(_)
            | Self::UnsupportedOperation(_)
            | Self::DecryptionFailed => StatusCode::InvalidArgument,
            Self::KeyNotFound(_)
            | Self::KeyVersionNotFound(_)
            | Self::AliasNotFound(_)
            | Self::SecretNotFound(_)
            | Self::SecretVersionNotFound(_) => StatusCode::NotFound,
            Self::AliasExists(_) | Self::SecretExists(_) | Self::ClientKeyIssued(_) => {
                StatusCode::AlreadyExists
            }
            Self::InvalidKeyState { .. } | Self::SecretPendingDeletion(_) => {
                StatusCode::FailedPrecondition
            }
            Self::Throttled => StatusCode::ResourceExhausted,
            Self::Contended(_) => StatusCode::Aborted,
            Self::Unauthenticated => StatusCode::Unauthenticated,
            Self::PermissionDenied => StatusCode::PermissionDenied,
            Self::UnknownOperation(_) => StatusCode::Unimplemented,
            Self::ShuttingDown | Self::StoreUnavailable(_) => StatusCode::Unavailable,
            Self::Internal(_) => StatusCode::Internal,
        }
    }

    /// The public API's error code (reference section 5), sent as the ErrorInfo reason.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::InvalidParameter(_) | Self::AliasExists(_) | Self::DecryptionFailed => {
                ErrorCode::InvalidParameter
            }
            Self::MissingParameter(_) => ErrorCode::MissingParameter,
            Self::KeyNotFound(_) | Self::KeyVersionNotFound(_) => ErrorCode::KeyNotFound,
            Self::AliasNotFound(_) => ErrorCode::AliasNotFound,
            Self::SecretNotFound(_) | Self::SecretVersionNotFound(_) => ErrorCode::ResourceNotFound,
            Self::SecretExists(_) | Self::ClientKeyIssued(_) => ErrorCode::ResourceExists,
            Self::SecretPendingDeletion(_) => ErrorCode::InvalidSecretState,
            Self::InvalidKeyState { .. } => ErrorCode::InvalidKeyState,
            Self::UnsupportedOperation(_) | Self::UnknownOperation(_) => {
                ErrorCode::UnsupportedOperation
            }
            Self::Throttled | Self::Contended(_) => ErrorCode::Throttling,
            Self::Unauthenticated => ErrorCode::SignatureNotMatch,
            Self::PermissionDenied => ErrorCode::NoPermission,
            Self::ShuttingDown | Self::StoreUnavailable(_) => ErrorCode::ServiceUnavailable,
            Self::Internal(_) => ErrorCode::InternalFailure,
        }
    }

    /// The message the caller sees: fixed for internal failures.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => INTERNAL_MESSAGE.to_owned(),
            Self::StoreUnavailable(_) => STORE_UNAVAILABLE_MESSAGE.to_owned(),
            other => other.to_string(),
        }
    }

    /// How long the caller should wait before a retry, when a retry helps.
    pub fn retry_delay(&self) -> Option<Duration> {
        match self {
            Self::Throttled => Some(THROTTLE_RETRY_DELAY),
            Self::StoreUnavailable(_) => Some(STORE_RETRY_DELAY),
            Self::Contended(_) => Some(CONTENTION_RETRY_DELAY),
            _ => None,
        }
    }

    /// The whole chain of an internal error's sources, for the log: `a: b: c`.
    pub fn detail(&self) -> String {
        let mut detail = self.to_string();
        let mut source = self.source();
        while let Some(err) = source {
            let text = err.to_string();
            if !detail.ends_with(&text) {
                detail.push_str(": ");
                detail.push_str(&text);
            }
            source = err.source();
        }
        detail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_labels_are_the_variant_names() {
        for code in StatusCode::ALL {
            assert_eq!(code.label(), format!("{code:?}"));
        }
    }

    #[test]
    fn internal_errors_hide_their_detail_but_keep_the_chain() {
        let io = std::io::Error::other("disk /secret/path is on fire");
        let err = KmsError::internal(io);
        assert_eq!(err.public_message(), INTERNAL_MESSAGE);
        assert_eq!(err.status_code(), StatusCode::Internal);
        assert!(err.detail().contains("on fire"), "{}", err.detail());
        assert!(err.source().is_some());
        let err = KmsError::internal("too many retries");
        assert_eq!(err.detail(), "internal error: too many retries");
    }

    #[test]
    fn only_throttling_and_outages_suggest_a_retry_delay() {
        assert_eq!(
            KmsError::Throttled.retry_delay(),
            Some(THROTTLE_RETRY_DELAY)
        );
        assert_eq!(KmsError::Throttled.public_message(), THROTTLED_MESSAGE);
        assert_eq!(KmsError::PermissionDenied.retry_delay(), None);
        let outage = KmsError::StoreUnavailable("connection refused".into());
        assert_eq!(outage.retry_delay(), Some(STORE_RETRY_DELAY));
        assert_eq!(outage.public_message(), STORE_UNAVAILABLE_MESSAGE);
    }

    #[test]
    fn status_codes_round_trip_by_number() {
        for code in StatusCode::ALL {
            assert_eq!(StatusCode::from_i32(code as i32), code);
        }
        assert_eq!(StatusCode::from_i32(99), StatusCode::Unknown);
        assert_eq!(StatusCode::from_i32(-1), StatusCode::Unknown);
        assert_eq!(StatusCode::PermissionDenied.name(), "PERMISSION_DENIED");
    }

    #[test]
    fn every_variant_maps_to_a_public_code() {
        let cases = [
            (
                KmsError::InvalidParameter("x".into()),
                StatusCode::InvalidArgument,
                "InvalidParameter",
            ),
            (
                KmsError::MissingParameter("KeyId"),
                StatusCode::InvalidArgument,
                "MissingParameter",
            ),
            (
                KmsError::KeyNotFound("key-a".into()),
                StatusCode::NotFound,
                "Forbidden.KeyNotFound",
            ),
            (
                KmsError::AliasNotFound("alias/a".into()),
                StatusCode::NotFound,
                "Forbidden.AliasNotFound",
            ),
            (
                KmsError::AliasExists("alias/a".into()),
                StatusCode::AlreadyExists,
                "InvalidParameter",
            ),
            (
                KmsError::InvalidKeyState {
                    key_id: "key-a".into(),
                    state: "Disabled",
                },
                StatusCode::FailedPrecondition,
                "Rejected.InvalidKeyState",
            ),
            (
                KmsError::DecryptionFailed,
                StatusCode::InvalidArgument,
                "InvalidParameter",
            ),
            (
                KmsError::SecretNotFound("db/a".into()),
                StatusCode::NotFound,
                "Forbidden.ResourceNotFound",
            ),
            (
                KmsError::SecretVersionNotFound("v9".into()),
                StatusCode::NotFound,
                "Forbidden.ResourceNotFound",
            ),
            (
                KmsError::SecretExists("db/a".into()),
                StatusCode::AlreadyExists,
                "Rejected.ResourceExist",
            ),
            (
                KmsError::SecretPendingDeletion("db/a".into()),
                StatusCode::FailedPrecondition,
                "Rejected.InvalidSecretState",
            ),
            (
                KmsError::Throttled,
                StatusCode::ResourceExhausted,
                "Rejected.Throttling",
            ),
            (
                KmsError::PermissionDenied,
                StatusCode::PermissionDenied,
                "Forbidden.NoPermission",
            ),
            (
                KmsError::Unauthenticated,
                StatusCode::Unauthenticated,
                "SignatureNotMatch",
            ),
            (
                KmsError::StoreUnavailable("connection refused".into()),
                StatusCode::Unavailable,
                "Rejected.ServiceUnavailable",
            ),
            (
                KmsError::UnknownOperation("Nope".into()),
                StatusCode::Unimplemented,
                "Rejected.UnsupportedOperation",
            ),
        ];
        for (err, code, reason) in cases {
            assert_eq!(err.status_code(), code, "{err:?}");
            assert_eq!(err.error_code().as_str(), reason, "{err:?}");
            let outcome = Outcome::of_error(&err);
            assert_eq!(
                (outcome.code, outcome.error_code.map(ErrorCode::as_str)),
                (code, Some(reason))
            );
        }
    }
}
