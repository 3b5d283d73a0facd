//! The operation catalogue: every kmsd operation, listed once.
//!
//! Each entry says what the rest of the server needs to know about an operation without
//! looking at a transport: its public name (the gRPC method, the `x-kms-apiname` of the
//! official SDKs, the audit log's `operation`, the auth file's grant), its service,
//! whether it counts against the per-instance key pair limit, and whether it names a
//! key. A call is classified once, at the edge of its transport, into a [`Route`];
//! throttle, authorization, audit and metrics read that, never paths or headers.
//!
//! Adding an operation: its messages and rpc in `proto/`, its handler in the transport
//! (for the data plane, a `Call` impl and a line in `data_plane_calls!` in
//! `transport/calls.rs`, which serves it over gRPC and the HTTPS gateway alike), and
//! one line in the `catalogue!` list below.

use std::fmt;

/// A service of the public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// `kms.v1.CryptoService`: the data plane.
    Crypto,
    /// `kms.v1.KeyManagementService`: the control plane.
    KeyManagement,
    /// `kms.v1.AdminService`: operations on the server itself (backups).
    Admin,
}

impl Service {
    /// Every service, in catalogue order.
    pub const ALL: [Service; 3] = [Service::Crypto, Service::KeyManagement, Service::Admin];

    /// The fully qualified protobuf service name, e.g. `kms.v1.CryptoService`.
    pub fn full_name(self) -> &'static str {
        match self {
            Self::Crypto => "kms.v1.CryptoService",
            Self::KeyManagement => "kms.v1.KeyManagementService",
            Self::Admin => "kms.v1.AdminService",
        }
    }
}

/// One catalogue entry's facts.
#[derive(Clone, Copy, Debug)]
struct Entry {
    name: &'static str,
    service: Service,
    key_pair_limited: bool,
    names_key: bool,
    label: &'static str,
}

/// Declares [`Operation`] and its table from one list, so a name, its service and its
/// flags cannot drift apart.
macro_rules! catalogue {
    ($( $op:ident in $service:ident ($service_name:literal), key_pair_limited: $limited:literal, names_key: $names:literal; )*) => {
        /// An operation of the public API; see the module docs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $(
                #[doc = concat!("`", stringify!($op), "` of `", $service_name, "`.")]
                $op,
            )*
        }

        impl Operation {
            /// Every operation, in catalogue order.
            pub const ALL: &'static [Operation] = &[$(Operation::$op),*];

            fn entry(self) -> Entry {
                match self {
                    $(Operation::$op => Entry {
                        name: stringify!($op),
                        service: Service::$service,
                        key_pair_limited: $limited,
                        names_key: $names,
                        label: concat!($service_name, "/", stringify!($op)),
                    },)*
                }
            }
        }
    };
}

catalogue! {
    GenerateDataKeyPair in Crypto ("kms.v1.CryptoService"), key_pair_limited: true, names_key: true;
    GenerateDataKeyPairWithoutPlaintext in Crypto ("kms.v1.CryptoService"), key_pair_limited: true, names_key: true;
    AdvanceGenerateDataKeyPair in Crypto ("kms.v1.CryptoService"), key_pair_limited: true, names_key: true;
    AdvanceGenerateDataKeyPairWithoutPlaintext in Crypto ("kms.v1.CryptoService"), key_pair_limited: true, names_key: true;
    Decrypt in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    AdvanceDecrypt in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    Encrypt in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    AdvanceEncrypt in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    GenerateDataKey in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    AdvanceGenerateDataKey in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    GenerateRandom in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: false;
    Hash in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: false;
    Sign in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    Verify in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    GetPublicKey in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    Hmac in Crypto ("kms.v1.CryptoService"), key_pair_limited: false, names_key: true;
    CreateKey in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: false;
    DescribeKey in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    ListKeys in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: false;
    EnableKey in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    DisableKey in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    ScheduleKeyDeletion in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    CancelKeyDeletion in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    CreateAlias in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    UpdateAlias in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    DeleteAlias in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: false;
    ListAliases in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    CreateKeyVersion in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    ListKeyVersions in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    DescribeKeyVersion in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    UpdateRotationPolicy in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: true;
    Backup in Admin ("kms.v1.AdminService"), key_pair_limited: false, names_key: false;
    CreateClientKey in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: false;
    ListClientKeys in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: false;
    DeleteClientKey in KeyManagement ("kms.v1.KeyManagementService"), key_pair_limited: false, names_key: false;
}

impl Operation {
    /// The public name: the gRPC method, the SDKs' `x-kms-apiname`, the audit log's
    /// `operation` and the auth file's operation grant.
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// The service the operation belongs to.
    pub fn service(self) -> Service {
        self.entry().service
    }

    /// Whether the call counts against the per-instance key pair limit
    /// (`--keypair-concurrency`).
    pub fn is_key_pair_limited(self) -> bool {
        self.entry().key_pair_limited
    }

    /// Whether the request names a key (`KeyId`), which key grants then apply to.
    pub fn names_key(self) -> bool {
        self.entry().names_key
    }

    /// The metrics label: `package.Service/Method`.
    pub fn label(self) -> &'static str {
        self.entry().label
    }

    /// The operation with this public name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// The operation of `service` with this public name.
    pub fn of_service(service: Service, name: &str) -> Option<Self> {
        Self::from_name(name).filter(|op| op.service() == service)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The infrastructure methods served beside the public API: health and reflection.
/// They need no principal and are not audited.
pub const INFRASTRUCTURE_METHODS: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The metrics label of every call that is neither an operation nor infrastructure.
pub const UNKNOWN_LABEL: &str = "unknown";

/// What a call is, decided once at the edge of its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// An operation of the catalogue.
    Operation(Operation),
    /// Health or reflection; holds its entry of [`INFRASTRUCTURE_METHODS`].
    Infrastructure(&'static str),
    /// Anything else: answered `UNIMPLEMENTED` at the edge.
    Unknown,
}

impl Route {
    /// Classifies `package.Service/Method` (a gRPC path without its leading `/`).
    pub fn from_method(method: &str) -> Self {
        if let Some(infra) = INFRASTRUCTURE_METHODS.iter().find(|m| **m == method) {
            return Self::Infrastructure(infra);
        }
        let Some((service, name)) = method.split_once('/') else {
            return Self::Unknown;
        };
        Service::ALL
            .iter()
            .find(|s| s.full_name() == service)
            .and_then(|s| Operation::of_service(*s, name))
            .map_or(Self::Unknown, Self::Operation)
    }

    /// The operation, if this is one.
    pub fn operation(self) -> Option<Operation> {
        match self {
            Self::Operation(op) => Some(op),
            _ => None,
        }
    }

    /// The metrics label: a bounded set, whatever callers send.
    pub fn label(self) -> &'static str {
        match self {
            Self::Operation(op) => op.label(),
            Self::Infrastructure(method) => method,
            Self::Unknown => UNKNOWN_LABEL,
        }
    }

    /// The route stored in these extensions by the transport's edge, or
    /// [`Route::Unknown`] when there is none (fails closed).
    pub fn from_extensions(extensions: &http::Extensions) -> Self {
        extensions.get::<Self>().copied().unwrap_or(Self::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(*op));
            assert_eq!(
                op.label(),
                format!("{}/{}", op.service().full_name(), op.name())
            );
        }
        assert_eq!(Operation::from_name("generatedatakeypair"), None);
        assert_eq!(Operation::from_name(""), None);
    }

    #[test]
    fn only_the_four_generate_operations_are_key_pair_limited() {
        let limited: Vec<_> = Operation::ALL
            .iter()
            .filter(|op| op.is_key_pair_limited())
            .map(|op| op.name())
            .collect();
        assert_eq!(
            limited,
            [
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
                "AdvanceGenerateDataKeyPair",
                "AdvanceGenerateDataKeyPairWithoutPlaintext"
            ]
        );
    }

    #[test]
    fn routes_classify_exactly() {
        assert_eq!(
            Route::from_method("kms.v1.CryptoService/Decrypt"),
            Route::Operation(Operation::Decrypt)
        );
        assert_eq!(
            Route::from_method("kms.v1.KeyManagementService/CreateKey"),
            Route::Operation(Operation::CreateKey)
        );
        // An operation under the wrong service is not that operation.
        assert_eq!(
            Route::from_method("kms.v1.KeyManagementService/Decrypt"),
            Route::Unknown
        );
        assert_eq!(
            Route::from_method("grpc.health.v1.Health/Check"),
            Route::Infrastructure("grpc.health.v1.Health/Check")
        );
        for unknown in [
            "",
            "/",
            "Decrypt",
            "kms.v1.CryptoService/",
            "kms.v1.CryptoService/decrypt",
            "kms.v1.CryptoServicex/Decrypt",
            "grpc.health.v1.Health/Foo",
            "grpc.health.v1.Healthx/Check",
        ] {
            assert_eq!(Route::from_method(unknown), Route::Unknown, "{unknown:?}");
            assert_eq!(Route::from_method(unknown).label(), UNKNOWN_LABEL);
        }
    }

    #[test]
    fn the_catalogue_matches_the_proto() {
        use prost::Message;
        let set =
            prost_types::FileDescriptorSet::decode(crate::transport::grpc::pb::FILE_DESCRIPTOR_SET)
                .unwrap();
        let mut from_proto: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service.iter().flat_map(move |service| {
                    let name = format!("{package}.{}", service.name());
                    service
                        .method
                        .iter()
                        .map(move |m| format!("{name}/{}", m.name()))
                })
            })
            .collect();
        from_proto.sort();
        let mut ours: Vec<String> = Operation::ALL
            .iter()
            .map(|op| op.label().to_owned())
            .collect();
        ours.sort();
        assert_eq!(ours, from_proto);
    }
}
