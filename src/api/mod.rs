//! Every operation of the catalogue as one handler: an [`impl Call`](Call) for its
//! request message that decodes the fields, calls the domain ([`crate::data_plane`],
//! [`crate::keys`]) through the [`Kms`]'s handles, notes in the caller's
//! [`crate::call::CallNote`] what the call touched, and builds the response message.
//! One file per family; the transports never see more than [`Call`]:
//!
//! - gRPC: the tonic services are generated from [`kmsd_api::for_each_operation!`],
//!   each method running its request's [`Call`] (`transport::grpc::services`).
//! - HTTPS: the gateway's dispatch table is generated from the same list
//!   ([`call_encoded`] for the operations the catalogue marks as served there).
//!
//! A handler runs after admission ([`crate::pipeline`]): the caller is authenticated,
//! authorized for the operation, audited and throttled by then.

pub mod admin;
pub mod aliases;
pub mod client_keys;
pub mod key_pairs;
pub mod keys;
pub mod random;
pub mod signatures;
pub mod symmetric;
pub mod versions;

use kmsd_api::codec::UNDECODABLE_MESSAGE;
use kmsd_api::ops::OperationRequest;

use crate::call::Caller;
use crate::error::KmsError;
use crate::keys::model::PageRequest;
use crate::kms::Kms;

/// One operation's request message: how it is run on the core.
#[async_trait::async_trait]
pub trait Call: OperationRequest + Sized {
    /// Runs the request on `kms` for `caller`; the reply carries the request ID.
    ///
    /// # Errors
    ///
    /// Whatever the core refuses, as [`KmsError`].
    async fn call(self, kms: &Kms, caller: &Caller) -> Result<Self::Response, KmsError>;
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
    let request =
        C::decode(body).map_err(|_| KmsError::InvalidParameter(UNDECODABLE_MESSAGE.into()))?;
    let reply = request.call(kms, caller).await?;
    Ok(prost::Message::encode_to_vec(&reply))
}

/// A page request from a list operation's fields.
fn page(page_size: i32, page_token: String) -> PageRequest {
    PageRequest {
        page_size,
        page_token,
    }
}
