#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! kmsd's API, shared by the server and its clients (kmsctl, kmsd-bench):
//!
//! | module | owns |
//! |---|---|
//! | [`pb`] | the generated `kms.v1` messages, client and server stubs; redacted `Debug` for secrets |
//! | [`ops`] | the operation catalogue: [`ops::Operation`], its facts, and [`for_each_operation!`], the one list every layer generates from |
//! | [`error_code`] | the public API's error codes ([`ErrorCode`]) |
//! | [`codec`] | prost's codec with caller-fault decode errors |

pub mod codec;
pub mod error_code;
pub mod ops;
pub mod pb;

pub use error_code::{ERROR_DOMAIN, ErrorCode};
pub use ops::{Operation, Route, Service};
