//! Access control: who is calling, and what they may do.
//!
//! With `--auth-config` the server loads an [`AuthPolicy`]: a list of [`Principal`]s,
//! each identified by the SHA-256 of a bearer token and/or a client certificate
//! identity (URI SAN such as a SPIFFE ID, or the subject), and granted a set of
//! operations and a set of key globs.
//!
//! Two checks, in two places:
//!
//! - **Who, and which operation**: [`AuthLayer`] (a tower layer, after the request ID
//!   and before the throttle) finds the principal, rejects calls without one
//!   (`UNAUTHENTICATED`) and calls to operations outside its grants
//!   (`PERMISSION_DENIED`, `Forbidden.NoPermission`), and leaves an [`Access`] in the
//!   request's extensions. Health and reflection are exempt.
//! - **Which key**: the domain ([`crate::keys::KeyRegistry::scoped`]) checks the
//!   [`Access`] when it resolves a `KeyId`, before it reads or changes the key: the key
//!   is allowed if a glob matches the `KeyId` as sent, the resolved key ID, or one of
//!   the key's aliases. The check knows nothing of gRPC, so another transport reuses it.
//!
//! Without `--auth-config` every call gets [`Access::Open`].

pub mod glob;
pub mod layer;
pub mod policy;

use std::fmt;
use std::sync::Arc;

pub use layer::AuthLayer;
pub use policy::{AuthPolicy, PolicyError, Principal};

use crate::error::KmsError;

/// The operations of `kms.v1.CryptoService`.
pub const CRYPTO_OPERATIONS: [&str; 6] = [
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "AdvanceGenerateDataKeyPair",
    "AdvanceGenerateDataKeyPairWithoutPlaintext",
    "Decrypt",
    "AdvanceDecrypt",
];

/// The operations of `kms.v1.KeyManagementService`.
pub const MANAGEMENT_OPERATIONS: [&str; 15] = [
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "CreateKeyVersion",
    "ListKeyVersions",
    "DescribeKeyVersion",
    "UpdateRotationPolicy",
];

/// The gRPC services whose calls need no principal and are not audited.
pub const EXEMPT_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The gRPC services whose calls are access-controlled and audited.
pub const GUARDED_SERVICES: [&str; 2] = ["kms.v1.CryptoService", "kms.v1.KeyManagementService"];

/// Whether `name` is an operation of either kms service.
pub fn is_operation(name: &str) -> bool {
    CRYPTO_OPERATIONS.contains(&name) || MANAGEMENT_OPERATIONS.contains(&name)
}

/// What a request path is, for access control and audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// Health or reflection: no principal needed, not audited.
    Exempt,
    /// Anything else; holds the method name (the last path segment), which for the kms
    /// services is the operation.
    Guarded(&'a str),
}

/// Classifies a gRPC request path `/{service}/{method}`.
pub fn route(path: &str) -> Route<'_> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = trimmed.split_once('/').unwrap_or(("", trimmed));
    if EXEMPT_SERVICES.contains(&service) {
        Route::Exempt
    } else {
        Route::Guarded(method)
    }
}

// === impl Access ===

/// What one call may touch: everything (no access control), or one principal's grants.
/// Cheap to clone.
#[derive(Clone, Default)]
pub enum Access {
    /// Access control is off (no `--auth-config`), or an internal caller such as the
    /// maintenance task.
    #[default]
    Open,
    /// A principal from the auth file.
    Principal(Arc<Principal>),
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("Access::Open"),
            Self::Principal(principal) => write!(f, "Access::Principal({:?})", principal.name()),
        }
    }
}

impl Access {
    /// The principal's name, or `None` when access control is off.
    pub fn principal_name(&self) -> Option<&str> {
        match self {
            Self::Open => None,
            Self::Principal(principal) => Some(principal.name()),
        }
    }

    /// Whether this caller may run `operation`.
    pub fn allows_operation(&self, operation: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Principal(principal) => principal.allows_operation(operation),
        }
    }

    /// Whether a key grant matches `name` (a key ID, an alias, or a `KeyId` as sent).
    pub fn allows_key(&self, name: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Principal(principal) => principal.allows_key(name),
        }
    }

    /// Whether the caller may use the key it named `sent` (as sent) and which resolved
    /// to `key_id`: a grant must match either.
    pub fn allows_resolved_key(&self, sent: &str, key_id: &str) -> bool {
        self.allows_key(sent) || self.allows_key(key_id)
    }

    /// [`KmsError::PermissionDenied`] unless a key grant matches `name`.
    pub fn check_key(&self, name: &str) -> Result<(), KmsError> {
        if self.allows_key(name) {
            Ok(())
        } else {
            Err(KmsError::PermissionDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_exempt_health_and_reflection_only() {
        assert_eq!(route("/grpc.health.v1.Health/Check"), Route::Exempt);
        assert_eq!(
            route("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Route::Exempt
        );
        assert_eq!(
            route("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Route::Exempt
        );
        assert_eq!(
            route("/kms.v1.CryptoService/Decrypt"),
            Route::Guarded("Decrypt")
        );
        assert_eq!(
            route("/grpc.health.v1.Healthx/Check"),
            Route::Guarded("Check")
        );
        assert_eq!(route(""), Route::Guarded(""));
    }

    #[test]
    fn operation_lists_match_the_proto() {
        use prost::Message;
        let set =
            prost_types::FileDescriptorSet::decode(crate::api::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut from_proto: Vec<(String, String)> = set
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service.iter().flat_map(move |service| {
                    let name = format!("{package}.{}", service.name());
                    service
                        .method
                        .iter()
                        .map(move |m| (name.clone(), m.name().to_owned()))
                })
            })
            .collect();
        from_proto.sort();
        let mut ours: Vec<(String, String)> = CRYPTO_OPERATIONS
            .iter()
            .map(|m| (GUARDED_SERVICES[0].to_owned(), (*m).to_owned()))
            .chain(
                MANAGEMENT_OPERATIONS
                    .iter()
                    .map(|m| (GUARDED_SERVICES[1].to_owned(), (*m).to_owned())),
            )
            .collect();
        ours.sort();
        assert_eq!(ours, from_proto);
    }

    #[test]
    fn open_access_allows_everything() {
        let access = Access::Open;
        assert!(access.allows_operation("DisableKey"));
        assert!(access.allows_key("key-anything"));
        assert!(access.check_key("alias/x").is_ok());
        assert_eq!(access.principal_name(), None);
    }
}
