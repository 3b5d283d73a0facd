//! The generated `kms.v1` protobuf types and gRPC stubs, plus what generated code
//! cannot say for itself: redacted `Debug` and zeroize-on-drop for the messages that
//! carry plaintext: private keys, data keys, caller data, random bytes, hashed messages
//! and secret values (the `SECRET_MESSAGES` of `build.rs`). Requests get no `Drop` (clients build them
//! with `..Default::default()`); their handlers move the secret field into a
//! `Zeroizing` before anything else.

#![allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::large_enum_variant
)]

use std::fmt;

use zeroize::Zeroize;

tonic::include_proto!("kms.v1");

/// The encoded `FileDescriptorSet` of `proto/`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kms_v1_descriptor.bin"));

/// The encoded `FileDescriptorSet` of the vendored `google/rpc/status.proto` and
/// `google/rpc/error_details.proto` (with their imports), served by reflection so that
/// reflection clients can decode the `google.rpc.ErrorInfo` of an error's details.
pub const GOOGLE_RPC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

/// The `Debug` of a secret field: says whether it is set, never what it holds.
fn redacted(bytes: &[u8]) -> &'static str {
    if bytes.is_empty() { "" } else { "[REDACTED]" }
}

impl fmt::Debug for GenerateDataKeyPairResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateDataKeyPairResponse")
            .field("key_id", &self.key_id)
            .field("key_pair_spec", &self.key_pair_spec)
            .field(
                "private_key_plaintext",
                &redacted(&self.private_key_plaintext),
            )
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AdvanceGenerateDataKeyPairResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvanceGenerateDataKeyPairResponse")
            .field("key_id", &self.key_id)
            .field("key_version_id", &self.key_version_id)
            .field("key_pair_spec", &self.key_pair_spec)
            .field(
                "private_key_plaintext",
                &redacted(&self.private_key_plaintext),
            )
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DecryptResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptResponse")
            .field("key_id", &self.key_id)
            .field("plaintext", &redacted(&self.plaintext))
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AdvanceDecryptResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvanceDecryptResponse")
            .field("key_id", &self.key_id)
            .field("key_version_id", &self.key_version_id)
            .field("plaintext", &redacted(&self.plaintext))
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl Drop for GenerateDataKeyPairResponse {
    fn drop(&mut self) {
        self.private_key_plaintext.zeroize();
    }
}

impl Drop for AdvanceGenerateDataKeyPairResponse {
    fn drop(&mut self) {
        self.private_key_plaintext.zeroize();
    }
}

impl Drop for DecryptResponse {
    fn drop(&mut self) {
        self.plaintext.zeroize();
    }
}

impl Drop for AdvanceDecryptResponse {
    fn drop(&mut self) {
        self.plaintext.zeroize();
    }
}

impl fmt::Debug for EncryptRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptRequest")
            .field("key_id", &self.key_id)
            .field("plaintext", &redacted(&self.plaintext))
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AdvanceEncryptRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvanceEncryptRequest")
            .field("key_id", &self.key_id)
            .field("plaintext", &redacted(&self.plaintext))
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for GenerateDataKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateDataKeyResponse")
            .field("key_id", &self.key_id)
            .field("plaintext", &redacted(&self.plaintext))
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AdvanceGenerateDataKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvanceGenerateDataKeyResponse")
            .field("key_id", &self.key_id)
            .field("key_version_id", &self.key_version_id)
            .field("plaintext", &redacted(&self.plaintext))
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for GenerateRandomResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRandomResponse")
            .field("random", &redacted(&self.random))
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl fmt::Debug for HashRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashRequest")
            .field("message", &redacted(&self.message))
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl fmt::Debug for SignRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignRequest")
            .field("key_id", &self.key_id)
            .field("digest", &redacted(&self.digest))
            .field("algorithm", &self.algorithm)
            .field("message", &redacted(&self.message))
            .field("message_type", &self.message_type)
            .finish()
    }
}

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("key_id", &self.key_id)
            .field("digest", &redacted(&self.digest))
            .field("signature_len", &self.signature.len())
            .field("algorithm", &self.algorithm)
            .field("message", &redacted(&self.message))
            .field("message_type", &self.message_type)
            .finish()
    }
}

impl fmt::Debug for HmacRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacRequest")
            .field("key_id", &self.key_id)
            .field("message", &redacted(&self.message))
            .finish()
    }
}

impl fmt::Debug for GetSecretValueResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetSecretValueResponse")
            .field("secret_name", &self.secret_name)
            .field("secret_data", &redacted(self.secret_data.as_bytes()))
            .field("secret_data_type", &self.secret_data_type)
            .field("version_id", &self.version_id)
            .field("version_stages", &self.version_stages)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CreateSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateSecretRequest")
            .field("secret_name", &self.secret_name)
            .field("secret_data", &redacted(self.secret_data.as_bytes()))
            .field("secret_data_type", &self.secret_data_type)
            .field("version_id", &self.version_id)
            .field("encryption_key_id", &self.encryption_key_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PutSecretValueRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutSecretValueRequest")
            .field("secret_name", &self.secret_name)
            .field("version_id", &self.version_id)
            .field("secret_data", &redacted(self.secret_data.as_bytes()))
            .field("secret_data_type", &self.secret_data_type)
            .field("version_stages", &self.version_stages)
            .finish()
    }
}

impl Drop for GetSecretValueResponse {
    fn drop(&mut self) {
        self.secret_data.zeroize();
    }
}

impl Drop for GenerateDataKeyResponse {
    fn drop(&mut self) {
        self.plaintext.zeroize();
    }
}

impl Drop for AdvanceGenerateDataKeyResponse {
    fn drop(&mut self) {
        self.plaintext.zeroize();
    }
}

impl Drop for GenerateRandomResponse {
    fn drop(&mut self) {
        self.random.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_messages_never_print_their_keys() {
        let secret = b"-----BEGIN PRIVATE KEY-----MIIEvQ".to_vec();
        let mut response = DecryptResponse::default();
        response.plaintext = secret.clone();
        response.key_id = "key-abc".into();
        let printed = format!("{response:?}");
        assert!(printed.contains("key-abc"));
        assert!(printed.contains("[REDACTED]"));
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(!printed.contains("77, 73, 73"), "{printed}");

        let mut generated = GenerateDataKeyPairResponse::default();
        generated.private_key_plaintext = secret.clone();
        assert!(!format!("{generated:?}").contains("PRIVATE"));
        let mut advance = AdvanceGenerateDataKeyPairResponse::default();
        advance.private_key_plaintext = secret.clone();
        assert!(!format!("{advance:?}").contains("PRIVATE"));
        let mut advance_decrypt = AdvanceDecryptResponse::default();
        advance_decrypt.plaintext = secret;
        assert!(!format!("{advance_decrypt:?}").contains("PRIVATE"));
    }

    #[test]
    fn secret_values_never_print() {
        let canary = "canary-secret-value-8c2d";
        let mut response = GetSecretValueResponse::default();
        response.secret_name = "db/a".into();
        response.secret_data = canary.into();
        let create = CreateSecretRequest {
            secret_name: "db/a".into(),
            secret_data: canary.into(),
            ..Default::default()
        };
        let put = PutSecretValueRequest {
            secret_name: "db/a".into(),
            secret_data: canary.into(),
            ..Default::default()
        };
        for printed in [
            format!("{response:?}"),
            format!("{create:?}"),
            format!("{put:?}"),
        ] {
            assert!(printed.contains("db/a") && printed.contains("[REDACTED]"));
            assert!(!printed.contains("canary"), "{printed}");
        }
    }

    #[test]
    fn symmetric_secret_messages_never_print_their_bytes() {
        // Printable and byte-list forms of the secret must both be absent.
        let secret = b"canary-plaintext-5f1e".to_vec();
        let listed = "99, 97, 110, 97, 114, 121";
        let mut generated = GenerateDataKeyResponse::default();
        generated.key_id = "key-abc".into();
        generated.plaintext = secret.clone();
        let mut advance = AdvanceGenerateDataKeyResponse::default();
        advance.key_id = "key-abc".into();
        advance.plaintext = secret.clone();
        let mut random = GenerateRandomResponse::default();
        random.request_id = "key-abc".into();
        random.random = secret.clone();
        let printed = [
            format!(
                "{:?}",
                EncryptRequest {
                    key_id: "key-abc".into(),
                    plaintext: secret.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                AdvanceEncryptRequest {
                    key_id: "key-abc".into(),
                    plaintext: secret.clone(),
                    ..Default::default()
                }
            ),
            format!("{generated:?}"),
            format!("{advance:?}"),
            format!("{random:?}"),
            format!(
                "{:?}",
                HashRequest {
                    message: secret.clone(),
                    algorithm: "key-abc".into(),
                }
            ),
        ];
        for text in printed {
            assert!(text.contains("key-abc"), "{text}");
            assert!(text.contains("[REDACTED]"), "{text}");
            assert!(!text.contains("canary"), "{text}");
            assert!(!text.contains(listed), "{text}");
        }
    }

    #[test]
    fn the_descriptor_set_names_both_services() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| f.service.iter().filter_map(|s| s.name.clone()))
            .collect();
        assert!(services.contains(&"CryptoService".to_owned()));
        assert!(services.contains(&"KeyManagementService".to_owned()));
    }

    #[test]
    fn the_google_rpc_set_holds_the_error_details_and_their_imports() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(GOOGLE_RPC_FILE_DESCRIPTOR_SET).unwrap();
        let files: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        for file in [
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
            "google/protobuf/any.proto",
            "google/protobuf/duration.proto",
        ] {
            assert!(files.contains(&file), "{file} in {files:?}");
        }
        let messages: Vec<String> = set
            .file
            .iter()
            .filter(|f| f.package() == "google.rpc")
            .flat_map(|f| f.message_type.iter().map(|m| m.name().to_owned()))
            .collect();
        for message in ["Status", "ErrorInfo", "RequestInfo", "RetryInfo"] {
            assert!(messages.iter().any(|m| m == message), "{message}");
        }
    }
}
