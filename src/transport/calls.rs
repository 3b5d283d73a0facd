//! The data plane's operations as message → core → message steps that every
//! transport shares: one [`Call`] impl per request message says how its fields become
//! a call of [`Kms`] and how the result becomes the response message. The gRPC
//! handlers and the HTTPS gateway run the same impl, so the two cannot drift apart.
//!
//! [`data_plane_calls!`](crate::data_plane_calls) lists, once, each operation of the
//! catalogue's data plane with its request message and its tonic method; the gRPC
//! service and the gateway's dispatch table are both generated from that list.

use zeroize::Zeroizing;

use crate::call::Caller;
use crate::data_plane::{
    ALGORITHM_AES_GCM, DataKeyParams, DecryptParams, EncryptParams, GenerateParams,
    GeneratedKeyPair, SealWith, SignParams, VerifyParams,
};
use crate::error::KmsError;
use crate::kms::Kms;
use crate::ops::Operation;
use crate::transport::grpc::pb::{
    AdvanceDecryptRequest, AdvanceDecryptResponse, AdvanceEncryptRequest, AdvanceEncryptResponse,
    AdvanceGenerateDataKeyPairRequest, AdvanceGenerateDataKeyPairResponse,
    AdvanceGenerateDataKeyPairWithoutPlaintextRequest,
    AdvanceGenerateDataKeyPairWithoutPlaintextResponse, AdvanceGenerateDataKeyRequest,
    AdvanceGenerateDataKeyResponse, DecryptRequest, DecryptResponse, EncryptRequest,
    EncryptResponse, GenerateDataKeyPairRequest, GenerateDataKeyPairResponse,
    GenerateDataKeyPairWithoutPlaintextRequest, GenerateDataKeyPairWithoutPlaintextResponse,
    GenerateDataKeyRequest, GenerateDataKeyResponse, GenerateRandomRequest, GenerateRandomResponse,
    GetPublicKeyRequest, GetPublicKeyResponse, HashRequest, HashResponse, HmacRequest,
    HmacResponse, SignRequest, SignResponse, VerifyRequest, VerifyResponse,
};

/// One operation's request message: how it is run on the core.
#[async_trait::async_trait]
pub trait Call: prost::Message + Default + Send + Sized + 'static {
    /// The response message.
    type Reply: prost::Message + Send + 'static;

    /// The catalogue entry this message belongs to.
    const OPERATION: Operation;

    /// Runs the request on `kms` for `caller`; the reply carries the request ID.
    ///
    /// # Errors
    ///
    /// Whatever the core refuses, as [`KmsError`].
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError>;
}

/// Runs a [`Call`] from its encoded request: the HTTPS gateway's step.
///
/// # Errors
///
/// `InvalidParameter` if `body` is not the operation's protobuf message; else what
/// [`Call::call`] returns.
pub async fn call_encoded<C: Call>(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let request = C::decode(body).map_err(|_| {
        KmsError::InvalidParameter(crate::transport::grpc::codec::UNDECODABLE_MESSAGE.into())
    })?;
    let reply = request.call(kms, caller).await?;
    Ok(prost::Message::encode_to_vec(&reply))
}

/// The data plane's operations: `Operation => RequestMessage, tonic_method;`. Given a
/// callback macro, calls it with the whole list, so each transport generates what it
/// needs (the tonic service, the gateway's dispatch table) from this one list. Adding
/// an operation to the data plane: its messages and rpc in `proto/`, its [`Call`] impl
/// here, its catalogue line (`ops.rs`), and its line below.
#[macro_export]
macro_rules! data_plane_calls {
    ($callback:ident) => {
        $callback! {
            GenerateDataKeyPair => GenerateDataKeyPairRequest, generate_data_key_pair;
            GenerateDataKeyPairWithoutPlaintext => GenerateDataKeyPairWithoutPlaintextRequest, generate_data_key_pair_without_plaintext;
            AdvanceGenerateDataKeyPair => AdvanceGenerateDataKeyPairRequest, advance_generate_data_key_pair;
            AdvanceGenerateDataKeyPairWithoutPlaintext => AdvanceGenerateDataKeyPairWithoutPlaintextRequest, advance_generate_data_key_pair_without_plaintext;
            Decrypt => DecryptRequest, decrypt;
            AdvanceDecrypt => AdvanceDecryptRequest, advance_decrypt;
            Encrypt => EncryptRequest, encrypt;
            AdvanceEncrypt => AdvanceEncryptRequest, advance_encrypt;
            GenerateDataKey => GenerateDataKeyRequest, generate_data_key;
            AdvanceGenerateDataKey => AdvanceGenerateDataKeyRequest, advance_generate_data_key;
            GenerateRandom => GenerateRandomRequest, generate_random;
            Hash => HashRequest, hash;
            Sign => SignRequest, sign;
            Verify => VerifyRequest, verify;
            GetPublicKey => GetPublicKeyRequest, get_public_key;
            Hmac => HmacRequest, hmac;
        }
    };
}

/// Takes the plaintext private key out of a generated pair (empty when not asked for).
fn take_plaintext(pair: &mut GeneratedKeyPair) -> Vec<u8> {
    pair.private_key_plaintext
        .take()
        .map(|secret| secret.to_vec())
        .unwrap_or_default()
}

// === the data key pairs ===

#[async_trait::async_trait]
impl Call for GenerateDataKeyPairRequest {
    type Reply = GenerateDataKeyPairResponse;
    const OPERATION: Operation = Operation::GenerateDataKeyPair;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = GenerateParams {
            key_id: &self.key_id,
            algorithm: &self.algorithm,
            key_pair_spec: &self.key_pair_spec,
            key_format: &self.key_format,
            aad: &self.aad,
            seal_with: SealWith::InitialVersion,
            with_plaintext: true,
        };
        let mut pair = kms.generate_data_key_pair(caller, params).await?;
        Ok(GenerateDataKeyPairResponse {
            private_key_plaintext: take_plaintext(&mut pair),
            iv: pair.iv.to_vec(),
            key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
            private_key_ciphertext_blob: std::mem::take(&mut pair.ciphertext_blob),
            public_key: std::mem::take(&mut pair.public_key),
            key_id: std::mem::take(&mut pair.key_id),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for GenerateDataKeyPairWithoutPlaintextRequest {
    type Reply = GenerateDataKeyPairWithoutPlaintextResponse;
    const OPERATION: Operation = Operation::GenerateDataKeyPairWithoutPlaintext;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = GenerateParams {
            key_id: &self.key_id,
            algorithm: &self.algorithm,
            key_pair_spec: &self.key_pair_spec,
            key_format: &self.key_format,
            aad: &self.aad,
            seal_with: SealWith::InitialVersion,
            with_plaintext: false,
        };
        let mut pair = kms.generate_data_key_pair(caller, params).await?;
        Ok(GenerateDataKeyPairWithoutPlaintextResponse {
            iv: pair.iv.to_vec(),
            key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
            private_key_ciphertext_blob: std::mem::take(&mut pair.ciphertext_blob),
            public_key: std::mem::take(&mut pair.public_key),
            key_id: std::mem::take(&mut pair.key_id),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceGenerateDataKeyPairRequest {
    type Reply = AdvanceGenerateDataKeyPairResponse;
    const OPERATION: Operation = Operation::AdvanceGenerateDataKeyPair;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = GenerateParams {
            key_id: &self.key_id,
            algorithm: "",
            key_pair_spec: &self.key_pair_spec,
            key_format: &self.key_format,
            aad: &self.aad,
            seal_with: SealWith::PrimaryVersion,
            with_plaintext: true,
        };
        let mut pair = kms.generate_data_key_pair(caller, params).await?;
        Ok(AdvanceGenerateDataKeyPairResponse {
            private_key_plaintext: take_plaintext(&mut pair),
            iv: pair.iv.to_vec(),
            key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
            private_key_ciphertext_blob: std::mem::take(&mut pair.ciphertext_blob),
            public_key: std::mem::take(&mut pair.public_key),
            key_id: std::mem::take(&mut pair.key_id),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            key_version_id: std::mem::take(&mut pair.key_version_id),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
    type Reply = AdvanceGenerateDataKeyPairWithoutPlaintextResponse;
    const OPERATION: Operation = Operation::AdvanceGenerateDataKeyPairWithoutPlaintext;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = GenerateParams {
            key_id: &self.key_id,
            algorithm: "",
            key_pair_spec: &self.key_pair_spec,
            key_format: &self.key_format,
            aad: &self.aad,
            seal_with: SealWith::PrimaryVersion,
            with_plaintext: false,
        };
        let mut pair = kms.generate_data_key_pair(caller, params).await?;
        Ok(AdvanceGenerateDataKeyPairWithoutPlaintextResponse {
            iv: pair.iv.to_vec(),
            key_pair_spec: pair.key_pair_spec.as_str().to_owned(),
            private_key_ciphertext_blob: std::mem::take(&mut pair.ciphertext_blob),
            public_key: std::mem::take(&mut pair.public_key),
            key_id: std::mem::take(&mut pair.key_id),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            key_version_id: std::mem::take(&mut pair.key_version_id),
        })
    }
}

// === decryption ===

/// The parameters of a Decrypt or AdvanceDecrypt request, as sent.
fn decrypt_params<'a>(
    key_id: &'a str,
    ciphertext_blob: &'a [u8],
    iv: &'a [u8],
    aad: &'a [u8],
    algorithm: &'a str,
    padding_mode: &'a str,
) -> DecryptParams<'a> {
    DecryptParams {
        key_id,
        ciphertext_blob,
        iv,
        aad,
        algorithm,
        padding_mode,
    }
}

#[async_trait::async_trait]
impl Call for DecryptRequest {
    type Reply = DecryptResponse;
    const OPERATION: Operation = Operation::Decrypt;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = decrypt_params(
            &self.key_id,
            &self.ciphertext_blob,
            &self.iv,
            &self.aad,
            &self.algorithm,
            &self.padding_mode,
        );
        let opened = kms.decrypt(caller, params).await?;
        Ok(DecryptResponse {
            key_id: opened.key_id.clone(),
            plaintext: opened.plaintext.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceDecryptRequest {
    type Reply = AdvanceDecryptResponse;
    const OPERATION: Operation = Operation::AdvanceDecrypt;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = decrypt_params(
            &self.key_id,
            &self.ciphertext_blob,
            &self.iv,
            &self.aad,
            &self.algorithm,
            &self.padding_mode,
        );
        let opened = kms.advance_decrypt(caller, params).await?;
        Ok(AdvanceDecryptResponse {
            key_id: opened.key_id.clone(),
            plaintext: opened.plaintext.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
            key_version_id: opened.key_version_id.clone(),
        })
    }
}

// === encryption and data keys ===

#[async_trait::async_trait]
impl Call for EncryptRequest {
    type Reply = EncryptResponse;
    const OPERATION: Operation = Operation::Encrypt;

    async fn call(mut self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let plaintext = Zeroizing::new(std::mem::take(&mut self.plaintext));
        let params = EncryptParams {
            key_id: &self.key_id,
            plaintext: &plaintext,
            algorithm: &self.algorithm,
            aad: &self.aad,
            iv: &self.iv,
            padding_mode: &self.padding_mode,
            seal_with: SealWith::InitialVersion,
        };
        let sealed = kms.encrypt(caller, params).await?;
        Ok(EncryptResponse {
            key_id: sealed.key_id,
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceEncryptRequest {
    type Reply = AdvanceEncryptResponse;
    const OPERATION: Operation = Operation::AdvanceEncrypt;

    async fn call(mut self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let plaintext = Zeroizing::new(std::mem::take(&mut self.plaintext));
        let params = EncryptParams {
            key_id: &self.key_id,
            plaintext: &plaintext,
            algorithm: &self.algorithm,
            aad: &self.aad,
            iv: &self.iv,
            padding_mode: &self.padding_mode,
            seal_with: SealWith::PrimaryVersion,
        };
        let sealed = kms.encrypt(caller, params).await?;
        Ok(AdvanceEncryptResponse {
            key_id: sealed.key_id,
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv.to_vec(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            padding_mode: String::new(),
            key_version_id: sealed.key_version_id,
        })
    }
}

#[async_trait::async_trait]
impl Call for GenerateDataKeyRequest {
    type Reply = GenerateDataKeyResponse;
    const OPERATION: Operation = Operation::GenerateDataKey;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = DataKeyParams {
            key_id: &self.key_id,
            algorithm: &self.algorithm,
            number_of_bytes: self.number_of_bytes,
            aad: &self.aad,
            seal_with: SealWith::InitialVersion,
        };
        let key = kms.generate_data_key(caller, params).await?;
        Ok(GenerateDataKeyResponse {
            key_id: key.sealed.key_id.clone(),
            iv: key.sealed.iv.to_vec(),
            plaintext: key.plaintext.to_vec(),
            ciphertext_blob: key.sealed.ciphertext_blob.clone(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for AdvanceGenerateDataKeyRequest {
    type Reply = AdvanceGenerateDataKeyResponse;
    const OPERATION: Operation = Operation::AdvanceGenerateDataKey;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let params = DataKeyParams {
            key_id: &self.key_id,
            algorithm: "",
            number_of_bytes: self.number_of_bytes,
            aad: &self.aad,
            seal_with: SealWith::PrimaryVersion,
        };
        let key = kms.generate_data_key(caller, params).await?;
        Ok(AdvanceGenerateDataKeyResponse {
            key_id: key.sealed.key_id.clone(),
            iv: key.sealed.iv.to_vec(),
            plaintext: key.plaintext.to_vec(),
            ciphertext_blob: key.sealed.ciphertext_blob.clone(),
            request_id: caller.request_id.to_string(),
            algorithm: ALGORITHM_AES_GCM.to_owned(),
            key_version_id: key.sealed.key_version_id.clone(),
        })
    }
}

// === names no key ===

#[async_trait::async_trait]
impl Call for GenerateRandomRequest {
    type Reply = GenerateRandomResponse;
    const OPERATION: Operation = Operation::GenerateRandom;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let random = kms.generate_random(caller, self.length).await?;
        Ok(GenerateRandomResponse {
            random: random.to_vec(),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for HashRequest {
    type Reply = HashResponse;
    const OPERATION: Operation = Operation::Hash;

    async fn call(mut self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let (_, digest) = kms.hash(caller, &self.algorithm, &message).await?;
        Ok(HashResponse {
            digest,
            request_id: caller.request_id.to_string(),
        })
    }
}

// === signatures and MACs ===

#[async_trait::async_trait]
impl Call for SignRequest {
    type Reply = SignResponse;
    const OPERATION: Operation = Operation::Sign;

    async fn call(mut self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let params = SignParams {
            key_id: &self.key_id,
            algorithm: &self.algorithm,
            message_type: &self.message_type,
            message: &message,
            digest: &self.digest,
        };
        let signed = kms.sign(caller, params).await?;
        Ok(SignResponse {
            key_id: signed.context.key_id,
            signature: signed.signature,
            request_id: caller.request_id.to_string(),
            algorithm: signed.context.algorithm.as_str().to_owned(),
            message_type: signed.context.message_type.as_str().to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for VerifyRequest {
    type Reply = VerifyResponse;
    const OPERATION: Operation = Operation::Verify;

    async fn call(mut self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let params = VerifyParams {
            signed: SignParams {
                key_id: &self.key_id,
                algorithm: &self.algorithm,
                message_type: &self.message_type,
                message: &message,
                digest: &self.digest,
            },
            signature: &self.signature,
        };
        let verified = kms.verify(caller, params).await?;
        Ok(VerifyResponse {
            key_id: verified.context.key_id,
            value: verified.value,
            request_id: caller.request_id.to_string(),
            algorithm: verified.context.algorithm.as_str().to_owned(),
            message_type: verified.context.message_type.as_str().to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Call for GetPublicKeyRequest {
    type Reply = GetPublicKeyResponse;
    const OPERATION: Operation = Operation::GetPublicKey;

    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let info = kms.get_public_key(caller, &self.key_id).await?;
        Ok(GetPublicKeyResponse {
            key_id: info.key_id,
            public_key: info.public_key_pem,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for HmacRequest {
    type Reply = HmacResponse;
    const OPERATION: Operation = Operation::Hmac;

    async fn call(mut self, kms: &Kms, caller: &Caller) -> Result<Self::Reply, KmsError> {
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let mac = kms.hmac(caller, &self.key_id, &message).await?;
        Ok(HmacResponse {
            key_id: mac.key_id,
            signature: mac.mac,
            request_id: caller.request_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::{Operation, Service};

    macro_rules! listed {
        ($( $op:ident => $request:ident, $method:ident; )*) => {
            vec![$( (Operation::$op, <crate::transport::grpc::pb::$request as super::Call>::OPERATION) ),*]
        };
    }

    /// Every data plane operation of the catalogue is in the list, once, with the
    /// request message of that operation.
    #[test]
    fn the_list_is_the_catalogues_data_plane() {
        let listed: Vec<(Operation, Operation)> = crate::data_plane_calls!(listed);
        for (op, message_op) in &listed {
            assert_eq!(op, message_op, "{op} is listed with another message");
        }
        let mut ops: Vec<Operation> = listed.iter().map(|(op, _)| *op).collect();
        ops.sort();
        let mut catalogue: Vec<Operation> = Operation::ALL
            .iter()
            .copied()
            .filter(|op| op.service() == Service::Crypto)
            .collect();
        catalogue.sort();
        assert_eq!(ops, catalogue);
    }
}
