//! The kmsd items the bench names from several files, re-exported here once.

pub use kmsd::keypool::PoolConfig;
pub use kmsd_api::pb;
