//! Sign, Verify and GetPublicKey under an asymmetric master key (`SIGN/VERIFY`), and
//! Hmac under an HMAC key (`GENERATE/VERIFY_MAC`) (reference section 2b).
//!
//! A call flows like every data plane call: validate the parameters → resolve the key
//! (Enabled, granted) → check its usage (else `Rejected.UnsupportedOperation`) → use
//! its one version. Asymmetric and HMAC keys never rotate, so that version is both the
//! initial and the primary one.
//!
//! The message: `MessageType` `RAW` (the default) is the message, which kmsd hashes
//! with SHA-256; `DIGEST` is its 32-byte SHA-256 digest. Older clients put the digest
//! in the `Digest` field instead of `Message`; both forms are accepted, not both at
//! once. Which library does what, and why, is in [`crate::crypto::signing_keys`]. RSA signing (milliseconds) runs on tokio's blocking
//! pool; ECDSA (tens of microseconds) and every verification run in place.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::DataPlane;
use crate::crypto::keygen::KeyPairSpec;
use crate::crypto::signing_keys::{
    self, DIGEST_LEN, SignError, SignInput, SigningAlgorithm, SigningKey,
};
use crate::error::KmsError;
use crate::keys::model::KeySpec;
use crate::store::KeyRecord;
use kmsd_api::ops::Operation;

/// `MessageType`: what `Message` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// The message itself; kmsd hashes it with SHA-256.
    Raw,
    /// The SHA-256 digest of the message, 32 bytes.
    Digest,
}

impl MessageType {
    /// The public name: `RAW` or `DIGEST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "RAW",
            Self::Digest => "DIGEST",
        }
    }
}

/// Parameters of Sign, as sent.
#[derive(Clone, Copy)]
pub struct SignParams<'a> {
    /// Key ID or alias.
    pub key_id: &'a str,
    /// `RSA_PSS_SHA_256`, `RSA_PKCS1_SHA_256` or `ECDSA_SHA_256`.
    pub algorithm: &'a str,
    /// `RAW` (or empty) or `DIGEST`.
    pub message_type: &'a str,
    /// The message or digest.
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
    /// DER ECDSA, or the RSA signature (the modulus' length).
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
    /// The message or the 32-byte digest.
    pub input: SignInput<'a>,
}

impl DataPlane {
    /// Sign: a signature of the message (or digest) under the key's private key.
    pub async fn sign(&self, params: SignParams<'_>) -> Result<Signed, KmsError> {
        let (algorithm, input) = validate_sign(&params)?;
        let (key, spec) = self.asymmetric_key(params.key_id, Operation::Sign).await?;
        let context = context(&key, spec, algorithm, input.message_type)?;
        let private = self.private_key(&key, spec).await?;
        let signature = if spec.is_rsa() {
            // Owned copies for the blocking pool: RSA signing takes milliseconds.
            let message = match input.input {
                SignInput::Message(message) => Some(Zeroizing::new(message.to_vec())),
                SignInput::Digest(_) => None,
            };
            let digest = input.input.digest();
            let private = Arc::clone(&private);
            crate::crypto::cpu::run(move || {
                let input = match &message {
                    Some(message) => SignInput::Message(message),
                    None => SignInput::Digest(&digest),
                };
                private.sign(algorithm, input)
            })
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
    pub async fn public_key(&self, key_ref: &str) -> Result<PublicKeyInfo, KmsError> {
        if key_ref.is_empty() {
            return Err(KmsError::MissingParameter("KeyId"));
        }
        let (key, spec) = self
            .asymmetric_key(key_ref, Operation::GetPublicKey)
            .await?;
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
        let version_id = key.primary_version_id.clone();
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
        let spec = KeySpec::of(&key)?;
        match spec.key_pair_spec() {
            Some(pair_spec) => Ok((key, pair_spec)),
            None => Err(wrong_usage(&key, spec, operation, KeySpec::EcP256.usage())),
        }
    }

    /// The parsed private key of `key`'s one version.
    async fn private_key(
        &self,
        key: &KeyRecord,
        spec: KeyPairSpec,
    ) -> Result<Arc<SigningKey>, KmsError> {
        let version_id = &key.primary_version_id;
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
        spec.usage()
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
        SignError::Failed(_) => KmsError::internal(err),
    }
}

/// Checks the parameters of Sign (and Verify) before any key is touched; returns the
/// algorithm and the message form.
///
/// # Errors
///
/// `MissingParameter` (`KeyId`, `Algorithm`, `Message`) or `InvalidParameter` naming
/// the parameter: an unknown algorithm or message type, both `Message` and `Digest`,
/// `Digest` with `MessageType` `RAW`, a digest that is not 32 bytes.
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
            "Algorithm {:?} is not supported; valid values: RSA_PSS_SHA_256, \
             RSA_PKCS1_SHA_256, ECDSA_SHA_256.",
            params.algorithm.chars().take(40).collect::<String>()
        ))
    })?;
    let asked = match params.message_type {
        "" => None,
        "RAW" => Some(MessageType::Raw),
        "DIGEST" => Some(MessageType::Digest),
        other => {
            return Err(KmsError::InvalidParameter(format!(
                "MessageType {:?} is not supported; valid values: RAW, DIGEST.",
                other.chars().take(40).collect::<String>()
            )));
        }
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
            Some(MessageType::Raw) => {
                return Err(KmsError::InvalidParameter(
                    "Digest holds a digest: MessageType must be DIGEST or omitted.".into(),
                ));
            }
        },
    };
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
    };
    Ok((
        algorithm,
        CheckedInput {
            message_type,
            input,
        },
    ))
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
        assert_eq!(old.input.digest(), digest);
        for (bad, what) in [
            (params("DIGEST", b"short", b""), "32-byte"),
            (params("", b"", b"short"), "32-byte"),
            (params("RAW", b"", &digest), "MessageType"),
            (params("", b"x", &digest), "not both"),
            (params("raw", b"x", b""), "MessageType"),
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
    fn debug_never_prints_the_message() {
        let printed = format!("{:?}", params("", b"canary-message", b""));
        assert!(printed.contains("key-abc"), "{printed}");
        assert!(!printed.contains("canary"), "{printed}");
    }
}
