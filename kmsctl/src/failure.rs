//! What went wrong, and the exit code that tells a script which class it was.
//!
//! | exit | class | when |
//! |---|---|---|
//! | 0 | success | |
//! | 1 | error | anything not below: an internal server error, a local file that cannot be read or written |
//! | 2 | usage | a bad command line or input file, or the server refused a parameter (`INVALID_ARGUMENT`) |
//! | 3 | not found | no such key, version or alias (`NOT_FOUND`) |
//! | 4 | denied | no or a wrong token or certificate, or an operation or key outside the grants (`UNAUTHENTICATED`, `PERMISSION_DENIED`) |
//! | 5 | throttled | the server's limit was reached; retry later (`RESOURCE_EXHAUSTED`) |
//! | 6 | unavailable | the server cannot be reached, the connection failed (a refused TLS handshake), or no answer in time (`UNAVAILABLE`, `DEADLINE_EXCEEDED`) |
//! | 7 | conflict | the key's state or an existing name forbids it (`FAILED_PRECONDITION`, `ALREADY_EXISTS`, `ABORTED`) |

use std::fmt;
use std::path::Path;

use tonic::Code;
use tonic_types::StatusExt;

/// The exit code classes; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitClass {
    /// 1: anything not classified below.
    Error = 1,
    /// 2: the command line, an input file, or a parameter the server refused.
    Usage = 2,
    /// 3: no such key, version or alias.
    NotFound = 3,
    /// 4: not authenticated, or not allowed.
    Denied = 4,
    /// 5: throttled.
    Throttled = 5,
    /// 6: the server is unreachable or did not answer in time.
    Unavailable = 6,
    /// 7: the key's state or an existing name forbids the change.
    Conflict = 7,
}

/// The exit codes as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success, 1 error, 2 usage (bad command line or \
parameter), 3 not found, 4 denied (authentication or permission), 5 throttled, 6 unavailable \
(server unreachable, connection refused or failed, or too slow), 7 conflict (the key's state or an existing name).";

impl ExitClass {
    /// The class of a gRPC status code.
    pub fn of_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange => Self::Usage,
            Code::NotFound => Self::NotFound,
            Code::Unauthenticated | Code::PermissionDenied => Self::Denied,
            Code::ResourceExhausted => Self::Throttled,
            Code::Unavailable | Code::DeadlineExceeded => Self::Unavailable,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => Self::Conflict,
            _ => Self::Error,
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The command line or an input is wrong; nothing was sent.
    Usage(String),
    /// A local file could not be read or written.
    File {
        /// What kmsctl was doing, e.g. `writing the public key`.
        doing: String,
        /// The file's path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server could not be reached.
    Connect(String),
    /// A signal (SIGINT, SIGTERM) ended the command; what it was writing is removed.
    Interrupted(String),
    /// The server answered with an error.
    Rpc(Box<tonic::Status>),
}

impl Failure {
    /// A [`Failure::File`] for `path`.
    pub fn file(doing: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        Self::File {
            doing: doing.into(),
            path: path.display().to_string(),
            source,
        }
    }

    /// The exit class of this failure.
    pub fn class(&self) -> ExitClass {
        match self {
            Self::Usage(_) => ExitClass::Usage,
            Self::File { .. } => ExitClass::Error,
            Self::Connect(_) => ExitClass::Unavailable,
            Self::Interrupted(_) => ExitClass::Error,
            Self::Rpc(status) => {
                let (reason, _) = reason_and_request_id(status);
                // No ErrorInfo: the status is the client's own, made when the
                // connection failed or broke (a refused TLS handshake ends as CANCELLED).
                match (reason, status.code()) {
                    (None, Code::Cancelled | Code::Unknown) => ExitClass::Unavailable,
                    (_, code) => ExitClass::of_code(code),
                }
            }
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(Box::new(status))
    }
}

/// The public error code (`ErrorInfo.reason`) and the request ID of an error status:
/// from its `google.rpc.ErrorInfo`, or its `google.rpc.RequestInfo`, or the
/// `x-kms-request-id` header.
pub fn reason_and_request_id(status: &tonic::Status) -> (Option<String>, Option<String>) {
    let details = status.get_error_details();
    let reason = details.error_info().map(|info| info.reason.clone());
    let request_id = details
        .error_info()
        .and_then(|info| info.metadata.get("RequestId").cloned())
        .or_else(|| details.request_info().map(|info| info.request_id.clone()))
        .or_else(|| {
            status
                .metadata()
                .get("x-kms-request-id")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|id| !id.is_empty());
    (reason, request_id)
}

/// A gRPC code as the protocol spells it: `NOT_FOUND`, `PERMISSION_DENIED`.
pub fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) => f.write_str(message),
            Self::File {
                doing,
                path,
                source,
            } => write!(f, "{doing} {path}: {source}"),
            Self::Connect(message) | Self::Interrupted(message) => f.write_str(message),
            Self::Rpc(status) => {
                let (reason, request_id) = reason_and_request_id(status);
                let Some(reason) = reason else {
                    // Not an answer of kmsd: say what broke, with its causes.
                    write!(f, "the call failed: {}", status.message())?;
                    let mut source = std::error::Error::source(status.as_ref());
                    while let Some(err) = source {
                        write!(f, ": {err}")?;
                        source = err.source();
                    }
                    return write!(f, "\n  status: {}", code_name(status.code()));
                };
                write!(f, "{reason}: {}", status.message())?;
                write!(f, "\n  status: {}", code_name(status.code()))?;
                if let Some(id) = request_id {
                    write!(f, "\n  request ID: {id}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelt_as_the_protocol_spells_them() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(Code::Ok), "OK");
    }

    #[test]
    fn every_code_has_one_class() {
        for (code, class) in [
            (Code::InvalidArgument, ExitClass::Usage),
            (Code::NotFound, ExitClass::NotFound),
            (Code::Unauthenticated, ExitClass::Denied),
            (Code::PermissionDenied, ExitClass::Denied),
            (Code::ResourceExhausted, ExitClass::Throttled),
            (Code::Unavailable, ExitClass::Unavailable),
            (Code::DeadlineExceeded, ExitClass::Unavailable),
            (Code::FailedPrecondition, ExitClass::Conflict),
            (Code::AlreadyExists, ExitClass::Conflict),
            (Code::Internal, ExitClass::Error),
            (Code::Unimplemented, ExitClass::Error),
        ] {
            assert_eq!(ExitClass::of_code(code), class, "{code:?}");
        }
    }

    #[test]
    fn an_error_shows_its_reason_message_and_request_id() {
        use std::collections::HashMap;
        let details = tonic_types::ErrorDetails::with_error_info(
            kmsd_api::ErrorCode::KeyNotFound.as_str(),
            kmsd_api::ERROR_DOMAIN,
            HashMap::from([("RequestId".to_owned(), "req-123".to_owned())]),
        );
        let status = tonic::Status::with_error_details(
            Code::NotFound,
            "The specified Key is not found.",
            details,
        );
        let failure = Failure::from(status);
        assert_eq!(failure.class(), ExitClass::NotFound);
        let shown = failure.to_string();
        assert!(
            shown.starts_with("Forbidden.KeyNotFound: The specified Key is not found."),
            "{shown}"
        );
        assert!(shown.contains("status: NOT_FOUND"), "{shown}");
        assert!(shown.contains("request ID: req-123"), "{shown}");
    }
}
