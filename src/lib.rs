#![forbid(unsafe_code)]
//! kmsd: a self-hosted Key Management Service (module map written as modules land).

pub mod error;
pub mod request_id;
pub mod throttle;
