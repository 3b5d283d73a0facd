//! The operation catalogue: every kmsd operation, listed once.
//!
//! [`for_each_operation!`] is the one list: each operation with its service, its
//! request and response messages, its tonic method, and its facts (whether it counts
//! against the per-instance key pair limit, whether it names a key, whether the HTTPS
//! gateway of the official SDKs serves it). [`Operation`] is generated from it here;
//! the server generates its tonic services and the gateway's dispatch table from it
//! too, so the catalogue, the handlers and the proto cannot drift apart: an rpc
//! missing from the list, or a list line without a handler, does not compile.
//!
//! A call is classified once, at the edge of its transport, into a [`Route`];
//! throttle, authorization, audit and metrics read that, never paths or headers.
//!
//! Adding an operation: its messages and rpc in `proto/`, one line below, its handler
//! (`impl Call` in the server's `src/api/`), and its kmsctl command.

use std::fmt;

/// A service of the public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// `kms.v1.CryptoService`: the data plane.
    Crypto,
    /// `kms.v1.KeyManagementService`: the control plane.
    KeyManagement,
    /// `kms.v1.SecretsService`: secrets and their versions (GetSecretValue is Crypto's).
    Secrets,
    /// `kms.v1.AdminService`: operations on the server itself (backups).
    Admin,
}

impl Service {
    /// Every service, in catalogue order.
    pub const ALL: [Service; 4] = [
        Service::Crypto,
        Service::KeyManagement,
        Service::Secrets,
        Service::Admin,
    ];

    /// The fully qualified protobuf service name, e.g. `kms.v1.CryptoService`.
    pub fn full_name(self) -> &'static str {
        match self {
            Self::Crypto => "kms.v1.CryptoService",
            Self::KeyManagement => "kms.v1.KeyManagementService",
            Self::Secrets => "kms.v1.SecretsService",
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
    gateway: bool,
    label: &'static str,
}

/// The request message of an operation: which catalogue entry it belongs to and its
/// response message. Implemented for every request of [`for_each_operation!`].
pub trait OperationRequest: prost::Message + Default + Send + 'static {
    /// The operation.
    const OPERATION: Operation;
    /// Its response message (one message of a server stream for Backup).
    type Response: prost::Message + Default + Send + 'static;
}

/// The one list of operations; see the module docs. Given a callback macro, calls it
/// with the whole list, grouped by service (`Crypto { .. } KeyManagement { .. }
/// Secrets { .. } Admin { .. }`), one operation a line:
/// `Op: Request => Response, tonic_method, key_pair_limited, names_key, gateway;`.
#[macro_export]
macro_rules! for_each_operation {
    ($callback:ident) => {
        $callback! {
            Crypto {
                GenerateDataKeyPair: GenerateDataKeyPairRequest => GenerateDataKeyPairResponse, generate_data_key_pair, true, true, true;
                GenerateDataKeyPairWithoutPlaintext: GenerateDataKeyPairWithoutPlaintextRequest => GenerateDataKeyPairWithoutPlaintextResponse, generate_data_key_pair_without_plaintext, true, true, true;
                AdvanceGenerateDataKeyPair: AdvanceGenerateDataKeyPairRequest => AdvanceGenerateDataKeyPairResponse, advance_generate_data_key_pair, true, true, true;
                AdvanceGenerateDataKeyPairWithoutPlaintext: AdvanceGenerateDataKeyPairWithoutPlaintextRequest => AdvanceGenerateDataKeyPairWithoutPlaintextResponse, advance_generate_data_key_pair_without_plaintext, true, true, true;
                Decrypt: DecryptRequest => DecryptResponse, decrypt, false, true, true;
                AdvanceDecrypt: AdvanceDecryptRequest => AdvanceDecryptResponse, advance_decrypt, false, true, true;
                Encrypt: EncryptRequest => EncryptResponse, encrypt, false, true, true;
                AdvanceEncrypt: AdvanceEncryptRequest => AdvanceEncryptResponse, advance_encrypt, false, true, true;
                GenerateDataKey: GenerateDataKeyRequest => GenerateDataKeyResponse, generate_data_key, false, true, true;
                AdvanceGenerateDataKey: AdvanceGenerateDataKeyRequest => AdvanceGenerateDataKeyResponse, advance_generate_data_key, false, true, true;
                GenerateRandom: GenerateRandomRequest => GenerateRandomResponse, generate_random, false, false, true;
                Hash: HashRequest => HashResponse, hash, false, false, true;
                Sign: SignRequest => SignResponse, sign, false, true, true;
                Verify: VerifyRequest => VerifyResponse, verify, false, true, true;
                GetPublicKey: GetPublicKeyRequest => GetPublicKeyResponse, get_public_key, false, true, true;
                Hmac: HmacRequest => HmacResponse, hmac, false, true, true;
                GetSecretValue: GetSecretValueRequest => GetSecretValueResponse, get_secret_value, false, false, true;
            }
            KeyManagement {
                CreateKey: CreateKeyRequest => CreateKeyResponse, create_key, false, false, false;
                DescribeKey: DescribeKeyRequest => DescribeKeyResponse, describe_key, false, true, false;
                ListKeys: ListKeysRequest => ListKeysResponse, list_keys, false, false, false;
                EnableKey: EnableKeyRequest => EnableKeyResponse, enable_key, false, true, false;
                DisableKey: DisableKeyRequest => DisableKeyResponse, disable_key, false, true, false;
                ScheduleKeyDeletion: ScheduleKeyDeletionRequest => ScheduleKeyDeletionResponse, schedule_key_deletion, false, true, false;
                CancelKeyDeletion: CancelKeyDeletionRequest => CancelKeyDeletionResponse, cancel_key_deletion, false, true, false;
                CreateAlias: CreateAliasRequest => CreateAliasResponse, create_alias, false, true, false;
                UpdateAlias: UpdateAliasRequest => UpdateAliasResponse, update_alias, false, true, false;
                DeleteAlias: DeleteAliasRequest => DeleteAliasResponse, delete_alias, false, false, false;
                ListAliases: ListAliasesRequest => ListAliasesResponse, list_aliases, false, true, false;
                CreateKeyVersion: CreateKeyVersionRequest => CreateKeyVersionResponse, create_key_version, false, true, false;
                ListKeyVersions: ListKeyVersionsRequest => ListKeyVersionsResponse, list_key_versions, false, true, false;
                DescribeKeyVersion: DescribeKeyVersionRequest => DescribeKeyVersionResponse, describe_key_version, false, true, false;
                UpdateRotationPolicy: UpdateRotationPolicyRequest => UpdateRotationPolicyResponse, update_rotation_policy, false, true, false;
                CreateClientKey: CreateClientKeyRequest => CreateClientKeyResponse, create_client_key, false, false, false;
                ListClientKeys: ListClientKeysRequest => ListClientKeysResponse, list_client_keys, false, false, false;
                DeleteClientKey: DeleteClientKeyRequest => DeleteClientKeyResponse, delete_client_key, false, false, false;
            }
            Secrets {
                CreateSecret: CreateSecretRequest => CreateSecretResponse, create_secret, false, false, false;
                PutSecretValue: PutSecretValueRequest => PutSecretValueResponse, put_secret_value, false, false, false;
                DescribeSecret: DescribeSecretRequest => DescribeSecretResponse, describe_secret, false, false, false;
                ListSecrets: ListSecretsRequest => ListSecretsResponse, list_secrets, false, false, false;
                ListSecretVersionIds: ListSecretVersionIdsRequest => ListSecretVersionIdsResponse, list_secret_version_ids, false, false, false;
                UpdateSecret: UpdateSecretRequest => UpdateSecretResponse, update_secret, false, false, false;
                UpdateSecretVersionStage: UpdateSecretVersionStageRequest => UpdateSecretVersionStageResponse, update_secret_version_stage, false, false, false;
                UpdateSecretRotationPolicy: UpdateSecretRotationPolicyRequest => UpdateSecretRotationPolicyResponse, update_secret_rotation_policy, false, false, false;
                DeleteSecret: DeleteSecretRequest => DeleteSecretResponse, delete_secret, false, false, false;
                RestoreSecret: RestoreSecretRequest => RestoreSecretResponse, restore_secret, false, false, false;
            }
            Admin {
                Backup: BackupRequest => BackupChunk, backup, false, false, false;
            }
        }
    };
}

/// Declares [`Operation`], its table and the [`OperationRequest`] impls from the list.
macro_rules! catalogue {
    ($( $service:ident { $( $op:ident: $request:ident => $response:ident, $method:ident, $limited:literal, $names:literal, $gateway:literal; )* } )*) => {
        /// An operation of the public API; see the module docs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $($(
                #[doc = concat!("`", stringify!($op), "` of `", stringify!($service), "`.")]
                $op,
            )*)*
        }

        impl Operation {
            /// Every operation, in catalogue order.
            pub const ALL: &'static [Operation] = &[$($(Operation::$op),*),*];

            fn entry(self) -> Entry {
                match self {
                    $($(Operation::$op => Entry {
                        name: stringify!($op),
                        service: Service::$service,
                        key_pair_limited: $limited,
                        names_key: $names,
                        gateway: $gateway,
                        label: concat!("kms.v1.", stringify!($service), "Service/", stringify!($op)),
                    },)*)*
                }
            }
        }

        $($(
            impl OperationRequest for crate::pb::$request {
                const OPERATION: Operation = Operation::$op;
                type Response = crate::pb::$response;
            }
        )*)*
    };
}

for_each_operation!(catalogue);

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

    /// Whether the HTTPS gateway of the official SDKs serves the operation.
    pub fn is_served_by_gateway(self) -> bool {
        self.entry().gateway
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
    fn the_gateway_serves_the_data_plane_only() {
        for op in Operation::ALL {
            assert_eq!(
                op.is_served_by_gateway(),
                op.service() == Service::Crypto,
                "{op}"
            );
        }
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
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
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
