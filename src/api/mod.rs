//! The gRPC services: decode the request → call the domain → encode the response.
//! No crypto, locks or storage here; errors become statuses only through
//! [`crate::error::KmsError::to_status`].

pub mod crypto_service;
pub mod management_service;
pub mod pb;

use tonic::{Request, Response, Status};

use crate::audit::AuditNote;
use crate::auth::Access;
use crate::error::KmsError;
use crate::request_id::RequestId;

/// The request ID the [`crate::request_id::RequestIdLayer`] gave this call.
fn request_id_of<T>(request: &Request<T>) -> RequestId {
    RequestId::from_extensions(request.extensions())
}

/// The [`Access`] the [`crate::auth::AuthLayer`] granted this call. Fails closed: a call
/// that did not pass through the layer is `UNAUTHENTICATED`.
fn access_of<T>(request: &Request<T>, request_id: &RequestId) -> Result<Access, Status> {
    request
        .extensions()
        .get::<Access>()
        .cloned()
        .ok_or_else(|| KmsError::Unauthenticated.to_status(request_id))
}

/// The call's audit note (a detached one when the call is not audited).
fn note_of<T>(request: &Request<T>) -> AuditNote {
    AuditNote::of(request.extensions())
}

/// Wraps a message in a response that carries the request ID in its metadata too.
fn respond<T>(message: T, request_id: &RequestId) -> Response<T> {
    let mut response = Response::new(message);
    request_id.insert_into(response.metadata_mut());
    response
}

/// Maps a domain result to a status with this call's request ID.
fn status<T>(result: Result<T, KmsError>, request_id: &RequestId) -> Result<T, Status> {
    result.map_err(|err| err.to_status(request_id))
}
