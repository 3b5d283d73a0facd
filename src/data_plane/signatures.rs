//! Sign, Verify and GetPublicKey under an asymmetric master key (`SIGN/VERIFY`; an RSA
//! encryption key answers GetPublicKey too), and
//! Hmac under an HMAC key (`GENERATE/VERIFY_MAC`) (reference section 2b).
//!
//! A call flows like every data plane call: validate the parameters → resolve the key
//! (Enabled, granted) → check its usage (else `Rejected.UnsupportedOperation`) → use
//! its one version. Asymmetric and HMAC keys never rotate, so that version is both the
//! initial and the primary one.
//!
//! The message: `MessageType` `RAW` (the default) is the message, which kmsd hashes
//! with SHA-256 for RSA and ECDSA and signs whole with `ML_DSA` and `ED25519` (up to
//! the request limit, 64 KiB, whose error names it); `DIGEST` is its 32-byte SHA-256
//! digest (RSA, ECDSA); `EXTERNAL_MU` is ML-DSA's 64-byte μ of it (`ML_DSA` only, for
//! documents too large to send). Older clients put the digest in the `Digest` field
//! instead of `Message`; both forms are accepted, not both at once. Which library does
//! what, and why, is in [`crate::crypto::signing_keys`]. RSA signing (milliseconds) and
//! ML-DSA signing (hundreds of microseconds, a rejection loop) run within the CPU bound
//! ([`crate::crypto::cpu`]); ECDSA and Ed25519 (tens of microseconds) and every
//! verification run in place.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::DataPlane;
use super::rsa_encryption::rsa_encryption_spec;
use crate::crypto::keygen::KeyPairSpec;
use crate::crypto::ml_dsa::MU_LEN;
use crate::crypto::signing_keys::{
    self, DIGEST_LEN, SignError, SignInput, SigningAlgorithm, SigningKey,
};
use crate::error::KmsError;
use crate::keys::model::{KEY_USAGE_SIGN_VERIFY, KeySpec, KeyUsage};
use crate::store::KeyRecord;
use kmsd_api::ops::Operation;

/// `MessageType`: what `Message` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// The message itself; kmsd hashes it with SHA-256.
    Raw,
    /// The SHA-256 digest of the message, 32 bytes.
    Digest,
    /// ML-DSA's μ of the message (FIPS 204 §6.2, the empty context), 64 bytes.
    ExternalMu,
}

impl MessageType {
    /// Every message type, in the order error messages list them.
    pub const ALL: [MessageType; 3] = [Self::Raw, Self::Digest, Self::ExternalMu];

    /// The public name: `RAW`, `DIGEST` or `EXTERNAL_MU`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "RAW",
            Self::Digest => "DIGEST",
            Self::ExternalMu => "EXTERNAL_MU",
        }
    }

    /// The message type with this public name.
    pub fn from_name(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The message types `algorithm` takes.
    pub fn for_algorithm(algorithm: SigningAlgorithm) -> &'static [MessageType] {
        match algorithm {
            SigningAlgorithm::RsaPssSha256
            | SigningAlgorithm::RsaPkcs1Sha256
            | SigningAlgorithm::EcdsaSha256 => &[Self::Raw, Self::Digest],
            SigningAlgorithm::MlDsa => &[Self::Raw, Self::ExternalMu],
            SigningAlgorithm::Ed25519 => &[Self::Raw],
        }
    }
}

/// Parameters of Sign, as sent.
#[derive(Clone, Copy)]
pub struct SignParams<'a> {
    /// Key ID or alias.
    pub key_id: &'a str,
    /// `RSA_PSS_SHA_256`, `RSA_PKCS1_SHA_256`, `ECDSA_SHA_256`, `ML_DSA` or `ED25519`.
    pub algorithm: &'a str,
    /// `RAW` (or empty), `DIGEST` or `EXTERNAL_MU`.
    pub message_type: &'a str,
    /// The message, digest or μ.
    pub message: &'a [u8],
    /// The digest, as older clients send it.
    pub digest: &'a [u8],
}

impl std::fmt::Debug for SignParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignParams")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("message_type", &self.message_type)
            .field("message", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// Parameters of Verify, as sent: those of Sign and the signature.
#[derive(Clone, Copy, Debug)]
pub struct VerifyParams<'a> {
    /// What was signed, and how.
    pub signed: SignParams<'a>,
    /// The signature to check.
    pub signature: &'a [u8],
}

/// What Sign and Verify used, for the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureContext {
    /// The real key ID, even when an alias was sent.
    pub key_id: String,
    /// The version whose key signed or verified.
    pub key_version_id: String,
    /// The key's spec.
    pub key_spec: KeySpec,
    /// The algorithm.
    pub algorithm: SigningAlgorithm,
    /// How the message was given.
    pub message_type: MessageType,
}

/// A signature made by Sign.
#[derive(Clone, Debug)]
pub struct Signed {
    /// What signed.
    pub context: SignatureContext,
    /// DER ECDSA, the RSA signature (the modulus' length), the ML-DSA signature (its
    /// parameter set's length) or the 64-byte Ed25519 signature.
    pub signature: Vec<u8>,
}

/// Verify's answer.
#[derive(Clone, Debug)]
pub struct Verified {
    /// What verified.
    pub context: SignatureContext,
    /// Whether the signature is valid.
    pub value: bool,
}

/// GetPublicKey's answer.
#[derive(Clone, Debug)]
pub struct PublicKeyInfo {
    /// The real key ID.
    pub key_id: String,
    /// The version whose public key this is.
    pub key_version_id: String,
    /// The key's spec.
    pub key_spec: KeySpec,
    /// X.509 SubjectPublicKeyInfo, PEM.
    pub public_key_pem: String,
}

/// Hmac's answer.
#[derive(Clone, Debug)]
pub struct Mac {
    /// The real key ID.
    pub key_id: String,
    /// The version whose secret computed it.
    pub key_version_id: String,
    /// HMAC-SHA256, 32 bytes.
    pub mac: Vec<u8>,
}

/// The message form a call asked for, checked.
#[derive(Clone, Copy, Debug)]
pub struct CheckedInput<'a> {
    /// How the message was given.
    pub message_type: MessageType,
    /// The message, the 32-byte digest or the 64-byte μ.
    pub input: SignInput<'a>,
}

impl DataPlane {
    /// Sign: a signature of the message (or digest) under the key's private key.
    pub async fn sign(&self, params: SignParams<'_>) -> Result<Signed, KmsError> {
        let (algorithm, input) = validate_sign(&params)?;
        let (key, spec) = self.asymmetric_key(params.key_id, Operation::Sign).await?;
        let context = context(&key, spec, algorithm, input.message_type)?;
        let private = self.private_key(&key, spec).await?;
        let signature = if spec.is_rsa() || spec.is_ml_dsa() {
            // An owned copy for the blocking pool: RSA signing takes milliseconds,
            // ML-DSA hundreds of microseconds. The caller's message is zeroized after.
            let owned = OwnedInput::of(input.input);
            let private = Arc::clone(&private);
            crate::crypto::cpu::run(move || private.sign(algorithm, owned.borrow()))
                .await
                .map_err(KmsError::internal)?
        } else {
            private.sign(algorithm, input.input)
        }
        .map_err(|err| sign_error(err, &context))?;
        Ok(Signed { context, signature })
    }

    /// Verify: whether the signature is valid for the message (or digest) under the
    /// key's public key. A signature that does not verify is `value: false`.
    pub async fn verify(&self, params: VerifyParams<'_>) -> Result<Verified, KmsError> {
        let (algorithm, input) = validate_sign(&params.signed)?;
        if params.signature.is_empty() {
            return Err(KmsError::MissingParameter("Signature"));
        }
        let (key, spec) = self
            .asymmetric_key(params.signed.key_id, Operation::Verify)
            .await?;
        let context = context(&key, spec, algorithm, input.message_type)?;
        let private = self.private_key(&key, spec).await?;
        let value = private
            .verifying_key()
            .verify(algorithm, input.input, params.signature)
            .map_err(|err| sign_error(err, &context))?;
        Ok(Verified { context, value })
    }

    /// GetPublicKey: the key's public key as PEM SubjectPublicKeyInfo.
    /// RSA encryption keys give theirs too, for clients that encrypt locally.
    pub async fn public_key(&self, key_ref: &str) -> Result<PublicKeyInfo, KmsError> {
        if key_ref.is_empty() {
            return Err(KmsError::MissingParameter("KeyId"));
        }
        let key = self.registry.resolve_usable(key_ref).await?;
        if let Some(spec) = rsa_encryption_spec(&key)? {
            let version_id = key.primary_version_id.clone();
            let oaep = self
                .registry
                .oaep_key(&key.key_id, &version_id, spec)
                .await?
                .ok_or_else(|| {
                    KmsError::internal(format!(
                        "{} names a missing version {version_id}",
                        key.key_id
                    ))
                })?;
            return Ok(PublicKeyInfo {
                key_spec: KeySpec::of(&key)?,
                public_key_pem: oaep.public_key().to_pem(),
                key_version_id: version_id,
                key_id: key.key_id,
            });
        }
        let (key, spec) = signing_key_of(key, Operation::GetPublicKey)?;
        let private = self.private_key(&key, spec).await?;
        Ok(PublicKeyInfo {
            key_spec: KeySpec::of(&key)?,
            public_key_pem: private.verifying_key().to_pem(),
            key_version_id: key.primary_version_id,
            key_id: key.key_id,
        })
    }

    /// Hmac: HMAC-SHA256 of the message under the key's secret.
    pub async fn hmac(&self, key_ref: &str, message: &[u8]) -> Result<Mac, KmsError> {
        if key_ref.is_empty() {
            return Err(KmsError::MissingParameter("KeyId"));
        }
        let key = self.registry.resolve_usable(key_ref).await?;
        let spec = KeySpec::of(&key)?;
        if spec != KeySpec::HmacSha256 {
            return Err(wrong_usage(
                &key,
                spec,
                Operation::Hmac,
                KeySpec::HmacSha256.usage(),
            ));
        }
        let version_id = self.version_to_use(&key, &key.primary_version_id).await?;
        let secret = self.material(&key, &version_id).await?;
        Ok(Mac {
            mac: signing_keys::hmac_sha256(secret.expose_secret(), message),
            key_id: key.key_id,
            key_version_id: version_id,
        })
    }

    /// The usable key `key_ref` names, which must be asymmetric (`SIGN/VERIFY`), and
    /// its key pair type.
    async fn asymmetric_key(
        &self,
        key_ref: &str,
        operation: Operation,
    ) -> Result<(KeyRecord, KeyPairSpec), KmsError> {
        let key = self.registry.resolve_usable(key_ref).await?;
        signing_key_of(key, operation)
    }

    /// The parsed private key of `key`'s one version (which a version the caller
    /// named must be).
    async fn private_key(
        &self,
        key: &KeyRecord,
        spec: KeyPairSpec,
    ) -> Result<Arc<SigningKey>, KmsError> {
        let version_id = &self.version_to_use(key, &key.primary_version_id).await?;
        self.registry
            .signing_key(&key.key_id, version_id, spec)
            .await?
            .ok_or_else(|| {
                KmsError::internal(format!(
                    "{} names a missing version {version_id}",
                    key.key_id
                ))
            })
    }
}

/// `key` and its key pair type if it is a signing key (`SIGN/VERIFY`), else
/// `Rejected.UnsupportedOperation` for `operation`: an RSA encryption key never signs.
fn signing_key_of(
    key: KeyRecord,
    operation: Operation,
) -> Result<(KeyRecord, KeyPairSpec), KmsError> {
    let spec = KeySpec::of(&key)?;
    match spec.key_pair_spec() {
        Some(pair_spec) if KeyUsage::of(&key)? == KeyUsage::SignVerify => Ok((key, pair_spec)),
        _ => Err(wrong_usage(&key, spec, operation, KEY_USAGE_SIGN_VERIFY)),
    }
}

/// A [`SignInput`] owned, to send to the CPU pool; the message in zeroizing memory.
enum OwnedInput {
    Message(Zeroizing<Vec<u8>>),
    Digest([u8; DIGEST_LEN]),
    Mu([u8; MU_LEN]),
}

impl OwnedInput {
    fn of(input: SignInput<'_>) -> Self {
        match input {
            SignInput::Message(message) => Self::Message(Zeroizing::new(message.to_vec())),
            SignInput::Digest(digest) => Self::Digest(*digest),
            SignInput::Mu(mu) => Self::Mu(*mu),
        }
    }

    fn borrow(&self) -> SignInput<'_> {
        match self {
            Self::Message(message) => SignInput::Message(message),
            Self::Digest(digest) => SignInput::Digest(digest),
            Self::Mu(mu) => SignInput::Mu(mu),
        }
    }
}

/// `Rejected.UnsupportedOperation`: `operation` needs a key of `needed` usage.
pub(super) fn wrong_usage(
    key: &KeyRecord,
    spec: KeySpec,
    operation: Operation,
    needed: &str,
) -> KmsError {
    KmsError::UnsupportedOperation(format!(
        "The key {} is a {} key ({}); {operation} needs a key whose usage is {needed}.",
        key.key_id,
        spec.as_str(),
        key.key_usage
    ))
}

/// The response context; `InvalidParameter` if the algorithm is not one of the key's.
fn context(
    key: &KeyRecord,
    spec: KeyPairSpec,
    algorithm: SigningAlgorithm,
    message_type: MessageType,
) -> Result<SignatureContext, KmsError> {
    let context = SignatureContext {
        key_id: key.key_id.clone(),
        key_version_id: key.primary_version_id.clone(),
        key_spec: KeySpec::of(key)?,
        algorithm,
        message_type,
    };
    if !SigningAlgorithm::for_spec(spec).contains(&algorithm) {
        return Err(sign_error(
            SignError::AlgorithmMismatch { algorithm, spec },
            &context,
        ));
    }
    Ok(context)
}

/// The caller's error for a signing failure.
fn sign_error(err: SignError, context: &SignatureContext) -> KmsError {
    match err {
        SignError::AlgorithmMismatch { algorithm, spec } => {
            let valid: Vec<&str> = SigningAlgorithm::for_spec(spec)
                .iter()
                .map(|a| a.as_str())
                .collect();
            KmsError::InvalidParameter(format!(
                "Algorithm {algorithm} does not apply to the {} key {}; valid values: {}.",
                context.key_spec.as_str(),
                context.key_id,
                valid.join(", ")
            ))
        }
        // validate_sign refuses these before any key is touched: a bug if reached.
        SignError::InputMismatch { .. } | SignError::Failed(_) => KmsError::internal(err),
    }
}

/// Checks the parameters of Sign (and Verify) before any key is touched; returns the
/// algorithm and the message form.
///
/// # Errors
///
/// `MissingParameter` (`KeyId`, `Algorithm`, `Message`) or `InvalidParameter` naming
/// the parameter: an unknown algorithm or message type, a message type the algorithm
/// does not take (naming those it does), both `Message` and `Digest`, `Digest` with
/// another `MessageType` than `DIGEST`, a digest that is not 32 bytes, a μ that is
/// not 64.
pub fn validate_sign<'a>(
    params: &SignParams<'a>,
) -> Result<(SigningAlgorithm, CheckedInput<'a>), KmsError> {
    if params.key_id.is_empty() {
        return Err(KmsError::MissingParameter("KeyId"));
    }
    if params.algorithm.is_empty() {
        return Err(KmsError::MissingParameter("Algorithm"));
    }
    let algorithm = SigningAlgorithm::from_name(params.algorithm).ok_or_else(|| {
        KmsError::InvalidParameter(format!(
            "Algorithm {:?} is not supported; valid values: {}.",
            params.algorithm.chars().take(40).collect::<String>(),
            names(SigningAlgorithm::ALL.iter().map(|a| a.as_str()))
        ))
    })?;
    let allowed = MessageType::for_algorithm(algorithm);
    let asked = match params.message_type {
        "" => None,
        raw => match MessageType::from_name(raw) {
            Some(message_type) => Some(message_type),
            None => {
                return Err(KmsError::InvalidParameter(format!(
                    "MessageType {:?} is not supported; valid values: {}.",
                    raw.chars().take(40).collect::<String>(),
                    names(MessageType::ALL.iter().map(|t| t.as_str()))
                )));
            }
        },
    };
    let (message_type, bytes) = match (params.message.is_empty(), params.digest.is_empty()) {
        (false, false) => {
            return Err(KmsError::InvalidParameter(
                "Give Message or Digest, not both.".into(),
            ));
        }
        (true, true) => return Err(KmsError::MissingParameter("Message")),
        (false, true) => (asked.unwrap_or(MessageType::Raw), params.message),
        (true, false) => match asked {
            None | Some(MessageType::Digest) => (MessageType::Digest, params.digest),
            Some(_) => {
                return Err(KmsError::InvalidParameter(
                    "Digest holds a digest: MessageType must be DIGEST or omitted.".into(),
                ));
            }
        },
    };
    if !allowed.contains(&message_type) {
        return Err(KmsError::InvalidParameter(format!(
            "MessageType {message_type} does not apply to Algorithm {algorithm}; valid values: {}.",
            names(allowed.iter().map(|t| t.as_str()))
        )));
    }
    let input = match message_type {
        MessageType::Raw => SignInput::Message(bytes),
        MessageType::Digest => {
            SignInput::Digest(<&[u8; DIGEST_LEN]>::try_from(bytes).map_err(|_| {
                KmsError::InvalidParameter(format!(
                    "A DIGEST message must be the {DIGEST_LEN}-byte SHA-256 digest, got {} bytes.",
                    bytes.len()
                ))
            })?)
        }
        MessageType::ExternalMu => {
            SignInput::Mu(<&[u8; MU_LEN]>::try_from(bytes).map_err(|_| {
                KmsError::InvalidParameter(format!(
                    "An EXTERNAL_MU message must be the {MU_LEN}-byte ML-DSA mu \
                     (FIPS 204, section 6.2, the empty context), got {} bytes.",
                    bytes.len()
                ))
            })?)
        }
    };
    Ok((
        algorithm,
        CheckedInput {
            message_type,
            input,
        },
    ))
}

/// `A, B, C`: the valid values an error lists.
fn names<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values.collect::<Vec<_>>().join(", ")
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(message_type: &'a str, message: &'a [u8], digest: &'a [u8]) -> SignParams<'a> {
        SignParams {
            key_id: "key-abc",
            algorithm: "ECDSA_SHA_256",
            message_type,
            message,
            digest,
        }
    }

    #[test]
    fn message_forms_are_checked_before_any_key_is_touched() {
        let digest = [7u8; 32];
        let (_, raw) = validate_sign(&params("", b"hello", b"")).unwrap();
        assert_eq!(raw.message_type, MessageType::Raw);
        let (_, by_type) = validate_sign(&params("DIGEST", &digest, b"")).unwrap();
        assert_eq!(by_type.message_type, MessageType::Digest);
        // Older clients: the digest in Digest, no MessageType.
        let (_, old) = validate_sign(&params("", b"", &digest)).unwrap();
        assert_eq!(old.message_type, MessageType::Digest);
        assert_eq!(old.input.digest(), Some(digest));
        for (bad, what) in [
            (params("DIGEST", b"short", b""), "32-byte"),
            (params("", b"", b"short"), "32-byte"),
            (params("RAW", b"", &digest), "MessageType"),
            (params("", b"x", &digest), "not both"),
            (params("raw", b"x", b""), "MessageType"),
            (
                params("EXTERNAL_MU", &[1; 64], b""),
                "valid values: RAW, DIGEST.",
            ),
        ] {
            match validate_sign(&bad) {
                Err(KmsError::InvalidParameter(message)) => {
                    assert!(message.contains(what), "{message}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(
            validate_sign(&params("", b"", b"")),
            Err(KmsError::MissingParameter("Message"))
        ));
        let mut no_algorithm = params("", b"x", b"");
        no_algorithm.algorithm = "";
        assert!(matches!(
            validate_sign(&no_algorithm),
            Err(KmsError::MissingParameter("Algorithm"))
        ));
        no_algorithm.algorithm = "ECDSA_SHA_384";
        assert!(matches!(
            validate_sign(&no_algorithm),
            Err(KmsError::InvalidParameter(_))
        ));
    }

    #[test]
    fn each_algorithm_takes_its_message_types_and_names_them_when_refusing() {
        fn with<'a>(
            algorithm: &'a str,
            message_type: &'a str,
            message: &'a [u8],
        ) -> SignParams<'a> {
            SignParams {
                key_id: "key-abc",
                algorithm,
                message_type,
                message,
                digest: b"",
            }
        }
        let (mu, digest) = (&[9u8; MU_LEN][..], &[7u8; DIGEST_LEN][..]);
        let (_, ok) = validate_sign(&with("ML_DSA", "EXTERNAL_MU", mu)).unwrap();
        assert!(matches!(ok.input, SignInput::Mu(m) if m == &[9u8; MU_LEN]));
        let (algorithm, raw) = validate_sign(&with("ML_DSA", "", b"doc")).unwrap();
        assert_eq!(
            (algorithm, raw.message_type),
            (SigningAlgorithm::MlDsa, MessageType::Raw)
        );
        let (algorithm, _) = validate_sign(&with("ED25519", "RAW", b"doc")).unwrap();
        assert_eq!(algorithm, SigningAlgorithm::Ed25519);
        for (bad, expected) in [
            (
                with("ML_DSA", "DIGEST", digest),
                "MessageType DIGEST does not apply to Algorithm ML_DSA; valid values: RAW, EXTERNAL_MU.",
            ),
            (
                with("ED25519", "DIGEST", digest),
                "MessageType DIGEST does not apply to Algorithm ED25519; valid values: RAW.",
            ),
            (
                with("ED25519", "EXTERNAL_MU", mu),
                "MessageType EXTERNAL_MU does not apply to Algorithm ED25519; valid values: RAW.",
            ),
            (
                with("ML_DSA", "EXTERNAL_MU", digest),
                "An EXTERNAL_MU message must be the 64-byte ML-DSA mu (FIPS 204, section 6.2, \
                 the empty context), got 32 bytes.",
            ),
            (
                with("ML_DSA", "SHA3", b"x"),
                "MessageType \"SHA3\" is not supported; valid values: RAW, DIGEST, EXTERNAL_MU.",
            ),
            (
                with("ML_DSA_65", "RAW", b"x"),
                "Algorithm \"ML_DSA_65\" is not supported; valid values: RSA_PSS_SHA_256, \
                 RSA_PKCS1_SHA_256, ECDSA_SHA_256, ML_DSA, ED25519.",
            ),
        ] {
            match validate_sign(&bad) {
                Err(KmsError::InvalidParameter(message)) => assert_eq!(message, expected),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // The older clients' Digest field means DIGEST, which ML-DSA does not take.
        let old = SignParams {
            digest,
            message: b"",
            ..with("ML_DSA", "", b"")
        };
        assert!(
            matches!(validate_sign(&old), Err(KmsError::InvalidParameter(m)) if m.contains("valid values: RAW, EXTERNAL_MU"))
        );
    }

    #[test]
    fn debug_never_prints_the_message() {
        let printed = format!("{:?}", params("", b"canary-message", b""));
        assert!(printed.contains("key-abc"), "{printed}");
        assert!(!printed.contains("canary"), "{printed}");
    }
}
