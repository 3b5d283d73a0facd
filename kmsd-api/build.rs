//! Compiles `proto/` into tonic stubs with protox, a pure-Rust protobuf compiler, so a
//! fresh machine needs no system `protoc`. Also writes the encoded descriptor set that
//! server reflection serves, and the descriptor set of the vendored `google.rpc`
//! protos (`proto/google/rpc/`, googleapis, Apache-2.0): reflection serves them too, so
//! a client like grpcurl can decode the `google.rpc.ErrorInfo` in every error.

use std::path::PathBuf;

use prost::Message;

/// Messages that carry plaintext (private keys, data keys, caller data, random bytes):
/// their `Debug` is written by hand (redacted) in `src/pb.rs`, never
/// derived.
const SECRET_MESSAGES: &[&str] = &[
    ".kms.v1.GenerateDataKeyPairResponse",
    ".kms.v1.AdvanceGenerateDataKeyPairResponse",
    ".kms.v1.DecryptResponse",
    ".kms.v1.AdvanceDecryptResponse",
    ".kms.v1.EncryptRequest",
    ".kms.v1.AdvanceEncryptRequest",
    ".kms.v1.GenerateDataKeyResponse",
    ".kms.v1.AdvanceGenerateDataKeyResponse",
    ".kms.v1.GenerateRandomResponse",
    ".kms.v1.HashRequest",
    ".kms.v1.SignRequest",
    ".kms.v1.VerifyRequest",
    ".kms.v1.HmacRequest",
    // The client key's PKCS#12 and its password.
    ".kms.v1.CreateClientKeyRequest",
    ".kms.v1.CreateClientKeyResponse",
    // Secret values.
    ".kms.v1.GetSecretValueResponse",
    ".kms.v1.CreateSecretRequest",
    ".kms.v1.PutSecretValueRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // proto/ stays at the workspace root, where the clients in other languages
    // (clients/, grpcurl) find it too.
    let protos = [
        "../proto/kms/v1/crypto.proto",
        "../proto/kms/v1/management.proto",
        "../proto/kms/v1/secrets.proto",
        "../proto/kms/v1/admin.proto",
    ];
    println!("cargo:rerun-if-changed=../proto");
    let descriptors = protox::compile(protos, ["../proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("kms_v1_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    // Descriptors only: the Rust types of google.rpc come from tonic-types.
    let google_rpc = protox::compile(
        ["google/rpc/status.proto", "google/rpc/error_details.proto"],
        ["../proto"],
    )?;
    std::fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        google_rpc.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .skip_debug(SECRET_MESSAGES.iter().copied())
        // prost's codec, but an undecodable request body is INVALID_ARGUMENT.
        .codec_path("crate::codec::KmsCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
