//! The front doors: each transport decodes a call, classifies it once into a
//! [`crate::ops::Route`], runs the shared checks (authorization, throttle, audit,
//! metrics) through their transport-independent functions, calls [`crate::kms::Kms`],
//! and encodes the result or the error in its own wire form.
//!
//! - [`grpc`]: tonic services for `kms.v1.CryptoService` and
//!   `kms.v1.KeyManagementService`, with the tower layers around them.

pub mod grpc;
