//! The kmsd items the bench names whose paths are moving (`api::pb` to
//! `transport::grpc::pb`, `crypto::pool` to `keypool`), re-exported here once so the
//! rename touches these lines and nothing else in the bench.

pub use kmsd::api::pb;
pub use kmsd::crypto::pool::{KeyPairPool, PoolConfig};
