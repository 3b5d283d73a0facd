#![forbid(unsafe_code)]
//! kmsd: a self-hosted Key Management Service.

pub mod clock;
pub mod crypto;
pub mod error;
pub mod request_id;
pub mod store;
pub mod throttle;
