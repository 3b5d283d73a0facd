//! The operations that name no key: GenerateRandom and Hash.

use zeroize::Zeroizing;

use kmsd_api::pb::{GenerateRandomRequest, GenerateRandomResponse, HashRequest, HashResponse};

use super::{Call, Reply};
use crate::call::Caller;
use crate::data_plane::random;
use crate::kms::Kms;

#[async_trait::async_trait]
impl Call for GenerateRandomRequest {
    async fn call(self, _kms: &Kms, caller: &Caller) -> Reply<Self> {
        let random = random::generate_random(self.length)?;
        Ok(GenerateRandomResponse {
            random: random.to_vec(),
            request_id: caller.request_id.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Call for HashRequest {
    async fn call(mut self, _kms: &Kms, caller: &Caller) -> Reply<Self> {
        let message = Zeroizing::new(std::mem::take(&mut self.message));
        let (_, digest) = random::hash(&self.algorithm, &message)?;
        Ok(HashResponse {
            digest,
            request_id: caller.request_id.to_string(),
        })
    }
}
