//! The data key pairs: GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext and
//! their Advance forms. The four differ only in which version seals (the initial one,
//! or the primary one, which Advance responses name) and whether the plaintext private
//! key comes back.

use kmsd_api::pb::{
    AdvanceGenerateDataKeyPairRequest, AdvanceGenerateDataKeyPairResponse,
    AdvanceGenerateDataKeyPairWithoutPlaintextRequest,
    AdvanceGenerateDataKeyPairWithoutPlaintextResponse, GenerateDataKeyPairRequest,
    GenerateDataKeyPairResponse, GenerateDataKeyPairWithoutPlaintextRequest,
    GenerateDataKeyPairWithoutPlaintextResponse,
};

use super::{AlgorithmSent, Call, Reply, sealing};
use crate::call::Caller;
use crate::data_plane::{ALGORITHM_AES_GCM, GenerateParams, GeneratedKeyPair, SealWith};

use crate::kms::Kms;

/// The plaintext private key of a pair generated with it (empty otherwise).
fn take_plaintext(pair: &mut GeneratedKeyPair) -> Vec<u8> {
    pair.private_key_plaintext
        .take()
        .map(|secret| secret.to_vec())
        .unwrap_or_default()
}

/// One [`Call`] impl of the family: `Request => Response`, which version seals,
/// whether the plaintext comes back, the response fields only some forms have.
macro_rules! key_pair_call {
    (
        $request:ident => $response:ident, $seal_with:expr, with_plaintext: $plain:literal,
        |$pair:ident| { $($extra:ident: $value:expr),* }
    ) => {
        #[async_trait::async_trait]
        impl Call for $request {
            async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
                let params = GenerateParams {
                    key_id: &self.key_id,
                    algorithm: self.algorithm_sent(),
                    key_pair_spec: &self.key_pair_spec,
                    key_format: &self.key_format,
                    aad: &self.aad,
                    seal_with: $seal_with,
                    with_plaintext: $plain,
                };
                caller.note.set_key_pair_spec(&self.key_pair_spec);
                let plane = kms.data_plane(caller);
                let work = plane.generate(params);
                let mut $pair = sealing(kms, caller, &self.key_id, $seal_with, work).await?;
                Ok($response {
                    iv: $pair.iv.to_vec(),
                    key_pair_spec: $pair.key_pair_spec.as_str().to_owned(),
                    private_key_ciphertext_blob: std::mem::take(&mut $pair.ciphertext_blob),
                    public_key: std::mem::take(&mut $pair.public_key),
                    key_id: std::mem::take(&mut $pair.key_id),
                    request_id: caller.request_id.to_string(),
                    algorithm: ALGORITHM_AES_GCM.to_owned(),
                    $($extra: $value,)*
                })
            }
        }
    };
}

key_pair_call!(
    GenerateDataKeyPairRequest => GenerateDataKeyPairResponse,
    SealWith::InitialVersion, with_plaintext: true,
    |pair| { private_key_plaintext: take_plaintext(&mut pair) }
);
key_pair_call!(
    GenerateDataKeyPairWithoutPlaintextRequest => GenerateDataKeyPairWithoutPlaintextResponse,
    SealWith::InitialVersion, with_plaintext: false,
    |pair| {}
);
key_pair_call!(
    AdvanceGenerateDataKeyPairRequest => AdvanceGenerateDataKeyPairResponse,
    SealWith::PrimaryVersion, with_plaintext: true,
    |pair| {
        private_key_plaintext: take_plaintext(&mut pair),
        key_version_id: std::mem::take(&mut pair.key_version_id)
    }
);
key_pair_call!(
    AdvanceGenerateDataKeyPairWithoutPlaintextRequest => AdvanceGenerateDataKeyPairWithoutPlaintextResponse,
    SealWith::PrimaryVersion, with_plaintext: false,
    |pair| { key_version_id: std::mem::take(&mut pair.key_version_id) }
);
