//! The control plane: keys, versions, aliases, states and rotation.
//!
//! One [`KeyRegistry`] over a [`crate::store::KeyStore`], its rules in modules with
//! one owner each:
//!
//! - [`registry`]: the type, opening it ([`open_registry`]: root key check, then the
//!   store), scoping it to a caller.
//! - [`access`]: resolving a `KeyId` and the key-grant checks.
//! - [`material`]: new version material, and opening it (cached) for the data plane.
//! - [`lifecycle`]: create, describe, list, states, deletion, rotation and versions.
//! - [`aliases`]: creating, re-pointing, deleting and listing aliases.
//! - [`client_keys`]: the HTTPS gateway's client keys: creating, listing, deleting,
//!   and the validity check of a request's key.
//! - [`maintenance`]: the pass that rotates due keys and destroys keys whose deletion
//!   window ended, and the background task that runs it.
//! - [`idempotency`]: idempotency tokens, which make creation safe to retry; their
//!   requests are MACed under a root-key-derived key ([`request_mac`]).
//! - [`seed`]: seed files (`--seed-file`): keys with fixed IDs and aliases, applied at
//!   start, idempotently.
//!
//! And their vocabulary and helpers:
//!
//! - [`ids`]: key IDs, alias names, version IDs, and the `KeyId` parameter.
//! - [`model`]: specs, rotation policies, pages, and what callers see of a key.
//! - [`material_at_rest`]: how version material is sealed under the root key, bound
//!   to its key and version IDs; also what root key rotation reseals.
//! - [`cache`]: the data plane's short-lived cache of key records and opened material.
//! - `page_token`: sealed page tokens, which name no key or alias.
//! - [`root_key`]: loading (or creating) the root key, and the check that ties a store
//!   to it.
//! - [`custody`]: where the root key is kept: a file, or wrapped by an HSM key
//!   (PKCS#11).

pub mod access;
pub mod aliases;
pub mod cache;
pub mod client_keys;
pub mod custody;
pub mod idempotency;
pub mod ids;
pub mod lifecycle;
pub mod maintenance;
pub mod material;
pub mod material_at_rest;
pub mod model;
mod page_token;
pub mod record_mac;
pub mod registry;
pub mod request_mac;
pub mod root_key;
pub mod seed;
#[cfg(test)]
pub(crate) mod testing;

pub use registry::{KeyRegistry, OpenError, open_registry};
