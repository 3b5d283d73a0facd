//! The kmsd items the bench names from several files, re-exported here once.

pub use kmsd::keypool::{KeyPairPool, PoolConfig};
pub use kmsd_api::pb;
