//! The tonic services of `kms.v1.CryptoService`, `kms.v1.KeyManagementService` and
//! `kms.v1.SecretsService`,
//! generated from the catalogue's list ([`kmsd_api::for_each_operation!`]): every
//! method takes the caller admission left in the request, runs its request's
//! [`Call`], and maps the result to a response or a status. No operation is written
//! here by hand; an rpc without a handler does not compile.

use tonic::{Request, Response, Status};

use super::admission::caller_of;
use super::status;
use crate::api::Call;
use crate::call::Caller;
use crate::error::KmsError;
use crate::kms::Kms;
use crate::request_id::RequestId;
use kmsd_api::pb;
use kmsd_api::pb::crypto_service_server::CryptoService;
use kmsd_api::pb::key_management_service_server::KeyManagementService;
use kmsd_api::pb::secrets_service_server::SecretsService;

/// The gRPC face of [`Kms`]'s operations (the admin service aside).
#[derive(Clone, Debug)]
pub struct GrpcApi {
    kms: Kms,
}

impl GrpcApi {
    /// Serves `kms` over gRPC.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }

    /// Runs one call.
    async fn serve<C: Call>(&self, request: Request<C>) -> Result<Response<C::Response>, Status> {
        let caller = admitted(&request)?;
        let result = request.into_inner().call(&self.kms, &caller).await;
        let reply = status::reply(result, &caller.request_id, &caller.note)?;
        // The admission layer sets the response's `x-kms-request-id`, on every response.
        Ok(Response::new(reply))
    }
}

/// The caller of a request, as admission left it.
pub(super) fn admitted<T>(request: &Request<T>) -> Result<Caller, Status> {
    caller_of(request.extensions()).map_err(|err| status::to_status(&err, &RequestId::default()))
}

/// Maps a core result to this call's status, recording a failure's outcome.
pub(super) fn reply<T>(result: Result<T, KmsError>, caller: &Caller) -> Result<T, Status> {
    status::reply(result, &caller.request_id, &caller.note)
}

/// One tonic service trait's methods: each runs its request's [`Call`].
macro_rules! methods {
    ($service:ident for $api:ident { $( $op:ident: $req:ident => $resp:ident, $method:ident, $($flag:literal),*; )* }) => {
        #[tonic::async_trait]
        impl $service for $api {
            $(
                async fn $method(
                    &self,
                    request: Request<pb::$req>,
                ) -> Result<Response<pb::$resp>, Status> {
                    self.serve(request).await
                }
            )*
        }
    };
}

/// The three unary services from the list; the admin service streams
/// (`super::admin`).
macro_rules! grpc_services {
    (Crypto { $($crypto:tt)* } KeyManagement { $($management:tt)* } Secrets { $($secrets:tt)* } Admin { $($admin:tt)* }) => {
        methods!(CryptoService for GrpcApi { $($crypto)* });
        methods!(KeyManagementService for GrpcApi { $($management)* });
        methods!(SecretsService for GrpcApi { $($secrets)* });
    };
}

kmsd_api::for_each_operation!(grpc_services);
