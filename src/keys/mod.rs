//! The control plane: keys, versions, aliases, states and rotation.
//!
//! - [`ids`]: key IDs, alias names, version IDs, and the `KeyId` parameter.
//! - [`model`]: specs, rotation policies, pages, and what callers see of a key.
//! - [`registry`]: the rules, over a [`crate::store::KeyStore`].
//! - [`cache`]: the data plane's short-lived cache of key records and opened material.
//! - [`root_key`]: loading (or creating) the root key that seals material at rest.
//! - [`maintenance`]: the background task that rotates due keys and destroys keys
//!   whose deletion window ended.

pub mod cache;
pub mod ids;
pub mod maintenance;
pub mod model;
pub mod registry;
pub mod root_key;

pub use registry::KeyRegistry;
