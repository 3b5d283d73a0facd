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

/// A list operation's [`Call`]: `Request => Response { items }`, the request field that
/// names a key, noted (`notes: [key_id]`, or `notes: []`), how one page is read
/// (`|request, keys, page| future`, `keys` being the registry as the caller), and how
/// an item becomes its message. The answer carries the next page token.
macro_rules! list_call {
    (
        $(#[$doc:meta])*
        $request:ident => $response:ident { $items:ident }, notes: [$($field:ident)?],
        |$this:ident, $keys:ident, $page:ident| $list:expr,
        $to_message:expr $(,)?
    ) => {
        #[async_trait::async_trait]
        impl Call for pb::$request {
            $(#[$doc])*
            async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self> {
                $(caller.note.set_key_id(&self.$field);)?
                let $page = super::page(self.page_size, self.page_token.clone());
                let ($this, $keys) = (&self, kms.keys(caller));
                let ($items, next_page_token) = super::paged($list.await?, $to_message);
                Ok(pb::$response {
                    $items,
                    next_page_token,
                    request_id: caller.request_id.to_string(),
                })
            }
        }
    };
}

pub mod admin;
pub mod aliases;
pub mod client_keys;
pub mod key_pairs;
pub mod keys;
pub mod random;
pub mod secrets;
pub mod signatures;
pub mod symmetric;
pub mod versions;

use kmsd_api::codec::UNDECODABLE_MESSAGE;
use kmsd_api::ops::OperationRequest;

use crate::call::Caller;
use crate::data_plane::{Encrypted, GeneratedDataKey, GeneratedKeyPair, SealWith};
use crate::error::KmsError;
use crate::keys::model::{Page, PageRequest};
use crate::kms::Kms;

/// What a handler answers: its operation's response message, or the refusal.
pub type Reply<C> = Result<<C as OperationRequest>::Response, KmsError>;

/// One operation's request message: how it is run on the core.
#[async_trait::async_trait]
pub trait Call: OperationRequest + Sized {
    /// Runs the request on `kms` for `caller`; the reply carries the request ID.
    ///
    /// # Errors
    ///
    /// Whatever the core refuses, as [`KmsError`].
    async fn call(self, kms: &Kms, caller: &Caller) -> Reply<Self>;
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

/// The `Algorithm` a request names; the Advance forms have no such field.
trait AlgorithmSent {
    fn algorithm_sent(&self) -> &str;
}

macro_rules! algorithm_sent {
    (named: $($named:ident),*; none: $($none:ident),*) => {
        $(impl AlgorithmSent for kmsd_api::pb::$named {
            fn algorithm_sent(&self) -> &str {
                &self.algorithm
            }
        })*
        $(impl AlgorithmSent for kmsd_api::pb::$none {
            fn algorithm_sent(&self) -> &str {
                ""
            }
        })*
    };
}

algorithm_sent! {
    named: GenerateDataKeyPairRequest, GenerateDataKeyPairWithoutPlaintextRequest, GenerateDataKeyRequest;
    none: AdvanceGenerateDataKeyPairRequest, AdvanceGenerateDataKeyPairWithoutPlaintextRequest,
        AdvanceGenerateDataKeyRequest
}

/// What a sealing call of the data plane returns: the key and version that sealed.
trait Sealed {
    fn sealed_by(&self) -> (&str, &str);
}

impl Sealed for GeneratedKeyPair {
    fn sealed_by(&self) -> (&str, &str) {
        (&self.key_id, &self.key_version_id)
    }
}

impl Sealed for Encrypted {
    fn sealed_by(&self) -> (&str, &str) {
        (&self.key_id, &self.key_version_id)
    }
}

impl Sealed for GeneratedDataKey {
    fn sealed_by(&self) -> (&str, &str) {
        self.sealed.sealed_by()
    }
}

/// Runs a sealing call of the data plane as `caller`: notes the key asked for, then the
/// key and version that sealed, and counts the seal.
async fn sealing<T: Sealed>(
    kms: &Kms,
    caller: &Caller,
    key_id: &str,
    seal_with: SealWith,
    work: impl Future<Output = Result<T, KmsError>>,
) -> Result<T, KmsError> {
    caller.note.set_key_id(key_id);
    let done = work.await?;
    let (key_id, key_version_id) = done.sealed_by();
    caller.note.set_key_id(key_id);
    caller.note.set_key_version_id(key_version_id);
    kms.metrics().count_seal(seal_with, key_version_id);
    Ok(done)
}

/// A page's items as messages, and its next page token (empty on the last page).
fn paged<T, M>(page: Page<T>, to_message: impl FnMut(T) -> M) -> (Vec<M>, String) {
    let items = page.items.into_iter().map(to_message).collect();
    (items, page.next_page_token.unwrap_or_default())
}

/// A page request from a list operation's fields.
fn page(page_size: i32, page_token: String) -> PageRequest {
    PageRequest {
        page_size,
        page_token,
    }
}
