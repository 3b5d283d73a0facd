//! The protobuf codec of kmsd's gRPC services: prost's, except that a request body
//! that is not valid protobuf is the caller's fault.
//!
//! tonic's prost codec answers an undecodable message with `INTERNAL`, which tells
//! clients and dashboards that kmsd failed. [`KmsCodec`] answers `INVALID_ARGUMENT`
//! with the public error code `InvalidParameter` (and no decoder detail, which would
//! only echo the caller's bytes back). kmsd-api's `build.rs` names it as the generated code's
//! codec.

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error_code::{ERROR_DOMAIN, ErrorCode};

/// The message of a request body that does not decode.
pub const UNDECODABLE_MESSAGE: &str = "The request body is not a valid protobuf message.";

/// prost's codec with caller-fault decode errors; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct KmsCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for KmsCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = KmsDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        KmsDecoder(self.0.decoder())
    }
}

/// The decoder of [`KmsCodec`].
#[derive(Debug)]
pub struct KmsDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for KmsDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|_| undecodable())
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// The status of an undecodable request: `INVALID_ARGUMENT`, `InvalidParameter`.
/// (The codec cannot see the call's request ID; the edge still sends it in the
/// `x-kms-request-id` header.)
fn undecodable() -> Status {
    let details = ErrorDetails::with_error_info(
        ErrorCode::InvalidParameter.as_str(),
        ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    Status::with_error_details(tonic::Code::InvalidArgument, UNDECODABLE_MESSAGE, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_bodies_are_the_callers_fault() {
        let status = undecodable();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), UNDECODABLE_MESSAGE);
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "InvalidParameter"
        );
    }
}
