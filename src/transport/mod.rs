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
//! ([`answer_traceparent`]). Both read the classic API's transfer clients'
//! `x-kms-migrationkeyversionid` ([`migration_version`]) and answer with the key version
//! a call used ([`answer_migration_version`]).

pub mod grpc;
pub mod https;
pub mod limits;
pub mod tls;

use http::{HeaderMap, HeaderValue};

use crate::call::{CallNote, MAX_NOTE_FIELD_LEN};
use crate::request_id::{REQUEST_ID_HEADER, RequestId};
use crate::trace_context::{TRACEPARENT_HEADER, TraceContext};

/// The header in which the official transfer clients (the classic KMS API over an
/// instance) name a key version: sent on Decrypt and the asymmetric calls, expected
/// back on every call that used a version (docs/ciphertext.md, "Transfer clients").
pub const MIGRATION_VERSION_HEADER: &str = "x-kms-migrationkeyversionid";

/// The `traceparent` a request sent, if it sent exactly one. Several are not a valid
/// trace context: the call starts a trace of its own.
pub fn traceparent(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(TRACEPARENT_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value.as_bytes()),
        _ => None,
    }
}

/// Sets the response's `x-kms-request-id` to the call's request ID.
pub fn answer_request_id(headers: &mut HeaderMap, request_id: &RequestId) {
    let mut buffer = [0; 36];
    if let Some(value) = unique_value(request_id.encode(&mut buffer)) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
}

/// Sets the response's `traceparent` to the one naming kmsd's span for the call.
pub fn answer_traceparent(headers: &mut HeaderMap, trace: &TraceContext) {
    let mut buffer = [0; crate::trace_context::TRACEPARENT_LEN];
    if let Some(value) = unique_value(trace.encode_traceparent(&mut buffer)) {
        headers.insert(TRACEPARENT_HEADER, value);
    }
}

/// A header value no other answer repeats (a request ID, a `traceparent`), marked so
/// that HTTP/2's header compression never indexes it: h2 writes a sensitive value as a
/// literal "never indexed". Indexed, each would take a place in the header tables of
/// both ends only to push out entries that do recur, an insertion and an eviction per
/// call on each side (kmsd-bench section 4g). `None` if `text` is not a valid value.
fn unique_value(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The key version a request's `x-kms-migrationkeyversionid` names, as sent (bounded;
/// checked where it is used). Several values are not one version: an empty one, which
/// the check refuses.
pub fn migration_version(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(MIGRATION_VERSION_HEADER).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(String::new());
    }
    let text = String::from_utf8_lossy(first.as_bytes());
    Some(text.chars().take(MAX_NOTE_FIELD_LEN).collect())
}

/// Sets the response's `x-kms-migrationkeyversionid` to the key version a call that
/// succeeded sealed, opened, signed or verified with, if it used one. The caller
/// calls it for a successful answer only (a refused one names no version).
pub fn answer_migration_version(headers: &mut HeaderMap, note: &CallNote) {
    if let Some(version) = note.version_used()
        && let Ok(value) = HeaderValue::from_str(&version)
    {
        headers.insert(MIGRATION_VERSION_HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_values_are_never_indexed_and_keep_their_bytes() {
        let value = unique_value("0f9e7c1a-2b3d-4e5f-8a6b-7c8d9e0f1a2b").unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.as_bytes(), b"0f9e7c1a-2b3d-4e5f-8a6b-7c8d9e0f1a2b");
        assert!(unique_value("line\nbreak").is_none());
    }

    #[test]
    fn the_request_id_and_traceparent_answered_are_never_indexed() {
        let mut headers = HeaderMap::new();
        let trace = TraceContext::start(None);
        answer_traceparent(&mut headers, &trace);
        assert!(headers[TRACEPARENT_HEADER].is_sensitive());
        let request_id = RequestId::new();
        answer_request_id(&mut headers, &request_id);
        assert!(headers[REQUEST_ID_HEADER].is_sensitive());
        assert_eq!(headers[REQUEST_ID_HEADER], request_id.to_string().as_str());
    }
}
