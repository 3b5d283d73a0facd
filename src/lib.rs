#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! kmsd: a self-hosted Key Management Service over gRPC.
//!
//! # Map
//!
//! | module | owns |
//! |---|---|
//! | [`admin`] | offline subcommands: `kmsd rotate-root-key` |
//! | [`backup`] | online snapshots of the embedded store, for the Backup operation |
//! | [`config`] | the one [`config::Config`]: flags, `KMSD_*` env, TOML file, defaults |
//! | [`server`] | wiring: builds the [`kms::Kms`] and serves it over gRPC; health, reflection, TLS, shutdown |
//! | [`ops`] | the operation catalogue: every operation once, and the [`ops::Route`] of a call |
//! | [`kms`] | the core: built once from the config, one async method per operation |
//! | [`call`] | a call as the core sees it: [`call::Caller`] and its [`call::CallNote`] |
//! | [`transport`] | the front doors: [`transport::grpc`] (tonic services and tower layers), [`transport::https`] (the official SDKs' protocol), and the [`transport::calls`] both run |
//! | [`error`] | the domain error, its canonical status and public error code |
//! | [`auth`] | access control: principals, grants, the authorization decision |
//! | [`throttle`] | the per-instance limit on data key pair calls |
//! | [`audit`] | the audit log: one JSON line per call, written by a dedicated thread |
//! | [`metrics`] | Prometheus metrics and `/metrics` |
//! | [`logging`] | the binary's log subscriber: format, filter, colour only on a terminal |
//! | [`data_plane`] | the operations that use key material: key pairs, Encrypt and data keys, Decrypt, AdvanceDecrypt; Sign, Verify, GetPublicKey, Hmac; GenerateRandom and Hash |
//! | [`keys`] | the control plane: keys, versions, aliases, rotation, deletion |
//! | [`keypool`] | the pool of pre-generated key pairs and its worker threads |
//! | [`crypto`] | pure functions and secret types: sealer (AES-GCM + HKDF), blobs, key generation, signing keys and HMAC |
//! | [`store`] | the durable [`store::KeyStore`] trait and its backends |
//! | [`request_id`], [`clock`] | request IDs; injectable time |
//!
//! # How a call flows
//!
//! A gRPC call enters the edge ([`transport::grpc::edge`]): it gets its
//! [`request_id::RequestId`], is classified once into an [`ops::Route`] (unknown paths
//! stop here with `UNIMPLEMENTED`), gets a [`call::CallNote`], and is timed for
//! [`metrics`]. Then the audit layer starts its record ([`audit::AuditLog::begin`]),
//! the auth layer decides its [`auth::Access`] ([`auth::authorize`]), with
//! `--audit-required` the audit gate puts the request on disk
//! ([`audit::AuditLog::record_start`]), and the throttle layer admits or rejects a key
//! pair call ([`throttle::KeyPairThrottle::admit`]). The handler in
//! [`transport::grpc`] decodes the message and calls one method of
//! [`kms::Kms`] with a [`call::Caller`]; the core runs [`data_plane`] or [`keys`], which
//! read and write through [`store::KeyStore`], open material with [`crypto::sealer`]
//! and take key pairs from [`keypool::KeyPairPool`]. Errors travel as
//! [`error::KmsError`] and become a status in one place
//! ([`transport::grpc::status::to_status`]). Only [`transport`] and [`server`] know
//! tonic; `docs/architecture.md` has the picture and how to add an operation. An HTTPS
//! call of the official SDKs ([`transport::https::gateway`]) takes the same steps
//! through the same functions, authenticated by a client key's signature
//! ([`keys::client_keys`]).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod call;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod data_plane;
pub mod error;
pub mod keypool;
pub mod keys;
pub mod kms;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod request_id;
pub mod server;
pub mod store;
pub mod throttle;
pub mod transport;
