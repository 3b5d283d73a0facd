//! The public API's error codes (reference section 5): the `ErrorInfo` reason of a
//! gRPC status, the `ErrorCode` of the HTTPS gateway's `Error` body, the audit log's
//! `error_code`. One enum, so a code is never a string typed twice.

use std::fmt;

/// The `google.rpc.ErrorInfo` domain of every kmsd error.
pub const ERROR_DOMAIN: &str = "kms";

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $code:ident => $text:literal, )*) => {
        /// A public error code; see the module docs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $code, )*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$code),*];

            /// The code as the public API spells it, e.g. `Forbidden.KeyNotFound`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$code => $text, )*
                }
            }
        }
    };
}

error_codes! {
    /// A parameter is malformed or out of range.
    InvalidParameter => "InvalidParameter",
    /// A required parameter is absent.
    MissingParameter => "MissingParameter",
    /// The operation does not apply to this key, or is not served.
    UnsupportedOperation => "Rejected.UnsupportedOperation",
    /// The key's state forbids the operation.
    InvalidKeyState => "Rejected.InvalidKeyState",
    /// No credentials, or credentials (a signature) that do not verify.
    SignatureNotMatch => "SignatureNotMatch",
    /// The gateway request's date is too far from the server's clock.
    RequestTimeTooSkewed => "RequestTimeTooSkewed",
    /// The caller may not do this.
    NoPermission => "Forbidden.NoPermission",
    /// No such key, or no such version of it.
    KeyNotFound => "Forbidden.KeyNotFound",
    /// No such alias.
    AliasNotFound => "Forbidden.AliasNotFound",
    /// No such secret, or no such version of it (the public API's code for secrets).
    ResourceNotFound => "Forbidden.ResourceNotFound",
    /// A secret, or a version of it, with this name exists already.
    ResourceExists => "Rejected.ResourceExist",
    /// The secret's state forbids the operation (it is scheduled for deletion).
    InvalidSecretState => "Rejected.InvalidSecretState",
    /// Too many requests (the key pair limit).
    Throttling => "Rejected.Throttling",
    /// The server cannot serve now (shutting down, the key store unreachable).
    ServiceUnavailable => "Rejected.ServiceUnavailable",
    /// Anything unexpected; no detail reaches the caller.
    InternalFailure => "InternalFailure",
}

impl ErrorCode {
    /// The code the public API spells `text`, if it is one of ours.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|code| code.as_str() == text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
        let mut texts: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::parse("forbidden.keynotfound"), None);
    }
}
