//! The front doors: only what is tonic's or hyper's. Each transport classifies a call
//! once into a [`kmsd_api::ops::Route`], reads what the caller presented, runs the one
//! admission pipeline ([`crate::pipeline`]) with the operation's handler
//! ([`crate::api`]), and encodes the answer or the error in its own wire form.
//!
//! - [`grpc`]: one tower layer and the tonic services generated from the catalogue.
//! - [`https`]: the official SDKs' protocol: `POST /` with `x-kms-apiname`, signed
//!   with a client key, protobuf bodies and `Error` bodies.
//! - [`limits`]: the bounds both put on what a client controls.
//! - [`tls`]: kmsd's certificates as rustls settings, replaceable while serving.
//!
//! Both read the caller's W3C `traceparent` ([`traceparent`]) into the call's
//! [`crate::pipeline::Inbound`] and answer with one naming kmsd's span
//! ([`answer_traceparent`]).

pub mod grpc;
pub mod https;
pub mod limits;
pub mod tls;

use http::{HeaderMap, HeaderValue};

use crate::trace_context::{TRACEPARENT_HEADER, TraceContext};

/// The `traceparent` a request sent, if it sent exactly one. Several are not a valid
/// trace context: the call starts a trace of its own.
pub fn traceparent(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(TRACEPARENT_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value.as_bytes()),
        _ => None,
    }
}

/// Sets the response's `traceparent` to the one naming kmsd's span for the call.
pub fn answer_traceparent(headers: &mut HeaderMap, trace: &TraceContext) {
    if let Ok(value) = HeaderValue::from_str(&trace.traceparent()) {
        headers.insert(TRACEPARENT_HEADER, value);
    }
}
