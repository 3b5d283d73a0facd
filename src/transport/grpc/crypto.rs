//! `kms.v1.CryptoService`: the data plane over gRPC. Every handler is the same three
//! steps, generated from [`crate::data_plane_calls!`]: the caller from the layers'
//! extensions, the message's shared [`Call`] (decode → [`Kms`] → encode, the same
//! code the HTTPS gateway runs), and the core's error mapped to a status.

use tonic::{Request, Response, Status};

use super::pb::crypto_service_server::CryptoService;
use super::{caller_of, reply, respond};
use crate::kms::Kms;
use crate::transport::calls::Call;

/// The gRPC face of the data plane of [`Kms`].
#[derive(Clone, Debug)]
pub struct CryptoApi {
    kms: Kms,
}

impl CryptoApi {
    /// Serves `kms` over gRPC.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }

    /// Runs one call of the data plane.
    async fn serve<C: Call>(&self, request: Request<C>) -> Result<Response<C::Reply>, Status> {
        let caller = caller_of(&request)?;
        let message = request.into_inner();
        let answer = reply(message.call(&self.kms, &caller).await, &caller)?;
        Ok(respond(answer, &caller))
    }
}

macro_rules! grpc_service {
    ($( $op:ident => $request:ident, $method:ident; )*) => {
        #[tonic::async_trait]
        impl CryptoService for CryptoApi {
            $(
                async fn $method(
                    &self,
                    request: Request<super::pb::$request>,
                ) -> Result<Response<<super::pb::$request as Call>::Reply>, Status> {
                    self.serve(request).await
                }
            )*
        }
    };
}

crate::data_plane_calls!(grpc_service);
