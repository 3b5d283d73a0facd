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

pub mod grpc;
pub mod https;
pub mod limits;
pub mod tls;
