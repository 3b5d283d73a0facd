#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! kmsd: a self-hosted Key Management Service over gRPC.
//!
//! # Map
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the one [`config::Config`]: flags, `KMSD_*` env, TOML file, defaults |
//! | [`server`] | building the tonic server: layers, services, health, reflection, shutdown |
//! | [`request_id`] | the per-call request ID (outermost layer) |
//! | [`metrics`] | Prometheus metrics: the RPC layer and `/metrics` |
//! | [`audit`] | the audit log: one JSON line per call (a tower layer and a writer thread) |
//! | [`auth`] | access control: principals from bearer tokens or client certificates, grants |
//! | [`throttle`] | the per-instance limit on data key pair calls (a tower layer) |
//! | [`api`] | gRPC services: decode → domain → encode; nothing else |
//! | [`error`] | the domain error and its one mapping to a gRPC status |
//! | [`data_key_pairs`] | the data plane: Generate*DataKeyPair*, Decrypt, AdvanceDecrypt |
//! | [`keys`] | the control plane: keys, versions, aliases, rotation, deletion |
//! | [`crypto`] | sealer (AES-GCM + HKDF), self-describing blobs, key generation, the pool |
//! | [`store`] | the durable [`store::KeyStore`] trait and its redb backend |
//! | [`clock`] | injectable time |
//!
//! # How a request flows
//!
//! A call enters [`request_id::RequestIdLayer`] (gets its ID and tracing span), then
//! [`audit::AuditLayer`] (starts its audit record), then [`auth::AuthLayer`] (finds the
//! principal, checks the operation grant, leaves an [`auth::Access`]), then
//! [`throttle::KeyPairThrottleLayer`] (data key pair calls only: admitted or rejected at
//! once), then a service in [`api`], which calls [`data_key_pairs::DataKeyPairs`] or
//! [`keys::KeyRegistry`] scoped to the caller's access (key grants are checked where a
//! `KeyId` is resolved). Those read and write through [`store::KeyStore`], open master
//! key material with [`crypto::sealer`], and take fresh key pairs from
//! [`crypto::pool::KeyPairPool`]. Errors travel as [`error::KmsError`] and become a
//! status in [`error::KmsError::to_status`]. The domain modules know nothing of tonic,
//! so another transport is a thin adapter over them.

pub mod api;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod data_key_pairs;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod request_id;
pub mod server;
pub mod store;
pub mod throttle;
