//! The gRPC transport: tonic services for `kms.v1.CryptoService` and
//! `kms.v1.KeyManagementService`, and the tower layers around them.
//!
//! ```text
//! request ─▶ edge ─▶ audit ─▶ auth ─▶ audit gate ─▶ throttle ─▶ crypto / management ─▶ Kms
//!            (request ID, Route, CallNote, metrics, UNIMPLEMENTED for unknown paths;
//!             the audit gate writes the STARTED record under --audit-required)
//! ```
//!
//! - [`edge`]: classifies each call once; [`audit`], [`auth`], [`throttle`]: thin
//!   layers over the transport-independent [`crate::audit`], [`crate::auth`],
//!   [`crate::throttle`].
//! - [`admin`]: the operator's service (Backup, a server-streaming call).
//! - [`crypto`], [`management`]: decode the request → call [`crate::kms::Kms`] →
//!   encode the response. No crypto, locks or storage here.
//! - [`status`]: the one mapping of [`crate::error::KmsError`] to a status.
//! - [`pb`]: the generated messages and stubs.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod codec;
pub mod crypto;
pub mod edge;
pub mod management;
pub mod pb;
pub mod status;
pub mod throttle;

use tonic::{Request, Response, Status};

use crate::auth::Access;
use crate::call::{CallNote, Caller};
use crate::error::KmsError;
use crate::request_id::RequestId;

/// The caller of a request, from what the layers left in its extensions. Fails closed:
/// a call that did not pass the auth layer is `UNAUTHENTICATED`.
fn caller_of<T>(request: &Request<T>) -> Result<Caller, Status> {
    let extensions = request.extensions();
    let request_id = RequestId::from_extensions(extensions);
    let note = CallNote::of(extensions);
    let access = extensions.get::<Access>().cloned();
    let access = status::reply(access.ok_or(KmsError::Unauthenticated), &request_id, &note)?;
    Ok(Caller {
        request_id,
        access,
        note,
    })
}

/// Wraps a message in a response that carries the request ID in its metadata too.
fn respond<T>(message: T, caller: &Caller) -> Response<T> {
    let mut response = Response::new(message);
    status::insert_request_id(response.metadata_mut(), &caller.request_id);
    response
}

/// Maps a core result to this call's status, recording a failure's outcome.
fn reply<T>(result: Result<T, KmsError>, caller: &Caller) -> Result<T, Status> {
    status::reply(result, &caller.request_id, &caller.note)
}
